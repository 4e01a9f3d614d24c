"""A send step is done when its email is sent (moto): the real sender, stores and scheduler items.

The programs service queues an email; the sender sends, skips or defers it and says so; the
programs service hears that (or, if the word is lost, looks at the send itself) and only then
goes on. Time is passed in, so a Friday evening and a Monday morning are the same test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from kindling.adapters.config_store import DynamoConfigStore, EmailConfig, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.email_store import DynamoEmailStore
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.ses import SesMailer
from kindling.email.render import LinkSigner
from kindling.email.sender import EmailSender, SendRequest
from kindling.leads.profiles import ProfileService
from kindling.programs.due import DueItem, release_due
from kindling.programs.engine import SendResult, describe_enrollments
from kindling.programs.service import ProgramService
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.fakes import RecordingPublisher, RecordingQueue

CONFIG = documents(load(Path(__file__).resolve().parents[2] / "config"))
FRIDAY_8PM_NEW_YORK = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
MONDAY_8AM_NEW_YORK = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
TUESDAY_10AM_NEW_YORK = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def world(table: str, moto_endpoint: str) -> dict[str, Any]:
    config = DynamoConfigStore(table)
    for name in ("scoring.yaml", "email.yaml", "templates", "segments.yaml", "programs"):
        config.apply(name.removesuffix(".yaml"), CONFIG[name], FRIDAY_8PM_NEW_YORK)
    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    sesv2.create_email_identity(EmailIdentity=CONFIG["email.yaml"]["from_address"])
    config_set = f"cs-{uuid.uuid4().hex[:8]}"
    sesv2.create_configuration_set(ConfigurationSetName=config_set)
    outcomes, sends = RecordingPublisher(), RecordingQueue()
    sender = EmailSender(
        DynamoEmailStore(table),
        SesMailer(config_set),
        EmailConfig(table),
        LinkSigner(b"s" * 32),
        "http://127.0.0.1:3000",
        outcomes,
    )
    store = DynamoProgramStore(table)
    programs = ProgramService(store, ProgramsConfig(table), sends, RecordingPublisher(), sleep=lambda s: None)
    return {
        "table": table,
        "sender": sender,
        "outcomes": outcomes,
        "sends": sends,
        "programs": programs,
        "store": store,
        "due": DynamoDueStore(table),
        "config": ProgramsConfig(table),
    }


def new_lead(world: dict[str, Any], at: datetime) -> str:
    email = f"lead-{uuid.uuid4().hex[:8]}@acme.io"
    event = WebEvent(
        message_id=f"m-{uuid.uuid4().hex}",
        type="identify",
        user_id=email,
        timestamp=at,
        received_at=at,
        traits={"email": email, "first_name": "Ada", "timezone": "America/New_York"},
    )
    lead_id = ProfileService(DynamoLeadStore(world["table"])).record(event, at).lead_id
    world["programs"].on_lead_event(
        lead_id, trigger_id=event.message_id, now=at, event=event.model_dump(mode="json"), new_lead=True
    )
    return lead_id


def sender_takes_the_queue(world: dict[str, Any], at: datetime, *, tell_programs: bool = True) -> None:
    """The sender handles every queued email; its word (sent, skipped, deferred) reaches programs."""
    while world["sends"].bodies:
        body = world["sends"].bodies.pop(0)
        world["sender"].handle(SendRequest.model_validate(body), at)
    words, world["outcomes"].events[:] = list(world["outcomes"].events), []
    for word in words if tell_programs else []:
        detail = word.detail
        status = word.detail_type.removeprefix("email.")
        until = datetime.fromisoformat(detail["until"]) if detail["until"] else None
        result = SendResult(
            status=status, at=datetime.fromisoformat(detail["at"]), reason=detail["reason"], until=until
        )
        world["programs"].on_send_result(detail["lead_id"], detail["send_id"], result, at)


def tick(world: dict[str, Any], at: datetime) -> None:
    """The minute tick: due sends go back to the sender, due steps run."""

    def dispatch(items: list[DueItem]) -> None:
        for item in items:
            if item.kind == "send":
                world["sends"].send_all([item.payload])
            elif item.kind == "step":
                world["programs"].run_due(
                    item.payload["lead_id"], item.payload["enrollment_id"], item.payload["token"], at
                )

    release_due(world["due"], dispatch, at)


def welcome(world: dict[str, Any], lead_id: str) -> Any:
    [enrollment] = [e for e in world["store"].enrollments(lead_id) if e.program_id == "welcome-series"]
    return enrollment


def test_a_friday_evening_lead_waits_at_the_first_email_until_monday_and_the_wait_starts_then(world) -> None:
    lead_id = new_lead(world, FRIDAY_8PM_NEW_YORK)
    sender_takes_the_queue(world, FRIDAY_8PM_NEW_YORK)
    held = welcome(world, lead_id)
    assert (held.status, held.step_id) == ("sending", "send-welcome")
    [described] = describe_enrollments([held], world["config"].programs())
    assert described["email"]["status"] == "deferred"
    until = described["email"]["deferred_until"]
    assert MONDAY_8AM_NEW_YORK < until < MONDAY_8AM_NEW_YORK + timedelta(minutes=5), "its turn at the opening"
    assert described["next_due"]["at"] == until

    tick(world, MONDAY_8AM_NEW_YORK - timedelta(minutes=1))
    assert world["sends"].bodies == [], "nothing is due before the window opens"
    tick(world, until)
    sender_takes_the_queue(world, until)
    sent = welcome(world, lead_id)
    assert (sent.status, sent.step_id) == ("active", "wait-2d")
    assert sent.due_at == until + timedelta(days=2), "two days from the send, not from Friday"
    assert [h["what"] for h in sent.history][-3:] == ["email deferred", "email sent", "waiting"]


def test_a_lost_word_from_the_sender_is_found_by_looking_at_the_send(world) -> None:
    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    sender_takes_the_queue(world, TUESDAY_10AM_NEW_YORK, tell_programs=False)
    assert welcome(world, lead_id).status == "sending"
    tick(world, TUESDAY_10AM_NEW_YORK + timedelta(hours=1))
    after = welcome(world, lead_id)
    assert (after.status, after.step_id) == ("active", "wait-2d")
    assert after.due_at == TUESDAY_10AM_NEW_YORK + timedelta(days=2), "from the send's own time"


def test_an_email_that_never_goes_out_is_given_up_after_a_day_and_never_sent_late(world) -> None:
    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    [lost] = world["sends"].bodies  # the send's message ends in a dead-letter queue
    world["sends"].bodies.clear()
    tick(world, TUESDAY_10AM_NEW_YORK + timedelta(hours=1))
    assert welcome(world, lead_id).status == "sending", "an hour is not long enough to give up"
    a_day_later = TUESDAY_10AM_NEW_YORK + timedelta(days=1)
    tick(world, a_day_later)
    after = welcome(world, lead_id)
    assert (after.status, after.step_id) == ("active", "wait-2d")
    assert any(h["what"] == "email given up" for h in after.history)
    redriven = world["sender"].handle(SendRequest.model_validate(lost), a_day_later + timedelta(hours=1))
    assert redriven.status == "duplicate", "a redriven dead letter does not send what the program gave up"


def test_the_second_email_of_an_enrollment_never_leaves_before_the_first(world) -> None:
    lead_id = new_lead(world, FRIDAY_8PM_NEW_YORK)
    sender_takes_the_queue(world, FRIDAY_8PM_NEW_YORK)
    # The scheduler runs the enrollment on Sunday (say, a wake-up left from an older version):
    # it cannot move past the send that is still deferred.
    sunday = FRIDAY_8PM_NEW_YORK + timedelta(days=2)
    enrollment = welcome(world, lead_id)
    world["programs"].run_due(lead_id, enrollment.enrollment_id, enrollment.token, sunday)
    assert world["sends"].bodies == []
    assert welcome(world, lead_id).step_id == "send-welcome"


#: Two programs that compete for one lead under a cap of one marketing email per two days.
BUSY = {
    "id": "first-in-line",
    "name": "Busy, first in line",
    "priority": 1,
    "trigger": {"new_lead": True},
    "steps": [
        {"id": "one", "send_email": "welcome-1"},
        {"id": "wait-1", "wait": "1d"},
        {"id": "two", "send_email": "welcome-2"},
        {"id": "wait-2", "wait": "1d"},
        {"id": "three", "send_email": "nurture-case-study"},
        {"id": "wait-3", "wait": "1d"},
        {"id": "four", "send_email": "nurture-roi-guide"},
    ],
}
QUIET = {
    "id": "second-in-line",
    "name": "One email, second in line",
    "priority": 2,
    "trigger": {"new_lead": True},
    "steps": [{"id": "invite", "send_email": "nurture-webinar-invite"}],
}


def run_days(world: dict[str, Any], start: datetime, days: int) -> None:
    """The minute tick around each morning's 08:00 opening in New York, and hourly otherwise."""
    moments = set()
    for day in range(days + 1):
        morning = (start + timedelta(days=day)).astimezone(ZoneInfo("America/New_York"))
        for hour in range(24):
            moments.add((start + timedelta(days=day, hours=hour)).replace(minute=0))
        for minute in range(12):
            moments.add(morning.replace(hour=8, minute=minute).astimezone(UTC))
    for moment in sorted(m for m in moments if m > start):
        tick(world, moment)
        sender_takes_the_queue(world, moment)


