"""Nurture timing end to end with the shipped programs: send windows, waits from the actual send, the sale.

The stack starts on a Friday at 20:00 in New York, outside the weekday 08:00-18:00 send window,
and moves time as the minute tick would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.e2e.conftest import WRITE_KEY, RunningStack, start_stack, stop_stack
from tests.hubspot_fake import TOKEN, FakeHubspot

pytestmark = pytest.mark.e2e

NEW_YORK = ZoneInfo("America/New_York")
FRIDAY_8PM_NEW_YORK = datetime(2027, 1, 15, 20, 0, tzinfo=NEW_YORK)
#: The local stack's HubSpot app secret when none is configured.
HUBSPOT_SECRET = "dev-hubspot-client-secret-change-me"


@pytest.fixture(scope="module")
def hubspot_api() -> Iterator[FakeHubspot]:
    fake = FakeHubspot()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def friday_stack(hubspot_api: FakeHubspot) -> Iterator[RunningStack]:
    env = {"KINDLING_HUBSPOT_ACCESS_TOKEN": TOKEN, "KINDLING_HUBSPOT_API_URL": hubspot_api.url}
    running = start_stack(start_at=FRIDAY_8PM_NEW_YORK.astimezone(UTC), shipped_programs=True, env=env)
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


def now_of(stack: RunningStack) -> datetime:
    return datetime.fromisoformat(
        requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"].replace("Z", "+00:00")
    )


def clock_to(stack: RunningStack, moment: datetime) -> None:
    moved = requests.post(f"{stack.url}/_local/clock", json={"now": moment.isoformat()}, timeout=300)
    assert moved.status_code == 200, moved.text
    stack.settle(timeout=60)


def emails_to(stack: RunningStack, email: str) -> list[dict[str, Any]]:
    messages = requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
    found = [m for m in messages if email in m["to"]]
    for message in found:
        message["sent"] = datetime.fromisoformat(message["sent_at"].replace("Z", "+00:00")).astimezone(
            NEW_YORK
        )
    return sorted(found, key=lambda m: m["sent"])


def identify(stack: RunningStack, email: str, **traits: Any) -> None:
    body = {"userId": email, "traits": {"email": email, "timezone": "America/New_York", **traits}}
    assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok
    stack.settle()


def enrollments(stack: RunningStack, email: str) -> list[dict[str, Any]]:
    lead_id = stack.lead_by_email(email).json()["lead"]["lead_id"]
    response = requests.get(f"{stack.url}/v1/leads/{lead_id}/enrollments", headers=stack.admin(), timeout=10)
    return list(response.json()["enrollments"])


def test_a_friday_evening_lead_gets_welcome_1_monday_morning_and_the_next_email_two_days_after_it(
    friday_stack: RunningStack,
) -> None:
    stack, email = friday_stack, "friday.evening@acme.example"
    identify(stack, email, first_name="Fay")
    [welcome] = [e for e in enrollments(stack, email) if e["program"] == "welcome-series"]
    monday_8am = datetime(2027, 1, 18, 8, 0, tzinfo=NEW_YORK)
    assert welcome["status"] == "sending" and welcome["current_step"]["id"] == "send-welcome"
    assert welcome["email"]["status"] == "deferred", "outside the send window: it waits at its step"
    until = datetime.fromisoformat(welcome["email"]["deferred_until"])
    assert monday_8am <= until < monday_8am + timedelta(minutes=5)

    clock_to(stack, monday_8am + timedelta(minutes=10))
    [first] = emails_to(stack, email)
    assert first["template"] == "welcome-1"
    assert monday_8am <= first["sent"] < monday_8am + timedelta(minutes=5)

    wednesday_8am = monday_8am + timedelta(days=2)
    clock_to(stack, wednesday_8am - timedelta(minutes=5))
    assert len(emails_to(stack, email)) == 1, "the wait counts from Monday's send, not from Friday"
    clock_to(stack, wednesday_8am + timedelta(minutes=10))
    first_again, second = emails_to(stack, email)
    assert second["program"] == "welcome-series" and second["template"] in ("welcome-2", "nurture-case-study")
    assert second["sent"] >= first_again["sent"] + timedelta(days=2) >= wednesday_8am


def hubspot_deal_moved(
    stack: RunningStack, email: str | None, stage: str, deal_id: int | None = None
) -> requests.Response:
    """A HubSpot deal-stage webhook, signed with HubSpot's v3 scheme over the URL it called."""
    occurred = int(now_of(stack).timestamp() * 1000)
    event = {
        "eventId": int(uuid.uuid4().int % 10**9),
        "subscriptionId": 2001,
        "portalId": 62515,
        "appId": 1160452,
        "occurredAt": occurred,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": deal_id or int(uuid.uuid4().int % 10**8),  # each test's own deal
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM",
        **({"contactEmail": email} if email else {}),
    }
    body = json.dumps([event]).encode()
    uri = f"{stack.url}/v1/webhooks/hubspot"
    signed = b"POST" + uri.encode() + body + str(occurred).encode()
    signature = base64.b64encode(hmac.new(HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": str(occurred),
    }
    return requests.post(uri, data=body, timeout=10, headers=headers)


def test_a_lead_whose_deal_closes_won_gets_onboarding_and_no_nurture_after_that_moment(
    friday_stack: RunningStack,
) -> None:
    stack, email = friday_stack, f"buyer-{uuid.uuid4().hex[:6]}@fintech.io"
    tuesday_10am = max(now_of(stack).astimezone(NEW_YORK), datetime(2027, 1, 20, 0, 0, tzinfo=NEW_YORK))
    while tuesday_10am.weekday() != 1:
        tuesday_10am += timedelta(days=1)
    clock_to(stack, tuesday_10am.replace(hour=10, minute=0, second=0, microsecond=0))
    identify(stack, email, first_name="Ida", title="VP Marketing", industry="Fintech", company_size=800)
    for name in ("Demo Requested", "Trial Started"):
        track = {"userId": email, "event": name}
        assert requests.post(f"{stack.url}/v1/track", json=track, auth=(WRITE_KEY, ""), timeout=10).ok
        stack.settle(timeout=30)
    before = {m["program"] for m in emails_to(stack, email)}
    assert "welcome-series" in before, "a nurtured lead"

    clock_to(stack, now_of(stack) + timedelta(hours=2))
    assert hubspot_deal_moved(stack, email, "closedwon").status_code == 200
    stack.settle(timeout=30)
    won_at = now_of(stack).astimezone(NEW_YORK)
    assert stack.lead_by_email(email).json()["lead"]["stage"] == "customer"

    clock_to(stack, won_at + timedelta(days=12))
    after = [m for m in emails_to(stack, email) if m["sent"] >= won_at]
    assert after, "onboarding started"
    assert after[0]["program"] == "customer-onboarding"
    assert {m["program"] for m in after} == {"customer-onboarding"}, "no nurture or reactivation email"
    ended = {e["program"]: e for e in enrollments(stack, email)}
    assert ended["welcome-series"]["status"] == "exited"


def test_a_deal_for_someone_not_yet_known_is_listed_then_applied_when_they_fill_a_form(
    friday_stack: RunningStack,
) -> None:
    import os
    import subprocess
    import sys

    from tests.e2e.conftest import ADMIN_TOKEN, ROOT

    stack, email = friday_stack, f"early-{uuid.uuid4().hex[:6]}@bank.example"
    assert hubspot_deal_moved(stack, email, "presentationscheduled").status_code == 200
    stack.settle(timeout=30)
    assert stack.lead_by_email(email).status_code == 404
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "kindling_ops.cli",
            "crm",
            "unmatched",
            "--local",
            "--port",
            stack.url.rsplit(":", 1)[1],
        ],
        cwd=ROOT,
        env={**os.environ, "KINDLING_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if email in line]
    assert "hubspot" in row and "opportunity" in row and "crm.deal_stage_changed" in row

    identify(stack, email, first_name="Eli")
    stack.settle(timeout=30)
    lead = stack.lead_by_email(email).json()["lead"]
    assert lead["stage"] == "opportunity" and lead["quiet"] is True, "the deal applied to the new lead"
    page = requests.get(f"{stack.url}/v1/crm/unmatched", headers=stack.admin(), timeout=10).json()
    assert all(e["email"] != email for e in page["unmatched"])


def test_a_hubspot_deal_naming_only_its_id_moves_the_leads_of_its_contacts(
    friday_stack: RunningStack, hubspot_api: FakeHubspot
) -> None:
    stack = friday_stack
    buyer, champion = (f"{who}-{uuid.uuid4().hex[:6]}@retail.example" for who in ("buyer", "champion"))
    for email in (buyer, champion):
        identify(stack, email, first_name="Lee")
    hubspot_api.contacts.update({"8101": buyer, "8102": champion})
    hubspot_api.deals["77001"] = ("presentationscheduled", ["8101", "8102"])
    assert hubspot_deal_moved(stack, None, "presentationscheduled", deal_id=77001).status_code == 200
    stack.settle(timeout=30)
    for email in (buyer, champion):
        lead = stack.lead_by_email(email).json()["lead"]
        assert (lead["stage"], lead["quiet"]) == ("opportunity", True), email
    assert ("GET", "/crm/v4/objects/deals/77001/associations/contacts") in hubspot_api.requests
