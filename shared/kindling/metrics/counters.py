"""Email and funnel metrics, kept as daily counters that each bus event increments exactly once.

An email counter is one (program, step, template) on one day (UTC, the day the event happened):
emails sent, delivered, bounced, complained of, skipped (by reason), deferred, opened and clicked
(once per send), unsubscribes, and the lifecycle-stage advances the emails are credited with. A
lead that moves forward in the funnel credits the emails it got within the attribution window
before the move: the most recent one (last touch) and every one (any touch).

A funnel counter is one breakdown value on one day, with fields per stage: leads that entered the
stage, leads that left it and how long they had been in it (a histogram, so a report can give the
median), and for the closed stages the deal amounts. Every stage move counts once overall
(``all``) and once under each breakdown value the lead has: its industry, first-touch source, the
program whose email last touched it, each of its segments and intent tags.

Each lead keeps a small state beside its counters: its recent sends (for attribution) and the
stage it is in since when (for time in stage), so counting never scans anything.

Counting is folded from a log, so that an event costs one small write rather than a transaction
over every counter it touches. The consumer writes each event, reduced to a ``MetricEvent``, to the
log; every ten minutes the fold reads what was logged since its last run up to ``FOLD_LAG`` ago
and applies it in the order it happened, adding to each (counter, day) once per fold. An event
that arrives already older than half the lag (a redrive, a retry after an outage, a CRM move
with an old timestamp) may have missed its fold, so the consumer applies it at once, as before.

The log keeps the reduced event, not the bus event: no address, name or free text is stored, and
the rebuild replays the reduced events. The trade-off: a new metric, or a fix to ``parse_event``,
can only use the fields the log keeps; counting from a field it does not keep starts from the
day it is added.

Everything here is pure: the consumer, the fold and the rebuild apply the same ``changes_for``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from kindling.kernel.errors import InvalidInput
from kindling.scoring.config import FUNNEL, STAGES

DEFAULT_ATTRIBUTION_WINDOW = timedelta(days=14)
#: How far behind the present the fold stays. An event the consumer finds fresher than half of this
#: is only logged; the consumer's put lands within its Lambda timeout (MetricsFunction: 10 s, the
#: template's Globals) after that check, so a fold up to ``now - FOLD_LAG`` never misses an entry
#: still being written. It must exceed twice the consumer's timeout: raise it if that timeout grows.
FOLD_LAG = timedelta(minutes=10)
#: How many sends a lead's recent list keeps (the newest), besides the window.
MAX_RECENT_SENDS = 20
#: How many segments or intent tags of one lead a stage move is counted under (the first, sorted).
MAX_VALUES = 5
#: The longest range a report covers, in days.
MAX_REPORT_DAYS = 366
#: Stands for "no program" / "no step" in counter keys (API sends) and "no breakdown" (``all``).
NONE = "-"

Kind = Literal[
    "sent",
    "skipped",
    "deferred",
    "delivered",
    "bounced",
    "complained",
    "opened",
    "clicked",
    "unsubscribed",
    "stage_changed",
]

ENGAGEMENT: dict[str, Kind] = {
    "Email Opened": "opened",
    "Email Clicked": "clicked",
    "Unsubscribed": "unsubscribed",
}
#: What SES tells us about a send (published by the SES events function), counted once per send.
DELIVERY: dict[str, Kind] = {
    "email.delivered": "delivered",
    "email.bounced": "bounced",
    "email.complained": "complained",
}
SEND_OUTCOMES = ("email.sent", "email.skipped", "email.deferred")

#: Email counter fields, in report order (``skipped_<reason>`` come besides).
SENT, DEFERRED, SKIPPED = "sent", "deferred", "skipped"
DELIVERED, BOUNCED, BOUNCED_PERMANENT, COMPLAINED = "delivered", "bounced", "bounced_permanent", "complained"
OPENED_UNIQUE, CLICKED_UNIQUE, UNSUBSCRIBED = "opened_unique", "clicked_unique", "unsubscribed"
LAST_TOUCH, ANY_TOUCH = "stage_advances_last_touch", "stage_advances_any_touch"
SKIPPED_PREFIX = "skipped_"
#: Funnel counter fields, each prefixed ``<stage>:``: entries, exits, time-in-stage buckets, deal amounts.
ENTERED, LEFT, TIME_BUCKET, AMOUNT_CENTS, WITH_AMOUNT = (
    "entered",
    "left",
    "tis",
    "amount_cents",
    "with_amount",
)
#: The funnel breakdowns a report can ask for (``all`` is the one without a breakdown).
BREAKDOWNS = ("source", "industry", "segment", "intent", "program")
ALL = "all"
#: The breakdown value of a lead whose industry or first-touch source is not known.
UNKNOWN = "unknown"
#: The breakdown value of a lead in no segment, with no intent tag, or touched by no program.
NO_VALUE = "none"
#: The stages a closed deal lands in.
WON, LOST = "customer", "closed_lost"

#: Time in stage is kept as a histogram: bucket 0 is under an hour, bucket i >= 1 holds durations from
#: ``HOUR * GROWTH**(i-1)`` to ``HOUR * GROWTH**i``. A median read from it is within 5% of the true one.
HOUR = 3600.0
GROWTH = 1.1
MAX_BUCKET = 120  # about 10 years


@dataclass(frozen=True)
class LeadBreakdown:
    """What a lead was when it moved: the breakdown values its stage move is counted under."""

    industry: str | None = None
    source: str | None = None
    segments: tuple[str, ...] = ()
    intent: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "industry": self.industry,
            "source": self.source,
            "segments": list(self.segments),
            "intent": list(self.intent),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LeadBreakdown:
        return cls(
            industry=value.get("industry"),
            source=value.get("source"),
            segments=tuple(value.get("segments") or ()),
            intent=tuple(value.get("intent") or ()),
        )

    @classmethod
    def of(
        cls,
        industry: Any = None,
        source: Any = None,
        segments: Iterable[Any] = (),
        intent: Iterable[Any] = (),
    ) -> LeadBreakdown:
        """From raw profile values: trimmed text, empty ones dropped, lists sorted and capped."""

        def values(raw: Iterable[Any]) -> tuple[str, ...]:
            kept = {v for v in (breakdown_value(r) for r in raw) if v is not None}
            return tuple(sorted(kept)[:MAX_VALUES])

        return cls(breakdown_value(industry), breakdown_value(source), values(segments), values(intent))


@dataclass(frozen=True)
class MetricEvent:
    """A bus event, reduced to what the metrics need."""

    event_id: str
    kind: Kind
    at: datetime
    lead_id: str
    send_id: str | None = None
    template: str | None = None
    program: str | None = None
    step: str | None = None
    reason: str | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    #: Stage moves only: the deal amount (closed won / lost), and what the lead was (looked up).
    amount: float | None = None
    context: LeadBreakdown | None = None
    #: Bounces only: SES's ``Permanent``, ``Transient`` or ``Undetermined``.
    bounce_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the log keeps of the event (its id is in the log's key): ids, names, stages, counts."""
        value: dict[str, Any] = {"kind": self.kind, "at": self.at.isoformat(), "lead_id": self.lead_id}
        for name in ("send_id", "template", "program", "step", "reason", "from_stage", "to_stage"):
            if getattr(self, name) is not None:
                value[name] = getattr(self, name)
        if self.amount is not None:
            value["amount"] = self.amount
        if self.bounce_type is not None:
            value["bounce_type"] = self.bounce_type
        if self.context is not None:
            value["context"] = self.context.to_json()
        return value

    @classmethod
    def from_json(cls, event_id: str, value: Mapping[str, Any]) -> MetricEvent:
        context = value.get("context")
        amount = value.get("amount")
        return cls(
            event_id=event_id,
            kind=value["kind"],
            at=datetime.fromisoformat(value["at"]),
            lead_id=value["lead_id"],
            send_id=value.get("send_id"),
            template=value.get("template"),
            program=value.get("program"),
            step=value.get("step"),
            reason=value.get("reason"),
            from_stage=value.get("from_stage"),
            to_stage=value.get("to_stage"),
            amount=float(amount) if amount is not None else None,
            context=LeadBreakdown.from_json(context) if context is not None else None,
            bounce_type=value.get("bounce_type"),
        )


