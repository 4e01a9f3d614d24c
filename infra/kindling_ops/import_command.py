"""``kindling import FORMAT FILE``: read a contact export, then post it to the admin API in batches.

Suppressions go first, then contacts, so an address that must not be mailed is on the list
before its lead can exist. Every row's outcome is written to a results CSV as its batch is
answered, with a checkpoint beside it: run the same command again after an interruption and
it goes on after the last answered batch (and since every row is applied idempotently, a batch
sent twice changes nothing). ``--dry-run`` asks the API what would happen and writes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kindling_ops.admin_client import AdminApi

BATCH_ROWS = 500
RESULT_COLUMNS = ("kind", "row", "outcome", "lead_id", "reason")


@dataclass
class Progress:
    """One line on stderr, redrawn: rows done of all, rate, and time left."""

    total: int
    out: TextIO = sys.stderr
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def advance(self, rows: int, phase: str) -> None:
        self.done += rows
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        self.out.write(
            f"\r[{bar}] {self.done:,}/{self.total:,} rows ({phase})  {rate:,.0f} rows/s  "
            f"{int(left) // 60}:{int(left) % 60:02d} left "
        )
        self.out.flush()

    def finish(self) -> None:
        self.out.write("\n")
        self.out.flush()


def fingerprint(paths: Sequence[Path | str], options: dict[str, Any]) -> str:
    """What identifies one import: its files' contents and the options that change what is sent."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in paths:
        local = Path(str(path))
        if local.is_dir():
            for child in sorted(p for p in local.rglob("*") if p.is_file()):
                digest.update(child.name.encode() + child.read_bytes())
        elif local.exists():
            digest.update(local.read_bytes())
        else:
            digest.update(str(path).encode())  # an s3:// prefix: named, not read twice
    return digest.hexdigest()


_FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")


def merge_duplicates(contacts: Sequence[Any]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """One row per person (by address, else user id), later values winning, as a re-run must see.

    A file that names a person twice with different values would otherwise flip them back and
    forth on every run. The merged row keeps the first row's reference; the others are reported
    as duplicates of it. Opted out anywhere means opted out; the stage is the furthest named.
    """
    merged: dict[str, dict[str, Any]] = {}
    duplicates: list[tuple[str, str]] = []
    for contact in contacts:
        key = f"email:{contact.email.strip().lower()}" if contact.email else f"user:{contact.user_id}"
        row = {
            "row": contact.source_ref,
            **({"email": contact.email} if contact.email else {}),
            **({"user_id": contact.user_id} if contact.user_id else {}),
            "traits": dict(contact.traits),
            **({"stage": contact.stage} if contact.stage else {}),
            "unsubscribed": contact.unsubscribed,
        }
        first = merged.get(key)
        if first is None:
            merged[key] = row
            continue
        duplicates.append((contact.source_ref, first["row"]))
        first["traits"].update(row["traits"])
        first["unsubscribed"] = first["unsubscribed"] or row["unsubscribed"]
        if row.get("user_id") and not first.get("user_id"):
            first["user_id"] = row["user_id"]
        stages = [s for s in (first.get("stage"), row.get("stage")) if s]
        if stages:
            first["stage"] = max(stages, key=lambda s: _FUNNEL.index(s) if s in _FUNNEL else -1)
    return list(merged.values()), duplicates


def run_import(
    api: AdminApi,
    parsed: Any,
    *,
    source: str,
    results_path: Path,
    identity: str,
    dry_run: bool,
    enroll: bool,
    out: TextIO = sys.stdout,
    progress_out: TextIO = sys.stderr,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, dict[str, int]]:
    """Post the rows, write each outcome, and return the counts per kind and outcome."""
    checkpoint_path = results_path.with_name(results_path.name + ".checkpoint")
    done = {"suppressions": 0, "contacts": 0}
    resuming = False
    if not dry_run and checkpoint_path.exists() and results_path.exists():
        saved = json.loads(checkpoint_path.read_text())
        if saved.get("fingerprint") == identity:
            done, resuming = {**done, **saved["done"]}, True
    counts: dict[str, dict[str, int]] = {}
    contact_rows, duplicates = merge_duplicates(parsed.contacts)
    with results_path.open("a" if resuming else "w", newline="") as handle:
        writer = csv.writer(handle)
        if not resuming:
            writer.writerow(RESULT_COLUMNS)
            for rejected in parsed.rejected:
                writer.writerow(("contact", rejected.source_ref, "rejected", "", rejected.reason))
                _count(counts, "contact", "rejected")
            for duplicate, first in duplicates:
                writer.writerow(
                    ("contact", duplicate, "unchanged", "", f"the same person as {first}: merged into it")
                )
                _count(counts, "contact", "unchanged")
        else:
            out.write(
                f"resuming after {done['suppressions']:,} suppressions and {done['contacts']:,} contacts "
                f"(see {results_path})\n"
            )
        phases: list[tuple[str, str, list[dict[str, Any]]]] = [
            (
                "suppressions",
                "/v1/imports/suppressions",
                [{"row": s.source_ref, "email": s.email, "reason": s.reason} for s in parsed.suppressions],
            ),
            ("contacts", "/v1/imports/contacts", contact_rows),
        ]
        total = sum(len(rows) - done[phase] for phase, _, rows in phases)
        progress = Progress(total, progress_out)
        for phase, path, rows in phases:
            kind = phase.removesuffix("s")
            for start in range(done[phase], len(rows), batch_rows):
                batch = rows[start : start + batch_rows]
                body: dict[str, Any] = {"source": source, "rows": batch, "dry_run": dry_run}
                if phase == "contacts":
                    body["enroll"] = enroll
                answer = api.post(path, body)
                for result in answer["results"]:
                    writer.writerow(
                        (
                            kind,
                            result["row"],
                            result["outcome"],
                            result.get("lead_id", ""),
                            result.get("reason", ""),
                        )
                    )
                    _count(counts, kind, result["outcome"])
                handle.flush()
                done[phase] = start + len(batch)
                if not dry_run:
                    _save(checkpoint_path, {"fingerprint": identity, "done": done})
                progress.advance(len(batch), phase)
        progress.finish()
    if not dry_run:
        checkpoint_path.unlink(missing_ok=True)  # finished: a new run starts over (and changes nothing)
    return counts


def _count(counts: dict[str, dict[str, int]], kind: str, outcome: str) -> None:
    counts.setdefault(kind, {})
    counts[kind][outcome] = counts[kind].get(outcome, 0) + 1


def _save(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)


def summary(counts: dict[str, dict[str, int]], skipped: dict[str, int], dry_run: bool, results: Path) -> str:
    lines = []
    for kind in ("suppression", "contact"):
        if kind in counts:
            parts = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(counts[kind].items()))
            lines.append(f"{kind}s: {parts}")
    for why, n in sorted(skipped.items()):
        lines.append(f"skipped: {n:,} {why}")
    lines.append(f"each row's outcome: {results}")
    if dry_run:
        lines.append("dry run: nothing was written; run without --dry-run to import")
    return "\n".join(lines)
