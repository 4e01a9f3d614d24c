"""An Amazon Pinpoint journey (the JSON of ``GetJourney``) as a kindling program and template stubs.

Pinpoint journeys are a graph of activities from ``StartActivity``; a kindling program is a list
of steps where each step goes on to the next one unless it says ``next``. The conversion walks the
graph from the start and writes the steps in that order, setting ``next`` (and a branch's ``else``)
wherever the step that follows in the list is not the one that comes next in the journey. The end
of a Pinpoint path is the end of the program.

What maps exactly: ``EMAIL`` (a ``send_email`` of a template named after the Pinpoint template),
``Wait`` for a duration, yes/no and multivariate splits on a click or an open of an email, or on
segment membership, and the journey's start condition and re-entry limits. Everything else is
converted to the nearest thing kindling has and listed in :attr:`JourneyConversion.unmapped`,
naming the activity and what was lost. Quiet time, open hours and sending caps are per journey in
Pinpoint but global in kindling (``config/email.yaml``): they become
:attr:`JourneyConversion.settings_hints`, never a change to the settings.

Email content is not part of a journey (it lives in Pinpoint's templates), so each template is a
stub that renders and validates, saying what to paste where.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kindling.programs.config import Program

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_KINDLING_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEK, _DAY, _HOUR, _MINUTE = 604800, 86400, 3600, 60
#: Activity kinds kindling cannot perform; participants go straight on to the next activity.
_OTHER_CHANNELS = {
    "SMS": "an SMS message",
    "PUSH": "a push notification",
    "CUSTOM": "a custom channel message (Lambda function or webhook)",
    "ContactCenter": "an Amazon Connect call",
}
_KINDS = ("EMAIL", "Wait", "ConditionalSplit", "MultiCondition", "RandomSplit", "Holdout", *_OTHER_CHANNELS)


class JourneyConversionError(ValueError):
    """The document is not a Pinpoint journey that can be converted; the message says why."""


@dataclass
class JourneyConversion:
    """A journey as kindling config: the program, its template stubs, and what did not carry over."""

    #: A program document (``config/programs/<id>.yaml``) that ``Program.model_validate`` accepts.
    program: dict[str, Any]
    #: Template name -> template document (``config/templates/<name>.yaml``), one per Pinpoint template.
    templates: dict[str, dict[str, Any]]
    #: Everything not converted exactly, each naming the activity (or journey field) and what was lost.
    unmapped: list[str]
    #: What the journey's quiet time, open hours and limits would mean for config/email.yaml.
    settings_hints: list[str]
    #: Segment ids the program refers to; each must exist in config/segments.yaml.
    segments: list[str] = field(default_factory=list)

    @property
    def program_id(self) -> str:
        return str(self.program["id"])


def slug(text: str, fallback: str = "pinpoint") -> str:
    """``text`` as a kindling id: lower-case letters, digits and '-', at most 63 characters."""
    value = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:63].strip("-")
    return value if value else fallback


def iso_duration_seconds(text: str) -> tuple[int, str | None]:
    """An ISO-8601 duration (PT1H, P2D, P1W, P1DT12H) in seconds, and why it is approximate (or None).

    Raises ``ValueError`` for text that is not such a duration.
    """
    match = _ISO_DURATION.match(str(text).strip().upper())
    if not match:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT1H, P2D or P1W")
    parts = {name: value for name, value in match.groupdict().items() if value is not None}
    approximate = []
    if "years" in parts:
        approximate.append("a year is taken as 365 days")
    if "months" in parts:
        approximate.append("a month is taken as 30 days")
    seconds = float(parts.get("seconds", 0))
    whole = (
        int(parts.get("years", 0)) * 365 * _DAY
        + int(parts.get("months", 0)) * 30 * _DAY
        + int(parts.get("weeks", 0)) * _WEEK
        + int(parts.get("days", 0)) * _DAY
        + int(parts.get("hours", 0)) * _HOUR
        + int(parts.get("minutes", 0)) * _MINUTE
    )
    total = whole + math.ceil(seconds)
    if total % _MINUTE:
        approximate.append("kindling counts whole minutes, so the seconds are rounded up")
    return total, "; ".join(approximate) or None


def kindling_duration(seconds: int) -> str:
    """Seconds as kindling writes a duration, in the largest unit that is exact: 1w, 2d, 36h, 90m."""
    for size, unit in ((_WEEK, "w"), (_DAY, "d"), (_HOUR, "h")):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{max(1, math.ceil(seconds / _MINUTE))}m"


@dataclass
class _Node:
    """What one activity becomes: steps to write (none for a pass-through) and where it goes."""

    activity_id: str
    kind: str
    #: The step documents, in order; the last one is where the activity's edges leave from.
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: For a linear activity or a pass-through: the activity that comes next (None: the end).
    successor: str | None = None
    #: For a branch: (condition, activity) pairs, and the activity when no case holds.
    cases: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    default: str | None = None


_END = "\x00end"


class _Converter:
    def __init__(self, journey: dict[str, Any]) -> None:
        self.journey = journey
        self.journey_id = str(journey.get("Id") or "")
        self.name = str(journey.get("Name") or "").strip()
        activities = journey.get("Activities")
        if not isinstance(activities, dict) or not activities:
            raise JourneyConversionError("the journey has no Activities: there is nothing to convert")
        self.activities: dict[str, dict[str, Any]] = {
            str(key): value if isinstance(value, dict) else {} for key, value in activities.items()
        }
        start = journey.get("StartActivity")
        if not isinstance(start, str) or start not in self.activities:
            raise JourneyConversionError(
                f"the journey's StartActivity {start!r} is not one of its Activities "
                f"({', '.join(sorted(self.activities))})"
            )
        self.start = start
        self.unmapped: list[str] = []
        self.hints: list[str] = []
        self.segments: list[str] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.template_names: dict[tuple[str, str | None], str] = {}
        self.used_ids: set[str] = set()
        self.nodes: dict[str, _Node] = {}

    # --- naming ----------------------------------------------------------------------------------

    def label(self, activity_id: str) -> str:
        activity = self.activities.get(activity_id, {})
        kind = _kind(activity)
        description = activity.get("Description")
        said = f", {_one_line(description)!r}" if isinstance(description, str) and description.strip() else ""
        return f"activity {activity_id} ({kind}{said})"

    def note(self, activity_id: str, text: str) -> None:
        self.unmapped.append(f"{self.label(activity_id)}: {text}")

    def step_id(self, activity_id: str, suffix: str = "") -> str:
        description = self.activities.get(activity_id, {}).get("Description")
        base = description if isinstance(description, str) and _SLUG.fullmatch(description) else None
        base = base or slug(activity_id, fallback="step")
        return self.unique(f"{base[: 63 - len(suffix)]}{suffix}")

    def unique(self, wanted: str) -> str:
        candidate, number = wanted, 2
        while candidate in self.used_ids:
            tail = f"-{number}"
            candidate, number = f"{wanted[: 63 - len(tail)]}{tail}", number + 1
        self.used_ids.add(candidate)
        return candidate

    def segment(self, segment_id: str) -> str:
        name = slug(segment_id, fallback="pinpoint-segment")
        if name not in self.segments:
            self.segments.append(name)
        return name

    # --- activities ------------------------------------------------------------------------------

    def node(self, activity_id: str) -> _Node:
        if activity_id not in self.nodes:
            self.nodes[activity_id] = self.build(activity_id)
        return self.nodes[activity_id]

    def target(self, activity_id: str, value: object, what: str) -> str | None:
        """The activity ``value`` names, or None (the end) when it names none or an unknown one."""
        if value is None or value == "":
            return None
        if isinstance(value, str) and value in self.activities:
            return value
        self.note(activity_id, f"{what} {value!r} is not an activity of this journey; that path ends here")
        return None

    def build(self, activity_id: str) -> _Node:
        activity = self.activities[activity_id]
        kind = _kind(activity)
        body = _dict(activity.get(kind))
        node = _Node(activity_id, kind)
        if kind == "EMAIL":
            node.steps = [{"id": self.step_id(activity_id), "send_email": self.template(activity_id, body)}]
            node.successor = self.target(activity_id, body.get("NextActivity"), "NextActivity")
        elif kind == "Wait":
            node.successor = self.target(activity_id, body.get("NextActivity"), "NextActivity")
            wait = self.wait(activity_id, body.get("WaitTime"), "WaitTime")
            if wait is not None:
                node.steps = [{"id": self.step_id(activity_id), "wait": wait}]
        elif kind == "ConditionalSplit":
            self.conditional_split(node, body)
        elif kind == "MultiCondition":
            self.multi_condition(node, body)
        elif kind == "RandomSplit":
            branches = [b for b in body.get("Branches") or [] if isinstance(b, dict)]
            first = branches[0] if branches else {}
            node.successor = self.target(activity_id, first.get("NextActivity"), "the first path")
            shares = ", ".join(
                f"{b.get('Percentage', '?')}% to {b.get('NextActivity') or 'the end'}" for b in branches
            )
            self.note(
                activity_id,
                f"kindling has no random split; every lead takes the first path "
                f"({first.get('NextActivity') or 'the end'}) instead of {shares or 'the split'}",
            )
        elif kind == "Holdout":
            node.successor = self.target(activity_id, body.get("NextActivity"), "NextActivity")
            self.note(
                activity_id,
                f"kindling has no holdout group; nobody is held out (Pinpoint stopped "
                f"{body.get('Percentage', '?')}% of participants here) and every lead goes straight on",
            )
        elif kind in _OTHER_CHANNELS:
            node.successor = self.target(activity_id, body.get("NextActivity"), "NextActivity")
            self.note(
                activity_id,
                f"kindling sends email only; {_OTHER_CHANNELS[kind]} is not sent and the lead goes "
                "straight on",
            )
        else:
            node.successor = self.target(activity_id, _first_next(activity), "NextActivity")
            self.note(activity_id, "not an activity type kindling knows; the lead goes straight on")
        return node

    def template(self, activity_id: str, body: dict[str, Any]) -> str:
        pinpoint_name = body.get("TemplateName")
        version = body.get("TemplateVersion")
        version = str(version) if version not in (None, "") else None
        if not isinstance(pinpoint_name, str) or not pinpoint_name.strip():
            self.note(activity_id, "the EMAIL activity names no TemplateName; its template is an empty stub")
            pinpoint_name = f"email-{activity_id}"
        key = (pinpoint_name, version)
        if key not in self.template_names:
            base = slug(pinpoint_name, fallback="pinpoint-template")
            if any(name == pinpoint_name for name, _ in self.template_names):
                base = slug(f"{pinpoint_name}-v{version or 'active'}", fallback="pinpoint-template")
            name = base
            number = 2
            while name in self.templates:
                name, number = f"{base[:60]}-{number}", number + 1
            self.template_names[key] = name
            self.templates[name] = _template_stub(pinpoint_name, version, activity_id, self.name)
        from_address = (body.get("MessageConfig") or {}).get("FromAddress")
        if from_address:
            self.note(
                activity_id,
                f"its sender {from_address!r} is not kept; kindling sends every email from "
                "config/email.yaml's from_address",
            )
        return self.template_names[key]

    def wait(self, activity_id: str, wait_time: object, what: str) -> str | None:
        """A WaitTime as a kindling duration; None when there is nothing to wait for."""
        if not isinstance(wait_time, dict) or not (wait_time.get("WaitFor") or wait_time.get("WaitUntil")):
            if what == "WaitTime":
                self.note(activity_id, "the Wait has no WaitFor or WaitUntil; it is left out")
            return None
        if wait_time.get("WaitFor"):
            try:
                seconds, approximate = iso_duration_seconds(wait_time["WaitFor"])
            except ValueError as exc:
                self.note(activity_id, f"{what}.WaitFor: {exc}; a wait of 1d is used instead")
                return "1d"
            if seconds <= 0:
                return None
            duration = kindling_duration(seconds)
            if approximate:
                self.note(
                    activity_id, f"{what}.WaitFor {wait_time['WaitFor']} becomes {duration}: {approximate}"
                )
            return duration
        until = str(wait_time["WaitUntil"])
        days, since = self.days_until(until)
        self.note(
            activity_id,
            f"{what}.WaitUntil {until} is a fixed date and time, which kindling cannot wait for: it waits "
            f"{days}d instead ({since}); leads that arrive later wait longer than in Pinpoint. "
            "Edit the wait, or use wait_until on an event",
        )
        return f"{days}d"

    def days_until(self, until: str) -> tuple[int, str]:
        moment = _timestamp(until)
        schedule = _dict(self.journey.get("Schedule"))
        for field_name, value in (
            ("Schedule.StartTime", schedule.get("StartTime")),
            ("CreationDate", self.journey.get("CreationDate")),
        ):
            reference = _timestamp(value)
            if moment is not None and reference is not None and moment > reference:
                days = max(1, math.ceil((moment - reference).total_seconds() / _DAY))
                return days, f"the time from the journey's {field_name} {value} to that date"
        return 1, "the journey gives no earlier date to count from"

    # --- splits ----------------------------------------------------------------------------------

    def evaluation_wait(self, node: _Node, body: dict[str, Any]) -> None:
        wait = self.wait(node.activity_id, body.get("EvaluationWaitTime"), "EvaluationWaitTime")
        if wait is not None:
            node.steps.append({"id": self.step_id(node.activity_id, "-wait"), "wait": wait})

    def conditional_split(self, node: _Node, body: dict[str, Any]) -> None:
        aid = node.activity_id
        true_activity = self.target(aid, body.get("TrueActivity"), "TrueActivity")
        false_activity = self.target(aid, body.get("FalseActivity"), "FalseActivity")
        compound = _dict(body.get("Condition"))
        operator = str(compound.get("Operator") or "ALL").upper()
        conditions = [c for c in compound.get("Conditions") or [] if isinstance(c, dict)]
        mapped: list[dict[str, Any]] = []
        for index, simple in enumerate(conditions, start=1):
            where = f"condition {index} of {len(conditions)}" if len(conditions) > 1 else "the condition"
            condition = self.condition(aid, simple, where)
            if condition is not None:
                mapped.append(condition)
        lost = len(conditions) - len(mapped)
        cases: list[dict[str, Any]] = []
        if operator == "ANY":
            cases = mapped
            if mapped and lost:
                self.note(
                    aid,
                    f"{lost} of the {len(conditions)} ANY conditions are left out, so fewer leads take "
                    "the yes path",
                )
        elif mapped:
            merged: dict[str, Any] = {}
            for condition in mapped:
                clash = [key for key in condition if key in merged and merged[key] != condition[key]]
                if clash:
                    self.note(
                        aid,
                        f"kindling cannot test {clash[0]} twice in one condition; {condition} is left out",
                    )
                    lost += 1
                    continue
                merged.update(condition)
            cases = [merged]
            if lost:
                self.note(
                    aid,
                    f"{lost} of the {len(conditions)} ALL conditions are left out, so more leads take "
                    "the yes path",
                )
        if not cases:
            node.successor = false_activity
            self.note(
                aid,
                "no condition of this yes/no split can be converted, so the branch is left out and every "
                f"lead takes the no path ({body.get('FalseActivity') or 'the end'}); the yes path "
                f"({body.get('TrueActivity') or 'the end'}) is not taken",
            )
            return
        self.evaluation_wait(node, body)
        node.kind = "branch"
        node.cases = [(case, true_activity) for case in cases]
        node.default = false_activity
        node.steps.append({"id": self.step_id(aid)})

    def multi_condition(self, node: _Node, body: dict[str, Any]) -> None:
        aid = node.activity_id
        default = self.target(aid, body.get("DefaultActivity"), "DefaultActivity")
        branches = [b for b in body.get("Branches") or [] if isinstance(b, dict)]
        for index, branch in enumerate(branches, start=1):
            simple = _dict(branch.get("Condition"))
            going = branch.get("NextActivity") or "the end"
            condition = self.condition(aid, simple, f"path {index} (to {going})")
            if condition is None:
                self.note(
                    aid,
                    f"path {index} (to {going}) is left out; its leads take the next path that holds, "
                    f"else the default path ({body.get('DefaultActivity') or 'the end'})",
                )
                continue
            node.cases.append((condition, self.target(aid, branch.get("NextActivity"), f"path {index}")))
        if not node.cases:
            node.successor = default
            self.note(
                aid,
                f"no path of this multivariate split can be converted, so the branch is left out and every "
                f"lead takes the default path ({body.get('DefaultActivity') or 'the end'})",
            )
            return
        self.evaluation_wait(node, body)
        node.kind = "branch"
        node.default = default
        node.steps.append({"id": self.step_id(aid)})

    def condition(self, split_id: str, simple: dict[str, Any], where: str) -> dict[str, Any] | None:
        """A Pinpoint SimpleCondition as a kindling condition, or None after noting why it cannot be."""
        segment = simple.get("SegmentCondition")
        event = simple.get("EventCondition")
        if isinstance(segment, dict) and segment.get("SegmentId"):
            name = self.segment(str(segment["SegmentId"]))
            self.note(
                split_id,
                f"{where}: Pinpoint segment {segment['SegmentId']} becomes in_segment {name}; define a "
                f"kindling segment '{name}' in config/segments.yaml (its Pinpoint definition is not "
                "converted)",
            )
            return {"in_segment": name}
        if isinstance(event, dict):
            return self.event_condition(split_id, event, where)
        if simple.get("SegmentDimensions"):
            self.note(
                split_id,
                f"{where}: a segment-dimension test (attributes, demographics, location, behaviour or "
                "metrics) cannot be converted; write it as a kindling condition on traits",
            )
            return None
        self.note(split_id, f"{where}: an empty or unknown condition cannot be converted")
        return None

    def event_condition(self, split_id: str, event: dict[str, Any], where: str) -> dict[str, Any] | None:
        dimensions = _dict(event.get("Dimensions"))
        event_type = _dict(dimensions.get("EventType"))
        values = [str(v) for v in event_type.get("Values") or []]
        inclusive = str(event_type.get("DimensionType") or "INCLUSIVE").upper() == "INCLUSIVE"
        message = event.get("MessageActivity")
        shown = ", ".join(values) or "no event type"
        if not message:
            self.note(
                split_id,
                f"{where}: the event test ({shown}) is not about an email of this journey and cannot be "
                "converted; kindling's did: {event: ..., within_days: ...} may come close",
            )
            return None
        if message not in self.activities or _kind(self.activities[message]) != "EMAIL":
            self.note(
                split_id,
                f"{where}: {shown} of {message}, which is not an email of this journey, cannot be converted",
            )
            return None
        kinds = {_email_event(value) for value in values}
        if len(values) != 1 or None in kinds or not inclusive:
            self.note(
                split_id,
                f"{where}: {'' if inclusive else 'no '}{shown} of email {message} cannot be converted; "
                "kindling tests one click or one open",
            )
            return None
        if dimensions.get("Attributes") or dimensions.get("Metrics"):
            self.note(
                split_id, f"{where}: the attribute and metric filters on the {shown} event are left out"
            )
        test = "clicked_email_of_program" if kinds == {"click"} else "opened_email_of_program"
        others = sorted(self.emails_before(split_id) - {message})
        if others:
            self.note(
                split_id,
                f"{where}: {shown} of email {message} becomes {test}, which also holds for "
                f"{'a click' if kinds == {'click'} else 'an open'} of an earlier email of the program "
                f"({', '.join(others)})",
            )
        return {test: True}

    def emails_before(self, activity_id: str) -> set[str]:
        """EMAIL activities on some path from the start to ``activity_id``."""
        parents: dict[str, set[str]] = {}
        for source, activity in self.activities.items():
            for target in _edges(activity):
                parents.setdefault(target, set()).add(source)
        seen, frontier = set(), [activity_id]
        while frontier:
            for parent in parents.get(frontier.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    frontier.append(parent)
        return {a for a in seen if _kind(self.activities[a]) == "EMAIL"}

    # --- the graph as a list of steps -------------------------------------------------------------

    def resolve(self, activity_id: str | None) -> str | None:
        """The first activity from ``activity_id`` on that has steps (None: the end)."""
        seen: list[str] = []
        while activity_id is not None:
            if activity_id in seen:
                self.note(activity_id, "these activities lead only to each other; that path ends here")
                return None
            seen.append(activity_id)
            node = self.node(activity_id)
            if node.steps:
                return activity_id
            activity_id = node.successor
        return None

    def children(self, node: _Node) -> list[str | None]:
        if node.kind == "branch":
            return [self.resolve(node.default), *(self.resolve(t) for _, t in node.cases)]
        return [self.resolve(node.successor)]

    def steps(self) -> list[dict[str, Any]]:
        first = self.resolve(self.start)
        if first is None:
            raise JourneyConversionError(
                f"journey {self.journey_id or self.name!r}: no activity from StartActivity {self.start} on "
                "can be converted (see the activities above), so the program would have no step"
            )
        # Depth first, the path a lead takes when no condition holds first, so most steps simply
        # go on to the one written after them.
        order: list[str] = []
        stack: list[str | None] = [first]
        while stack:
            activity_id = stack.pop()
            if activity_id is None or activity_id in order:
                continue
            order.append(activity_id)
            stack.extend(reversed(self.children(self.node(activity_id))))
        return self.link([self.node(a) for a in order])

    def link(self, nodes: list[_Node]) -> list[dict[str, Any]]:
        """The steps in order, with ``next`` / ``then`` / ``else`` where the following step is not it."""
        entry = {node.activity_id: node.steps[0]["id"] for node in nodes}
        flat: list[tuple[dict[str, Any], _Node | None]] = []
        for node in nodes:
            for index, step in enumerate(node.steps):
                flat.append((step, node if index == len(node.steps) - 1 else None))
        end_id = self.unique("end")
        needs_end = False

        def to(activity_id: str | None) -> str:
            resolved = self.resolve(activity_id)
            return _END if resolved is None else entry[resolved]

        # What each step goes on to, before knowing whether an exit step is needed.
        wanted: list[tuple[dict[str, Any], str | None, list[tuple[dict[str, Any], str]]]] = []
        for step, last_of in flat:
            if last_of is None:
                wanted.append((step, None, []))  # an evaluation wait, followed by its branch
            elif last_of.kind == "branch":
                wanted.append((step, to(last_of.default), [(c, to(t)) for c, t in last_of.cases]))
            else:
                wanted.append((step, to(last_of.successor), []))
        for index, (_, successor, cases) in enumerate(wanted):
            is_last = index == len(wanted) - 1
            if (successor == _END and not is_last) or any(t == _END for _, t in cases):
                needs_end = True
        steps = [step for step, _, _ in wanted]
        following_ids = [s["id"] for s in steps[1:]] + ([end_id] if needs_end else [None])
        for (step, successor, cases), following in zip(wanted, following_ids, strict=True):
            target = end_id if successor == _END else successor
            if cases:
                step["branch"] = [{"if": c, "then": end_id if t == _END else t} for c, t in cases]
                if target != following:
                    step["else"] = target
            elif target is not None and target != following and not (successor == _END and following is None):
                step["next"] = target
        if needs_end:
            steps.append({"id": end_id, "exit": True})
        return steps

    # --- the journey -----------------------------------------------------------------------------

    def trigger(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        start = self.journey.get("StartCondition")
        start = start if isinstance(start, dict) else {}
        by_segment = start.get("SegmentStartCondition")
        if isinstance(by_segment, dict) and by_segment.get("SegmentId"):
            name = self.segment(str(by_segment["SegmentId"]))
            refresh = self.journey.get("RefreshFrequency")
            self.unmapped.append(
                f"journey StartCondition: Pinpoint segment {by_segment['SegmentId']} becomes the trigger "
                f"{{segment: {name}}}; define a kindling segment '{name}' in config/segments.yaml (its "
                "Pinpoint definition is not converted). kindling enrols a lead when it enters the segment"
                + (f", at once rather than every {refresh}" if refresh else "")
            )
            return {"segment": name}, None
        by_event = start.get("EventStartCondition")
        if isinstance(by_event, dict):
            event_filter = _dict(by_event.get("EventFilter"))
            dimensions = _dict(event_filter.get("Dimensions"))
            event_type = _dict(dimensions.get("EventType"))
            values = [str(v) for v in event_type.get("Values") or [] if str(v).strip()]
            entry_filter = None
            if by_event.get("SegmentId"):
                name = self.segment(str(by_event["SegmentId"]))
                entry_filter = {"in_segment": name}
                self.unmapped.append(
                    f"journey StartCondition: only members of Pinpoint segment {by_event['SegmentId']} may "
                    f"enter, which becomes the entry filter {{in_segment: {name}}}; define a kindling "
                    f"segment '{name}' in config/segments.yaml"
                )
            if values and str(event_type.get("DimensionType") or "INCLUSIVE").upper() == "INCLUSIVE":
                if len(values) > 1:
                    self.unmapped.append(
                        f"journey StartCondition: the journey starts on any of {', '.join(values)}; kindling "
                        f"triggers on one event, {values[0]}; make a program per event for the others"
                    )
                if dimensions.get("Attributes") or dimensions.get("Metrics"):
                    self.unmapped.append(
                        "journey StartCondition: the event's attribute and metric filters are left out; add "
                        "them as an entry_filter on traits if they matter"
                    )
                return {"event": values[0]}, entry_filter
            self.unmapped.append(
                "journey StartCondition: the event start condition names no event type kindling can trigger "
                "on; the program starts for every new lead instead"
            )
            return {"new_lead": True}, entry_filter
        self.unmapped.append(
            "journey StartCondition: none given (or none kindling knows); the program starts for every "
            "new lead"
        )
        return {"new_lead": True}, None

    def reentry(self) -> str | dict[str, int]:
        limits = _dict(self.journey.get("Limits"))
        cap, interval = limits.get("EndpointReentryCap"), limits.get("EndpointReentryInterval")
        if cap == 1:
            if interval:
                self.unmapped.append(
                    f"journey Limits.EndpointReentryInterval {interval}: ignored, as the re-entry cap of 1 "
                    "lets a lead enter once (reentry: never)"
                )
            return "never"
        result: str | dict[str, int] = "always" if cap is not None else "never"
        if interval:
            try:
                seconds, _ = iso_duration_seconds(str(interval))
            except ValueError as exc:
                self.unmapped.append(f"journey Limits.EndpointReentryInterval: {exc}; reentry is never")
                return "never"
            days = max(1, math.ceil(seconds / _DAY))
            if seconds != days * _DAY:
                self.unmapped.append(
                    f"journey Limits.EndpointReentryInterval {interval}: kindling counts re-entry in whole "
                    f"days, so a lead may enter again after {days} days"
                )
            result = {"after_days": days}
        if isinstance(cap, int) and cap > 1:
            said = result if isinstance(result, str) else f"after {result['after_days']} days"
            self.unmapped.append(
                f"journey Limits.EndpointReentryCap {cap}: kindling does not limit how many times a lead "
                f"enters; reentry is {said}, without a cap"
            )
        return result

    def settings(self) -> None:
        journey, local = self.journey, self.journey.get("LocalTime")
        zone = (
            "in each lead's time zone (the timezone trait, else send_window.default_timezone)"
            if local
            else "in UTC (LocalTime is off; kindling uses each lead's timezone trait where it has one, so "
            "set send_window.default_timezone: UTC for the rest)"
        )
        windows: list[tuple[str, str, str]] = []  # (what, start, end) of times email may go out
        days: list[str] | None = None
        quiet = _dict(journey.get("QuietTime"))
        if quiet.get("Start") and quiet.get("End"):
            start, end = _clock(quiet["Start"]), _clock(quiet["End"])
            if start and end and start > end:
                windows.append(("QuietTime", end, start))
                self.hints.append(
                    f"QuietTime {quiet['Start']}-{quiet['End']}: no email from {start} to {end} {zone}; in "
                    f"kindling that is send_window start: '{end}', end: '{start}'"
                )
            else:
                self.hints.append(
                    f"QuietTime {quiet['Start']}-{quiet['End']}: no email from {quiet['Start']} to "
                    f"{quiet['End']} {zone}; kindling's send_window is one span per day, so it cannot leave "
                    "out a span in the middle of the day: pick the part of the day to keep as send_window "
                    "start and end"
                )
            self.unmapped.append(
                "journey QuietTime: kindling's send window is global; see the settings hints"
            )
        open_hours = _dict(journey.get("OpenHours"))
        email_hours = _dict(open_hours.get("EMAIL"))
        if email_hours:
            spans: dict[str, list[tuple[str, str]]] = {}
            for day, rules in email_hours.items():
                if str(day).upper() not in _DAYS:
                    continue
                pairs = [(_clock(r.get("StartTime")), _clock(r.get("EndTime"))) for r in rules or []]
                spans[_KINDLING_DAYS[_DAYS.index(str(day).upper())]] = [(s, e) for s, e in pairs if s and e]
            days = [d for d in _KINDLING_DAYS if spans.get(d)]
            distinct = {tuple(v) for v in spans.values() if v}
            listed = "; ".join(f"{d} {', '.join(f'{s}-{e}' for s, e in spans[d])}" for d in days)
            if len(distinct) == 1 and len(next(iter(distinct))) == 1:
                start, end = next(iter(distinct))[0]
                windows.append(("OpenHours", start, end))
                self.hints.append(
                    f"OpenHours.EMAIL ({listed}): email only then, {zone}; in kindling that is send_window "
                    f"days: [{', '.join(days)}], start: '{start}', end: '{end}'"
                )
            elif days:
                start = min(s for d in days for s, _ in spans[d])
                end = max(e for d in days for _, e in spans[d])
                windows.append(("OpenHours", start, end))
                self.hints.append(
                    f"OpenHours.EMAIL ({listed}): the hours differ by day or have gaps; kindling's "
                    f"send_window has one start and end for all its days: days: [{', '.join(days)}] with "
                    f"start: '{start}', end: '{end}' covers them all but also sends in the gaps"
                )
            self.unmapped.append(
                "journey OpenHours: kindling's send window is global; see the settings hints"
            )
        if len(windows) > 1:
            start = max(s for _, s, _ in windows)
            end = min(e for _, _, e in windows)
            if start < end:
                self.hints.append(
                    f"Together: send_window: {{days: [{', '.join(days or _KINDLING_DAYS)}], "
                    f"start: '{start}', end: '{end}'}}; kindling applies it to every program's marketing "
                    "email, not only this one"
                )
        closed = _dict(journey.get("ClosedDays"))
        if closed.get("EMAIL"):
            names = ", ".join(
                str(r.get("Name") or r.get("StartDateTime")) for r in closed["EMAIL"] if isinstance(r, dict)
            )
            self.hints.append(f"ClosedDays.EMAIL ({names}): kindling has no closed dates; nothing to set")
            self.unmapped.append("journey ClosedDays: kindling has no closed dates; no email is held on them")
        self.limit_hints()

    def limit_hints(self) -> None:
        limits = _dict(self.journey.get("Limits"))
        found = [k for k in ("DailyCap", "TimeframeCap", "TotalCap", "MessagesPerSecond") if limits.get(k)]
        if limits.get("DailyCap"):
            self.hints.append(
                f"Limits.DailyCap {limits['DailyCap']}: at most {limits['DailyCap']} messages a day to one "
                f"participant; in kindling frequency_cap: {{max_emails: {limits['DailyCap']}, per_days: 1}}, "
                "which counts the marketing email of every program"
            )
        timeframe = _dict(limits.get("TimeframeCap"))
        if timeframe.get("Cap") and timeframe.get("Days"):
            self.hints.append(
                f"Limits.TimeframeCap {timeframe['Cap']} per {timeframe['Days']} days: in kindling "
                f"frequency_cap: {{max_emails: {timeframe['Cap']}, per_days: {timeframe['Days']}}}, counted "
                "over every program"
            )
        if limits.get("TotalCap"):
            self.hints.append(
                f"Limits.TotalCap {limits['TotalCap']}: kindling has no limit on the emails of one program; "
                "a lead gets the program's send steps on its path"
            )
        if limits.get("MessagesPerSecond"):
            self.hints.append(
                f"Limits.MessagesPerSecond {limits['MessagesPerSecond']}: kindling sends at the pace of its "
                "queue and the SES account's sending rate; nothing to set"
            )
        if found:
            self.unmapped.append(
                f"journey Limits ({', '.join(found)}): kindling's frequency cap is global and it has no "
                "per-program caps; see the settings hints"
            )

    def journey_notes(self) -> None:
        journey = self.journey
        schedule = _dict(journey.get("Schedule"))
        if schedule.get("StartTime") or schedule.get("EndTime"):
            self.unmapped.append(
                f"journey Schedule ({schedule.get('StartTime') or 'now'} to "
                f"{schedule.get('EndTime') or 'open'}"
                f"{', ' + str(schedule['Timezone']) if schedule.get('Timezone') else ''}): a kindling "
                "program runs from `kindling config apply` until it is removed or paused"
            )
        if journey.get("RefreshFrequency"):
            self.unmapped.append(
                f"journey RefreshFrequency {journey['RefreshFrequency']}: kindling re-evaluates segments on "
                "every change of a lead, so there is no refresh interval"
            )
        if journey.get("WaitForQuietTime"):
            self.unmapped.append(
                "journey WaitForQuietTime: kindling always holds email sent outside the send window until it "
                "opens (it never drops it)"
            )

    def convert(self) -> JourneyConversion:
        trigger, entry_filter = self.trigger()
        reentry = self.reentry()
        steps = self.steps()
        reached = {n.activity_id for n in self.nodes.values()}
        reachable = _reachable(self.activities, self.start)
        for activity_id in self.activities:
            if activity_id in reached:
                continue
            why = (
                "no lead reaches it once the splits above are converted"
                if activity_id in reachable
                else "nothing in the journey leads to it"
            )
            kind = _kind(self.activities[activity_id])
            kept = " (its template stub is still written)" if kind == "EMAIL" else ""
            if kind == "EMAIL":
                body = self.activities[activity_id].get("EMAIL") or {}
                self.template(activity_id, body if isinstance(body, dict) else {})
            self.note(activity_id, f"left out: {why}{kept}")
        self.journey_notes()
        self.settings()
        program_id = slug(self.name, fallback="") or slug(self.journey_id, fallback="pinpoint-journey")
        program: dict[str, Any] = {
            "id": program_id,
            "name": self.name or f"Pinpoint journey {self.journey_id}",
            "description": _one_line(
                f"Converted from the Amazon Pinpoint journey {self.name!r}"
                + (f" ({self.journey_id})" if self.journey_id else "")
            ),
            "trigger": trigger,
        }
        if entry_filter is not None:
            program["entry_filter"] = entry_filter
        program["reentry"] = reentry
        program["steps"] = steps
        try:
            Program.model_validate(program)
        except ValidationError as exc:
            raise JourneyConversionError(
                f"journey {self.journey_id or self.name!r} converts to a program kindling rejects: "
                + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ) from exc
        return JourneyConversion(
            program=program,
            templates=self.templates,
            unmapped=list(dict.fromkeys(self.unmapped)),
            settings_hints=self.hints,
            segments=self.segments,
        )


def convert_journey(document: dict[str, Any]) -> JourneyConversion:
    """Convert the JSON of Pinpoint's ``GetJourney`` (``{"JourneyResponse": {...}}`` or the bare
    JourneyResponse) to a kindling program, template stubs, and notes on what did not carry over.

    Raises :class:`JourneyConversionError` when the document is not a journey that can be converted.
    """
    if not isinstance(document, dict):
        raise JourneyConversionError("expected a JSON object: the output of `aws pinpoint get-journey`")
    journey = document.get("JourneyResponse", document)
    if not isinstance(journey, dict) or not ("Activities" in journey or "StartActivity" in journey):
        raise JourneyConversionError(
            "not a Pinpoint journey: expected the output of `aws pinpoint get-journey` "
            '({"JourneyResponse": {...}}) or its JourneyResponse, with Activities and StartActivity'
        )
    return _Converter(journey).convert()


def write_conversion(conversion: JourneyConversion, out_dir: Path) -> list[Path]:
    """Write ``programs/<id>.yaml`` and ``templates/<name>.yaml`` under ``out_dir``; the paths written.

    Never overwrites: when any of the files exists, raises ``FileExistsError`` naming it and writes
    nothing.
    """
    out_dir = Path(out_dir)
    files: list[tuple[Path, str]] = [
        (out_dir / "programs" / f"{conversion.program_id}.yaml", _program_yaml(conversion))
    ]
    for name, template in sorted(conversion.templates.items()):
        files.append((out_dir / "templates" / f"{name}.yaml", _template_yaml(name, template)))
    for path, _ in files:
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; nothing was written. Move it away or choose another --out folder"
            )
    written: list[Path] = []
    for path, text in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError as exc:
            raise FileExistsError(f"{path} already exists; it was not overwritten") from exc
        written.append(path)
    return written


# --- helpers -------------------------------------------------------------------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _kind(activity: dict[str, Any]) -> str:
    for kind in _KINDS:
        if isinstance(activity.get(kind), dict):
            return kind
    return "unknown"


def _first_next(activity: dict[str, Any]) -> object:
    for value in activity.values():
        if isinstance(value, dict) and value.get("NextActivity"):
            return value["NextActivity"]
    return None


def _edges(activity: dict[str, Any]) -> list[str]:
    """Every activity ``activity`` may lead to, in Pinpoint's terms."""
    kind = _kind(activity)
    body = _dict(activity.get(kind))
    targets: list[object] = [body.get("NextActivity"), body.get("TrueActivity"), body.get("FalseActivity")]
    targets.append(body.get("DefaultActivity"))
    targets += [b.get("NextActivity") for b in body.get("Branches") or [] if isinstance(b, dict)]
    return [t for t in targets if isinstance(t, str) and t]