@dataclass(frozen=True)
class RecentSend:
    send_id: str
    at: datetime
    template: str
    program: str | None
    step: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "send_id": self.send_id,
            "at": self.at.isoformat(),
            "template": self.template,
            "program": self.program,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecentSend:
        return cls(
            send_id=value["send_id"],
            at=datetime.fromisoformat(value["at"]),
            template=value["template"],
            program=value.get("program"),
            step=value.get("step"),
        )


@dataclass(frozen=True)
class LeadState:
    """The little a lead's metrics remember: its recent sends, and its stage since when."""

    sends: tuple[RecentSend, ...] = ()
    stage: str | None = None
    since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sends": [s.to_json() for s in self.sends],
            "stage": self.stage,
            "since": self.since.isoformat() if self.since else None,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LeadState:
        since = value.get("since")
        return cls(
            sends=tuple(RecentSend.from_json(s) for s in value.get("sends") or ()),
            stage=value.get("stage"),
            since=datetime.fromisoformat(since) if since else None,
        )


@dataclass(frozen=True)
class CounterKey:
    kind = "email"
    program: str | None
    step: str | None
    template: str

    @property
    def id(self) -> str:
        """``<program>#<step>#<template>``, ``-`` for a missing part."""
        return f"{self.program or NONE}#{self.step or NONE}#{self.template}"

    @classmethod
    def from_id(cls, key_id: str) -> CounterKey:
        program, step, template = key_id.split("#", 2)
        return cls(None if program == NONE else program, None if step == NONE else step, template)


