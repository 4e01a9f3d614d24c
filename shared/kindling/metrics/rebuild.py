"""Rebuilding every metric from the logged events: for a new metric, or after a bug.

The rebuild writes a new generation of counters while the consumer and the fold keep counting:
it first points them at the new generation, waits out ``drain`` (longer than the consumer's
timeout, so no late event that read the old generation is still being applied), then replays
every event counted into the old one into the new one, and then points the reports at it.

Counted into the old one means: applied late by the consumer under an older generation, or
folded through the point where the fold moved on to the new generation (the fold cannot move
its cursor into an older generation once the new one is written, see ``fold``). Events logged
after that point are left to the fold, which counts them into the new generation itself.

Reports read the old generation, whole, until the new one is (a fold cut short by the switch may
have added part of its stretch to the old one meanwhile; the new one has it once). A rebuild that
stops half-way leaves the reports on the old generation, which no longer counts new events: run
it again (it starts a newer one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from kindling.metrics.counters import DEFAULT_ATTRIBUTION_WINDOW, Counters, LogEntry, Replay


class RebuildStore(Protocol):
    def generations(self) -> tuple[int, int]: ...
    def start_generation(self, serving: int, writing: int, new: int) -> None: ...
    def logged_days(self) -> list[str]: ...
    def folded_through(self, generation: int) -> datetime | None: ...
    def logged_events(self, day: str) -> Iterator[LogEntry]: ...
    def add_rebuilt(self, generation: int, counters: Counters) -> int: ...
    def serve_generation(self, new: int) -> None: ...
    def drop_generation(self, generation: int) -> int: ...


@dataclass(frozen=True)
class RebuildSummary:
    generation: int
    #: Events replayed (counted into older generations), and of those the ones that counted.
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
    folded = store.folded_through(new)
    run = Replay(window)
    replayed = counted = 0
    for day in sorted(store.logged_days()):
        for entry in store.logged_events(day):
            event = entry.event
            if event is None:
                continue
            if entry.applied is not None and entry.applied >= new:
                continue  # applied by the consumer in the new generation already
            if entry.applied is None and (folded is None or event.at > folded):
                continue  # not folded before the switch: the fold counts it into the new generation
            replayed += 1
            counted += run.apply(event)
    writes = store.add_rebuilt(new, run.counters)
    store.serve_generation(new)
    dropped = sum(store.drop_generation(old) for old in range(new))
    return RebuildSummary(new, replayed, counted, writes, dropped)
