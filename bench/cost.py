"""Cost benchmark: what one tracked event costs in AWS, through the whole pipeline, on the local stack.

Run on demand (``make bench`` or ``.venv/bin/python bench/cost.py``); it is not a test. It starts
``kindling local`` with its capacity meter on (``KINDLING_METER=1``, see
``infra/kindling_ops/local/meter.py``) and the clock at a fixed Monday morning, then, over HTTP only:

1. the realistic mix: ``--leads`` visitors who become known leads and anonymous visitors, in
   sessions over ``--days`` simulated days (``--events`` web events in all, about 60% page views of
   known leads, 15% anonymous page views, 15% track events the shipped scoring rules reward, 10%
   identifies), posted to ``/v1/batch`` as the website tag sends them (one request per page load,
   and one per form submitted), the clock moved a day at a time so that programs, waits, sends and
   schedules run; 30% of the emails the programs send are opened and 10% clicked (the open pixel and
   a tracked link of each, from ``/_local/outbox``), each click landing on a page of the site;
2. each event kind in isolation (``--isolation`` events each): page views of known leads, anonymous
   page views, scored track events, identifies, and a second delivery of events already processed;
3. an idle minute tick, and the size of the per-lead state items (a scan of the table at the end).

The meter is reset before and read after each phase, once every queue has settled. Figures are per
web event the phase sent. Capacity units follow DynamoDB's documented rules (the meter computes them
from moto's state before and after each call); SQS is billed as an event source mapping uses it
(below); prices are us-east-1 list prices. Targets are printed beside the figures, met or not: the
bench reports, it never fails on them.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import ROOT, header, say, wrapped

#: The stack's clock starts here (a Monday, 08:00 UTC), so every run sees the same days.
START_AT = "2026-03-02T08:00:00Z"
#: Each simulated day the clock stops at 20:00 UTC (15:00 in New York, inside the send window);
#: the day's web traffic happened before it.
CHECKPOINT_HOUR = 20
WRITE_KEY = "bench-write-key"
ADMIN_TOKEN = "bench-admin-token-0123456789"
SITE = "https://acme.example"
#: What share of the emails sent is opened, and clicked (a click is an open too).
OPEN_RATE, CLICK_RATE = 0.30, 0.10
#: The realistic mix by kind, and the event-path weights of the isolation phases.
MIX = {"known_page": 0.60, "anonymous_page": 0.15, "track": 0.15, "identify": 0.10}
KIND_NAMES = {
    "known_page": "page view, known lead",
    "anonymous_page": "page view, anonymous",
    "track": "scored track event",
    "identify": "identify",
}

# --- us-east-1 list prices, as published in 2025 (DynamoDB on-demand after its November 2024 cut);
# no free tier counted. Update them here when AWS changes them. ------------------------------------
DYNAMODB_WRITE_PER_MILLION = 0.625  # on-demand, per million write request units
DYNAMODB_READ_PER_MILLION = 0.125  # on-demand, per million read request units
LAMBDA_REQUEST_PER_MILLION = 0.20
LAMBDA_GB_SECOND_ARM64 = 0.0000133334
HTTP_API_PER_MILLION = 1.00  # the first 300 million requests a month
EVENTBRIDGE_PER_MILLION = 1.00  # custom events, per 64 KB chunk of an entry
SQS_PER_MILLION = 0.40  # standard queues, per 64 KB chunk of a request
FIREHOSE_PER_GB = 0.029  # Direct PUT ingestion, each record rounded up to 5 KB
S3_PUT_PER_THOUSAND = 0.005  # PUT, COPY, POST, LIST
S3_GET_PER_THOUSAND = 0.0004  # GET and every other request
SECRET_PER_MONTH = 0.40
ALARM_PER_MONTH = 0.10  # a standard-resolution metric alarm
DASHBOARD_PER_MONTH = 3.00
# Not in the targets' list, printed beside them:
SES_PER_THOUSAND_EMAILS = 0.10
SECRETS_API_PER_TEN_THOUSAND = 0.05
KMS_KEY_PER_MONTH = 1.00
#: An idle event source mapping keeps long-polling its queue: about 15 empty ReceiveMessage
#: requests a minute per queue (its pollers' 20 s long polls), an assumption AWS does not publish.
IDLE_POLLS_PER_MINUTE = 15
MINUTES_PER_MONTH = 30 * 24 * 60  # 43,200
DAYS_PER_MONTH = 30
VOLUMES = (1_000_000, 100_000_000)

TARGETS = {
    "event_path_wu": 1.9,
    "known_page_wu": 1.4,
    "anonymous_page_wu": 2.0,
    "track_wu": 2.5,
    "identify_wu": 5.0,
    "all_in_wu": 2.4,
    "all_in_ru": 3.3,
    "all_in_put_events": 0.1,
    "all_in_sqs": 1.4,
    "duplicate_wu": 0.0,
    "state_p95_bytes": 1024,
    "dollars_1m": 5.2,
    "dollars_100m": 4.2,
}

PAGES = {
    "/": "Acme - lead nurturing for B2B teams",
    "/product": "Product",
    "/product/lead-scoring": "Lead scoring",
    "/product/integrations": "Integrations",
    "/pricing": "Pricing",
    "/customers": "Customers",
    "/customers/northwind-logistics": "Northwind Logistics cuts time to MQL by half",
    "/customers/globex": "How Globex hands hot accounts to sales",
    "/resources/lead-scoring-roi-guide": "The lead scoring ROI guide",
    "/webinars/mql-to-meeting": "Webinar: from MQL to meeting",
    "/blog/mql-is-not-a-number": "An MQL is not a number",
    "/blog/lead-scoring-models": "Five lead scoring models compared",
    "/docs/getting-started": "Getting started",
    "/docs/api": "REST API",
    "/security": "Security and compliance",
    "/demo": "Book a demo",
    "/signup": "Start your free trial",
    "/careers": "Careers at Acme",
}
#: How often each page is viewed (the scored ones, /pricing, /customers/* and /careers, included).
PAGE_WEIGHTS = {
    "/": 14, "/product": 8, "/product/lead-scoring": 7, "/product/integrations": 5, "/pricing": 8,
    "/customers": 4, "/customers/northwind-logistics": 3, "/customers/globex": 3,
    "/resources/lead-scoring-roi-guide": 5, "/webinars/mql-to-meeting": 3, "/blog/mql-is-not-a-number": 7,
    "/blog/lead-scoring-models": 7, "/docs/getting-started": 6, "/docs/api": 5, "/security": 3,
    "/demo": 2, "/signup": 2, "/careers": 2,
}  # fmt: skip
#: The track events config/scoring.yaml rewards, how often each is sent, the page it is sent from.
TRACKS = {
    "Whitepaper Downloaded": (
        0.35,
        "/resources/lead-scoring-roi-guide",
        {"title": "The lead scoring ROI guide"},
    ),
    "Webinar Registered": (0.25, "/webinars/mql-to-meeting", {"webinar": "From MQL to meeting"}),
    "Webinar Attended": (0.15, "/webinars/mql-to-meeting", {"webinar": "From MQL to meeting", "minutes": 48}),
    "Demo Requested": (0.12, "/demo", {"plan": "team"}),
    "Trial Started": (0.13, "/signup", {"plan": "team", "trial_days": 14}),
}
CAMPAIGNS = (
    ("google", "cpc", "lead-scoring-search", "https://www.google.com/"),
    ("linkedin", "paid-social", "b2b-nurture-playbook", "https://www.linkedin.com/"),
    ("newsletter", "email", "monthly-digest", ""),
    (None, None, None, "https://www.google.com/"),
    (None, None, None, ""),
)
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Katherine",
    "Edsger",
    "Barbara",
    "Donald",
    "Radia",
)
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Hamilton", "Johnson", "Dijkstra", "Liskov", "Knuth", "Perlman")
COMPANIES = (
    ("Northwind Software", "northwind.io", "Software", 420),
    ("Globex", "globex.com", "SaaS", 1200),
    ("Initech Bank", "initech.com", "Financial Services", 3500),
    ("Stark Payments", "starkpay.io", "Fintech", 260),
    ("Shopwise", "shopwise.co", "E-commerce", 150),
    ("Umbrella Health", "umbrella-health.com", "Healthcare", 8000),
    ("Vandelay Industries", "vandelay.com", "Manufacturing", 90),
    ("Prestige Worldwide", "prestigeww.com", "Media", 8),
)
TITLES = ("VP Marketing", "Marketing Manager", "CTO", "Head of Growth", "Software Engineer", "CEO", "Analyst")
TIMEZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", None, None)
_PIXEL = re.compile(r'src="([^"]+/v1/o/[^"]+)"')
_LINK = re.compile(r'href="([^"]+/v1/c/[^"]+)"')


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the traffic ----------------------------------------------------------------------------------
@dataclass
class Visitor:
    anonymous_id: str
    browser: str
    email: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    arrival: int = 0
    activity: float = 1.0
    identified: bool = False


@dataclass
class Request:
    """What the tag sends at once: one page load's page view, or one form's identify and track."""

    at: datetime
    messages: list[dict[str, Any]]
    kinds: list[str]


def _context(
    visitor: Visitor, path: str, referrer: str = "", campaign: tuple[Any, ...] | None = None
) -> dict:
    search = ""
    if campaign and campaign[0]:
        search = "?" + urllib.parse.urlencode(
            {"utm_source": campaign[0], "utm_medium": campaign[1], "utm_campaign": campaign[2]}
        )
    page = {
        "url": SITE + path + search,
        "path": path,
        "title": PAGES[path],
        "referrer": referrer,
        "search": search,
    }
    context: dict[str, Any] = {
        "page": page,
        "userAgent": visitor.browser,
        "locale": "en-US",
        "library": {"name": "kindling-tag", "version": "1.0.0"},
    }
    if campaign and campaign[0]:
        context["campaign"] = {"source": campaign[0], "medium": campaign[1], "name": campaign[2]}
    return context


class Traffic:
    """Seeded messages: the same seed always gives the same visitors, sessions and message ids."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"cost:{seed}")
        self.seed = seed
        self.serial = 0

    def _id(self, visitor: Visitor) -> str:
        self.serial += 1
        return f"{visitor.anonymous_id}.{self.serial}"

    def visitor(self, prefix: str) -> Visitor:
        return Visitor(
            anonymous_id=f"{prefix}-{self.seed}-{self.rng.getrandbits(64):016x}",
            browser=self.rng.choice(BROWSERS),
        )

    def lead(self, index: int) -> Visitor:
        visitor = self.visitor("lead")
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        company, domain, industry, size = self.rng.choice(COMPANIES)
        visitor.email = f"{first}.{last}.{self.seed}.{index}@{domain}".lower()
        visitor.traits = {
            "email": visitor.email,
            "first_name": first,
            "last_name": last,
            "title": self.rng.choice(TITLES),
            "company": company,
            "industry": industry,
            "company_size": size,
        }
        zone = self.rng.choice(TIMEZONES)
        if zone:
            visitor.traits["timezone"] = zone
        visitor.activity = self.rng.paretovariate(1.5)
        return visitor

    def page(
        self, visitor: Visitor, at: datetime, path: str, referrer: str = "", campaign: Any = None
    ) -> dict:
        context = _context(visitor, path, referrer, campaign)
        return {
            "type": "page",
            "messageId": self._id(visitor),
            "anonymousId": visitor.anonymous_id,
            "timestamp": _iso(at),
            "name": PAGES[path],
            "properties": dict(context["page"]),
            "context": context,
        }

    def identify(self, visitor: Visitor, at: datetime, path: str) -> dict:
        return {
            "type": "identify",
            "messageId": self._id(visitor),
            "anonymousId": visitor.anonymous_id,
            "timestamp": _iso(at),
            "traits": dict(visitor.traits),
            "context": _context(visitor, path),
        }

    def track(self, visitor: Visitor, at: datetime, event: str) -> dict:
        _, path, properties = TRACKS[event]
        return {
            "type": "track",
            "messageId": self._id(visitor),
            "anonymousId": visitor.anonymous_id,
            "timestamp": _iso(at),
            "event": event,
            "properties": dict(properties),
            "context": _context(visitor, path),
        }

    def some_page(self) -> str:
        return self.rng.choices(list(PAGE_WEIGHTS), weights=list(PAGE_WEIGHTS.values()))[0]

    def some_track(self) -> str:
        return self.rng.choices(list(TRACKS), weights=[w for w, _, _ in TRACKS.values()])[0]

    # --- sessions --------------------------------------------------------------------------------------
    def session(
        self,
        visitor: Visitor,
        at: datetime,
        *,
        anonymous_pages: int = 0,
        identify: bool = False,
        known_pages: int = 0,
        tracks: int = 0,
        first_visit: bool = False,
    ) -> list[Request]:
        """One visit: page views (anonymous ones first), a form that identifies the visitor (identify and
        perhaps a track in one request), more page views as a known lead, track events on the way."""
        requests: list[Request] = []
        campaign = self.rng.choice(CAMPAIGNS) if first_visit else None
        referrer = campaign[3] if campaign else ""
        total = anonymous_pages + known_pages
        pages = [self.some_page() for _ in range(total)]
        form_track = identify and tracks > 0
        # The form is on the last anonymous page (a first identify) or on any page (a later form).
        form_after = -1
        if identify and total:
            form_after = anonymous_pages - 1 if anonymous_pages else self.rng.randrange(total)
        if identify and form_after < 0:
            requests.append(self._form(visitor, at, form_track))
            at += timedelta(seconds=self.rng.randint(20, 120))
        track_after = sorted(self.rng.randrange(max(total, 1)) for _ in range(tracks - int(form_track)))
        for number, path in enumerate(pages):
            kind = "known_page" if visitor.identified else "anonymous_page"
            landing = campaign if number == 0 else None
            requests.append(Request(at, [self.page(visitor, at, path, referrer, landing)], [kind]))
            referrer = SITE + path
            at += timedelta(seconds=self.rng.randint(20, 240))
            if number == form_after:
                requests.append(self._form(visitor, at, form_track))
                at += timedelta(seconds=self.rng.randint(20, 120))
            while track_after and track_after[0] <= number:
                track_after.pop(0)
                requests.append(Request(at, [self.track(visitor, at, self.some_track())], ["track"]))
                at += timedelta(seconds=self.rng.randint(20, 120))
        for _ in track_after:
            requests.append(Request(at, [self.track(visitor, at, self.some_track())], ["track"]))
            at += timedelta(seconds=self.rng.randint(20, 120))
        return requests

    def _form(self, visitor: Visitor, at: datetime, with_track: bool) -> Request:
        """A form submitted: identify, and the form's track event, sent together within the tag's 250 ms."""
        visitor.identified = True
        event = self.some_track() if with_track else None
        path = TRACKS[event][1] if event else "/resources/lead-scoring-roi-guide"
        messages = [self.identify(visitor, at, path)]
        kinds = ["identify"]
        if event:
            messages.append(self.track(visitor, at, event))
            kinds.append("track")
        return Request(at, messages, kinds)


