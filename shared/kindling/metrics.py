"""Email metrics, kept as counters that each bus event increments exactly once.

A counter is one (program, step, template) on one day (UTC, the day the event happened):
emails sent, skipped (by reason), deferred, opened and clicked (once per send), unsubscribes,
and the lifecycle-stage advances the emails are credited with. A lead that moves forward in
the funnel credits the emails it got within the attribution window before the move: the most
recent one (last touch) and every one (any touch). The sends a lead got recently are kept in
a small per-lead list, so crediting them never scans.

Funnel counters sit beside them: every ``lead.stage_changed`` counts the lead entering its new
stage on that day, once overall (``all``), once under the lead's industry and once under its
first-touch source; entering ``customer`` (closed won) or ``closed_lost`` also adds the deal
amount when the event carries one.

Everything here is pure: the consumer and ``replay`` apply the same ``changes_for``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from kindling.errors import InvalidInput
from kindling.scoring_config import FUNNEL, STAGES

DEFAULT_ATTRIBUTION_WINDOW = timedelta(days=14)
#: How many sends a lead's recent list keeps (the newest), besides the window.
MAX_RECENT_SENDS = 20
#: The longest range a report covers, in days.
MAX_REPORT_DAYS = 366
#: Stands for "no program" / "no step" in counter keys (API sends).
NONE = "-"

Kind = Literal["sent", "skipped", "deferred", "opened", "clicked", "unsubscribed", "stage_changed"]

ENGAGEMENT: dict[str, Kind] = {
    "Email Opened": "opened",
    "Email Clicked": "clicked",
    "Unsubscribed": "unsubscribed",
}

#: Counter fields, in report order (``skipped_<reason>`` come besides).
SENT, DEFERRED, SKIPPED = "sent", "deferred", "skipped"
OPENED_UNIQUE, CLICKED_UNIQUE, UNSUBSCRIBED = "opened_unique", "clicked_unique", "unsubscribed"
LAST_TOUCH, ANY_TOUCH = "stage_advances_last_touch", "stage_advances_any_touch"
SKIPPED_PREFIX = "skipped_"
#: Funnel counter fields: leads that entered the stage, and (closed stages) the amounts of those that had one.
ENTERED, AMOUNT_CENTS, WITH_AMOUNT = "entered", "amount_cents", "with_amount"
#: The funnel breakdowns a report can ask for (``all`` is the one without a breakdown).
BREAKDOWNS = ("industry", "source")
ALL = "all"
#: The breakdown value of a lead whose industry or first-touch source is not known.
UNKNOWN = "unknown"
#: The stages a closed deal lands in.
WON, LOST = "customer", "closed_lost"


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
    #: Stage moves only: the deal amount (closed won / lost), the lead's industry and first-touch source.
    amount: float | None = None
    industry: str | None = None
    source: str | None = None


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
    """Leads entering ``stage``, overall (``by`` is ``all``, ``value`` ``-``) or for one breakdown value."""

    kind = "funnel"
    by: str
    stage: str
    value: str = NONE

    @property
    def id(self) -> str:
        """``<by>#<stage>#<value>`` (the value last: it may hold anything)."""
        return f"{self.by}#{self.stage}#{self.value}"

    @classmethod
    def from_id(cls, key_id: str) -> FunnelKey:
        by, stage, value = key_id.split("#", 2)
        return cls(by, stage, value)


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
    #: ``<send_id>#opened|clicked``: the increments happen only the first time this is seen.
    unique: str | None = None
    #: The lead's new recent-sends list, when the event changes it.
    recent: tuple[RecentSend, ...] | None = None


def send_origin(send_id: str, lead_id: str) -> tuple[str | None, str | None]:
    """The program and step of a program send id ``<program>.<lead_id>.<entry>.<step>[.<n>]``."""
    parts = send_id.split(".")
    if len(parts) >= 4 and parts[1] == lead_id:
        return parts[0], parts[3]
    return None, None


def _time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
    return fallback


def parse_event(source: str, detail_type: str, detail: dict[str, Any], time: datetime) -> MetricEvent | None:
    """The metric event a bus event is, or None when it counts for nothing."""
    lead_id = detail.get("lead_id")
    if not isinstance(lead_id, str) or not lead_id:
        return None
    if source == "kindling.email" and detail_type in ("email.sent", "email.skipped", "email.deferred"):
        send_id = detail["send_id"]
        program, step = detail.get("program"), detail.get("step")
        if program is None and step is None:
            program, step = send_origin(send_id, lead_id)
        return MetricEvent(
            event_id=detail.get("event_id") or f"{send_id}:{detail_type[6:]}",
            kind=detail_type[6:],  # type: ignore[arg-type]
            at=_time(detail.get("at"), time),
            lead_id=lead_id,
            send_id=send_id,
            template=detail.get("template"),
            program=program,
            step=step,
            reason=detail.get("reason"),
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
            industry=breakdown_value(detail.get("industry")),
            source=breakdown_value(detail.get("first_touch_source")),
        )
    return None


