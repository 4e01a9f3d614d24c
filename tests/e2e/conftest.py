"""Start `kindling local` as a user would, in its own process, and drive it over HTTP."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kindling.metrics.counters import FOLD_LAG
from kindling_ops.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
WRITE_KEY = "e2e-write-key"
ADMIN_TOKEN = "e2e-admin-token-0123456789"
ALLOWED_ORIGIN = "https://www.acme.io"
HANDOFF_SECRET = "whsec_" + base64.b64encode(b"e2e-handoff-signing-key-32bytes!").decode()
#: The shipped send window's zone (config/email.yaml): emails go out on weekdays, 08:00-18:00 there.
SEND_WINDOW_ZONE = ZoneInfo("America/New_York")
#: How long a reader waits for the reports to count what just happened: the metrics fold counts
#: events FOLD_LAG old and older, every ten minutes (and half a minute to spare).
METRICS_WAIT = FOLD_LAG + timedelta(minutes=10, seconds=30)


def weekday_morning(after: datetime) -> datetime:
    """The first weekday 09:00 in the send window's zone at or after ``after``.

    A stack that starts its clock there lets a test that sends email find the window open
    whatever the hour the suite runs at, with the whole working day ahead of it.
    """
    day = after.astimezone(SEND_WINDOW_ZONE).date()
    while True:
        morning = datetime.combine(day, wall_time(9), tzinfo=SEND_WINDOW_ZONE)
        if morning.weekday() < 5 and morning >= after:
            return morning.astimezone(UTC)
        day += timedelta(days=1)


class SalesReceiver:
    """The sales team's webhook endpoint: verifies each request the way a receiver would.

    It refuses the first delivery of every webhook id with a 503, as a receiver that is
    briefly down would, so the tests also see the retry arrive.
    """

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.verified: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                webhook_id = headers.get("webhook-id", "")
                first = all(d["id"] != webhook_id for d in receiver.deliveries)
                receiver.deliveries.append({"id": webhook_id, "refused": first})
                if first:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    payload = Webhook(HANDOFF_SECRET).verify(body, headers)
                except WebhookVerificationError:
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.verified.append({"id": webhook_id, "payload": payload})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/kindling"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class RunningStack:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    sales: SalesReceiver | None = None

    @property
    def aws_endpoint(self) -> str:
        for line in self.output:
            match = re.search(r"embedded AWS \(moto\) on (\S+)", line)
            if match:
                return f"http://{match.group(1)}"
        raise AssertionError("the stack did not say where its AWS endpoint is")

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def settle(self, timeout: float = 20) -> None:
        response = requests.post(
            f"{self.url}/_local/settle", params={"timeout": timeout}, timeout=timeout + 5
        )
        assert response.status_code == 200, response.text

    def advance(self, seconds: float) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_local/clock", json={"advance_seconds": seconds}, timeout=60)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def lead_by_email(self, email: str) -> requests.Response:
        return requests.get(f"{self.url}/v1/leads", params={"email": email}, headers=self.admin(), timeout=10)


def start_stack(
    *extra_args: str,
    env: dict[str, str] | None = None,
    sales: SalesReceiver | None = None,
    shipped_programs: bool = False,
    start_at: datetime | None = None,
) -> RunningStack:
    """Start `kindling local`, without the shipped programs unless asked: tests count their own emails.

    Its clock is the real one unless ``start_at`` moves its start (``weekday_morning`` for
    tests that need the send window open). Signed webhooks to ``sales`` need the real one:
    the receiver refuses a timestamp hours away from its own clock, as receivers do.
    """
    port = free_port()
    starting = ["--start-at", start_at.isoformat()] if start_at else []
    environment = {
        **os.environ,
        "PORT": str(port),
        "KINDLING_WRITE_KEY": WRITE_KEY,
        "KINDLING_ADMIN_TOKEN": ADMIN_TOKEN,
        "KINDLING_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
        "PYTHONUNBUFFERED": "1",
        "KINDLING_HANDOFF_SECRET": HANDOFF_SECRET,
        **({"KINDLING_HANDOFF_URL": sales.url} if sales else {}),
        **(env or {}),
    }
    for inherited in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        environment.pop(inherited, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kindling_ops.cli", "local", *starting, *extra_args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = RunningStack(url=f"http://127.0.0.1:{port}", process=process, sales=sales)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line.rstrip())
            if "is listening on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready.is_set():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the local stack did not start:\n" + "\n".join(stack.output))
        ready.wait(0.1)
    if not shipped_programs and not extra_args:
        cleared = requests.post(f"{stack.url}/_local/config", json={"programs": {"programs": {}}}, timeout=30)
        assert cleared.status_code == 200, cleared.text
    return stack


def stop_stack(stack: RunningStack) -> int:
    stack.process.send_signal(signal.SIGTERM)
    try:
        return stack.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise AssertionError("the stack did not stop:\n" + "\n".join(stack.output[-30:])) from None


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    sales = SalesReceiver()
    running = start_stack(sales=sales)
    yield running
    sales.close()
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])
    assert "stopped." in running.output[-1]


# --- headless Chromium (Debian's package, driven by Playwright) ---------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Headless Chromium's own user agent says "HeadlessChrome", which the crawler list flags as a
#: bot (test_headless_chromium_is_stored_but_flagged_as_a_bot shows that). The visitor tests
#: browse as the desktop Chrome they stand in for, so their events count as a person's.
DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (needs root and apt)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