def _session_start(rng: random.Random, day_start: datetime, visitor: Visitor) -> datetime:
    """Office hours of the visitor's part of the world, ending well before the day's checkpoint."""
    europe = str(visitor.traits.get("timezone", "")).startswith("Europe/")
    return day_start + timedelta(hours=rng.uniform(7 if europe else 12, CHECKPOINT_HOUR - 1.5))


def plan_mix(
    traffic: Traffic, leads: int, events: int, days: int, start: datetime
) -> tuple[list[list[Request]], list[Visitor]]:
    """The realistic mix, day by day: every request of each day, in the order the tag sends them."""
    rng = traffic.rng
    identifying = max(1, min(leads, round(MIX["identify"] * events)))
    people = [traffic.lead(i) for i in range(identifying)]
    for person in people:  # most arrive early enough to come back; a few in the last days
        person.arrival = min(int(rng.random() ** 1.3 * days), days - 1)
    weights = [1.0 if (start + timedelta(days=d)).weekday() < 5 else 0.4 for d in range(days)]
    sessions: list[tuple[int, Visitor, dict[str, Any]]] = []
    # Arrivals: a page or two, a form (identify, often with its track), perhaps a page or two more.
    expected = {"known_page": 0.0, "anonymous_page": 0.0, "track": 0.0, "identify": 0.0}
    for person in people:
        spec = {
            "anonymous_pages": rng.randint(1, 3),
            "identify": True,
            "known_pages": rng.randint(0, 2),
            "tracks": 1 if rng.random() < 0.6 else 0,
            "first_visit": True,
        }
        sessions.append((person.arrival, person, spec))
        expected["anonymous_page"] += spec["anonymous_pages"]
        expected["known_page"] += spec["known_pages"]
        expected["track"] += spec["tracks"]
        expected["identify"] += 1
    # Known leads coming back: 1-8 pages, track events and identifies (later forms) at the rates that
    # fill the mix.
    known_left = max(0.0, MIX["known_page"] * events - expected["known_page"])
    returns = round(known_left / 4.5)
    track_rate = max(0.0, MIX["track"] * events - expected["track"]) / max(returns, 1)
    identify_rate = max(0.0, MIX["identify"] * events - expected["identify"]) / max(returns, 1)
    later_days = [d for d in range(1, days)]
    arrived = {d: [p for p in people if p.arrival < d] for d in later_days}
    activity = {d: list(itertools.accumulate(p.activity for p in arrived[d])) for d in later_days}
    day_weights = [weights[d] * len(arrived[d]) for d in later_days]
    for _ in range(returns if later_days else 0):
        day = rng.choices(later_days, weights=day_weights)[0]
        person = rng.choices(arrived[day], cum_weights=activity[day])[0]
        tracks = int(track_rate) + (1 if rng.random() < track_rate % 1 else 0)
        spec = {"known_pages": rng.randint(1, 8), "identify": rng.random() < identify_rate, "tracks": tracks}
        sessions.append((day, person, spec))
    # Anonymous visitors who never fill a form: 1-8 pages; a third of them come back another day.
    anonymous_left = max(0.0, MIX["anonymous_page"] * events - expected["anonymous_page"])
    strangers: list[Visitor] = []
    pages = 0
    while pages < anonymous_left:
        if strangers and rng.random() < 0.3:
            stranger = rng.choice(strangers)
        else:
            stranger = traffic.visitor("anon")
            strangers.append(stranger)
        count = rng.randint(1, 8)
        pages += count
        day = rng.choices(range(days), weights=weights)[0]
        sessions.append((day, stranger, {"anonymous_pages": count, "first_visit": stranger is strangers[-1]}))
    by_day: list[list[Request]] = [[] for _ in range(days)]
    # Sessions made in the order of their days: a lead's first form comes before its later visits.
    for day, visitor, spec in sorted(sessions, key=lambda s: s[0]):
        day_start = start + timedelta(days=day)
        at = _session_start(rng, day_start, visitor)
        by_day[day] += traffic.session(visitor, at, **spec)
    for requests in by_day:
        requests.sort(key=lambda r: r.at)
    return by_day, people


