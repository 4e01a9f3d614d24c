"""Schedule expressions as EventBridge writes them, on the local clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kindling_ops.local.schedules import Schedule, ScheduleError

T0 = datetime(2026, 11, 25, 10, 0, 30, tzinfo=UTC)  # a Wednesday


def test_a_rate_fires_every_period_from_its_anchor() -> None:
    schedule = Schedule.parse("rate(5 minutes)")
    fired = list(schedule.fire_times(T0, T0 + timedelta(minutes=16), anchor=T0))
    assert fired == [T0 + timedelta(minutes=m) for m in (5, 10, 15)]


def test_a_daily_cron_fires_once_a_day_at_its_time() -> None:
    schedule = Schedule.parse("cron(0 3 * * ? *)")
    fired = list(schedule.fire_times(T0, T0 + timedelta(days=3), anchor=T0))
    assert [f.isoformat() for f in fired] == [
        "2026-11-26T03:00:00+00:00",
        "2026-11-27T03:00:00+00:00",
        "2026-11-28T03:00:00+00:00",
    ]


def test_a_weekday_cron_skips_weekends() -> None:
    schedule = Schedule.parse("cron(30 8 ? * MON-FRI *)")
    fired = list(schedule.fire_times(T0, T0 + timedelta(days=7), anchor=T0))
    assert [f.strftime("%a") for f in fired] == ["Thu", "Fri", "Mon", "Tue", "Wed"]


def test_the_last_fire_time_in_a_window_is_what_a_late_tick_runs_as() -> None:
    schedule = Schedule.parse("rate(1 minute)")
    assert schedule.last_fire(T0, T0 + timedelta(hours=2, seconds=10), anchor=T0) == T0 + timedelta(hours=2)
    assert schedule.last_fire(T0, T0 + timedelta(seconds=59), anchor=T0) is None


@pytest.mark.parametrize(
    "expression",
    [
        "rate(0 minutes)",
        "rate(1 fortnight)",
        "cron(0 3 * *)",
        "cron(61 * * * ? *)",
        "cron(0 12 L * ? *)",
        "every day",
    ],
)
def test_an_expression_the_local_stack_cannot_honour_is_an_error(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression)


def test_the_minute_tick_and_the_metrics_fold_do_not_stop_a_clock_move_but_an_hourly_rate_does() -> None:
    """A move of a month steps to each hourly firing, but not to 4,000 firings of the fold."""
    assert Schedule.parse("rate(1 minute)").is_tick and Schedule.parse("rate(10 minutes)").is_tick
    assert not Schedule.parse("rate(1 hour)").is_tick
    assert not Schedule.parse("cron(0 13 * * ? *)").is_tick
