"""Folding the metrics log into the counters, every ten minutes, behind a watermark.

The consumer logs each fresh event and counts nothing (see ``counters``). The fold reads the
log from where it stopped (the cursor's ``through``) up to ``FOLD_LAG`` ago, skips what the
consumer applied at once (late events), and applies the rest in the order it happened: each
(counter, day) is added to once per fold, whatever the number of events behind it.

A fold runs in steps that each write without a transaction, so a crash can stop it anywhere;
the retry must then neither lose nor double anything. Hence:

1. It first *claims* its stretch: the cursor gets a pending fold (sequence number ``seq``, end
   ``until``, generation) before anything is written. A retry resumes that claim, so it reads the
   same stretch of the log: nothing is logged there any more (the lag sees to it).
2. Markers and states it writes carry its ``seq`` (a state also what it was before), so a retry
   starts from what the lead was before this fold and counts a marker it set itself as new: it
   computes exactly what the crashed attempt did.
3. Each counter update adds and sets the counter's fold sequence, on condition that it is lower:
   a retry adds only to counters the crashed attempt did not reach.
4. Only then does the cursor move on, conditionally on the writing generation being the claim's.

A rebuild that changes the writing generation while a fold is pending makes the cursor's move
fail; the fold then re-claims the same stretch for the new generation (the old one, which the
rebuild replaces, may keep a partial fold meanwhile). The cursor remembers where the first fold
into a generation began, so the rebuild knows which events the fold counted into older ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from kindling.metrics.counters import (
    DEFAULT_ATTRIBUTION_WINDOW,
    FOLD_LAG,
    Counters,
    LeadState,
    MetricEvent,
    fold_events,
    reads_state,
    unique_of,
)

#: The most log entries one fold reads (a backlog is folded over several runs, each within its timeout).
MAX_FOLD_EVENTS = 5000


@dataclass(frozen=True)
class PendingFold:
    """A fold claimed and not finished: the ``seq``-th, of the log up to ``until``, into ``generation``."""

    seq: int
    until: datetime
    generation: int


@dataclass(frozen=True)
class FoldCursor:
    """How far the log is folded: through ``through`` (None: nothing yet), by ``seq`` folds, the last
    into ``generation``."""

    seq: int = 0
    through: datetime | None = None
    generation: int | None = None
    pending: PendingFold | None = None


@dataclass(frozen=True)
class FoldBase:
    """A lead's state as a fold starts from it, and whether this fold's state is written already."""

    state: LeadState
    version: int
    written: bool = False


class GenerationMoved(Exception):
    """A rebuild changed the writing generation while a fold was pending."""


class FoldStore(Protocol):
    def fold_cursor(self) -> FoldCursor: ...
    def generations(self) -> tuple[int, int]: ...
    def unfolded(
        self, after: datetime | None, until: datetime, limit: int | None = None
    ) -> tuple[list[MetricEvent], datetime]:
        """The logged events not applied by the consumer with times in (after, until], in log order,
        and ``until``; with ``limit``, those up to the time of the ``limit``-th entry read (applied
        ones included, so a long stretch of them is crossed a part at a time), and that time."""

    def claim_fold(self, cursor: FoldCursor, pending: PendingFold) -> None:
        """Note ``pending`` on the cursor if it is still ``cursor`` (``Conflict`` otherwise)."""

    def skip_fold(self, cursor: FoldCursor, until: datetime) -> None:
        """Move the cursor through ``until`` when nothing there is left to fold (``Conflict`` if it moved)."""

    def retarget_fold(self, pending: PendingFold) -> None: ...
    def fold_bases(self, lead_ids: Iterable[str], seq: int) -> dict[str, FoldBase]: ...
    def fold_markers(self, uniques: Iterable[str], seq: int) -> tuple[set[str], set[str]]:
        """Of ``uniques``: those set before fold ``seq``, and those fold ``seq`` set itself."""

    def put_markers(self, uniques: Iterable[str], seq: int) -> None: ...
    def put_states(self, states: dict[str, LeadState], bases: dict[str, FoldBase], seq: int) -> None: ...
    def add_folded(self, generation: int, counters: Counters, seq: int) -> int:
        """Add ``counters`` unless fold ``seq`` added them already; the counter writes made."""

    def advance_fold(self, cursor: FoldCursor, pending: PendingFold) -> None:
        """Move the cursor through ``pending`` (``GenerationMoved`` if the writing generation did)."""


@dataclass(frozen=True)
class FoldSummary:
    seq: int
    through: datetime | None
    events: int
    counted: int
    writes: int


def fold_metrics(
    store: FoldStore,
    now: datetime,
    window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
    limit: int = MAX_FOLD_EVENTS,
) -> FoldSummary:
    """Fold what was logged up to ``now - FOLD_LAG`` (or resume the fold a crash left pending)."""
    for _ in range(3):
        try:
            return _fold_once(store, now, window, limit)
        except GenerationMoved:
            continue  # the claim now names the new generation: fold the same stretch into it
    raise GenerationMoved("the writing generation kept moving; the next fold resumes")


def _fold_once(store: FoldStore, now: datetime, window: timedelta, limit: int) -> FoldSummary:
    cursor = store.fold_cursor()
    writing = store.generations()[1]
    pending = cursor.pending
    if pending is None:
        if cursor.through is not None and now - FOLD_LAG <= cursor.through:
            return FoldSummary(cursor.seq, cursor.through, 0, 0, 0)
        events, until = store.unfolded(cursor.through, now - FOLD_LAG, limit)
        if not events:  # nothing counts: no claim needed, one small write moves the cursor on
            store.skip_fold(cursor, until)
            return FoldSummary(cursor.seq, until, 0, 0, 0)
        pending = PendingFold(cursor.seq + 1, until, writing)
        store.claim_fold(cursor, pending)
    else:
        if pending.generation != writing:
            pending = replace(pending, generation=writing)
            store.retarget_fold(pending)
        events, _ = store.unfolded(cursor.through, pending.until)
    bases = store.fold_bases(sorted({e.lead_id for e in events if reads_state(e)}), pending.seq)
    uniques = {u for u in (unique_of(e) for e in events) if u is not None}
    seen, ours = store.fold_markers(sorted(uniques), pending.seq)
    folded = fold_events(events, {lead: b.state for lead, b in bases.items()}, seen, window)
    # Markers and states before counters: once any counter is added, a retry computes the same.
    store.put_markers(sorted(folded.markers - ours), pending.seq)
    store.put_states(
        {lead: s for lead, s in folded.states.items() if not bases[lead].written}, bases, pending.seq
    )
    writes = store.add_folded(pending.generation, folded.counters, pending.seq)
    store.advance_fold(cursor, pending)
    return FoldSummary(pending.seq, pending.until, len(events), folded.counted, writes)