def test_competing_programs_send_by_priority_one_at_a_time_and_none_is_starved(table: str, world) -> None:
    config = DynamoConfigStore(table)
    email = {**CONFIG["email.yaml"], "frequency_cap": {"max_emails": 1, "per_days": 2}}
    config.apply("email", email, FRIDAY_8PM_NEW_YORK)
    config.apply(
        "programs", {"programs": {"second-in-line": QUIET, "first-in-line": BUSY}}, FRIDAY_8PM_NEW_YORK
    )
    lead_id = new_lead(world, FRIDAY_8PM_NEW_YORK)
    sender_takes_the_queue(world, FRIDAY_8PM_NEW_YORK)
    run_days(world, FRIDAY_8PM_NEW_YORK, 16)

    sent = sorted(
        (entry.timestamp, entry.properties["template"])
        for entry in DynamoLeadStore(table).timeline(lead_id, 200)
        if entry.event == "Email Sent"
    )
    new_york = [(at.astimezone(ZoneInfo("America/New_York")), template) for at, template in sent]
    assert [template for _, template in new_york] == [
        "welcome-1",  # Monday: both programs' first emails were deferred; first in line goes first
        "welcome-2",  # Wednesday: the next slot, still first in line
        "nurture-case-study",  # Friday
        "nurture-webinar-invite",  # Monday: waiting since the Friday before, it goes ahead of priority
        "nurture-roi-guide",  # Wednesday
    ]
    assert all(later - earlier >= timedelta(days=2) for (earlier, _), (later, _) in pairwise(sent)), (
        "never two emails inside the cap"
    )
    assert all(at.hour == 8 and at.minute < 5 and at.weekday() < 5 for at, _ in new_york)


