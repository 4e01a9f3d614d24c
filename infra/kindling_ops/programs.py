"""Pausing and resuming programs, for the operator tool and the local stack."""

from __future__ import annotations

from datetime import datetime

from kindling.programs.service import HoldStore, pause_program, resume_program


def change_program_state(store: HoldStore, program_id: str, action: str, now: datetime) -> str:
    if not program_id:
        raise ValueError("program: give the id of a program")
    if action == "pause":
        pause_program(store, program_id)
        return f"program {program_id}: paused; its enrollments hold at their next step"
    if action == "resume":
        count = resume_program(store, program_id, now)
        return f"program {program_id}: resumed; {count} held enrollment(s) go on where they were"
    raise ValueError(f"action: {action!r} is not pause or resume")
