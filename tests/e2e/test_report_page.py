"""A marketer opens the reports page in a real browser and sees what the report API returns."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    DESKTOP_CHROME,
    METRICS_WAIT,
    ROOT,
    WRITE_KEY,
    RunningStack,
    start_stack,
    stop_stack,
    weekday_morning,
)

pytestmark = pytest.mark.e2e

#: Where the page's screenshot is kept after the run (besides the test's tmp_path).
ARTEFACTS = Path(os.environ.get("KINDLING_E2E_ARTEFACTS", ROOT / ".pytest_cache"))


@pytest.fixture(scope="module")
def report_stack() -> Iterator[RunningStack]:
    """A stack of its own, so the reports hold this module's traffic only."""
    running = start_stack(start_at=weekday_morning(datetime.now(UTC)))
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


def post(stack: RunningStack, path: str, body: dict[str, Any]) -> None:
    response = requests.post(f"{stack.url}/v1/{path}", json=body, auth=(WRITE_KEY, ""), timeout=10)
    assert response.status_code == 200, response.text


def traffic(stack: RunningStack) -> None:
    """Three leads in two industries, one of them an MQL, and two welcome emails sent."""
    emails = []
    for title, industry in (("CMO", "Fintech"), ("Analyst", "Retail"), ("Engineer", "Fintech")):
        user, email = f"u-{uuid.uuid4().hex[:8]}", f"lead-{uuid.uuid4().hex[:6]}@acme.io"
        traits = {"email": email, "title": title, "industry": industry, "first_name": "Ada"}
        post(stack, "identify", {"userId": user, "traits": traits})
        emails.append((user, email))
    stack.settle()
    mql_user, _ = emails[0]
    post(
        stack, "page", {"userId": mql_user, "name": "Pricing", "properties": {"url": "https://x.io/pricing"}}
    )
    post(stack, "track", {"userId": mql_user, "event": "Demo Requested"})
    stack.settle()
    post(stack, "track", {"userId": mql_user, "event": "Webinar Registered"})
    stack.settle(timeout=30)
    for _, email in emails[:2]:
        response = requests.post(
            f"{stack.url}/v1/emails",
            json={"email": email, "template": "welcome-1"},
            headers=stack.admin(),
            timeout=10,
        )
        assert response.status_code == 202, response.text
    stack.settle(timeout=30)
    # The reports count what the metrics fold has folded: wait for it, as a marketer would.
    stack.advance(METRICS_WAIT.total_seconds())


def report(stack: RunningStack, name: str, **params: str) -> dict[str, Any]:
    response = requests.get(
        f"{stack.url}/v1/reports/{name}", params=params, headers=stack.admin(), timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_page_is_public_html_without_data_under_a_strict_policy(report_stack: RunningStack) -> None:
    response = requests.get(f"{report_stack.url}/v1/reports", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert (
        "default-src 'self'" in policy and "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy
    )
    assert ADMIN_TOKEN not in response.text
    assert f'<body data-today="{stack_today(report_stack)}">' in response.text


def stack_today(stack: RunningStack) -> str:
    """The day the stack's clock is on (days ahead of the browser's when a test has moved it)."""
    return str(requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"][:10])


def sign_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.body.dataset.loaded")


def test_a_marketer_sees_the_funnel_and_the_emails_the_api_reports(
    report_stack: RunningStack, browser: Browser, tmp_path: Path
) -> None:
    traffic(report_stack)
    context = browser.new_context(user_agent=DESKTOP_CHROME, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    refused: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    try:
        page.goto(f"{report_stack.url}/v1/reports")
        assert page.is_visible("#login") and not page.is_visible("#funnel-section")

        sign_in(page, "not-the-token-at-all")
        assert page.is_visible("#login") and "refused" in page.inner_text("#status")
        # The browser logs each refused request itself (the page asks for the funnel and the
        # emails at once, so two), when it gets to it: wait for one line per refused request (at
        # most 20 s), then forget them, so that none can land among the later checks.
        for _ in range(200):
            if len(refused) >= 2 and sum("401" in problem for problem in problems) >= 2:
                break
            page.wait_for_timeout(100)
        assert len(refused) == 2 and sum("401" in problem for problem in problems) == 2, (problems, refused)
        problems.clear()

        sign_in(page, ADMIN_TOKEN)
        assert page.evaluate("() => document.body.dataset.loaded") == "true", page.inner_text("#status")
        assert ADMIN_TOKEN not in page.url
        first, last = page.input_value("#from"), page.input_value("#to")
        assert last == stack_today(report_stack), "the range ends on the service's today"

        funnel = report(report_stack, "funnel", **{"from": first, "to": last})
        [overall] = funnel["groups"]
        shown = page.eval_on_selector_all(
            ".bar", "bars => bars.map(b => [b.dataset.stage, Number(b.dataset.entered)])"
        )
        assert shown == [[s["stage"], s["entered"]] for s in overall["stages"]]
        assert dict(shown)["mql"] >= 1

        emails = report(report_stack, "emails", **{"from": first, "to": last})
        assert emails["rows"], "the two welcome emails are reported"
        sent = page.eval_on_selector_all(
            "#email-table tbody tr",
            "rows => rows.map(r => [r.dataset.template,"
            " Number(r.querySelector('[data-field=sent]').dataset.value)])",
        )
        assert sent == [[r["template"], r["sent"]] for r in emails["rows"]]
        assert sum(n for _, n in sent) >= 2

        # The trend lines add up to the report's daily series.
        lines = page.eval_on_selector_all(
            "#email-trend polyline", "lines => lines.map(l => [l.dataset.series, Number(l.dataset.total)])"
        )
        assert (
            dict(lines)["sent"]
            == emails["totals"]["sent"]
            == sum(d["sent"] for d in emails["totals"]["daily"])
        )
        assert dict(lines)["opened_unique"] == emails["totals"]["opened_unique"]
        stage_lines = dict(
            page.eval_on_selector_all(
                "#stage-trend polyline",
                "lines => lines.map(l => [l.dataset.series, Number(l.dataset.total)])",
            )
        )
        entered = {s["stage"]: s["entered"] for s in overall["stages"]}
        assert stage_lines["mql"] == entered["mql"] >= 1 and stage_lines["lead"] == entered["lead"]

        page.select_option("#by", "industry")
        page.wait_for_function(
            "() => document.body.dataset.loaded === 'true' && document.querySelector('#funnel h3')"
        )
        by_industry = report(report_stack, "funnel", **{"from": first, "to": last, "by": "industry"})
        groups = page.eval_on_selector_all(".group", "groups => groups.map(g => g.dataset.group)")
        assert groups == [g["value"] for g in by_industry["groups"]]
        assert "Fintech" in groups

        page.select_option("#by", "")
        page.wait_for_function(
            "() => document.body.dataset.loaded === 'true' && !document.querySelector('#funnel h3')"
        )
        assert problems == []

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        kept = ARTEFACTS / "report.png"
        kept.write_bytes(shot.read_bytes())
        for path in (shot, kept):
            assert path.exists() and path.stat().st_size > 10_000
    finally:
        context.close()
