"""Email metrics: what each event counts, and the incremental path equal to a replay."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from kindling.errors import InvalidInput, Retryable
from kindling.metrics import (
    ANY_TOUCH,
    LAST_TOUCH,
    MAX_RECENT_SENDS,
    Change,
    CounterKey,
    Counters,
    FunnelKey,
    MetricEvent,
    MetricsRecorder,
    RecentSend,
    add,
    changes_for,
    email_report,
    funnel_increments,
    funnel_report,
    is_advance,
    parse_breakdown,
    parse_event,
    parse_range,
    replay,
    send_origin,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


def sent(lead: str, send_id: str, at: datetime, template: str = "welcome-1") -> MetricEvent:
    program, step = send_origin(send_id, lead)
    return MetricEvent(f"{send_id}:sent", "sent", at, lead, send_id, template, program, step)


def moved(event_id: str, lead: str, at: datetime, from_stage: str | None, to: str) -> MetricEvent:
    return MetricEvent(event_id, "stage_changed", at, lead, from_stage=from_stage, to_stage=to)


def test_a_program_send_id_names_its_program_and_step() -> None:
    assert send_origin("welcome.ld_1.1.intro", "ld_1") == ("welcome", "intro")
    assert send_origin("welcome.ld_1.ab12.intro.3", "ld_1") == ("welcome", "intro")
    assert send_origin("api-0f3a", "ld_1") == (None, None)
    assert send_origin("custom.with.some.dots", "ld_1") == (None, None)


def test_bus_events_become_metric_events() -> None:
    detail = {
        "event_id": "welcome.ld_1.1.intro:skipped",
        "send_id": "welcome.ld_1.1.intro",
        "lead_id": "ld_1",
        "template": "welcome-1",
        "program": "welcome",
        "step": "intro",
        "reason": "quiet_period",
        "at": "2026-11-02T09:00:00+00:00",
    }
    event = parse_event("kindling.email", "email.skipped", detail, T0)
    assert event is not None and (event.kind, event.reason, event.program) == (
        "skipped",
        "quiet_period",
        "welcome",
    )
    open_detail = {
        "message_id": "open-1",
        "type": "track",
        "event": "Email Opened",
        "lead_id": "ld_1",
        "timestamp": "2026-11-03T10:00:00Z",
        "received_at": "2026-11-03T10:00:00Z",
        "properties": {"send_id": "welcome.ld_1.1.intro", "template": "welcome-1"},
    }
    opened = parse_event("kindling.email", "web.track", open_detail, T0)
    assert opened is not None and (opened.kind, opened.step, opened.event_id) == ("opened", "intro", "open-1")
    other = dict(open_detail, event="Email Frequency Reduced")
    assert parse_event("kindling.email", "web.track", other, T0) is None
    assert parse_event("kindling.capture", "web.track", open_detail, T0) is None
    stage = {"event_id": "m1:stage", "lead_id": "ld_1", "from": "lead", "to": "mql", "at": T0.isoformat()}
    moved_event = parse_event("kindling.scoring", "lead.stage_changed", stage, T0)
    assert moved_event is not None and (moved_event.from_stage, moved_event.to_stage) == ("lead", "mql")


@pytest.mark.parametrize(
    ("from_stage", "to", "advance"),
    [
        ("subscriber", "lead", True),
        ("lead", "customer", True),
        (None, "lead", True),
        ("sql", "mql", False),
        ("mql", "mql", False),
        ("closed_lost", "lead", False),
        ("opportunity", "closed_lost", False),
    ],
)
def test_only_a_move_forward_along_the_funnel_is_an_advance(from_stage, to, advance) -> None:
    assert is_advance(from_stage, to) is advance


def test_an_advance_credits_the_last_email_and_every_email_in_the_window() -> None:
    recent = [
        RecentSend("old", T0 - timedelta(days=20), "t-old", "p", "s0"),
        RecentSend("a", T0 - timedelta(days=10), "t-a", "p", "s1"),
        RecentSend("b", T0 - timedelta(days=2), "t-b", "p", "s2"),
        RecentSend("later", T0 + timedelta(hours=1), "t-later", "p", "s3"),
    ]
    change = changes_for(moved("e", "ld_1", T0, "lead", "mql"), recent, WINDOW)
    counted: Counters = {}
    add(counted, [inc for inc in change.increments if inc.key.kind == "email"])
    day = T0.date().isoformat()
    assert counted == {
        ("p#s1#t-a", day): {ANY_TOUCH: 1},
        ("p#s2#t-b", day): {ANY_TOUCH: 1, LAST_TOUCH: 1},
    }
    backwards = changes_for(moved("e", "ld_1", T0, "mql", "lead"), recent, WINDOW)
    assert backwards == Change(funnel_increments(moved("e", "ld_1", T0, "mql", "lead")))
    assert all(inc.key.kind == "funnel" for inc in backwards.increments)


def test_a_stage_move_counts_an_entry_overall_by_industry_and_by_source_with_the_deal_amount() -> None:
    won = replace(moved("w", "ld_1", T0, "opportunity", "customer"), amount=1250.5, industry="Software")
    counted: Counters = {}
    add(counted, funnel_increments(won))
    day = T0.date().isoformat()
    fields = {"entered": 1, "amount_cents": 125050, "with_amount": 1}
    assert counted == {
        ("funnel|all#customer#-", day): fields,
        ("funnel|industry#customer#Software", day): fields,
        ("funnel|source#customer#unknown", day): fields,
    }
    assert funnel_increments(moved("x", "ld_1", T0, "mql", "mql")) == ()
    stage = {"event_id": "s", "lead_id": "ld_1", "from": "sql", "to": "closed_lost", "amount": 99}
    parsed = parse_event("kindling.crm", "lead.stage_changed", stage, T0)
    assert parsed is not None and (parsed.amount, parsed.industry) == (99.0, None)
    assert parse_event("kindling.crm", "lead.stage_changed", dict(stage, amount="lots"), T0).amount is None  # type: ignore[union-attr]


def test_the_funnel_report_gives_conversion_to_the_next_stage_and_closed_deals() -> None:
    days = {
        FunnelKey("all", "lead"): [{"entered": 6}, {"entered": 4}],
        FunnelKey("all", "mql"): [{"entered": 5}],
        FunnelKey("all", "customer"): [{"entered": 2, "amount_cents": 300000, "with_amount": 1}],
        FunnelKey("all", "closed_lost"): [{"entered": 1}],
        FunnelKey("all", "sql"): [],
    }
    [group] = funnel_report(days, lambda key: days[key])
    stages = {s["stage"]: s for s in group["stages"]}
    assert group["value"] is None and stages["lead"]["conversion_to_next"] == 0.5
    assert stages["mql"]["conversion_to_next"] == 0.0 and stages["sql"]["conversion_to_next"] is None
    assert stages["customer"]["next"] is None and stages["recycled"]["entered"] == 0
    assert group["closed"] == {
        "won": {"count": 2, "with_amount": 1, "amount": 3000.0},
        "lost": {"count": 1, "with_amount": 0, "amount": 0.0},
    }
    assert parse_breakdown("industry") == "industry" and parse_breakdown(None) is None
    with pytest.raises(InvalidInput) as caught:
        parse_breakdown("country")
    assert caught.value.problems[0].startswith("by:")


def test_the_recent_list_keeps_the_newest_sends_within_the_window() -> None:
    recent: tuple[RecentSend, ...] = ()
    for i in range(30):
        change = changes_for(sent("ld_1", f"api-{i}", T0 + timedelta(hours=i)), recent, WINDOW)
        assert change.recent is not None
        recent = change.recent
    assert len(recent) == MAX_RECENT_SENDS and recent[-1].send_id == "api-29"
    late = changes_for(sent("ld_1", "api-late", T0 + timedelta(days=40)), recent, WINDOW).recent
    assert late is not None and [s.send_id for s in late] == ["api-late"]


def test_opens_and_clicks_count_once_per_send() -> None:
    events = [
        sent("ld_1", "api-1", T0),
        MetricEvent("o1", "opened", T0 + timedelta(hours=1), "ld_1", "api-1", "welcome-1"),
        MetricEvent("o2", "opened", T0 + timedelta(hours=2), "ld_1", "api-1", "welcome-1"),
        MetricEvent("c1", "clicked", T0 + timedelta(hours=2), "ld_1", "api-1", "welcome-1"),
        MetricEvent("u1", "unsubscribed", T0 + timedelta(hours=3), "ld_1", "api-1"),
    ]
    counted = replay(events, WINDOW)
    assert counted == {
        ("-#-#welcome-1", "2026-11-02"): {
            "sent": 1,
            "opened_unique": 1,
            "clicked_unique": 1,
            "unsubscribed": 1,
        }
    }


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("2026-13-01", "2026-12-01", "from"),
        (None, "2026-12-01", "from"),
        ("2026-11-01", "yesterday", "to"),
        ("2026-12-02", "2026-12-01", "from"),
        ("2025-01-01", "2026-12-01", "to"),
    ],
)
def test_a_bad_report_range_names_the_parameter(start, end, named) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_range(start, end)
    assert caught.value.problems[0].startswith(f"{named}:")


def test_a_report_row_sums_days_and_gives_rates() -> None:
    key = CounterKey("welcome", "intro", "welcome-1")
    days = [
        {"sent": 3, "opened_unique": 1, "skipped": 1, "skipped_quiet_period": 1},
        {"sent": 1, "opened_unique": 1, "clicked_unique": 1, LAST_TOUCH: 1, ANY_TOUCH: 2},
    ]
    [row] = email_report([key, CounterKey(None, None, "empty")], lambda k: days if k == key else [])
    assert row["sent"] == 4 and row["skipped"] == {"total": 1, "by_reason": {"quiet_period": 1}}
    assert row["rates"]["open"] == 0.5 and row["rates"]["click_to_open"] == 0.5
    assert (row["stage_advances_last_touch"], row["stage_advances_any_touch"]) == (1, 2)


# --- the incremental path equals a replay ------------------------------------------------------------------


@dataclass
class MemoryMetricsStore:
    """The consumer's store in memory, with the Dynamo store's semantics (dedup, markers, versions)."""

    send_templates: dict[str, str]
    traits: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    counters: Counters = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    recent: dict[str, tuple[tuple[RecentSend, ...], int]] = field(default_factory=dict)

    def recent_sends(self, lead_id: str) -> tuple[list[RecentSend], int]:
        sends, version = self.recent.get(lead_id, ((), 0))
        return list(sends), version

    def send_template(self, send_id: str) -> str | None:
        return self.send_templates.get(send_id)

    def lead_traits(self, lead_id: str) -> tuple[str | None, str | None]:
        return self.traits.get(lead_id, (None, None))

    def commit(self, lead_id: str, event_id: str, change: Change, recent_version: int) -> str:
        if event_id in self.applied:
            return "duplicate"
        if change.unique is not None and change.unique in self.seen:
            return "seen"
        if change.recent is not None and self.recent.get(lead_id, ((), 0))[1] != recent_version:
            raise Retryable("the recent list moved")
        self.applied.add(event_id)
        if change.unique is not None:
            self.seen.add(change.unique)
        if change.recent is not None:
            self.recent[lead_id] = (change.recent, recent_version + 1)
        add(self.counters, change.increments)
        return "applied"


def event_stream(seed: int) -> tuple[list[MetricEvent], dict[str, str]]:
    """A month of a few hundred leads: sends, skips, deferrals, opens, clicks, stage moves, redeliveries."""
    rng = random.Random(seed)
    funnel = ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]
    timed: list[tuple[datetime, int, MetricEvent]] = []
    templates: dict[str, str] = {}
    n = 0

    def emit(event: MetricEvent) -> None:
        nonlocal n
        n += 1
        timed.append((event.at, n, event))

    for i in range(300):
        lead = f"ld_{i:04d}"
        stage = rng.randrange(3)
        at = T0 + timedelta(minutes=rng.randrange(60 * 24 * 3))
        for k in range(rng.randrange(1, 9)):
            at += timedelta(hours=rng.randrange(6, 24 * 6))
            program = rng.choice(["welcome", "nurture", None])
            template = rng.choice(["welcome-1", "welcome-2", "case-study", "webinar"])
            send_id = f"{program}.{lead}.1.step{k % 3}.{k + 1}" if program else f"api-{lead}-{k}"
            templates[send_id] = template
            origin = send_origin(send_id, lead)
            roll = rng.random()
            if roll < 0.1:
                reason = rng.choice(["quiet_period", "unsubscribed", "suppressed"])
                emit(
                    MetricEvent(f"{send_id}:skipped", "skipped", at, lead, send_id, template, *origin, reason)
                )
                continue
            if roll < 0.2:
                emit(MetricEvent(f"{send_id}:deferred", "deferred", at, lead, send_id, template, *origin))
                at += timedelta(hours=rng.randrange(1, 48))
            emit(MetricEvent(f"{send_id}:sent", "sent", at, lead, send_id, template, *origin))
            for j in range(rng.choice([0, 0, 1, 2, 3])):
                when = at + timedelta(minutes=rng.randrange(5, 3000))
                emit(MetricEvent(f"open-{send_id}-{j}", "opened", when, lead, send_id, template, *origin))
                if rng.random() < 0.4:
                    when += timedelta(minutes=1)
                    emit(
                        MetricEvent(f"click-{send_id}-{j}", "clicked", when, lead, send_id, template, *origin)
                    )
            if rng.random() < 0.03:
                when = at + timedelta(hours=2)
                emit(MetricEvent(f"unsub-{send_id}", "unsubscribed", when, lead, send_id, None, *origin))
            if rng.random() < 0.25 and stage < len(funnel) - 1:
                when = at + timedelta(days=rng.choice([1, 3, 10, 20]))
                by = "scoring" if stage < 2 else "crm"
                to = stage + 1 if rng.random() < 0.9 else max(stage - 1, 0)
                event = moved(f"{lead}-{k}:{by}:stage", lead, when, funnel[stage], funnel[to])
                if rng.random() < 0.3:  # the CRM's own events carry the deal amount and the industry
                    event = replace(event, amount=rng.choice([None, 500.0, 1999.99]), industry="Retail")
                emit(event)
                stage = to
            if k == 0 and rng.random() < 0.05:
                lost = moved(f"{lead}:lost:stage", lead, at + timedelta(days=2), funnel[stage], "closed_lost")
                emit(replace(lost, amount=rng.choice([None, 750.0])))
    stream = [event for _, _, event in sorted(timed, key=lambda t: (t[0], t[1]))]
    # Redeliveries: some events arrive again, a little later in the stream.
    with_duplicates: list[MetricEvent] = []
    for event in stream:
        with_duplicates.append(event)
        if rng.random() < 0.15:
            with_duplicates.insert(
                rng.randrange(max(0, len(with_duplicates) - 5), len(with_duplicates)), event
            )
    return with_duplicates, templates


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counting_events_one_by_one_with_redeliveries_equals_replaying_the_deduplicated_stream(seed) -> None:
    events, templates = event_stream(seed)
    assert len(events) > 1000 and len({e.event_id for e in events}) < len(events)
    traits = {
        f"ld_{i:04d}": (["Software", None, "Health"][i % 3], [None, "google"][i % 2]) for i in range(300)
    }
    store = MemoryMetricsStore(templates, traits)
    recorder = MetricsRecorder(store, WINDOW)
    outcomes = [recorder.record(event) for event in events]
    assert "duplicate" in outcomes and "seen" in outcomes
    first_seen: dict[str, MetricEvent] = {}
    for e in events:
        first_seen.setdefault(e.event_id, e)
    deduplicated = list(first_seen.values())
    expected = replay(deduplicated, WINDOW, lambda lead: traits.get(lead, (None, None)))
    assert store.counters == expected
    totals: dict[str, int] = {}
    for fields in expected.values():
        for name, amount in fields.items():
            totals[name] = totals.get(name, 0) + amount
    assert totals["sent"] > 300 and totals["opened_unique"] > 100 and totals[LAST_TOUCH] > 10
    assert totals[ANY_TOUCH] > totals[LAST_TOUCH]
    assert totals["unsubscribed"] > 0 and totals["skipped"] > 0
    funnel = {key: fields for key, fields in expected.items() if key[0].startswith("funnel|")}
    assert sum(f.get("entered", 0) for (k, _), f in funnel.items() if k.startswith("funnel|all#")) > 20
    assert any("#Software" in k for k, _ in funnel) and any("#google" in k for k, _ in funnel)
    assert any("#Retail" in k for k, _ in funnel) and any(f.get("amount_cents") for f in funnel.values())
