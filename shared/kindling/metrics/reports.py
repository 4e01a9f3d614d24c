"""The email, funnel and program reports, read from the metric counters by key and day range.

A report reads the generation the reports are pointed at (one GetItem), lists the keys it
covers (one Query) and reads each key's days in the range (one Query each): its cost follows
the size of the report, never the number of leads or events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any, Protocol

from kindling.kernel.errors import InvalidInput, NotFound
from kindling.metrics.counters import (
    BREAKDOWNS,
    CounterKey,
    Days,
    FunnelKey,
    email_report,
    funnel_report,
    parse_breakdown,
    parse_range,
)

#: The breakdown the email report takes (the funnel takes every one in ``BREAKDOWNS``).
EMAIL_BREAKDOWNS = ("program",)
#: What a program id looks like (``programs.config.Slug``); anything else names no program.
_PROGRAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class MetricsReader(Protocol):
    def serving(self) -> int: ...
    def keys(self, generation: int, program: str | None = None) -> list[CounterKey]: ...
    def funnel_keys(self, generation: int, by: str | None, value: str | None = None) -> list[FunnelKey]: ...
    def days(self, generation: int, key: CounterKey | FunnelKey, first: date, last: date) -> Days: ...


def emails(
    reader: MetricsReader, start: str | None, end: str | None, program: str | None, by: str | None
) -> dict[str, Any]:
    """Per email (program, step, template), or per program with ``by=program``."""
    first, last = parse_range(start, end)
    breakdown = _breakdown(by, EMAIL_BREAKDOWNS, "the email report")
    if program and not _PROGRAM_ID.fullmatch(program):
        raise InvalidInput("program: a program id (lower-case letters, digits, _ and -)")
    generation = reader.serving()
    keys = reader.keys(generation, program or None)
    report = email_report(keys, lambda key: reader.days(generation, key, first, last), breakdown)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "program": program or None,
        "by": breakdown,
        **report,
    }


def funnel(reader: MetricsReader, start: str | None, end: str | None, by: str | None) -> dict[str, Any]:
    """The funnel overall, or one per value of a breakdown."""
    first, last = parse_range(start, end)
    breakdown = _breakdown(by, BREAKDOWNS, "the funnel")
    generation = reader.serving()
    groups = funnel_report(
        reader.funnel_keys(generation, breakdown), lambda key: reader.days(generation, key, first, last)
    )
    return {"from": first.isoformat(), "to": last.isoformat(), "by": breakdown, "groups": groups}


def program(
    reader: MetricsReader,
    program_id: str,
    known: Iterable[str],
    start: str | None,
    end: str | None,
    by: str | None,
) -> dict[str, Any]:
    """One program: each of its emails, their totals and trend, and the funnel of the leads its
    emails touched last before they moved (the ``program`` breakdown of the funnel)."""
    first, last = parse_range(start, end)
    if by:
        raise InvalidInput("by: the program report has no breakdown (its rows are the program's steps)")
    if not _PROGRAM_ID.fullmatch(program_id):
        raise NotFound("no such program")
    generation = reader.serving()
    keys = reader.keys(generation, program_id)
    if program_id not in set(known) and not keys:
        raise NotFound(f"no program {program_id}")
    report = email_report(keys, lambda key: reader.days(generation, key, first, last))
    groups = funnel_report(
        reader.funnel_keys(generation, "program", program_id),
        lambda key: reader.days(generation, key, first, last),
    )
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "program": program_id,
        "emails": report["rows"],
        "totals": report["totals"],
        "funnel": groups[0] if groups else None,
    }


def _breakdown(value: str | None, allowed: tuple[str, ...], report: str) -> str | None:
    try:
        return parse_breakdown(value, allowed)
    except InvalidInput:
        raise InvalidInput(f"by: {report} breaks down by {', '.join(allowed)}") from None
