"""``kindling demo`` on a fresh stack with the shipped programs: what a new user sees at the end."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from typing import Any

import pytest
import requests

from kindling_ops.demo import make_leads
from tests.e2e.conftest import ADMIN_TOKEN, ROOT, WRITE_KEY, start_stack, stop_stack

pytestmark = pytest.mark.e2e
LEADS, WEEKS, SEED = 15, 1, 7


def test_the_demo_makes_leads_emails_engagement_and_prints_the_reports() -> None:
    stack = start_stack(shipped_programs=True)
    try:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "kindling_ops.cli", "demo", "--url", stack.url),
                *("--leads", str(LEADS), "--weeks", str(WEEKS), "--seed", str(SEED)),
                *("--write-key", WRITE_KEY, "--token", ADMIN_TOKEN),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        span = re.search(r"\((\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)\)", out)
        assert span is not None, out
        assert "Funnel" in out and "Emails" in out and f"{stack.url}/v1/reports" in out
        done = re.search(rf"Done: {LEADS} visitors .* ([\d,]+) emails sent, (\d+) opened, (\d+) clicked", out)
        assert done is not None, out
        sent, opened, clicked = (int(n.replace(",", "")) for n in done.groups())

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        people = make_leads(random.Random(f"{SEED}:leads"), LEADS, WEEKS * 7)
        known = [p for p in people if p.forms]
        for person in known[:3]:
            found = requests.get(
                f"{stack.url}/v1/leads", params={"email": person.email}, headers=admin, timeout=10
            )
            assert found.status_code == 200, person.email
            assert found.json()["lead"]["stage"] is not None

        dates = {"from": span.group(1), "to": span.group(2)}
        funnel = requests.get(
            f"{stack.url}/v1/reports/funnel", params=dates, headers=admin, timeout=30
        ).json()
        entered = {s["stage"]: s["entered"] for s in funnel["groups"][0]["stages"]}
        assert entered["subscriber"] >= len(known) // 2 and entered["lead"] > 0, entered

        emails = requests.get(
            f"{stack.url}/v1/reports/emails", params=dates, headers=admin, timeout=30
        ).json()
        rows = emails["rows"]
        assert sum(r["sent"] for r in rows) == sent > 0
        assert any(r["program"] == "welcome-series" and r["sent"] for r in rows)
        assert opened + clicked > 0, "recipients opened or clicked some of them"
        assert sum(r["opened_unique"] for r in rows) == opened
        assert sum(r["clicked_unique"] for r in rows) == clicked

        program = requests.get(
            f"{stack.url}/v1/reports/programs/welcome-series", params=dates, headers=admin, timeout=30
        )
        assert program.status_code == 200, program.text
        welcome_sent = sum(r["sent"] for r in rows if r["program"] == "welcome-series")
        assert program.json()["totals"]["sent"] == welcome_sent

        # Rebuilding every metric from the logged events gives the same reports. The stack's clock
        # runs on after the demo, so a step may fall due meanwhile and count a send: compare in a
        # quiet moment (settled before and after; tried again when something came in between).
        port = stack.url.rsplit(":", 1)[1]

        def reports() -> dict[str, Any]:
            stack.settle(timeout=60)
            return {
                name: requests.get(
                    f"{stack.url}/v1/reports/{name}", params=dates, headers=admin, timeout=30
                ).json()
                for name in ("emails", "funnel")
            }

        differences: list[str] = []
        for attempt in range(3):
            before = reports()
            rebuild = subprocess.run(
                [sys.executable, "-m", "kindling_ops.cli", "metrics", "rebuild", "--local", "--port", port],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
            assert rebuild.stdout.startswith(f"metrics generation {attempt + 1}:"), rebuild.stdout
            again = reports()
            differences = [name for name in before if again[name] != before[name]]
            if not differences:
                break
        assert not differences, f"the rebuilt {differences} differ from the live ones"
    finally:
        assert stop_stack(stack) == 0
