"""Competing programs: who sends first at an opening, and no program waits for ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kindling.email.sender import STARVED_AFTER, SendRequest, queue_offset
from kindling.programs.config import Program, Programs

NOW = datetime(2027, 1, 18, 13, 0, tzinfo=UTC)


def program(program_id: str, priority: int | None = None) -> Program:
    document: dict[str, Any] = {
        "id": program_id,
        "name": program_id,
        "trigger": {"new_lead": True},
        "steps": [{"id": "hello", "send_email": "welcome-1"}],
    }
    if priority is not None:
        document["priority"] = priority
    return Program.model_validate(document)


def test_programs_rank_by_priority_then_by_file_order() -> None:
    programs = Programs(
        programs={
            p.id: p
            for p in [program("alpha"), program("beta", priority=2), program("gamma"), program("delta", 1)]
        }
    )
    assert [programs.rank(i) for i in ("delta", "beta", "alpha", "gamma")] == [0, 1, 2, 3]
    assert programs.rank("removed-since") == 4, "an unknown program goes last"


def test_a_priority_must_be_a_small_positive_number() -> None:
    with pytest.raises(ValidationError, match="priority"):
        program("alpha", priority=0)


def request(priority: int | None, deferred_since: datetime | None = None) -> SendRequest:
    return SendRequest(
        send_id="p.lead-1.1.hello",
        lead_id="lead-1",
        template="welcome-1",
        priority=priority,
        deferred_since=deferred_since,
    )


def test_competing_sends_leave_a_minute_tick_apart_in_priority_order() -> None:
    offsets = [queue_offset(request(rank), NOW) for rank in (0, 1, 2)]
    assert offsets == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=3)]
    assert queue_offset(request(None), NOW) == timedelta(0), "a one-off send is no program's turn"


def test_a_send_kept_waiting_a_week_goes_ahead_of_every_priority() -> None:
    starved = request(5, deferred_since=NOW - STARVED_AFTER)
    assert queue_offset(starved, NOW) < queue_offset(request(0), NOW)
    assert queue_offset(request(5, deferred_since=NOW - timedelta(days=1)), NOW) == timedelta(minutes=6)
