"""Segment's and RudderStack's own browser SDKs, as published on npm, pointed at kindling.

The README promises that sites already running a Segment- or RudderStack-compatible library
only change its API host. These tests load each SDK's published browser bundle (pinned in
tests/browser_sdks/package-lock.json; `make sdks` installs and copies them to
tests/browser_sdks/dist) into Debian's headless Chromium, from a site on its own port, and
send a page view, an identify and a track to a local stack.

Between the browser and the stack sits a small reverse proxy: it forwards every request
unchanged (CORS preflights included, so the browser's own CORS checks run against kindling's
answers) and records what passed, and it can answer one capture request with a 503 itself,
as an API whose queue is briefly unavailable does.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from tests.e2e.conftest import DESKTOP_CHROME, ROOT, WRITE_KEY, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

SDKS = ROOT / "tests" / "browser_sdks"
DIST = SDKS / "dist"
SEGMENT_BUNDLE = "analytics-next.js"
RUDDERSTACK_BUNDLE = "rudderstack.js"
#: Headers a proxy does not pass on (RFC 9110, 7.6.1), and those it sets itself.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "date",
    "server",
}

#: What Chromium logs in the console for the 503 the proxy answers.
REFUSED_LOG = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


# --- the SDK bundles ------------------------------------------------------------------------


def build_sdks() -> None:
    """What `make sdks` does: install the pinned packages and copy their browser bundles to dist/."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            message = (
                f"{tool} is not installed: the browser SDK tests need Node.js and npm to install the SDKs"
            )
            if os.environ.get("CI"):
                pytest.fail(message)  # as for Chromium: CI must run them, not skip them
            pytest.skip(message)
    steps = [
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        ["node", "build.mjs"],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=SDKS, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}"


def built_versions() -> dict[str, str] | None:
    built = DIST / "versions.json"
    return dict(json.loads(built.read_text())) if built.exists() else None


@pytest.fixture(scope="module")
def sdk_versions() -> dict[str, str]:
    """The SDKs' versions in dist/, built first when missing or not the pinned ones."""
    pinned: dict[str, str] = json.loads((SDKS / "package.json").read_text())["dependencies"]
    if built_versions() != pinned:
        build_sdks()
    assert built_versions() == pinned
    return pinned


# --- the customer's site and the proxy in front of the API ---------------------------------


class Site:
    """The customer's website, on its own port: one page per SDK, and the SDKs' bundles."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in (f"/sdk/{SEGMENT_BUNDLE}", f"/sdk/{RUDDERSTACK_BUNDLE}"):
                    body = (DIST / path.removeprefix("/sdk/")).read_bytes()
                    content_type = "application/javascript; charset=utf-8"
                elif path in ("/segment", "/rudderstack"):
                    bundle = SEGMENT_BUNDLE if path == "/segment" else RUDDERSTACK_BUNDLE
                    body = (
                        '<!doctype html><html><head><meta charset="utf-8"><title>Pricing</title>'
                        f'<script src="/sdk/{bundle}"></script></head>'
                        "<body><h1>Pricing</h1></body></html>"
                    ).encode()
                    content_type = "text/html; charset=utf-8"
                elif path == "/favicon.ico":
                    body, content_type = b"", "image/x-icon"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Exchange:
    """One request that reached the proxy, and the status the browser got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    refused: bool = False
    answer: bytes = b""

    @property
    def message(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class ApiProxy:
    """A reverse proxy in front of the stack that forwards everything and records it.

    ``refuse_next_capture()`` makes it answer the next POST itself with a 503, which never
    reaches the stack. The 503 carries the CORS headers the stack gives that origin (asked of
    the stack itself), as kindling's own 503 would, so the SDK can read the status.
    """

    def __init__(self, upstream: str) -> None:
        self.exchanges: list[Exchange] = []
        self.refusals = 0
        self.lock = threading.Lock()
        proxy = self
        target = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.relay()

            def do_POST(self) -> None:
                self.relay()

            def do_OPTIONS(self) -> None:
                self.relay()

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                exchange = Exchange(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with proxy.lock:
                    proxy.exchanges.append(exchange)
                    if self.command == "POST" and proxy.refusals > 0:
                        exchange.refused = True
                        proxy.refusals -= 1
                if exchange.refused:
                    status, headers, answer = 503, self.cors_headers(), b'{"message":"Service Unavailable"}'
                    headers.append(("Content-Type", "application/json"))
                else:
                    status, headers, answer = self.forward(body)
                exchange.status, exchange.answer = status, answer
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def ask(
                self, method: str, headers: dict[str, str], body: bytes | None = None
            ) -> tuple[int, list[tuple[str, str]], bytes]:
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    connection.request(method, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.getheaders(), response.read()
                finally:
                    connection.close()

            def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                # The Host header goes on unchanged: the settings kindling serves name the host
                # the browser asked, so the SDK keeps sending through the proxy.
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, answer_headers, answer = self.ask(self.command, headers, body or None)
                return status, [(k, v) for k, v in answer_headers if k.lower() not in HOP_BY_HOP], answer

            def cors_headers(self) -> list[tuple[str, str]]:
                asked = {
                    "Host": self.headers.get("Host", ""),
                    "Origin": self.headers.get("Origin", ""),
                    "Access-Control-Request-Method": "POST",
                }
                _, headers, _ = self.ask("OPTIONS", asked)
                return [(k, v) for k, v in headers if k.lower() in ("access-control-allow-origin", "vary")]

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def refuse_next_capture(self) -> None:
        with self.lock:
            self.refusals = 1

    def posts(self) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if e.method == "POST" and e.status]

    def preflights(self) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if e.method == "OPTIONS" and e.status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(sdk_versions: dict[str, str]) -> Iterator[Site]:
    running = Site()
    yield running
    running.close()


@pytest.fixture(scope="module")
def sdk_stack(site: Site) -> Iterator[RunningStack]:
    """A stack of its own that lets the test site's origin send events."""
    running = start_stack(env={"KINDLING_ALLOWED_ORIGINS": site.origin})
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])


