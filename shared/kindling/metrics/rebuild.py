"""Rebuilding every metric from the logged events: for a new metric, or after a bug.

The rebuild writes a new generation of counters while the consumer keeps counting: it first
points the consumer at the new generation, waits out ``drain`` (longer than the consumer's
timeout, so no event that read the old generation is still being counted), then replays every
event logged before that into the new one, then points the reports at it. Reports read the old
generation, whole, until the new one is; the events that arrive meanwhile are counted once, by
the consumer, in the new one. A rebuild that stops half-way leaves the reports on the old
generation, which no longer counts new events: run it again (it starts a newer one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from kindling.metrics.counters import DEFAULT_ATTRIBUTION_WINDOW, Counters, LoggedEvent, Replay


class RebuildStore(Protocol):
    def generations(self) -> tuple[int, int]: ...
    def start_generation(self, serving: int, writing: int, new: int) -> None: ...
    def logged_days(self) -> list[str]: ...
    def logged_events(self, day: str) -> Iterator[tuple[LoggedEvent, int]]: ...
    def add_rebuilt(self, generation: int, counters: Counters) -> int: ...
    def serve_generation(self, new: int) -> None: ...
    def drop_generation(self, generation: int) -> int: ...


@dataclass(frozen=True)
class RebuildSummary:
    generation: int
    #: Events replayed (logged before the rebuild began), and of those the ones that counted.
    replayed: int
    counted: int
    #: Counter and key writes made, and items of older generations deleted.
    writes: int
    dropped: int

    def line(self) -> str:
        return (
            f"metrics generation {self.generation}: {self.replayed} logged events replayed "
            f"({self.counted} counted), {self.writes} counter writes, {self.dropped} old items deleted"
        )


def rebuild_metrics(
    store: RebuildStore,
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
    drain: timedelta = timedelta(0),
    sleep: Callable[[float], None] = time.sleep,
) -> RebuildSummary:
    serving, writing = store.generations()
    new = max(serving, writing) + 1
    store.start_generation(serving, writing, new)
    sleep(drain.total_seconds())
    run = Replay(window)
    replayed = counted = 0
    for day in sorted(store.logged_days()):
        for logged, generation in store.logged_events(day):
            if generation >= new:
                continue  # counted by the consumer in the new generation already
            event = logged.event()
            if event is None:
                continue
            replayed += 1
            counted += run.apply(event)
    writes = store.add_rebuilt(new, run.counters)
    store.serve_generation(new)
    dropped = sum(store.drop_generation(old) for old in range(new))
    return RebuildSummary(new, replayed, counted, writes, dropped)
