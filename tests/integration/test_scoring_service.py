"""Scoring in the profile pass, on DynamoDB (moto): exactly once, crash- and race-safe, versioned
config, MQL once with its reasons, and nothing written for a duplicate."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kindling.adapters import aws
from kindling.adapters.config_store import ConfigCache, DynamoConfigStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.score_store import DynamoScoreStore
from kindling.leads.profiles import ProfileService, RecordOutcome
from kindling.scoring.config import ScoringConfig
from kindling.scoring.service import ScoringService
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.fakes import RecordingPublisher

SHIPPED = documents(load(Path(__file__).resolve().parents[2] / "config"))["scoring.yaml"]
SHIPPED_DECAY = ScoringConfig.model_validate(SHIPPED).engagement.decay
VP = {"email": "vp@acme.io", "title": "VP Marketing", "industry": "SaaS", "company_size": 300}
WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_ids = itertools.count()


class ClientSpy:
    """A DynamoDB client that counts writes and can fail the next timeline-entry put, as a crash would."""

    def __init__(self) -> None:
        self._client = aws.client("dynamodb")
        self.writes = 0
        self.crash_before_entry = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in WRITES:
            return method

        def write(**kwargs: Any) -> Any:
            sk = kwargs.get("Item", {}).get("SK", {}).get("S", "")
            if name == "put_item" and sk.startswith("EVT#") and self.crash_before_entry:
                self.crash_before_entry -= 1
                raise RuntimeError("the function died here")
            self.writes += 1
            return method(**kwargs)

        return write


@pytest.fixture
def config_store(table: str) -> DynamoConfigStore:
    store = DynamoConfigStore(table)
    store.apply("scoring", SHIPPED, datetime(2026, 11, 1))
    return store


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def config_cache(config_store: DynamoConfigStore) -> ConfigCache[ScoringConfig]:
    return ConfigCache(config_store, "scoring", ScoringConfig)


@pytest.fixture
def spy() -> ClientSpy:
    return ClientSpy()


@pytest.fixture
def service(
    table: str, config_cache: ConfigCache, publisher: RecordingPublisher, spy: ClientSpy
) -> ProfileService:
    return ProfileService(
        DynamoLeadStore(table, spy),
        publisher,
        sleep=lambda s: None,
        scorer=ScoringService(DynamoScoreStore(table), config_cache),
    )


def web(now: datetime, **fields: Any) -> WebEvent:
    return WebEvent.model_validate(
        {"message_id": f"msg-{next(_ids)}", "timestamp": now, "received_at": now, **fields}
    )


def known_lead(service: ProfileService, now: datetime, user_id: str = "u1") -> RecordOutcome:
    return service.record(web(now, type="identify", user_id=user_id, traits=VP), now)


def test_the_same_event_delivered_twice_scores_once_and_writes_nothing_the_second_time(
    service, spy, publisher, table, now
) -> None:
    known_lead(service, now)
    demo = web(now, type="track", user_id="u1", event="Demo Requested")
    first = service.record(demo, now)
    writes = spy.writes
    again = service.record(demo, now)
    assert not first.duplicate and again.duplicate
    assert spy.writes == writes  # a duplicate delivery costs no write
    score = DynamoScoreStore(table).score(first.lead_id)
    assert score is not None and score.engagement == 40 and score.rules["demo-request"].count == 1
    # programs hear of it again (a crash may have come before the first publish) and dedupe it
    assert [a["event"]["message_id"] for a in publisher.of_type("lead.activity")][-2:] == [
        demo.message_id
    ] * 2


def test_a_crash_between_the_score_and_the_timeline_entry_does_not_score_twice(
    service, spy, table, now
) -> None:
    known_lead(service, now)
    click = web(now + timedelta(hours=1), type="track", user_id="u1", event="Email Clicked")
    spy.crash_before_entry = 1
    with pytest.raises(RuntimeError):
        service.record(click, now)
    outcome = service.record(click, now)  # the redelivery
    assert not outcome.duplicate
    score = DynamoScoreStore(table).score(outcome.lead_id)
    assert score is not None and score.rules["email-click"].count == 1
    timeline = DynamoLeadStore(table).timeline(outcome.lead_id, 10)
    assert [e.message_id for e in timeline].count(click.message_id) == 1


def test_a_crash_between_saving_and_publishing_loses_no_stage_move(table, config_cache, now) -> None:
    flaky = RecordingPublisher(fail_times=1)
    service = ProfileService(
        DynamoLeadStore(table),
        flaky,
        sleep=lambda s: None,
        scorer=ScoringService(DynamoScoreStore(table), config_cache),
    )
    identify = web(now, type="identify", user_id="u2", traits=VP)
    with pytest.raises(RuntimeError):
        service.record(identify, now)
    service.record(identify, now)  # the redelivery
    assert [e["to"] for e in flaky.of_type("lead.stage_changed")] == ["subscriber"]
    assert len(DynamoScoreStore(table).stage_history(flaky.of_type("lead.stage_changed")[0]["lead_id"])) == 1


def test_concurrent_events_for_one_lead_lose_no_points(service, table, now) -> None:
    lead = known_lead(service, now)
    clicks = [
        web(now + timedelta(days=d), type="track", user_id="u1", event="Email Clicked") for d in range(10)
    ]
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda e: service.record(e, now), clicks))
    score = DynamoScoreStore(table).score(lead.lead_id)
    assert score is not None and score.rules["email-click"].count == 10
    assert score.rules["email-click"].points == 50


def test_crossing_the_mql_threshold_moves_the_lead_once_and_explains_why(
    service, publisher, table, now
) -> None:
    known_lead(service, now)
    for minutes, name in enumerate(
        ["Demo Requested", "Webinar Registered", "Trial Started", "Demo Requested"]
    ):
        at = now + timedelta(minutes=minutes + 1)
        service.record(web(at, type="track", user_id="u1", event=name), now)
    [mql] = publisher.of_type("lead.mql")
    assert mql["lead"]["email"] == "vp@acme.io" and mql["lead"]["title"] == "VP Marketing"
    assert mql["label"] == "A1" and mql["trigger"]["event"] == "Trial Started"
    assert [r["rule"] for r in mql["reasons"]] == ["demo-request", "trial-started", "webinar-registration"]
    moves = DynamoScoreStore(table).stage_history(mql["lead_id"])
    assert [(m["from"], m["to"]) for m in reversed(moves)] == [
        (None, "subscriber"),
        ("subscriber", "lead"),
        ("lead", "mql"),
    ]
    lead = DynamoLeadStore(table).get(mql["lead_id"])
    assert lead is not None and lead.stage == "mql"


def test_a_new_config_version_applies_to_events_from_then_on(
    service, config_store, config_cache, table, now
) -> None:
    known_lead(service, now)
    service.record(web(now, type="track", user_id="u1", event="Demo Requested"), now)
    richer = {
        **SHIPPED,
        "engagement": {
            **SHIPPED["engagement"],
            "rules": [
                {**r, "points": 100} if r["id"] == "demo-request" else r
                for r in SHIPPED["engagement"]["rules"]
            ],
        },
    }
    assert config_store.apply("scoring", richer, now) == (2, True)
    assert config_store.apply("scoring", richer, now) == (2, False)
    config_cache.refresh()  # what the handler does at the start of each batch
    second = service.record(
        web(now + timedelta(minutes=1), type="track", user_id="u1", event="Demo Requested"), now
    )
    changes = DynamoScoreStore(table).changes(second.lead_id)
    assert [(c["hits"][0]["points"], c["config_version"]) for c in changes if c["hits"]] == [
        (100, 2),
        (40, 1),
    ]


def test_without_an_applied_config_events_still_reach_their_lead_unscored(table, now) -> None:
    service = ProfileService(
        DynamoLeadStore(table),
        sleep=lambda s: None,
        scorer=ScoringService(
            DynamoScoreStore(table), ConfigCache(DynamoConfigStore(table), "scoring", ScoringConfig)
        ),
    )
    outcome = known_lead(service, now)
    assert len(DynamoLeadStore(table).timeline(outcome.lead_id, 10)) == 1
    assert DynamoScoreStore(table).score(outcome.lead_id) is None


def test_an_anonymous_visitors_points_follow_them_when_they_identify(service, table, now) -> None:
    service.record(
        web(now, type="page", anonymous_id="anon-9", properties={"url": "https://x.io/pricing"}), now
    )
    known = known_lead(service, now, user_id="u9")
    identify = service.record(
        web(now + timedelta(hours=1), type="identify", anonymous_id="anon-9", user_id="u9", traits=VP), now
    )
    assert identify.lead_id == known.lead_id
    score = DynamoScoreStore(table).score(identify.lead_id)
    assert score is not None and score.rules["pricing-page"].count == 1


def test_a_page_view_that_changes_nothing_is_kept_but_not_announced(service, publisher, table, now) -> None:
    lead = known_lead(service, now)
    before = len(publisher.events)
    view = service.record(web(now + timedelta(minutes=5), type="page", user_id="u1", name="Blog"), now)
    assert view.lead_id == lead.lead_id and len(publisher.events) == before
    assert DynamoLeadStore(table).timeline(lead.lead_id, 10)[0].name == "Blog"


def test_a_merge_scores_the_surviving_lead_with_the_traits_it_took_in(service, table, now) -> None:
    # An app signup (userId, no email) and a known contact (email, VP traits) turn out to be one person.
    signup = service.record(web(now, type="identify", user_id="app-7", traits={"plan": "trial"}), now)
    contact = service.record(web(now, type="identify", anonymous_id="form-7", traits=VP), now)
    both = service.record(
        web(now + timedelta(hours=1), type="identify", user_id="app-7", anonymous_id="form-7", traits={}), now
    )
    assert both.lead_id == signup.lead_id and contact.lead_id in both.merged
    score = DynamoScoreStore(table).score(both.lead_id)
    assert score is not None and score.grade == "A", "graded on the title and company the merge brought"
    folded = DynamoScoreStore(table).score(contact.lead_id)
    assert folded is not None and folded.merged_into == both.lead_id


def test_a_merged_lead_without_a_score_is_marked_folded_so_no_late_points_land_there(
    service, table, now
) -> None:
    known_lead(service, now, user_id="u-77")
    anonymous = service.record(web(now, type="page", anonymous_id="tab-77", name="Blog"), now)
    assert DynamoScoreStore(table).score(anonymous.lead_id) is None
    merged = service.record(
        web(now + timedelta(minutes=1), type="identify", user_id="u-77", anonymous_id="tab-77"), now
    )
    assert anonymous.lead_id in merged.merged
    placeholder = DynamoScoreStore(table).score(anonymous.lead_id)
    assert placeholder is not None and placeholder.merged_into == merged.lead_id


def test_two_leads_given_the_same_timestamped_events_in_different_orders_score_the_same(
    service, table, now
) -> None:
    import random

    kinds = [
        {"type": "track", "event": "Trial Started"},  # per lead: 1
        {"type": "track", "event": "Whitepaper Downloaded"},  # per lead: 3
        {"type": "page", "properties": {"url": "https://acme.io/pricing"}},  # per day: 1
        {"type": "track", "event": "Email Clicked"},  # per day: 3
        {"type": "track", "event": "Demo Requested"},
    ]
    chooser = random.Random(7)
    plan = [(chooser.choice(kinds), now + timedelta(hours=chooser.randrange(0, 10 * 24))) for _ in range(60)]
    scores = []
    for lead, order in (("in-order", sorted), ("shuffled", lambda p: chooser.sample(p, len(p)))):
        traits = {**VP, "email": f"{lead}@acme.io"}
        service.record(web(now - timedelta(days=1), type="identify", user_id=lead, traits=traits), now)
        events = [
            web(at, user_id=lead, message_id=f"{lead}-{index}", **kind)
            for index, (kind, at) in enumerate(plan)
        ]
        delivered = order(events) if lead == "shuffled" else sorted(events, key=lambda e: e.timestamp)
        for event in [*delivered, *delivered[:10]]:  # and ten delivered twice
            outcome = service.record(event, now)
        scores.append(DynamoScoreStore(table).score(outcome.lead_id))
    in_order, shuffled = scores
    assert in_order is not None and shuffled is not None
    later = now + timedelta(days=30)
    decay = SHIPPED_DECAY
    assert shuffled.engagement_at(later, decay) == pytest.approx(in_order.engagement_at(later, decay))
    assert {r: t.count for r, t in shuffled.rules.items()} == {r: t.count for r, t in in_order.rules.items()}


def test_a_busy_leads_score_item_stays_one_write_unit(service, table, now) -> None:
    """Every scored event rewrites the score: after two busy weeks (a pricing page, an email click,
    a demo request and more, every day) it is still under 1 KB, as its state is packed."""
    import boto3

    from kindling_ops.local.meter import item_size

    kinds = [
        {"type": "track", "event": "Trial Started"},
        {"type": "track", "event": "Whitepaper Downloaded"},
        {"type": "page", "properties": {"url": "https://acme.io/pricing"}},
        {"type": "track", "event": "Email Clicked"},
        {"type": "track", "event": "Demo Requested"},
        {"type": "track", "event": "Webinar Registered"},
    ]
    lead_id = known_lead(service, now).lead_id
    for day in range(14):
        for index, kind in enumerate(kinds):
            service.record(web(now + timedelta(days=day, minutes=index), user_id="u1", **kind), now)
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "SCORE"}}
    )["Item"]
    assert item_size(item) < 1024
    score = DynamoScoreStore(table).score(lead_id)
    assert score is not None and score.rules["trial-started"].count == 1, "read back whole"
