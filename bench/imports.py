"""Import benchmark: rows per second and DynamoDB capacity per imported row, on the local stack.

Run on demand (``make bench`` or ``.venv/bin/python bench/imports.py``); it is not a test. It
writes a seeded HubSpot-style contacts CSV (``--rows`` contacts, a tenth of them also in the
"unsubscribes and bounces" file), starts ``kindling local`` with its capacity meter on, and runs
what ``kindling import hubspot`` runs, against the admin API over HTTP: the import, then the same
import again (which must change nothing). It prints rows per second, admin API requests, and
DynamoDB write and read units per row for each run. The rates are moto's on this machine (its CPU
shares one GIL with the functions); the capacity units are what DynamoDB would bill.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import tempfile
import time
from pathlib import Path

from common import header, say
from cost import ADMIN_TOKEN, Phase, Stack

from kindling_ops.admin_client import AdminApi
from kindling_ops.import_command import fingerprint, run_import
from kindling_ops.importing.formats import read_hubspot

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus", "Margaret", "Donald"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman", "Torvalds", "Hamilton"]
TITLES = ["VP Marketing", "CTO", "Head of Growth", "Data Engineer", "Marketing Manager", "Founder"]
STAGES = ["Subscriber", "Lead", "Marketing Qualified Lead", "Sales Qualified Lead", "Customer", ""]


def write_export(folder: Path, rows: int, seed: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    contacts, suppressions = folder / "contacts.csv", folder / "unsubscribes_and_bounces.csv"
    with contacts.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "Record ID",
                "First Name",
                "Last Name",
                "Email",
                "Company Name",
                "Job Title",
                "Number of Employees",
                "Country/Region",
                "Time Zone",
                "Lifecycle Stage",
                "Unsubscribed from all email",
            ]
        )
        for index in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}.{index}@company{index % 97}.example".lower()
            if index % 50 == 49:  # a duplicate of an earlier row, as real exports have
                email = f"{FIRST[0]}.{LAST[0]}.0@company0.example".lower()
            out.writerow(
                [
                    1000 + index,
                    first,
                    last,
                    email,
                    f"Company {index % 97}",
                    rng.choice(TITLES),
                    rng.choice([12, 80, 250, 1200, 5000]),
                    "United States",
                    "America/New_York",
                    rng.choice(STAGES),
                    "false",
                ]
            )
    with suppressions.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Email", "Portal Bounce", "Portal Unsubscribe", "Portal Spam Report", "Global Bounce"])
        for index in range(0, rows, 10):
            bounce = index % 20 == 0
            out.writerow([f"gone{index}@company{index % 97}.example", bounce, not bounce, False, False])
    return contacts, suppressions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    header(
        f"Import: {args.rows:,} HubSpot contacts and {args.rows // 10:,} suppressions through the admin API"
    )
    with tempfile.TemporaryDirectory() as folder:
        contacts, suppressions = write_export(Path(folder), args.rows, args.seed)
        parsed = read_hubspot(contacts, suppressions)
        rows = len(parsed.contacts) + len(parsed.suppressions)
        stack = Stack()
        try:
            api = AdminApi(stack.url, ADMIN_TOKEN)
            identity = fingerprint([contacts, suppressions], {"bench": True})
            for run in ("first import", "the same import again"):
                stack.reset_meter()
                started = time.perf_counter()
                counts = run_import(
                    api,
                    parsed,
                    source="hubspot",
                    results_path=Path(folder) / "results.csv",
                    identity=identity,
                    dry_run=False,
                    enroll=False,
                    out=io.StringIO(),
                    progress_out=io.StringIO(),
                )
                seconds = time.perf_counter() - started
                stack.settle()
                phase = Phase(run, rows, 0, stack.meter(), seconds)
                requests = phase.total("dynamodb")
                say(
                    f"{run}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s; "
                    f"{-(-rows // 500)} API requests; DynamoDB {requests / rows:.2f} calls, "
                    f"{phase.wcu / rows:.2f} WCU and {phase.rcu / rows:.2f} RCU per row"
                )
                say(f"  outcomes: {counts}")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
