"""Time as a dependency.

Nothing in kindling reads the wall clock directly: handlers ask the process clock for
``now`` once and pass it down. The local stack installs a controllable clock here, so a
wait of days is exercised in milliseconds; tests use ``FixedClock``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: Nothing kindling receives happened before this: an earlier time is a sender's clock never set.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def is_plausible_time(when: datetime, received_at: datetime, ahead: timedelta) -> bool:
    """Whether a sender's clock could have said ``when`` (naive: UTC): from ``EARLIEST_EVENT_TIME``
    to ``ahead`` past ``received_at``, and a time that exists in UTC (not year 1 at +01:00)."""
    try:
        utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except OverflowError:
        return False
    return EARLIEST_EVENT_TIME <= utc <= received_at + ahead


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class OffsetClock:
    """Real time shifted by an offset that can only grow: the local stack's clock.

    It keeps running like a wall clock (schedules fire as time passes), and moving it
    forward adds to the offset. It never moves backwards, as no real clock would; it may
    start anywhere (``start``), so a run can begin at a chosen moment, a weekday morning say.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
        self._offset = timedelta(0) if start is None else start - datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
            return self.now()

    def catch_up_to(self, when: datetime) -> datetime:
        """Move forward to ``when`` unless the running clock is there already (then stay).

        For a caller that computed ``when`` a moment ago: the clock kept running meanwhile, so
        ``when`` may have just passed, which is not a request to go back.
        """
        if when.tzinfo is None:
            raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
        with self._lock:
            behind = when - self.now()
            if behind > timedelta(0):
                self._offset += behind
            return self.now()

    def move_to(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
        return self.advance(when - self.now())


_clock: Clock = SystemClock()


def current() -> Clock:
    return _clock


def install(clock: Clock) -> None:
    """Replace the process clock (the local stack and tests do this)."""
    global _clock
    _clock = clock


def isoformat(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: sortable as a string."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
