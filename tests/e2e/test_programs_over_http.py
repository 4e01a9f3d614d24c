"""A multi-week nurture program on the local stack, driven by the controllable clock."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.conftest import WRITE_KEY, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

JOURNEY = {
    "id": "e2e-journey",
    "name": "Trial journey",
    "trigger": {"event": "Trial Started"},
    "exit_goals": [{"stage_at_least": "sql"}, {"event": "Meeting Booked"}],
    "steps": [
        {"id": "hello", "send_email": "welcome-1"},
        {"id": "wait-2d", "wait": "2d"},
        {
            "id": "engaged",
            "branch": [{"if": {"clicked_email_of_program": True}, "then": "case-study"}],
            "else": "nudge",
        },
        {"id": "nudge", "send_email": "sales-intro", "next": "wait-demo"},
        {"id": "case-study", "send_email": "nurture-case-study"},
        {
            "id": "wait-demo",
            "wait_until": {
                "event": "Demo Requested",
                "timeout": "7d",
                "on_event": "notify",
                "on_timeout": "wait-week",
            },
        },
        {"id": "notify", "notify_sales": "Asked for a demo during the trial"},
        {"id": "wait-week", "wait": "7d"},
        {"id": "last", "send_email": "sales-intro"},
    ],
}


@pytest.fixture(scope="module")
def journey_stack() -> Iterator[RunningStack]:
    running = start_stack()
    programs = {"programs": {"programs": {"e2e-journey": JOURNEY}}}
    applied = requests.post(f"{running.url}/_local/config", json=programs, timeout=30)
    assert applied.status_code == 200, applied.text
    yield running
    assert stop_stack(running) == 0


def clock_to(stack: RunningStack, moment: datetime) -> None:
    response = requests.post(f"{stack.url}/_local/clock", json={"now": moment.isoformat()}, timeout=120)
    assert response.status_code == 200, response.text
    stack.settle(timeout=60)


def track(stack: RunningStack, user: str, event: str) -> None:
    body = {"userId": user, "event": event}
    assert requests.post(f"{stack.url}/v1/track", json=body, auth=(WRITE_KEY, ""), timeout=10).ok


def enrollment(stack: RunningStack, lead_id: str) -> dict[str, Any]:
    response = requests.get(f"{stack.url}/v1/leads/{lead_id}/enrollments", headers=stack.admin(), timeout=10)
    assert response.status_code == 200, response.text
    [journey] = [e for e in response.json()["enrollments"] if e["program"] == "e2e-journey"]
    return dict(journey)


def sent_templates(stack: RunningStack, email: str) -> list[str]:
    messages = requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
    return [m["subject"] for m in messages if email in m["to"]]


def steps_run(journey: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(h["step"], h["what"]) for h in journey["history"]]


def branch_taken(journey: dict[str, Any]) -> str:
    taken = [h["to"] for h in journey["history"] if h["what"] == "branched"]
    assert len(taken) == 1, f"branched {len(taken)} times: {steps_run(journey)}"
    return str(taken[0])


def test_a_multi_week_program_runs_every_step_once_at_its_time(journey_stack: RunningStack) -> None:
    stack = journey_stack
    now = datetime.fromisoformat(
        requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"].replace("Z", "+00:00")
    )
    monday = (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).replace(
        hour=14, minute=0, second=0, microsecond=0, tzinfo=UTC
    )
    clock_to(stack, monday)
    leads = {}
    for name in ("clicker", "quiet", "booker"):
        email = f"{name}-{uuid.uuid4().hex[:6]}@acme.io"
        body = {"userId": email, "traits": {"email": email, "first_name": name.title()}}
        assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok
        stack.settle()
        track(stack, email, "Trial Started")
        leads[name] = email
    stack.settle(timeout=30)
    ids = {name: stack.lead_by_email(email).json()["lead"]["lead_id"] for name, email in leads.items()}

    # Day 0: everyone got the welcome email, once, and waits two days.
    for name in leads:
        assert len(sent_templates(stack, leads[name])) == 1, name
        journey = enrollment(stack, ids[name])
        assert journey["current_step"]["id"] == "wait-2d" and journey["status"] == "active"
    # The clicker clicks the welcome email's first tracked link.
    welcome = next(
        m
        for m in requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
        if leads["clicker"] in m["to"]
    )
    link = re.search(r'href="(http://127\.0\.0\.1:\d+/v1/c/[^"]+)"', welcome["html"])
    assert link is not None
    assert requests.get(link.group(1), allow_redirects=False, timeout=10).status_code == 302
    # Day 1: the booker books a meeting mid-wait: the exit goal takes it out at once.
    clock_to(stack, monday + timedelta(days=1))
    track(stack, leads["booker"], "Meeting Booked")
    stack.settle()
    booker = enrollment(stack, ids["booker"])
    assert booker["status"] == "exited" and "Meeting Booked" in booker["exit_reason"]

    # Day 2: the wait ends; the branch goes both ways.
    clock_to(stack, monday + timedelta(days=2, minutes=1))
    clicker, quiet = enrollment(stack, ids["clicker"]), enrollment(stack, ids["quiet"])
    assert branch_taken(clicker) == "case-study"
    assert branch_taken(quiet) == "nudge"
    assert clicker["status"] == quiet["status"] == "waiting"

    # Day 3: the clicker asks for a demo: its wait-until fires; the quiet lead's keeps waiting.
    clock_to(stack, monday + timedelta(days=3))
    track(stack, leads["clicker"], "Demo Requested")
    stack.settle(timeout=30)
    clicker = enrollment(stack, ids["clicker"])
    assert ("notify", "sales notified") in steps_run(clicker)
    assert clicker["current_step"]["id"] == "wait-week"

    # Day 9: the quiet lead's wait-until times out.
    clock_to(stack, monday + timedelta(days=9, minutes=5))
    quiet = enrollment(stack, ids["quiet"])
    assert ("wait-demo", "timed out") in steps_run(quiet) and quiet["current_step"]["id"] == "wait-week"

    # Day 17: both finish; nothing ran twice and the booker got nothing after leaving.
    clock_to(stack, monday + timedelta(days=17))
    for name in ("clicker", "quiet"):
        journey = enrollment(stack, ids[name])
        assert journey["status"] == "completed", name
        ran = [
            step
            for step, what in steps_run(journey)
            if what in ("email queued", "branched", "sales notified")
        ]
        assert len(ran) == len(set(ran)), f"{name}: a step ran twice: {ran}"
    assert len(sent_templates(stack, leads["clicker"])) == 3  # welcome, case study, last
    assert len(sent_templates(stack, leads["quiet"])) == 3  # welcome, nudge, last
    assert len(sent_templates(stack, leads["booker"])) == 1
    waits = {h["step"]: h["at"] for h in enrollment(stack, ids["quiet"])["history"] if h["what"] == "waited"}
    assert waits["wait-2d"].startswith((monday + timedelta(days=2)).date().isoformat())


def test_a_paused_program_holds_its_enrollments_and_resume_carries_on(journey_stack: RunningStack) -> None:
    import subprocess
    import sys

    from tests.e2e.conftest import ROOT

    stack = journey_stack
    port = stack.url.rsplit(":", 1)[1]

    def kindling(action: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "kindling_ops.cli",
                "programs",
                action,
                "e2e-journey",
                "--local",
                "--port",
                port,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    email = f"paused-{uuid.uuid4().hex[:6]}@acme.io"
    body = {"userId": email, "traits": {"email": email, "first_name": "Pat"}}
    assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok
    stack.settle()
    track(stack, email, "Trial Started")
    stack.settle(timeout=30)
    lead_id = stack.lead_by_email(email).json()["lead"]["lead_id"]
    assert enrollment(stack, lead_id)["current_step"]["id"] == "wait-2d"
    now = datetime.fromisoformat(
        requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"].replace("Z", "+00:00")
    )
    assert "paused" in kindling("pause")
    clock_to(stack, now + timedelta(days=3))
    held = enrollment(stack, lead_id)
    assert held["status"] == "held" and held["hold_reason"] == "program paused"
    assert held["current_step"]["id"] == "wait-2d", "held where it was"
    assert "1 held enrollment" in kindling("resume")
    clock_to(stack, now + timedelta(days=3, minutes=2))  # the next tick runs what resumed
    resumed = enrollment(stack, lead_id)
    assert ("engaged", "branched") in steps_run(resumed)
    # On at its next email: out (waiting for a demo), or deferred to the send window and saying until when.
    assert resumed["status"] in ("waiting", "sending"), resumed
    if resumed["status"] == "sending":
        assert resumed["email"]["status"] == "deferred" and resumed["next_due"]["at"]
