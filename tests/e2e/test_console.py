"""An operator uses the console in a real browser: finds a lead, reads its score and timeline, looks at
a program's steps, previews a template for the lead and sends a test, all over the admin API."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    METRICS_WAIT,
    ROOT,
    WRITE_KEY,
    RunningStack,
    start_stack,
    stop_stack,
    weekday_morning,
)

pytestmark = pytest.mark.e2e

#: Where the screenshots are kept after the run (as test_report_page.py keeps its own).
ARTEFACTS = Path(os.environ.get("KINDLING_E2E_ARTEFACTS", ROOT / ".pytest_cache"))
#: More page views than one page of the timeline (50), so "Older" has somewhere to go.
EXTRA_PAGE_VIEWS = 55


@dataclass(frozen=True)
class Visitor:
    user_id: str
    email: str
    domain: str
    lead_id: str


@pytest.fixture(scope="module")
def console_stack() -> Iterator[RunningStack]:
    """A stack with the shipped programs, its clock on a weekday morning: the welcome email goes out."""
    running = start_stack(shipped_programs=True, start_at=weekday_morning(datetime.now(UTC)))
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


def post(stack: RunningStack, path: str, body: dict[str, Any]) -> None:
    response = requests.post(f"{stack.url}/v1/{path}", json=body, auth=(WRITE_KEY, ""), timeout=10)
    assert response.status_code == 200, response.text


def admin_get(stack: RunningStack, path: str, **params: Any) -> dict[str, Any]:
    response = requests.get(f"{stack.url}{path}", params=params, headers=stack.admin(), timeout=10)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return dict(response.json())


def new_visitor(stack: RunningStack, first_name: str, views: int = 2) -> Visitor:
    """A person identified through the tracking API, who looks around and asks for a demo."""
    tag = uuid.uuid4().hex[:8]
    user, domain = f"u-{tag}", f"c{tag}.io"
    email = f"{first_name.lower()}.{tag}@{domain}"
    traits = {
        "email": email,
        "first_name": first_name,
        "last_name": "Lovelace",
        "company": "Analytical Engines",
        "title": "VP Marketing",
        "industry": "Fintech",
    }
    post(stack, "identify", {"userId": user, "traits": traits})
    stack.settle()
    post(stack, "page", {"userId": user, "name": "Pricing", "properties": {"url": "https://x.io/pricing"}})
    extra = [
        {"type": "page", "userId": user, "name": "Docs", "properties": {"url": f"https://x.io/docs/{n}"}}
        for n in range(views - 1)
    ]
    for start in range(0, len(extra), 20):
        post(stack, "batch", {"batch": extra[start : start + 20]})
    stack.settle(timeout=60)
    post(stack, "track", {"userId": user, "event": "Demo Requested", "properties": {"plan": "growth"}})
    stack.settle(timeout=60)
    lead = stack.lead_by_email(email)
    assert lead.status_code == 200, lead.text
    return Visitor(user_id=user, email=email, domain=domain, lead_id=lead.json()["lead"]["lead_id"])


@pytest.fixture(scope="module")
def visitor(console_stack: RunningStack) -> Visitor:
    return new_visitor(console_stack, "Ada", views=1 + EXTRA_PAGE_VIEWS)


class Session:
    """One browser tab on the console, remembering every request it made and every error it logged."""

    def __init__(self, context: BrowserContext, stack: RunningStack) -> None:
        self.stack = stack
        self.page: Page = context.new_page()
        self.requested: list[str] = []
        self.problems: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # The preview document's policy refuses the email's open pixel (a preview must not count as
        # an open), and Chromium says so; nothing else may be refused.
        preview = "/preview.html?" in message.location.get("url", "")
        if preview and "Content Security Policy" in message.text and "/v1/o/" in message.text:
            return
        self.problems.append(message.text)

    def forget_logged(self, status: str) -> None:
        """Chromium logs a failed request itself, when it gets to it: waits (5 s at most) for that
        line, then forgets it, so that it cannot land among a later view's checks."""
        for _ in range(50):
            if any(status in problem for problem in self.problems):
                break
            self.page.wait_for_timeout(100)
        self.problems.clear()

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.stack.url}/console{route}")

    def sign_in(self, token: str) -> None:
        self.page.fill("#token", token)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_function("() => document.body.dataset.loaded")

    def go(self, route: str) -> None:
        """Follows a route as a link would, and waits until its view has loaded."""
        self.page.evaluate("route => { location.hash = route; }", route)
        self.loaded()

    def loaded(self) -> None:
        self.page.wait_for_function(
            "() => (document.body.dataset.loaded === 'true' || document.body.dataset.loaded === 'error')"
            " && document.body.dataset.loadedHash === location.hash"
        )
        assert self.page.evaluate("() => document.body.dataset.loaded") == "true", self.status()
        self.page.wait_for_function("() => !document.querySelector('[data-state=loading]')")

    def data(self, selector: str, key: str) -> list[str]:
        """``data-<key>`` of every element ``selector`` matches, in page order."""
        found = self.page.eval_on_selector_all(selector, "(els, key) => els.map(e => e.dataset[key])", key)
        return list(found)

    def status(self) -> str:
        return self.page.inner_text("#status")

    def view(self) -> str:
        return str(self.page.evaluate("() => document.body.dataset.view"))

    def keep(self, name: str, tmp_path: Path) -> Path:
        shot = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(shot), full_page=True)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        kept = ARTEFACTS / f"{name}.png"
        kept.write_bytes(shot.read_bytes())
        assert kept.stat().st_size > 10_000
        return kept

    def unlabelled_controls(self) -> list[str]:
        return list(
            self.page.eval_on_selector_all(
                "input, select, textarea",
                "cs => cs.filter(c => c.offsetParent && !(c.labels && c.labels.length)"
                " && !c.getAttribute('aria-label')).map(c => c.id || c.name)",
            )
        )

    def overflow(self) -> int:
        """How far the page is wider than the window (0: no horizontal scrolling)."""
        return int(
            self.page.evaluate(
                "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                " - document.documentElement.clientWidth"
            )
        )

    def other_hosts(self) -> list[str]:
        own = self.stack.url + "/"
        return [url for url in self.requested if not url.startswith(own) and not url.startswith("data:")]