@dataclass(frozen=True)
class FunnelKey:
    """One breakdown value's funnel (say industry Retail), or the whole (``by`` ``all``, ``value`` ``-``)."""

    kind = "funnel"
    by: str
    value: str = NONE

    @property
    def id(self) -> str:
        """``<by>#<value>`` (the value last: it may hold anything)."""
        return f"{self.by}#{self.value}"

    @classmethod
    def from_id(cls, key_id: str) -> FunnelKey:
        by, value = key_id.split("#", 1)
        return cls(by, value)


def stage_field(stage: str, name: str) -> str:
    """A funnel counter field: ``mql:entered``, ``mql:tis:12``."""
    return f"{stage}:{name}"


@dataclass(frozen=True)
class Increment:
    key: CounterKey | FunnelKey
    day: str
    field: str
    amount: int = 1


@dataclass(frozen=True)
class Change:
    """What one event does: its increments, counted only if ``unique`` (a marker) is new."""

    increments: tuple[Increment, ...] = ()
    #: ``<send_id>#opened|clicked|...``: the increments happen only the first time this is seen.
    unique: str | None = None
    #: The lead's new state, when the event changes it.
    state: LeadState | None = None


def send_origin(send_id: str, lead_id: str) -> tuple[str | None, str | None]:
    """The program and step of a program send id ``<program>.<lead_id>.<entry>.<step>[.<n>]``."""
    parts = send_id.split(".")
    if len(parts) >= 4 and parts[1] == lead_id:
        return parts[0], parts[3]
    return None, None


def _time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def parse_event(source: str, detail_type: str, detail: dict[str, Any], time: datetime) -> MetricEvent | None:
    """The metric event a bus event is, or None when it counts for nothing."""
    lead_id = detail.get("lead_id")
    if not isinstance(lead_id, str) or not lead_id:
        return None
    if source == "kindling.email" and detail_type in (*SEND_OUTCOMES, *DELIVERY):
        send_id = detail.get("send_id")
        if not isinstance(send_id, str) or not send_id:
            return None
        program, step = detail.get("program"), detail.get("step")
        if program is None and step is None:
            program, step = send_origin(send_id, lead_id)
        outcome = DELIVERY.get(detail_type) or detail_type[6:]
        return MetricEvent(
            event_id=detail.get("event_id") or f"{send_id}:{outcome}",
            kind=outcome,  # type: ignore[arg-type]
            at=_time(detail.get("at"), time),
            lead_id=lead_id,
            send_id=send_id,
            template=detail.get("template") or None,
            program=program,
            step=step,
            reason=detail.get("reason"),
            bounce_type=detail.get("bounce_type"),
        )
    if source == "kindling.email" and detail_type == "web.track":
        kind = ENGAGEMENT.get(detail.get("event") or "")
        properties = detail.get("properties") or {}
        send_id = properties.get("send_id")
        if kind is None or not isinstance(send_id, str) or not send_id:
            return None
        program, step = send_origin(send_id, lead_id)
        return MetricEvent(
            event_id=detail["message_id"],
            kind=kind,
            at=_time(detail.get("timestamp"), time),
            lead_id=lead_id,
            send_id=send_id,
            template=properties.get("template") or None,
            program=program,
            step=step,
        )
    if (
        source in ("kindling.scoring", "kindling.crm", "kindling.programs")
        and detail_type == "lead.stage_changed"
    ):
        amount = detail.get("amount")
        valid = isinstance(amount, int | float) and not isinstance(amount, bool) and 0 <= amount < 1e13
        return MetricEvent(
            event_id=detail["event_id"],
            kind="stage_changed",
            at=_time(detail.get("at"), time),
            lead_id=lead_id,
            from_stage=detail.get("from"),
            to_stage=detail.get("to"),
            amount=float(amount) if valid and amount is not None else None,
        )
    return None