@pytest.fixture
def proxy(sdk_stack: RunningStack) -> Iterator[ApiProxy]:
    running = ApiProxy(sdk_stack.url)
    yield running
    running.close()


@dataclass
class Tab:
    page: Page
    requested: list[str]
    problems: list[str]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A desktop Chrome tab that records every URL it asks for and every error it reports."""
    context: BrowserContext = browser.new_context(user_agent=DESKTOP_CHROME)
    page = context.new_page()
    opened = Tab(page, [], [])
    context.on("request", lambda request: opened.requested.append(request.url))
    page.on("pageerror", lambda error: opened.problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.problems.append(f"console: {message.text}")

    page.on("console", console)
    yield opened
    context.close()


def unique_email() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}@acme.io"


def only_local(requested: list[str], *origins: str) -> list[str]:
    """What the page asked of any origin but ``origins`` (it must ask nothing of the internet)."""
    return [url for url in requested if not url.startswith(tuple(f"{o}/" for o in origins))]


def header_names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def web_events(stack: RunningStack, email: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The lead with ``email`` and the events on its timeline that came from the site."""
    stack.settle()
    response = stack.lead_by_email(email)
    assert response.status_code == 200, response.text
    view = response.json()
    return view["lead"], [e for e in view["timeline"] if e["type"] != "email"]


def test_segment_analytics_next_loads_its_settings_from_kindling_and_its_events_reach_the_lead(
    sdk_stack: RunningStack, site: Site, proxy: ApiProxy, tab: Tab
) -> None:
    email = unique_email()
    profile = {"firstName": "Ada", "company": "Acme", "title": "VP Marketing"}
    traits = {"email": email, **profile}
    proxy.refuse_next_capture()  # the page view: the SDK must try it again
    tab.page.goto(f"{site.origin}/segment")
    anonymous_id = tab.page.evaluate(
        """async ({writeKey, cdnURL, traits}) => {
            const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL});
            await analytics.page('Pricing', {plan: 'team'});
            await analytics.identify('crm-1042', traits);
            await analytics.track('Demo Requested', {plan: 'team', seats: 25});
            return analytics.user().anonymousId();
        }""",
        {"writeKey": WRITE_KEY, "cdnURL": proxy.url, "traits": traits},
    )
    delivered = wait_for(
        lambda: (ok := [p for p in proxy.posts() if p.status == 200]) and len(ok) >= 3 and ok,
        "the three events to be delivered (the refused one retried)",
    )

    # The settings came from kindling, and told the SDK to send to kindling's short paths.
    [settings] = [e for e in proxy.exchanges if e.method == "GET"]  # before anything was sent
    assert (settings.path, settings.status) == (f"/v1/projects/{WRITE_KEY}/settings", 200)
    segmentio = json.loads(settings.answer)["integrations"]["Segment.io"]
    assert (segmentio["protocol"], segmentio["apiHost"]) == ("http", f"{urlsplit(proxy.url).netloc}/v1")
    assert sorted(p.path for p in delivered) == ["/v1/i", "/v1/p", "/v1/t"]
    assert {p.message["type"] for p in delivered} == {"page", "identify", "track"}
    assert all(p.headers["content-type"] == "text/plain" for p in delivered)
    assert {p.message["context"]["library"]["name"] for p in delivered} == {"analytics.js"}

    # The refused page view came again, with the same messageId and the SDK's retry header,
    # after the browser asked (and kindling allowed) that header in a preflight.
    [refused] = [p for p in proxy.posts() if p.refused]
    assert (refused.path, refused.status) == ("/v1/p", 503)
    [retried] = [p for p in delivered if p.path == "/v1/p"]
    assert retried.message["messageId"] == refused.message["messageId"]
    assert "x-retry-count" not in refused.headers and retried.headers["x-retry-count"] == "1"
    asked = [header_names(p.headers.get("access-control-request-headers", "")) for p in proxy.preflights()]
    assert {"authorization"} in asked, "the first sends carry the write key: preflighted"
    assert any("x-retry-count" in names for names in asked)
    assert all(p.status == 204 for p in proxy.preflights())

    assert only_local(tab.requested, site.origin, proxy.url) == []
    # Chromium logs the refused request; the SDK itself reports nothing.
    assert tab.problems == [f"console: {REFUSED_LOG}"]

    lead, events = web_events(sdk_stack, email)
    assert lead["email"] == email and lead["user_id"] == "crm-1042"
    assert anonymous_id in lead["anonymous_ids"]
    assert {k: lead["traits"].get(k) for k in profile} == profile
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"], "each event once"
    by_type = {e["type"]: e for e in events}
    assert by_type["page"]["message_id"] == refused.message["messageId"]
    assert by_type["page"]["name"] == "Pricing" and by_type["page"]["page"]["path"] == "/segment"
    assert by_type["track"]["event"] == "Demo Requested"
    assert by_type["track"]["properties"] == {"plan": "team", "seats": 25}
    assert not any(e["bot"] for e in events)


