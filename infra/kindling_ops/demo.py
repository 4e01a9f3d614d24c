"""``kindling demo``: a few hundred leads over several simulated weeks, on the running local stack.

Everything goes over HTTP, the way the outside world reaches a deployed stack: a website tag
posts page views, identifies and track events to ``/v1/batch``; recipients open and click the
emails they find in the outbox (the open pixel and the tracked links); a CRM posts signed deal
stage changes to ``/v1/webhooks/generic``. Between days the stack's clock moves forward, so
programs, waits and schedules run as they would over weeks.

The traffic is planned by pure functions of a ``random.Random`` and the first simulated day
(``make_leads``, ``events_for_day``, ``crm_moves_for_day``, ``engagement``), so a seed always
gives the same visitors, forms, deals and engagement. ``DemoStack`` is the HTTP side and
``run_demo`` puts the two together and prints the reports at the end.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

SITE = "https://acme.example"
#: Each simulated day the clock stops at this hour (UTC). It is 15:00 in New York, inside the default
#: send window (weekdays 08:00-18:00 there), so what the day's traffic triggers goes out that day.
CHECKPOINT_HOUR = 20
#: Web traffic of a day happens before the checkpoint (an event may not lie in the stack's future).
LAST_EVENT_HOUR = 19
#: A batch request stays well under the API's 500 KB.
MAX_BATCH_BYTES = 256 * 1024
TAG_LIBRARY = {"name": "kindling-tag", "version": "1.0.0"}
MAIL_CLIENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
)
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


# --- who the leads are -----------------------------------------------------------------------
@dataclass(frozen=True)
class Company:
    name: str
    domain: str
    industry: str
    size: int


#: The first five industries are the ones config/scoring.yaml's fit rules reward.
COMPANIES = (
    Company("Northwind Software", "northwind.io", "Software", 420),
    Company("Globex", "globex.com", "SaaS", 1200),
    Company("Pied Piper", "piedpiper.io", "Software", 35),
    Company("Initech Bank", "initech.com", "Financial Services", 3500),
    Company("Stark Payments", "starkpay.io", "Fintech", 260),
    Company("Shopwise", "shopwise.co", "E-commerce", 150),
    Company("Hooli", "hooli.xyz", "Software", 12000),
    Company("Umbrella Health", "umbrella-health.com", "Healthcare", 8000),
    Company("Wonka Foods", "wonkafoods.com", "Manufacturing", 2200),
    Company("Vandelay Industries", "vandelay.com", "Manufacturing", 90),
    Company("Sterling Cooper", "sterlingcooper.com", "Marketing Agency", 300),
    Company("Bluth Realty", "bluthrealty.com", "Real Estate", 45),
    Company("Prestige Worldwide", "prestigeww.com", "Media", 8),
    Company("Oceanic Airlines", "oceanic-air.com", "Travel", 15000),
)
#: A few visitors no marketer wants to nurture: students and a competitor (scoring's fit rules mark them).
STUDENT = Company("State University", "stateu.edu", "Education", 30000)
COMPETITOR = Company("HubSpot", "hubspot.com", "Software", 7000)


@dataclass(frozen=True)
class Persona:
    key: str
    titles: tuple[str, ...]
    weight: float
    #: Share of cold, warm and hot leads among this persona.
    intent: tuple[float, float, float]


PERSONAS = (
    Persona(
        "marketing-leader",
        ("CMO", "VP Marketing", "Head of Growth", "Director of Demand Generation", "Marketing Director"),
        0.25,
        (0.35, 0.40, 0.25),
    ),
    Persona(
        "practitioner",
        ("Marketing Manager", "Growth Marketer", "Marketing Operations Manager", "RevOps Analyst"),
        0.25,
        (0.45, 0.40, 0.15),
    ),
    Persona(
        "technical",
        ("CTO", "Software Engineer", "Solutions Architect", "Staff Engineer", "Developer Advocate"),
        0.2,
        (0.45, 0.35, 0.20),
    ),
    Persona("executive", ("CEO", "Founder", "COO", "Head of Sales"), 0.12, (0.40, 0.35, 0.25)),
    Persona(
        "other", ("Account Executive", "Analyst", "Recruiter", "Office Manager"), 0.18, (0.75, 0.20, 0.05)
    ),
)
FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Katherine", "Dorothy", "Edsger", "Barbara", "Donald",
    "Frances", "John", "Radia", "Tim", "Hedy", "Ken", "Shafi", "Leslie", "Sophie", "Yukihiro", "Guido",
    "Anita", "Vint", "Whitfield", "Mary", "Jean", "Ivan", "Carol", "Raj", "Priya", "Chen", "Amara",
    "Mateo", "Lucia", "Kwame", "Ingrid", "Omar", "Noor", "Diego", "Elena",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Johnson", "Vaughan", "Dijkstra", "Liskov",
    "Knuth", "Allen", "Backus", "Perlman", "Berners-Lee", "Lamarr", "Thompson", "Goldwasser", "Lamport",
    "Wilson", "Matsumoto", "Rossum", "Borg", "Cerf", "Diffie", "Keller", "Sammet", "Sutherland", "Shaw",
    "Reddy", "Patel", "Wei", "Okafor", "Garcia", "Fernandez", "Mensah", "Larsen", "Haddad", "Rahman",
    "Morales", "Petrova",
)  # fmt: skip
TIMEZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Berlin")


@dataclass(frozen=True)
class Channel:
    """How a visitor first arrives: a paid campaign (UTM), a referring site, or nothing (direct)."""

    key: str
    weight: float
    landing: str
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    referrer: str | None = None

    def campaign_context(self) -> dict[str, Any]:
        """``context.campaign`` as the tag fills it from the ``utm_*`` parameters."""
        return {"source": self.source, "medium": self.medium, "name": self.campaign}

    def search(self) -> str:
        if self.source is None:
            return ""
        return "?" + urllib.parse.urlencode(
            {"utm_source": self.source, "utm_medium": self.medium, "utm_campaign": self.campaign}
        )


CHANNELS = (
    Channel("google-ads", 0.25, "/product/lead-scoring", "google", "cpc", "lead-scoring-search",
            "https://www.google.com/"),
    Channel("linkedin", 0.2, "/resources/lead-scoring-roi-guide", "linkedin", "paid-social",
            "b2b-nurture-playbook", "https://www.linkedin.com/"),
    Channel("newsletter", 0.1, "/blog/mql-is-not-a-number", "newsletter", "email", "monthly-digest"),
    Channel("organic", 0.15, "/blog/lead-scoring-models", referrer="https://www.google.com/"),
    Channel("g2", 0.05, "/customers", referrer="https://www.g2.com/products/acme/reviews"),
    Channel("direct", 0.25, "/"),
)  # fmt: skip
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
    "/docs/architecture": "Architecture overview",
    "/security": "Security and compliance",
    "/demo": "Book a demo",
    "/signup": "Start your free trial",
    "/careers": "Careers at Acme",
}
#: What each persona tends to read, besides the home page.
READING = {
    "marketing-leader": ("/product", "/product/lead-scoring", "/customers", "/customers/globex",
                         "/blog/mql-is-not-a-number", "/resources/lead-scoring-roi-guide"),
    "practitioner": ("/product/lead-scoring", "/product/integrations", "/blog/lead-scoring-models",
                     "/docs/getting-started", "/customers/northwind-logistics"),
    "technical": ("/docs/api", "/docs/architecture", "/security", "/product/integrations",
                  "/docs/getting-started"),
    "executive": ("/product", "/customers", "/customers/northwind-logistics", "/security"),
    "other": ("/", "/blog/lead-scoring-models", "/careers", "/product"),
}  # fmt: skip
#: Forms a visitor fills in (and the webinar it attends), each with the page it sits on.
FORMS = {
    "Whitepaper Downloaded": "/resources/lead-scoring-roi-guide",
    "Webinar Registered": "/webinars/mql-to-meeting",
    "Webinar Attended": "/webinars/mql-to-meeting",
    "Demo Requested": "/demo",
    "Trial Started": "/signup",
}
FORM_PROPERTIES: dict[str, dict[str, Any]] = {
    "Whitepaper Downloaded": {"title": "The lead scoring ROI guide"},
    "Webinar Registered": {"webinar": "From MQL to meeting"},
    "Webinar Attended": {"webinar": "From MQL to meeting", "minutes": 48},
    "Demo Requested": {"plan": "team"},
    "Trial Started": {"plan": "team", "trial_days": 14},
}
INTENTS = ("cold", "warm", "hot")
#: Chance of coming back on any given day, by intent; the chance of opening and of clicking an email.
RETURN_RATE = {"cold": 0.02, "warm": 0.06, "hot": 0.12}
OPEN_RATE = {"cold": 0.3, "warm": 0.5, "hot": 0.65}
CLICK_RATE = {"cold": 0.15, "warm": 0.3, "hot": 0.45}
UNSUBSCRIBE_RATE = {"cold": 0.04, "warm": 0.01, "hot": 0.0}
#: The sales reps who own the deals. Deals move through config/crm.yaml's generic stage names:
#: discovery (sql), proposal (opportunity), won (customer) and lost (closed_lost).
DEAL_OWNERS = ("dana@acme.example", "li@acme.example", "sam@acme.example")


@dataclass(frozen=True)
class CrmMove:
    """One change a CRM reports about a lead's deal."""

    day: int
    email: str
    deal_id: str
    stage: str
    hour: float
    amount: float | None = None
    owner: str | None = None

    def occurred_at(self, start: datetime) -> datetime:
        return start + timedelta(days=self.day, hours=self.hour)


