"""Scoring rules, decay, grades and stage moves: pure, no storage."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kindling.scoring.config import ScoringConfig
from kindling.scoring.rules import LeadScore, explain, label, reasons, score_event
from kindling_ops.config import load

CONFIG: ScoringConfig = load(Path(__file__).resolve().parents[2] / "config")["scoring.yaml"]  # type: ignore[assignment]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
VP = {"title": "VP Marketing", "industry": "SaaS", "company_size": 400}
_ids = itertools.count()


def event(kind: str = "track", at: datetime = T0, **fields: Any) -> dict[str, Any]:
    return {
        "message_id": f"m{next(_ids)}",
        "type": kind,
        "timestamp": at.isoformat(),
        "properties": {},
        "context": {},
        **fields,
    }


def apply(
    state: LeadScore,
    ev: dict[str, Any],
    traits: dict | None = None,
    email: str | None = "a@acme.io",
    stage: str | None = None,
):
    return score_event(
        state,
        ev,
        traits=traits or {},
        email=email,
        stage=stage,
        config=CONFIG,  # type: ignore[arg-type]
        version=1,
    )


def test_a_demo_request_scores_its_rule_and_records_the_cause() -> None:
    result = apply(LeadScore(lead_id="l"), event(event="Demo Requested"))
    assert [(h.rule_id, h.points) for h in result.hits] == [("demo-request", 40)]
    assert result.score.engagement == 40 and result.score.rules["demo-request"].count == 1


def test_a_page_rule_matches_its_url_pattern_case_insensitively() -> None:
    hit = apply(LeadScore(lead_id="l"), event("page", properties={"url": "https://acme.io/PRICING?plan=pro"}))
    miss = apply(LeadScore(lead_id="l"), event("page", properties={"url": "https://acme.io/docs"}))
    assert [h.rule_id for h in hit.hits] == ["pricing-page"] and miss.hits == []


def test_negative_rules_subtract_points() -> None:
    result = apply(
        LeadScore(lead_id="l"), event("page", context={"page": {"url": "https://acme.io/careers"}})
    )
    assert result.score.engagement == -15


def test_a_per_day_cap_stops_counting_until_the_next_day() -> None:
    state = LeadScore(lead_id="l")
    pricing = {"properties": {"url": "https://acme.io/pricing"}}
    state = apply(state, event("page", T0, **pricing)).score
    second = apply(state, event("page", T0 + timedelta(hours=2), **pricing))
    assert second.hits == [] and second.capped == ["pricing-page"]
    next_day = apply(second.score, event("page", T0 + timedelta(days=1), **pricing))
    assert [h.rule_id for h in next_day.hits] == ["pricing-page"]


def test_a_per_lead_cap_counts_forever() -> None:
    state = LeadScore(lead_id="l")
    for day in range(5):
        state = apply(state, event(at=T0 + timedelta(days=day), event="Whitepaper Downloaded")).score
    assert state.rules["whitepaper-download"].count == 3


def test_bot_events_never_score() -> None:
    assert apply(LeadScore(lead_id="l"), event(event="Demo Requested", bot=True)).hits == []


def test_engagement_halves_after_the_half_life() -> None:
    state = apply(LeadScore(lead_id="l"), event(event="Demo Requested")).score
    assert state.engagement_at(T0 + timedelta(days=30), CONFIG.engagement.decay) == pytest.approx(20)
    assert state.engagement_at(T0 + timedelta(days=60), CONFIG.engagement.decay) == pytest.approx(10)


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(6))), st.lists(st.integers(0, 40 * 24), min_size=6, max_size=6))
def test_the_score_does_not_depend_on_the_order_events_arrive_in(order: list[int], hours: list[int]) -> None:
    names = [
        "Demo Requested",
        "Webinar Registered",
        "Email Clicked",
        "Trial Started",
        "Webinar Attended",
        "Email Clicked",
    ]
    events = [event(at=T0 + timedelta(hours=h), event=n) for h, n in zip(hours, names, strict=True)]
    in_order = LeadScore(lead_id="l")
    for ev in sorted(events, key=lambda e: e["timestamp"]):
        in_order = apply(in_order, ev).score
    shuffled = LeadScore(lead_id="l")
    for index in order:
        shuffled = apply(shuffled, events[index]).score
    later = T0 + timedelta(days=90)
    decay = CONFIG.engagement.decay
    # Caps (three email clicks a day) may pick different events, but only among identical ones.
    assert shuffled.engagement_at(later, decay) == pytest.approx(in_order.engagement_at(later, decay))


CAPPED = [
    ("track", {"event": "Trial Started"}),  # per_lead: 1
    ("track", {"event": "Whitepaper Downloaded"}),  # per_lead: 3
    ("page", {"properties": {"url": "https://acme.io/pricing"}}),  # per_day: 1
    ("page", {"properties": {"url": "https://acme.io/customers/globex"}}),  # per_day: 2
    ("track", {"event": "Email Clicked"}),  # per_day: 3
    ("track", {"event": "Demo Requested"}),  # uncapped
]


def delivered_once(deliveries: list[dict[str, Any]]) -> LeadScore:
    """Score deliveries as the profile pass does: a message already applied is not scored again."""
    state, applied = LeadScore(lead_id="l"), set()
    for delivery in deliveries:
        if delivery["message_id"] not in applied:
            applied.add(delivery["message_id"])
            state = apply(state, delivery).score
    return state


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(CAPPED) - 1), st.integers(0, 5 * 24 * 60)), min_size=1, max_size=30
    ),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 29), max_size=10),
)
def test_capped_scoring_credits_the_earliest_events_whatever_the_order_and_duplicates(
    happenings: list[tuple[int, int]], shuffle: Any, repeats: list[int]
) -> None:
    events = []
    for index, (kind, minutes) in enumerate(happenings):
        kind_name, fields = CAPPED[kind]
        events.append(event(kind_name, at=T0 + timedelta(minutes=minutes), message_id=f"e{index}", **fields))
    deliveries = [*events, *(events[r % len(events)] for r in repeats)]
    shuffle.shuffle(deliveries)
    in_order = delivered_once(sorted(events, key=lambda e: (e["timestamp"], e["message_id"])))
    any_order = delivered_once(deliveries)
    # Duplicates that slipped past the message check (a lost dedup record) change nothing either.
    raw = LeadScore(lead_id="l")
    for delivery in deliveries:
        if delivery["properties"].get("url") or delivery["event"] in (
            "Trial Started",
            "Whitepaper Downloaded",
        ):
            raw = apply(raw, delivery).score
    decay, later = CONFIG.engagement.decay, T0 + timedelta(days=30)
    assert any_order.engagement_at(later, decay) == pytest.approx(in_order.engagement_at(later, decay))
    for rule_id, tally in in_order.rules.items():
        assert any_order.rules[rule_id].count == tally.count, rule_id
        assert any_order.rules[rule_id].last_at == tally.last_at, rule_id
    capped_only = delivered_once(
        [
            e
            for e in sorted(events, key=lambda e: e["timestamp"])
            if e["type"] == "page" or e["event"] in ("Trial Started", "Whitepaper Downloaded")
        ]
    )
    assert raw.engagement_at(later, decay) == pytest.approx(capped_only.engagement_at(later, decay))


def test_a_late_earlier_event_takes_a_per_lead_credit_over_from_a_later_one() -> None:
    early, late = (
        event(at=T0, event="Trial Started", message_id="early"),
        event(at=T0 + timedelta(days=20), event="Trial Started", message_id="late"),
    )
    state = apply(apply(LeadScore(lead_id="l"), late).score, early).score
    tally = state.rules["trial-started"]
    assert (tally.count, tally.points, tally.last_at) == (1, 30, T0)
    decay = CONFIG.engagement.decay
    assert state.engagement_at(T0 + timedelta(days=30), decay) == pytest.approx(15), "30 points, a month old"


def test_fit_rules_give_a_grade_and_the_label_reads_like_b2() -> None:
    state = apply(LeadScore(lead_id="l"), event(event="Webinar Registered", at=T0), traits=VP).score
    assert state.fit == 25 + 10 + 15 + 15 and state.grade == "A"  # senior, practitioner, industry, size
    assert label(state, CONFIG, T0) == "A3"
    competitor = apply(
        LeadScore(lead_id="l"), event(event="Webinar Registered"), traits=VP, email="x@hubspot.com"
    )
    assert competitor.score.grade == "D"


def test_a_known_contact_enters_as_subscriber_then_moves_forward_only() -> None:
    first = apply(LeadScore(lead_id="l"), event("identify"), traits=VP)
    assert first.stage_move is not None and (first.stage_move.from_stage, first.stage_move.to_stage) == (
        None,
        "subscriber",
    )
    engaged = apply(first.score, event(event="Demo Requested"), traits=VP, stage="subscriber")
    assert engaged.stage_move is not None and engaged.stage_move.to_stage == "lead"
    hot = apply(engaged.score, event(event="Trial Started"), traits=VP, stage="lead")
    assert hot.stage_move is not None and hot.stage_move.to_stage == "mql"
    assert "engagement 70 reached 60" in hot.stage_move.why
    for later_stage in ("mql", "sql", "customer", "closed_lost"):
        assert (
            apply(hot.score, event(event="Demo Requested"), traits=VP, stage=later_stage).stage_move is None
        )


def test_an_anonymous_visitor_has_no_stage() -> None:
    assert apply(LeadScore(lead_id="l"), event(event="Demo Requested"), email=None).stage_move is None


def test_a_poor_fit_never_becomes_an_mql_however_engaged() -> None:
    state = LeadScore(lead_id="l")
    for name in ("Demo Requested", "Trial Started", "Webinar Attended"):
        result = apply(state, event(event=name), traits={"title": "Student"}, stage="lead")
        state = result.score
    assert state.engagement >= 60 and result.stage_move is None


def test_a_recycled_lead_requalifies_straight_to_mql() -> None:
    state = apply(LeadScore(lead_id="l"), event(event="Demo Requested"), traits=VP, stage="recycled").score
    result = apply(state, event(event="Trial Started"), traits=VP, stage="recycled")
    assert result.stage_move is not None and result.stage_move.to_stage == "mql"


def test_the_explanation_accounts_for_every_point_and_the_decay() -> None:
    state = LeadScore(lead_id="l")
    for ev in (event(event="Demo Requested"), event(event="Email Clicked", at=T0 + timedelta(days=1))):
        state = apply(state, ev, traits=VP).score
    view = explain(state, CONFIG, T0 + timedelta(days=31), version=1)
    assert {r["rule"]: r["points_earned"] for r in view["rules"]} == {"demo-request": 40, "email-click": 5}
    assert view["decay"]["points_earned"] == 45
    assert view["engagement"] == pytest.approx(40 * 0.5 ** (31 / 30) + 5 * 0.5, abs=0.01)
    assert view["decay"]["decayed_away"] == pytest.approx(45 - view["engagement"], abs=0.01)
    top = reasons(state, CONFIG, T0 + timedelta(days=31), top=1)
    assert [r.rule_id for r in top] == ["demo-request"]


def test_rules_with_an_intent_tag_the_lead_with_it_once() -> None:
    state = LeadScore(lead_id="l")
    for ev in (
        event("page", properties={"url": "https://acme.io/pricing"}),
        event(event="Demo Requested"),
        event(
            "page",
            properties={"url": "https://acme.io/pricing"},
            timestamp=(T0 + timedelta(days=1)).isoformat(),
        ),
        event("page", properties={"url": "https://acme.io/careers"}),
    ):
        state = apply(state, ev).score
    assert state.intent == ["demo", "pricing"]


def test_credits_a_per_lead_rule_gave_before_it_kept_keys_still_count_against_its_cap() -> None:
    from kindling.scoring.rules import RuleTally

    legacy = LeadScore(lead_id="l", rules={"whitepaper-download": RuleTally(points=30, value=30.0, count=2)})
    state = legacy
    for day in range(3):
        state = apply(state, event(at=T0 + timedelta(days=day), event="Whitepaper Downloaded")).score
    assert state.rules["whitepaper-download"].count == 3, "per_lead: 3, two of them given earlier"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-200, 500, allow_nan=False), st.integers(0, 400 * 24)), min_size=2, max_size=12
    ),
    st.integers(0, 800 * 24),
)
def test_the_rank_key_orders_scores_as_their_engagement_now_whatever_now(
    scores: list[tuple[float, int]], later_hours: int
) -> None:
    from kindling.scoring.rules import score_rank

    decay = CONFIG.engagement.decay
    states = [
        LeadScore(lead_id=f"l{i}", engagement=e, as_of=T0 + timedelta(hours=h))
        for i, (e, h) in enumerate(scores)
    ]
    now = T0 + timedelta(hours=max(h for _, h in scores) + later_hours)
    by_rank = sorted(states, key=lambda s: score_rank(s, decay))
    values = [s.engagement_at(now, decay) for s in by_rank]
    assert all(a <= b + 1e-9 * max(1.0, abs(b)) for a, b in itertools.pairwise(values))