def test_the_senders_word_arriving_before_its_enrollment_is_saved_is_not_lost(world) -> None:
    from kindling.kernel.errors import Conflict

    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    enrollment = welcome(world, lead_id)
    history = [h for h in enrollment.history if h["what"] != "email queued"]
    visits = {k: n for k, n in enrollment.visits.items() if not k.endswith("|email queued")}
    before_save = enrollment.model_copy(
        update={
            "status": "active",
            "sending": None,
            "history": history,
            "visits": visits,
            "due_at": TUESDAY_10AM_NEW_YORK,
        }
    )
    world["store"].save(before_save, enrollment.token, None)  # as it was just before its save
    word = SendResult(status="sent", at=TUESDAY_10AM_NEW_YORK)
    with pytest.raises(Conflict):
        world["programs"].on_send_result(lead_id, enrollment.sending.send_id, word, TUESDAY_10AM_NEW_YORK)


def test_a_save_that_loses_a_race_leaves_no_wake_up_behind(world) -> None:
    """An enrollment's save writes its wake-up, then its state if the token has not moved."""
    from kindling.kernel.errors import Conflict
    from kindling.programs.engine import new_token
    from kindling.programs.service import step_due

    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    sender_takes_the_queue(world, TUESDAY_10AM_NEW_YORK)
    before = welcome(world, lead_id)
    assert (before.status, before.step_id) == ("active", "wait-2d")
    loser = before.model_copy(deep=True)
    loser.token, loser.due_at = new_token(), TUESDAY_10AM_NEW_YORK + timedelta(hours=3)
    with pytest.raises(Conflict):
        world["store"].save(loser, "a-token-that-moved-meanwhile", step_due(loser, TUESDAY_10AM_NEW_YORK))
    assert welcome(world, lead_id) == before, "the state is not written"

    woken: dict[str, str] = {}

    def dispatch(items: list[DueItem]) -> None:
        for item in items:
            if item.kind == "step":
                payload = item.payload
                woken[payload["token"]] = world["programs"].run_due(
                    payload["lead_id"], payload["enrollment_id"], payload["token"], item.due_at
                )

    release_due(world["due"], dispatch, TUESDAY_10AM_NEW_YORK + timedelta(hours=4))
    assert loser.token not in woken, "the loser's wake-up, written first, is deleted when its state loses"
    assert welcome(world, lead_id) == before