# --- the stack, over HTTP -----------------------------------------------------------------------------------
class Stack:
    """``kindling local`` in its own process, with the meter on; reached over HTTP only."""

    def __init__(self) -> None:
        from kindling_ops.demo import DemoStack
        from kindling_ops.local.stack import PARAMETER_ENVIRONMENT, free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            "KINDLING_METER": "1",
            "KINDLING_START_AT": START_AT,
            "KINDLING_WRITE_KEY": WRITE_KEY,
            "KINDLING_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        for inherited in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            environment.pop(inherited, None)
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kindling_ops.cli", "local"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.failures: list[str] = []
        for line in self.process.stdout:
            if "is listening on" in line:
                break
        else:
            raise SystemExit("the local stack did not start")
        self.listening = time.perf_counter() - started
        # Keep reading its output (a full pipe would stop it), keeping what the functions failed.
        threading.Thread(target=self._drain, daemon=True).start()
        secret = os.environ.get("KINDLING_WEBHOOK_SECRET") or PARAMETER_ENVIRONMENT["CrmWebhookSecret"][1]
        self.http = DemoStack(self.url, WRITE_KEY, ADMIN_TOKEN, secret)
        self.api_requests = 0
        self.outbox_seen = 0

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("!"):
                self.failures.append(line.rstrip())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def post(self, request: Request, sent_at: datetime) -> None:
        auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        body = json.dumps(
            {"batch": request.messages, "sentAt": _iso(sent_at)}, separators=(",", ":")
        ).encode()
        # The tag posts text/plain (a simple request, no preflight).
        self.http.request("POST", "/v1/batch", body, {"Content-Type": "text/plain", "Authorization": auth})
        self.api_requests += 1

    def get(self, url: str, ok: Iterable[int] = (200,)) -> Any:
        self.api_requests += 1
        return self.http.request("GET", url, headers={"User-Agent": BROWSERS[0]}, ok=ok)

    def now(self) -> datetime:
        return self.http.now()

    def move_to(self, moment: datetime) -> None:
        """Forward to ``moment`` (the stack lives every due instant on the way: it may take a while)."""
        seconds = (moment - self.now()).total_seconds()
        if seconds > 0:
            self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.http.request(
            "POST", "/_local/clock", json.dumps({"advance_seconds": seconds}).encode(), timeout=3 * 3600
        )

    def settle(self) -> None:
        self.http.settle(timeout=3600)

    def reset_meter(self) -> None:
        self.http.request("POST", "/_local/meter/reset")

    def meter(self) -> dict[str, Any]:
        return dict(self.http.request("GET", "/_local/meter", timeout=120).json())

    def new_emails(self) -> list[dict[str, Any]]:
        """The emails SES accepted since the last call."""
        answer = self.http.request("GET", f"/_local/outbox?since={self.outbox_seen}", timeout=600)
        messages = list(answer.json()["messages"])
        self.outbox_seen += len(messages)
        return messages

    def table(self) -> tuple[Any, str]:
        """A DynamoDB client of the embedded AWS (its requests count as the stack's) and the table's name."""
        import boto3

        described = self.http.request("GET", "/_local/aws", timeout=60).json()
        client = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=described["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        return client, str(described["outputs"]["TableName"])

    def quiet(self, minutes: float = 20) -> None:
        """Move the clock past the due work (deferred sends, program steps) that would fall due within
        ``minutes``, so that a phase measured next pays for its own events and idle minute ticks only."""
        from kindling.adapters.due_store import DynamoDueStore
        from kindling.programs.due import hours_between

        client, table = self.table()
        store = DynamoDueStore(table, client)
        for _ in range(100):
            now = self.now()
            horizon = now + timedelta(minutes=minutes)
            cursor = store.cursor()
            start = min(cursor, now) if cursor else now
            due = [
                item.due_at if isinstance(item.due_at, datetime) else _parse(str(item.due_at))
                for hour in hours_between(start, horizon)
                for item in store.due_in_hour(hour, until=horizon)
            ]
            if not due:
                return
            self.move_to(max(max(due), now) + timedelta(minutes=1))
            self.settle()


# --- reading a meter snapshot ----------------------------------------------------------------------------
@dataclass
class Phase:
    """One phase's meter snapshot and the web events it sent."""

    name: str
    events: int
    api_requests: int
    snapshot: dict[str, Any]
    seconds: float
    kinds: Counter[str] = field(default_factory=Counter)
    emails: int = 0

    def _function_rows(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.snapshot[key] if r["caller"] != "stack"]

    def total(self, service: str, operation: str | None = None, field_name: str = "count") -> float:
        return sum(
            r[field_name]
            for r in self._function_rows("requests")
            if r["service"] == service and (operation is None or r["operation"] == operation)
        )

    @property
    def wcu(self) -> float:
        return sum(r["wcu"] for r in self._function_rows("capacity"))

    @property
    def rcu(self) -> float:
        return sum(r["rcu"] for r in self._function_rows("capacity"))

    def invocations(self) -> dict[str, int]:
        return {name: int(v["count"]) for name, v in self.snapshot["invocations"].items() if v["count"]}

    def figures(self) -> dict[str, float]:
        """Per web event: the phase's requests, invocations and units divided by the events it sent."""
        n = max(self.events, 1)
        s3 = [r for r in self._function_rows("requests") if r["service"] == "s3"]
        put_class = ("Put", "Copy", "Post", "List", "Create", "Complete", "Upload", "DeleteObjects")
        return {
            "api_requests": self.api_requests / n,
            "invocations": sum(self.invocations().values()) / n,
            "put_events_entries": self.total("events", "PutEvents", "entries") / n,
            "put_events_billed": self.total("events", "PutEvents", "billed") / n,
            "put_events_bytes": self.total("events", "PutEvents", "bytes") / n,
            "sqs_requests": self.snapshot["sqs_billed"]["total"] / n,
            "firehose_records": self.total("firehose", None, "entries") / n,
            "firehose_billed_bytes": self.total("firehose", None, "billed") / n,
            "s3_put_class": sum(r["count"] for r in s3 if r["operation"].startswith(put_class)) / n,
            "s3_get_class": sum(r["count"] for r in s3 if not r["operation"].startswith(put_class)) / n,
            "dynamodb_calls": self.total("dynamodb") / n,
            "wcu": self.wcu / n,
            "rcu": self.rcu / n,
            "secrets_calls": self.total("secretsmanager") / n,
            "emails": (self.total("sesv2", "SendEmail") + self.total("ses", "SendEmail")) / n,
        }

    def per_function(self) -> dict[str, dict[str, float]]:
        n = max(self.events, 1)
        rows: dict[str, dict[str, float]] = {}
        for r in self._function_rows("capacity"):
            row = rows.setdefault(r["caller"], {"wcu": 0.0, "rcu": 0.0, "calls": 0.0, "invocations": 0.0})
            row["wcu"] += r["wcu"] / n
            row["rcu"] += r["rcu"] / n
        for r in self._function_rows("requests"):
            if r["service"] == "dynamodb":
                rows.setdefault(r["caller"], {"wcu": 0.0, "rcu": 0.0, "calls": 0.0, "invocations": 0.0})
                rows[r["caller"]]["calls"] += r["count"] / n
        for name, count in self.invocations().items():
            rows.setdefault(name, {"wcu": 0.0, "rcu": 0.0, "calls": 0.0, "invocations": 0.0})
            rows[name]["invocations"] = count / n
        return rows

    def per_kind(self) -> dict[str, dict[str, float]]:
        n = max(self.events, 1)
        rows: dict[str, dict[str, float]] = {}
        for r in self._function_rows("capacity"):
            row = rows.setdefault(r["kind"], {"wcu": 0.0, "rcu": 0.0})
            row["wcu"] += r["wcu"] / n
            row["rcu"] += r["rcu"] / n
        return rows

    def durations(self) -> dict[str, float]:
        """Average handler time per invocation, in ms, per function."""
        return {
            name: v["duration_ms"] / v["count"]
            for name, v in self.snapshot["invocations"].items()
            if v["count"]
        }


# --- the template: memory, schedules, queues, fixed resources --------------------------------------------
def template_facts() -> dict[str, Any]:
    from kindling_ops.local.template import load

    document = load(ROOT / "template.yaml")
    resources = document["Resources"]
    default_memory = int(((document.get("Globals") or {}).get("Function") or {}).get("MemorySize", 128))
    memory, api_functions, queues = {}, [], 0
    for logical, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        memory[logical] = int(props.get("MemorySize", default_memory))
        kinds = [event.get("Type") for event in (props.get("Events") or {}).values()]
        if "HttpApi" in kinds:
            api_functions.append(logical)
        queues += kinds.count("SQS")

    def count(kind: str) -> int:
        return sum(1 for r in resources.values() if r.get("Type") == kind)

    return {
        "memory_mb": memory,
        "api_functions": api_functions,
        "event_source_queues": queues,
        "secrets": count("AWS::SecretsManager::Secret"),
        "alarms": count("AWS::CloudWatch::Alarm"),
        "dashboards": count("AWS::CloudWatch::Dashboard"),
        "kms_keys": count("AWS::KMS::Key"),
    }


# --- dollars ------------------------------------------------------------------------------------------
def variable_dollars(phase: Phase, memory: dict[str, int], durations: dict[str, float]) -> dict[str, float]:
    """Dollars per web event, by service (the targets' list), from one phase."""
    f = phase.figures()
    n = max(phase.events, 1)
    gb_seconds = sum(
        count / n * math.ceil(durations.get(name, 0.0)) / 1000 * memory.get(name, 512) / 1024
        for name, count in phase.invocations().items()
    )
    return {
        "dynamodb_writes": f["wcu"] * DYNAMODB_WRITE_PER_MILLION / 1e6,
        "dynamodb_reads": f["rcu"] * DYNAMODB_READ_PER_MILLION / 1e6,
        "lambda_requests": f["invocations"] * LAMBDA_REQUEST_PER_MILLION / 1e6,
        "lambda_duration": gb_seconds * LAMBDA_GB_SECOND_ARM64,
        "http_api": f["api_requests"] * HTTP_API_PER_MILLION / 1e6,
        "eventbridge": f["put_events_billed"] * EVENTBRIDGE_PER_MILLION / 1e6,
        "sqs": f["sqs_requests"] * SQS_PER_MILLION / 1e6,
        "firehose": f["firehose_billed_bytes"] / 1024**3 * FIREHOSE_PER_GB,
        "s3": f["s3_put_class"] * S3_PUT_PER_THOUSAND / 1000 + f["s3_get_class"] * S3_GET_PER_THOUSAND / 1000,
    }


def extra_dollars(phase: Phase) -> dict[str, float]:
    """Dollars per web event of what the targets' list leaves out."""
    f = phase.figures()
    return {
        "ses_emails": f["emails"] * SES_PER_THOUSAND_EMAILS / 1000,
        "secrets_api_calls": f["secrets_calls"] * SECRETS_API_PER_TEN_THOUSAND / 10_000,
    }


def tick_dollars(tick: Phase, memory: dict[str, int], function: str) -> dict[str, float]:
    """One run of a scheduled function, from a phase where it ran (its own requests and units only)."""
    runs = tick.invocations().get(function, 0)
    if not runs:
        return {"runs": 0, "dollars": 0.0, "wcu": 0.0, "rcu": 0.0, "duration_ms": 0.0}
    rows = [r for r in tick.snapshot["capacity"] if r["caller"] == function]
    wcu = sum(r["wcu"] for r in rows) / runs
    rcu = sum(r["rcu"] for r in rows) / runs
    duration = tick.durations().get(function, 0.0)
    dollars = (
        LAMBDA_REQUEST_PER_MILLION / 1e6
        + math.ceil(duration) / 1000 * memory.get(function, 512) / 1024 * LAMBDA_GB_SECOND_ARM64
        + wcu * DYNAMODB_WRITE_PER_MILLION / 1e6
        + rcu * DYNAMODB_READ_PER_MILLION / 1e6
    )
    return {"runs": runs, "dollars": dollars, "wcu": wcu, "rcu": rcu, "duration_ms": duration}


# --- the run --------------------------------------------------------------------------------------------
def measure(stack: Stack, name: str, body: Callable[[], tuple[int, Counter[str]]]) -> Phase:
    """Reset the meter, run ``body`` (it returns the web events it sent), settle, read the meter."""
    stack.settle()
    stack.reset_meter()
    requests_before = stack.api_requests
    began = time.perf_counter()
    events, kinds = body()
    stack.settle()
    snapshot = stack.meter()
    phase = Phase(
        name, events, stack.api_requests - requests_before, snapshot, time.perf_counter() - began, kinds
    )
    if snapshot["errors"]:
        say(f"  ! the meter noted errors in {name}: {snapshot['errors'][:3]}")
    return phase


def engage(
    stack: Stack, by_email: dict[str, Visitor], traffic: Traffic, seed: int, now: datetime
) -> tuple[list[Request], int]:
    """Open and click the emails sent since last time; the page views the clicks land on."""
    landings: list[Request] = []
    emails = stack.new_emails()
    for message in emails:
        rng = random.Random(f"{seed}:{message.get('id')}")
        roll = rng.random()
        html = message.get("html") or ""
        pixel, links = _PIXEL.search(html), _LINK.findall(html)
        if roll < OPEN_RATE and pixel:
            stack.get(pixel.group(1).replace("&amp;", "&"))
        if roll < CLICK_RATE and links:
            answer = stack.get(rng.choice(links).replace("&amp;", "&"), ok=(302,))
            landing = answer.headers.get("Location", "")
            visitor = next((by_email[to] for to in message.get("to", []) if to in by_email), None)
            path = urllib.parse.urlsplit(landing).path or "/"
            if visitor is not None and landing.startswith(SITE) and path in PAGES:
                at = now - timedelta(seconds=5)
                landings.append(Request(at, [traffic.page(visitor, at, path)], ["known_page"]))
    return landings, len(emails)


def run_mix(stack: Stack, args: argparse.Namespace, traffic: Traffic) -> tuple[Phase, list[Visitor]]:
    start = _parse(START_AT).replace(hour=0)
    by_day, people = plan_mix(traffic, args.leads, args.events, args.days, start)
    by_email = {p.email: p for p in people if p.email}
    planned = sum(len(r.messages) for day in by_day for r in day)
    say(f"realistic mix: {planned:,} web events planned for {len(people):,} leads over {args.days} days")
    emails = 0

    def body() -> tuple[int, Counter[str]]:
        nonlocal emails
        kinds: Counter[str] = Counter()
        sent = 0
        for day, requests in enumerate(by_day):
            began = time.perf_counter()
            checkpoint = start + timedelta(days=day, hours=CHECKPOINT_HOUR)
            stack.move_to(checkpoint)
            for request in requests:
                stack.post(request, checkpoint)
                kinds.update(request.kinds)
                sent += len(request.messages)
            stack.settle()
            landings, count = engage(stack, by_email, traffic, args.seed, checkpoint)
            emails += count
            for request in landings:
                stack.post(request, checkpoint)
                kinds.update(request.kinds)
                sent += len(request.messages)
            stack.settle()
            say(
                f"  day {day + 1:>2} ({checkpoint:%a %Y-%m-%d}): {sent:,} events, {emails:,} emails so far "
                f"({time.perf_counter() - began:.1f} s)"
            )
        return sent, kinds

    phase = measure(stack, "realistic mix", body)
    phase.emails = emails
    return phase, people


def run_isolation(
    stack: Stack, args: argparse.Namespace, traffic: Traffic, people: list[Visitor]
) -> dict[str, Phase]:
    rng = random.Random(f"cost:{args.seed}:isolation")
    known = [p for p in people if p.identified]
    count = args.isolation
    phases: dict[str, Phase] = {}
    sent: dict[str, list[Request]] = {}

    def post_all(requests: list[Request], now: datetime) -> tuple[int, Counter[str]]:
        kinds: Counter[str] = Counter()
        for request in requests:
            stack.post(request, now)
            kinds.update(request.kinds)
        return sum(len(r.messages) for r in requests), kinds

    def at() -> datetime:
        return stack.now() - timedelta(seconds=30)

    def known_pages() -> tuple[int, Counter[str]]:
        when = at()
        requests = [
            Request(when, [traffic.page(rng.choice(known), when, traffic.some_page())], ["known_page"])
            for _ in range(count)
        ]
        sent["known_page"] = requests
        return post_all(requests, when + timedelta(seconds=30))

    strangers: list[Visitor] = []

    def anonymous_pages() -> tuple[int, Counter[str]]:
        when = at()
        requests: list[Request] = []
        while len(requests) < count:
            stranger = traffic.lead(100_000 + len(strangers))  # they identify in the identify phase
            strangers.append(stranger)
            pages = min(rng.randint(1, 8), count - len(requests))
            requests += traffic.session(stranger, when, anonymous_pages=pages, first_visit=True)
        sent["anonymous_page"] = requests
        return post_all(requests, max(r.at for r in requests) + timedelta(seconds=1))

    def tracks() -> tuple[int, Counter[str]]:
        when = at()
        requests = [
            Request(when, [traffic.track(rng.choice(known), when, traffic.some_track())], ["track"])
            for _ in range(count)
        ]
        sent["track"] = requests
        return post_all(requests, when + timedelta(seconds=30))

    def identifies() -> tuple[int, Counter[str]]:
        when = at()
        first = min(len(strangers), round(count * 0.4))
        requests = [traffic._form(visitor, when, False) for visitor in strangers[:first]]
        for visitor in rng.choices(known, k=count - first):
            if rng.random() < 0.2:
                visitor.traits["title"] = rng.choice(TITLES)
            requests.append(Request(when, [traffic.identify(visitor, when, "/demo")], ["identify"]))
        sent["identify"] = requests
        return post_all(requests, when + timedelta(seconds=30))

    def duplicates() -> tuple[int, Counter[str]]:
        again: list[Request] = []
        for kind, share in MIX.items():
            again += sent[kind][: max(1, round(count * share))]
        events, _ = post_all(again, stack.now())
        return events, Counter({"duplicate": events})

    for kind, body in (
        ("known_page", known_pages),
        ("anonymous_page", anonymous_pages),
        ("track", tracks),
        ("identify", identifies),
        ("duplicate", duplicates),
    ):
        stack.quiet()
        phases[kind] = measure(stack, KIND_NAMES.get(kind, "duplicate delivery"), body)
        say(f"  {phases[kind].name}: {phases[kind].events} events ({phases[kind].seconds:.1f} s)")
    return phases


def state_item_sizes(stack: Stack) -> dict[str, dict[str, float]]:
    """p50, p95 and max size of each per-lead item with a fixed sort key (``LEAD/PROFILE``, ...)."""
    from kindling_ops.local.meter import item_size

    client, table = stack.table()
    sizes: dict[str, list[int]] = {}
    for page in client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(PK, :lead) AND NOT contains(SK, :hash)",
        ExpressionAttributeValues={":lead": {"S": "LEAD#"}, ":hash": {"S": "#"}},
    ):
        for item in page["Items"]:
            sizes.setdefault(f"LEAD/{item['SK']['S']}", []).append(item_size(item))
    found = {}
    for kind, values in sorted(sizes.items()):
        values.sort()
        found[kind] = {
            "items": len(values),
            "p50": statistics.median(values),
            "p95": values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)],
            "max": values[-1],
        }
    return found


