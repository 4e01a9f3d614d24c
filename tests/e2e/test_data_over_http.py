"""Data in and out with the operator tool against the local stack, through the admin API only.

A HubSpot export with its unsubscribes and bounces: a dry run, the import, the same import
again, the suppression list, the leads export, and one person's erasure.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_TOKEN, ROOT, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e
HUBSPOT = ROOT / "tests" / "fixtures" / "imports" / "hubspot"


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
    yield running
    assert stop_stack(running) == 0


def kindling(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    port = stack.url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, "-m", "kindling_ops.cli", *args, "--local", "--port", port],
        cwd=ROOT,
        env={**os.environ, "KINDLING_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )


def outcomes(results: Path) -> dict[tuple[str, str], str]:
    with results.open() as handle:
        return {(r["kind"], r["row"].rsplit(":", 1)[1]): r["outcome"] for r in csv.DictReader(handle)}


def test_a_hubspot_export_comes_in_suppressions_first_once_and_goes_out_again(stack, tmp_path: Path) -> None:
    contacts, suppressions = str(HUBSPOT / "contacts.csv"), str(HUBSPOT / "unsubscribes_and_bounces.csv")
    results = tmp_path / "results.csv"
    dry = kindling(
        stack,
        "import",
        "hubspot",
        contacts,
        "--suppressions",
        suppressions,
        "--results",
        str(results),
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was written" in dry.stdout
    assert stack.lead_by_email("grace@fintech.io").status_code == 404

    done = kindling(
        stack, "import", "hubspot", contacts, "--suppressions", suppressions, "--results", str(results)
    )
    assert done.returncode == 0, done.stderr
    assert "rows/s" in done.stderr, "a progress line"
    first = outcomes(results)
    assert first[("contact", "2")] == "created" and first[("suppression", "4")] == "suppressed"
    assert "rejected" in {o for (kind, _), o in first.items() if kind == "contact"}, (
        "the row without an email"
    )
    grace = stack.lead_by_email("grace@fintech.io").json()["lead"]
    assert (grace["stage"], grace["traits"]["first_name"]) == ("mql", "Grace")
    alan = stack.lead_by_email("alan@bletchley.example").json()["lead"]
    assert alan["unsubscribed"] is True, "HubSpot's unsubscribe reached the lead"

    again = kindling(
        stack, "import", "hubspot", contacts, "--suppressions", suppressions, "--results", str(results)
    )
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout and "updated" not in again.stdout, again.stdout

    listed = kindling(stack, "suppressions", "list")
    assert "bounced@nowhere.example" in listed.stdout and "hard@bounce.example" in listed.stdout
    refused = kindling(stack, "suppressions", "remove", "hard@bounce.example", "--note", "")
    assert refused.returncode == 1 and "note" in refused.stderr
    removed = kindling(
        stack, "suppressions", "remove", "hard@bounce.example", "--note", "typo fixed in CRM", "--by", "ops"
    )
    assert removed.returncode == 0, removed.stderr

    exported = tmp_path / "leads.jsonl"
    out = kindling(stack, "export", "leads", "--format", "jsonl", "--output", str(exported))
    assert out.returncode == 0, out.stderr
    leads = {row["email"]: row for row in map(json.loads, exported.read_text().splitlines())}
    assert leads["grace@fintech.io"]["stage"] == "mql" and leads["alan@bletchley.example"]["unsubscribed"]

    erased = kindling(
        stack, "person", "erase", "grace@fintech.io", "--confirm", "grace@fintech.io", "--note", "DSR-12"
    )
    assert erased.returncode == 0, erased.stderr
    assert stack.lead_by_email("grace@fintech.io").status_code == 404