def breakdown_value(value: Any) -> str | None:
    """A trait as a breakdown value: trimmed text (at most 100 characters), None when empty or absent."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()[:100]
    return text or None


def funnel_increments(event: MetricEvent) -> tuple[Increment, ...]:
    """A stage move: the lead entered ``to_stage`` (overall, by industry, by source), with its amount."""
    if event.to_stage not in STAGES or event.to_stage == event.from_stage:
        return ()
    day = _utc_day(event.at)
    keys = (
        FunnelKey(ALL, event.to_stage),
        FunnelKey("industry", event.to_stage, event.industry or UNKNOWN),
        FunnelKey("source", event.to_stage, event.source or UNKNOWN),
    )
    increments = [Increment(key, day, ENTERED) for key in keys]
    if event.to_stage in (WON, LOST) and event.amount is not None:
        cents = round(event.amount * 100)
        for key in keys:
            increments += [Increment(key, day, AMOUNT_CENTS, cents), Increment(key, day, WITH_AMOUNT)]
    return tuple(increments)


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


def changes_for(
    event: MetricEvent,
    recent: Iterable[RecentSend],
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
) -> Change:
    """What ``event`` increments, given the lead's recent sends (needed for sends and stage moves).

    An engagement event whose template is unknown must have it filled in first
    (see ``MetricEvent.template``); it counts under ``-`` otherwise.
    """
    day = _utc_day(event.at)
    if event.kind == "stage_changed":
        funnel = funnel_increments(event)
        if not is_advance(event.from_stage, event.to_stage):
            return Change(funnel)
        touched = sorted(
            (s for s in recent if event.at - window <= s.at <= event.at), key=lambda s: (s.at, s.send_id)
        )
        if not touched:
            return Change(funnel)
        increments = [Increment(_key_of(s), day, ANY_TOUCH) for s in touched]
        increments.append(Increment(_key_of(touched[-1]), day, LAST_TOUCH))
        return Change((*increments, *funnel))
    key = CounterKey(event.program, event.step, event.template or NONE)
    if event.kind == "sent":
        assert event.send_id is not None
        sent = RecentSend(event.send_id, event.at, key.template, event.program, event.step)
        return Change((Increment(key, day, SENT),), recent=trim([*recent, sent], event.at, window))
    if event.kind == "skipped":
        reason = event.reason or "unknown"
        return Change((Increment(key, day, SKIPPED), Increment(key, day, f"{SKIPPED_PREFIX}{reason}")))
    if event.kind == "deferred":
        return Change((Increment(key, day, DEFERRED),))
    if event.kind == "unsubscribed":
        return Change((Increment(key, day, UNSUBSCRIBED),))
    counter = OPENED_UNIQUE if event.kind == "opened" else CLICKED_UNIQUE
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

#: A lead's industry and first-touch source, as its profile has them (None when it has not).
LeadTraits = Callable[[str], tuple[str | None, str | None]]


class MetricsStore(Protocol):
    def recent_sends(self, lead_id: str) -> tuple[list[RecentSend], int]:
        """The lead's recent sends and the list's version (0 when there is none)."""

    def send_template(self, send_id: str) -> str | None:
        """The template a send used, for events that do not carry it (unsubscribes)."""

    def lead_traits(self, lead_id: str) -> tuple[str | None, str | None]:
        """The lead's industry and first-touch source from its profile (None when not there)."""

    def commit(self, lead_id: str, event_id: str, change: Change, recent_version: int) -> str:
        """Apply ``change`` once: ``"applied"``, ``"duplicate"`` or ``"seen"`` (its unique marker was).

        Raises ``Retryable`` when the lead's recent list moved since ``recent_version``.
        """


class MetricsRecorder:
    """The consumer's path: one event, its counters incremented once."""

    def __init__(self, store: MetricsStore, window: timedelta = DEFAULT_ATTRIBUTION_WINDOW) -> None:
        self._store = store
        self._window = window

    def record(self, event: MetricEvent) -> str:
        if event.template is None and event.send_id is not None:
            event = replace(event, template=self._store.send_template(event.send_id))
        event = with_traits(event, self._store.lead_traits)
        recent: list[RecentSend] = []
        version = 0
        if event.kind in ("sent", "stage_changed"):
            recent, version = self._store.recent_sends(event.lead_id)
        change = changes_for(event, recent, self._window)
        if not change.increments and change.recent is None:
            return "nothing"
        return self._store.commit(event.lead_id, event.event_id, change, version)


def with_traits(event: MetricEvent, traits: LeadTraits) -> MetricEvent:
    """A stage move that does not carry the lead's industry or source gets them from the profile."""
    if event.kind != "stage_changed" or (event.industry is not None and event.source is not None):
        return event
    industry, source = traits(event.lead_id)
    return replace(event, industry=event.industry or industry, source=event.source or source)