def test_an_enrollment_item_stays_small_through_the_welcome_series(world) -> None:
    """Every save pays for the item's size: a finished series is still one write unit."""
    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    at = TUESDAY_10AM_NEW_YORK
    for _ in range(40):
        sender_takes_the_queue(world, at)
        at += timedelta(hours=6)
        tick(world, at)
    done = welcome(world, lead_id)
    assert not done.live, done.status
    item = boto3.client("dynamodb").get_item(
        TableName=world["table"],
        Key={"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": f"ENROLL#{done.enrollment_id}"}},
    )["Item"]
    assert sum(len(k) + len(v.get("S", v.get("B", b""))) for k, v in item.items()) < 1024, "one write unit"
    # Only the wake-ups that may still be stored when the last was written (those of the day
    # before it on): Tuesday's were released in their hour and are forgotten.
    hours = [k.split("|")[0] for k in done.due_keys]
    assert hours == ["DUEAT#2026-12-03T15", "DUEAT#2026-12-03T16", "DUEAT#2026-12-06T15"], hours


def test_a_wake_up_due_at_once_is_never_released_before_its_state_is_saved(world) -> None:
    """A tick running between the wake-up's write and the state's must not find the old token."""
    from kindling.programs.engine import new_token
    from kindling.programs.service import step_due

    lead_id = new_lead(world, TUESDAY_10AM_NEW_YORK)
    sender_takes_the_queue(world, TUESDAY_10AM_NEW_YORK)
    before = welcome(world, lead_id)
    now = TUESDAY_10AM_NEW_YORK + timedelta(hours=1)
    resumed = before.model_copy(deep=True)  # as a hold released now: its step runs at once
    resumed.token, resumed.due_at = new_token(), now
    woken: dict[str, str] = {}

    def dispatch(items: list[DueItem]) -> None:
        for item in items:
            payload = item.payload
            woken[payload["token"]] = world["programs"].run_due(
                payload["lead_id"], payload["enrollment_id"], payload["token"], now
            )

    real = boto3.client("dynamodb")

    class TickBetweenWrites:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_item(self, **request: Any) -> Any:
            if request["Item"]["SK"]["S"].startswith("ENROLL#"):
                release_due(world["due"], dispatch, now)
            return real.put_item(**request)

    saving = DynamoProgramStore(world["table"], client=TickBetweenWrites())
    saving.save(resumed, before.token, step_due(resumed, now))
    release_due(world["due"], dispatch, now + timedelta(minutes=1))
    assert woken.get(resumed.token) not in (None, "stale"), woken
