"""A program as the console draws it: its steps as a flow, where its leads are, what it sent.

Where the leads are comes from an index of the program's enrollments keyed by status and
current step (one query per program, growing with that program's enrollments, never with the
table); what it sent comes from the email metrics of its steps.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kindling.programs.config import Program

STATUSES = ("active", "sending", "waiting", "held", "exited", "completed")


def enrollment_index_key(program_id: str) -> str:
    return f"ENROLLED#{program_id}"


def enrollment_index_sort(status: str, step_id: str | None, enrollment_id: str) -> str:
    return f"{status}#{step_id or '-'}#{enrollment_id}"


def overview(
    program: Program,
    paused: bool,
    enrollment_sort_keys: list[str],
    sent_by_step: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """``enrollment_sort_keys``: the index's sort keys of the program's enrollments."""
    statuses: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for key in enrollment_sort_keys:
        status, step, _ = key.split("#", 2)
        statuses[status] += 1
        if status in ("active", "sending", "waiting", "held") and step != "-":
            waiting[step] += 1
    counts = {status: statuses.get(status, 0) for status in STATUSES}
    counts["entered"] = sum(statuses.values())
    steps = [
        {
            "id": step.id,
            "kind": step.kind,
            "template": step.send_email,
            "next": [t for t in dict.fromkeys(step.targets(program.following(step.id))) if t],
            "waiting": waiting.get(step.id, 0),
            "sent": sent_by_step.get(step.id, {}).get("sent", 0),
            "skipped": sent_by_step.get(step.id, {}).get("skipped", 0),
        }
        for step in program.steps
    ]
    return {
        "id": program.id,
        "name": program.name,
        "description": program.description,
        "priority": program.priority,
        "paused": paused,
        "trigger": program.trigger.model_dump(exclude_none=True),
        "counts": counts,
        "steps": steps,
    }
