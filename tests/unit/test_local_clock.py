"""The local stack's clock can start at a chosen moment and still only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kindling.kernel.clock import OffsetClock
from kindling_ops.cli import build_parser

MONDAY_MORNING = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def test_a_clock_started_in_the_past_begins_there_and_runs_on() -> None:
    clock = OffsetClock(MONDAY_MORNING)
    first = clock.now()
    assert timedelta(0) <= first - MONDAY_MORNING < timedelta(seconds=5)
    assert clock.now() >= first
    clock.advance(timedelta(days=2))
    assert clock.now() - MONDAY_MORNING >= timedelta(days=2)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.move_to(MONDAY_MORNING)


def test_a_start_without_an_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        OffsetClock(datetime(2026, 3, 2, 9, 0))


def test_local_takes_a_start_time_with_its_offset() -> None:
    args = build_parser().parse_args(["local", "--start-at", "2026-03-02T09:00:00-05:00"])
    assert args.start_at == MONDAY_MORNING
    assert build_parser().parse_args(["local"]).start_at is None


@pytest.mark.parametrize(
    ("given", "named"),
    [("2026-03-02T09:00:00", "has no offset"), ("next monday", "is not an ISO 8601 time")],
)
def test_local_refuses_a_start_time_it_cannot_place(
    given: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["local", "--start-at", given])
    assert stopped.value.code == 2
    assert named in capsys.readouterr().err


def test_catching_up_to_a_moment_that_just_passed_stays_where_the_clock_is() -> None:
    """A step computed a moment ago may have passed while the clock ran on: that is no move back."""
    from datetime import UTC, datetime, timedelta

    from kindling.kernel.clock import OffsetClock

    clock = OffsetClock(datetime(2027, 1, 11, 13, 0, tzinfo=UTC))
    passed = clock.now() - timedelta(milliseconds=5)
    assert clock.catch_up_to(passed) >= passed
    ahead = clock.now() + timedelta(days=2)
    assert clock.catch_up_to(ahead) - ahead < timedelta(seconds=1)
