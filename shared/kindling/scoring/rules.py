"""Engagement and fit scoring, and the lifecycle moves they cause: pure functions.

Engagement decays exponentially, computed lazily: a lead's stored value is exact as of
its last event, and its value at any later time is that value times 2^(-elapsed /
half-life). Nothing ever sweeps the table, so decay costs the same with a thousand or a
million leads. Points are added already decayed to the lead's reference time, so the
result does not depend on the order events are scored in.

Caps are order-independent too: a capped rule remembers which events hold its credits
(by event time, then a hash of the message id), and an event that is earlier than one
holding a credit takes the credit over, so the earliest events are credited however the
deliveries arrive. Per-day credits are remembered for ``_DAY_MEMORY`` (30 days): an event
arriving later than that for a per-day capped rule is settled against what is remembered.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from kindling.scoring.config import Decay, Grade, ScoringConfig, Stage, lookup

#: Per-day credits kept for per-day caps: an event arriving later than this after newer ones is
#: settled against what is still remembered (in-order traffic never needs older days).
_DAY_MEMORY = timedelta(days=30)
_GRADE_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}
#: Stages scoring may move a lead out of, towards each target.
_FORWARD_FROM: dict[Stage, frozenset[Stage | None]] = {
    "subscriber": frozenset({None}),
    "lead": frozenset({None, "subscriber"}),
    "mql": frozenset({None, "subscriber", "lead", "recycled"}),
}


#: Points a program step gave directly (an ``update`` step with ``score``), kept as their own rule.
ADJUSTMENT_RULE = "program-adjustment"


def manual_adjustment(event: dict[str, Any]) -> int | None:
    """Points carried by kindling's own "Score Adjusted" event; never by a tracking call.

    Only internal producers set ``lead_id`` on an event (the tracking API cannot), so a
    website cannot grant itself points this way.
    """
    if not event.get("lead_id") or event.get("event") != "Score Adjusted":
        return None
    points = (event.get("properties") or {}).get("points")
    return points if isinstance(points, int) and not isinstance(points, bool) and points != 0 else None


def decay_factor(decay: Decay | None, elapsed: timedelta) -> float:
    if decay is None or elapsed <= timedelta(0):
        return 1.0
    return float(0.5 ** (elapsed.total_seconds() / 86400 / decay.half_life_days))


class RuleTally(BaseModel):
    points: int = 0  # every point this rule ever gave, before decay
    value: float = 0.0  # what is left of them at the score's as_of
    count: int = 0
    last_at: datetime | None = None
    #: Per-day credit counts written by earlier versions (read as credits without keys).
    days: dict[str, int] = Field(default_factory=dict)
    #: A capped rule's credits: ``"lead"`` (per-lead cap) and each recent day (per-day cap)
    #: to the sorted ``credit_key`` of each event holding one.
    credits: dict[str, list[str]] = Field(default_factory=dict)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def credit_key(at: datetime, message_id: str) -> str:
    """Sorts by event time (to the millisecond), then by a hash of the message id; 14 characters."""
    millis = int((at - _EPOCH).total_seconds() * 1000)
    digits = ""
    while True:
        millis, rest = divmod(millis, 36)
        digits = _DIGITS[rest] + digits
        if not millis:
            break
    return f"{digits.rjust(9, '0')}.{hashlib.sha256(message_id.encode()).hexdigest()[:4]}"


def credit_time(key: str) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(key.split(".")[0], 36))


@dataclass(frozen=True)
class _Placement:
    """Whether an event gets a capped rule's credit, and which later event's credit it takes."""

    credited: bool
    displaced: tuple[str, ...] = ()


def _place(tally: RuleTally, cap: Any, key: str, day: str) -> _Placement:
    slots: list[tuple[list[str], int, int]] = []  # (holders, cap, credits without keys)
    if cap.per_lead is not None:
        holders = tally.credits.get("lead", [])
        slots.append((holders, cap.per_lead, max(0, tally.count - len(holders))))
    if cap.per_day is not None:
        holders = tally.credits.get(day, [])
        slots.append((holders, cap.per_day, tally.days.get(day, 0)))
    displaced: list[str] = []
    for holders, limit, unkeyed in slots:
        if key in holders:
            return _Placement(False)  # this very event holds it already
        if len(holders) + unkeyed < limit:
            continue
        if unkeyed or not holders or key > holders[-1]:
            return _Placement(False)
        displaced.append(holders[-1])
    unique = tuple(dict.fromkeys(displaced))
    if len(unique) > 1:
        # Both a per-lead and a per-day cap would each give up a different credit for this one
        # event: two credits for one. The earliest events are not known beyond those credited, so
        # the lead's credits stay as they are (a rule with both caps settles late events approximately).
        return _Placement(False)
    return _Placement(True, unique)


class LeadScore(BaseModel):
    lead_id: str
    engagement: float = 0.0  # exact at as_of
    as_of: datetime | None = None
    rules: dict[str, RuleTally] = Field(default_factory=dict)
    fit: int = 0
    fit_rules: dict[str, int] = Field(default_factory=dict)
    grade: Grade = "D"
    config_version: int = 0
    revision: int = 0  # optimistic lock: each saved change increments it
    merged_into: str | None = None
    #: Fingerprints of the last messages scored (``kindling.scoring.service.message_mark``).
    recent: list[str] = Field(default_factory=list)
    #: The intent tags of the rules the lead has scored on, sorted.
    intent: list[str] = Field(default_factory=list)

    def engagement_at(self, when: datetime, decay: Decay | None) -> float:
        if self.as_of is None:
            return 0.0
        return self.engagement * decay_factor(decay, when - self.as_of)

    @property
    def raw_total(self) -> int:
        return sum(t.points for t in self.rules.values())


@dataclass(frozen=True)
class Hit:
    rule_id: str
    points: int


@dataclass(frozen=True)
class StageMove:
    from_stage: Stage | None
    to_stage: Stage
    why: str


@dataclass(frozen=True)
class Reason:
    rule_id: str
    description: str
    points: float  # current contribution, after decay
    count: int
    last_at: datetime | None


@dataclass
class ScoringResult:
    score: LeadScore
    hits: list[Hit] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    engagement_before: float = 0.0
    engagement_after: float = 0.0
    grade_before: Grade = "D"
    stage_move: StageMove | None = None

    @property
    def changed(self) -> bool:
        return bool(self.hits) or self.grade_before != self.score.grade or self.stage_move is not None


def fit_of(config: ScoringConfig, traits: dict[str, Any], email: str | None) -> dict[str, int]:
    """Fit points per rule that holds for these traits (``email`` is a trait too)."""
    facts = {**traits, "email": email} if email else dict(traits)
    return {rule.id: rule.points for rule in config.fit.rules if rule.when.holds(lookup(facts, rule.trait))}


def grade_at_least(grade: Grade, minimum: Grade) -> bool:
    return _GRADE_ORDER[grade] <= _GRADE_ORDER[minimum]


def label(score: LeadScore, config: ScoringConfig, when: datetime) -> str:
    """The two-dimensional score, fit letter then engagement band: 'B2'."""
    band = config.engagement.bands.band(score.engagement_at(when, config.engagement.decay))
    return f"{score.grade}{band}"


def target_stage(config: ScoringConfig, engagement: float, grade: Grade) -> Stage:
    mql, lead = config.lifecycle.mql, config.lifecycle.lead
    if engagement >= mql.min_engagement and grade_at_least(grade, mql.min_grade):
        return "mql"
    if engagement >= lead.min_engagement and grade_at_least(grade, lead.min_grade):
        return "lead"
    return "subscriber"


def stage_move(
    config: ScoringConfig, current: Stage | None, engagement: float, grade: Grade, known: bool
) -> StageMove | None:
    """Scoring only moves a known lead forward along the funnel, never back."""
    if not known:
        return None
    target = target_stage(config, engagement, grade)
    if current == target or current not in _FORWARD_FROM[target]:
        return None
    if target == "mql":
        why = (
            f"engagement {engagement:.0f} reached {config.lifecycle.mql.min_engagement:g} "
            f"with fit grade {grade} (needs {config.lifecycle.mql.min_grade} or better)"
        )
    elif target == "lead":
        why = f"engagement {engagement:.0f} reached {config.lifecycle.lead.min_engagement:g}"
    else:
        why = "a known contact entered the funnel"
    return StageMove(current, target, why)


def could_score(config: ScoringConfig, event: dict[str, Any]) -> bool:
    """Whether any engagement rule (or a program's adjustment) could give this event points."""
    if manual_adjustment(event) is not None:
        return True
    return not event.get("bot") and any(rule.match.matches(event) for rule in config.engagement.rules)


def score_event(
    state: LeadScore,
    event: dict[str, Any],
    *,
    traits: dict[str, Any],
    email: str | None,
    stage: Stage | None,
    config: ScoringConfig,
    version: int,
) -> ScoringResult:
    """The lead's score after one event, with every point's cause. ``state`` is not changed."""
    score = state.model_copy(deep=True)
    at = _as_datetime(event["timestamp"])
    decay = config.engagement.decay
    result = ScoringResult(
        score=score,
        engagement_before=state.engagement_at(at, decay),
        grade_before=state.grade,
    )
    day = at.date().isoformat()
    key = credit_key(at, str(event.get("message_id") or ""))
    displacements: list[tuple[str, int, str]] = []  # (rule, points, key of the event losing them)
    adjustment = manual_adjustment(event)
    if adjustment is not None:
        result.hits.append(Hit(ADJUSTMENT_RULE, adjustment))
    elif not event.get("bot"):
        for rule in config.engagement.rules:
            if not rule.match.matches(event):
                continue
            tally = score.rules.setdefault(rule.id, RuleTally())
            if rule.cap is not None:
                placement = _place(tally, rule.cap, key, day)
                if not placement.credited:
                    result.capped.append(rule.id)
                    continue
                _hold_credit(tally, rule.cap, key, day, placement.displaced)
                displacements += [(rule.id, rule.points, lost) for lost in placement.displaced]
            result.hits.append(Hit(rule.id, rule.points))
            if rule.intent and rule.intent not in score.intent:
                score.intent = sorted([*score.intent, rule.intent])
    if result.hits:
        _add_points(score, result.hits, at, day, decay)
        for rule_id, points, lost in displacements:
            _take_back(score, rule_id, points, credit_time(lost), decay)
        # Day counts serve per-day caps only: a rule without one keeps none (the state stays small).
        per_day = {rule.id for rule in config.engagement.rules if rule.cap is not None and rule.cap.per_day}
        for rule_id, tally in score.rules.items():
            if rule_id not in per_day:
                tally.days = {}
                tally.credits = {k: v for k, v in tally.credits.items() if k == "lead"}
    score.fit_rules = fit_of(config, traits, email)
    score.fit = sum(score.fit_rules.values())
    score.grade = config.fit.grades.grade(score.fit)
    score.config_version = version
    result.engagement_after = score.engagement_at(at, decay)
    result.stage_move = stage_move(config, stage, result.engagement_after, score.grade, known=bool(email))
    return result


def _hold_credit(tally: RuleTally, cap: Any, key: str, day: str, displaced: tuple[str, ...]) -> None:
    """Record ``key`` as holding the rule's credits, and take them from the ``displaced``."""
    for lost in displaced:
        for holders in tally.credits.values():
            if lost in holders:
                holders.remove(lost)
    if cap.per_lead is not None:
        tally.credits["lead"] = sorted([*tally.credits.get("lead", []), key])
    if cap.per_day is not None:
        tally.credits[day] = sorted([*tally.credits.get(day, []), key])
    tally.credits = {k: v for k, v in tally.credits.items() if v}


def _take_back(score: LeadScore, rule_id: str, points: int, at: datetime, decay: Decay | None) -> None:
    """An earlier event took this credit over: remove the points the later event had, as decayed."""
    assert score.as_of is not None
    weight = decay_factor(decay, score.as_of - at)
    tally = score.rules[rule_id]
    tally.points -= points
    tally.value -= points * weight
    tally.count -= 1
    score.engagement -= points * weight
    holders = tally.credits.get("lead") or [
        k for d, keys in tally.credits.items() if d != "lead" for k in keys
    ]
    if holders:
        tally.last_at = max(credit_time(k) for k in holders)


def _add_points(score: LeadScore, hits: list[Hit], at: datetime, day: str, decay: Decay | None) -> None:
    if score.as_of is None or at > score.as_of:
        factor = decay_factor(decay, at - score.as_of) if score.as_of else 1.0
        score.engagement *= factor
        for tally in score.rules.values():
            tally.value *= factor
        score.as_of = at
        weight = 1.0
    else:  # a late event: its points arrive already decayed to the reference time
        weight = decay_factor(decay, score.as_of - at)
    for hit in hits:
        tally = score.rules.setdefault(hit.rule_id, RuleTally())
        tally.points += hit.points
        tally.value += hit.points * weight
        tally.count += 1
        tally.last_at = max(tally.last_at, at) if tally.last_at else at
        score.engagement += hit.points * weight
    horizon = (score.as_of - _DAY_MEMORY).date().isoformat()
    for tally in score.rules.values():
        tally.days = {d: n for d, n in tally.days.items() if d >= horizon}
        tally.credits = {d: keys for d, keys in tally.credits.items() if d == "lead" or d >= horizon}


def score_rank(score: LeadScore, decay: Decay | None) -> str:
    """A sort key that orders leads by their engagement at any moment, without being rewritten.

    Engagement decays as ``e * 2^-(now - as_of) / half_life``, so its order at any ``now`` is the
    order of ``log2(e) + as_of / half_life``: a constant per score until its next change. The key
    is that number, fixed width, with negative, zero and positive engagement in three groups (a
    negative score decays up towards zero). The console lists a grade's leads by it.
    """
    days = (score.as_of - _EPOCH).total_seconds() / 86400 if score.as_of else 0.0
    drift = days / decay.half_life_days if decay is not None else 0.0
    if score.engagement > 0:
        return f"2{math.log2(score.engagement) + drift + 1e6:020.6f}"
    if score.engagement < 0:
        return f"0{1e6 - (math.log2(-score.engagement) + drift):020.6f}"
    return "1"


def reasons(score: LeadScore, config: ScoringConfig, when: datetime, top: int) -> list[Reason]:
    """The rules that contribute most to the score now: why this lead, why now."""
    descriptions = {rule.id: rule.description for rule in config.engagement.rules}
    factor = decay_factor(config.engagement.decay, when - score.as_of) if score.as_of else 1.0
    ranked = sorted(score.rules.items(), key=lambda item: item[1].value * factor, reverse=True)
    return [
        Reason(rule_id, descriptions.get(rule_id, rule_id), round(t.value * factor, 2), t.count, t.last_at)
        for rule_id, t in ranked[:top]
        if t.value * factor > 0
    ]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def explain(score: LeadScore, config: ScoringConfig, when: datetime, version: int) -> dict[str, Any]:
    """Why a lead has the score it has now: each rule's points, count and last time, and decay."""
    decay = config.engagement.decay
    factor = decay_factor(decay, when - score.as_of) if score.as_of else 1.0
    engagement = score.engagement * factor
    descriptions = {rule.id: rule.description for rule in config.engagement.rules}
    descriptions[ADJUSTMENT_RULE] = "Set by program steps"
    fit_descriptions = {rule.id: rule.description for rule in config.fit.rules}
    return {
        "lead_id": score.lead_id,
        "label": f"{score.grade}{config.engagement.bands.band(engagement)}",
        "engagement": round(engagement, 2),
        "band": config.engagement.bands.band(engagement),
        "fit": score.fit,
        "grade": score.grade,
        "as_of": when,
        "rules": [
            {
                "rule": rule_id,
                "description": descriptions.get(rule_id, "(rule no longer in the config)"),
                "points_earned": tally.points,
                "points_now": round(tally.value * factor, 2),
                "count": tally.count,
                "last_at": tally.last_at,
            }
            for rule_id, tally in sorted(score.rules.items(), key=lambda item: -abs(item[1].value))
        ],
        "fit_rules": [
            {"rule": rule_id, "description": fit_descriptions.get(rule_id, rule_id), "points": points}
            for rule_id, points in score.fit_rules.items()
        ],
        "decay": {
            "half_life_days": decay.half_life_days if decay else None,
            "points_earned": score.raw_total,
            "decayed_away": round(score.raw_total - engagement, 2),
        },
        "scored_with_config_version": score.config_version,
        "config_version_in_force": version,
    }
