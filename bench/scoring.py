"""Scoring benchmark: throughput, DynamoDB read/write units per scored event, and flat decay cost.

Run on demand (``make bench`` or ``.venv/bin/python bench/scoring.py``); it is not a test.

1. Events per second through ``ScoringService.score`` with the shipped ``config/scoring.yaml``
   and a realistic event mix, (a) over an in-memory ScoreStore with DynamoScoreStore's
   semantics and a no-op publisher (the domain's own CPU), (b) over the real DynamoScoreStore
   and ConfigCache on an embedded moto server, as ``functions/scoring/handler.py`` wires them.
2. DynamoDB RCU and WCU per scored event on that moto run, by operation and item, counted
   with botocore event hooks on the client ``kindling.adapters.aws.client("dynamodb")`` returns.
3. Decay costs the same whatever the number of leads: store operations and time per scored
   event, per decayed-engagement read and per ``explain`` with 1,000 and 100,000 leads.

Figures from moto are not AWS latencies: they show the shape of the cost, not its size.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from common import (
    AWS_ENV,
    ROOT,
    create_table,
    embedded_aws,
    header,
    item_size,
    read_units,
    say,
    wrapped,
    write_units,
)

from kindling.kernel.bus import BusEvent
from kindling.kernel.errors import Conflict, Duplicate
from kindling.scoring.config import ScoringConfig, Stage
from kindling.scoring.rules import LeadScore, RuleTally, explain, fit_of, target_stage
from kindling.scoring.service import LeadActivity, LeadFacts, ScoreWrite, ScoringService
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.fakes import NullPublisher

TABLE_NAME = "bench-table"

MEMORY_LEADS = 300  # section 1a: leads per pass (about 9 events each)
MEMORY_SECONDS = 2.0  # section 1a: passes over fresh stores until this much time is spent
MOTO_LEADS = 32  # section 1b/2: about 300 events
DUPLICATES = 20  # section 2: redeliveries of messages that changed a score
SIZES = (1_000, 100_000)  # section 3: leads in the store
SCORE_SAMPLE = 1_000  # section 3: events scored per run, on distinct leads
DECAY_SAMPLE = 50_000  # section 3: decayed-engagement reads per size
EXPLAIN_SAMPLE = 5_000  # section 3: explain() calls per size
REPEATS = 3  # section 3: each timing is the best of this many runs


# --- the shipped config ------------------------------------------------------------------
def shipped_config() -> tuple[ScoringConfig, dict[str, Any]]:
    """The shipped scoring config as a model, and as the JSON document that is applied."""
    loaded = load(ROOT / "config")
    config = loaded["scoring.yaml"]
    assert isinstance(config, ScoringConfig)
    return config, documents(loaded)["scoring.yaml"]


class StaticConfig:
    """ScoringConfigSource with the version in force already in hand (no pointer read)."""

    def __init__(self, config: ScoringConfig, version: int = 1) -> None:
        self._current = (version, config)

    def current(self) -> tuple[int, ScoringConfig]:
        return self._current


# --- a realistic event mix ---------------------------------------------------------------
UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
#: (path, title, weight): pricing, careers and customers pages score; the others match no rule.
PAGES = [
    ("/", "Acme - Lead nurturing for B2B teams", 22),
    ("/pricing", "Pricing - Acme", 18),
    ("/blog/lead-scoring-101", "Lead scoring 101 - Acme Blog", 18),
    ("/docs/getting-started", "Getting started - Acme Docs", 12),
    ("/customers/northwind", "How Northwind doubled pipeline - Acme", 12),
    ("/careers", "Careers - Acme", 5),
    ("/integrations/salesforce", "Salesforce integration - Acme", 13),
]
#: Later events of a known lead: (kind, weight). "Signup Started" matches no rule.
KNOWN_MIX = [
    ("page", 56),
    ("Email Clicked", 16),
    ("Webinar Registered", 6),
    ("Demo Requested", 5),
    ("Signup Started", 5),
    ("identify", 12),
]
TITLES = [
    "VP Marketing",
    "Head of Growth",
    "Marketing Operations Manager",
    "Director of Demand Gen",
    "CTO",
    "Software Engineer",
    "Account Executive",
    "Student",
]
INDUSTRIES = ["Software", "SaaS", "Financial Services", "E-commerce", "Retail", "Healthcare", "Education"]
COMPANY_SIZES = [4, 25, 120, 300, 1_500, 12_000]
DOMAINS = ["northwind.example", "contoso.example", "fabrikam.example", "initech.example", "stanford.edu"]
SEARCH = "?utm_source=google&utm_medium=cpc&utm_campaign=q4-demand"


@dataclasses.dataclass
class LeadSpec:
    lead_id: str
    anonymous_id: str
    user_id: str | None
    email: str | None
    traits: dict[str, Any]

    @property
    def known(self) -> bool:
        return self.email is not None


def hex_id(rng: random.Random, bits: int = 128) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def make_lead(rng: random.Random, n: int, known: bool) -> LeadSpec:
    anon = f"{hex_id(rng, 32)}-{hex_id(rng, 16)}-{hex_id(rng, 16)}-{hex_id(rng, 48)}"
    if not known:
        return LeadSpec(f"ld_{hex_id(rng)}", anon, None, None, {})
    domain = rng.choice(DOMAINS)
    email = f"dana.whitfield{n}@{domain}"
    traits = {
        "name": f"Dana Whitfield {n}",
        "title": rng.choice(TITLES),
        "company": domain.split(".")[0].title(),
        "industry": rng.choice(INDUSTRIES),
        "company_size": rng.choice(COMPANY_SIZES),
        "plan": "trial",
    }
    return LeadSpec(f"ld_{hex_id(rng)}", anon, f"user-{n}", email, traits)


def _context(path: str, title: str) -> dict[str, Any]:
    """What analytics.js puts in ``context`` for a browser visit."""
    page = {
        "path": path,
        "referrer": "https://www.google.com/",
        "search": SEARCH,
        "title": title,
        "url": f"https://www.acme.example{path}{SEARCH}",
    }
    return {
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "locale": "en-US",
        "timezone": "Europe/Berlin",
        "userAgent": UA,
        "page": page,
        "campaign": {"source": "google", "medium": "cpc", "name": "q4-demand"},
        "ip": "203.0.113.7",
    }


def web_event(rng: random.Random, lead: LeadSpec, kind: str, at: datetime) -> WebEvent:
    path, title, _ = rng.choices(PAGES, weights=[w for *_, w in PAGES])[0]
    common: dict[str, Any] = {
        "message_id": f"ajs-next-{hex_id(rng)}",
        "anonymous_id": lead.anonymous_id,
        "user_id": lead.user_id,
        "timestamp": at,
        "received_at": at + timedelta(milliseconds=350),
        "context": _context(path, title),
    }
    if kind == "page":
        properties = dict(common["context"]["page"])
        return WebEvent(type="page", name=title, properties=properties, **common)
    if kind == "identify":
        return WebEvent(type="identify", traits={"email": lead.email, **lead.traits}, **common)
    properties = {"campaign": "q4-nurture", "source": "email" if kind == "Email Clicked" else "web"}
    return WebEvent(type="track", event=kind, properties=properties, **common)


def lead_activities(rng: random.Random, lead: LeadSpec, start: datetime) -> list[LeadActivity]:
    """One lead's events in time order: a known lead identifies first, then browses and engages."""
    at = start
    kinds: list[str]
    if lead.known:
        count = rng.randint(8, 13)
        kinds = ["identify"] + [
            rng.choices([k for k, _ in KNOWN_MIX], weights=[w for _, w in KNOWN_MIX])[0]
            for _ in range(count - 1)
        ]
    else:
        kinds = ["page"] * rng.randint(4, 8)
    activities = []
    for kind in kinds:
        activities.append(LeadActivity(lead_id=lead.lead_id, event=web_event(rng, lead, kind, at)))
        at += timedelta(hours=rng.choice([0.1, 0.5, 2, 7, 26, 50, 96]))
    return activities