# --- printing -----------------------------------------------------------------------------------------
def _mark(value: float, target: float, sign: str = "<=") -> str:
    met = {"<=": value <= target, "<": value < target, "=": value == target}[sign]
    return f"(target {sign} {target:g}: {'met' if met else 'NOT met'})"


def _weighted(phases: dict[str, Phase], key: str) -> float:
    return sum(share * phases[kind].figures()[key] for kind, share in MIX.items())


def report(
    args: argparse.Namespace,
    stack: Stack,
    mix: Phase,
    isolation: dict[str, Phase],
    idle: Phase,
    states: dict[str, dict[str, float]],
    seconds: float,
) -> dict[str, Any]:
    facts = template_facts()
    memory = facts["memory_mb"]
    f = mix.figures()
    n = max(mix.events, 1)
    figures: dict[str, Any] = {"settings": vars(args), "wall_seconds": round(seconds, 1)}
    say()
    say(
        f"Cost per tracked event: --leads {args.leads} --events {args.events} --days {args.days} "
        f"--seed {args.seed} --isolation {args.isolation}, on `kindling local` with KINDLING_METER=1"
    )
    say(f"  stack listening after {stack.listening:.1f} s; the whole run took {seconds / 60:.1f} min")
    wrapped(
        "SQS model: Lambda's event source mapping makes 1 ReceiveMessage and 1 DeleteMessageBatch per "
        "SQS-fed invocation, and EventBridge 1 SendMessage per event it delivers to a queue; the functions' "
        "own SQS requests count as made (each 64 KB chunk a request). The local queue pump's own requests "
        "(single receives, deletes, empty polls) are not billed. Every figure counts the functions' AWS "
        "requests only, never the local stack's own.",
        "  ",
    )

    # --- the realistic mix ---
    sent = sum(mix.kinds.values())
    shares = ", ".join(f"{KIND_NAMES[k]} {mix.kinds[k] / max(sent, 1):.0%}" for k in MIX)
    say()
    say("Realistic mix, all-in (with the emails, program steps and SES events the events cause):")
    say(f"  {mix.events:,} web events ({shares})")
    say(f"  {mix.api_requests:,} API requests, {mix.emails:,} emails sent, in {mix.seconds / 60:.1f} min")
    wrapped(
        "POST /v1/batch as the website tag sends it: one request per page load, and one per form submitted "
        f"(its identify and track event); {OPEN_RATE:.0%} of the emails opened, {CLICK_RATE:.0%} clicked.",
        "  ",
    )
    say("  per web event:")
    rows: list[tuple[str, float, str | None]] = [
        ("API requests", f["api_requests"], None),
        ("Lambda invocations", f["invocations"], None),
        ("PutEvents entries", f["put_events_entries"], "all_in_put_events"),
        ("SQS requests (billed model)", f["sqs_requests"], "all_in_sqs"),
        ("Firehose records", f["firehose_records"], None),
        ("DynamoDB calls", f["dynamodb_calls"], None),
        ("write units (WU)", f["wcu"], "all_in_wu"),
        ("read units (RU)", f["rcu"], "all_in_ru"),
    ]
    for label, value, target in rows:
        say(f"    {label:<30} {value:8.3f}  {_mark(value, TARGETS[target]) if target else ''}".rstrip())
    durations = mix.durations()
    say("  Lambda invocations per web event, by function (average handler time here, against moto):")
    for name, count in sorted(mix.invocations().items(), key=lambda kv: -kv[1]):
        note = f"{durations.get(name, 0):6.1f} ms, {memory.get(name, 512)} MB"
        say(f"    {name:<30} {count / n:8.3f}  ({note})")
    say("  write and read units and DynamoDB calls per web event, by function:")
    for name, row in sorted(mix.per_function().items(), key=lambda kv: -kv[1]["wcu"]):
        if row["wcu"] or row["rcu"] or row["calls"]:
            say(f"    {name:<30} {row['wcu']:8.3f} WU {row['rcu']:8.3f} RU {row['calls']:7.3f} calls")
    say("  write units per web event, by item kind (top 15):")
    for kind, row in sorted(mix.per_kind().items(), key=lambda kv: -kv[1]["wcu"])[:15]:
        say(f"    {kind:<30} {row['wcu']:8.3f} WU {row['rcu']:8.3f} RU")
    figures["all_in"] = {
        "events": mix.events,
        "kinds": dict(mix.kinds),
        "api_requests": mix.api_requests,
        "emails": mix.emails,
        "seconds": round(mix.seconds, 1),
        "per_event": f,
        "invocations_per_event": {k: v / n for k, v in mix.invocations().items()},
        "duration_ms": durations,
        "per_function": mix.per_function(),
        "per_kind": mix.per_kind(),
        "snapshot": mix.snapshot,
    }

    # --- event kinds in isolation ---
    say()
    say(f"Each kind in isolation ({args.isolation} events each, until the queues settle, clock not moved):")
    say(f"    {'per web event':<28} {'WU':>7} {'RU':>7} {'calls':>6} {'PutEv':>6} {'SQS':>6} {'invoc':>6}")

    def line(label: str, p: dict[str, float], mark: str) -> None:
        numbers = (
            f"{p['wcu']:7.3f} {p['rcu']:7.3f} {p['dynamodb_calls']:6.2f} {p['put_events_entries']:6.2f} "
            f"{p['sqs_requests']:6.2f} {p['invocations']:6.2f}"
        )
        say(f"    {label:<28} {numbers}  {mark}")

    figures["isolation"] = {}
    for kind, phase in isolation.items():
        p = phase.figures()
        line(phase.name, p, _mark(p["wcu"], TARGETS[f"{kind}_wu"], "=" if kind == "duplicate" else "<="))
        figures["isolation"][kind] = {
            "events": phase.events,
            "per_event": p,
            "per_function": phase.per_function(),
            "per_kind": phase.per_kind(),
            "snapshot": phase.snapshot,
        }
    path = {key: _weighted(isolation, key) for key in mix.figures()}
    line("event path (60/15/15/10)", path, _mark(path["wcu"], TARGETS["event_path_wu"]))
    say("  write units per web event, by item kind:")
    for phase in isolation.values():
        top = sorted(phase.per_kind().items(), key=lambda kv: -kv[1]["wcu"])[:6]
        text = ", ".join(f"{k} {v['wcu']:.2f}" for k, v in top if v["wcu"])
        wrapped(f"{phase.name}: {text or 'none'}", "    ", "  ")
    figures["event_path"] = {"per_event": path}

    # --- per-lead state ---
    say()
    say("Per-lead state items (a fixed sort key per lead), bytes by DynamoDB's rules:")
    worst = 0.0
    for kind, row in states.items():
        worst = max(worst, row["p95"])
        sizes = f"p50 {row['p50']:6.0f}  p95 {row['p95']:6.0f}  max {row['max']:6.0f}"
        say(f"    {kind:<30} {row['items']:7,} items  {sizes}")
    say(f"    largest p95: {worst:.0f} bytes  {_mark(worst, TARGETS['state_p95_bytes'], '<')}")
    figures["state_items"] = states

    # --- dollars ---
    variable = variable_dollars(mix, memory, durations)
    extra = extra_dollars(mix)
    tick = tick_dollars(idle, memory, "DueWorkFunction")
    sweep = tick_dollars(mix, memory, "SalesSweepFunction")
    polls = facts["event_source_queues"] * IDLE_POLLS_PER_MINUTE * MINUTES_PER_MONTH
    fixed = {
        "minute tick": MINUTES_PER_MONTH * tick["dollars"],
        "daily sales sweep": DAYS_PER_MONTH * sweep["dollars"],
        "idle SQS polling": polls * SQS_PER_MILLION / 1e6,
        "secrets": facts["secrets"] * SECRET_PER_MONTH,
        "alarms": facts["alarms"] * ALARM_PER_MONTH,
        "dashboard": facts["dashboards"] * DASHBOARD_PER_MONTH,
    }
    notes = {
        "minute tick": f"{MINUTES_PER_MONTH:,} runs; an idle tick: {tick['rcu']:.2f} RU, "
        f"{tick['wcu']:.2f} WU, {tick['duration_ms']:.0f} ms",
        "daily sales sweep": f"{DAYS_PER_MONTH} runs; a run in the mix: {sweep['rcu']:.2f} RU, "
        f"{sweep['wcu']:.2f} WU, {sweep['duration_ms']:.0f} ms",
        "idle SQS polling": f"{facts['event_source_queues']} queues x {IDLE_POLLS_PER_MINUTE} empty receives "
        "a minute (assumed)",
        "secrets": f"{facts['secrets']} in template.yaml",
        "alarms": f"{facts['alarms']} in template.yaml",
        "dashboard": f"{facts['dashboards']} in template.yaml",
    }
    fixed_extra = {"KMS key": facts["kms_keys"] * KMS_KEY_PER_MONTH}
    per_event = sum(variable.values())
    say()
    say("Dollars, us-east-1 list prices (no free tier), per million web events of the realistic mix:")
    for name, value in variable.items():
        say(f"    {name:<30} ${value * 1e6:8.3f}")
    say(f"    {'variable only':<30} ${per_event * 1e6:8.3f}")
    wrapped(
        "Lambda duration: each function's average handler time measured here (against moto, one AWS "
        "request at a time), its memory from template.yaml, billed per 1 ms.",
        "  ",
    )
    say("  Fixed, a month (they do not scale with events):")
    for name, value in fixed.items():
        say(f"    {name:<30} ${value:8.3f}  ({notes[name]})")
    fixed_total = sum(fixed.values())
    say(f"    {'fixed total':<30} ${fixed_total:8.3f}")
    say("  Per million web events, at a month's volume:")
    dollars: dict[str, Any] = {"variable_per_million": per_event * 1e6, "fixed_per_month": fixed, "at": {}}
    for volume, key in zip(VOLUMES, ("dollars_1m", "dollars_100m"), strict=True):
        with_fixed = per_event * 1e6 + fixed_total / (volume / 1e6)
        dollars["at"][str(volume)] = {"variable_only": per_event * 1e6, "with_fixed": with_fixed}
        label = f"{volume / 1e6:,.0f}M events a month"
        say(
            f"    {label:<22} variable only ${per_event * 1e6:7.3f}, with fixed costs ${with_fixed:7.3f}  "
            f"{_mark(with_fixed, TARGETS[key])}"
        )
    extra_total = sum(extra.values()) * 1e6
    say("  Not in the targets' list (left out above):")
    say(f"    {'SES ($0.10 per 1,000 emails)':<36} ${extra['ses_emails'] * 1e6:8.3f} per million events")
    say(f"    {'Secrets Manager API calls':<36} ${extra['secrets_api_calls'] * 1e6:8.3f} per million events")
    say(f"    {'KMS key of the alarm topic':<36} ${fixed_extra['KMS key']:8.3f} a month")
    wrapped(
        "Not measured: the EventBridge archive ($0.10 per GB archived; the functions' PutEvents entries hold "
        f"{f['put_events_bytes']:,.0f} bytes per web event), CloudWatch Logs, DynamoDB storage and backups.",
        "    ",
    )
    for volume in VOLUMES:
        total = per_event * 1e6 + extra_total + (fixed_total + sum(fixed_extra.values())) / (volume / 1e6)
        say(f"    with those, at {volume / 1e6:,.0f}M events a month: ${total:7.3f} per million")
    dollars.update({"variable": variable, "extra_per_event": extra, "fixed_extra_per_month": fixed_extra})
    dollars["idle_tick"] = tick
    dollars["sales_sweep"] = sweep
    figures["dollars"] = dollars
    figures["template"] = facts
    figures["targets"] = TARGETS
    if stack.failures:
        say()
        say(f"Function failures the stack printed ({len(stack.failures)}), the first ones:")
        for failure in stack.failures[:5]:
            wrapped(failure, "    ", "  ")
    figures["failures"] = stack.failures
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--leads", type=int, default=2000, help="visitors who become known leads (default 2000)"
    )
    parser.add_argument(
        "--events", type=int, default=50_000, help="web events of the realistic mix (default 50000)"
    )
    parser.add_argument(
        "--days", type=int, default=30, help="simulated days of the realistic mix (default 30)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the traffic's seed (default 7)")
    parser.add_argument(
        "--isolation", type=int, default=200, help="events per kind in isolation (default 200)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args()
    if args.leads < 1 or args.events < 10 or args.days < 2 or args.isolation < 10:
        parser.error("needs --leads >= 1, --events >= 10, --days >= 2 and --isolation >= 10")
    header("cost")
    began = time.perf_counter()
    traffic = Traffic(args.seed)
    stack = Stack()
    try:
        say(f"the local stack is listening after {stack.listening:.1f} s (meter on, clock at {START_AT})")
        mix, people = run_mix(stack, args, traffic)
        isolation = run_isolation(stack, args, traffic, people)

        def idle_minute() -> tuple[int, Counter[str]]:
            stack.advance(60)
            return 0, Counter()

        stack.quiet()
        idle = measure(stack, "an idle minute", idle_minute)
        states = state_item_sizes(stack)
    finally:
        stack.stop()
    figures = report(args, stack, mix, isolation, idle, states, time.perf_counter() - began)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=1, default=str)
        say(f"\nEvery figure: {args.json}")


if __name__ == "__main__":
    main()
