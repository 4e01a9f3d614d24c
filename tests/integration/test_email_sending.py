"""Sending email on DynamoDB and SES (moto): exactly once, never when we must not, SES events back in."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.ses.models import ses_backends

from kindling.adapters.config_store import DynamoConfigStore, EmailConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.email_store import DynamoEmailStore
from kindling.adapters.ses import SesMailer
from kindling.email.render import LinkSigner
from kindling.email.sender import EmailSender, SendRequest
from kindling.email.ses_events import SesEvent, apply_ses_event
from kindling.kernel.errors import Retryable
from kindling.leads.profiles import ProfileService
from kindling.programs.due import release_due
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.fakes import RecordingPublisher

CONFIG = documents(load(Path(__file__).resolve().parents[2] / "config"))
WEDNESDAY_10AM_NEW_YORK = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
API = "http://127.0.0.1:3000"
_ids = itertools.count()


class CountingMailer:
    """SES on moto, with failures to order."""

    def __init__(self, mailer: SesMailer, fail_first: Exception | None = None) -> None:
        self.mailer, self.fail_first, self.calls, self.sent = mailer, fail_first, 0, 0

    def send(self, email: Any) -> str:
        self.calls += 1
        if self.fail_first is not None:
            failure, self.fail_first = self.fail_first, None
            raise failure
        message_id = self.mailer.send(email)
        self.sent += 1
        return message_id


@pytest.fixture
def world(table: str, dynamodb: Any, moto_endpoint: str) -> dict[str, Any]:
    config = DynamoConfigStore(table)
    for name in ("email.yaml", "templates"):
        config.apply(name.removesuffix(".yaml"), CONFIG[name], WEDNESDAY_10AM_NEW_YORK)
    import boto3

    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    sesv2.create_email_identity(EmailIdentity=CONFIG["email.yaml"]["from_address"])
    config_set = f"cs-{uuid.uuid4().hex[:8]}"
    sesv2.create_configuration_set(ConfigurationSetName=config_set)
    store = DynamoEmailStore(table)
    mailer = CountingMailer(SesMailer(config_set))
    sender = EmailSender(store, mailer, EmailConfig(table), LinkSigner(b"s" * 32), API)
    return {"table": table, "store": store, "mailer": mailer, "sender": sender}


def new_lead(table: str, **traits: Any) -> str:
    email = f"lead-{uuid.uuid4().hex[:8]}@acme.io"
    event = WebEvent(
        message_id=f"m-{next(_ids)}",
        type="identify",
        user_id=email,
        timestamp=WEDNESDAY_10AM_NEW_YORK,
        received_at=WEDNESDAY_10AM_NEW_YORK,
        traits={"email": email, "first_name": "Ada", **traits},
    )
    return ProfileService(DynamoLeadStore(table)).record(event, WEDNESDAY_10AM_NEW_YORK).lead_id


def request(lead_id: str, template: str = "welcome-1") -> SendRequest:
    return SendRequest(send_id=f"s-{uuid.uuid4().hex}", lead_id=lead_id, template=template)


def timeline_events(table: str, lead_id: str) -> list[tuple[str | None, dict]]:
    return [
        (e.event, e.properties) for e in DynamoLeadStore(table).timeline(lead_id, 50) if e.type == "email"
    ]


def outbox_for(address: str) -> list[Any]:
    return [m for m in ses_backends["123456789012"]["us-east-1"].sent_messages if address in m.raw_data]


def test_the_same_send_delivered_many_times_sends_one_email(world) -> None:
    lead_id = new_lead(world["table"])
    send = request(lead_id)
    outcomes = [world["sender"].handle(send, WEDNESDAY_10AM_NEW_YORK).status for _ in range(4)]
    assert outcomes == ["sent", "duplicate", "duplicate", "duplicate"]
    assert world["mailer"].sent == 1
    [(event, properties)] = timeline_events(world["table"], lead_id)
    assert event == "Email Sent" and properties["template"] == "welcome-1"


def test_each_recorded_outcome_is_announced_on_the_bus_once(world) -> None:
    publisher = RecordingPublisher()
    sender = EmailSender(
        world["store"], world["mailer"], EmailConfig(world["table"]), LinkSigner(b"s" * 32), API, publisher
    )
    lead_id = new_lead(world["table"])
    program_send = SendRequest(send_id=f"welcome.{lead_id}.1.intro", lead_id=lead_id, template="welcome-1")
    for _ in range(2):
        sender.handle(program_send, WEDNESDAY_10AM_NEW_YORK)
    sender.handle(request("ld_nobody"), WEDNESDAY_10AM_NEW_YORK)
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    sender.handle(request(lead_id), saturday)
    sent, skipped, deferred = publisher.events
    assert [e.detail_type for e in publisher.events] == ["email.sent", "email.skipped", "email.deferred"]
    assert {e.source for e in publisher.events} == {"kindling.email"}
    assert sent.detail == {
        "event_id": f"welcome.{lead_id}.1.intro:sent",
        "send_id": f"welcome.{lead_id}.1.intro",
        "lead_id": lead_id,
        "template": "welcome-1",
        "program": "welcome",
        "step": "intro",
        "reason": None,
        "until": None,
        "at": WEDNESDAY_10AM_NEW_YORK.isoformat(),
    }
    assert skipped.detail["reason"] == "unknown_lead" and skipped.detail["program"] is None
    assert deferred.detail["reason"] == "outside_send_window"
    assert deferred.detail["until"] == "2026-11-30T13:00:00+00:00", "Monday 08:00 in New York"
    assert deferred.detail["event_id"].endswith(":deferred")


def test_a_failed_ses_call_releases_the_claim_so_the_retry_sends_at_once(world) -> None:
    world["mailer"].fail_first = Retryable("ThrottlingException")
    send = request(new_lead(world["table"]))
    with pytest.raises(Retryable):
        world["sender"].handle(send, WEDNESDAY_10AM_NEW_YORK)
    assert world["sender"].handle(send, WEDNESDAY_10AM_NEW_YORK).status == "sent"
    assert (world["mailer"].calls, world["mailer"].sent) == (2, 1)


class CrashAfterSes(DynamoEmailStore):
    """SES accepted the email, then the process died before our record."""

    crash = True

    def mark_sent(self, *args: Any, **kwargs: Any) -> None:
        if self.crash:
            self.crash = False
            raise SystemExit("crashed")
        super().mark_sent(*args, **kwargs)


def crashed_send(world: dict[str, Any]) -> tuple[EmailSender, SendRequest, str]:
    store = CrashAfterSes(world["table"])
    sender = EmailSender(store, world["mailer"], EmailConfig(world["table"]), LinkSigner(b"s" * 32), API)
    lead_id = new_lead(world["table"])
    send = request(lead_id)
    with pytest.raises(SystemExit):
        sender.handle(send, WEDNESDAY_10AM_NEW_YORK)
    return sender, send, lead_id


def ses_event(event_type: str, send: SendRequest, part: dict[str, Any] | None = None) -> tuple[str, SesEvent]:
    """An SES event as EventBridge delivers it (event publishing, EventBridge destination)."""
    key = {
        "Bounce": "bounce",
        "Complaint": "complaint",
        "Open": "open",
        "Click": "click",
        "Send": "send",
        "Delivery": "delivery",
        "Subscription": "subscription",
    }[event_type]
    detail = {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-11-25T15:00:00.000Z",
            "source": "Acme <marketing@acme.example>",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/acme.example",
            "sendingAccountId": "123456789012",
            "messageId": "010001234567890a-11111111-2222-3333-4444-555555555555-000000",
            "destination": ["ada@acme.io"],
            "headersTruncated": False,
            "tags": {
                "ses:configuration-set": ["kindling-email"],
                "ses:from-domain": ["acme.example"],
                "send_id": [send.send_id],
                "lead_id": [send.lead_id],
                "template": [send.template],
            },
        },
        key: part or {},
    }
    envelope = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": f"Email {event_type}",
        "source": "aws.ses",
        "account": "123456789012",
        "time": "2026-11-25T15:00:01Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
    return envelope["id"], SesEvent.model_validate(json.loads(json.dumps(envelope))["detail"])


def test_after_a_crash_the_send_waits_for_ses_and_is_confirmed_without_a_resend(world) -> None:
    sender, send, lead_id = crashed_send(world)
    with pytest.raises(Retryable, match="waiting for SES"):
        sender.handle(send, WEDNESDAY_10AM_NEW_YORK + timedelta(minutes=2))
    event_id, event = ses_event("Send", send)
    apply_ses_event(event_id, event, world["store"], RecordingPublisher(), WEDNESDAY_10AM_NEW_YORK)
    assert sender.handle(send, WEDNESDAY_10AM_NEW_YORK + timedelta(minutes=3)).status == "confirmed"
    assert world["mailer"].sent == 1
    assert [e for e, _ in timeline_events(world["table"], lead_id)] == ["Email Sent"]


def test_after_a_crash_with_no_word_from_ses_the_email_is_sent_again_once(world) -> None:
    sender, send, _ = crashed_send(world)
    later = WEDNESDAY_10AM_NEW_YORK + timedelta(minutes=11)
    assert sender.handle(send, later).status == "sent"
    assert sender.handle(send, later).status == "duplicate"
    assert world["mailer"].sent == 2  # SES never confirmed the first: sending again is the only way


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("SET unsubscribed = :t", "unsubscribed"),
        ("SET quiet = :t", "quiet_period"),
        ("SET email_status = :hb", "hard_bounced"),
    ],
)
def test_a_marketing_email_is_skipped_with_its_reason_on_the_timeline(
    world, change: str, reason: str
) -> None:
    lead_id = new_lead(world["table"])
    values = {":t": {"BOOL": True}, ":hb": {"S": "hard_bounced"}}
    world["store"].update_lead(lead_id, change, {k: v for k, v in values.items() if k in change})
    outcome = world["sender"].handle(request(lead_id), WEDNESDAY_10AM_NEW_YORK)
    assert (outcome.status, outcome.reason) == ("skipped", reason)
    assert world["mailer"].calls == 0
    assert timeline_events(world["table"], lead_id)[0] == (
        "Email Skipped",
        {
            "send_id": timeline_events(world["table"], lead_id)[0][1]["send_id"],
            "template": "welcome-1",
            "reason": reason,
        },
    )


def test_a_transactional_email_still_reaches_someone_who_unsubscribed_from_marketing(world, tmp_path) -> None:
    templates = json.loads(json.dumps(CONFIG["templates"]))
    receipt = dict(next(iter(templates["templates"].values())), kind="transactional")
    templates["templates"]["receipt"] = receipt
    DynamoConfigStore(world["table"]).apply("templates", templates, WEDNESDAY_10AM_NEW_YORK)
    world["sender"]._config.refresh()
    lead_id = new_lead(world["table"])
    world["store"].update_lead(lead_id, "SET unsubscribed = :t", {":t": {"BOOL": True}})
    assert world["sender"].handle(request(lead_id, "receipt"), WEDNESDAY_10AM_NEW_YORK).status == "sent"


def test_outside_the_send_window_a_send_waits_for_the_next_opening_then_goes(world) -> None:
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    lead_id = new_lead(world["table"], timezone="Europe/Berlin")
    send = request(lead_id)
    outcome = world["sender"].handle(send, saturday)
    assert outcome.status == "deferred" and outcome.reason == "outside_send_window"
    assert outcome.due_at == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 in Berlin
    dispatched: list[dict] = []
    due = DynamoDueStore(world["table"])
    assert release_due(due, lambda items: dispatched.extend(i.payload for i in items), saturday) == 0
    assert (
        release_due(
            due,
            lambda items: dispatched.extend(i.payload for i in items),
            datetime(2026, 11, 30, 7, 0, 30, tzinfo=UTC),
        )
        == 1
    )
    monday = datetime(2026, 11, 30, 7, 1, tzinfo=UTC)
    assert world["sender"].handle(SendRequest.model_validate(dispatched[0]), monday).status == "sent"


def test_the_frequency_cap_defers_the_fourth_email_of_the_week(world) -> None:
    lead_id = new_lead(world["table"])
    times = [WEDNESDAY_10AM_NEW_YORK + timedelta(hours=h) for h in (0, 1, 2, 3)]
    outcomes = [world["sender"].handle(request(lead_id), t) for t in times]
    assert [o.status for o in outcomes] == ["sent", "sent", "sent", "deferred"]
    assert outcomes[3].reason == "frequency_cap"
    assert outcomes[3].due_at is not None and outcomes[3].due_at >= times[0] + timedelta(days=7)


def test_hard_bounces_and_complaints_suppress_and_soft_bounces_count_once(world) -> None:
    lead_id = new_lead(world["table"])
    send = request(lead_id)
    publisher = RecordingPublisher()
    soft_id, soft = ses_event(
        "Bounce",
        send,
        {
            "bounceType": "Transient",
            "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": "ada@acme.io"}],
            "timestamp": "2026-11-25T15:00:05.000Z",
        },
    )
    for _ in range(2):
        apply_ses_event(soft_id, soft, world["store"], publisher, WEDNESDAY_10AM_NEW_YORK)
    lead = world["store"].lead(lead_id)
    assert lead is not None and lead.soft_bounces == 1 and lead.email_status is None
    hard_id, hard = ses_event(
        "Bounce",
        send,
        {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "Ada@Acme.io"}],
            "timestamp": "2026-11-25T15:00:05.000Z",
        },
    )
    assert apply_ses_event(hard_id, hard, world["store"], publisher, WEDNESDAY_10AM_NEW_YORK) == "hard_bounce"
    assert world["store"].suppression("ada@acme.io") == "hard_bounce"
    lead = world["store"].lead(lead_id)
    assert lead is not None and lead.email_status == "hard_bounced"
    assert world["sender"].handle(request(lead_id), WEDNESDAY_10AM_NEW_YORK).reason == "hard_bounced"
    # Each bounce is announced for the metrics with its send (the consumer counts one per send).
    outcomes = [(e.detail_type, e.detail["send_id"], e.detail["bounce_type"]) for e in publisher.events]
    assert outcomes == [
        ("email.bounced", send.send_id, "Transient"),
        ("email.bounced", send.send_id, "Transient"),
        ("email.bounced", send.send_id, "Permanent"),
    ]
    assert publisher.events[0].detail["event_id"] == f"ses-{soft_id}"


def test_ses_opens_and_clicks_become_lead_events_for_scoring(world) -> None:
    send = request(new_lead(world["table"]))
    publisher = RecordingPublisher()
    event_id, click = ses_event(
        "Click",
        send,
        {
            "link": "https://acme.example/pricing",
            "ipAddress": "192.0.2.1",
            "timestamp": "2026-11-25T15:10:00.000Z",
            "userAgent": "Mozilla/5.0",
        },
    )
    assert apply_ses_event(event_id, click, world["store"], publisher, WEDNESDAY_10AM_NEW_YORK) == "click"
    [published] = publisher.events
    assert published.source == "kindling.email" and published.detail_type == "web.track"
    assert published.detail["event"] == "Email Clicked" and published.detail["lead_id"] == send.lead_id
    assert published.detail["properties"]["url"] == "https://acme.example/pricing"


def subscription_event(send: SendRequest, unsubscribe_all: bool) -> tuple[str, SesEvent]:
    """SES's Subscription event: the recipient changed their preferences through SES's list management."""
    return ses_event(
        "Subscription",
        send,
        {
            "contactList": "kindling-marketing",
            "timestamp": "2026-11-25T15:30:00.000Z",
            "source": "UnsubscribeHeader",
            "newTopicPreferences": {
                "unsubscribeAll": unsubscribe_all,
                "topicSubscriptionStatus": [{"topicName": "newsletter", "subscriptionStatus": "OptOut"}],
            },
            "oldTopicPreferences": {
                "unsubscribeAll": False,
                "topicSubscriptionStatus": [{"topicName": "newsletter", "subscriptionStatus": "OptIn"}],
            },
        },
    )


def test_an_ses_unsubscribe_from_every_topic_unsubscribes_the_lead_as_one_click_does(world) -> None:
    from kindling.email.links import unsubscribe
    from kindling.metrics.counters import parse_event

    lead_id = new_lead(world["table"])
    send = request(lead_id)
    publisher = RecordingPublisher()
    event_id, event = subscription_event(send, unsubscribe_all=True)
    for _ in range(2):  # delivered twice
        assert (
            apply_ses_event(event_id, event, world["store"], publisher, WEDNESDAY_10AM_NEW_YORK)
            == "unsubscribe"
        )
    lead = world["store"].lead(lead_id)
    assert lead is not None and lead.unsubscribed
    assert lead.unsubscribed_at == datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
    assert world["sender"].handle(request(lead_id), WEDNESDAY_10AM_NEW_YORK).reason == "unsubscribed"

    # The lead event one-click unsubscribe publishes, under the same id: however often and however
    # the recipient unsubscribes from one email, it is one event.
    first, again = publisher.events
    assert first.source == "kindling.email" and first.detail_type == "web.track"
    assert first.detail == again.detail
    assert first.detail["event"] == "Unsubscribed" and first.detail["lead_id"] == lead_id
    assert first.detail["message_id"] == f"unsub-all-{lead_id}-{send.send_id}"
    assert first.detail["properties"]["send_id"] == send.send_id
    assert first.detail["properties"]["contact_list"] == "kindling-marketing"
    by_link = RecordingPublisher()
    signer = LinkSigner(b"s" * 32)
    token = signer.unsubscribe_token(lead_id, send.send_id)
    unsubscribe(token, "all", signer, world["store"], by_link, WEDNESDAY_10AM_NEW_YORK)
    assert by_link.events[0].detail["message_id"] == first.detail["message_id"]

    # The metrics count it as an unsubscribe of that send.
    counted = parse_event(first.source, first.detail_type, first.detail, first.time)
    assert counted is not None and counted.kind == "unsubscribed" and counted.send_id == send.send_id

    # The profiles put it on the lead's timeline, once.
    profiles = ProfileService(DynamoLeadStore(world["table"]))
    for published in (first, again, by_link.events[0]):
        profiles.record(WebEvent.model_validate(published.detail), WEDNESDAY_10AM_NEW_YORK)
    timeline = DynamoLeadStore(world["table"]).timeline(lead_id, 50)
    assert [e.event for e in timeline].count("Unsubscribed") == 1


def test_an_ses_topic_preference_change_alone_changes_nothing(world) -> None:
    lead_id = new_lead(world["table"])
    publisher = RecordingPublisher()
    event_id, event = subscription_event(request(lead_id), unsubscribe_all=False)
    outcome = apply_ses_event(event_id, event, world["store"], publisher, WEDNESDAY_10AM_NEW_YORK)
    assert outcome == "subscription_changed"
    lead = world["store"].lead(lead_id)
    assert lead is not None and not lead.unsubscribed
    assert publisher.events == []


def test_the_sender_handler_keeps_the_reason_of_a_failing_send_for_the_dead_letter_queue(
    world, load_handler
) -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from kindling.kernel import clock
    from kindling_ops.lambda_events import sqs_record
    from tests.integration.events import Context

    class ThrottledSes:
        def send(self, email: Any) -> str:
            raise Retryable("SES did not take the email: ThrottlingException")

    lead_id = new_lead(world["table"])
    sender = load_handler(
        "sender",
        TABLE_NAME=world["table"],
        BUS_NAME="unused",
        CONFIGURATION_SET="cs",
        PUBLIC_API_URL=API,
        secrets={"LINK_SECRET_ARN": "s" * 32, "ERASURE_KEY_SECRET_ARN": "e" * 32},
    )
    sender.mailer = ThrottledSes()
    sender.publisher = RecordingPublisher()
    body = json.dumps({"send_id": "fails-1", "lead_id": lead_id, "template": "welcome-1"})
    clock.install(clock.FixedClock(WEDNESDAY_10AM_NEW_YORK))
    try:
        with pytest.raises(BatchProcessingError):  # every record failed: the queue retries, then dead-letters
            sender.lambda_handler({"Records": [sqs_record(body, "r1")]}, Context())
    finally:
        clock.install(clock.SystemClock())
    key = {"PK": {"S": "SEND#fails-1"}, "SK": {"S": "SEND"}}
    item = world["store"].client.get_item(TableName=world["table"], Key=key).get("Item", {})
    assert "ThrottlingException" in item["last_error"]["S"]
    assert item["status"]["S"] == "released", "the claim was released for the retry"
    sender.mailer = world["mailer"]
    assert (
        sender._sender().handle(SendRequest.model_validate_json(body), WEDNESDAY_10AM_NEW_YORK).status
        == "sent"
    )


def test_the_ses_events_handler_applies_an_eventbridge_envelope_from_its_queue(world, load_handler) -> None:
    from kindling_ops.lambda_events import sqs_record
    from tests.integration.events import Context

    lead_id = new_lead(world["table"])
    send = request(lead_id)
    event_id, event = ses_event(
        "Complaint",
        send,
        {
            "complainedRecipients": [{"emailAddress": "ada@acme.io"}],
            "timestamp": "2026-11-25T15:20:00.000Z",
            "complaintFeedbackType": "abuse",
        },
    )
    envelope = {
        "version": "0",
        "id": event_id,
        "detail-type": "Email Complaint Received",
        "source": "aws.ses",
        "account": "123456789012",
        "time": "2026-11-25T15:20:01Z",
        "region": "us-east-1",
        "resources": [],
        "detail": event.model_dump(by_alias=True),
    }
    bus = f"bus-{uuid.uuid4().hex[:8]}"
    boto3.client("events").create_event_bus(Name=bus)
    handler = load_handler("ses_events", TABLE_NAME=world["table"], BUS_NAME=bus)
    result = handler.lambda_handler(
        {"Records": [sqs_record(json.dumps(envelope, default=str), "r1")]}, Context()
    )
    assert result == {"batchItemFailures": []}
    assert world["store"].suppression("ada@acme.io") == "complaint"
    assert [e for e, _ in timeline_events(world["table"], lead_id)] == ["Email Complained"]


def test_list_unsubscribe_goes_out_as_a_plain_url_not_encoded_words(world) -> None:
    from kindling.adapters.ses import mime
    from kindling.email.render import RenderedEmail
    from kindling.email.sender import OutgoingEmail

    url = "https://api.acme.example/v1/unsubscribe?token=" + "T" * 150
    rendered = RenderedEmail(
        subject="Hello",
        html="<p>Hi</p>",
        text="Hi",
        tracked_links=[],
        headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    raw = mime(OutgoingEmail("ada@acme.io", "marketing@acme.example", "Acme", None, rendered, {})).decode()
    assert f"List-Unsubscribe: <{url}>\r\n" in raw  # one line, as mailbox providers read it
    assert "=?utf-8?" not in raw
