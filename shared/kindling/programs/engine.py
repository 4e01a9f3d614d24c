"""The program engine: pure decisions about enrollments, with no storage and no clock.

An enrollment runs its instant steps (branch, update, notify, exit) in one go and stops
at a send, a wait, a wait-until or the end. A send step is done when the sender says the
email went out, was skipped or was given up, not when it is queued: until then the
enrollment waits at it (deferred by the send window or the frequency cap, it says until
when), and the wait after it counts from the moment the email actually left. So the
emails of one enrollment leave in step order, never closer together than the waits
between them, and a branch on a click looks at an email that has been out for the wait.

Every stop gets a fresh token; the scheduler's due item and any queued run carry the
token, so a stale or duplicated run finds the token changed and does nothing: a step
never runs twice.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from kindling.programs.config import Condition, Program, Segment, parse_duration, stage_rank
from kindling.scoring.config import Stage, lookup

MAX_INSTANT_STEPS = 50
#: The latest entries an enrollment keeps of what it did (the console shows them; the lead's
#: timeline has every email and stage move). Few, as every save of the enrollment pays for its size.
MAX_HISTORY = 20
_GRADES = "ABCD"
#: When an enrollment waiting for its email looks at the send itself, should the sender's
#: word not have come (after queueing, or after the time a deferred send was due).
SEND_CHECK_AFTER = timedelta(hours=1)
#: How long after it was queued, or due after a deferral, a send that is still not out is
#: given up, so the enrollment goes on rather than waiting for ever on a dead letter.
SEND_GIVE_UP_AFTER = timedelta(days=1)


class LeadContext(BaseModel):
    """What conditions may look at."""

    lead_id: str
    email: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    stage: Stage | None = None
    grade: str = "D"
    engagement: float = 0.0
    segments: set[str] = Field(default_factory=set)
    quiet: bool = False
    as_of: datetime | None = None
    #: (event name, when) of the lead's own recent events, as far back as conditions look.
    recent_events: list[tuple[str, datetime]] = Field(default_factory=list)

    def did(self, event: str, within_days: int) -> list[datetime]:
        """When the lead did ``event`` in the last ``within_days`` days, newest first."""
        if self.as_of is None:
            return []
        since = self.as_of - timedelta(days=within_days)
        name = event.strip().lower()
        return sorted((at for n, at in self.recent_events if n.lower() == name and at >= since), reverse=True)


class Waiting(BaseModel):
    event: str | None = None
    condition: Condition | None = None
    timeout_at: datetime
    on_event: str | None
    on_timeout: str | None


SendStatus = Literal["sent", "skipped", "deferred", "given_up"]


class SendResult(BaseModel):
    """What the sender recorded for a send: sent (when), skipped (why), deferred (until when)."""

    status: SendStatus
    at: datetime | None = None  # None: not known (the step completes when it learns of it)
    reason: str | None = None
    until: datetime | None = None


class Sending(BaseModel):
    """The email an enrollment waits for at a send step."""

    send_id: str
    template: str
    queued_at: datetime
    deferred_until: datetime | None = None
    reason: str | None = None
    #: Set when the sender's word came while the enrollment was held: the step completes
    #: (and its wait starts from ``done_at``) when the hold ends.
    outcome: Literal["sent", "skipped", "given_up"] | None = None
    done_at: datetime | None = None

    @property
    def give_up_at(self) -> datetime:
        return (self.deferred_until or self.queued_at) + SEND_GIVE_UP_AFTER


class Enrollment(BaseModel):
    enrollment_id: str
    lead_id: str
    program_id: str
    status: Literal["active", "sending", "waiting", "held", "exited", "completed"] = "active"
    step_id: str | None = None
    due_at: datetime | None = None
    token: str = ""
    waiting: Waiting | None = None
    sleeping_at: str | None = None  # the wait step whose time is running
    sending: Sending | None = None  # the email the enrollment waits for at its send step
    #: The scheduler's items written for this enrollment (``PK|SK``, the latest 40): a wake-up a
    #: later one made stale stays in the table until its hour, so an erasure looks here for it.
    due_keys: list[str] = Field(default_factory=list)
    recheck_at: datetime | None = None  # while held: when to look again whether the hold is over
    entered_at: datetime
    updated_at: datetime
    exit_reason: str | None = None
    hold_reason: str | None = None
    clicked: bool = False
    opened: bool = False
    history: list[dict[str, Any]] = Field(default_factory=list)
    #: How many times each ``<step>|<what>`` happened, however long ago (a loop's n-th email has
    #: its own send id); ``history`` keeps only the latest entries.
    visits: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _count_stored_history(self) -> Enrollment:
        """An enrollment saved before ``visits`` existed counts them from its history."""
        if not self.visits:
            for entry in self.history:
                key = f"{entry.get('step')}|{entry.get('what')}"
                self.visits[key] = self.visits.get(key, 0) + 1
        return self

    @property
    def live(self) -> bool:
        return self.status in ("active", "sending", "waiting", "held")

    def note(self, at: datetime, step: str | None, what: str, **details: Any) -> None:
        self.history.append({"at": at.isoformat(), "step": step, "what": what, **details})
        del self.history[:-MAX_HISTORY]
        key = f"{step}|{what}"
        self.visits[key] = self.visits.get(key, 0) + 1


@dataclass(frozen=True)
class SendEmail:
    send_id: str
    template: str


@dataclass(frozen=True)
class UpdateLead:
    step_id: str
    stage: Stage | None
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    score: int | None


@dataclass(frozen=True)
class NotifySales:
    event_id: str
    message: str


Action = SendEmail | UpdateLead | NotifySales


@dataclass
class Advance:
    """The result of running an enrollment forward: its new state and what to do."""

    enrollment: Enrollment
    actions: list[Action] = field(default_factory=list)
    noop: bool = False  # woken too early: nothing changed, the schedule stands


def holds(condition: Condition, lead: LeadContext, enrollment: Enrollment | None = None) -> bool:
    for trait, test in condition.trait.items():
        if not test.holds(lookup({**lead.traits, "email": lead.email}, trait)):
            return False
    if condition.stage_in is not None and lead.stage not in condition.stage_in:
        return False
    if condition.stage_at_least is not None and stage_rank(lead.stage) < stage_rank(condition.stage_at_least):
        return False
    if condition.grade_at_least is not None and _GRADES.index(lead.grade) > _GRADES.index(
        condition.grade_at_least
    ):
        return False
    if condition.engagement_at_least is not None and lead.engagement < condition.engagement_at_least:
        return False
    if condition.in_segment is not None and condition.in_segment not in lead.segments:
        return False
    if condition.not_in_segment is not None and condition.not_in_segment in lead.segments:
        return False
    if condition.clicked_email_of_program is not None and (
        enrollment is None or enrollment.clicked != condition.clicked_email_of_program
    ):
        return False
    if condition.did is not None and len(lead.did(condition.did.event, condition.did.within_days)) < (
        condition.did.at_least
    ):
        return False
    return condition.opened_email_of_program is None or (
        enrollment is not None and enrollment.opened == condition.opened_email_of_program
    )


def membership_expires(segments: list[Segment], lead: LeadContext) -> datetime | None:
    """When the soonest "did X in the last N days" of a segment the lead is in stops holding."""
    expiries = []
    for segment in segments:
        did = segment.when.did
        if did is None or segment.id not in lead.segments:
            continue
        times = lead.did(did.event, did.within_days)
        if len(times) >= did.at_least:
            expiries.append(times[did.at_least - 1] + timedelta(days=did.within_days))
    return min(expiries, default=None)


def segments_of(segments: list[Segment], lead: LeadContext) -> set[str]:
    return {segment.id for segment in segments if holds(segment.when, lead)}


def goal_met(program: Program, lead: LeadContext, event_name: str | None) -> str | None:
    """The exit goal this lead has reached, described, or None."""
    for goal in program.exit_goals:
        if goal.stage_at_least is not None and stage_rank(lead.stage) >= stage_rank(goal.stage_at_least):
            return f"reached stage {lead.stage}"
        if goal.stage_in is not None and lead.stage in goal.stage_in:
            return f"reached stage {lead.stage}"
        if goal.event is not None and event_name is not None and goal.event.lower() == event_name.lower():
            return f"did '{event_name}'"
        if goal.in_segment is not None and goal.in_segment in lead.segments:
            return f"entered segment {goal.in_segment}"
    return None


def enrollment_id(program_id: str, lead_id: str, entry: str) -> str:
    """Tag-safe and stable: the same trigger gives the same id, so it enrols once."""
    return f"{program_id}.{lead_id}.{entry}"


def entry_key(program: Program, trigger_id: str) -> str:
    if program.reentry == "never":
        return "1"
    return hashlib.sha256(trigger_id.encode()).hexdigest()[:12]


def may_enter(program: Program, lead: LeadContext, previous: list[Enrollment], now: datetime) -> str | None:
    """Why this lead may not enter now, or None if it may."""
    if any(e.program_id == program.id and e.live for e in previous):
        return "already enrolled"
    if program.entry_filter is not None and not holds(program.entry_filter, lead):
        return "entry filter"
    mine = [e for e in previous if e.program_id == program.id]
    if mine and program.reentry == "never":
        return "no re-entry"
    if mine and not isinstance(program.reentry, str):
        last = max(e.entered_at for e in mine)
        if (now - last).days < program.reentry.after_days:
            return f"re-entry only after {program.reentry.after_days} days"
    if goal_met(program, lead, None):
        return "exit goal already met"
    return None


def start(program: Program, lead: LeadContext, trigger_id: str, now: datetime) -> Enrollment:
    enrollment = Enrollment(
        enrollment_id=enrollment_id(program.id, lead.lead_id, entry_key(program, trigger_id)),
        lead_id=lead.lead_id,
        program_id=program.id,
        step_id=program.steps[0].id,
        due_at=now,
        token=new_token(),
        entered_at=now,
        updated_at=now,
    )
    enrollment.note(now, None, "entered", trigger=trigger_id)
    return enrollment


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def run(program: Program, enrollment: Enrollment, lead: LeadContext, now: datetime) -> Advance:
    """Run the enrollment's current step and every instant step after it, until a stop.

    Waits reached right after a completed send count from when the email left.
    """
    state = enrollment.model_copy(deep=True)
    advance = Advance(state)
    started = now
    reason = goal_met(program, lead, None)
    if reason:
        return _exit(advance, now, f"goal: {reason}")
    for _ in range(MAX_INSTANT_STEPS):
        step_id = state.step_id
        if step_id is None:
            state.status, state.due_at, state.waiting = "completed", None, None
            state.token = new_token()
            state.note(now, None, "completed")
            return advance
        step = program.step(step_id)
        following = program.next_of(step)
        if step.send_email is not None:
            sending = state.sending
            if sending is None:
                send_id = _action_id(state, step.id, "email queued")
                advance.actions.append(SendEmail(send_id, step.send_email))
                state.note(now, step.id, "email queued", template=step.send_email, send_id=send_id)
                state.sending = Sending(send_id=send_id, template=step.send_email, queued_at=now)
                state.due_at = now + SEND_CHECK_AFTER  # look at the send if the sender's word is late
                return _stop(advance, "sending", step.id)
            if sending.outcome is None or sending.done_at is None:
                return Advance(enrollment, noop=True)  # still out with the sender
            details = {"reason": sending.reason} if sending.reason else {}
            what = f"email {sending.outcome.replace('_', ' ')}"
            state.note(sending.done_at, step.id, what, send_id=sending.send_id, **details)
            started = sending.done_at
            state.sending = None
            state.step_id = following
        elif step.wait is not None:
            if state.sleeping_at == step.id:
                if state.due_at is not None and state.due_at > now:
                    return Advance(enrollment, noop=True)
                state.sleeping_at = None
                state.note(now, step.id, "waited")
                state.step_id = following
                continue
            state.sleeping_at = step.id
            state.due_at = started + parse_duration(step.wait)
            state.note(now, step.id, "waiting", until=state.due_at.isoformat())
            return _stop(advance, "active", step.id)
        elif step.wait_until is not None:
            wait = step.wait_until
            if state.waiting is None:
                state.waiting = Waiting(
                    event=wait.event,
                    condition=wait.condition,
                    timeout_at=started + parse_duration(wait.timeout),
                    on_event=wait.on_event or following,
                    on_timeout=wait.on_timeout or following,
                )
                if wait.condition is not None and holds(wait.condition, lead, state):
                    return _resume(advance, program, lead, now, "condition met")
                awaited = (wait.event or "").lower()
                if (awaited == "email clicked" and state.clicked) or (
                    awaited == "email opened" and state.opened
                ):
                    # The lead clicked (or opened) this program's email before its send was settled.
                    return _resume(advance, program, lead, now, f"'{wait.event}' happened")
                state.due_at = state.waiting.timeout_at
                state.note(
                    now,
                    step.id,
                    "waiting for " + (wait.event or "a condition"),
                    until=state.due_at.isoformat(),
                )
                return _stop(advance, "waiting", step.id)
            if now < state.waiting.timeout_at:
                return Advance(enrollment, noop=True)
            state.note(now, step.id, "timed out")
            state.step_id, state.waiting = state.waiting.on_timeout, None
        elif step.branch is not None:
            chosen = next((case.then for case in step.branch if holds(case.when, lead, state)), None)
            target = chosen or step.otherwise or following
            state.note(now, step.id, "branched", to=target)
            state.step_id = target
        elif step.update is not None:
            update = step.update
            advance.actions.append(
                UpdateLead(
                    step.id, update.stage, tuple(update.add_tags), tuple(update.remove_tags), update.score
                )
            )
            state.note(now, step.id, "lead updated")
            state.step_id = following
        elif step.notify_sales is not None:
            advance.actions.append(
                NotifySales(_action_id(state, step.id, "sales notified"), step.notify_sales)
            )
            state.note(now, step.id, "sales notified")
            state.step_id = following
        elif step.exit:
            return _exit(advance, now, f"exit step {step.id}")
        state.due_at = now
    raise RuntimeError(f"program {program.id} ran {MAX_INSTANT_STEPS} steps without stopping")


def was_queued(state: Enrollment, send_id: str) -> bool:
    """Whether the enrollment queued ``send_id`` (``<enrollment>.<step>[.<n>]``), however long ago:
    counted by its visits, as the history keeps only the latest entries."""
    step, _, visit = send_id.removeprefix(f"{state.enrollment_id}.").partition(".")
    if not send_id.startswith(f"{state.enrollment_id}.") or (visit and not visit.isdigit()):
        return False
    return state.visits.get(f"{step}|email queued", 0) >= (int(visit) if visit else 1)


def queued_send_ids(state: Enrollment) -> list[str]:
    """Every send id the enrollment ever queued (what an erasure looks for)."""
    ids = []
    for key, visits in sorted(state.visits.items()):
        step, _, what = key.partition("|")
        if what == "email queued":
            base = f"{state.enrollment_id}.{step}"
            ids += [base, *(f"{base}.{n}" for n in range(2, visits + 1))]
    return ids


def _action_id(state: Enrollment, step_id: str, what: str) -> str:
    """``<enrollment>.<step>``, and ``.<n>`` on the n-th pass through a loop: once per visit."""
    visits = state.visits.get(f"{step_id}|{what}", 0)
    base = f"{state.enrollment_id}.{step_id}"
    return base if visits == 0 else f"{base}.{visits + 1}"


def _stop(advance: Advance, status: Literal["active", "sending", "waiting"], step_id: str | None) -> Advance:
    state = advance.enrollment
    state.status, state.step_id, state.token = status, step_id, new_token()
    return advance


def _exit(advance: Advance, now: datetime, reason: str) -> Advance:
    state = advance.enrollment
    state.status, state.exit_reason, state.due_at, state.waiting = "exited", reason, None, None
    state.token = new_token()
    state.note(now, state.step_id, "exited", reason=reason)
    return advance


def _resume(advance: Advance, program: Program, lead: LeadContext, now: datetime, why: str) -> Advance:
    state = advance.enrollment
    assert state.waiting is not None
    state.note(now, state.step_id, why)
    state.step_id, state.waiting, state.due_at = state.waiting.on_event, None, now
    rest = run(program, state, lead, now)
    rest.actions[:0] = advance.actions
    return rest


def send_settled(
    program: Program,
    enrollment: Enrollment,
    lead: LeadContext,
    send_id: str,
    result: SendResult,
    now: datetime,
) -> Advance | None:
    """The sender's word on the email an enrollment waits for; None when it changes nothing.

    Sent, skipped or given up completes the send step and runs on, the next wait counting
    from ``result.at``; deferred keeps the enrollment at the step and says until when. A
    held enrollment records the word and completes the step when the hold ends. A send
    skipped because of a quiet period is not done: the step sends again (a new email, once)
    when the quiet period is over. Duplicate and stale words find nothing to change.
    """
    sending = enrollment.sending
    if not enrollment.live or sending is None or sending.send_id != send_id or sending.outcome is not None:
        return None
    state = enrollment.model_copy(deep=True)
    assert state.sending is not None
    held = state.status == "held"
    if result.status == "deferred":
        if result.until is None or sending.deferred_until == result.until:
            return None
        state.sending.deferred_until, state.sending.reason = result.until, result.reason
        state.note(now, state.step_id, "email deferred", reason=result.reason, until=result.until.isoformat())
        if held:
            return Advance(state)
        state.due_at = result.until + SEND_CHECK_AFTER
        return _stop(Advance(state), "sending", state.step_id)
    if result.status == "skipped" and result.reason == "quiet_period":
        state.sending = None
        state.note(now, state.step_id, "email held back", reason="quiet period")
        if held:
            return Advance(state)
        state.due_at = now  # the quiet period is over already: the step sends again at the next tick
        return _stop(Advance(state), "active", state.step_id)
    state.sending.outcome, state.sending.done_at = result.status, result.at or now
    state.sending.reason = result.reason if result.status != "sent" else None
    if held:
        return Advance(state)
    return run(program, state, lead, now)


def on_lead_change(
    program: Program, enrollment: Enrollment, lead: LeadContext, event: dict[str, Any] | None, now: datetime
) -> Advance | None:
    """React to something the lead did or became: exit goals, wait-until, clicks. None: no change."""
    if not enrollment.live:
        return None
    state = enrollment.model_copy(deep=True)
    changed = False
    name = (event or {}).get("event")
    send_id = ((event or {}).get("properties") or {}).get("send_id")
    if isinstance(send_id, str) and send_id.startswith(state.enrollment_id + "."):
        if name == "Email Clicked" and not state.clicked:
            state.clicked, changed = True, True
        if name == "Email Opened" and not state.opened:
            state.opened, changed = True, True
    reason = goal_met(program, lead, name if isinstance(name, str) else None)
    if reason:
        return _exit(Advance(state), now, f"goal: {reason}")
    waiting = state.waiting
    if state.status == "waiting" and waiting is not None:
        fired = (
            waiting.event is not None and isinstance(name, str) and waiting.event.lower() == name.lower()
        ) or (waiting.condition is not None and holds(waiting.condition, lead, state))
        if fired:
            why = f"'{name}' happened" if waiting.event else "condition met"
            return _resume(Advance(state), program, lead, now, why)
    return Advance(state) if changed else None


def describe_enrollments(enrollments: list[Enrollment], programs: Any) -> list[dict[str, Any]]:
    """Each enrollment as a person reads it: where it is, what happened, what is due next."""
    described = []
    for enrollment in sorted(enrollments, key=lambda e: e.entered_at, reverse=True):
        program = programs.programs.get(enrollment.program_id)
        step = None
        if program is not None and enrollment.step_id is not None:
            try:
                found = program.step(enrollment.step_id)
                step = {"id": found.id, "kind": found.kind}
            except KeyError:
                step = {"id": enrollment.step_id, "kind": "unknown"}
        waiting = enrollment.waiting
        due: dict[str, Any] | None = None
        if enrollment.status in ("active", "waiting") and enrollment.due_at is not None:
            due = {"at": enrollment.due_at, "what": "timeout" if waiting else "next step"}
            if waiting is not None:
                due["waiting_for"] = waiting.event or "a condition"
        sending = enrollment.sending
        email = None
        if sending is not None:
            email = {
                "send_id": sending.send_id,
                "template": sending.template,
                "queued_at": sending.queued_at,
                "status": sending.outcome or ("deferred" if sending.deferred_until else "queued"),
                "deferred_until": sending.deferred_until,
                "reason": sending.reason,
            }
            if enrollment.status == "sending":
                due = {
                    "at": sending.deferred_until,
                    "what": "email send",
                    "waiting_for": "the email to go out",
                }
        described.append(
            {
                "enrollment_id": enrollment.enrollment_id,
                "program": enrollment.program_id,
                "program_name": program.name if program else None,
                "status": enrollment.status,
                "current_step": step,
                "next_due": due,
                "email": email,
                "entered_at": enrollment.entered_at,
                "exit_reason": enrollment.exit_reason,
                "hold_reason": enrollment.hold_reason,
                "history": enrollment.history,
            }
        )
    return described
