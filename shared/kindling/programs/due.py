"""Work that must happen at a time: deferred sends now, program steps later.

Each item is stored under the hour it falls due, and the minute tick reads only
the hours between its cursor and now, and in them only what is already due. So a tick
costs one query per elapsed hour plus one read per item due: nothing grows with what is
stored for later. Items are dispatched before they are removed, so a crashed tick
re-dispatches rather than loses; consumers are idempotent. Writing an item lowers the
cursor to the item's hour if needed, so an item due at once, or a lane's very first item,
is never behind the cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel


class DueItem(BaseModel):
    id: str
    kind: str
    due_at: datetime
    payload: dict[str, Any]
    #: When it was scheduled. Only an item due in that same hour (or earlier) can fall
    #: behind a tick that is running: only those need to pull the tick's cursor back.
    scheduled_at: datetime | None = None
    #: Stored in the layout of an earlier version (the store reads and removes both).
    legacy: bool = False

    @property
    def may_be_behind_the_tick(self) -> bool:
        return self.scheduled_at is None or hour_of(self.due_at) <= hour_of(self.scheduled_at)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour bucket from start's to end's, inclusive."""
    hours, hour = [], hour_of(start)
    while hour <= hour_of(end):
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


class DueStore(Protocol):
    def put_due(self, item: DueItem) -> None: ...
    def due_in_hour(self, hour: datetime, until: datetime) -> list[DueItem]: ...
    def remove_due(self, item: DueItem) -> None: ...
    def cursor(self) -> datetime | None: ...
    def move_cursor(self, hour: datetime, expected: datetime | None) -> None: ...


def release_due(store: DueStore, dispatch: Callable[[list[DueItem]], None], now: datetime) -> int:
    """Hand every item due by ``now`` to ``dispatch``; a late tick catches up from its cursor."""
    cursor = store.cursor()
    start = min(cursor, now) if cursor else now
    released = 0
    for hour in hours_between(start, now):
        items = store.due_in_hour(hour, until=now)
        if items:
            dispatch(items)
            for item in items:
                store.remove_due(item)
            released += len(items)
    store.move_cursor(hour_of(now), expected=cursor)
    return released
