"""The program engine, pure: a small program run through fixed times, step by step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from kindling.programs.config import Condition, Program, Segment
from kindling.programs.engine import (
    Advance,
    Enrollment,
    LeadContext,
    NotifySales,
    SendEmail,
    SendResult,
    UpdateLead,
    goal_met,
    holds,
    may_enter,
    on_lead_change,
    queued_send_ids,
    run,
    segments_of,
    send_settled,
    start,
    was_queued,
)

Status = Literal["active", "sending", "waiting", "held", "exited", "completed"]
MONDAY = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def program(**changes: Any) -> Program:
    """Send, wait 2d, branch on a click, then wait up to 7d for a demo request."""
    document: dict[str, Any] = {
        "id": "trial",
        "name": "Trial nurture",
        "trigger": {"new_lead": True},
        "entry_filter": {"trait": {"title": {"contains_any": ["marketing"]}}},
        "exit_goals": [{"stage_at_least": "sql"}],
        "steps": [
            {"id": "hello", "send_email": "welcome-1"},
            {"id": "pause", "wait": "2d"},
            {
                "id": "clicked",
                "branch": [{"if": {"clicked_email_of_program": True}, "then": "story"}],
                "else": "nudge",
            },
            {"id": "story", "send_email": "nurture-case-study", "next": "demo"},
            {"id": "nudge", "send_email": "welcome-2"},
            {
                "id": "demo",
                "wait_until": {
                    "event": "Demo Requested",
                    "timeout": "7d",
                    "on_event": "tell-sales",
                    "on_timeout": "tag",
                },
            },
            {"id": "tell-sales", "notify_sales": "Demo requested", "next": "thanks"},
            {"id": "thanks", "send_email": "sales-intro", "next": "done"},
            {"id": "tag", "update": {"add_tags": ["no-demo"]}},
            {"id": "done", "exit": True},
        ],
    }
    document.update(changes)
    return Program.model_validate(document)


PROGRAM = program()


def lead(lead_id: str = "lead-1", **changes: Any) -> LeadContext:
    values: dict[str, Any] = {
        "lead_id": lead_id,
        "email": f"{lead_id}@northwind.example",
        "traits": {"title": "Head of Marketing", "industry": "Software", "company_size": 1200},
        "stage": "lead",
        "grade": "B",
        "engagement": 35.0,
    }
    return LeadContext(**{**values, **changes})


def delivered(advance: Advance, who: LeadContext, at: datetime, the: Program = PROGRAM) -> Advance:
    """Every email the run queued goes out at ``at``, and the enrollment runs on to its next stop."""
    actions = list(advance.actions)
    while advance.enrollment.status == "sending":
        sending = advance.enrollment.sending
        assert sending is not None
        settled = send_settled(
            the, advance.enrollment, who, sending.send_id, SendResult(status="sent", at=at), at
        )
        assert settled is not None
        actions += settled.actions
        advance = settled
    advance.actions = actions
    return advance


def entered(who: LeadContext | None = None, at: datetime = MONDAY, the: Program = PROGRAM) -> Advance:
    """Enrolled, its first email sent at once, and run to the first wait."""
    who = who or lead()
    return delivered(run(the, start(the, who, "trigger-1", at), who, at), who, at, the)


def at_demo(clicked: bool, who: LeadContext | None = None) -> Advance:
    """Woken after the 2-day wait, branched, and waiting for a demo request."""
    who = who or lead()
    state = entered(who).enrollment
    if clicked:
        click = on_lead_change(
            PROGRAM, state, who, email_event("Email Clicked", state, "hello"), MONDAY + DAY
        )
        assert click is not None
        state = click.enrollment
    return delivered(run(PROGRAM, state, who, MONDAY + 2 * DAY), who, MONDAY + 2 * DAY)


def email_event(name: str, enrollment: Enrollment, step_id: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "properties": {"send_id": f"{enrollment.enrollment_id}.{step_id}"},
    }


def sends(advance: Advance) -> list[SendEmail]:
    return [a for a in advance.actions if isinstance(a, SendEmail)]


# --- running forward --------------------------------------------------------------------


def test_entering_sends_the_first_email_and_stops_at_the_wait() -> None:
    enrollment = start(PROGRAM, lead(), "trigger-1", MONDAY)
    assert (enrollment.status, enrollment.step_id, enrollment.due_at) == ("active", "hello", MONDAY)
    advance = run(PROGRAM, enrollment, lead(), MONDAY)
    assert advance.actions == [SendEmail("trial.lead-1.1.hello", "welcome-1")]
    queued = advance.enrollment
    assert (queued.status, queued.step_id) == ("sending", "hello"), "waits at the send until it is sent"
    assert queued.token != enrollment.token
    assert enrollment.step_id == "hello", "the engine does not change the enrollment it is given"
    after = delivered(advance, lead(), MONDAY).enrollment
    assert (after.status, after.step_id, after.due_at) == ("active", "pause", MONDAY + 2 * DAY)


def test_a_run_woken_early_is_a_noop_and_keeps_the_token() -> None:
    waiting = entered().enrollment
    early = run(PROGRAM, waiting, lead(), MONDAY + 2 * DAY - timedelta(seconds=1))
    assert early.noop and early.actions == []
    assert early.enrollment is waiting and early.enrollment.token == waiting.token
    at_demo_step = at_demo(clicked=False).enrollment
    early = run(PROGRAM, at_demo_step, lead(), MONDAY + 8 * DAY)
    assert early.noop and early.enrollment.token == at_demo_step.token


def test_the_branch_follows_a_click_on_an_email_of_this_program() -> None:
    advance = at_demo(clicked=True)
    assert advance.actions == [SendEmail("trial.lead-1.1.story", "nurture-case-study")]
    after = advance.enrollment
    assert after.clicked
    assert (after.status, after.step_id, after.due_at) == ("waiting", "demo", MONDAY + 9 * DAY)
    assert after.waiting is not None and after.waiting.event == "Demo Requested"
    assert [h["what"] for h in after.history][-4:] == [
        "branched",
        "email queued",
        "email sent",
        "waiting for Demo Requested",
    ]


def test_the_branch_takes_else_without_a_click() -> None:
    advance = at_demo(clicked=False, who=lead("lead-2"))
    assert advance.actions == [SendEmail("trial.lead-2.1.nudge", "welcome-2")]
    assert not advance.enrollment.clicked and advance.enrollment.step_id == "demo"


def test_a_click_marks_the_enrollment_without_moving_it() -> None:
    state = entered().enrollment
    advance = on_lead_change(
        PROGRAM, state, lead(), email_event("Email Clicked", state, "hello"), MONDAY + DAY
    )
    assert advance is not None and advance.actions == []
    assert advance.enrollment.clicked and not advance.enrollment.opened
    assert advance.enrollment.token == state.token and advance.enrollment.step_id == "pause"
    again = on_lead_change(
        PROGRAM, advance.enrollment, lead(), email_event("Email Clicked", state, "hello"), MONDAY
    )
    assert again is None, "a second click changes nothing"


def test_a_click_on_another_enrollments_email_is_not_counted() -> None:
    state = entered().enrollment
    other = {"type": "track", "event": "Email Clicked", "properties": {"send_id": "trial.lead-1.2.hello"}}
    assert on_lead_change(PROGRAM, state, lead(), other, MONDAY + DAY) is None
    prefix = {"type": "track", "event": "Email Clicked", "properties": {"send_id": "trial.lead-1.1x.hello"}}
    assert on_lead_change(PROGRAM, state, lead(), prefix, MONDAY + DAY) is None
    assert at_demo(clicked=False).enrollment.step_id == "demo"


def test_the_awaited_event_resumes_and_runs_the_instant_steps_after_it() -> None:
    waiting = at_demo(clicked=True).enrollment
    event = {"type": "track", "event": "demo requested", "properties": {}}
    advance = on_lead_change(PROGRAM, waiting, lead(), event, MONDAY + 3 * DAY)
    assert advance is not None
    assert advance.actions == [
        NotifySales("trial.lead-1.1.tell-sales", "Demo requested"),
        SendEmail("trial.lead-1.1.thanks", "sales-intro"),
    ]
    assert (advance.enrollment.status, advance.enrollment.step_id) == ("sending", "thanks")
    after = delivered(advance, lead(), MONDAY + 3 * DAY).enrollment
    assert (after.status, after.exit_reason, after.waiting, after.due_at) == (
        "exited",
        "exit step done",
        None,
        None,
    )
    assert after.token != waiting.token
    assert "'demo requested' happened" in [h["what"] for h in after.history]


def test_another_event_does_not_resume_a_wait_until() -> None:
    waiting = at_demo(clicked=True).enrollment
    event = {"type": "track", "event": "Whitepaper Downloaded", "properties": {}}
    assert on_lead_change(PROGRAM, waiting, lead(), event, MONDAY + 3 * DAY) is None


def test_a_wait_until_times_out_to_its_on_timeout_step() -> None:
    waiting = at_demo(clicked=False).enrollment
    assert waiting.waiting is not None
    timeout_at = waiting.waiting.timeout_at
    assert timeout_at == MONDAY + 9 * DAY
    assert run(PROGRAM, waiting, lead(), timeout_at - timedelta(seconds=1)).noop
    for late in (timeout_at, timeout_at + 3 * DAY):
        advance = run(PROGRAM, waiting, lead(), late)
        assert advance.actions == [UpdateLead("tag", None, ("no-demo",), (), None)]
        after = advance.enrollment
        assert (after.status, after.exit_reason, after.waiting) == ("exited", "exit step done", None)
        assert "timed out" in [h["what"] for h in after.history]


def test_a_wait_until_on_a_condition_that_holds_on_arrival_goes_on_at_once() -> None:
    the = program(
        exit_goals=[],
        steps=[
            {"id": "hot", "wait_until": {"condition": {"in_segment": "hot-accounts"}, "timeout": "3d"}},
            {"id": "call", "notify_sales": "Hot account"},
        ],
    )
    hot = lead(segments={"hot-accounts"})
    advance = entered(hot, the=the)
    assert advance.actions == [NotifySales("trial.lead-1.1.call", "Hot account")]
    assert advance.enrollment.status == "completed"
    cold = entered(the=the).enrollment
    assert cold.status == "waiting"
    warmed = on_lead_change(the, cold, hot, None, MONDAY + DAY)
    assert warmed is not None and warmed.actions == [NotifySales("trial.lead-1.1.call", "Hot account")]


def test_an_exit_goal_reached_mid_wait_exits() -> None:
    sleeping = entered().enrollment
    advance = on_lead_change(PROGRAM, sleeping, lead(stage="sql"), None, MONDAY + DAY)
    assert advance is not None and advance.actions == []
    after = advance.enrollment
    assert after.status == "exited" and not after.live
    assert after.exit_reason is not None and "goal" in after.exit_reason and "sql" in after.exit_reason
    assert (after.due_at, after.token != sleeping.token) == (None, True)
    assert on_lead_change(PROGRAM, after, lead(stage="sql"), None, MONDAY + DAY) is None, "no longer live"


def test_an_exit_goal_met_by_the_time_a_run_is_due_exits_without_sending() -> None:
    advance = run(PROGRAM, entered().enrollment, lead(stage="opportunity"), MONDAY + 2 * DAY)
    assert advance.actions == [] and advance.enrollment.status == "exited"
    assert advance.enrollment.exit_reason == "goal: reached stage opportunity"


def test_an_event_exit_goal_wins_over_a_wait_until_on_the_same_event() -> None:
    """Why the shipped nurture tracks do not also have ``event: Demo Requested`` as a goal."""
    the = program(exit_goals=[{"event": "Demo Requested"}])
    waiting = run(the, entered(the=the).enrollment, lead(), MONDAY + 2 * DAY).enrollment
    advance = on_lead_change(the, waiting, lead(), {"event": "Demo Requested"}, MONDAY + 3 * DAY)
    assert advance is not None and advance.actions == []
    assert advance.enrollment.exit_reason == "goal: did 'Demo Requested'"


def test_a_program_that_runs_off_its_end_completes() -> None:
    the = program(steps=[{"id": "hello", "send_email": "welcome-1"}])
    enrollment = start(the, lead(), "trigger-1", MONDAY)
    advance = delivered(run(the, enrollment, lead(), MONDAY), lead(), MONDAY, the)
    after = advance.enrollment
    assert (after.status, after.step_id, after.due_at, after.live) == ("completed", None, None, False)
    assert after.token != enrollment.token


def test_every_stop_changes_the_token() -> None:
    who = lead()
    journey = [start(PROGRAM, who, "trigger-1", MONDAY)]
    journey.append(run(PROGRAM, journey[-1], who, MONDAY).enrollment)  # stops at the send
    journey.append(delivered(Advance(journey[-1]), who, MONDAY).enrollment)  # stops at the wait
    journey.append(run(PROGRAM, journey[-1], who, MONDAY + 2 * DAY).enrollment)  # stops at the next send
    journey.append(delivered(Advance(journey[-1]), who, MONDAY + 2 * DAY).enrollment)  # at wait_until
    timed_out = run(PROGRAM, journey[-1], who, MONDAY + 9 * DAY).enrollment  # exits
    goal = on_lead_change(PROGRAM, journey[2], lead(stage="sql"), None, MONDAY + DAY)
    assert goal is not None
    tokens = [e.token for e in [*journey, timed_out, goal.enrollment]]
    assert len(set(tokens)) == len(tokens)
    statuses = [e.status for e in journey[1:]]
    assert statuses == ["sending", "active", "sending", "waiting"] and timed_out.status == "exited"


def test_send_ids_are_the_enrollment_and_step_once_each() -> None:
    clicked = at_demo(clicked=True)
    resumed = on_lead_change(
        PROGRAM, clicked.enrollment, lead(), {"event": "Demo Requested"}, MONDAY + 3 * DAY
    )
    assert resumed is not None
    ids = [s.send_id for s in [*sends(entered()), *sends(clicked), *sends(resumed)]]
    assert ids == ["trial.lead-1.1.hello", "trial.lead-1.1.story", "trial.lead-1.1.thanks"]
    other = [s.send_id for s in sends(entered(lead("lead-2")))]
    assert other == ["trial.lead-2.1.hello"]


def test_each_pass_through_a_loop_sends_its_email_once_per_pass() -> None:
    the = program(
        steps=[
            {"id": "remind", "send_email": "welcome-2"},
            {"id": "pause", "wait": "1d"},
            {"id": "again", "branch": [{"if": {"clicked_email_of_program": False}, "then": "remind"}]},
        ]
    )
    first = entered(the=the)
    second = delivered(run(the, first.enrollment, lead(), MONDAY + DAY), lead(), MONDAY + DAY, the)
    assert sends(first) == [SendEmail("trial.lead-1.1.remind", "welcome-2")]
    assert sends(second) == [SendEmail("trial.lead-1.1.remind.2", "welcome-2")]  # a new reminder, once
    assert second.enrollment.step_id == "pause" and second.enrollment.due_at == MONDAY + 2 * DAY


def test_a_long_loop_sends_a_new_email_each_pass_after_its_history_was_trimmed() -> None:
    the = program(
        steps=[
            {"id": "remind", "send_email": "welcome-2"},
            {"id": "pause", "wait": "1d"},
            {"id": "again", "branch": [{"if": {"clicked_email_of_program": False}, "then": "remind"}]},
        ]
    )
    advance, sent = entered(the=the), []
    for day in range(1, 40):  # a few history entries a pass: far more than an enrollment keeps
        sent += [s.send_id for s in sends(advance)]
        at = MONDAY + day * DAY
        advance = delivered(run(the, advance.enrollment, lead(), at), lead(), at, the)
    assert len(advance.enrollment.history) <= 20
    assert len(set(sent)) == len(sent) == 39, "every pass its own send id, never one sent before"
    assert sent[-1] == "trial.lead-1.1.remind.39"
    # Saved and read back (as the store does), it goes on counting.
    stored = Enrollment.model_validate_json(advance.enrollment.model_dump_json())
    assert stored.visits == advance.enrollment.visits
    # A late word about the first reminder is known for one this enrollment queued, long ago.
    assert was_queued(stored, "trial.lead-1.1.remind") and was_queued(stored, "trial.lead-1.1.remind.40")
    assert not was_queued(stored, "trial.lead-1.1.remind.41")
    assert not was_queued(stored, "trial.lead-2.1.remind"), "another enrollment's"
    assert queued_send_ids(stored) == [
        "trial.lead-1.1.remind",
        *(f"trial.lead-1.1.remind.{n}" for n in range(2, 41)),
    ]


def test_an_enrollment_saved_before_visits_were_counted_counts_them_from_its_history() -> None:
    first = entered()
    saved = first.enrollment.model_dump(mode="json")
    del saved["visits"]
    assert Enrollment.model_validate(saved).visits == first.enrollment.visits != {}


# --- a send step is done when its email is sent -----------------------------------------

FRIDAY_EVENING = datetime(2024, 3, 9, 1, 0, tzinfo=UTC)  # Friday 20:00 in New York
MONDAY_OPENING = datetime(2024, 3, 11, 12, 0, tzinfo=UTC)  # Monday 08:00 in New York (EDT)


def test_a_deferred_email_holds_the_enrollment_at_its_step_until_it_goes_out() -> None:
    queued = run(PROGRAM, start(PROGRAM, lead(), "trigger-1", FRIDAY_EVENING), lead(), FRIDAY_EVENING)
    send_id = queued.actions[0].send_id  # type: ignore[union-attr]
    deferred = SendResult(
        status="deferred", at=FRIDAY_EVENING, reason="outside_send_window", until=MONDAY_OPENING
    )
    held = send_settled(PROGRAM, queued.enrollment, lead(), send_id, deferred, FRIDAY_EVENING)
    assert held is not None and held.actions == []
    state = held.enrollment
    assert (state.status, state.step_id) == ("sending", "hello")
    assert state.sending is not None and state.sending.deferred_until == MONDAY_OPENING
    assert (
        state.history[-1]["what"] == "email deferred" and state.history[-1]["reason"] == "outside_send_window"
    )
    assert send_settled(PROGRAM, state, lead(), send_id, deferred, FRIDAY_EVENING) is None, "a duplicate"
    assert run(PROGRAM, state, lead(), MONDAY_OPENING).noop, "the scheduler cannot move it past its send"
    sent_at = MONDAY_OPENING + timedelta(seconds=20)
    sent = send_settled(PROGRAM, state, lead(), send_id, SendResult(status="sent", at=sent_at), sent_at)
    assert sent is not None
    assert (sent.enrollment.step_id, sent.enrollment.due_at) == ("pause", sent_at + 2 * DAY), (
        "the wait counts from the moment the email left, not from Friday"
    )


def test_the_next_email_is_queued_only_after_the_one_before_it_is_settled() -> None:
    the = program(steps=[{"id": "one", "send_email": "welcome-1"}, {"id": "two", "send_email": "welcome-2"}])
    first = run(the, start(the, lead(), "trigger-1", MONDAY), lead(), MONDAY)
    assert [a.template for a in sends(first)] == ["welcome-1"]
    late = MONDAY + timedelta(hours=3)
    second = send_settled(
        the, first.enrollment, lead(), "trial.lead-1.1.one", SendResult(status="sent", at=late), late
    )
    assert second is not None and [a.template for a in sends(second)] == ["welcome-2"]


def test_a_skipped_email_completes_its_step_with_the_reason() -> None:
    queued = run(PROGRAM, start(PROGRAM, lead(), "trigger-1", MONDAY), lead(), MONDAY)
    skipped = SendResult(status="skipped", at=MONDAY, reason="unsubscribed")
    advance = send_settled(PROGRAM, queued.enrollment, lead(), "trial.lead-1.1.hello", skipped, MONDAY)
    assert advance is not None and advance.enrollment.step_id == "pause"
    assert {"what": "email skipped", "reason": "unsubscribed"}.items() <= next(
        h for h in advance.enrollment.history if h["what"] == "email skipped"
    ).items()


def test_a_word_about_another_send_changes_nothing() -> None:
    queued = run(PROGRAM, start(PROGRAM, lead(), "trigger-1", MONDAY), lead(), MONDAY)
    sent = SendResult(status="sent", at=MONDAY)
    assert send_settled(PROGRAM, queued.enrollment, lead(), "trial.lead-1.1.other", sent, MONDAY) is None
    waiting = entered().enrollment
    assert send_settled(PROGRAM, waiting, lead(), "trial.lead-1.1.hello", sent, MONDAY) is None, "stale"


def test_a_send_skipped_for_a_quiet_period_is_sent_again_after_it_once() -> None:
    queued = run(PROGRAM, start(PROGRAM, lead(), "trigger-1", MONDAY), lead(), MONDAY)
    quiet = SendResult(status="skipped", at=MONDAY, reason="quiet_period")
    back = send_settled(PROGRAM, queued.enrollment, lead(), "trial.lead-1.1.hello", quiet, MONDAY)
    assert back is not None and back.enrollment.step_id == "hello" and back.enrollment.sending is None
    again = run(PROGRAM, back.enrollment, lead(), MONDAY + DAY)
    assert sends(again) == [SendEmail("trial.lead-1.1.hello.2", "welcome-1")]


# --- entering ---------------------------------------------------------------------------


def enrollment(
    status: Status = "completed", entered_at: datetime = MONDAY, program_id: str = "trial"
) -> Enrollment:
    return Enrollment(
        enrollment_id=f"{program_id}.lead-1.1",
        lead_id="lead-1",
        program_id=program_id,
        status=status,
        entered_at=entered_at,
        updated_at=entered_at,
    )


def test_may_enter() -> None:
    later = MONDAY + 40 * DAY
    assert may_enter(PROGRAM, lead(), [], MONDAY) is None
    assert may_enter(PROGRAM, lead(), [enrollment(program_id="other")], MONDAY) is None
    assert may_enter(PROGRAM, lead(traits={"title": "CFO"}), [], MONDAY) == "entry filter"
    assert may_enter(PROGRAM, lead(), [enrollment("waiting")], MONDAY) == "already enrolled"
    assert may_enter(PROGRAM, lead(), [enrollment("held")], MONDAY) == "already enrolled"
    assert may_enter(PROGRAM, lead(), [enrollment("exited")], later) == "no re-entry"
    assert may_enter(PROGRAM, lead(stage="sql"), [], MONDAY) == "exit goal already met"
    monthly = program(reentry={"after_days": 30})
    assert may_enter(monthly, lead(), [enrollment()], MONDAY + 29 * DAY) == "re-entry only after 30 days"
    assert may_enter(monthly, lead(), [enrollment(), enrollment(entered_at=MONDAY + 20 * DAY)], later) == (
        "re-entry only after 30 days"
    )
    assert may_enter(monthly, lead(), [enrollment()], MONDAY + 30 * DAY) is None
    assert may_enter(program(reentry="always"), lead(), [enrollment()], MONDAY) is None


def test_start_gives_one_enrollment_per_trigger() -> None:
    always = program(reentry="always")
    first = start(always, lead(), "event-123", MONDAY)
    assert first.enrollment_id == start(always, lead(), "event-123", MONDAY + DAY).enrollment_id
    assert first.enrollment_id != start(always, lead(), "event-456", MONDAY).enrollment_id
    program_id, lead_id, key = first.enrollment_id.split(".")
    assert (program_id, lead_id, len(key)) == ("trial", "lead-1", 12)
    assert int(key, 16) >= 0
    never = [start(PROGRAM, lead(), trigger, MONDAY).enrollment_id for trigger in ("event-123", "event-456")]
    assert never == ["trial.lead-1.1", "trial.lead-1.1"]
    assert first.token != start(always, lead(), "event-123", MONDAY).token
    assert first.history[0]["what"] == "entered" and first.history[0]["trigger"] == "event-123"


# --- conditions and segments ------------------------------------------------------------


def condition(**tests: Any) -> Condition:
    return Condition.model_validate(tests)


@pytest.mark.parametrize(
    ("tests", "yes", "no"),
    [
        ({"trait": {"industry": {"in": ["Software", "SaaS"]}}}, {}, {"traits": {"industry": "Retail"}}),
        ({"trait": {"email": {"exists": True}}}, {}, {"email": None}),
        ({"trait": {"email": {"domain_in": ["northwind.example"]}}}, {}, {"email": "a@b.example"}),
        ({"stage_in": ["lead", "mql"]}, {"stage": "mql"}, {"stage": "sql"}),
        ({"stage_at_least": "mql"}, {"stage": "opportunity"}, {"stage": "lead"}),
        ({"stage_at_least": "lead"}, {"stage": "lead"}, {"stage": None}),
        ({"stage_at_least": "lead"}, {"stage": "customer"}, {"stage": "closed_lost"}),
        ({"grade_at_least": "B"}, {"grade": "A"}, {"grade": "C"}),
        ({"engagement_at_least": 30}, {"engagement": 30.0}, {"engagement": 29.9}),
        ({"in_segment": "hot-accounts"}, {"segments": {"hot-accounts"}}, {"segments": {"enterprise"}}),
        ({"not_in_segment": "enterprise"}, {"segments": set()}, {"segments": {"enterprise"}}),
        ({"grade_at_least": "B", "engagement_at_least": 30}, {}, {"grade": "A", "engagement": 5.0}),
    ],
)
def test_holds_for_each_kind_of_test(tests: dict[str, Any], yes: dict[str, Any], no: dict[str, Any]) -> None:
    assert holds(condition(**tests), lead(**yes))
    assert not holds(condition(**tests), lead(**no))


def test_holds_on_clicks_and_opens_looks_at_the_enrollment() -> None:
    state = entered().enrollment
    opened = on_lead_change(PROGRAM, state, lead(), email_event("Email Opened", state, "hello"), MONDAY + DAY)
    assert opened is not None and opened.enrollment.opened and not opened.enrollment.clicked
    assert holds(condition(opened_email_of_program=True), lead(), opened.enrollment)
    assert not holds(condition(opened_email_of_program=True), lead(), state)
    assert holds(condition(opened_email_of_program=False), lead(), state)
    assert holds(condition(clicked_email_of_program=False), lead(), opened.enrollment)
    assert not holds(condition(clicked_email_of_program=True), lead(), opened.enrollment)
    assert not holds(condition(clicked_email_of_program=False), lead()), "no enrollment: nothing to look at"


def test_segments_of_evaluates_every_segment() -> None:
    segments = [
        Segment.model_validate(
            {"id": "hot-accounts", "name": "Hot", "when": {"grade_at_least": "B", "engagement_at_least": 30}}
        ),
        Segment.model_validate(
            {"id": "enterprise", "name": "Enterprise", "when": {"trait": {"company_size": {"gte": 1000}}}}
        ),
        Segment.model_validate(
            {
                "id": "saas-industry",
                "name": "SaaS",
                "when": {"trait": {"industry": {"in": ["Software", "SaaS"]}}},
            }
        ),
    ]
    assert segments_of(segments, lead()) == {"hot-accounts", "enterprise", "saas-industry"}
    small_cold = lead(engagement=10.0, traits={"company_size": "50", "industry": "SaaS"})
    assert segments_of(segments, small_cold) == {"saas-industry"}
    assert segments_of(segments, lead(grade="D", traits={})) == set()
    assert segments_of([], lead()) == set()


def test_goal_met_describes_the_goal() -> None:
    the = program(
        exit_goals=[{"stage_at_least": "sql"}, {"event": "Demo Requested"}, {"in_segment": "customers"}]
    )
    assert goal_met(the, lead(), None) is None
    assert goal_met(the, lead(stage="sql"), None) == "reached stage sql"
    assert goal_met(the, lead(), "demo requested") == "did 'demo requested'"
    assert goal_met(the, lead(segments={"customers"}), None) == "entered segment customers"


def test_a_quiet_period_skip_learned_after_the_quiet_period_sends_again_at_the_next_tick() -> None:
    queued = run(PROGRAM, start(PROGRAM, lead(), "trigger-1", MONDAY), lead(), MONDAY)
    quiet = SendResult(status="skipped", at=MONDAY, reason="quiet_period")
    later = MONDAY + DAY
    back = send_settled(PROGRAM, queued.enrollment, lead(), "trial.lead-1.1.hello", quiet, later)
    assert back is not None
    assert (back.enrollment.status, back.enrollment.due_at) == ("active", later)
    assert back.enrollment.token != queued.enrollment.token, "a new wake-up, not the one already dispatched"