@dataclass(frozen=True)
class Lead:
    """A visitor and the journey planned for it: when it arrives, fills a form, talks to sales."""

    index: int
    anonymous_id: str
    first_name: str
    last_name: str
    email: str
    company: Company
    title: str
    persona: str
    intent: str
    channel: Channel
    timezone: str | None
    browser: str
    arrival: int
    #: Day -> the track events of the forms filled in that day (the first one identifies the visitor).
    forms: dict[int, tuple[str, ...]]
    crm: tuple[CrmMove, ...] = ()

    @property
    def identify_day(self) -> int | None:
        return min(self.forms) if self.forms else None

    def traits(self) -> dict[str, Any]:
        traits: dict[str, Any] = {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "title": self.title,
            "company": self.company.name,
            "industry": self.company.industry,
            "company_size": self.company.size,
        }
        if self.timezone:
            traits["timezone"] = self.timezone
        return traits


def _pick(rng: random.Random, weighted: Iterable[Any], weight: Callable[[Any], float]) -> Any:
    items = list(weighted)
    return rng.choices(items, weights=[weight(i) for i in items])[0]


def make_leads(rng: random.Random, count: int, days: int) -> list[Lead]:
    """``count`` visitors arriving over ``days`` days, each with a planned journey."""
    if count < 1 or days < 1:
        raise ValueError("a demo needs at least one lead and one day")
    leads = []
    used: set[str] = set()
    for index in range(count):
        persona = _pick(rng, PERSONAS, lambda p: p.weight)
        roll = rng.random()
        company = STUDENT if roll < 0.03 else COMPETITOR if roll < 0.04 else rng.choice(COMPANIES)
        title = "Student" if company is STUDENT else rng.choice(persona.titles)
        intent = rng.choices(INTENTS, weights=persona.intent)[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}".lower().replace("-", "")
        email = f"{local}@{company.domain}"
        serial = 2
        while email in used:
            email, serial = f"{local}{serial}@{company.domain}", serial + 1
        used.add(email)
        # Most arrive early enough to get somewhere; a few arrive in the last days.
        arrival = min(int(rng.random() ** 1.3 * days), days - 1)
        forms = _plan_forms(rng, intent, arrival, days)
        lead = Lead(
            index=index,
            anonymous_id=f"demo-{rng.getrandbits(64):016x}",
            first_name=first,
            last_name=last,
            email=email,
            company=company,
            title=title,
            persona=persona.key,
            intent=intent,
            channel=_pick(rng, CHANNELS, lambda c: c.weight),
            timezone=rng.choice(TIMEZONES) if rng.random() < 0.6 else None,
            browser=rng.choice(BROWSERS),
            arrival=arrival,
            forms=forms,
        )
        leads.append(_with_deal(rng, lead, days))
    if days >= 3 and not any(lead.crm for lead in leads):
        leads[0] = _early_buyer(leads[0], days)
    return leads