def breakdown_value(value: Any) -> str | None:
    """A trait as a breakdown value: trimmed text (at most 100 characters), None when empty or absent."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()[:100]
    return text or None


def time_bucket(duration: timedelta) -> int:
    seconds = duration.total_seconds()
    if seconds < HOUR:
        return 0
    return min(MAX_BUCKET, 1 + int(math.log(seconds / HOUR) / math.log(GROWTH)))


def bucket_seconds(bucket: int) -> float:
    """A bucket's representative duration: the geometric middle of its bounds (half an hour for bucket 0)."""
    if bucket == 0:
        return HOUR / 2
    return HOUR * GROWTH ** (bucket - 1) * math.sqrt(GROWTH)


def is_advance(from_stage: str | None, to_stage: str | None) -> bool:
    """A move forward along subscriber < lead < mql < sql < opportunity < customer."""
    if to_stage not in FUNNEL:
        return False
    if from_stage is None:
        return True
    if from_stage not in FUNNEL:
        return False  # out of closed_lost or recycled: not a step along the funnel
    return FUNNEL.index(to_stage) > FUNNEL.index(from_stage)


def _utc_day(at: datetime) -> str:
    return (at.astimezone(UTC) if at.tzinfo else at).date().isoformat()


def funnel_keys(context: LeadBreakdown | None, program: str | None) -> tuple[FunnelKey, ...]:
    """Every funnel a stage move of a lead like this counts in."""
    context = context or LeadBreakdown()
    return (
        FunnelKey(ALL),
        FunnelKey("industry", context.industry or UNKNOWN),
        FunnelKey("source", context.source or UNKNOWN),
        FunnelKey("program", program or NO_VALUE),
        *(FunnelKey("segment", s) for s in context.segments or (NO_VALUE,)),
        *(FunnelKey("intent", t) for t in context.intent or (NO_VALUE,)),
    )


def _stage_move(event: MetricEvent, state: LeadState, window: timedelta) -> Change:
    touched = sorted(
        (s for s in state.sends if event.at - window <= s.at <= event.at), key=lambda s: (s.at, s.send_id)
    )
    day = _utc_day(event.at)
    keys = funnel_keys(event.context, touched[-1].program if touched else None)
    increments: list[Increment] = []
    if is_advance(event.from_stage, event.to_stage) and touched:
        increments += [Increment(_key_of(s), day, ANY_TOUCH) for s in touched]
        increments.append(Increment(_key_of(touched[-1]), day, LAST_TOUCH))
    moved = event.to_stage in STAGES and event.to_stage != event.from_stage
    if moved:
        assert event.to_stage is not None
        entered = [Increment(key, day, stage_field(event.to_stage, ENTERED)) for key in keys]
        increments += entered
        if event.to_stage in (WON, LOST) and event.amount is not None:
            cents = round(event.amount * 100)
            for key in keys:
                increments.append(Increment(key, day, stage_field(event.to_stage, AMOUNT_CENTS), cents))
                increments.append(Increment(key, day, stage_field(event.to_stage, WITH_AMOUNT)))
    if (
        moved
        and event.from_stage is not None
        and state.stage == event.from_stage
        and state.since is not None
        and state.since <= event.at
    ):
        bucket = time_bucket(event.at - state.since)
        for key in keys:
            increments.append(Increment(key, day, stage_field(event.from_stage, LEFT)))
            increments.append(Increment(key, day, stage_field(event.from_stage, f"{TIME_BUCKET}:{bucket}")))
    new_state = None
    if moved and (state.since is None or event.at >= state.since):
        new_state = replace(state, stage=event.to_stage, since=event.at)
    return Change(tuple(increments), state=new_state)


