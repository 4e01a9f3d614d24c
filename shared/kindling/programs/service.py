"""Programs at work: enrol leads on triggers, react to what they do, run steps when due.

Effects come before the state write (an email is queued by its send id, a notification
carries its event id, lead updates are idempotent), and the write is conditional on the
enrollment's token. A run that lost a race, or a duplicate delivery, therefore repeats
only effects that are harmless to repeat, and a step's work happens once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from kindling.email.ses_events import engagement_event
from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.errors import Conflict, NotFound
from kindling.kernel.queue import WorkQueue
from kindling.programs.config import Program, Programs, Segments
from kindling.programs.due import DueItem
from kindling.programs.engine import (
    SEND_CHECK_AFTER,
    SEND_GIVE_UP_AFTER,
    Advance,
    Enrollment,
    LeadContext,
    NotifySales,
    SendEmail,
    SendResult,
    UpdateLead,
    goal_met,
    may_enter,
    membership_expires,
    new_token,
    on_lead_change,
    run,
    segments_of,
    send_settled,
    start,
    was_queued,
)

MAX_ATTEMPTS = 8
HOLD_RECHECK = timedelta(days=1)


class ProgramStore(Protocol):
    def context(self, lead_id: str, now: datetime) -> LeadContext | None: ...
    def enrollments(self, lead_id: str) -> list[Enrollment]: ...
    def get(self, lead_id: str, enrollment_id: str) -> Enrollment | None: ...
    def create(self, enrollment: Enrollment, due: DueItem) -> bool: ...
    def save(self, enrollment: Enrollment, expected_token: str, due: DueItem | None) -> None:
        """Write the new state unless the token moved (``Conflict``)."""

    def set_segments(
        self, lead_id: str, segments: set[str], previous: set[str] | None = None, at: datetime | None = None
    ) -> None: ...
    def schedule(self, item: DueItem) -> None: ...
    def update_lead(
        self, lead_id: str, update: UpdateLead, enrollment_id: str, now: datetime
    ) -> tuple[bool, str | None]: ...
    def paused(self, program_id: str) -> bool: ...
    def send_result(self, send_id: str) -> SendResult | None:
        """What the sender recorded for a send (None: nothing final or deferred yet)."""

    def give_up_send(self, send_id: str, lead_id: str, now: datetime) -> SendResult | None:
        """Mark a send that never went out as given up, so a late retry cannot send it.

        None if it is being sent right now; what the sender recorded if it settled meanwhile.
        """


def enrollment_of_send(send_id: str, lead_id: str) -> str | None:
    """The enrollment a program send id ``<program>.<lead>.<entry>.<step>[.<n>]`` belongs to."""
    parts = send_id.split(".")
    if len(parts) >= 4 and parts[1] == lead_id:
        return ".".join(parts[:3])
    return None


class ProgramConfig(Protocol):
    def programs(self) -> Programs: ...
    def segments(self) -> Segments: ...


def step_due(enrollment: Enrollment, now: datetime) -> DueItem | None:
    """The scheduler's wake-up for an enrollment's next stop, keyed by its token."""
    due_at = enrollment.recheck_at if enrollment.status == "held" else enrollment.due_at
    if enrollment.status not in ("active", "sending", "waiting", "held") or due_at is None:
        return None
    return DueItem(
        id=f"step:{enrollment.enrollment_id}:{enrollment.token}",
        kind="step",
        due_at=due_at,
        payload={
            "lead_id": enrollment.lead_id,
            "enrollment_id": enrollment.enrollment_id,
            "token": enrollment.token,
        },
        scheduled_at=now,
    )


class ProgramService:
    def __init__(
        self,
        store: ProgramStore,
        config: ProgramConfig,
        sends: WorkQueue,
        publisher: EventPublisher,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._config = config
        self._sends = sends
        self._publisher = publisher
        self._sleep = sleep

    # --- events about a lead -------------------------------------------------------
    def on_lead_event(
        self,
        lead_id: str,
        *,
        trigger_id: str,
        now: datetime,
        event: dict[str, Any] | None = None,
        new_lead: bool = False,
        stage_entered: str | None = None,
        recheck: bool = False,
    ) -> list[str]:
        """React to one thing that happened to a lead; what changed, for logs and tests.

        ``recheck``: a look scheduled earlier, when the lead existed; if it is gone now (erased),
        there is nothing to look at. Any other event for a missing lead is one that overtook
        the lead's own write, and is retried.
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._on_lead_event(lead_id, trigger_id, now, event, new_lead, stage_entered, recheck)
            except Conflict:
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise Conflict(f"enrollments of {lead_id} kept changing under us")

    def _on_lead_event(
        self,
        lead_id: str,
        trigger_id: str,
        now: datetime,
        event: dict[str, Any] | None,
        new_lead: bool,
        stage_entered: str | None,
        recheck: bool = False,
    ) -> list[str]:
        if event is not None and event.get("bot"):
            return []  # bot traffic is kept, but it enrols no one, wakes no wait and meets no goal
        lead = self._store.context(lead_id, now)
        if lead is None and recheck:
            return []
        if lead is None:
            raise Conflict(f"lead {lead_id} is not readable yet")
        changes: list[str] = []
        segments = segments_of(self._config.segments().segments, lead)
        entered = segments - lead.segments
        if segments != lead.segments:
            self._store.set_segments(lead.lead_id, segments, lead.segments, now)
            changes += [f"entered segment {s}" for s in sorted(entered)]
            changes += [f"left segment {s}" for s in sorted(lead.segments - segments)]
            lead.segments = segments
        expires = membership_expires(self._config.segments().segments, lead)
        if expires is not None:
            # "Did X in the last N days" stops holding with time alone: look again then.
            self._store.schedule(
                DueItem(
                    id=f"segments:{lead.lead_id}:{expires.isoformat()}",
                    kind="segments",
                    due_at=expires,
                    scheduled_at=now,
                    payload={
                        "id": f"segments:{lead.lead_id}:{expires.isoformat()}",
                        "detail-type": "lead.recheck",
                        "source": "kindling.programs",
                        "time": expires.isoformat(),
                        "detail": {"lead_id": lead.lead_id, "event_id": f"recheck:{expires.isoformat()}"},
                    },
                )
            )
        programs = self._config.programs().programs
        enrollments = self._store.enrollments(lead.lead_id)
        for enrollment in enrollments:
            program = programs.get(enrollment.program_id)
            if program is None or not enrollment.live:
                continue
            if enrollment.status == "held" or lead.quiet or self._store.paused(program.id):
                # Held where it is: only a goal reached may still end it; nothing else moves it.
                reason = goal_met(program, lead, (event or {}).get("event"))
                if reason:
                    self._finish(enrollment, now, f"goal: {reason}")
                    changes.append(f"{enrollment.enrollment_id}: exited")
                continue
            advance = on_lead_change(program, enrollment, lead, event, now)
            if advance is not None:
                self._commit(enrollment, advance, now)
                changes.append(f"{enrollment.enrollment_id}: {advance.enrollment.history[-1]['what']}")
        name = (event or {}).get("event") if event else None
        for program in programs.values():
            trigger = program.trigger
            fired = (
                (trigger.new_lead and new_lead)
                or (
                    trigger.event is not None
                    and isinstance(name, str)
                    and trigger.event.lower() == name.lower()
                )
                or (trigger.stage is not None and trigger.stage == stage_entered)
                or (trigger.segment is not None and trigger.segment in entered)
            )
            if not fired or self._store.paused(program.id):
                continue
            if may_enter(program, lead, enrollments, now) is not None:
                continue
            enrollment = start(program, lead, trigger_id, now)
            due = step_due(enrollment, now)
            assert due is not None
            if self._store.create(enrollment, due):
                changes.append(f"{enrollment.enrollment_id}: entered")
                if lead.quiet:
                    self._hold(enrollment, now, "quiet period")  # starts when sales is done talking
                else:
                    self._advance(program, enrollment, lead, now)
        return changes

    def on_send_result(self, lead_id: str, send_id: str, result: SendResult, now: datetime) -> str:
        """The sender recorded an outcome for an email a program queued: settle its send step."""
        enrollment_id = enrollment_of_send(send_id, lead_id)
        if enrollment_id is None:
            return "not a program send"
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._settle(lead_id, enrollment_id, send_id, result, now)
            except Conflict:
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise Conflict(f"enrollment {enrollment_id} kept changing under us")

    def _settle(
        self, lead_id: str, enrollment_id: str, send_id: str, result: SendResult, now: datetime
    ) -> str:
        enrollment = self._store.get(lead_id, enrollment_id)
        if enrollment is None or enrollment.sending is None or enrollment.sending.send_id != send_id:
            queued = enrollment is not None and was_queued(enrollment, send_id)
            if (
                enrollment is not None
                and enrollment.live
                and not queued
                and enrollment.sending is None
                and (enrollment.due_at is None or enrollment.due_at <= now + timedelta(minutes=1))
            ):
                # The email is queued before its enrollment is saved: a fast sender's word can
                # come first, while the stored state is still the one that fell due. Look again
                # shortly (the message is retried if it takes longer).
                raise Conflict(f"the send {send_id} is not recorded on its enrollment yet")
            return "stale"
        program = self._config.programs().programs.get(enrollment.program_id)
        if program is None:
            return self._finish(enrollment, now, "program removed")
        lead = self._store.context(lead_id, now)
        if lead is None:
            raise NotFound(f"lead {lead_id} is gone")
        if enrollment.status != "held" and (lead.quiet or self._store.paused(program.id)):
            enrollment = self._hold(enrollment, now, "quiet period" if lead.quiet else "program paused")
        advance = send_settled(program, enrollment, lead, send_id, result, now)
        if advance is None:
            return "stale"
        self._commit(enrollment, advance, now)
        return advance.enrollment.status

    def _check_send(self, program: Program, enrollment: Enrollment, lead: LeadContext, now: datetime) -> str:
        """The sender's word is late: look at the send itself, and give it up when it is long overdue."""
        sending = enrollment.sending
        assert sending is not None
        result = self._store.send_result(sending.send_id)
        give_up_at = sending.give_up_at
        if result is not None and result.status == "deferred" and result.until is not None:
            give_up_at = max(give_up_at, result.until + SEND_GIVE_UP_AFTER)
        if (result is None or result.status == "deferred") and now >= give_up_at:
            result = self._store.give_up_send(sending.send_id, enrollment.lead_id, now)
        advance = send_settled(program, enrollment, lead, sending.send_id, result, now) if result else None
        if advance is None:  # still with the sender (or deferred as already known): look again later
            later = enrollment.model_copy(deep=True)
            later.due_at = max(now + SEND_CHECK_AFTER, later.due_at or now)
            if now < give_up_at:
                later.due_at = min(later.due_at, give_up_at)
            later.token = new_token()
            self._store.save(later, enrollment.token, step_due(later, now))
            return "sending"
        self._commit(enrollment, advance, now)
        return advance.enrollment.status

    def enrol(self, program_id: str, lead_id: str, trigger_id: str, now: datetime) -> str:
        """Enrol a lead because kindling itself decided so (reactivation), not a trigger."""
        program = self._config.programs().programs.get(program_id)
        lead = self._store.context(lead_id, now)
        if program is None or lead is None:
            return f"no program {program_id}" if program is None else f"no lead {lead_id}"
        reason = may_enter(program, lead, self._store.enrollments(lead.lead_id), now)
        if reason is not None:
            return f"not enrolled in {program_id}: {reason}"
        enrollment = start(program, lead, trigger_id, now)
        due = step_due(enrollment, now)
        assert due is not None
        if self._store.create(enrollment, due):
            self._advance(program, enrollment, lead, now)
        return f"enrolled in {program_id}"

    def hold_all(self, lead_id: str, reason: str, now: datetime) -> int:
        """Hold every running enrollment of a lead at once (a quiet period began)."""
        held = 0
        for enrollment in self._store.enrollments(lead_id):
            if enrollment.status in ("active", "sending", "waiting"):
                self._hold(enrollment, now, reason)
                held += 1
        return held

    def release_all(self, lead_id: str, reason: str, now: datetime, *, exit_instead: bool = False) -> int:
        """End a quiet period's holds: resume where they were, or exit them (superseded)."""
        released = 0
        for enrollment in self._store.enrollments(lead_id):
            if enrollment.status == "held" and enrollment.hold_reason == "quiet period":
                if exit_instead:
                    self._finish(enrollment, now, reason)
                else:
                    release_hold(self._store, enrollment, now, reason)
                released += 1
        return released

    # --- the scheduler -------------------------------------------------------------
    def run_due(self, lead_id: str, enrollment_id: str, token: str, now: datetime) -> str:
        enrollment = self._store.get(lead_id, enrollment_id)
        if enrollment is None or enrollment.token != token or not enrollment.live:
            return "stale"
        program = self._config.programs().programs.get(enrollment.program_id)
        if program is None:
            return self._finish(enrollment, now, "program removed")
        lead = self._store.context(lead_id, now)
        if lead is None:
            raise NotFound(f"lead {lead_id} is gone")
        if self._store.paused(program.id) or lead.quiet:
            self._hold(enrollment, now, "program paused" if not lead.quiet else "quiet period")
            return "held"
        if enrollment.status == "held":  # the daily look found the hold over
            release_hold(self._store, enrollment, now, "hold over")
            return "resumed"
        if enrollment.status == "sending" and enrollment.sending is not None:
            if enrollment.due_at is not None and enrollment.due_at > now:
                return "noop"
            return self._check_send(program, enrollment, lead, now)
        advance = self._advance(program, enrollment, lead, now)
        return "noop" if advance.noop else advance.enrollment.status

    def _advance(self, program: Program, enrollment: Enrollment, lead: LeadContext, now: datetime) -> Advance:
        advance = run(program, enrollment, lead, now)
        if not advance.noop:
            self._commit(enrollment, advance, now)
        return advance

    def _hold(self, enrollment: Enrollment, now: datetime, reason: str) -> Enrollment:
        """Hold where it is, and look again daily, so no hold outlives its reason unnoticed."""
        held = enrollment.model_copy(deep=True)
        if held.status != "held":
            held.note(now, held.step_id, "held", reason=reason)
        held.status, held.hold_reason = "held", reason
        held.recheck_at, held.token = now + HOLD_RECHECK, new_token()
        self._store.save(held, enrollment.token, step_due(held, now))
        return held

    def _finish(self, enrollment: Enrollment, now: datetime, reason: str) -> str:
        done = enrollment.model_copy(deep=True)
        done.status, done.exit_reason = "exited", reason
        done.note(now, done.step_id, "exited", reason=reason)
        self._store.save(done, enrollment.token, None)
        return "exited"

    def _commit(self, before: Enrollment, advance: Advance, now: datetime) -> None:
        after = advance.enrollment
        sends = [a for a in advance.actions if isinstance(a, SendEmail)]
        if sends:
            rank = self._config.programs().rank(after.program_id)
            self._sends.send_all(
                [
                    {"send_id": a.send_id, "lead_id": after.lead_id, "template": a.template, "priority": rank}
                    for a in sends
                ]
            )
        adjustments: list[BusEvent] = []
        stage_moves: list[BusEvent] = []
        for action in advance.actions:
            if isinstance(action, UpdateLead):
                moved, from_stage = self._store.update_lead(after.lead_id, action, after.enrollment_id, now)
                if moved:  # other functions (programs, metrics) see a program's stage move too
                    stage_moves.append(
                        BusEvent(
                            source="kindling.programs",
                            detail_type="lead.stage_changed",
                            time=now,
                            detail={
                                "event_id": f"{after.enrollment_id}.{action.step_id}:stage",
                                "lead_id": after.lead_id,
                                "from": from_stage,
                                "to": action.stage,
                                "why": f"program {after.program_id}, step {action.step_id}",
                                "by": f"program:{after.program_id}",
                                "at": now.isoformat(),
                            },
                        )
                    )
                if action.score:
                    reason = f"program {after.program_id}, step {action.step_id}"
                    properties = {"points": action.score, "reason": reason}
                    adjustments.append(
                        engagement_event(
                            f"{after.enrollment_id}.{action.step_id}",
                            "Score Adjusted",
                            after.lead_id,
                            properties,
                            now,
                            now,
                        )
                    )
        if adjustments or stage_moves:
            self._publisher.publish([*adjustments, *stage_moves])
        notices = [a for a in advance.actions if isinstance(a, NotifySales)]
        if notices:
            self._publisher.publish(
                [
                    BusEvent(
                        source="kindling.programs",
                        detail_type="lead.notify_sales",
                        time=now,
                        detail={
                            "event_id": n.event_id,
                            "lead_id": after.lead_id,
                            "program": after.program_id,
                            "message": n.message,
                            "trigger": {"at": now.isoformat()},
                        },
                    )
                    for n in notices
                ]
            )
        self._store.save(after, before.token, step_due(after, now))