def _early_buyer(lead: Lead, days: int) -> Lead:
    """A short demo still shows the whole path once: a decision-maker at a company the fit rules
    reward arrives on day one, downloads, registers and asks for a demo on day two (an MQL), and
    sales opens a deal on day three."""
    company = COMPANIES[0]
    email = f"{lead.first_name}.{lead.last_name}".lower().replace("-", "") + f"@{company.domain}"
    deal = CrmMove(2, email, "4000000001", "discovery", 14.5, owner=DEAL_OWNERS[0])
    return replace(
        lead,
        email=email,
        company=company,
        title="VP Marketing",
        intent="hot",
        arrival=0,
        forms={0: ("Whitepaper Downloaded",), 1: ("Webinar Registered", "Demo Requested")},
        crm=(deal,),
    )


def _plan_forms(rng: random.Random, intent: str, arrival: int, days: int) -> dict[int, tuple[str, ...]]:
    """Which forms the visitor fills in, and when; none for a visitor who never identifies."""
    if rng.random() < {"cold": 0.2, "warm": 0.05, "hot": 0.0}[intent]:
        return {}
    first = arrival if rng.random() < 0.6 else arrival + rng.randint(1, 6)
    opener = "Webinar Registered" if intent != "hot" and rng.random() < 0.3 else "Whitepaper Downloaded"
    plan = [(first, opener)]
    if intent != "cold" and opener != "Webinar Registered" and rng.random() < 0.6:
        plan.append((first + rng.randint(2, 9), "Webinar Registered"))
    registered = [day for day, event in plan if event == "Webinar Registered"]
    if registered and rng.random() < 0.6:
        plan.append((registered[0] + rng.randint(2, 5), "Webinar Attended"))
    if intent == "hot":
        plan.append((first + rng.randint(1, 10), "Demo Requested" if rng.random() < 0.7 else "Trial Started"))
    elif intent == "warm" and rng.random() < 0.15:
        plan.append((first + rng.randint(5, 20), "Demo Requested"))
    forms: dict[int, list[str]] = {}
    for day, event in sorted(plan):
        if day < days:
            forms.setdefault(day, []).append(event)
    return {day: tuple(events) for day, events in forms.items()}