@pytest.fixture(scope="module")
def desk(console_stack: RunningStack, browser: Browser) -> Iterator[Session]:
    """The operator's tab at 1280 px, signed in once: the views below are visited in it in turn."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = Session(context, console_stack)
    tab.open()
    tab.sign_in(ADMIN_TOKEN)
    tab.loaded()
    yield tab
    context.close()


def programs_broken(stack: RunningStack) -> str | None:
    """What is wrong with ``GET /v1/programs`` on this stack, or None when it answers as agreed."""
    response = requests.get(f"{stack.url}/v1/programs", headers=stack.admin(), timeout=30)
    if response.status_code == 200 and isinstance(response.json().get("programs"), list):
        return None
    failures = [line for line in stack.output if line.startswith("! LeadsApiFunction failed")]
    return (
        f"GET /v1/programs answers {response.status_code} {response.text[:80]} once a program has sent"
        f" email, not the agreed list ({failures[-1] if failures else 'no function failure logged'})"
    )


def test_the_console_is_public_html_without_data_under_a_strict_policy(console_stack: RunningStack) -> None:
    response = requests.get(f"{console_stack.url}/console", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"]
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'sha256-" in policy and "unsafe" not in policy
    assert ADMIN_TOKEN not in response.text and "<script>" in response.text


def test_a_wrong_token_is_refused_and_asked_for_again(console_stack: RunningStack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = Session(context, console_stack)
    try:
        tab.open()
        assert tab.page.is_visible("#login") and tab.view() == "login"
        tab.sign_in("not-the-token-at-all")
        assert tab.page.is_visible("#login") and "refused" in tab.status()
        tab.forget_logged("401")
        assert tab.page.evaluate("() => sessionStorage.length") == 0, "the refused token is not kept"
        tab.sign_in(ADMIN_TOKEN)
        tab.loaded()
        assert tab.view() == "leads" and not tab.page.is_visible("#login")
        assert ADMIN_TOKEN not in tab.page.url
        assert tab.other_hosts() == []
    finally:
        context.close()


def test_the_operator_finds_the_lead_by_email_domain_or_stage(
    console_stack: RunningStack, visitor: Visitor, desk: Session, tmp_path: Path
) -> None:
    stack, page = console_stack, desk.page
    desk.go("#/leads")
    assert page.is_visible("#leads-hint")
    # The search box, used from the keyboard.
    page.focus("#q")
    page.keyboard.type(visitor.email)
    page.keyboard.press("Enter")
    desk.loaded()
    found = admin_get(stack, "/v1/console/leads", q=visitor.email)
    rows = desk.data("#leads-table tbody tr", "leadId")
    assert rows == [lead["lead_id"] for lead in found["leads"]] == [visitor.lead_id]
    row = page.locator(f"#leads-table tr[data-lead-id='{visitor.lead_id}']").inner_text()
    assert "Ada Lovelace" in row and "Analytical Engines" in row
    assert desk.unlabelled_controls() == []
    desk.keep("console-leads", tmp_path)

    page.fill("#q", visitor.domain)
    page.click("#search-form button[type=submit]")
    desk.loaded()
    assert visitor.lead_id in desk.data("#leads-table tbody tr", "leadId")

    stage = admin_get(stack, f"/v1/leads/{visitor.lead_id}")["lead"]["stage"]
    page.fill("#q", "")
    page.select_option("#stage", stage)
    page.click("#search-form button[type=submit]")
    desk.loaded()
    by_stage = admin_get(stack, "/v1/console/leads", stage=stage)
    listed = desk.data("#leads-table tbody tr", "leadId")
    assert listed == [lead["lead_id"] for lead in by_stage["leads"]] and visitor.lead_id in listed

    grade = admin_get(stack, f"/v1/leads/{visitor.lead_id}/score")["grade"]
    page.select_option("#stage", "")
    page.select_option("#grade", grade)
    page.click("#search-form button[type=submit]")
    desk.loaded()
    by_grade = admin_get(stack, "/v1/console/leads", grade=grade)
    listed = desk.data("#leads-table tbody tr", "leadId")
    assert listed == [lead["lead_id"] for lead in by_grade["leads"]] and visitor.lead_id in listed
    scores = [lead["score"] for lead in by_grade["leads"]]
    assert scores == sorted(scores, reverse=True), "a grade's leads, highest score first"

    page.click("#recent-leads")
    desk.loaded()
    recent = admin_get(stack, "/v1/console/leads", recent="1")
    listed = desk.data("#leads-table tbody tr", "leadId")
    assert listed == [lead["lead_id"] for lead in recent["leads"]] and visitor.lead_id in listed
    assert desk.problems == [] and desk.other_hosts() == []


def test_the_lead_page_explains_its_score_and_reads_the_timeline_back_to_the_first_event(
    console_stack: RunningStack, visitor: Visitor, desk: Session, tmp_path: Path
) -> None:
    stack, page = console_stack, desk.page
    desk.go(f"#/leads?q={visitor.email}")
    page.click(f"#leads-table tr[data-lead-id='{visitor.lead_id}'] a")
    desk.loaded()
    assert desk.view() == "lead" and page.url.endswith(f"#/leads/{visitor.lead_id}")
    assert page.inner_text("#view-title") == visitor.email
    assert page.inner_text("#profile [data-field=lead_id]") == visitor.lead_id
    assert "Analytical Engines" in page.inner_text("#traits")

    score = admin_get(stack, f"/v1/leads/{visitor.lead_id}/score")
    assert page.get_attribute("#score-label", "data-label") == score["label"]
    shown_rules = desk.data("#score-rules tbody tr", "rule")
    assert shown_rules == [rule["rule"] for rule in score["rules"]] and shown_rules
    scored = [(c.get("event") or {}).get("event") for c in score["recent_changes"]]
    assert "Demo Requested" in scored, "the demo request scored"
    assert "Demo Requested" in page.inner_text("#score-changes")
    assert page.is_visible("#stage-history") or not score["stage_history"]

    first_page = admin_get(stack, f"/v1/leads/{visitor.lead_id}/timeline", limit=50)
    entries = desk.data("#timeline-list li", "messageId")
    assert entries == [e["message_id"] for e in first_page["entries"]] and len(entries) == 50
    assert "Demo Requested" in page.inner_text("#timeline-list")
    everything = list(first_page["entries"])
    before = first_page["next_before"]
    while before:
        older = admin_get(stack, f"/v1/leads/{visitor.lead_id}/timeline", limit=50, before=before)
        everything += older["entries"]
        before = older["next_before"]
    assert len(everything) >= EXTRA_PAGE_VIEWS + 3
    while page.is_visible("#timeline-older"):
        count = len(page.locator("#timeline-list li").all())
        page.click("#timeline-older")
        page.wait_for_function(
            f"() => document.querySelectorAll('#timeline-list li').length > {count}"
            " || document.querySelector('#timeline-start')"
        )
    page.wait_for_selector("#timeline-start")
    assert desk.data("#timeline-list li", "messageId") == [e["message_id"] for e in everything]
    assert everything[-1]["type"] == "identify", "the first event is the identify"
    assert page.get_attribute("#timeline-list li:last-child", "data-type") == "identify"

    enrollments = admin_get(stack, f"/v1/leads/{visitor.lead_id}/enrollments")["enrollments"]
    assert [e["program"] for e in enrollments] == desk.data("#enrollments-body article", "program")
    assert "welcome-series" in [e["program"] for e in enrollments]
    emails = admin_get(stack, f"/v1/leads/{visitor.lead_id}/emails")["emails"]
    shown_emails = page.eval_on_selector_all(
        "#emails-table tbody tr", "rows => rows.map(r => [r.dataset.sendId, r.dataset.status])"
    )
    assert shown_emails == [[m["send_id"], m["status"]] for m in emails]
    assert any(m["template"] == "welcome-1" for m in emails), "the welcome series sent its first email"
    assert " UTC" in page.inner_text("#emails-table tbody tr"), "times are read, whatever their form"
    assert page.is_visible("#quiet-body") and page.is_visible("#action-erase")
    assert desk.unlabelled_controls() == []
    page.evaluate("() => window.scrollTo(0, 0)")
    desk.keep("console-lead", tmp_path)
    assert desk.problems == [] and desk.other_hosts() == []


def test_the_programs_show_their_counts_and_the_welcome_series_its_steps(
    console_stack: RunningStack, visitor: Visitor, desk: Session, tmp_path: Path
) -> None:
    stack, page = console_stack, desk.page
    stack.advance(METRICS_WAIT.total_seconds())  # the emails sent are counted by the metrics fold
    stack.settle()
    desk.go(f"#/leads/{visitor.lead_id}")
    page.click("nav a[data-nav=programs]")
    page.wait_for_function("() => ['true', 'error'].includes(document.body.dataset.loaded)")
    assert programs_broken(stack) is None
    desk.loaded()
    programs = {p["id"]: p for p in admin_get(stack, "/v1/programs")["programs"]}
    assert desk.data("#programs-table tbody tr", "program") == list(programs)
    welcome = programs["welcome-series"]
    counts = page.eval_on_selector_all(
        "#programs-table tr[data-program=welcome-series] [data-count]",
        "cells => Object.fromEntries(cells.map(c => [c.dataset.count, Number(c.dataset.value)]))",
    )
    assert counts == welcome["counts"] and counts["entered"] >= 1
    assert page.get_attribute("#programs-table tr[data-program=welcome-series]", "data-paused") == "false"
    desk.keep("console-programs", tmp_path)

    page.click("#programs-table tr[data-program=welcome-series] a")
    desk.loaded()
    assert desk.view() == "program" and page.inner_text("#view-title") == welcome["name"]
    steps = page.eval_on_selector_all(
        "#flow li[data-step]",
        "items => items.map(i => [i.dataset.step,"
        " Number(i.querySelector('[data-stat=waiting]').dataset.value)])",
    )
    assert steps == [[s["id"], s["waiting"]] for s in welcome["steps"]]
    sends = page.eval_on_selector_all(
        "#flow li[data-step] [data-stat=sent]",
        "cells => cells.map(c => [c.closest('li').dataset.step, Number(c.dataset.value)])",
    )
    assert sends == [[s["id"], s["sent"]] for s in welcome["steps"] if s["template"]]
    assert dict(sends)["send-welcome"] >= 1
    shown_counts = page.eval_on_selector_all(
        "#program-counts [data-count]",
        "cells => Object.fromEntries(cells.map(c => [c.dataset.count, Number(c.dataset.value)]))",
    )
    assert shown_counts == welcome["counts"]
    assert page.is_enabled("#program-pause") and not page.is_enabled("#program-resume")
    desk.keep("console-program", tmp_path)
    assert desk.problems == [] and desk.other_hosts() == []


def test_a_template_is_previewed_for_the_lead_and_sent_as_a_test(
    console_stack: RunningStack, visitor: Visitor, desk: Session, tmp_path: Path
) -> None:
    stack, page = console_stack, desk.page
    desk.go("#/templates")
    names = desk.data("#templates-table tbody tr", "template")
    assert names == [t["name"] for t in admin_get(stack, "/v1/templates")["templates"]]
    page.click("#templates-table tr[data-template=welcome-1] a")
    desk.loaded()
    assert desk.view() == "template"
    page.check("#for-lead")
    page.fill("#preview-lead", visitor.email)
    page.click("#preview-button")
    page.wait_for_selector("#preview[data-state=shown]")
    expected = requests.post(
        f"{stack.url}/v1/templates/welcome-1/preview",
        json={"lead_id": visitor.lead_id},
        headers=stack.admin(),
        timeout=10,
    ).json()
    assert page.inner_text("#preview-subject") == expected["subject"] and "Ada" in expected["subject"]
    assert page.get_attribute("#preview-html", "sandbox") == ""
    assert "Hi Ada" in page.frame_locator("#preview-html").locator("body").inner_text()
    assert "/preview.html?" in (page.get_attribute("#preview-html", "src") or ""), "its own document, styled"
    assert page.inner_text("#preview-text").strip() == expected["text"].strip()
    assert desk.unlabelled_controls() == []

    tester = f"qa-{uuid.uuid4().hex[:6]}@example.com"
    page.fill("#test-to", tester)
    page.click("#test-button")
    page.wait_for_selector("#test-send-id")
    send_id = page.inner_text("#test-send-id")
    assert send_id and page.get_attribute("#test-result [data-send-id]", "data-to") == tester
    stack.settle(timeout=30)
    messages = requests.get(f"{stack.url}/_local/outbox", timeout=10).json()["messages"]
    [test_mail] = [m for m in messages if tester in m["to"]]
    assert test_mail["subject"].startswith("[TEST]") and "Ada" in test_mail["subject"]
    assert test_mail["send_id"] == send_id
    desk.keep("console-template", tmp_path)
    assert desk.problems == [] and desk.other_hosts() == []


def test_every_view_fits_a_phone(
    console_stack: RunningStack, visitor: Visitor, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = Session(context, console_stack)
    assert programs_broken(console_stack) is None
    routes = [
        f"#/leads?q={visitor.email}",
        f"#/leads/{visitor.lead_id}",
        "#/programs",
        "#/programs/welcome-series",
        "#/templates",
        f"#/templates/welcome-1?lead={visitor.lead_id}",
    ]
    try:
        tab.open()
        tab.sign_in(ADMIN_TOKEN)
        tab.loaded()
        for route in routes:
            tab.go(route)
            if "templates/" in route:
                tab.page.click("#preview-button")
                tab.page.wait_for_selector("#preview[data-state=shown]")
            assert tab.overflow() == 0, f"{route} scrolls sideways at 390 px"
            if route.startswith("#/leads/"):
                tab.keep("console-lead-390", tmp_path)
        assert tab.problems == []
        assert tab.other_hosts() == []
    finally:
        context.close()


def done(page: Page, said: str) -> None:
    """Submits the open action and waits for the console to say it is done (the lead's page reloads)."""
    page.click("#action-submit")
    page.wait_for_function("said => document.getElementById('status').textContent.startsWith(said)", arg=said)


def test_the_operator_actions_ask_what_they_must(
    console_stack: RunningStack, browser: Browser, tmp_path: Path
) -> None:
    stack = console_stack
    grace = new_visitor(stack, "Grace")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = Session(context, stack)
    page = tab.page

    def lead() -> dict[str, Any]:
        return dict(admin_get(stack, f"/v1/leads/{grace.lead_id}")["lead"])

    try:
        tab.open(f"#/leads/{grace.lead_id}")
        tab.sign_in(ADMIN_TOKEN)
        tab.loaded()
        assert tab.view() == "lead"

        page.click("#action-unsubscribe")
        page.fill("#action-by", "Olivia Operator")
        done(page, "Unsubscribe: done")
        tab.loaded()
        assert lead()["unsubscribed"] is True
        assert "unsubscribed" in page.inner_text("#profile [data-field=email_status]")

        # Resubscribing needs a consent note: the form does not go without one.
        page.click("#action-resubscribe")
        assert page.input_value("#action-by") == "Olivia Operator", "the operator's name is remembered"
        page.click("#action-submit")
        assert page.evaluate("() => document.querySelector('#action-note').validity.valueMissing")
        page.fill("#action-note", "Asked on the phone to hear from us again, 2026-03-02")
        done(page, "Resubscribe: done")
        tab.loaded()
        assert lead()["unsubscribed"] is False

        page.click("#action-suppress")
        page.select_option("#action-reason", "manual")
        done(page, "Suppress: done")
        tab.loaded()
        suppressed = admin_get(stack, f"/v1/suppressions/{grace.email}")["suppression"]
        assert suppressed and suppressed["reason"] == "manual" and suppressed["by"] == "Olivia Operator"

        # Erasing needs the lead's email typed again.
        page.click("#action-erase")
        assert not page.is_enabled("#action-submit")
        page.fill("#action-confirm", "someone.else@example.com")
        assert not page.is_enabled("#action-submit")
        page.fill("#action-confirm", grace.email)
        assert page.is_enabled("#action-submit")
        tab.keep("console-erase", tmp_path)
        page.click("#action-submit")
        page.wait_for_function("() => document.body.dataset.view === 'leads'")
        tab.loaded()
        assert grace.email in tab.status()
        gone = requests.get(f"{stack.url}/v1/leads/{grace.lead_id}", headers=stack.admin(), timeout=10)
        assert gone.status_code == 404
        assert tab.problems == [] and tab.other_hosts() == []
    finally:
        context.close()