def changes_for(
    event: MetricEvent,
    state: LeadState = LeadState(),
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
) -> Change:
    """What ``event`` increments, given the lead's state (needed for sends and stage moves).

    An engagement event whose template is unknown must have it filled in first
    (see ``MetricEvent.template``); it counts under ``-`` otherwise.
    """
    if event.kind == "stage_changed":
        return _stage_move(event, state, window)
    day = _utc_day(event.at)
    key = CounterKey(event.program, event.step, event.template or NONE)
    if event.kind == "sent":
        assert event.send_id is not None
        sent = RecentSend(event.send_id, event.at, key.template, event.program, event.step)
        sends = trim([*state.sends, sent], event.at, window)
        return Change((Increment(key, day, SENT),), state=replace(state, sends=sends))
    if event.kind == "skipped":
        reason = event.reason or "unknown"
        return Change((Increment(key, day, SKIPPED), Increment(key, day, f"{SKIPPED_PREFIX}{reason}")))
    if event.kind == "deferred":
        return Change((Increment(key, day, DEFERRED),))
    if event.kind == "unsubscribed":
        return Change((Increment(key, day, UNSUBSCRIBED),))
    if event.kind == "bounced":
        increments = [Increment(key, day, BOUNCED)]
        if event.bounce_type == "Permanent":
            increments.append(Increment(key, day, BOUNCED_PERMANENT))
        return Change(tuple(increments), unique=f"{event.send_id}#bounced")
    counter = {
        "opened": OPENED_UNIQUE,
        "clicked": CLICKED_UNIQUE,
        "delivered": DELIVERED,
        "complained": COMPLAINED,
    }[event.kind]
    return Change((Increment(key, day, counter),), unique=f"{event.send_id}#{event.kind}")


def trim(sends: Iterable[RecentSend], now: datetime, window: timedelta) -> tuple[RecentSend, ...]:
    """One entry per send, newest last, none older than the window, at most ``MAX_RECENT_SENDS``."""
    by_id = {s.send_id: s for s in sends}
    newest = max([now, *(s.at for s in by_id.values())])
    kept = sorted((s for s in by_id.values() if s.at >= newest - window), key=lambda s: (s.at, s.send_id))
    return tuple(kept[-MAX_RECENT_SENDS:])


def _key_of(send: RecentSend) -> CounterKey:
    return CounterKey(send.program, send.step, send.template)


# --- applying events: the store port, the recorder, and replay ------------------------------------------


Counters = dict[tuple[str, str], dict[str, int]]
"""``(key id, day) -> {field: amount}``; a funnel key's id is prefixed ``funnel|``."""


@dataclass(frozen=True)
class LoggedEvent:
    """A log entry as the consumer wrote it before the log was reduced: the raw bus event and what
    it looked up. Such entries were counted when written; the rebuild still reads them."""

    source: str
    detail_type: str
    time: datetime
    detail: dict[str, Any]
    template: str | None = None
    context: LeadBreakdown | None = None

    def event(self) -> MetricEvent | None:
        parsed = parse_event(self.source, self.detail_type, self.detail, self.time)
        if parsed is None:
            return None
        if parsed.template is None:
            # The consumer looked the template up; "" (counted under "-") when it found none.
            parsed = replace(parsed, template=self.template or "")
        if parsed.kind == "stage_changed":
            parsed = replace(parsed, context=self.context or LeadBreakdown())
        return parsed


@dataclass(frozen=True)
class LogEntry:
    """A logged event (None when a legacy entry counts for nothing), and the generation that
    counted it when the consumer applied it at once (None: the fold counts it)."""

    event: MetricEvent | None
    applied: int | None


def is_fresh(event: MetricEvent, now: datetime) -> bool:
    """Whether a fold is still to come for the event: then the consumer only logs it."""
    return event.at >= now - FOLD_LAG / 2


class MetricsStore(Protocol):
    def logged(self, event: MetricEvent) -> bool:
        """Whether the event is in the log already (a duplicate then costs a read, and no write)."""

    def lead_state(self, lead_id: str) -> tuple[LeadState, int]:
        """The lead's state and its version (0 when there is none)."""

    def send_template(self, send_id: str) -> str | None:
        """The template a send used, for events that do not carry it (unsubscribes, SES events)."""

    def lead_context(self, lead_id: str) -> LeadBreakdown:
        """The lead's industry, first-touch source, segments and intent tags, as its profile has them."""

    def log(self, event: MetricEvent) -> str:
        """Log a fresh event for the fold: ``"logged"``, or ``"duplicate"`` when it is there already."""

    def commit(self, event: MetricEvent, change: Change, state_version: int) -> str:
        """Log a late event as applied, applying ``change`` once: ``"applied"``, ``"duplicate"``, ``"seen"``.

        Raises ``Retryable`` when the lead's state moved since ``state_version``.
        """