def _with_deal(rng: random.Random, lead: Lead, days: int) -> Lead:
    """A lead that asked for a demo or a trial gets a deal: discovery, then perhaps a proposal and a close."""
    asked = [day for day, events in lead.forms.items() if {"Demo Requested", "Trial Started"} & set(events)]
    if not asked or lead.company in (STUDENT, COMPETITOR) or rng.random() < 0.15:
        return lead
    deal_id = str(rng.randrange(10**9, 10**10))  # as CRMs number their deals
    amount = float(round(rng.uniform(4, 14) * max(lead.company.size, 20) ** 0.5) * 100)
    owner = rng.choice(DEAL_OWNERS)
    day = asked[0] + rng.randint(1, 3)
    moves = [CrmMove(day, lead.email, deal_id, "discovery", _crm_hour(rng), owner=owner)]
    if rng.random() < 0.75:
        day += rng.randint(4, 9)
        moves.append(CrmMove(day, lead.email, deal_id, "proposal", _crm_hour(rng), amount=amount))
        ending = rng.random()
        if ending < 0.75:
            day += rng.randint(5, 14)
            stage = "won" if ending < 0.4 else "lost"
            moves.append(CrmMove(day, lead.email, deal_id, stage, _crm_hour(rng), amount=amount))
    return replace(lead, crm=tuple(m for m in moves if m.day < days))


def _crm_hour(rng: random.Random) -> float:
    return round(rng.uniform(14, LAST_EVENT_HOUR), 3)


# --- what they do each day --------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _session_start(rng: random.Random, lead: Lead, day_start: datetime) -> datetime:
    """Office hours of the lead's part of the world, before the day's checkpoint (UTC)."""
    earliest = 7 if lead.timezone and lead.timezone.startswith("Europe/") else 12
    hour = rng.uniform(earliest, LAST_EVENT_HOUR - 0.5)
    return day_start + timedelta(hours=hour)


