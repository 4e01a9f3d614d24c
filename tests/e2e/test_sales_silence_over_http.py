"""Sales talks to an MQL, goes silent, the lead is reactivated, then lost and recycled."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from kindling_ops.config import documents, load
from tests.e2e.conftest import ROOT, WRITE_KEY, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e
HUBSPOT_SECRET = "e2e-hubspot-client-secret-0123"


#: A nurture track with no exit goal at SQL: sales talking must hold it, not end it.
STEADY = {
    "id": "steady-nurture",
    "name": "Steady nurture",
    "trigger": {"new_lead": True},
    "steps": [
        {"id": "first", "send_email": "welcome-1"},
        {"id": "wait-2d", "wait": "2d"},
        {"id": "second", "send_email": "nurture-case-study"},
        {"id": "wait-7d", "wait": "7d"},
        {"id": "third", "send_email": "nurture-roi-guide"},
    ],
}


@pytest.fixture(scope="module")
def crm_stack() -> Iterator[RunningStack]:
    running = start_stack(env={"KINDLING_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET}, shipped_programs=True)
    shipped = documents(load(ROOT / "config"))["programs"]
    programs = {"programs": {**shipped["programs"], "steady-nurture": STEADY}}
    applied = requests.post(f"{running.url}/_local/config", json={"programs": programs}, timeout=30)
    assert applied.status_code == 200, applied.text
    yield running
    assert stop_stack(running) == 0


def stack_now(stack: RunningStack) -> datetime:
    return datetime.fromisoformat(
        requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"].replace("Z", "+00:00")
    )


def clock_to(stack: RunningStack, moment: datetime) -> None:
    response = requests.post(f"{stack.url}/_local/clock", json={"now": moment.isoformat()}, timeout=120)
    assert response.status_code == 200, response.text
    stack.settle(timeout=60)


def hubspot(stack: RunningStack, events: list[dict[str, Any]]) -> requests.Response:
    """POST as HubSpot does, signed with its v3 scheme over the URL it called."""
    body = json.dumps(events).encode()
    timestamp = str(int(stack_now(stack).timestamp() * 1000))
    uri = f"{stack.url}/v1/webhooks/hubspot"
    signed = b"POST" + uri.encode() + body + timestamp.encode()
    signature = base64.b64encode(hmac.new(HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    return requests.post(
        uri,
        data=body,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": timestamp,
        },
    )


def deal_moved(stack: RunningStack, email: str, stage: str) -> dict[str, Any]:
    return {
        "eventId": int(uuid.uuid4().int % 10**9),
        "subscriptionId": 2001,
        "portalId": 62515,
        "appId": 1160452,
        "occurredAt": int(stack_now(stack).timestamp() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 9001,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM",
        "contactEmail": email,
    }


def lead_view(stack: RunningStack, email: str) -> dict[str, Any]:
    return dict(stack.lead_by_email(email).json())


def events(view: dict[str, Any]) -> list[str]:
    return [e["event"] or e["type"] for e in view["timeline"]]


def subjects(stack: RunningStack, email: str) -> list[str]:
    return [
        m["subject"]
        for m in requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
        if email in m["to"]
    ]


def test_sales_silence_reactivates_the_lead_and_closed_lost_recycles_it(crm_stack: RunningStack) -> None:
    stack = crm_stack
    now = stack_now(stack)
    monday = (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).replace(
        hour=14, minute=0, second=0, microsecond=0, tzinfo=UTC
    )
    clock_to(stack, monday)
    email = f"vp-{uuid.uuid4().hex[:6]}@fintech.io"
    auth = (WRITE_KEY, "")
    traits = {
        "email": email,
        "title": "VP Marketing",
        "industry": "Fintech",
        "company_size": 800,
        "first_name": "Ida",
    }
    assert requests.post(
        f"{stack.url}/v1/identify", json={"userId": email, "traits": traits}, auth=auth, timeout=10
    ).ok
    stack.settle()
    for name in ("Demo Requested", "Trial Started"):
        assert requests.post(
            f"{stack.url}/v1/track", json={"userId": email, "event": name}, auth=auth, timeout=10
        ).ok
        stack.settle(timeout=30)
    view = lead_view(stack, email)
    assert view["lead"]["stage"] == "mql"
    welcome_count = len(subjects(stack, email))
    assert welcome_count >= 1  # the welcome series' first email, and the MQL bridge's introduction

    # Day 1: sales books a meeting in HubSpot: the deal moves, marketing goes quiet.
    clock_to(stack, monday + timedelta(days=1))
    assert hubspot(stack, [deal_moved(stack, email, "appointmentscheduled")]).status_code == 200
    stack.settle(timeout=30)
    view = lead_view(stack, email)
    assert view["lead"]["stage"] == "sql" and view["lead"]["quiet"] is True
    assert "Quiet Period Started" in events(view)
    held = requests.get(
        f"{stack.url}/v1/leads/{view['lead']['lead_id']}/enrollments", headers=stack.admin(), timeout=10
    ).json()["enrollments"]
    assert any(e["program"] == "steady-nurture" and e["status"] == "held" for e in held)
    assert any(e["program"] == "welcome-series" and e["status"] == "exited" for e in held), "its goal: SQL"

    # Day 3: the steady nurture's second email was due; it is held, not sent.
    clock_to(stack, monday + timedelta(days=3))
    assert len(subjects(stack, email)) == welcome_count

    # Day 23: 21 days with no CRM activity and no engagement: the daily sweep reactivates.
    clock_to(stack, monday + timedelta(days=23))
    view = lead_view(stack, email)
    assert view["lead"]["quiet"] is False
    assert "Quiet Period Ended" in events(view) and "Reactivated" in events(view)
    notices = requests.get(f"{stack.url}/_local/webhooks", timeout=10).json()["received"]
    assert any("Reactivating" in n["body"] and view["lead"]["lead_id"] in n["body"] for n in notices)
    assert len(subjects(stack, email)) > welcome_count, "the reactivation program's first email went out"
    after_reactivation = len(subjects(stack, email))

    # Day 24: the deal is lost. Day 55: the cooling-off is over and the lead is recycled into nurture.
    clock_to(stack, monday + timedelta(days=24))
    assert hubspot(stack, [deal_moved(stack, email, "closedlost")]).status_code == 200
    stack.settle(timeout=30)
    lost = lead_view(stack, email)
    assert lost["lead"]["stage"] == "closed_lost"
    during = requests.get(
        f"{stack.url}/v1/leads/{lost['lead']['lead_id']}/enrollments", headers=stack.admin(), timeout=10
    ).json()["enrollments"]
    [reactivation] = [e for e in during if e["program"] == "reactivation"]
    assert reactivation["status"] == "exited", "the deal closed: reactivation stops pitching"
    assert reactivation["exit_reason"] == "goal: reached stage closed_lost"
    clock_to(stack, monday + timedelta(days=55))
    view = lead_view(stack, email)
    assert view["lead"]["stage"] == "recycled"
    enrollments = requests.get(
        f"{stack.url}/v1/leads/{view['lead']['lead_id']}/enrollments", headers=stack.admin(), timeout=10
    ).json()["enrollments"]
    assert any(e["program"] == "recycle-nurture" for e in enrollments)
    # Day 55 is a Sunday: the recycle nurture's first email waits for Monday's send window.
    clock_to(stack, monday + timedelta(days=56, hours=1))
    assert len(subjects(stack, email)) > after_reactivation
