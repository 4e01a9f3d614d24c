"""Scores lead activity exactly once and tells the bus what changed.

One event's effects (new score, its cause, a stage move and its history, merged scores
folded in) are written in one transaction guarded by the score's revision and a
per-message dedup record. The bus events an outcome produced are kept on that dedup
record, so a redelivered message republishes them instead of scoring twice: a crash
between the write and the publish loses nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.errors import Conflict, Duplicate
from kindling.leads.profiles import Lead
from kindling.scoring.config import ScoringConfig, Stage, page_url
from kindling.scoring.rules import (
    LeadScore,
    ScoringResult,
    decay_factor,
    explain,
    label,
    reasons,
    score_event,
)
from kindling.tracking.segment import WebEvent

MAX_ATTEMPTS = 12
#: Traits a sales team wants in the hand-off, when the lead has them.
HANDOFF_TRAITS = (
    "name", "first_name", "firstName", "last_name", "lastName", "title", "company",
    "industry", "company_size", "phone", "country",
)  # fmt: skip


class LeadActivity(BaseModel):
    """``detail`` of ``lead.activity``: a web event resolved to its lead."""

    lead_id: str
    new_lead: bool = False
    merged: list[str] = Field(default_factory=list)
    event: WebEvent


@dataclass
class LeadFacts:
    lead_id: str
    email: str | None
    traits: dict[str, Any]
    stage: Stage | None
    merged_into: str | None = None
    user_id: str | None = None


@dataclass
class ScoreWrite:
    """Everything one scored event writes, for the store to apply atomically."""

    lead_id: str
    message_id: str
    at: datetime
    result: ScoringResult
    expected_revision: int
    change_record: dict[str, Any]
    emitted: list[BusEvent]
    folded: list[LeadScore] = field(default_factory=list)


class ScoreStore(Protocol):
    def facts(self, lead_id: str) -> LeadFacts | None: ...
    def score(self, lead_id: str) -> LeadScore | None: ...
    def save(self, write: ScoreWrite) -> None:
        """Apply atomically; ``Duplicate`` if this message was scored, ``Conflict`` on a lost race."""

    def emitted_for(self, message_id: str) -> list[BusEvent] | None:
        """The events a scored message produced; None if it was never scored."""

    def changes(self, lead_id: str, limit: int = 20) -> list[dict[str, Any]]: ...
    def stage_history(self, lead_id: str, limit: int = 50) -> list[dict[str, Any]]: ...


class ScoringConfigSource(Protocol):
    def current(self) -> tuple[int, ScoringConfig]: ...


def fold(into: LeadScore, other: LeadScore, config: ScoringConfig) -> None:
    """Add a merged-away lead's engagement to the surviving lead's, aligned in time."""
    if other.as_of is None:
        return
    decay = config.engagement.decay
    if into.as_of is None or other.as_of > into.as_of:
        factor = decay_factor(decay, other.as_of - into.as_of) if into.as_of else 1.0
        into.engagement *= factor
        for tally in into.rules.values():
            tally.value *= factor
        into.as_of = other.as_of
        weight = 1.0
    else:
        weight = decay_factor(decay, into.as_of - other.as_of)
    into.engagement += other.engagement * weight
    into.intent = sorted({*into.intent, *other.intent})
    for rule_id, theirs in other.rules.items():
        ours = into.rules.setdefault(
            rule_id, theirs.model_copy(update={"points": 0, "value": 0.0, "count": 0})
        )
        ours.points += theirs.points
        ours.value += theirs.value * weight
        ours.count += theirs.count
        ours.last_at = max(filter(None, (ours.last_at, theirs.last_at)), default=None)
        for day, count in theirs.days.items():
            ours.days[day] = ours.days.get(day, 0) + count


class ScoringService:
    def __init__(
        self,
        store: ScoreStore,
        config: ScoringConfigSource,
        publisher: EventPublisher,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._config = config
        self._publisher = publisher
        self._sleep = sleep

    def score(self, activity: LeadActivity, now: datetime) -> ScoreWrite | None:
        """Score one activity; None when it changed nothing (or was scored before)."""
        version, config = self._config.current()
        message_id = activity.event.message_id
        for attempt in range(MAX_ATTEMPTS):
            if self._republish(message_id):
                return None
            write = self._plan(activity, config, version, now)
            if write is None:
                return None
            try:
                self._store.save(write)
            except Duplicate:
                continue  # scored meanwhile by another delivery: republish what it produced
            except Conflict:
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # full jitter
                continue
            self._publisher.publish(write.emitted)
            return write
        raise Conflict(f"could not score message {message_id}: too much contention")

    def _republish(self, message_id: str) -> bool:
        """A message scored before gets its events published again, in case the first publish was lost."""
        emitted = self._store.emitted_for(message_id)
        if emitted is None:
            return False
        self._publisher.publish(emitted)
        return True

    def _plan(
        self, activity: LeadActivity, config: ScoringConfig, version: int, now: datetime
    ) -> ScoreWrite | None:
        facts = self._store.facts(activity.lead_id)
        hops = 0
        while facts is not None and facts.merged_into and hops < 5:
            facts = self._store.facts(facts.merged_into)
            hops += 1
        if facts is None:
            raise Conflict(f"lead {activity.lead_id} is not readable yet")
        state = self._store.score(facts.lead_id) or LeadScore(lead_id=facts.lead_id)
        folded = []
        for other_id in activity.merged:
            other = self._store.score(other_id)
            if other is not None and other.lead_id != facts.lead_id and not other.merged_into:
                fold(state, other, config)
                folded.append(other)
        event = activity.event.model_dump(mode="json")
        result = score_event(
            state,
            event,
            traits=facts.traits,
            email=facts.email,
            stage=facts.stage,
            config=config,
            version=version,
        )
        if not result.changed and not folded:
            return None
        at = activity.event.timestamp
        return ScoreWrite(
            lead_id=facts.lead_id,
            message_id=activity.event.message_id,
            at=at,
            result=result,
            expected_revision=state.revision,
            change_record=_change_record(activity.event, result, version),
            emitted=_bus_events(facts, activity.event, result, config),
            folded=folded,
        )


def _change_record(event: WebEvent, result: ScoringResult, version: int) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "at": event.timestamp,
        "event": {
            "type": event.type,
            "event": event.event,
            "name": event.name,
            "url": page_url(event.model_dump(mode="json")),
        },
        "hits": [{"rule": h.rule_id, "points": h.points} for h in result.hits],
        "capped": result.capped,
        "engagement_before": round(result.engagement_before, 2),
        "engagement_after": round(result.engagement_after, 2),
        "grade_before": result.grade_before,
        "grade_after": result.score.grade,
        "config_version": version,
    }


def _bus_events(
    facts: LeadFacts, event: WebEvent, result: ScoringResult, config: ScoringConfig
) -> list[BusEvent]:
    at = event.timestamp
    score = result.score
    events = []
    if result.hits or result.grade_before != score.grade:
        events.append(
            BusEvent(
                source="kindling.scoring",
                detail_type="lead.score_changed",
                time=at,
                detail={
                    "event_id": f"{event.message_id}:score",
                    "lead_id": facts.lead_id,
                    "message_id": event.message_id,
                    "engagement": round(result.engagement_after, 2),
                    "engagement_before": round(result.engagement_before, 2),
                    "grade": score.grade,
                    "grade_before": result.grade_before,
                    "label": label(score, config, at),
                    "fit": score.fit,
                    "hits": [{"rule": h.rule_id, "points": h.points} for h in result.hits],
                    "config_version": score.config_version,
                },
            )
        )
    move = result.stage_move
    if move is not None:
        events.append(
            BusEvent(
                source="kindling.scoring",
                detail_type="lead.stage_changed",
                time=at,
                detail={
                    "event_id": f"{event.message_id}:stage",
                    "lead_id": facts.lead_id,
                    "from": move.from_stage,
                    "to": move.to_stage,
                    "why": move.why,
                    "by": "scoring",
                    "at": at.isoformat(),
                },
            )
        )
        if move.to_stage == "mql":
            events.append(_mql_event(facts, event, result, config))
    return events


def _mql_event(facts: LeadFacts, event: WebEvent, result: ScoringResult, config: ScoringConfig) -> BusEvent:
    at = event.timestamp
    score = result.score
    return BusEvent(
        source="kindling.scoring",
        detail_type="lead.mql",
        time=at,
        detail={
            "event_id": f"{event.message_id}:mql",
            "lead_id": facts.lead_id,
            "lead": {
                "id": facts.lead_id,
                "email": facts.email,
                "user_id": facts.user_id,
                **{k: facts.traits[k] for k in HANDOFF_TRAITS if k in facts.traits},
            },
            "label": label(score, config, at),
            "grade": score.grade,
            "engagement": round(result.engagement_after, 2),
            "fit": score.fit,
            "fit_reasons": sorted(score.fit_rules, key=lambda r: -score.fit_rules[r]),
            "reasons": [
                {
                    "rule": r.rule_id,
                    "description": r.description,
                    "points": r.points,
                    "count": r.count,
                    "last_at": r.last_at.isoformat() if r.last_at else None,
                }
                for r in reasons(score, config, at, config.handoff.top_reasons)
            ],
            "trigger": {
                "message_id": event.message_id,
                "type": event.type,
                "event": event.event,
                "name": event.name,
                "url": page_url(event.model_dump(mode="json")),
                "at": at.isoformat(),
            },
            "why": result.stage_move.why if result.stage_move else "",
        },
    )


class ScoreHistory(Protocol):
    def score(self, lead_id: str) -> LeadScore | None: ...
    def changes(self, lead_id: str, limit: int = 20) -> list[dict[str, Any]]: ...
    def stage_history(self, lead_id: str, limit: int = 50) -> list[dict[str, Any]]: ...


def explain_lead_score(
    lead: Lead, scores: ScoreHistory, config: ScoringConfigSource, now: datetime
) -> dict[str, Any]:
    """The score as a person reads it: now, per rule, decay, and the recent changes that made it."""
    version, scoring_config = config.current()
    score = scores.score(lead.lead_id) or LeadScore(lead_id=lead.lead_id)
    return {
        **explain(score, scoring_config, now, version),
        "stage": lead.stage,
        "stage_history": scores.stage_history(lead.lead_id),
        "recent_changes": scores.changes(lead.lead_id),
    }