def events_for_day(rng: random.Random, leads: list[Lead], day: int, start: datetime) -> list[dict[str, Any]]:
    """The tag's messages of day ``day`` after ``start`` (midnight UTC of the first day), every
    timestamp within that day and before its checkpoint."""
    day_start = start + timedelta(days=day)
    messages: list[dict[str, Any]] = []
    for lead in leads:
        forms = lead.forms.get(day, ())
        if day < lead.arrival:
            continue
        if day == lead.arrival:
            pages = [lead.channel.landing, *rng.sample(READING[lead.persona], k=rng.randint(0, 1))]
        elif forms or rng.random() < RETURN_RATE[lead.intent]:
            pages = rng.sample(READING[lead.persona], k=rng.randint(1, 2))
            if lead.intent != "cold" and rng.random() < 0.35:
                pages.append("/pricing")
        else:
            continue
        messages += _session(rng, lead, day, day_start, pages, forms)
    if leads and rng.random() < 0.5:
        messages.append(_crawler_visit(rng, day_start))
    return messages


def _session(
    rng: random.Random, lead: Lead, day: int, day_start: datetime, pages: list[str], forms: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One visit: page views (the first one carries the campaign on the arrival day), then any forms."""
    at = _session_start(rng, lead, day_start)
    arriving = day == lead.arrival
    out: list[dict[str, Any]] = []
    previous = lead.channel.referrer if arriving else None
    for number, path in enumerate(pages):
        first = arriving and number == 0
        out.append(_page(lead, at, path, previous, lead.channel if first else None))
        previous = SITE + path
        at += timedelta(seconds=rng.randint(20, 240))
    for event in forms:
        path = FORMS[event]
        out.append(_page(lead, at, path, previous, None))
        at += timedelta(seconds=rng.randint(30, 180))
        if day == lead.identify_day and event == forms[0]:
            out.append(_message(lead, at, "identify", {"traits": lead.traits()}, path))
        out.append(_message(lead, at, "track", {"event": event, "properties": FORM_PROPERTIES[event]}, path))
        previous = SITE + path
        at += timedelta(seconds=rng.randint(20, 120))
    for number, message in enumerate(out):
        message["messageId"] = f"{lead.anonymous_id}.{day}.{number}"
    return out


def _page(
    lead: Lead, at: datetime, path: str, referrer: str | None, channel: Channel | None
) -> dict[str, Any]:
    search = channel.search() if channel else ""
    page = {
        "url": SITE + path + search,
        "path": path,
        "title": PAGES[path],
        "referrer": referrer or "",
        "search": search,
    }
    message = _message(lead, at, "page", {"name": PAGES[path], "properties": dict(page)}, path, page)
    if channel and channel.source:
        message["context"]["campaign"] = channel.campaign_context()
    return message


def _message(
    lead: Lead, at: datetime, kind: str, extra: dict[str, Any], path: str, page: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A message as the website tag sends it (``messageId`` is set by the caller)."""
    page = page or {"url": SITE + path, "path": path, "title": PAGES[path], "referrer": "", "search": ""}
    return {
        "type": kind,
        "anonymousId": lead.anonymous_id,
        "timestamp": _iso(at),
        **extra,
        "context": {"page": page, "userAgent": lead.browser, "locale": "en-US", "library": TAG_LIBRARY},
    }


def _crawler_visit(rng: random.Random, day_start: datetime) -> dict[str, Any]:
    """A search engine's crawler running the tag: stored, flagged as a bot, never scored."""
    path = rng.choice(sorted(PAGES))
    at = day_start + timedelta(hours=rng.uniform(0, LAST_EVENT_HOUR))
    page = {"url": SITE + path, "path": path, "title": PAGES[path], "referrer": "", "search": ""}
    return {
        "type": "page",
        "messageId": f"crawler-{int(at.timestamp() * 1000)}",
        "anonymousId": f"crawler-{day_start:%Y%m%d}",
        "timestamp": _iso(at),
        "name": PAGES[path],
        "properties": dict(page),
        "context": {"userAgent": CRAWLER, "page": page},
    }


def crm_moves_for_day(leads: list[Lead], day: int) -> list[CrmMove]:
    """The deal changes the CRM reports on day ``day``, in the order they happened."""
    return sorted((m for lead in leads for m in lead.crm if m.day == day), key=lambda m: (m.hour, m.deal_id))


@dataclass(frozen=True)
class Engagement:
    opened: bool
    clicked: bool
    unsubscribed: bool


def engagement(rng: random.Random, lead: Lead) -> Engagement:
    """What one recipient does with one email: most ignore it, some open it, fewer click, a few leave."""
    opened = rng.random() < OPEN_RATE[lead.intent]
    clicked = opened and rng.random() < CLICK_RATE[lead.intent]
    unsubscribed = opened and not clicked and rng.random() < UNSUBSCRIBE_RATE[lead.intent]
    return Engagement(opened, clicked, unsubscribed)


# --- the stack, over HTTP -------------------------------------------------------------------------
class DemoError(Exception):
    """The stack refused something or could not be reached; the message says what."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class DemoStack:
    """The running local stack, reached over HTTP only: capture API, webhooks, reports, ``/_local``."""

    def __init__(self, url: str, write_key: str, admin_token: str, webhook_secret: str) -> None:
        from kindling.webhooks.standard import WebhookSecret

        self.url = url.rstrip("/")
        self.write_key = write_key
        self.admin_token = admin_token
        self.webhook_secret = WebhookSecret(webhook_secret)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.requests = 0

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 120,
        ok: Iterable[int] = (200,),
    ) -> Answer:
        target = path if path.startswith("http") else self.url + path
        request = urllib.request.Request(target, data=body, headers=headers or {}, method=method)
        self.requests += 1
        try:
            with self._opener.open(request, timeout=timeout) as response:
                answer = Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            answer = Answer(exc.code, dict(exc.headers), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise DemoError(f"{method} {target.split('?')[0]}: cannot reach the stack: {exc}") from exc
        if answer.status not in ok:
            raise DemoError(f"{method} {path.split('?')[0]} answered {answer.status}: {answer.body[:300]!r}")
        return answer

    def _json(self, method: str, path: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self.request(
            method, path, body, {"Content-Type": "application/json", **(headers or {})}
        ).json()

    def now(self) -> datetime:
        try:
            answer = self.request("GET", "/_local/clock", timeout=10)
        except DemoError as exc:
            raise DemoError(
                f"{exc}. The demo drives a running local stack: start one with `make run` "
                "(or `kindling local`) in another terminal"
            ) from exc
        return _parse_time(answer.json()["now"])

    def move_clock(self, to: datetime) -> datetime:
        """Forward to ``to``; every schedule that fired meanwhile runs (once, as of its last fire time)."""
        seconds = (to - self.now()).total_seconds()
        if seconds <= 0:
            return self.now()
        return _parse_time(self._json("POST", "/_local/clock", {"advance_seconds": seconds})["now"])

    def settle(self, timeout: float = 600) -> None:
        """Wait until every queue is drained. Each ask costs the stack a little, so asks thin out."""
        deadline = time.monotonic() + timeout
        pause = 0.1
        while True:
            answer = self.request("POST", "/_local/settle?timeout=0", ok=(200, 504), timeout=60)
            if answer.status == 200:
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the stack did not settle within {timeout:.0f} s: {answer.json()['pending']}"
                )
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    def capture(self, messages: list[dict[str, Any]], sent_at: datetime) -> int:
        """Post messages to ``/v1/batch`` as a server library would, in as few requests as fit."""
        auth = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": auth}
        batch: list[bytes] = []
        size = 0

        def flush() -> None:
            if batch:
                body = b'{"sentAt":"' + _iso(sent_at).encode() + b'","batch":[' + b",".join(batch) + b"]}"
                self.request("POST", "/v1/batch", body, headers)
                batch.clear()

        for message in messages:
            encoded = json.dumps(message, separators=(",", ":")).encode()
            if size + len(encoded) > MAX_BATCH_BYTES:
                flush()
                size = 0
            batch.append(encoded)
            size += len(encoded) + 1
        flush()
        return len(messages)

    def crm(self, move: CrmMove, start: datetime, now: datetime) -> None:
        """The deal change, as a CRM posts it: a Standard Webhooks request, signed now."""
        from kindling.webhooks.standard import sign

        data: dict[str, Any] = {
            "email": move.email,
            "deal_id": move.deal_id,
            "stage": move.stage,
            "occurred_at": _iso(move.occurred_at(start)),
        }
        if move.amount is not None:
            data |= {"amount": move.amount, "currency": "USD"}
        if move.owner:
            data["owner"] = move.owner
        body = json.dumps({"type": "deal.stage_changed", "data": data}, separators=(",", ":")).encode()
        webhook_id = f"msg_{move.deal_id}_{move.stage}"  # a deal enters each stage once
        self.request("POST", "/v1/webhooks/generic", body, sign(self.webhook_secret, webhook_id, now, body))

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/_local/outbox", timeout=60).json()["messages"])

    def knows(self, email: str) -> bool:
        """Whether a lead with this email exists already (an earlier demo with the same seed made it)."""
        query = urllib.parse.urlencode({"email": email})
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return (
            self.request("GET", f"/v1/leads?{query}", headers=headers, ok=(200, 404), timeout=30).status
            == 200
        )

    def report(self, kind: str, start: date, end: date, by: str | None = None) -> dict[str, Any]:
        query = {"from": start.isoformat(), "to": end.isoformat(), **({"by": by} if by else {})}
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        path = f"/v1/reports/{kind}?{urllib.parse.urlencode(query)}"
        return dict(self.request("GET", path, headers=headers, timeout=120).json())


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the demo --------------------------------------------------------------------------------------
@dataclass
class Tally:
    visitors: int = 0
    identified: int = 0
    events: int = 0
    emails: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    stage_moves: int = 0
    closed: Counter[str] = field(default_factory=Counter)

    def line(self, seconds: float) -> str:
        return (
            f"{self.visitors} visitors ({self.identified} identified), {self.events:,} events, "
            f"{self.emails:,} emails sent, {self.opens:,} opened, {self.clicks:,} clicked, "
            f"{self.unsubscribes} unsubscribed, {self.stage_moves} CRM stage moves "
            f"({self.closed['won']} won, {self.closed['lost']} lost) in {seconds:.0f} s"
        )


_PIXEL = re.compile(r'src="([^"]+/v1/o/[^"]+)"')
_LINK = re.compile(r'href="([^"]+/v1/c/[^"]+)"')


class Recipients:
    """Reads the outbox as the recipients would: each new email opened, clicked or left alone."""

    def __init__(self, stack: DemoStack, leads: list[Lead], seed: int, tally: Tally) -> None:
        self.stack = stack
        self.by_email = {lead.email: lead for lead in leads}
        self.seed = seed
        self.tally = tally
        self.seen = len(stack.outbox())  # what was there before the demo is not ours
        self.received: Counter[tuple[str, str]] = Counter()

    def read(self, now: datetime) -> list[dict[str, Any]]:
        """Engage with every email that arrived since last time; the page views that clicks lead to."""
        messages = self.stack.outbox()[self.seen :]
        self.seen += len(messages)
        visits = []
        for message in messages:
            lead = next((self.by_email[to] for to in message.get("to", []) if to in self.by_email), None)
            if lead is None:
                continue
            self.tally.emails += 1
            key = (lead.email, str(message.get("subject")))
            self.received[key] += 1
            rng = random.Random(f"{self.seed}:{key[0]}:{key[1]}:{self.received[key]}")
            visits += self._engage(rng, lead, message, now)
        return visits

    def arrived(self) -> None:
        """Count the emails that arrived since last time, unread: the demo ends before anyone reads them."""
        messages = self.stack.outbox()[self.seen :]
        self.seen += len(messages)
        self.tally.emails += sum(1 for m in messages if any(to in self.by_email for to in m.get("to", [])))

    def _engage(self, rng: random.Random, lead: Lead, message: dict[str, Any], now: datetime) -> list[dict]:
        act = engagement(rng, lead)
        html = message.get("html") or ""
        pixel, links = _PIXEL.search(html), _LINK.findall(html)
        mail_client = {"User-Agent": MAIL_CLIENT}
        if act.opened and pixel:
            self.stack.request("GET", _unescape(pixel.group(1)), headers=mail_client)
            self.tally.opens += 1
        if act.clicked and links:
            link = _unescape(rng.choice(links))
            hop = self.stack.request("GET", link, headers={"User-Agent": lead.browser}, ok=(302,))
            self.tally.clicks += 1
            landing = hop.headers.get("Location", "")
            if landing.startswith(SITE):
                return [_landing_visit(lead, landing, now)]
        if act.unsubscribed:
            header = (message.get("headers") or {}).get("List-Unsubscribe", "")
            url = header.strip("<>")
            if url.startswith("http"):
                one_click = b"List-Unsubscribe=One-Click"
                form = {"Content-Type": "application/x-www-form-urlencoded"}
                self.stack.request("POST", url, one_click, form)
                self.tally.unsubscribes += 1
        return []


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


def _landing_visit(lead: Lead, url: str, now: datetime) -> dict[str, Any]:
    """The page a click lands on, viewed by the lead's browser a moment after the click."""
    path = urllib.parse.urlsplit(url).path or "/"
    page = {"url": url, "path": path, "title": PAGES.get(path, path), "referrer": "", "search": ""}
    at = now - timedelta(seconds=5)
    message = _message(lead, at, "page", {"name": page["title"], "properties": dict(page)}, path, page)
    message["messageId"] = f"{lead.anonymous_id}.click.{int(now.timestamp())}.{path}"
    return message


def run_demo(
    stack: DemoStack,
    *,
    leads: int = 300,
    weeks: int = 6,
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> Tally:
    """Plan the traffic, play it day by day on the stack, then print the reports of those days."""
    from kindling.metrics.counters import FOLD_LAG
    from kindling_ops.cli import format_report

    started = time.monotonic()
    days = weeks * 7
    now = stack.now()
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    people = make_leads(random.Random(f"{seed}:leads"), leads, days)
    for _ in range(100):
        probes = [p.email for p in people if p.forms][:3]
        if not probes or not all(stack.knows(email) for email in probes):
            break
        say(f"This stack already has the leads of seed {seed}: using seed {seed + 1} for new ones.")
        seed += 1
        people = make_leads(random.Random(f"{seed}:leads"), leads, days)
    tally = Tally(visitors=len(people), identified=sum(1 for p in people if p.forms))
    say(
        f"kindling demo: {len(people)} visitors over {weeks} week{'' if weeks == 1 else 's'} "
        f"({start:%Y-%m-%d} to {start + timedelta(days=days - 1):%Y-%m-%d}), seed {seed}, on {stack.url}"
    )
    recipients = Recipients(stack, people, seed, tally)
    day_started = time.monotonic()
    for day in range(days):
        checkpoint = start + timedelta(days=day, hours=CHECKPOINT_HOUR)
        stack.move_clock(checkpoint)
        messages = events_for_day(random.Random(f"{seed}:day:{day}"), people, day, start)
        messages += recipients.read(checkpoint)
        tally.events += stack.capture(messages, checkpoint)
        for move in crm_moves_for_day(people, day):
            stack.crm(move, start, checkpoint)
            tally.stage_moves += 1
            if move.stage in ("won", "lost"):
                tally.closed[move.stage] += 1
        stack.settle()
        say(
            f"  day {day + 1:>2} ({checkpoint:%a %Y-%m-%d}): {tally.events:,} events, "
            f"{tally.emails:,} emails, {tally.stage_moves} CRM stage moves so far "
            f"({time.monotonic() - day_started:.1f} s)"
        )
        day_started = time.monotonic()
    last = start + timedelta(days=days - 1, hours=CHECKPOINT_HOUR)
    tally.events += stack.capture(recipients.read(last), last)
    stack.settle()
    # The reports count what the metrics fold has folded, up to FOLD_LAG before it runs every ten
    # minutes: wait that long, as a reader of a deployed stack would (emails sent meanwhile count).
    stack.move_clock(stack.now() + FOLD_LAG + timedelta(minutes=10, seconds=30))
    stack.settle()
    recipients.arrived()

    first_day, last_day = start.date(), last.date()
    for title, kind, by in (
        ("Funnel", "funnel", None),
        ("Funnel by first-touch source", "funnel", "source"),
        ("Emails", "emails", None),
    ):
        say(f"\n{title}, {first_day} to {last_day}:")
        report = stack.report(kind, first_day, last_day, by)
        say(format_report(kind, report) if report.get("rows") or report.get("groups") else "(nothing yet)")
    say(f"\nThe same reports as a page: {stack.url}/v1/reports (sign in with the admin token)")
    say(f"Done: {tally.line(time.monotonic() - started)}.")
    return tally
