"""Metrics: what each event counts, the reports built from counters, and the incremental path equal
to a replay of the same events."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kindling.kernel.errors import InvalidInput, Retryable
from kindling.metrics.counters import (
    ANY_TOUCH,
    LAST_TOUCH,
    MAX_RECENT_SENDS,
    MAX_VALUES,
    Change,
    CounterKey,
    Counters,
    Folded,
    FunnelKey,
    LeadBreakdown,
    LeadState,
    MetricEvent,
    MetricsRecorder,
    RecentSend,
    Replay,
    add,
    bucket_seconds,
    changes_for,
    email_report,
    fold_events,
    funnel_report,
    increments_of,
    is_advance,
    is_fresh,
    log_order,
    median_seconds,
    parse_breakdown,
    parse_event,
    parse_range,
    pseudonym,
    replay,
    send_origin,
    time_bucket,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = T0.date().isoformat()
WINDOW = timedelta(days=14)


def sent(lead: str, send_id: str, at: datetime, template: str = "welcome-1") -> MetricEvent:
    program, step = send_origin(send_id, lead)
    return MetricEvent(f"{send_id}:sent", "sent", at, lead, send_id, template, program, step)


def moved(
    event_id: str, lead: str, at: datetime, from_stage: str | None, to: str, **extra: Any
) -> MetricEvent:
    return MetricEvent(event_id, "stage_changed", at, lead, from_stage=from_stage, to_stage=to, **extra)


def counted(change: Change, kind: str | None = None) -> Counters:
    result: Counters = {}
    add(result, [inc for inc in change.increments if kind is None or inc.key.kind == kind])
    return result


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


def test_ses_outcomes_become_metric_events_of_their_send() -> None:
    detail = {
        "event_id": "ses-9",
        "lead_id": "ld_1",
        "send_id": "welcome.ld_1.1.intro",
        "template": None,
        "bounce_type": "Permanent",
        "at": "2026-11-02T09:05:00+00:00",
    }
    bounced = parse_event("kindling.email", "email.bounced", detail, T0)
    assert bounced is not None
    assert (bounced.kind, bounced.program, bounced.step, bounced.template) == (
        "bounced",
        "welcome",
        "intro",
        None,
    )
    assert bounced.bounce_type == "Permanent" and bounced.event_id == "ses-9"
    delivered = parse_event("kindling.email", "email.delivered", dict(detail, bounce_type=None), T0)
    assert delivered is not None and delivered.kind == "delivered"
    assert parse_event("kindling.email", "email.delivered", dict(detail, send_id=None), T0) is None


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
    sends = (
        RecentSend("old", T0 - timedelta(days=20), "t-old", "p", "s0"),
        RecentSend("a", T0 - timedelta(days=10), "t-a", "p", "s1"),
        RecentSend("b", T0 - timedelta(days=2), "t-b", "q", "s2"),
        RecentSend("later", T0 + timedelta(hours=1), "t-later", "p", "s3"),
    )
    change = changes_for(moved("e", "ld_1", T0, "lead", "mql"), LeadState(sends), WINDOW)
    assert counted(change, "email") == {
        ("p#s1#t-a", DAY): {ANY_TOUCH: 1},
        ("q#s2#t-b", DAY): {ANY_TOUCH: 1, LAST_TOUCH: 1},
    }
    # The program of the last email is the move's program breakdown.
    assert ("funnel|program#q", DAY) in counted(change)
    backwards = changes_for(moved("e", "ld_1", T0, "mql", "lead"), LeadState(sends), WINDOW)
    assert counted(backwards, "email") == {}
    assert counted(backwards)[("funnel|all#-", DAY)] == {"lead:entered": 1}


def test_a_stage_move_counts_once_under_each_breakdown_value_with_the_deal_amount() -> None:
    context = LeadBreakdown.of("Software", "google", ["enterprise", "emea"], ["pricing"])
    won = moved("w", "ld_1", T0, "opportunity", "customer", amount=1250.5, context=context)
    fields = {"customer:entered": 1, "customer:amount_cents": 125050, "customer:with_amount": 1}
    assert counted(changes_for(won)) == {
        ("funnel|all#-", DAY): fields,
        ("funnel|industry#Software", DAY): fields,
        ("funnel|source#google", DAY): fields,
        ("funnel|program#none", DAY): fields,
        ("funnel|segment#emea", DAY): fields,
        ("funnel|segment#enterprise", DAY): fields,
        ("funnel|intent#pricing", DAY): fields,
    }
    unknown = counted(changes_for(moved("x", "ld_1", T0, "lead", "mql")))
    assert {name for name, _ in unknown} == {
        "funnel|all#-",
        "funnel|industry#unknown",
        "funnel|source#unknown",
        "funnel|program#none",
        "funnel|segment#none",
        "funnel|intent#none",
    }
    assert changes_for(moved("x", "ld_1", T0, "mql", "mql")).increments == ()
    stage = {"event_id": "s", "lead_id": "ld_1", "from": "sql", "to": "closed_lost", "amount": 99}
    parsed = parse_event("kindling.crm", "lead.stage_changed", stage, T0)
    assert parsed is not None and parsed.amount == 99.0
    assert parse_event("kindling.crm", "lead.stage_changed", dict(stage, amount="lots"), T0).amount is None  # type: ignore[union-attr]


def test_a_lead_context_is_trimmed_sorted_and_capped() -> None:
    context = LeadBreakdown.of(" Retail ", "", [f"seg-{i}" for i in range(9, -1, -1)], ["", None, "demo"])
    assert (context.industry, context.source, context.intent) == ("Retail", None, ("demo",))
    assert context.segments == tuple(f"seg-{i}" for i in range(MAX_VALUES))
    assert LeadBreakdown.from_json(context.to_json()) == context


def test_leaving_a_stage_records_how_long_the_lead_was_in_it() -> None:
    first = changes_for(moved("a", "ld_1", T0, "subscriber", "lead"))
    assert first.state == LeadState(stage="lead", since=T0)
    assert not any(":left" in f for fields in counted(first).values() for f in fields)
    later = T0 + timedelta(days=3)
    second = changes_for(moved("b", "ld_1", later, "lead", "mql"), first.state or LeadState())
    bucket = time_bucket(timedelta(days=3))
    assert counted(second)[("funnel|all#-", later.date().isoformat())] == {
        "mql:entered": 1,
        "lead:left": 1,
        f"lead:tis:{bucket}": 1,
    }
    assert second.state == LeadState(stage="mql", since=later)
    # A move that happened before the one already counted changes no state and measures nothing.
    stale = changes_for(
        moved("c", "ld_1", T0 + timedelta(days=1), "lead", "sql"), second.state or LeadState()
    )
    assert stale.state is None and not any(":left" in f for fields in counted(stale).values() for f in fields)


@given(st.floats(min_value=0, max_value=3 * 365 * 86400))
def test_a_time_in_stage_bucket_stands_for_its_durations_within_five_percent(seconds: float) -> None:
    represented = bucket_seconds(time_bucket(timedelta(seconds=seconds)))
    if seconds >= 3600:
        assert abs(represented - seconds) / seconds < 0.05
    else:
        assert represented == 1800


def test_the_median_time_in_stage_is_read_from_the_histogram() -> None:
    durations = [timedelta(hours=h) for h in (2, 30, 50, 72, 400)]
    histogram: dict[int, int] = {}
    for d in durations:
        histogram[time_bucket(d)] = histogram.get(time_bucket(d), 0) + 1
    median = median_seconds(histogram)
    assert median is not None and abs(median - 50 * 3600) / (50 * 3600) < 0.05
    assert median_seconds({}) is None


def test_the_funnel_report_gives_conversion_time_in_stage_closed_deals_and_a_daily_series() -> None:
    three_days = time_bucket(timedelta(days=3))
    days = {
        FunnelKey("all"): {
            "2026-11-02": {"lead:entered": 6, "customer:entered": 2, "customer:amount_cents": 300000},
            "2026-11-05": {"lead:entered": 4, "mql:entered": 5, "lead:left": 5, f"lead:tis:{three_days}": 5},
            "2026-11-06": {"customer:with_amount": 1, "closed_lost:entered": 1},
        },
    }
    [group] = funnel_report(days, lambda key: days[key])
    stages = {s["stage"]: s for s in group["stages"]}
    assert group["value"] is None and stages["lead"]["conversion_to_next"] == 0.5
    assert stages["mql"]["conversion_to_next"] == 0.0 and stages["sql"]["conversion_to_next"] is None
    assert stages["customer"]["next"] is None and stages["recycled"]["entered"] == 0
    assert stages["lead"]["left"] == 5 and abs(stages["lead"]["median_days_in_stage"] - 3) < 0.15
    assert stages["mql"]["median_days_in_stage"] is None
    assert group["closed"] == {
        "won": {"count": 2, "with_amount": 1, "amount": 3000.0},
        "lost": {"count": 1, "with_amount": 0, "amount": 0.0},
    }
    assert [(d["day"], d["entered"]["lead"], d["entered"]["mql"]) for d in group["daily"]] == [
        ("2026-11-02", 6, 0),
        ("2026-11-05", 4, 5),
        ("2026-11-06", 0, 0),
    ]
    assert parse_breakdown("industry") == "industry" and parse_breakdown(None) is None
    with pytest.raises(InvalidInput) as caught:
        parse_breakdown("country")
    assert caught.value.problems[0].startswith("by:")


def test_the_recent_list_keeps_the_newest_sends_within_the_window() -> None:
    state = LeadState()
    for i in range(30):
        change = changes_for(sent("ld_1", f"api-{i}", T0 + timedelta(hours=i)), state, WINDOW)
        assert change.state is not None
        state = change.state
    assert len(state.sends) == MAX_RECENT_SENDS and state.sends[-1].send_id == "api-29"
    late = changes_for(sent("ld_1", "api-late", T0 + timedelta(days=40)), state, WINDOW).state
    assert late is not None and [s.send_id for s in late.sends] == ["api-late"]
    assert LeadState.from_json(state.to_json()) == state


def test_opens_clicks_deliveries_and_bounces_count_once_per_send() -> None:
    events = [
        sent("ld_1", "api-1", T0),
        MetricEvent("d1", "delivered", T0 + timedelta(minutes=1), "ld_1", "api-1", "welcome-1"),
        MetricEvent("d2", "delivered", T0 + timedelta(minutes=2), "ld_1", "api-1", "welcome-1"),
        MetricEvent("o1", "opened", T0 + timedelta(hours=1), "ld_1", "api-1", "welcome-1"),
        MetricEvent("o2", "opened", T0 + timedelta(hours=2), "ld_1", "api-1", "welcome-1"),
        MetricEvent("c1", "clicked", T0 + timedelta(hours=2), "ld_1", "api-1", "welcome-1"),
        MetricEvent("u1", "unsubscribed", T0 + timedelta(hours=3), "ld_1", "api-1"),
        sent("ld_1", "api-2", T0),
        MetricEvent("b1", "bounced", T0, "ld_1", "api-2", bounce_type="Permanent"),
        MetricEvent("b2", "bounced", T0, "ld_1", "api-2", bounce_type="Permanent"),
    ]
    assert replay(events, WINDOW) == {
        ("-#-#welcome-1", DAY): {
            "sent": 2,
            "delivered": 1,
            "opened_unique": 1,
            "clicked_unique": 1,
            "unsubscribed": 1,
            "bounced": 1,
            "bounced_permanent": 1,
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


def test_an_email_report_sums_days_gives_rates_totals_and_a_daily_series() -> None:
    intro, nudge = CounterKey("welcome", "intro", "welcome-1"), CounterKey("welcome", "nudge", "welcome-2")
    days = {
        intro: {
            "2026-11-02": {
                "sent": 3,
                "delivered": 3,
                "opened_unique": 1,
                "skipped": 1,
                "skipped_quiet_period": 1,
            },
            "2026-11-03": {"sent": 1, "opened_unique": 1, "clicked_unique": 1, LAST_TOUCH: 1, ANY_TOUCH: 2},
        },
        nudge: {"2026-11-03": {"sent": 2, "bounced": 1}},
        CounterKey(None, None, "empty"): {},
    }
    report = email_report(days, lambda k: days[k])
    first, second = report["rows"]
    assert (first["step"], first["sent"], first["delivered"]) == ("intro", 4, 3)
    assert first["skipped"] == {"total": 1, "by_reason": {"quiet_period": 1}}
    assert first["rates"]["open"] == 0.5 and first["rates"]["click_to_open"] == 0.5
    assert (first["stage_advances_last_touch"], first["stage_advances_any_touch"]) == (1, 2)
    assert [(d["day"], d["sent"]) for d in first["daily"]] == [("2026-11-02", 3), ("2026-11-03", 1)]
    assert second["bounced"] == {"total": 1, "permanent": 0} and second["rates"]["bounce"] == 0.5
    totals = report["totals"]
    assert (totals["sent"], totals["opened_unique"]) == (6, 2)
    assert [(d["day"], d["sent"]) for d in totals["daily"]] == [("2026-11-02", 3), ("2026-11-03", 3)]
    [by_program] = email_report(days, lambda k: days[k], by="program")["rows"]
    assert (by_program["program"], by_program["sent"], by_program["clicked_unique"]) == ("welcome", 6, 1)


def test_counters_read_back_as_the_same_increments() -> None:
    context = LeadBreakdown.of("Retail|Food", "google", ["a#b"])
    change = changes_for(moved("w", "ld_1", T0, "sql", "customer", amount=10.0, context=context))
    once = counted(change)
    again: Counters = {}
    add(again, increments_of(once))
    assert again == once


# --- the incremental path equals a replay ------------------------------------------------------------------


@dataclass
class MemoryMetricsStore:
    """The consumer's store in memory, with the Dynamo store's semantics (the log as dedup, markers,
    versions): ``entries`` maps an entry's (time, event id) to the reduced event and the generation that
    applied it late (None: left to the fold)."""

    send_templates: dict[str, str]
    contexts: dict[str, LeadBreakdown] = field(default_factory=dict)
    counters: Counters = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    states: dict[str, tuple[LeadState, int]] = field(default_factory=dict)
    entries: dict[tuple[datetime, str], tuple[MetricEvent, int | None]] = field(default_factory=dict)

    def logged(self, event: MetricEvent) -> bool:
        return log_order(event) in self.entries

    def lead_state(self, lead_id: str) -> tuple[LeadState, int]:
        return self.states.get(lead_id, (LeadState(), 0))

    def send_template(self, send_id: str) -> str | None:
        return self.send_templates.get(send_id)

    def lead_context(self, lead_id: str) -> LeadBreakdown:
        return self.contexts.get(lead_id, LeadBreakdown())

    def log(self, event: MetricEvent) -> str:
        if log_order(event) in self.entries:
            return "duplicate"
        self.entries[log_order(event)] = (event, None)
        return "logged"

    def commit(self, event: MetricEvent, change: Change, state_version: int) -> str:
        if log_order(event) in self.entries:
            return "duplicate"
        if change.state is not None and self.states.get(event.lead_id, (None, 0))[1] != state_version:
            raise Retryable("the lead's state moved")
        self.entries[log_order(event)] = (event, 0)
        if change.unique is not None:
            if change.unique in self.seen:
                return "seen"
            self.seen.add(change.unique)
        if change.state is not None:
            self.states[event.lead_id] = (change.state, state_version + 1)
        add(self.counters, change.increments)
        return "applied"

    def fold(self, until: datetime) -> Folded:
        """What a fold up to ``until`` does to this store (as the Dynamo fold does to the table)."""
        events = [e for (at, _), (e, applied) in self.entries.items() if applied is None and at <= until]
        for event in events:
            self.entries[log_order(event)] = (event, -1)  # folded
        folded = fold_events(events, {lead: s for lead, (s, _) in self.states.items()}, self.seen, WINDOW)
        self.seen |= folded.markers
        for lead, state in folded.states.items():
            self.states[lead] = (state, self.states.get(lead, (None, 0))[1] + 1)
        add(self.counters, increments_of(folded.counters))
        return folded


def on_the_bus(event: MetricEvent) -> tuple[str, str, dict[str, Any], datetime]:
    """The bus event (source, detail-type, detail, time) a metric event comes from."""
    if event.kind == "stage_changed":
        detail = {"event_id": event.event_id, "lead_id": event.lead_id, "from": event.from_stage}
        detail |= {"to": event.to_stage, "amount": event.amount, "at": event.at.isoformat()}
        return "kindling.crm", "lead.stage_changed", detail, event.at
    if event.kind in ("opened", "clicked", "unsubscribed"):
        name = {"opened": "Email Opened", "clicked": "Email Clicked", "unsubscribed": "Unsubscribed"}[
            event.kind
        ]
        properties = {"send_id": event.send_id, "template": event.template}
        detail = {"message_id": event.event_id, "type": "track", "event": name, "lead_id": event.lead_id}
        detail |= {"timestamp": event.at.isoformat(), "properties": properties}
        return "kindling.email", "web.track", detail, event.at
    detail = {"event_id": event.event_id, "lead_id": event.lead_id, "send_id": event.send_id}
    detail |= {"template": event.template, "program": event.program, "step": event.step}
    detail |= {"reason": event.reason, "bounce_type": event.bounce_type, "at": event.at.isoformat()}
    return "kindling.email", f"email.{event.kind}", detail, event.at


def event_stream(seed: int, leads: int = 300) -> tuple[list[MetricEvent], dict[str, str]]:
    """A month of a few hundred leads: sends, skips, deferrals, deliveries, opens, clicks, stage moves,
    redeliveries."""
    rng = random.Random(seed)
    funnel = ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]
    timed: list[tuple[datetime, int, MetricEvent]] = []
    templates: dict[str, str] = {}
    n = 0

    def emit(event: MetricEvent) -> None:
        nonlocal n
        n += 1
        timed.append((event.at, n, event))

    for i in range(leads):
        lead = f"ld_{i:04d}"
        stage = rng.randrange(3)
        at = T0 + timedelta(minutes=rng.randrange(60 * 24 * 3))
        emit(moved(f"{lead}:first", lead, at - timedelta(hours=1), None, funnel[stage]))
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
            outcome = rng.random()
            when = at + timedelta(minutes=1)
            if outcome < 0.05:
                kind = rng.choice(["Permanent", "Transient"])
                emit(
                    MetricEvent(
                        f"ses-b-{send_id}",
                        "bounced",
                        when,
                        lead,
                        send_id,
                        template,
                        *origin,
                        bounce_type=kind,
                    )
                )
                continue
            emit(MetricEvent(f"ses-d-{send_id}", "delivered", when, lead, send_id, template, *origin))
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
                to = stage + 1 if rng.random() < 0.9 else max(stage - 1, 0)
                amount = rng.choice([None, 500.0, 1999.99]) if funnel[to] == "customer" else None
                emit(moved(f"{lead}-{k}:stage", lead, when, funnel[stage], funnel[to], amount=amount))
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


def lead_contexts() -> dict[str, LeadBreakdown]:
    return {
        f"ld_{i:04d}": LeadBreakdown.of(
            ["Software", None, "Health"][i % 3],
            [None, "google", "linkedin.com"][i % 3],
            [["enterprise"], [], ["smb", "emea"]][i % 3],
            [[], ["pricing"], ["pricing", "demo"], ["research"]][i % 4],
        )
        for i in range(300)
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_events_counted_one_by_one_with_redeliveries_equal_replaying_the_logged_events(seed) -> None:
    """Every event arriving an hour after it happened: each is applied at once, as before the fold."""
    events, templates = event_stream(seed)
    assert len(events) > 1000 and len({e.event_id for e in events}) < len(events)
    store = MemoryMetricsStore(templates, lead_contexts())
    recorder = MetricsRecorder(store, WINDOW)
    outcomes = [recorder.record(*on_the_bus(e), now=e.at + timedelta(hours=1)) for e in events]
    assert "duplicate" in outcomes and "seen" in outcomes and "logged" not in outcomes
    assert all(applied == 0 for _, applied in store.entries.values())

    rebuilt = Replay(WINDOW)
    for event, _ in store.entries.values():  # in the order they arrived, as the consumer applied them
        rebuilt.apply(event)
    assert store.counters == rebuilt.counters

    totals: dict[str, int] = {}
    for fields in rebuilt.counters.values():
        for name, amount in fields.items():
            totals[name] = totals.get(name, 0) + amount
    assert totals["sent"] > 300 and totals["opened_unique"] > 100 and totals[LAST_TOUCH] > 10
    assert totals["delivered"] > 250 and totals["bounced"] > 0
    assert totals[ANY_TOUCH] > totals[LAST_TOUCH]
    assert totals["unsubscribed"] > 0 and totals["skipped"] > 0
    names = {name for name, _ in rebuilt.counters}
    for expected in ("industry#Software", "source#google", "segment#emea", "intent#demo", "program#welcome"):
        assert f"funnel|{expected}" in names
    assert any(f.endswith(":left") for fields in rebuilt.counters.values() for f in fields)
    assert any(f.endswith(":amount_cents") for fields in rebuilt.counters.values() for f in fields)


# --- the fold ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_folding_a_shuffled_stream_in_stretches_equals_replaying_it_in_time_order(seed) -> None:
    events, templates = event_stream(seed)
    rng = random.Random(seed)
    arrivals = list(events)
    rng.shuffle(arrivals)
    store = MemoryMetricsStore(templates, lead_contexts())
    recorder = MetricsRecorder(store, WINDOW)
    # Each event reaches the consumer within a minute of happening, in no particular order.
    outcomes = [recorder.record(*on_the_bus(e), now=e.at + timedelta(seconds=30)) for e in arrivals]
    assert set(outcomes) == {"logged", "duplicate"} and store.counters == {}
    assert outcomes.count("logged") == len({e.event_id for e in events})

    logged = [event for event, _ in store.entries.values()]
    cuts = sorted(rng.sample(sorted({e.at for e in logged}), 40))
    counted = sum(store.fold(until).counted for until in [*cuts, max(e.at for e in logged)])

    expected = Replay(WINDOW)
    expected_counted = sum(expected.apply(event) for event in sorted(logged, key=log_order))
    assert store.counters == expected.counters and counted == expected_counted < len(logged)
    totals: dict[str, int] = {}
    for fields in store.counters.values():
        for name, amount in fields.items():
            totals[name] = totals.get(name, 0) + amount
    assert totals["sent"] > 300 and totals["opened_unique"] > 100 and totals[LAST_TOUCH] > 10


def test_a_fold_counts_a_redelivered_event_once_and_a_first_open_once_across_folds() -> None:
    send = "welcome.ld_1.1.intro"
    first = sent("ld_1", send, T0)
    origin = ("welcome-1", "welcome", "intro")
    delivered = MetricEvent("d1", "delivered", T0 + timedelta(minutes=1), "ld_1", send, *origin)
    opens = [
        MetricEvent(f"o{i}", "opened", T0 + timedelta(minutes=5 * i), "ld_1", send, *origin) for i in (1, 2)
    ]
    one = fold_events([opens[0], delivered, first, delivered], {}, set(), WINDOW)
    assert one.counted == 3 and one.markers == {f"{send}#delivered", f"{send}#opened"}
    two = fold_events([opens[1]], one.states, one.markers, WINDOW)
    assert two.counters == {} and two.counted == 0 and two.markers == frozenset()
    key = ("welcome#intro#welcome-1", DAY)
    assert one.counters == {key: {"sent": 1, "delivered": 1, "opened_unique": 1}}


def test_a_stage_move_folded_after_the_send_credits_it_and_times_the_stage_across_folds() -> None:
    send = "nurture.ld_2.1.case"
    enter = moved("m1", "ld_2", T0, "lead", "mql")
    one = fold_events([sent("ld_2", send, T0 + timedelta(hours=1), "case-study"), enter], {}, set(), WINDOW)
    assert one.states["ld_2"].stage == "mql" and [s.send_id for s in one.states["ld_2"].sends] == [send]

    advance = moved("m2", "ld_2", T0 + timedelta(days=3), "mql", "sql")
    two = fold_events([advance], one.states, one.markers, WINDOW)
    day = (T0 + timedelta(days=3)).date().isoformat()
    assert two.counters[("nurture#case#case-study", day)] == {LAST_TOUCH: 1, ANY_TOUCH: 1}
    overall = two.counters[("funnel|all#-", day)]
    bucket = time_bucket(timedelta(days=3))
    assert overall == {"sql:entered": 1, "mql:left": 1, f"mql:tis:{bucket}": 1}
    assert two.counters[("funnel|program#nurture", day)]["sql:entered"] == 1
    # Folding both stretches at once gives the same.
    both = fold_events(
        [advance, *[sent("ld_2", send, T0 + timedelta(hours=1), "case-study"), enter]], {}, set()
    )
    merged: Counters = {}
    add(merged, increments_of(one.counters))
    add(merged, increments_of(two.counters))
    assert both.counters == merged


def test_the_consumer_only_logs_a_fresh_event_and_applies_a_late_one_keeping_no_personal_data() -> None:
    store = MemoryMetricsStore({"api-7": "webinar"})
    recorder = MetricsRecorder(store, WINDOW)
    detail = {
        "message_id": "msg-7",
        "event": "Email Opened",
        "lead_id": "ld_7",
        "timestamp": T0.isoformat(),
        "context": {"ip": "203.0.113.9", "user_agent": "Mail"},
        "traits": {"email": "ann@example.com", "name": "Ann Example"},
        "properties": {"send_id": "api-7", "note": "call me on +44 20 7946 0000"},
    }
    fresh = T0 + timedelta(minutes=4, seconds=59)
    assert is_fresh(parse_event("kindling.email", "web.track", detail, T0), fresh)  # type: ignore[arg-type]
    assert recorder.record("kindling.email", "web.track", detail, T0, now=fresh) == "logged"
    assert recorder.record("kindling.email", "web.track", detail, T0, now=fresh) == "duplicate"
    assert store.counters == {}
    ((event, applied),) = store.entries.values()
    assert applied is None and event.template == "webinar"
    kept = f"{event.event_id} {event.to_json()}"
    for personal in ("ann@", "Ann", "203.0.113", "7946", "Mail", "ld_7", "api-7"):
        assert personal not in kept, "no address, name, IP, phone, nor the lead's or the send's id"
    assert (event.lead_id, event.send_id) == (pseudonym("ld_7"), pseudonym("api-7")), "the same pseudonyms"

    late = T0 + timedelta(minutes=5, seconds=1)
    later = dict(detail, message_id="msg-8", properties={"send_id": "api-8"})
    assert recorder.record("kindling.email", "web.track", later, T0, now=late) == "applied"
    assert store.counters == {("-#-#-", DAY): {"opened_unique": 1}}
    assert MetricEvent.from_json(pseudonym("msg-7"), event.to_json()) == event
