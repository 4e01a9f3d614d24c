"""The website tag in a real browser: Debian's headless Chromium, driven by Playwright.

A small site on its own port (another origin than the API, so CORS is exercised for real)
carries the snippet exactly as the README gives it, pointed at a local stack that allows
that site's origin.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route

from tests.e2e.conftest import DESKTOP_CHROME, ROOT, WRITE_KEY, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

README_HOST = "https://api.example.com"

FORM = """
<form id="download" method="post" action="{action}">
  <input type="email" name="email" required>
  <input name="firstName" value="Ada">
  <input name="company" value="Acme">
  <input type="password" name="password" value="hunter2">
  <input type="hidden" name="campaignId" value="c-42">
  <button type="submit">Download</button>
</form>
"""
#: path: (title, load() options besides writeKey and host, body)
PAGES: dict[str, tuple[str, dict[str, Any], str]] = {
    "/landing": (
        "Landing",
        {"captureForms": True},
        '<a id="next" href="/whitepaper">Read the whitepaper</a>',
    ),
    "/whitepaper": ("Whitepaper", {"captureForms": True}, FORM.format(action="/thanks")),
    "/thanks": ("Thanks", {"captureForms": True}, "<p>It is on its way.</p>"),
    "/private": (
        "Private",
        {"captureForms": True, "respectDoNotTrack": True},
        FORM.format(action="/private"),
    ),
    "/plain": ("Plain", {}, "<p>Hello.</p>"),
}


def readme_snippet() -> str:
    """The snippet exactly as the README's "The website tag" section gives it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## The website tag\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```html\n(.*?)```", section, re.DOTALL)
    assert match, "README: the website tag section has no html snippet"
    return match.group(1)


class Site:
    """The customer's website: every page carries the README's snippet."""

    def __init__(self) -> None:
        self.api = ""  # the stack's URL, known once the stack is up
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.page()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.page()

            def page(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in PAGES:
                    self.send_error(404)
                    return
                body = site.render(path).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def render(self, path: str) -> str:
        title, options, body = PAGES[path]
        snippet = readme_snippet()
        assert snippet.count(README_HOST) == 2, "README snippet: expected the API host in src and load()"
        load = {"writeKey": WRITE_KEY, "host": self.api, **options}
        snippet, loads = re.subn(
            r"kindling\.load\(\{.*?\}\);", f"kindling.load({json.dumps(load)});", snippet
        )
        assert loads == 1, "README snippet: expected one kindling.load({...}); call"
        snippet = snippet.replace(README_HOST, self.api)
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>\n{snippet}</head>'
            f"<body><h1>{title}</h1>{body}</body></html>"
        )

    def url(self, path: str) -> str:
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    running = Site()
    yield running
    running.close()


@pytest.fixture(scope="module")
def tag_stack(site: Site) -> Iterator[RunningStack]:
    """A stack of its own that lets the test site's origin (and only it) send events."""
    running = start_stack(env={"KINDLING_ALLOWED_ORIGINS": site.origin})
    site.api = running.url
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(user_agent=DESKTOP_CHROME)
    yield opened
    opened.close()


def unique_email() -> str:
    return f"reader-{uuid.uuid4().hex[:8]}@acme.io"


def is_batch(stack: RunningStack, carrying: str = "") -> Callable[[Any], bool]:
    """Matches the tag's POSTs to the API (whose body has ``carrying`` in it)."""
    return lambda r: (
        r.url == f"{stack.url}/v1/batch"
        and r.request.method == "POST"
        and carrying in (r.request.post_data or "")
    )


def open_page(context: BrowserContext) -> tuple[Page, list[str]]:
    """A tab, and the errors that reach the page's own window (the tag must cause none)."""
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    return page, page_errors


def wait_until_delivered(page: Page) -> None:
    """Every batch the tag sent has been answered 200 (which the tag can read only through CORS)."""
    page.wait_for_function("() => window.kindling && kindling.loaded && !localStorage.getItem('kdl_outbox')")


def anonymous_id(context: BrowserContext, site: Site) -> str:
    cookies = {c["name"]: c["value"] for c in context.cookies(site.origin)}
    assert "kdl_aid" in cookies, cookies
    return cookies["kdl_aid"]


def fill_and_submit(page: Page, email: str) -> None:
    page.fill("input[name=email]", email)
    page.click("button[type=submit]")


