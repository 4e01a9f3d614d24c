"""A marketer sends an email; the recipient opens, clicks and unsubscribes with one click."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.conftest import WRITE_KEY, RunningStack, start_stack, stop_stack, weekday_morning

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mail_stack() -> Iterator[RunningStack]:
    """A stack of its own: these tests move the clock by days."""
    running = start_stack(start_at=weekday_morning(datetime.now(UTC)))
    yield running
    assert stop_stack(running) == 0


def new_lead(stack: RunningStack, **traits: Any) -> str:
    email = f"reader-{uuid.uuid4().hex[:8]}@acme.io"
    body = {"userId": email, "traits": {"email": email, "first_name": "Lin", "company": "Globex", **traits}}
    assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok
    stack.settle()
    return email


def send(stack: RunningStack, email: str, template: str = "welcome-1") -> dict[str, Any]:
    response = requests.post(
        f"{stack.url}/v1/emails",
        json={"email": email, "template": template},
        headers=stack.admin(),
        timeout=10,
    )
    assert response.status_code == 202, response.text
    stack.settle()
    return dict(response.json())


def outbox(stack: RunningStack, email: str) -> list[dict[str, Any]]:
    messages = requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
    return [m for m in messages if email in m["to"]]


def lead(stack: RunningStack, email: str) -> dict[str, Any]:
    return dict(stack.lead_by_email(email).json())


def move_clock_to(stack: RunningStack, moment: datetime) -> None:
    response = requests.post(f"{stack.url}/_local/clock", json={"now": moment.isoformat()}, timeout=60)
    assert response.status_code == 200, response.text


def test_a_sent_email_carries_one_click_unsubscribe_and_honours_it_at_once(mail_stack: RunningStack) -> None:
    address = new_lead(mail_stack)
    send(mail_stack, address)
    [message] = outbox(mail_stack, address)
    assert message["subject"] == "Welcome to Acme, Lin"
    assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = re.fullmatch(r"<(.+)>", message["headers"]["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert "Unsubscribe" in message["html"] and "500 Market Street" in message["text"]

    page = requests.get(unsubscribe_url, timeout=10)
    assert page.status_code == 200 and "<form method=post" in page.text
    assert lead(mail_stack, address)["lead"]["unsubscribed"] is False, "a GET alone never unsubscribes"

    forged = unsubscribe_url[:-3] + ("AAA" if not unsubscribe_url.endswith("AAA") else "BBB")
    refused = requests.post(
        forged,
        data="List-Unsubscribe=One-Click",
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 400
    assert lead(mail_stack, address)["lead"]["unsubscribed"] is False

    done = requests.post(
        unsubscribe_url,
        data="List-Unsubscribe=One-Click",
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert lead(mail_stack, address)["lead"]["unsubscribed"] is True

    send(mail_stack, address)
    assert len(outbox(mail_stack, address)) == 1
    timeline = lead(mail_stack, address)["timeline"]
    skipped = [e for e in timeline if e["event"] == "Email Skipped"]
    assert skipped and skipped[0]["properties"]["reason"] == "unsubscribed"


def test_clicks_redirect_only_to_the_emails_own_links_and_land_on_the_timeline(
    mail_stack: RunningStack,
) -> None:
    address = new_lead(mail_stack)
    send(mail_stack, address, "nurture-case-study")
    [message] = outbox(mail_stack, address)
    tracked = re.findall(r'href="(http://127\.0\.0\.1:\d+/v1/c/[^"]+)"', message["html"])
    assert tracked, "links are tracked"
    hop = requests.get(tracked[0], allow_redirects=False, timeout=10)
    assert hop.status_code == 302 and hop.headers["Location"].startswith("https://acme.example/")
    tampered = requests.get(tracked[0][:-2] + "xx", allow_redirects=False, timeout=10)
    assert tampered.status_code == 400 and "Location" not in tampered.headers
    pixel = re.search(r'src="(http://127\.0\.0\.1:\d+/v1/o/[^"]+)"', message["html"])
    assert pixel is not None
    opened = requests.get(pixel.group(1), timeout=10)
    assert opened.status_code == 200 and opened.content.startswith(b"GIF89a")
    mail_stack.settle()
    events = [e["event"] for e in lead(mail_stack, address)["timeline"]]
    assert "Email Clicked" in events and "Email Opened" in events and "Email Sent" in events


def test_a_send_outside_the_window_goes_out_at_the_next_opening(mail_stack: RunningStack) -> None:
    now = datetime.fromisoformat(
        requests.get(f"{mail_stack.url}/_local/clock", timeout=10).json()["now"].replace("Z", "+00:00")
    )
    saturday = (now + timedelta(days=(5 - now.weekday()) % 7 or 7)).replace(
        hour=12, minute=0, second=0, microsecond=0, tzinfo=UTC
    )
    move_clock_to(mail_stack, saturday)
    address = new_lead(mail_stack)  # no timezone: the default, America/New_York
    send(mail_stack, address)
    assert outbox(mail_stack, address) == []
    deferred = [e for e in lead(mail_stack, address)["timeline"] if e["event"] == "Email Deferred"]
    assert deferred and deferred[0]["properties"]["reason"] == "outside_send_window"
    monday_8am_new_york = saturday + timedelta(days=2, hours=1)  # 13:00 UTC
    move_clock_to(mail_stack, monday_8am_new_york + timedelta(minutes=1))
    mail_stack.settle()
    assert len(outbox(mail_stack, address)) == 1


def test_sending_needs_a_known_lead_and_template(mail_stack: RunningStack) -> None:
    for body, status in (
        ({"email": "nobody@acme.io", "template": "welcome-1"}, 404),
        ({"email": "x@acme.io", "template": "no-such-template"}, 400),
        ({"template": "welcome-1"}, 400),
    ):
        response = requests.post(
            f"{mail_stack.url}/v1/emails", json=body, headers=mail_stack.admin(), timeout=10
        )
        assert response.status_code == status, (body, response.text)