def event_mix(seed: int, leads: int, start: datetime) -> tuple[list[LeadSpec], list[LeadActivity]]:
    """``leads`` leads (80% known) and all their events, in time order across leads."""
    rng = random.Random(seed)
    specs = [make_lead(rng, n, known=rng.random() < 0.8) for n in range(leads)]
    activities = []
    for spec in specs:
        offset = timedelta(hours=rng.uniform(0, 72))
        activities += lead_activities(rng, spec, start + offset)
    activities.sort(key=lambda a: a.event.timestamp)
    return specs, activities


def mix_summary(activities: Sequence[LeadActivity]) -> str:
    kinds = Counter(
        a.event.event
        if a.event.type == "track"
        else f"page {a.event.context['page']['path'].split('/')[1] or 'home'}"
        if a.event.type == "page"
        else a.event.type
        for a in activities
    )
    return ", ".join(f"{k} {n / len(activities):.0%}" for k, n in kinds.most_common())


# --- an in-memory ScoreStore -------------------------------------------------------------
class MemoryScoreStore:
    """ScoreStore over dicts with DynamoScoreStore's semantics, counting its operations.

    ``save`` is one atomic write like the TransactWriteItems it stands for: Duplicate when the
    message was scored before, Conflict when the score's revision moved, the lead was merged
    away or its stage is not the one the move starts from. Objects are kept as they are (no
    serialisation): what this store costs is dict look-ups.
    """

    def __init__(self) -> None:
        self.profiles: dict[str, LeadFacts] = {}
        self.scores: dict[str, LeadScore] = {}
        self.scored: dict[str, list[BusEvent]] = {}
        self.score_changes: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.moves: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.reads = 0
        self.writes = 0
        self.items_written = 0

    # ScoreStore
    def facts(self, lead_id: str) -> LeadFacts | None:
        self.reads += 1
        return self.profiles.get(lead_id)

    def score(self, lead_id: str) -> LeadScore | None:
        self.reads += 1
        return self.scores.get(lead_id)

    def emitted_for(self, message_id: str) -> list[BusEvent] | None:
        self.reads += 1
        return self.scored.get(message_id)

    def save(self, write: ScoreWrite) -> None:
        self.writes += 1
        if write.message_id in self.scored:
            raise Duplicate(write.message_id)
        current = self.scores.get(write.lead_id)
        if (current.revision if current else 0) != write.expected_revision or (
            current is not None and current.merged_into
        ):
            raise Conflict(f"score of {write.lead_id} changed meanwhile")
        move = write.result.stage_move
        profile = self.profiles.get(write.lead_id)
        if move is not None and (profile is None or profile.merged_into or profile.stage != move.from_stage):
            raise Conflict(f"stage of {write.lead_id} changed meanwhile")
        for other in write.folded:
            theirs = self.scores.get(other.lead_id)
            if theirs is None or theirs.revision != other.revision or theirs.merged_into:
                raise Conflict(f"score of {other.lead_id} changed meanwhile")
        # All conditions hold: apply every item, as the transaction would.
        self.scored[write.message_id] = list(write.emitted)
        self.scores[write.lead_id] = write.result.score.model_copy(
            update={"revision": write.expected_revision + 1, "merged_into": None}
        )
        self.score_changes[write.lead_id].append(write.change_record)
        self.items_written += 3
        if move is not None and profile is not None:
            self.profiles[write.lead_id] = dataclasses.replace(profile, stage=move.to_stage)
            history = {"from": move.from_stage, "to": move.to_stage, "why": move.why, "by": "scoring"}
            self.moves[write.lead_id].append({**history, "at": write.at, "message_id": write.message_id})
            self.items_written += 2
        for other in write.folded:
            self.scores[other.lead_id] = self.scores[other.lead_id].model_copy(
                update={"merged_into": write.lead_id}
            )
            self.items_written += 1

    def changes(self, lead_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.score_changes[lead_id][::-1][:limit]

    def stage_history(self, lead_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.moves[lead_id][::-1][:limit]

    def ops(self) -> tuple[int, int, int]:
        return self.reads, self.writes, self.items_written

    # set-up, not counted
    def add_lead(self, spec: LeadSpec, stage: Stage | None = None) -> None:
        self.profiles[spec.lead_id] = LeadFacts(
            lead_id=spec.lead_id,
            email=spec.email,
            traits=spec.traits,
            stage=stage,
            user_id=spec.user_id,
        )


# --- 1a. in-memory throughput ------------------------------------------------------------
def bench_memory(config: ScoringConfig, start: datetime, now: datetime) -> None:
    specs, activities = event_mix(seed=1, leads=MEMORY_LEADS, start=start)

    def one_pass() -> tuple[float, int, MemoryScoreStore]:
        store = MemoryScoreStore()
        for spec in specs:
            store.add_lead(spec)
        service = ScoringService(store, StaticConfig(config), NullPublisher(), sleep=lambda s: None)
        changed = 0
        began = time.perf_counter()
        for activity in activities:
            changed += service.score(activity, now) is not None
        return time.perf_counter() - began, changed, store

    one_pass()  # warm-up
    spent, passes, changed = 0.0, 0, 0
    while spent < MEMORY_SECONDS:
        seconds, changed, store = one_pass()
        spent += seconds
        passes += 1
    rate = passes * len(activities) / spent
    n = len(activities)
    rules, fit_rules = len(config.engagement.rules), len(config.fit.rules)
    say(f"1. Scoring throughput: ScoringService.score, shipped config/scoring.yaml ({rules} engagement")
    say(f"   rules, {fit_rules} fit rules), {n} events for {len(specs)} leads (80% known)")
    wrapped(f"mix: {mix_summary(activities)}", "   ", hanging="     ")
    say(
        f"   a. in-memory ScoreStore, no-op publisher:   {rate:>7,.0f} events/s  ({1e6 / rate:.0f} us/event,"
        f" {passes} passes over fresh stores)"
    )
    say(
        f"      {changed / n:.0%} of events changed a score; store ops/event: {store.reads / n:.2f} reads,"
        f" {store.writes / n:.2f} writes"
    )


# --- counting DynamoDB capacity ------------------------------------------------------------
def key_of(item: dict[str, Any]) -> tuple[str, str]:
    return item["PK"]["S"], item["SK"]["S"]


def kind_of(key: tuple[str, str]) -> str:
    """``LEAD#ld_1 / SCORECHG#2026...`` -> ``LEAD/SCORECHG``."""
    return f"{key[0].split('#')[0]}/{key[1].split('#')[0]}"


def apply_set(item: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The item after a ``SET a = :x, b = :y`` UpdateExpression (the only form scoring uses)."""
    expression: str = update["UpdateExpression"]
    if not expression.startswith("SET ") or any(w in expression for w in (" REMOVE ", " ADD ", "(")):
        raise ValueError(f"unsupported UpdateExpression: {expression}")
    names = update.get("ExpressionAttributeNames", {})
    values = update.get("ExpressionAttributeValues", {})
    after = dict(item)
    for assignment in expression[4:].split(","):
        name, value = (part.strip() for part in assignment.split("="))
        after[names.get(name, name)] = values[value]
    return after


@dataclasses.dataclass
class Unit:
    """Capacity one call consumed on one item."""

    operation: str  # GetItem, or Put/Update/ConditionCheck/Delete inside TransactWriteItems
    item: str  # kind_of(key)
    units: float
    size: int


@dataclasses.dataclass
class Call:
    operation: str
    ok: bool
    units: list[Unit]


class DynamoMeter:
    """Capacity per DynamoDB call, from botocore ``before-parameter-build`` and ``after-call`` hooks.

    Item sizes come from the items themselves: GetItem responses, Put items as sent, and for an
    Update the item last seen (read or written) with the SET applied. Every write in the run goes
    through the metered client and is read before it is written, so these are the items' real
    before- and after-images; ``verify`` checks them against what moto holds.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register(
            "before-parameter-build.dynamodb.*", self._before, unique_id="bench-scoring-before"
        )
        client.meta.events.register("after-call.dynamodb.*", self._after, unique_id="bench-scoring-after")

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params

    def _after(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        params = context.pop("bench_params", {})
        ok = http_response.status_code < 300
        units: list[Unit] = []
        if model.name == "GetItem":
            item = parsed.get("Item")
            key = (params["Key"]["PK"]["S"], params["Key"]["SK"]["S"])
            size = item_size(item)
            if item is not None:
                self.seen[key] = item
            rcu = read_units(size, bool(params.get("ConsistentRead")))
            units.append(Unit("GetItem", kind_of(key), rcu, size))
        elif model.name == "TransactWriteItems":
            after_images: list[tuple[tuple[str, str], dict[str, Any] | None]] = []
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                key = key_of(body["Item"]) if kind == "Put" else key_of(body["Key"])
                before = self.seen.get(key)
                after: dict[str, Any] | None
                if kind == "Put":
                    after = body["Item"]
                elif kind == "Update":
                    after = apply_set(before or dict(body["Key"]), body)
                elif kind == "Delete":
                    after = None
                else:  # ConditionCheck: billed like a write of the item as it is
                    after = before
                size = max(item_size(before), item_size(after))
                # A cancelled transaction is counted as 0 (this sequential run has none).
                wcu = write_units(size) * 2 if ok else 0
                units.append(Unit(kind, kind_of(key), wcu, size))
                after_images.append((key, after))
            if ok:
                for key, after in after_images:
                    if after is None:
                        self.seen.pop(key, None)
                    else:
                        self.seen[key] = after
        self.calls.append(Call(model.name, ok, units))

    def verify(self, probe: Any, sample: int, rng: random.Random) -> tuple[int, int]:
        """(items checked, items whose size differs from moto's copy)."""
        keys = rng.sample(sorted(self.seen), min(sample, len(self.seen)))
        wrong = 0
        for pk, sk in keys:
            held = probe.get_item(TableName=TABLE_NAME, Key={"PK": {"S": pk}, "SK": {"S": sk}}).get("Item")
            wrong += item_size(held) != item_size(self.seen[(pk, sk)])
        return len(keys), wrong


# --- 1b and 2. DynamoScoreStore on moto ----------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.events = 0
        self.calls: Counter[str] = Counter()
        self.units: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.items: Counter[tuple[str, str]] = Counter()
        self.sizes: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        self.failed = 0

    def add(self, calls: Sequence[Call]) -> None:
        self.events += 1
        for call in calls:
            self.calls[call.operation] += 1
            self.failed += not call.ok
            for unit in call.units:
                self.units[(unit.operation, unit.item)] += unit.units
                self.items[(unit.operation, unit.item)] += 1
                self.sizes[(unit.operation, unit.item)].append(unit.size)

    def per_event(self, read: bool) -> tuple[float, float, float]:
        """(calls, items, units) per event, for reads (GetItem) or writes (TransactWriteItems)."""
        n = self.events
        op = "GetItem" if read else "TransactWriteItems"
        chosen = [k for k in self.units if (k[0] == "GetItem") == read]
        items = sum(self.items[k] for k in chosen)
        return self.calls[op] / n, items / n, sum(self.units[k] for k in chosen) / n


def bench_moto(config: ScoringConfig, document: dict[str, Any], start: datetime, now: datetime) -> None:
    import boto3

    with embedded_aws(AWS_ENV):
        from kindling.adapters import aws
        from kindling.adapters.config_store import ConfigCache, DynamoConfigStore
        from kindling.adapters.dynamo import DynamoLeadStore
        from kindling.adapters.score_store import DynamoScoreStore
        from kindling.leads.profiles import Lead

        aws.reset()
        probe = boto3.session.Session().client("dynamodb")  # set-up and checks: not metered
        create_table(probe, TABLE_NAME)
        config_store = DynamoConfigStore(TABLE_NAME)
        config_store.apply("scoring", document, now)
        specs, activities = event_mix(seed=2, leads=MOTO_LEADS, start=start)
        leads = DynamoLeadStore(TABLE_NAME)
        for spec in specs:  # the profiles the profiles function would have written, as it writes them
            first = min(a.event.timestamp for a in activities if a.lead_id == spec.lead_id)
            leads.create(
                Lead(
                    lead_id=spec.lead_id,
                    email=spec.email,
                    user_id=spec.user_id,
                    anonymous_ids=[spec.anonymous_id],
                    traits=spec.traits,
                    created_at=first,
                    first_seen_at=first,
                    last_activity_at=first,
                )
            )
        # As functions/scoring/handler.py wires it, with the publisher stubbed out.
        source = ConfigCache(config_store, "scoring", ScoringConfig)
        service = ScoringService(DynamoScoreStore(TABLE_NAME), source, NullPublisher(), sleep=lambda s: None)
        source.current()  # a warm container: the config version is cached, the connection open
        meter = DynamoMeter()
        meter.attach(aws.client("dynamodb"))

        rules = config.engagement.rules
        categories: list[str] = []
        per_event: list[list[Call]] = []  # the DynamoDB calls each score() made
        changed: list[LeadActivity] = []
        began = time.perf_counter()
        for activity in activities:
            mark = len(meter.calls)
            write = service.score(activity, now)
            per_event.append(meter.calls[mark:])
            if write is not None:
                changed.append(activity)
                categories.append("moved" if write.result.stage_move else "changed")
            else:
                categories.append("nothing")
        seconds = time.perf_counter() - began
        for index, activity in enumerate(activities):  # why nothing changed: no rule, or a capped one
            event = activity.event.model_dump(mode="json")
            if categories[index] == "nothing" and any(r.match.matches(event) for r in rules):
                categories[index] = "capped"
        for activity in random.Random(3).sample(changed, DUPLICATES):  # SQS delivers at least once
            mark = len(meter.calls)
            service.score(activity, now)
            per_event.append(meter.calls[mark:])
            categories.append("duplicate")

        tallies: dict[str, Tally] = defaultdict(Tally)
        all_first = Tally()
        for category, calls in zip(categories, per_event, strict=True):
            tallies[category].add(calls)
            if category in ("changed", "moved"):
                tallies["any change"].add(calls)
            if category != "duplicate":
                all_first.add(calls)
        checked, wrong = meter.verify(probe, 80, random.Random(4))

    n = len(activities)
    calls_per_event = sum(len(c) for c in per_event[:n]) / n
    say(
        f"   b. DynamoScoreStore + ConfigCache on moto: {n / seconds:>7,.0f} events/s"
        f"  ({1e3 * seconds / n:.1f} ms/event, {n} events for {len(specs)} leads)"
    )
    say(
        f"      {calls_per_event:.2f} DynamoDB calls/event over HTTP to 127.0.0.1; moto runs in this process"
        " and shares the GIL"
    )
    report_units(tallies, all_first, checked, wrong)


UNITS_METHOD = (
    "RCU: per GetItem (all ConsistentRead) ceil(item size / 4 KB), 1 when the item does not exist.",
    "WCU: per item written ceil(max(size before, size after) / 1 KB), x2 inside TransactWriteItems.",
    "Item size by DynamoDB's rules (UTF-8 attribute names + values), from the items the calls read and",
)


def report_units(tallies: dict[str, Tally], all_first: Tally, checked: int, wrong: int) -> None:
    say()
    say("2. DynamoDB capacity per scored event (the moto run above, counted on aws.client('dynamodb'))")
    for line in UNITS_METHOD:
        say(f"   {line}")
    say(
        f"   write (Update: the item last read with its SET applied); {checked} sizes checked against"
        f" moto: {checked - wrong} equal."
    )
    say(f"   {'event':<46}{'n':>5}{'GetItem':>9}{'RCU':>6}{'Transact':>10}{'items':>7}{'WCU':>6}")
    rows = (
        ("changed the score", "any change"),
        ("  without a stage move", "changed"),
        ("  with a stage move (+ profile Update, STAGE#)", "moved"),
        ("changed nothing: no rule matched", "nothing"),
        ("changed nothing: a rule matched but was capped", "capped"),
        ("redelivered duplicate of a changing message", "duplicate"),
        ("all first deliveries (the mix)", ""),
    )
    for label_text, name in rows:
        tally = tallies.get(name) if name else all_first
        if tally is None or not tally.events:
            continue
        gets, _, rcu = tally.per_event(read=True)
        txns, items, wcu = tally.per_event(read=False)
        failed = f"  ({tally.failed} failed calls)" if tally.failed else ""
        figures = f"{gets:>9.2f}{rcu:>6.2f}{txns:>10.2f}{items:>7.2f}{wcu:>6.2f}"
        say(f"   {label_text:<46}{tally.events:>5}{figures}{failed}")
    say("   by item, per event that changed the score (mean item size):")
    change = tallies["any change"]
    order = sorted(change.units, key=lambda k: (k[0] != "GetItem", -change.items[k]))
    for key in order:
        operation, item = key
        what = f"{'GetItem' if operation == 'GetItem' else 'Transact ' + operation} {item}"
        unit = "RCU" if operation == "GetItem" else "WCU"
        sizes = change.sizes[key]
        items, units = change.items[key] / change.events, change.units[key] / change.events
        say(
            f"     {what:<38}{items:>5.2f} items {units:>5.2f} {unit}"
            f"  ({statistics.mean(sizes):>5.0f} B, max {max(sizes)} B)"
        )


# --- 3. decay is flat -----------------------------------------------------------------------
FIT_PROFILES = 16


def populate(
    store: MemoryScoreStore, config: ScoringConfig, leads: int, now: datetime, rng: random.Random
) -> None:
    """``leads`` leads, each with a realistic LeadScore built directly: a few rule tallies, as of the past."""
    decay = config.engagement.decay
    half_life = decay.half_life_days if decay else 30.0
    rule_points = {rule.id: rule.points for rule in config.engagement.rules}
    common = [
        "pricing-page",
        "email-click",
        "case-study",
        "webinar-registration",
        "demo-request",
        "careers-page",
    ]
    profiles = [make_lead(rng, n, known=n % 5 != 0) for n in range(FIT_PROFILES)]
    fits = [fit_of(config, p.traits, p.email) for p in profiles]
    for i in range(leads):
        template = profiles[i % FIT_PROFILES]
        spec = dataclasses.replace(template, lead_id=f"ld_{hex_id(rng)}")
        as_of = now - timedelta(days=rng.uniform(1, 120), seconds=rng.uniform(0, 86400))
        rules: dict[str, RuleTally] = {}
        for rule_id in rng.sample(common, rng.randint(2, 4)):
            count = rng.randint(1, 4)
            points = rule_points[rule_id] * count
            last_at = as_of - timedelta(days=rng.uniform(0, 20))
            value = points * 0.5 ** ((as_of - last_at).total_seconds() / 86400 / half_life)
            rules[rule_id] = RuleTally(
                points=points, value=value, count=count, last_at=last_at, days={as_of.date().isoformat(): 1}
            )
        fit_rules = fits[i % FIT_PROFILES]
        fit = sum(fit_rules.values())
        engagement = sum(t.value for t in rules.values())
        grade = config.fit.grades.grade(fit)
        store.scores[spec.lead_id] = LeadScore(
            lead_id=spec.lead_id,
            engagement=engagement,
            as_of=as_of,
            rules=rules,
            fit=fit,
            fit_rules=dict(fit_rules),
            grade=grade,
            config_version=1,
            revision=sum(t.count for t in rules.values()),
        )
        stage = target_stage(config, engagement, grade) if spec.known else None
        store.add_lead(spec, stage=stage)


def best_mean(run: Callable[[], int]) -> float:
    """Seconds per operation: the best of REPEATS runs of ``run`` (which returns its operation count)."""
    best = math.inf
    for _ in range(REPEATS):
        began = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - began) / count)
    return best


def decay_figures(config: ScoringConfig, size: int, now: datetime) -> dict[str, float]:
    """Section 3's figures with ``size`` leads in the store."""
    decay = config.engagement.decay
    rng = random.Random(size)  # which leads; the events themselves are the same for every size
    events_rng = random.Random(7)
    store = MemoryScoreStore()
    began = time.perf_counter()
    gc.disable()
    populate(store, config, size, now, rng)
    gc.enable()
    built = time.perf_counter() - began
    # The store's objects stand for table items, not the scorer's heap: keep the collector off them,
    # or a full collection walking 100,000 leads would be timed as if it were scoring.
    gc.collect()
    gc.freeze()
    lead_ids = list(store.scores)

    # (a) and (b): SCORE_SAMPLE events of the realistic mix on distinct random leads, per run.
    samples: list[list[LeadActivity]] = []
    kinds, weights = [k for k, _ in KNOWN_MIX], [w for _, w in KNOWN_MIX]
    for r in range(REPEATS):
        batch = []
        for j, lead_id in enumerate(rng.sample(lead_ids, SCORE_SAMPLE)):
            facts = store.profiles[lead_id]
            spec = LeadSpec(lead_id, f"anon-{r}-{j}", facts.user_id, facts.email, facts.traits)
            kind = events_rng.choices(kinds, weights=weights)[0] if spec.known else "page"
            at = now - timedelta(hours=REPEATS - r, seconds=SCORE_SAMPLE - j)
            batch.append(LeadActivity(lead_id=lead_id, event=web_event(events_rng, spec, kind, at)))
        samples.append(batch)
    service = ScoringService(store, StaticConfig(config), NullPublisher(), sleep=lambda s: None)
    pending = iter(samples)

    def score_batch() -> int:
        for activity in next(pending):
            service.score(activity, now)
        return SCORE_SAMPLE

    before = store.ops()
    score_seconds = best_mean(score_batch)
    scored = REPEATS * SCORE_SAMPLE
    reads, writes, items = (after - first for after, first in zip(store.ops(), before, strict=True))

    # (b) a lead's engagement now: look its score up and decay it, as every read of a score does.
    scores = store.scores
    picks = [rng.choice(lead_ids) for _ in range(DECAY_SAMPLE)]
    hot = lead_ids[:1_000]
    hot_picks = [rng.choice(hot) for _ in range(DECAY_SAMPLE)]

    def decayed(chosen: list[str]) -> Callable[[], int]:
        def run() -> int:
            for lead_id in chosen:
                scores[lead_id].engagement_at(now, decay)
            return len(chosen)

        return run

    def explained() -> int:
        for lead_id in picks[:EXPLAIN_SAMPLE]:
            explain(scores[lead_id], config, now, 1)
        return EXPLAIN_SAMPLE

    figures = {
        "reads": reads / scored,
        "writes": writes / scored,
        "items": items / scored,
        "score": score_seconds,
        "decay": best_mean(decayed(picks)),
        "decay_hot": best_mean(decayed(hot_picks)),
        "explain": best_mean(explained),
        "sweep": 0,  # nothing reads the leads to decay them: there is no such job to run
        "built": built,
    }
    gc.unfreeze()
    return figures


def bench_decay(config: ScoringConfig, now: datetime) -> None:
    decay = config.engagement.decay
    say()
    say("3. Decay cost as leads grow (in-memory store; each lead has 2-4 rule tallies, as_of 1-120 days ago;")
    say(f"   half-life {decay.half_life_days if decay else '-'} days)")
    small, large = (decay_figures(config, size, now) for size in SIZES)
    say(f"   {'':<52}{SIZES[0]:>12,} leads{SIZES[1]:>12,} leads{'ratio':>8}")
    rows: list[tuple[str, str, float]] = [
        ("(a) store reads per scored event", "reads", 1),
        ("    store writes (transactions) per scored event", "writes", 1),
        ("    items written per scored event", "items", 1),
        ("(b) us to score one event (ScoringService.score)", "score", 1e6),
        ("    us for a lead's engagement now (engagement_at)", "decay", 1e6),
        ("      the same on a working set of 1,000 leads", "decay_hot", 1e6),
        ("    us for explain(...) of a lead", "explain", 1e6),
        ("(c) items a decay pass reads", "sweep", 1),
    ]
    for label_text, name, scale in rows:
        a, b = small[name] * scale, large[name] * scale
        ratio = f"{b / a:>7.2f}x" if a else f"{'-':>8}"
        fmt = ".0f" if name == "sweep" else ".2f"
        say(f"   {label_text:<52}{a:>18{fmt}}{b:>18{fmt}}{ratio}")
    say(
        f"   (b) best of {REPEATS} runs: {SCORE_SAMPLE:,} events, {DECAY_SAMPLE:,} engagement_at and"
        f" {EXPLAIN_SAMPLE:,} explain, on random leads;"
    )
    say(f"       populating the store took {small['built']:.2f} s / {large['built']:.2f} s (not timed).")
    say("       engagement_at is the same arithmetic at any size; on random leads among 100,000 the look-up")
    say("       and object reads miss the CPU caches; on a 1,000-lead working set both sizes cost the same.")
    say(
        "   (c) 0 by design: there is no decay sweep job. Engagement is stored exact as of a lead's last"
        " event and"
    )
    say(
        "       decayed when read (engagement x 2^(-elapsed / half-life)), so no lead is read or written"
        " for decay;"
    )
    say(
        f"       a periodic sweep, by contrast, would read every SCORE item ({SIZES[0]:,} / {SIZES[1]:,})"
        " and write most."
    )


# --- main ----------------------------------------------------------------------------------
def main() -> None:
    started = time.perf_counter()
    config, document = shipped_config()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=30)
    header("scoring", with_pydantic=True)
    bench_memory(config, start, now)
    bench_moto(config, document, start, now)
    bench_decay(config, now)
    say()
    say(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