@pytest.mark.parametrize("known_before", [False, True], ids=["new-lead", "lead-known-from-the-crm"])
def test_a_newsletter_reader_who_downloads_the_whitepaper_becomes_a_lead_with_their_visits(
    tag_stack: RunningStack, site: Site, context: BrowserContext, known_before: bool
) -> None:
    email = unique_email()
    known_id = None
    if known_before:  # a lead that sales already had, e.g. from a CRM sync
        body = {"userId": f"crm-{uuid.uuid4().hex[:8]}", "traits": {"email": email, "title": "CMO"}}
        response = requests.post(f"{tag_stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10)
        assert response.status_code == 200, response.text
        tag_stack.settle()
        known_id = tag_stack.lead_by_email(email).json()["lead"]["lead_id"]
    page, page_errors = open_page(context)
    beacons: list[Request] = []
    context.on("request", lambda r: beacons.append(r) if r.resource_type == "ping" else None)

    landing = site.url("/landing?utm_source=newsletter&utm_medium=email&utm_campaign=q4")
    with page.expect_response(is_batch(tag_stack)) as first:
        page.goto(landing)
    assert first.value.status == 200
    assert first.value.headers["access-control-allow-origin"] == site.origin
    visitor = anonymous_id(context, site)
    assert page.evaluate("() => localStorage.getItem('kdl_aid')") == visitor
    tag_stack.settle()  # the landing view is on an anonymous lead of its own before the visitor identifies

    page.click("#next")
    page.wait_for_url("**/whitepaper")
    with page.expect_response(is_batch(tag_stack, carrying='"path":"/thanks"')) as thanked:
        fill_and_submit(page, email)
    assert thanked.value.status == 200
    wait_until_delivered(page)
    assert page.evaluate("() => kindling.errors") == 0
    assert page_errors == []
    assert any(b.url == f"{tag_stack.url}/v1/batch" for b in beacons), "the form's identify goes by beacon"
    assert anonymous_id(context, site) == visitor

    tag_stack.settle()
    response = tag_stack.lead_by_email(email)
    assert response.status_code == 200, response.text
    lead, timeline = response.json()["lead"], response.json()["timeline"]
    if known_id:
        assert lead["lead_id"] == known_id and lead["traits"]["title"] == "CMO"
    assert lead["email"] == email
    assert visitor in lead["anonymous_ids"]
    assert lead["traits"]["firstName"] == "Ada" and lead["traits"]["company"] == "Acme"
    views = {e["page"]["path"]: e for e in timeline if e["type"] == "page"}
    assert set(views) == {"/landing", "/whitepaper", "/thanks"}
    assert views["/landing"]["campaign"] == {"source": "newsletter", "medium": "email", "name": "q4"}
    assert views["/landing"]["page"]["title"] == "Landing"
    assert views["/whitepaper"]["campaign"] == {}
    assert views["/whitepaper"]["page"]["referrer"] == landing
    [identify] = [e for e in timeline if e["type"] == "identify" and "title" not in e["traits"]]
    # The form's email, name and company; never its password or hidden fields.
    assert identify["traits"] == {"email": email, "firstName": "Ada", "company": "Acme"}
    web = [e for e in timeline if e["type"] != "email"]  # programs may have emailed the new lead meanwhile
    assert len(web) == (5 if known_before else 4), "each event once, however often it was sent"
    assert not any(e["bot"] for e in timeline)


@pytest.mark.parametrize("signal", [None, "doNotTrack", "globalPrivacyControl"])
def test_with_respect_do_not_track_on_a_browser_that_asks_not_to_be_tracked_sends_nothing(
    tag_stack: RunningStack, site: Site, context: BrowserContext, signal: str | None
) -> None:
    if signal:
        value = '"1"' if signal == "doNotTrack" else "true"
        context.add_init_script(
            f"Object.defineProperty(Navigator.prototype, '{signal}', {{get: () => {value}}});"
        )
    sent: list[str] = []
    context.on("request", lambda r: sent.append(r.url) if r.url.startswith(f"{tag_stack.url}/v1/b") else None)
    email = unique_email()
    page, page_errors = open_page(context)
    page.goto(site.url("/private"))
    page.wait_for_function("() => window.kindling && kindling.loaded")
    page.evaluate("() => kindling.track('Pricing Viewed', {plan: 'team'})")
    with page.expect_navigation():
        fill_and_submit(page, email)
    page.wait_for_function("() => window.kindling && kindling.loaded")
    page.wait_for_timeout(600)  # longer than the tag's 250 ms batching
    tag_stack.settle()
    assert page.evaluate("() => kindling.errors") == 0 and page_errors == []
    if signal is None:  # the control: the same page and steps do send when nothing asks otherwise
        assert sent
        assert tag_stack.lead_by_email(email).status_code == 200
        return
    assert sent == []
    assert context.cookies(site.origin) == []
    assert page.evaluate("() => [localStorage.getItem('kdl_aid'), localStorage.getItem('kdl_outbox')]") == [
        None,
        None,
    ]
    assert tag_stack.lead_by_email(email).status_code == 404


def test_errors_inside_the_tag_never_reach_the_page_and_are_counted(
    tag_stack: RunningStack, site: Site, browser: Browser
) -> None:
    # localStorage that throws, as it does when a browser blocks site data.
    context = browser.new_context(user_agent=DESKTOP_CHROME)
    context.add_init_script(
        "Object.defineProperty(window, 'localStorage', "
        "{get() { throw new DOMException('blocked', 'SecurityError'); }});"
    )
    try:
        page, page_errors = open_page(context)
        with page.expect_response(is_batch(tag_stack)) as page_view:
            page.goto(site.url("/plain"))
        assert page_view.value.status == 200
        assert anonymous_id(context, site)  # the cookie alone keeps the visitor
        counts = page.evaluate(
            """() => {
                const loop = {name: 'loop'};
                loop.self = loop;
                const before = kindling.errors;
                kindling.track('Circular', loop);  // cannot be serialised
                kindling.track();                  // no event name
                kindling.page('Huge', {blob: 'x'.repeat(40000)});  // over 32 KB
                kindling.load({writeKey: 'again'});  // a second load() is ignored
                return [before, kindling.errors];
            }"""
        )
        assert counts == [0, 3]
        with page.expect_response(is_batch(tag_stack)) as after:
            page.evaluate("() => { kindling.track('Still Working'); kindling.flush(); }")
        assert after.value.status == 200
        assert [m["event"] for m in json.loads(after.value.request.post_data or "")["batch"]] == [
            "Still Working"
        ]
        assert page_errors == []
    finally:
        context.close()


def test_a_batch_that_fails_is_retried_with_backoff_and_by_the_next_page(
    tag_stack: RunningStack, site: Site, context: BrowserContext
) -> None:
    email = unique_email()
    page, page_errors = open_page(context)
    attempts: list[dict[str, Any]] = []
    answers = ["pass"]  # what happens to the tag's next requests, in order; the last one repeats

    def api(route: Route) -> None:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        attempts.append({"answer": answer, "body": json.loads(route.request.post_data or "")})
        if answer == "network-error":
            route.abort("internetdisconnected")
        elif answer == "503":
            route.fulfill(status=503, headers={"Access-Control-Allow-Origin": site.origin}, body="{}")
        else:
            route.continue_()

    page.route(f"{tag_stack.url}/v1/batch", api)
    # The page view meets a network error, then gets through on the retry (1 to 2 s later).
    answers[:] = ["network-error", "pass"]
    with page.expect_response(is_batch(tag_stack), timeout=10_000) as retried:
        page.goto(site.url("/plain"))
    assert retried.value.status == 200
    assert [a["answer"] for a in attempts] == ["network-error", "pass"]
    assert attempts[0]["body"]["batch"] == attempts[1]["body"]["batch"]  # the same messageIds
    wait_until_delivered(page)

    # An identify the API answers 503 stays in the outbox, and the next page sends it.
    answers[:] = ["503"]
    page.evaluate(f"() => {{ kindling.identify({json.dumps(email)}); kindling.flush(); }}")
    page.wait_for_function("() => (JSON.parse(localStorage.getItem('kdl_outbox')) || []).some(b => b.tries)")
    page.unroute(f"{tag_stack.url}/v1/batch")
    page.goto(site.url("/plain"))
    wait_until_delivered(page)
    assert page.evaluate("() => kindling.errors") == 0 and page_errors == []
    tag_stack.settle()
    response = tag_stack.lead_by_email(email)
    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["timeline"]].count("identify") == 1


def test_headless_chromium_is_stored_but_flagged_as_a_bot(
    tag_stack: RunningStack, site: Site, browser: Browser
) -> None:
    context = browser.new_context()  # Chromium's own user agent
    try:
        page, _ = open_page(context)
        page.goto(site.url("/plain"))
        assert "HeadlessChrome" in page.evaluate("() => navigator.userAgent")
        email = unique_email()
        page.evaluate(f"() => {{ kindling.identify({json.dumps(email)}); kindling.flush(); }}")
        wait_until_delivered(page)
        tag_stack.settle()
        view = tag_stack.lead_by_email(email).json()
        assert view["timeline"] and all(e["bot"] for e in view["timeline"])
        assert view["lead"]["last_activity_at"] is None  # bot traffic is never activity
    finally:
        context.close()


def test_the_script_is_served_with_its_content_type_caching_and_cors(tag_stack: RunningStack) -> None:
    url = f"{tag_stack.url}/v1/tag.js"
    response = requests.get(url, headers={"Origin": "https://any-site.example"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Content-Encoding"] == "gzip"  # requests accepts gzip
    assert response.text.startswith("/* kindling website tag")
    etag = response.headers["ETag"]
    again = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
