"""The local stack moves time as the minute tick would in AWS, and SES tells what became of each email."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    METRICS_WAIT,
    WRITE_KEY,
    RunningStack,
    start_stack,
    stop_stack,
)

pytestmark = pytest.mark.e2e

NEW_YORK = ZoneInfo("America/New_York")
#: A Sunday, 01:00 UTC (Saturday evening in New York): far outside the weekday send window.
SUNDAY_1AM_UTC = datetime(2027, 1, 10, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sunday_stack() -> Iterator[RunningStack]:
    running = start_stack(start_at=SUNDAY_1AM_UTC, shipped_programs=True)
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


def identify(stack: RunningStack, user_id: str, email: str) -> None:
    body = {
        "userId": user_id,
        "traits": {"email": email, "first_name": "Ada", "timezone": "America/New_York"},
    }
    assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok


def outbox(stack: RunningStack, email: str) -> list[dict[str, Any]]:
    messages = requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
    return [m for m in messages if email in m["to"]]


def test_a_jump_over_the_weekend_delivers_at_monday_8am_new_york_as_the_minute_tick_would(
    sunday_stack: RunningStack,
) -> None:
    identify(sunday_stack, "u-weekend", "weekend@acme.example")
    sunday_stack.settle()
    assert outbox(sunday_stack, "weekend@acme.example") == [], "Sunday is outside the send window"
    clock = sunday_stack.advance(2 * 86400)
    assert clock["now"].startswith("2027-01-12T01:00")
    [welcome] = [m for m in outbox(sunday_stack, "weekend@acme.example") if m["template"] == "welcome-1"]
    sent = datetime.fromisoformat(welcome["sent_at"].replace("Z", "+00:00")).astimezone(NEW_YORK)
    monday_8am = datetime(2027, 1, 11, 8, 0, tzinfo=NEW_YORK)
    assert monday_8am <= sent < monday_8am + timedelta(minutes=5)
    assert abs(parsedate_to_datetime(welcome["headers"]["Date"]) - sent) < timedelta(seconds=2)
    assert (welcome["program"], welcome["step"]) == ("welcome-series", "send-welcome")
    assert welcome["send_id"] and welcome["lead_id"]


def test_ses_reports_deliveries_and_the_simulators_bounce_which_suppresses_the_address(
    sunday_stack: RunningStack,
) -> None:
    identify(sunday_stack, "u-bounce", "bounce@simulator.amazonses.com")
    sunday_stack.settle()
    now = datetime.fromisoformat(requests.get(f"{sunday_stack.url}/_local/clock", timeout=10).json()["now"])
    weekday_noon = (now + timedelta(days=1)).astimezone(NEW_YORK).replace(hour=12, minute=0)
    while weekday_noon.weekday() >= 5:
        weekday_noon += timedelta(days=1)
    response = requests.post(
        f"{sunday_stack.url}/_local/clock", json={"now": weekday_noon.isoformat()}, timeout=120
    )
    assert response.ok, response.text
    sunday_stack.settle()
    assert [m["template"] for m in outbox(sunday_stack, "bounce@simulator.amazonses.com")][:1] == [
        "welcome-1"
    ]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    lead = requests.get(
        f"{sunday_stack.url}/v1/leads",
        params={"email": "bounce@simulator.amazonses.com"},
        headers=admin,
        timeout=10,
    ).json()
    events = [entry["event"] for entry in lead["timeline"]]
    assert "Email Bounced" in events
    # The reports count what the metrics fold has folded: wait for it, as a user would.
    sunday_stack.advance(METRICS_WAIT.total_seconds())
    report = requests.get(
        f"{sunday_stack.url}/v1/reports/emails",
        params={"from": "2027-01-09", "to": "2027-01-20"},
        headers=admin,
        timeout=10,
    ).json()
    assert report["totals"]["delivered"] >= 1 and report["totals"]["bounced"]["permanent"] == 1


def test_an_anonymous_first_visitor_enters_the_welcome_series_on_the_day_they_identify(
    sunday_stack: RunningStack,
) -> None:
    # The usual B2B path: a few anonymous visits, then a form days later.
    auth, anonymous_id = (WRITE_KEY, ""), "anon-first-visitor"
    email = "anonymous.first@acme.example"
    for path in ("/blog/attribution", "/pricing"):
        page = {"anonymousId": anonymous_id, "name": path, "properties": {"path": path}}
        assert requests.post(f"{sunday_stack.url}/v1/page", json=page, auth=auth, timeout=10).ok
    sunday_stack.settle()
    now = datetime.fromisoformat(requests.get(f"{sunday_stack.url}/_local/clock", timeout=10).json()["now"])
    tuesday = (
        (now + timedelta(days=2)).astimezone(NEW_YORK).replace(hour=10, minute=0, second=0, microsecond=0)
    )
    while tuesday.weekday() != 1:
        tuesday += timedelta(days=1)
    moved = requests.post(f"{sunday_stack.url}/_local/clock", json={"now": tuesday.isoformat()}, timeout=120)
    assert moved.ok, moved.text
    form = {"anonymousId": anonymous_id, "traits": {"email": email, "timezone": "America/New_York"}}
    assert requests.post(f"{sunday_stack.url}/v1/identify", json=form, auth=auth, timeout=10).ok
    sunday_stack.settle()
    sunday_stack.advance(15 * 60)
    [welcome] = [m for m in outbox(sunday_stack, email) if m["template"] == "welcome-1"]
    sent = datetime.fromisoformat(welcome["sent_at"].replace("Z", "+00:00")).astimezone(NEW_YORK)
    assert tuesday <= sent < tuesday + timedelta(minutes=15), "the same day, in the send window"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    lead = requests.get(
        f"{sunday_stack.url}/v1/leads", params={"email": email}, headers=admin, timeout=10
    ).json()
    pages = [entry["name"] for entry in lead["timeline"] if entry["type"] == "page"]
    assert sorted(pages) == ["/blog/attribution", "/pricing"], "the earlier visits are on the lead"