class HoldStore(Protocol):
    def get(self, lead_id: str, enrollment_id: str) -> Enrollment | None: ...
    def enrollments(self, lead_id: str) -> list[Enrollment]: ...
    def held(self, program_id: str) -> list[Enrollment]: ...
    def save(self, enrollment: Enrollment, expected_token: str, due: DueItem | None) -> None: ...
    def set_paused(self, program_id: str, paused: bool) -> None: ...


class EnrollmentSaver(Protocol):
    def save(self, enrollment: Enrollment, expected_token: str, due: DueItem | None) -> None: ...


def release_hold(store: EnrollmentSaver, enrollment: Enrollment, now: datetime, why: str) -> Enrollment:
    """Put a held enrollment back where it was: its wait resumes, or its step runs now."""
    resumed = enrollment.model_copy(deep=True)
    sending = resumed.sending
    if resumed.waiting is not None:
        resumed.status = "waiting"
    elif sending is not None and sending.outcome is None:
        resumed.status = "sending"  # still with the sender: look at it now
    else:
        resumed.status = "active"
    resumed.hold_reason, resumed.recheck_at = None, None
    if resumed.due_at is None or resumed.due_at < now:
        resumed.due_at = now
    resumed.token = new_token()
    resumed.note(now, resumed.step_id, "resumed", reason=why)
    store.save(resumed, enrollment.token, step_due(resumed, now))
    return resumed


def pause_program(store: HoldStore, program_id: str) -> None:
    """Enrollments stop where they are at their next step; nothing is lost or skipped."""
    store.set_paused(program_id, True)


def resume_program(store: HoldStore, program_id: str, now: datetime) -> int:
    store.set_paused(program_id, False)
    held = [e for e in store.held(program_id) if e.hold_reason == "program paused"]
    for enrollment in held:
        release_hold(store, enrollment, now, "program resumed")
    return len(held)