def pseudonym(value: str) -> str:
    """The stand-in metrics keep for an id that leads to a person: a lead id, or a send or event id
    (which may contain one). The same id always gives the same pseudonym, so events of one lead,
    send or delivery still meet; the pseudonym gives back nothing, and once the lead is erased
    nothing maps it to anyone (the ids themselves are random, so it cannot be guessed back either).
    """
    return "p" + hashlib.sha256(value.encode()).hexdigest()[:31]


def pseudonymous(event: MetricEvent) -> MetricEvent:
    """``event`` as metrics keep it: its lead, send and own id replaced by their pseudonyms."""
    return replace(
        event,
        event_id=pseudonym(event.event_id),
        lead_id=pseudonym(event.lead_id),
        send_id=pseudonym(event.send_id) if event.send_id is not None else None,
    )


class MetricsRecorder:
    """The consumer's path: one event logged once, and counted at once only when it is late."""

    def __init__(self, store: MetricsStore, window: timedelta = DEFAULT_ATTRIBUTION_WINDOW) -> None:
        self._store = store
        self._window = window

    def record(
        self, source: str, detail_type: str, detail: dict[str, Any], time: datetime, now: datetime
    ) -> str:
        parsed = parse_event(source, detail_type, detail, time)
        if parsed is None:
            return "nothing"
        event = pseudonymous(parsed)
        if self._store.logged(event):
            return "duplicate"
        if event.template is None and parsed.send_id is not None:
            # "" when the send is unknown: counted under "-", and never looked up again.
            event = replace(event, template=self._store.send_template(parsed.send_id) or "")
        if event.kind == "stage_changed":
            event = replace(event, context=self._store.lead_context(parsed.lead_id))
        if is_fresh(event, now):
            return self._store.log(event)
        state, version = LeadState(), 0
        if event.kind in ("sent", "stage_changed"):
            state, version = self._store.lead_state(event.lead_id)
        return self._store.commit(event, changes_for(event, state, self._window), version)


def add(counters: Counters, increments: Iterable[Increment]) -> None:
    for inc in increments:
        name = inc.key.id if inc.key.kind == "email" else f"{inc.key.kind}|{inc.key.id}"
        fields = counters.setdefault((name, inc.day), {})
        fields[inc.field] = fields.get(inc.field, 0) + inc.amount


def increments_of(counters: Counters) -> Iterator[Increment]:
    """The counters as increments again (what writing them somewhere takes)."""
    for (name, day), fields in counters.items():
        kind, _, key_id = name.partition("|") if name.startswith("funnel|") else ("email", "", name)
        key: CounterKey | FunnelKey = (
            FunnelKey.from_id(key_id) if kind == "funnel" else CounterKey.from_id(key_id)
        )
        for field_name, amount in fields.items():
            yield Increment(key, day, field_name, amount)


@dataclass
class Replay:
    """The counters of a stream of events computed in memory, in the order given; duplicates count once.

    This is the rebuild: fed the stored events in the order they happened, it gives what the
    consumer gives when they arrive in that order.
    """

    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW
    counters: Counters = field(default_factory=dict)
    states: dict[str, LeadState] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    templates: dict[str, str] = field(default_factory=dict)

    def apply(self, event: MetricEvent) -> bool:
        if event.event_id in self.applied:
            return False
        self.applied.add(event.event_id)
        if (
            event.send_id is not None
            and event.template is not None
            and event.kind in ("sent", "skipped", "deferred")
        ):
            self.templates.setdefault(event.send_id, event.template)
        if event.template is None and event.send_id is not None:
            event = replace(event, template=self.templates.get(event.send_id))
        change = changes_for(event, self.states.get(event.lead_id, LeadState()), self.window)
        if change.unique is not None:
            if change.unique in self.seen:
                return False
            self.seen.add(change.unique)
        add(self.counters, change.increments)
        if change.state is not None:
            self.states[event.lead_id] = change.state
        return True


def replay(events: Iterable[MetricEvent], window: timedelta = DEFAULT_ATTRIBUTION_WINDOW) -> Counters:
    run = Replay(window)
    for event in events:
        run.apply(event)
    return run.counters


def log_order(event: MetricEvent) -> tuple[datetime, str]:
    """The order the log keeps events in (its sort key): the time they happened, then their id."""
    return event.at.astimezone(UTC), event.event_id


def unique_of(event: MetricEvent) -> str | None:
    """The marker that makes the event count once per send (its first open, say), if any."""
    return changes_for(event, LeadState()).unique


