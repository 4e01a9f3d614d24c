"""Scores a web event in the same pass that applies it to its lead, and says what changed.

The profile pass (``kindling.leads.profiles``) asks ``plan`` for the score write of an event and
commits it with the event's timeline entry. The score item is guarded by its revision (two events
for one lead never lose an update) and remembers the last few messages it scored (``recent``), so
an event whose first delivery crashed after scoring, before its timeline entry, is not scored
twice. A stage move is written in one transaction with the timeline entry, which keeps the bus
events it produced, so a redelivered message publishes them again instead of moving twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from kindling.kernel.bus import BusEvent
from kindling.kernel.errors import NotFound
from kindling.leads.profiles import Lead
from kindling.scoring.config import ScoringConfig, Stage, page_url
from kindling.scoring.rules import (
    LeadScore,
    ScoringResult,
    could_score,
    decay_factor,
    explain,
    label,
    reasons,
    score_event,
    score_rank,
)
from kindling.tracking.segment import WebEvent

#: How many scored messages a score item remembers: a redelivery after a crash comes within
#: the queue's visibility timeout, long before this many more events of the same lead are scored.
RECENT_MESSAGES = 8
#: Traits a sales team wants in the hand-off, when the lead has them.
HANDOFF_TRAITS = (
    "name", "first_name", "firstName", "last_name", "lastName", "title", "company",
    "industry", "company_size", "phone", "country",
)  # fmt: skip


class LeadActivity(BaseModel):
    """``detail`` of ``lead.activity``: a web event applied to its lead, for programs."""

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

    @classmethod
    def of(cls, lead: Lead) -> LeadFacts:
        return cls(lead.lead_id, lead.email, lead.traits, lead.stage, lead.merged_into, lead.user_id)


def message_mark(message_id: str) -> str:
    """A short fingerprint of a message id, for a score item's memory of what it scored."""
    return hashlib.blake2b(message_id.encode(), digest_size=6).hexdigest()


@dataclass
class ScoreWrite:
    """Everything one scored event writes, for the store to apply with its timeline entry."""

    lead_id: str
    message_id: str
    at: datetime
    result: ScoringResult
    expected_revision: int
    change_record: dict[str, Any]
    emitted: list[BusEvent]
    folded: list[LeadScore] = field(default_factory=list)
    #: The score item's memory of scored messages after this one (newest last).
    recent: list[str] = field(default_factory=list)
    #: Scored by an earlier delivery that crashed before its timeline entry: write nothing again.
    replayed: bool = False
    #: Where the score sorts among its grade's (``kindling.scoring.rules.score_rank``), for the console.
    rank: str | None = None

    @property
    def atomic(self) -> bool:
        """A stage move or a merge lands with its timeline entry in one transaction; points alone need not."""
        return self.result.stage_move is not None or bool(self.folded)


class ScoreReader(Protocol):
    def score(self, lead_id: str) -> LeadScore | None: ...


class ScoreStore(ScoreReader, Protocol):
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
        for slot, keys in theirs.credits.items():
            ours.credits[slot] = sorted({*ours.credits.get(slot, []), *keys})


class ScoringService:
    def __init__(self, scores: ScoreReader, config: ScoringConfigSource) -> None:
        self._scores = scores
        self._config = config

    def plan(
        self, lead: Lead, event: WebEvent, merged: list[str], fit_changed: bool = True
    ) -> ScoreWrite | None:
        """What scoring ``event`` writes for ``lead`` (as the event leaves it); None: nothing changes.

        An event that no rule rewards, on a lead whose fit inputs it did not change and that
        merged no lead, cannot change the score: the score is not even read.
        """
        try:
            version, config = self._config.current()
        except NotFound:  # nothing to score by yet: the event is still applied to its lead
            return None
        raw = event.model_dump(mode="json")
        if not fit_changed and not merged and not could_score(config, raw):
            return None
        facts = LeadFacts.of(lead)
        state = self._scores.score(facts.lead_id) or LeadScore(lead_id=facts.lead_id)
        mark = message_mark(event.message_id)
        if mark in state.recent:
            return ScoreWrite(
                facts.lead_id, event.message_id, event.timestamp, ScoringResult(score=state), state.revision,
                {}, [], replayed=True,
            )  # fmt: skip
        folded = []
        recent = list(state.recent)
        for other_id in merged:
            if other_id == facts.lead_id:
                continue
            other = self._scores.score(other_id)
            if other is None:  # marked folded all the same (see ``folded_actions``)
                folded.append(LeadScore(lead_id=other_id))
            elif not other.merged_into:
                fold(state, other, config)
                folded.append(other)
                recent += [m for m in other.recent if m not in recent]  # its scored messages count too
        result = score_event(
            state,
            raw,
            traits=facts.traits,
            email=facts.email,
            stage=facts.stage,
            config=config,
            version=version,
        )
        if not result.changed and not folded:
            return None
        return ScoreWrite(
            lead_id=facts.lead_id,
            message_id=event.message_id,
            at=event.timestamp,
            result=result,
            expected_revision=state.revision,
            change_record=_change_record(event, result, version),
            emitted=_bus_events(facts, event, result, config),
            folded=folded,
            recent=[*recent, mark][-RECENT_MESSAGES:],
            rank=score_rank(result.score, config.engagement.decay),
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
    events = []
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