RUDDERSTACK_SOURCE = {
    # What RudderStack's control plane would answer for a source with no device-mode
    # destinations: the SDK is given it instead of fetching it, and sends to the data plane only.
    "source": {
        "id": "kindling-website",
        "name": "Website",
        "workspaceId": "kindling",
        "enabled": True,
        "config": {},
        "destinations": [],
    }
}


def test_rudderstack_js_sdk_v3_sends_to_kindling_as_its_data_plane_and_its_events_reach_the_lead(
    sdk_stack: RunningStack, site: Site, proxy: ApiProxy, tab: Tab
) -> None:
    email = unique_email()
    profile = {"firstName": "Grace", "company": "Hopper Labs", "title": "CTO"}
    traits = {"email": email, **profile}
    tab.page.goto(f"{site.origin}/rudderstack")
    anonymous_id = tab.page.evaluate(
        """async ({writeKey, dataPlaneUrl, sourceConfig, traits}) => {
            const analytics = new rudderanalytics.RudderAnalytics();
            await new Promise((loaded) => analytics.load(writeKey, dataPlaneUrl, {
                getSourceConfig: () => sourceConfig,
                onLoaded: loaded,
            }));
            analytics.page('Pricing', {plan: 'team'});
            analytics.identify('crm-2077', traits);
            analytics.track('Demo Requested', {plan: 'team', seats: 25});
            return analytics.getAnonymousId();
        }""",
        {
            "writeKey": WRITE_KEY,
            "dataPlaneUrl": proxy.url,
            "sourceConfig": RUDDERSTACK_SOURCE,
            "traits": traits,
        },
    )
    delivered = wait_for(
        lambda: (ok := [p for p in proxy.posts() if p.status == 200]) and len(ok) >= 3 and ok,
        "the three events to be delivered",
    )

    assert sorted(p.path for p in delivered) == ["/v1/identify", "/v1/page", "/v1/track"]
    assert all(p.headers["content-type"].startswith("application/json") for p in delivered)
    [identify] = [p.message for p in delivered if p.path == "/v1/identify"]
    assert identify["context"]["traits"] == traits, "RudderStack sends identify's traits in context.traits"
    assert "traits" not in identify
    # Its own headers (AnonymousId, SentAt) were asked for in preflights, and allowed.
    asked = set().union(
        *(header_names(p.headers.get("access-control-request-headers", "")) for p in proxy.preflights())
    )
    assert {"anonymousid", "authorization", "content-type", "sentat"} <= asked
    assert proxy.preflights() and all(p.status == 204 for p in proxy.preflights())
    assert only_local(tab.requested, site.origin, proxy.url) == []
    assert tab.problems == []

    lead, events = web_events(sdk_stack, email)
    assert lead["email"] == email and lead["user_id"] == "crm-2077"
    assert anonymous_id in lead["anonymous_ids"]
    assert {k: lead["traits"].get(k) for k in profile} == profile
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"], "each event once"
    by_type = {e["type"]: e for e in events}
    assert by_type["identify"]["traits"] == traits
    assert by_type["page"]["name"] == "Pricing" and by_type["page"]["page"]["path"] == "/rudderstack"
    assert by_type["track"]["event"] == "Demo Requested"
    assert by_type["track"]["properties"] == {"plan": "team", "seats": 25}
    assert not any(e["bot"] for e in events)