def reads_state(event: MetricEvent) -> bool:
    """Whether counting the event needs its lead's state (sends and stage moves change it)."""
    return event.kind in ("sent", "stage_changed")


@dataclass(frozen=True)
class Folded:
    """What a fold of some logged events does: counters to add, states and markers to write."""

    counters: Counters
    #: The leads whose state the events changed, and their new state.
    states: dict[str, LeadState]
    #: The markers the events set for the first time.
    markers: frozenset[str]
    #: The events that counted (a duplicate or a second open does not).
    counted: int


def fold_events(
    events: Iterable[MetricEvent],
    states: Mapping[str, LeadState],
    seen: Iterable[str],
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
) -> Folded:
    """Apply logged events in the order they happened, from the leads' states and the markers seen
    before: what the consumer counted one by one, for a whole stretch of the log at once."""
    before = set(seen)
    run = Replay(window, states=dict(states), seen=set(before))
    counted = sum(run.apply(event) for event in sorted(events, key=log_order))
    changed = {lead: state for lead, state in run.states.items() if states.get(lead) != state}
    return Folded(run.counters, changed, frozenset(run.seen - before), counted)


# --- reports ----------------------------------------------------------------------------------------------

#: ``day -> {field: amount}`` for the days of a range that have counts.
Days = dict[str, dict[str, int]]


def parse_range(start: str | None, end: str | None) -> tuple[date, date]:
    """``from`` and ``to`` (YYYY-MM-DD, inclusive); ``InvalidInput`` naming the parameter."""
    days = []
    for name, value in (("from", start), ("to", end)):
        try:
            days.append(date.fromisoformat(value or ""))
        except ValueError as exc:
            raise InvalidInput(f"{name}: give a date as YYYY-MM-DD") from exc
    first, last = days
    if first > last:
        raise InvalidInput("from: must not be after to")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise InvalidInput(f"to: a report covers at most {MAX_REPORT_DAYS} days")
    return first, last


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


#: The email fields a daily series carries (the trend lines of the report page).
SERIES_FIELDS = (SENT, DELIVERED, OPENED_UNIQUE, CLICKED_UNIQUE, UNSUBSCRIBED, LAST_TOUCH)


def report_row(totals: dict[str, int]) -> dict[str, Any]:
    """The counts and rates of summed email counters."""
    sent = totals.get(SENT, 0)
    delivered = totals.get(DELIVERED, 0)
    opened, clicked = totals.get(OPENED_UNIQUE, 0), totals.get(CLICKED_UNIQUE, 0)
    unsubscribed = totals.get(UNSUBSCRIBED, 0)
    by_reason = {
        f[len(SKIPPED_PREFIX) :]: n for f, n in sorted(totals.items()) if f.startswith(SKIPPED_PREFIX) and n
    }
    return {
        "sent": sent,
        "delivered": delivered,
        "bounced": {"total": totals.get(BOUNCED, 0), "permanent": totals.get(BOUNCED_PERMANENT, 0)},
        "complained": totals.get(COMPLAINED, 0),
        "skipped": {"total": totals.get(SKIPPED, 0), "by_reason": by_reason},
        "deferred": totals.get(DEFERRED, 0),
        "opened_unique": opened,
        "clicked_unique": clicked,
        "unsubscribed": unsubscribed,
        "stage_advances_last_touch": totals.get(LAST_TOUCH, 0),
        "stage_advances_any_touch": totals.get(ANY_TOUCH, 0),
        "rates": {
            "delivery": _rate(delivered, sent),
            "bounce": _rate(totals.get(BOUNCED, 0), sent),
            "open": _rate(opened, sent),
            "click": _rate(clicked, sent),
            "click_to_open": _rate(clicked, opened),
            "unsubscribe": _rate(unsubscribed, sent),
            "stage_advance_last_touch": _rate(totals.get(LAST_TOUCH, 0), sent),
        },
    }