def _reachable(activities: dict[str, dict[str, Any]], start: str) -> set[str]:
    seen, frontier = {start}, [start]
    while frontier:
        for target in _edges(activities.get(frontier.pop(), {})):
            if target in activities and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def _email_event(value: str) -> str | None:
    """``click`` or ``open`` for Pinpoint's email event names (_email.click, EMAIL_OPEN, ...)."""
    words = set(re.split(r"[^a-z]+", value.lower())) - {"", "email"}
    if words in ({"click"}, {"clicked"}, {"clicks"}):
        return "click"
    if words in ({"open"}, {"opened"}, {"opens"}):
        return "open"
    return None


def _clock(value: object) -> str | None:
    match = _CLOCK.match(str(value or "").strip())
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _safe_text(text: str) -> str:
    """A Pinpoint name as plain text inside a Jinja template: no delimiters, no markup."""
    return html.escape(re.sub(r"[{}%#]", "", _one_line(text)), quote=True)


def _template_stub(pinpoint_name: str, version: str | None, activity_id: str, journey: str) -> dict[str, Any]:
    name = _safe_text(pinpoint_name)
    which = f"{name} (version {_safe_text(version)})" if version else f"{name} (its active version)"
    todo = f"TODO: paste the content of Pinpoint template {which}"
    markup = "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            '<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;font-size:15px;'
            'line-height:22px;color:#111827">',
            '<p>Hi {{ first_name | default("there") }},</p>',
            f"<p>{todo}: its HTML part goes here.</p>",
            "<p>Pinpoint message variables such as User.UserAttributes.FirstName become kindling traits such "
            'as first_name, and every trait needs a default: first_name | default("there").</p>',
            '<p><a href="{{ preferences_url }}">Choose which emails you get</a></p>',
            "</body>",
            "</html>",
            "",
        ]
    )
    text = "\n".join(
        [
            'Hi {{ first_name | default("there") }},',
            "",
            f"{todo}: its text part goes here.",
            "",
            "Choose which emails you get: {{ preferences_url }}",
            "",
        ]
    )
    return {
        "description": _one_line(
            f"Stub for Pinpoint template {pinpoint_name}"
            + (f" version {version}" if version else "")
            + f", sent by activity {activity_id} of journey {journey or '(unnamed)'}"
        ),
        "kind": "marketing",
        "subject": f"{todo} (subject)",
        "html": markup,
        "text": text,
    }


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _string)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def _comment(lines: Iterable[str]) -> str:
    return "".join(f"# {_one_line(line)}\n" if line else "#\n" for line in lines)


def _program_yaml(conversion: JourneyConversion) -> str:
    header = [
        f"{conversion.program.get('description', 'Converted from an Amazon Pinpoint journey')}.",
        "Review it before `kindling config apply`, starting with what was not converted exactly:",
    ]
    header += [f"  - {note}" for note in conversion.unmapped] or ["  (nothing)"]
    if conversion.segments:
        header.append(f"Segments to define in config/segments.yaml: {', '.join(conversion.segments)}.")
    header.append(
        "The program has no exit goal; add one such as {stage_at_least: sql} so the program stops at "
        "the sale (`kindling config validate` warns until then)."
    )
    return _comment(header) + "\n" + _dump(conversion.program)


def _template_yaml(name: str, template: dict[str, Any]) -> str:
    header = [
        "Converted from an Amazon Pinpoint journey: a stub for the template's content.",
        "Paste the Pinpoint template's subject, HTML and text where the TODOs say, and review the",
        "program's list of what was not converted exactly. kindling adds the postal address and the",
        "unsubscribe link to every marketing email.",
    ]
    return _comment(header) + "\n" + _dump(template)
