"""EventBridge schedule expressions (rate and cron), evaluated on the local stack's clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleError(ValueError):
    pass


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int] | None:
    """One cron field as the set of values it allows (None: any)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body in ("*", ""):
            start, end = low, high
        elif "-" in body:
            first, last = body.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(body, names)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ScheduleError(f"cron field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"cron value {text!r} is not supported locally (L, W and # are not)")
    return int(text)


@dataclass(frozen=True)
class Schedule:
    expression: str
    every: timedelta | None = None
    minutes: frozenset[int] | None = None
    hours: frozenset[int] | None = None
    days: frozenset[int] | None = None
    months: frozenset[int] | None = None
    weekdays: frozenset[int] | None = None
    years: frozenset[int] | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        rate = _RATE.match(text)
        if rate:
            count, unit = int(rate.group(1)), rate.group(2).rstrip("s")
            if count < 1:
                raise ScheduleError(f"{expression}: a rate must be at least 1")
            return cls(text, every=timedelta(seconds=count * _UNITS[unit]))
        if text.startswith("cron(") and text.endswith(")"):
            fields = text[5:-1].split()
            if len(fields) != 6:
                raise ScheduleError(f"{expression}: cron needs 6 fields (min hour day month weekday year)")
            return cls(
                text,
                minutes=_field(fields[0], 0, 59),
                hours=_field(fields[1], 0, 23),
                days=_field(fields[2], 1, 31),
                months=_field(fields[3], 1, 12, _MONTHS),
                weekdays=_field(fields[4], 1, 7, _DAYS),
                years=_field(fields[5], 1970, 2199),
            )
        raise ScheduleError(f"{expression}: not a rate() or cron() expression")

    def _matches(self, moment: datetime) -> bool:
        weekday = moment.isoweekday() % 7 + 1  # cron: 1 = Sunday
        return all(
            allowed is None or value in allowed
            for allowed, value in (
                (self.minutes, moment.minute),
                (self.hours, moment.hour),
                (self.days, moment.day),
                (self.months, moment.month),
                (self.weekdays, weekday),
                (self.years, moment.year),
            )
        )

    @property
    def is_tick(self) -> bool:
        """A rate of minutes: the due-work tick, whose firings matter only when something is due, and
        the metrics fold, whose firings matter only when someone looks (a report read after the clock
        moved). Moving the clock stops at neither; they run at the instants it does stop at, and at
        the end of each move, as of their latest firing."""
        return self.every is not None and self.every <= timedelta(minutes=10)

    def fire_times(self, after: datetime, until: datetime, anchor: datetime) -> Iterator[datetime]:
        """Times in (after, until] when the schedule fires; rates count from ``anchor``."""
        after, until = after.astimezone(UTC), until.astimezone(UTC)
        if self.every is not None:
            periods = max(int((after - anchor) / self.every) + 1, 1)
            moment = anchor + self.every * periods
            while moment <= until:
                if moment > after:
                    yield moment
                moment += self.every
            return
        moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while moment <= until:
            if self._matches(moment):
                yield moment
            moment += timedelta(minutes=1)

    def last_fire(self, after: datetime, until: datetime, anchor: datetime) -> datetime | None:
        last = None
        for last in self.fire_times(after, until, anchor):  # noqa: B007
            pass
        return last