def sum_days(days: Iterable[dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for fields in days:
        for name, amount in fields.items():
            totals[name] = totals.get(name, 0) + amount
    return totals


def email_series(days: Days) -> list[dict[str, Any]]:
    """One point per day with counts (days without any are left out: a chart reads them as zero)."""
    return [
        {"day": day, **{name: days[day].get(name, 0) for name in SERIES_FIELDS}}
        for day in sorted(days)
        if any(days[day].get(name) for name in SERIES_FIELDS)
    ]


def merge_days(many: Iterable[Days]) -> Days:
    merged: Days = {}
    for days in many:
        for day, fields in days.items():
            into = merged.setdefault(day, {})
            for name, amount in fields.items():
                into[name] = into.get(name, 0) + amount
    return merged


def email_report(
    keys: Iterable[CounterKey], read_days: Callable[[CounterKey], Days], by: str | None = None
) -> dict[str, Any]:
    """Rows for every key with anything counted in the range (by program, step, template), their
    totals, and a daily series of the totals. ``by="program"`` sums the rows of each program."""
    read = [(key, read_days(key)) for key in keys]
    read = [(key, days) for key, days in read if any(any(f.values()) for f in days.values())]
    rows = []
    if by == "program":
        programs: dict[str | None, list[Days]] = {}
        for key, days in read:
            programs.setdefault(key.program, []).append(days)
        for program in sorted(programs, key=lambda p: p or ""):
            days = merge_days(programs[program])
            rows.append(
                {"program": program, **report_row(sum_days(days.values())), "daily": email_series(days)}
            )
    else:
        for key, days in sorted(read, key=lambda kd: (kd[0].program or "", kd[0].step or "", kd[0].template)):
            row = {"program": key.program, "step": key.step, "template": key.template}
            rows.append({**row, **report_row(sum_days(days.values())), "daily": email_series(days)})
    everything = merge_days(days for _, days in read)
    totals = {**report_row(sum_days(everything.values())), "daily": email_series(everything)}
    return {"rows": rows, "totals": totals}


def parse_breakdown(value: str | None, allowed: tuple[str, ...] = BREAKDOWNS) -> str | None:
    """``by``: absent or one of ``allowed``; ``InvalidInput`` naming it otherwise."""
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidInput(f"by: must be one of {', '.join(allowed)}")
    return value


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def median_seconds(histogram: Mapping[int, int]) -> float | None:
    """The (lower) median of a time-in-stage histogram, as its bucket's representative duration."""
    count = sum(histogram.values())
    if count == 0:
        return None
    position = (count - 1) // 2
    for bucket in sorted(histogram):
        if position < histogram[bucket]:
            return bucket_seconds(bucket)
        position -= histogram[bucket]
    raise AssertionError("unreachable: the position is within the count")


def funnel_group(totals: dict[str, int], days: Days) -> dict[str, Any]:
    """One funnel from summed counters: entries, exits, median time in stage, conversion, closed deals."""
    stages = []
    for stage in STAGES:
        entered = totals.get(stage_field(stage, ENTERED), 0)
        following = FUNNEL[FUNNEL.index(stage) + 1] if stage in FUNNEL[:-1] else None
        conversion = (
            None if following is None else _rate(totals.get(stage_field(following, ENTERED), 0), entered)
        )
        prefix = stage_field(stage, f"{TIME_BUCKET}:")
        histogram = {int(f[len(prefix) :]): n for f, n in totals.items() if f.startswith(prefix) and n}
        median = median_seconds(histogram)
        stages.append(
            {
                "stage": stage,
                "entered": entered,
                "left": totals.get(stage_field(stage, LEFT), 0),
                "median_days_in_stage": None if median is None else round(median / 86400, 2),
                "next": following,
                "conversion_to_next": conversion,
            }
        )
    closed = {}
    for name, closed_stage in (("won", WON), ("lost", LOST)):
        closed[name] = {
            "count": totals.get(stage_field(closed_stage, ENTERED), 0),
            "with_amount": totals.get(stage_field(closed_stage, WITH_AMOUNT), 0),
            "amount": _money(totals.get(stage_field(closed_stage, AMOUNT_CENTS), 0)),
        }
    daily = []
    for day in sorted(days):
        entered_on = {s: days[day].get(stage_field(s, ENTERED), 0) for s in STAGES}
        if any(entered_on.values()):
            daily.append({"day": day, "entered": entered_on})
    return {"stages": stages, "closed": closed, "daily": daily}


def funnel_report(keys: Iterable[FunnelKey], read_days: Callable[[FunnelKey], Days]) -> list[dict[str, Any]]:
    """A funnel per breakdown value (one, valued None, without a breakdown), by value."""
    groups = []
    for key in keys:
        days = read_days(key)
        totals = sum_days(days.values())
        if any(totals.values()):
            groups.append({"value": None if key.by == ALL else key.value, **funnel_group(totals, days)})
    return sorted(groups, key=lambda g: g["value"] or "")
