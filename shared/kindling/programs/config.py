"""Nurture programs and segments as marketing operations write them (config/programs/*.yaml).

A program is a small graph of steps. Validation catches what people get wrong: a step
that points nowhere, a step nothing leads to, a loop that would spin without a wait, a
template that does not exist, a duration that does not parse; each error names the
program, the step and the problem.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kindling.scoring.config import Grade, Stage, ValueCondition

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|minutes?|h|hours?|d|days?|w|weeks?)\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
_STAGE_ORDER = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 6h, 2d or 3w")
    amount, unit = int(match.group(1)), match.group(2)[0]
    if amount <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return timedelta(seconds=amount * _UNITS[unit])


Duration = Annotated[str, Field(min_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RecentEvents(_Strict):
    """The lead did ``event`` at least ``at_least`` times in the last ``within_days`` days."""

    event: str = Field(min_length=1)
    within_days: int = Field(ge=1, le=365)
    at_least: int = Field(default=1, ge=1)


class Condition(_Strict):
    """About a lead; every part given must hold."""

    trait: dict[str, ValueCondition] = Field(default_factory=dict)
    stage_in: list[Stage] | None = None
    stage_at_least: Stage | None = None
    grade_at_least: Grade | None = None
    engagement_at_least: float | None = None
    in_segment: Slug | None = None
    not_in_segment: Slug | None = None
    clicked_email_of_program: bool | None = None
    opened_email_of_program: bool | None = None
    did: RecentEvents | None = None

    @model_validator(mode="after")
    def _something(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("a condition needs at least one test (trait, stage_in, grade_at_least, ...)")
        if self.stage_at_least in ("closed_lost", "recycled"):
            raise ValueError("stage_at_least takes a funnel stage (subscriber to customer)")
        return self


class Trigger(_Strict):
    new_lead: bool | None = None
    event: str | None = None
    stage: Stage | None = None
    segment: Slug | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [
            k for k in ("new_lead", "event", "stage", "segment") if getattr(self, k) not in (None, False)
        ]
        if len(given) != 1:
            raise ValueError("a trigger is exactly one of new_lead: true, event, stage, segment")
        return self


class ExitGoal(_Strict):
    stage_at_least: Stage | None = None
    #: Exit on entering any of these stages (closed_lost and recycled included).
    stage_in: list[Stage] | None = Field(default=None, min_length=1)
    event: str | None = None
    in_segment: Slug | None = None

    @model_validator(mode="after")
    def _one(self) -> ExitGoal:
        given = (self.stage_at_least, self.stage_in, self.event, self.in_segment)
        if sum(v is not None for v in given) != 1:
            raise ValueError("an exit goal is exactly one of stage_at_least, stage_in, event, in_segment")
        if self.stage_at_least in ("closed_lost", "recycled"):
            raise ValueError("stage_at_least takes a funnel stage (subscriber to customer)")
        return self


class BranchCase(_Strict):
    when: Condition = Field(alias="if")
    then: Slug


class WaitUntil(_Strict):
    event: str | None = None
    condition: Condition | None = None
    timeout: Duration
    on_event: Slug | None = None  # default: the next step
    on_timeout: Slug | None = None  # default: the next step

    @model_validator(mode="after")
    def _what(self) -> WaitUntil:
        if (self.event is None) == (self.condition is None):
            raise ValueError("wait_until needs exactly one of event or condition")
        parse_duration(self.timeout)
        return self


class Update(_Strict):
    stage: Stage | None = None
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    score: int | None = None

    @model_validator(mode="after")
    def _something(self) -> Update:
        if self.stage is None and not self.add_tags and not self.remove_tags and not self.score:
            raise ValueError("update needs stage, add_tags, remove_tags or score")
        return self


class Step(_Strict):
    id: Slug
    send_email: Slug | None = None
    wait: Duration | None = None
    wait_until: WaitUntil | None = None
    branch: list[BranchCase] | None = None
    otherwise: Slug | None = Field(default=None, alias="else")
    update: Update | None = None
    notify_sales: str | None = None
    exit: bool | None = None
    next: Slug | None = None

    @property
    def kind(self) -> str:
        for kind in ("send_email", "wait", "wait_until", "branch", "update", "notify_sales", "exit"):
            if getattr(self, kind) not in (None, False):
                return kind
        return "none"

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [
            k
            for k in ("send_email", "wait", "wait_until", "branch", "update", "notify_sales", "exit")
            if getattr(self, k) not in (None, False)
        ]
        if len(kinds) != 1:
            raise ValueError(f"a step does exactly one thing, not {kinds or 'nothing'}")
        if self.wait is not None:
            parse_duration(self.wait)
        if self.branch is not None and not self.branch:
            raise ValueError("branch needs at least one case")
        if self.otherwise is not None and self.branch is None:
            raise ValueError("'else' belongs to a branch step")
        if self.exit and self.next is not None:
            raise ValueError("an exit step has no next step")
        return self

    def targets(self, following: str | None) -> list[str | None]:
        """Where this step may lead (None: the end of the program)."""
        if self.exit:
            return []
        default = self.next or following
        if self.branch is not None:
            return [case.then for case in self.branch] + [self.otherwise or default]
        if self.wait_until is not None:
            return [self.wait_until.on_event or default, self.wait_until.on_timeout or default]
        return [default]


class Reentry(_Strict):
    after_days: int = Field(ge=1)


class Program(_Strict):
    id: Slug
    name: str = Field(min_length=1)
    description: str = ""
    trigger: Trigger
    entry_filter: Condition | None = None
    reentry: Literal["never", "always"] | Reentry = "never"
    exit_goals: list[ExitGoal] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    #: Who sends first when programs compete for a lead's frequency cap or a send window's
    #: opening: 1 goes before 2. Programs without one come after those with one, in file order.
    priority: int | None = Field(default=None, ge=1, le=100)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def following(self, step_id: str) -> str | None:
        ids = [s.id for s in self.steps]
        index = ids.index(step_id)
        return ids[index + 1] if index + 1 < len(ids) else None

    def next_of(self, step: Step) -> str | None:
        return step.next or self.following(step.id)

    @model_validator(mode="after")
    def _graph(self) -> Program:
        problems: list[str] = []
        ids = [s.id for s in self.steps]
        for duplicate in {i for i in ids if ids.count(i) > 1}:
            problems.append(f"step '{duplicate}': two steps have this id")
        known = set(ids)
        edges: dict[str, list[str]] = {}
        for step in self.steps:
            targets = step.targets(self.following(step.id))
            for target in targets:
                if target is not None and target not in known:
                    problems.append(
                        f"step '{step.id}': points to '{target}', which is not a step of this program"
                    )
            edges[step.id] = [t for t in targets if t is not None and t in known]
        reachable, frontier = {ids[0]}, [ids[0]]
        while frontier:
            for target in edges[frontier.pop()]:
                if target not in reachable:
                    reachable.add(target)
                    frontier.append(target)
        for step_id in ids:
            if step_id not in reachable:
                problems.append(f"step '{step_id}': unreachable, no step leads to it")
        at_once: dict[str, list[str]] = {}
        for step in self.steps:
            if step.wait_until is not None and step.wait_until.condition is not None:
                on_event = step.targets(self.following(step.id))[0]
                at_once[step.id] = [on_event] if on_event in known else []
        problems.extend(_loops_without_wait(self.steps, edges, at_once))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _loops_without_wait(
    steps: list[Step], edges: dict[str, list[str]], at_once: dict[str, list[str]]
) -> list[str]:
    """A cycle whose every step runs at once would spin forever within one tick.

    ``at_once``: the on_event edge of each wait_until on a condition, which is taken at
    once when the condition already holds, so it is instant too.
    """
    instant = {s.id for s in steps if s.kind not in ("wait", "wait_until")} | set(at_once)
    problems, state = [], dict.fromkeys(instant, 0)

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in at_once.get(node, edges[node]):
            if target not in instant:
                continue
            if state[target] == 1:
                loop = [*path[path.index(target) :], target] if target in path else [node, target]
                problems.append(f"step '{target}': loop with no wait in it ({' -> '.join(loop)})")
            elif state[target] == 0:
                visit(target, [*path, target])
        state[node] = 2

    for node in [s.id for s in steps if s.id in instant]:
        if state[node] == 0:
            visit(node, [node])
    return problems


class Segment(_Strict):
    id: Slug
    name: str = Field(min_length=1)
    when: Condition


class Segments(_Strict):
    segments: list[Segment] = Field(default_factory=list)

    @field_validator("segments")
    @classmethod
    def _unique(cls, segments: list[Segment]) -> list[Segment]:
        ids = [s.id for s in segments]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"two segments have the id {sorted(duplicates)[0]!r}")
        return segments


class Programs(_Strict):
    """Every program, as stored and read back by the functions."""

    programs: dict[str, Program] = Field(default_factory=dict)

    def rank(self, program_id: str) -> int:
        """0 for the program that sends first, then 1, ...: by ``priority``, then file order."""
        order = sorted(
            enumerate(self.programs.values()),
            key=lambda indexed: (indexed[1].priority is None, indexed[1].priority or 0, indexed[0]),
        )
        ranks = {program.id: rank for rank, (_, program) in enumerate(order)}
        return ranks.get(program_id, len(ranks))


def stage_rank(stage: str | None) -> int:
    return _STAGE_ORDER.index(stage) if stage in _STAGE_ORDER else -1


def exits_at_the_sale(program: Program) -> bool:
    """Whether an exit goal ends the program when its lead becomes a customer."""
    return any(
        goal.stage_at_least is not None or (goal.stage_in is not None and "customer" in goal.stage_in)
        for goal in program.exit_goals
    )


def sale_warnings(programs: Programs, onboarding: str | None = None) -> list[tuple[str, str]]:
    """Programs that send marketing email and would go on after the sale: a customer would get them.

    Onboarding (triggered by the customer stage, or named as the CRM's onboarding program) is
    meant for customers and is left alone.
    """
    warnings = []
    for program_id, program in sorted(programs.programs.items()):
        sends = any(step.send_email for step in program.steps)
        for_customers = program.trigger.stage == "customer" or program_id == onboarding
        if sends and not for_customers and not exits_at_the_sale(program):
            warnings.append(
                (
                    program_id,
                    "sends email but does not exit when the lead becomes a customer; add an exit goal "
                    "such as {stage_at_least: sql} or {stage_in: [customer, closed_lost]}",
                )
            )
    return warnings


def check_references(programs: Programs, templates: set[str], segments: set[str]) -> list[str]:
    """Problems that need other config: templates and segments that do not exist."""
    problems = []
    for program in programs.programs.values():
        names: list[tuple[str, Any]] = [("trigger", program.trigger.segment)]
        names += _condition_segments("entry filter", program.entry_filter)
        for step in program.steps:
            if step.send_email is not None and step.send_email not in templates:
                problems.append(f"program '{program.id}': step '{step.id}': no template '{step.send_email}'")
            for case in step.branch or []:
                names += _condition_segments(f"step '{step.id}'", case.when)
            if step.wait_until is not None:
                names += _condition_segments(f"step '{step.id}'", step.wait_until.condition)
        names += [("exit goal", g.in_segment) for g in program.exit_goals]
        for where, name in names:
            if name is not None and name not in segments:
                problems.append(f"program '{program.id}': {where}: no segment '{name}'")
    return problems


def _condition_segments(where: str, condition: Condition | None) -> list[tuple[str, Any]]:
    if condition is None:
        return []
    return [(where, condition.in_segment), (where, condition.not_in_segment)]


def event_window_days(programs: Programs, segments: Segments) -> int:
    """The longest look-back any condition needs: how much of a lead's history to read."""
    conditions: list[Condition] = [s.when for s in segments.segments]
    for program in programs.programs.values():
        if program.entry_filter is not None:
            conditions.append(program.entry_filter)
        for step in program.steps:
            conditions += [case.when for case in step.branch or []]
            if step.wait_until is not None and step.wait_until.condition is not None:
                conditions.append(step.wait_until.condition)
    return max((c.did.within_days for c in conditions if c.did is not None), default=0)