@dataclass
class _ReplayState:
    counters: Counters = field(default_factory=dict)
    recent: dict[str, tuple[RecentSend, ...]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    templates: dict[str, str] = field(default_factory=dict)


def add(counters: Counters, increments: Iterable[Increment]) -> None:
    for inc in increments:
        name = inc.key.id if inc.key.kind == "email" else f"{inc.key.kind}|{inc.key.id}"
        fields = counters.setdefault((name, inc.day), {})
        fields[inc.field] = fields.get(inc.field, 0) + inc.amount


def replay(
    events: Iterable[MetricEvent],
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
    traits: LeadTraits = lambda lead_id: (None, None),
) -> Counters:
    """The counters of a stream of events (in bus order), computed in memory; duplicates count once."""
    state = _ReplayState()
    applied: set[str] = set()
    for event in events:
        if event.event_id in applied:
            continue
        applied.add(event.event_id)
        if (
            event.send_id is not None
            and event.template is not None
            and event.kind
            in (
                "sent",
                "skipped",
                "deferred",
            )
        ):
            state.templates.setdefault(event.send_id, event.template)
        if event.template is None and event.send_id is not None:
            event = replace(event, template=state.templates.get(event.send_id))
        event = with_traits(event, traits)
        change = changes_for(event, state.recent.get(event.lead_id, ()), window)
        if change.unique is not None:
            if change.unique in state.seen:
                continue
            state.seen.add(change.unique)
        add(state.counters, change.increments)
        if change.recent is not None:
            state.recent[event.lead_id] = change.recent
    return state.counters


# --- reports ----------------------------------------------------------------------------------------------


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


def report_row(key: CounterKey, totals: dict[str, int]) -> dict[str, Any]:
    """One report row from the summed counters of one key."""
    sent = totals.get(SENT, 0)
    opened, clicked = totals.get(OPENED_UNIQUE, 0), totals.get(CLICKED_UNIQUE, 0)
    unsubscribed = totals.get(UNSUBSCRIBED, 0)
    by_reason = {
        f[len(SKIPPED_PREFIX) :]: n for f, n in sorted(totals.items()) if f.startswith(SKIPPED_PREFIX) and n
    }
    return {
        "program": key.program,
        "step": key.step,
        "template": key.template,
        "sent": sent,
        "skipped": {"total": totals.get(SKIPPED, 0), "by_reason": by_reason},
        "deferred": totals.get(DEFERRED, 0),
        "opened_unique": opened,
        "clicked_unique": clicked,
        "unsubscribed": unsubscribed,
        "stage_advances_last_touch": totals.get(LAST_TOUCH, 0),
        "stage_advances_any_touch": totals.get(ANY_TOUCH, 0),
        "rates": {
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


def email_report(
    keys: Iterable[CounterKey], read_days: Callable[[CounterKey], Iterable[dict[str, int]]]
) -> list[dict[str, Any]]:
    """Rows for every key with anything counted in the range, by program, step, template."""
    rows = []
    for key in keys:
        totals = sum_days(read_days(key))
        if any(totals.values()):
            rows.append(report_row(key, totals))
    rows.sort(key=lambda r: (r["program"] or "", r["step"] or "", r["template"]))
    return rows


def parse_breakdown(value: str | None) -> str | None:
    """``by``: absent, ``industry`` or ``source``; ``InvalidInput`` naming it otherwise."""
    if value is None or value == "":
        return None
    if value not in BREAKDOWNS:
        raise InvalidInput(f"by: must be one of {', '.join(BREAKDOWNS)}")
    return value


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def funnel_group(totals: dict[str, dict[str, int]]) -> dict[str, Any]:
    """One funnel from the summed counters of each stage: entries, conversion to the next, closed deals."""
    stages = []
    for stage in STAGES:
        entered = totals.get(stage, {}).get(ENTERED, 0)
        following = FUNNEL[FUNNEL.index(stage) + 1] if stage in FUNNEL[:-1] else None
        conversion = None if following is None else _rate(totals.get(following, {}).get(ENTERED, 0), entered)
        stages.append(
            {"stage": stage, "entered": entered, "next": following, "conversion_to_next": conversion}
        )
    closed = {}
    for name, closed_stage in (("won", WON), ("lost", LOST)):
        fields = totals.get(closed_stage, {})
        closed[name] = {
            "count": fields.get(ENTERED, 0),
            "with_amount": fields.get(WITH_AMOUNT, 0),
            "amount": _money(fields.get(AMOUNT_CENTS, 0)),
        }
    return {"stages": stages, "closed": closed}


def funnel_report(
    keys: Iterable[FunnelKey], read_days: Callable[[FunnelKey], Iterable[dict[str, int]]]
) -> list[dict[str, Any]]:
    """A funnel per breakdown value (one, valued None, without a breakdown), by value."""
    values: dict[str | None, dict[str, dict[str, int]]] = {}
    for key in keys:
        totals = sum_days(read_days(key))
        if any(totals.values()):
            value = None if key.by == ALL else key.value
            values.setdefault(value, {})[key.stage] = totals
    return [
        {"value": value, **funnel_group(values[value])} for value in sorted(values, key=lambda v: v or "")
    ]
