"""Email benchmark: sends per second through the sender, AWS calls and DynamoDB units per send.

Run on demand (``make bench`` or ``.venv/bin/python bench/sending.py``); it is not a test.

1. Sends per second through ``EmailSender.handle`` called in-process, wired as
   ``functions/sender/handler.py`` wires it, with the shipped config and templates: (a) against
   DynamoDB (the table as template.yaml defines it, GSI1 included) and SES v2 on an embedded moto
   server over HTTP, to leads the profiles code created; (b) the domain's own cost alone,
   ``render(...)`` and ``kindling.adapters.ses.mime(...)`` in a loop, no I/O.
2. AWS calls per send, by operation and item, for a first delivery that sends, a redelivered
   duplicate, a send skipped (lead unsubscribed) and a send deferred by the frequency cap, with
   DynamoDB read and write units. Calls are counted with botocore event hooks on the clients
   ``kindling.adapters.aws.client(...)`` returns, which the store, the config and the mailer use.
3. The raw MIME message SES gets: its size and make-up.

Figures from moto are not AWS latencies: they show the shape of the cost, not its size. moto copies
the whole table for every action of a transaction and scans it for every Query, so its cost grows
with the table: the number of sends is kept modest for that. moto's dashboard also keeps a reference
to every object moto creates, those copies included; the bench drops them after each DynamoDB call
(``moto.core.model_instances.reset_model_data``, which leaves the tables alone), and freezes the
set-up heap (``gc.freeze``), or memory and garbage-collection pauses, not the sender, would dominate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from common import (
    AWS_ENV,
    QUIET_POWERTOOLS,
    ROOT,
    appended,
    create_table,
    embedded_aws,
    header,
    item_size,
    key_of,
    kind_of,
    read_units,
    reset_model_data,
    say,
    settle,
    wrapped,
    write_units,
)

TABLE_NAME = "bench-table"
CONFIGURATION_SET = "bench-email"
API_BASE_URL = "https://api.acme.example"
LINK_SECRET = b"bench-link-signing-secret-32-byte"
#: Wednesday 10:00 in New York: inside the shipped send window for a lead without a timezone trait.
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TEMPLATES = ("welcome-1", "nurture-case-study")
SENDS = 100  # section 1: distinct sends to distinct leads (moto's cost grows with the table)
WARM_UP = 10  # section 1a: sends before the timed ones (clients, connections, caches)
BATCH_SIZE = 10  # the sender's SQS BatchSize in template.yaml: config.refresh() once per batch
REPEATS = 3  # section 1b: best of this many passes
SAMPLES = 3  # section 2: sends per scenario (the counts are the same every time)


# --- counting calls, read and write units ---------------------------------------------------
@dataclasses.dataclass
class Written:
    """One item a write touched: the larger of its images before and after, and its WCU."""

    action: str  # PutItem, UpdateItem, DeleteItem, or Put/Update/Delete/ConditionCheck in a transaction
    kind: str
    size: int
    wcu: int
    index_wcu: int  # GSI1 writes (DUE items carry GSI1PK; the index projects ALL)


@dataclasses.dataclass
class Call:
    name: str  # service.Operation
    what: str  # the items it read or wrote, by kind
    ok: bool = True
    seconds: float = 0.0
    rcu: float = 0.0
    writes: list[Written] = dataclasses.field(default_factory=list)
    raw_mime: bytes = b""  # sesv2.SendEmail: Content.Raw.Data
    body: int = 0  # sesv2.SendEmail: bytes of the HTTP request body

    @property
    def label(self) -> str:
        return f"{self.name} {self.what}".rstrip()


@dataclasses.dataclass
class _Pending:
    key: dict[str, Any]
    action: str
    kind: str
    item: dict[str, Any] | None  # a Put's item, as sent
    txn: bool
    before: dict[str, Any] | None = None


def _reads(operation: str, params: dict[str, Any]) -> str:
    if operation == "GetItem":
        return kind_of(params["Key"])
    if operation == "BatchGetItem":
        kinds = Counter(kind_of(k) for spec in params["RequestItems"].values() for k in spec["Keys"])
        return ", ".join(f"{n}x {k}" for k, n in kinds.items())
    if operation == "Query":
        values = params.get("ExpressionAttributeValues", {})
        pk = values.get(":pk", {}).get("S", "?").split("#")[0]
        sks = [v["S"].split("#")[0] for k, v in values.items() if k != ":pk" and "S" in v]
        return f"{pk}/{sks[0]}" if sks else pk
    return ""


def _pending(operation: str, params: dict[str, Any]) -> list[_Pending]:
    if operation == "PutItem":
        return [_Pending(key_of(params["Item"]), "PutItem", kind_of(params["Item"]), params["Item"], False)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_Pending(params["Key"], operation, kind_of(params["Key"]), None, False)]
    if operation == "TransactWriteItems":
        found = []
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            key = body.get("Key") or key_of(body["Item"])
            found.append(_Pending(key, kind, kind_of(key), body.get("Item"), True))
        return found
    if operation == "BatchWriteItem":
        found = []
        for requests in params["RequestItems"].values():
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append(_Pending(key_of(item), "Put", kind_of(item), item, False))
                else:
                    key = request["DeleteRequest"]["Key"]
                    found.append(_Pending(key, "Delete", kind_of(key), None, False))
        return found
    return []


class Meter:
    """AWS calls via botocore event hooks: ``before-parameter-build`` fires once per API call (retries
    are not new calls), ``after-call`` once it is answered.

    With ``probing`` on, every DynamoDB write's items are read before and after it through ``probe``,
    a client that is not metered, so write units come from the items' real sizes in moto.
    """

    def __init__(self, probe: Any) -> None:
        self.calls: list[Call] = []
        self.probing = False
        self._probe = probe
        self._body = 0

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._before, unique_id=f"bench-email-b-{id(client)}")
        events.register("before-send", self._send, unique_id=f"bench-email-s-{id(client)}")
        events.register("after-call", self._after, unique_id=f"bench-email-a-{id(client)}")

    def _item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self._probe.get_item(TableName=TABLE_NAME, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service, operation = model.service_model.endpoint_prefix, model.name
        if service == "email":  # SES v2's endpoint prefix
            service = "sesv2"
        call = Call(f"{service}.{operation}", "")
        if service == "dynamodb":
            pending = _pending(operation, params)
            if operation == "TransactWriteItems":
                call.what = f"[{', '.join(f'{p.action} {p.kind}' for p in pending)}]"
            else:
                call.what = ", ".join(p.kind for p in pending) or _reads(operation, params)
            if self.probing:
                for write in pending:
                    write.before = self._item(write.key)
            context["bench_pending"] = pending
            context["bench_consistent"] = bool(params.get("ConsistentRead"))
        elif operation == "SendEmail":
            call.raw_mime = params.get("Content", {}).get("Raw", {}).get("Data", b"")
        context["bench_call"] = call
        context["bench_started"] = time.perf_counter()

    def _send(self, request: Any, **_: Any) -> None:
        body = request.body
        self._body = len(body) if isinstance(body, bytes | str) else 0

    def _after(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if model.service_model.endpoint_prefix == "dynamodb":
            # moto's dashboard keeps every model object moto creates, among them the copy of the whole
            # table that each action of a transaction makes for its rollback: ~100,000 objects a
            # transaction here, never freed. Drop those references (the tables are untouched), so the
            # copies go when moto is done with them, as they would without the dashboard.
            reset_model_data()
        call: Call = context.pop("bench_call")
        call.seconds = time.perf_counter() - context.pop("bench_started")
        call.ok = http_response.status_code < 300
        call.body = self._body
        consistent = context.pop("bench_consistent", False)
        if model.name == "GetItem":
            call.rcu = read_units(item_size(parsed.get("Item")), consistent)
        elif model.name == "Query":
            call.rcu = read_units(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
        elif model.name == "BatchGetItem":
            got = [i for items in parsed.get("Responses", {}).values() for i in items]
            call.rcu = sum(read_units(item_size(i), consistent) for i in got)
        for write in context.pop("bench_pending", []):
            if not self.probing:
                continue
            if not call.ok:
                # A failed conditional write is billed like a write of the item as it was; a
                # cancelled transaction reports no consumed capacity: counted as 0.
                units = 0 if write.txn else write_units(item_size(write.before))
                call.writes.append(Written(write.action, write.kind, item_size(write.before), units, 0))
                continue
            after = write.item if write.action in ("Put", "PutItem") else None
            if write.action in ("Update", "UpdateItem"):
                after = self._item(write.key)
            elif write.action == "ConditionCheck":
                after = write.before
            size = max(item_size(write.before), item_size(after))
            indexed = [i for i in (write.before, after) if i and "GSI1PK" in i]
            index_units = sum(write_units(item_size(i)) for i in indexed)  # a moved index entry: delete + put
            factor = 2 if write.txn else 1
            call.writes.append(
                Written(write.action, write.kind, size, write_units(size) * factor, index_units * factor)
            )
        self.calls.append(call)

    def measuring(self) -> contextlib.AbstractContextManager[list[Call]]:
        """The calls made inside the block."""
        return appended(self.calls)


# --- the world: moto, the table, config, SES, leads ------------------------------------------
FIRST_NAMES = ["Dana", "Sam", "Priya", "Jonas", "Mei", "Carlos", "Aisha", "Tom"]
LAST_NAMES = ["Whitfield", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Alvarez"]
TITLES = ["VP Marketing", "Head of Growth", "Marketing Operations Manager", "Director of Demand Gen"]
COMPANIES = [
    ("Northwind Analytics", "northwind.example", "Software"),
    ("Contoso Logistics", "contoso.example", "Logistics"),
    ("Fabrikam Health", "fabrikam.example", "Healthcare"),
    ("Initech Finance", "initech.example", "Financial Services"),
]


def create_leads(count: int, start: int) -> list[str]:
    """``count`` known leads, as the profiles function records a server-side identify (no timezone trait).

    Five items each (profile, two identities, timeline entry, dedup marker): moto's cost grows with
    the table (below), so the leads carry no more than a sender needs.
    """
    from kindling.adapters.dynamo import DynamoLeadStore
    from kindling.leads.profiles import ProfileService
    from kindling.tracking.segment import WebEvent

    service = ProfileService(DynamoLeadStore(TABLE_NAME))
    at = NOW - timedelta(days=1)
    lead_ids = []
    for n in range(start, start + count):
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n % len(LAST_NAMES)]
        company, domain, industry = COMPANIES[n % len(COMPANIES)]
        email = f"{first.lower()}.{last.lower()}{n}@{domain}"
        event = WebEvent(
            message_id=f"ajs-next-{uuid.uuid4().hex}",
            type="identify",
            user_id=f"user-{n}",
            timestamp=at,
            received_at=at,
            traits={
                "email": email,
                "first_name": first,
                "last_name": last,
                "company": company,
                "title": TITLES[n % len(TITLES)],
                "industry": industry,
                "plan": "trial",
            },
            context={"library": {"name": "analytics-python", "version": "2.3.3"}},
        )
        lead_ids.append(service.record(event, at).lead_id)
    return lead_ids


class World:
    """The sender as functions/sender/handler.py wires it, on moto, with leads to send to."""

    def __init__(self) -> None:
        import boto3

        from kindling.adapters import aws
        from kindling.adapters.config_store import DynamoConfigStore, EmailConfig
        from kindling.adapters.email_store import DynamoEmailStore
        from kindling.adapters.ses import SesMailer
        from kindling.email.render import LinkSigner
        from kindling.email.sender import EmailSender
        from kindling_ops.config import documents, load

        aws.reset()
        session = boto3.session.Session()
        self.probe = session.client("dynamodb")  # set-up and size probes: not metered
        create_table(self.probe, TABLE_NAME)
        loaded = load(ROOT / "config")
        docs = documents(loaded)
        config_store = DynamoConfigStore(TABLE_NAME, self.probe)
        config_store.apply("email", docs["email.yaml"], NOW)
        config_store.apply("templates", docs["templates"], NOW)
        self.sesv2 = session.client("sesv2")
        self.sesv2.create_email_identity(EmailIdentity=docs["email.yaml"]["from_address"])
        self.sesv2.create_configuration_set(ConfigurationSetName=CONFIGURATION_SET)

        self.store = DynamoEmailStore(TABLE_NAME)
        self.config = EmailConfig(TABLE_NAME)
        self.sender = EmailSender(
            self.store, SesMailer(CONFIGURATION_SET), self.config, LinkSigner(LINK_SECRET), API_BASE_URL
        )
        self.meter = Meter(self.probe)
        for service in ("dynamodb", "sesv2"):  # the cached clients the store, config and mailer use
            self.meter.attach(aws.client(service))
        self._leads = 0

    def close(self) -> None:
        """Close every client's connections, so the server's handler threads end with it."""
        from kindling.adapters import aws

        for client in (self.probe, self.sesv2, aws.client("dynamodb"), aws.client("sesv2")):
            client.close()
        aws.reset()

    def leads(self, count: int) -> list[str]:
        found = create_leads(count, self._leads)
        self._leads += count
        return found


def request(n: int, lead_id: str, template: str) -> Any:
    from kindling.email.sender import SendRequest

    return SendRequest(send_id=f"bench-{n:05d}-{uuid.uuid4().hex[:12]}", lead_id=lead_id, template=template)


# --- 1. throughput ---------------------------------------------------------------------------
def bench_moto(world: World) -> dict[str, Any]:
    warm = world.leads(WARM_UP)
    targets = world.leads(SENDS)
    settle()
    for i, lead_id in enumerate(warm):
        if i % BATCH_SIZE == 0:
            world.config.refresh()
        world.sender.handle(request(90_000 + i, lead_id, TEMPLATES[i % 2]), NOW)
    requests = [request(i, lead_id, TEMPLATES[i % 2]) for i, lead_id in enumerate(targets)]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    with world.meter.measuring() as calls:
        began = time.perf_counter()
        for i, send in enumerate(requests):
            started = time.perf_counter()
            if i % BATCH_SIZE == 0:
                world.config.refresh()  # as the handler does once per invocation
            statuses[world.sender.handle(send, NOW).status] += 1
            latencies.append(time.perf_counter() - started)
        seconds = time.perf_counter() - began
    if statuses != Counter({"sent": SENDS}):
        raise SystemExit(f"expected {SENDS} sends, got {dict(statuses)}")
    latencies.sort()
    mime_sizes: dict[str, list[bytes]] = defaultdict(list)
    bodies: dict[str, list[int]] = defaultdict(list)
    by_operation: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        by_operation[call.name].append(call.seconds)
    ses = [c for c in calls if c.name == "sesv2.SendEmail"]
    for send, call in zip(requests, ses, strict=True):
        mime_sizes[send.template].append(call.raw_mime)
        bodies[send.template].append(call.body)
    return {
        "seconds": seconds,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "calls": len(calls),
        "in_calls": sum(c.seconds for c in calls),
        "mime": mime_sizes,
        "bodies": bodies,
        "by_operation": by_operation,
        "items": world.probe.scan(TableName=TABLE_NAME, Select="COUNT")["Count"],
        "leads": targets,
    }


def bench_domain(world: World, lead_ids: list[str]) -> dict[str, float]:
    """render(...) and ses.mime(...) for the same sends, with no I/O: the sender's own CPU."""
    from kindling.adapters.ses import mime
    from kindling.email.render import LinkSigner, render
    from kindling.email.sender import OutgoingEmail

    world.config.refresh()
    settings, templates = world.config.email(), world.config.templates()
    links = LinkSigner(LINK_SECRET)
    leads = [world.store.lead(lead_id) for lead_id in lead_ids]  # as the sender reads them
    sends = []
    for i in range(SENDS):
        lead = leads[i % len(leads)]
        assert lead is not None and lead.email is not None
        sends.append((f"bench-{i:05d}-{uuid.uuid4().hex[:12]}", lead, TEMPLATES[i % 2]))

    def render_all() -> list[Any]:
        return [
            render(
                templates[template],
                traits=lead.traits,
                email=lead.email,
                links=links,
                send_id=send_id,
                lead_id=lead.lead_id,
                settings=settings,
                api_base_url=API_BASE_URL,
            )
            for send_id, lead, template in sends
        ]

    def outgoing(rendered: list[Any]) -> list[OutgoingEmail]:
        return [
            OutgoingEmail(
                to=lead.email,
                from_address=settings.from_address,
                from_name=settings.from_name,
                reply_to=settings.reply_to,
                rendered=r,
                tags={"send_id": send_id, "lead_id": lead.lead_id, "template": template},
            )
            for (send_id, lead, template), r in zip(sends, rendered, strict=True)
        ]

    emails = outgoing(render_all())

    def best(run: Callable[[], object]) -> float:
        run()  # warm-up
        fastest = math.inf
        for _ in range(REPEATS):
            began = time.perf_counter()
            run()
            fastest = min(fastest, time.perf_counter() - began)
        return fastest / SENDS

    return {
        "render": best(render_all),
        "mime": best(lambda: [mime(e) for e in emails]),
        "both": best(lambda: [mime(e) for e in outgoing(render_all())]),
        "html": statistics.mean(len(e.rendered.html.encode()) for e in emails),
        "text": statistics.mean(len(e.rendered.text.encode()) for e in emails),
        "links": statistics.mean(len(e.rendered.tracked_links) for e in emails),
    }


def report_throughput(moto: dict[str, Any], domain: dict[str, float]) -> None:
    say(
        f"1. Sends per second through EmailSender.handle, in-process: {SENDS} distinct sends to"
        f" {SENDS} leads."
    )
    wrapped(
        f"Templates {' and '.join(TEMPLATES)} alternating; now = {NOW:%a %Y-%m-%d %H:%MZ}, 10:00 in"
        " America/New_York, the send window's zone for leads without a timezone trait; config.refresh()"
        f" every {BATCH_SIZE} sends, as the handler does once per SQS batch (BatchSize {BATCH_SIZE}).",
        "   ",
    )
    say(f"   {'':<50}{'sends/s':>8}{'ms/send':>9}{'p50 ms':>8}{'p99 ms':>8}{'calls/send':>12}")
    n = SENDS
    say(
        f"   {'a. DynamoDB + SES v2 on moto (HTTP to 127.0.0.1)':<50}{n / moto['seconds']:>8,.0f}"
        f"{1e3 * moto['seconds'] / n:>9.2f}{1e3 * moto['p50']:>8.2f}{1e3 * moto['p99']:>8.2f}"
        f"{moto['calls'] / n:>12.2f}"
    )
    inside = moto["in_calls"] / n
    by_operation = sorted(moto["by_operation"].items(), key=lambda kv: -statistics.mean(kv[1]))
    wrapped(
        f"{1e3 * inside:.1f} ms/send inside AWS calls (botocore, HTTP and moto, which runs in this process"
        f" and shares its GIL), {1e3 * (moto['seconds'] / n - inside):.1f} ms/send outside them (sender,"
        " render, MIME, pydantic). Mean ms per call: "
        + ", ".join(
            f"{name.split('.')[1]} {1e3 * statistics.mean(times):.1f}" for name, times in by_operation
        )
        + ". moto copies the whole table for each action of a transaction (to roll back) and scans the"
        f" whole table for a Query, so those grow with the table ({moto['items']:,} items at the end);"
        " DynamoDB's do not.",
        "      ",
    )
    rows = (
        ("b. domain cost alone: render(...)", domain["render"]),
        ("   kindling.adapters.ses.mime(...)", domain["mime"]),
        ("   render + OutgoingEmail + mime", domain["both"]),
    )
    for label, seconds in rows:
        say(f"   {label:<50}{1 / seconds:>8,.0f}{1e3 * seconds:>9.3f}")
    wrapped(
        f"best of {REPEATS} passes over the same {SENDS} sends, no I/O; mime is"
        f" {domain['mime'] / domain['both']:.0%} of it. A rendered email: HTML {domain['html']:,.0f} B,"
        f" text {domain['text']:,.0f} B, {domain['links']:.1f} tracked links.",
        "      ",
    )


# --- 2. calls and units per send ---------------------------------------------------------------
SCENARIOS = (
    ("sent", "first delivery: sent"),
    ("duplicate", "the same send id redelivered: duplicate"),
    ("skipped", "lead unsubscribed: skipped"),
    ("deferred", "4th email within an hour: deferred by the frequency cap (3 per 7 days)"),
)


def run_scenarios(world: World) -> dict[str, list[list[Call]]]:
    sender, meter = world.sender, world.meter
    seen: dict[str, list[list[Call]]] = defaultdict(list)

    def measured(scenario: str, send: Any, now: datetime, expected: str) -> None:
        with meter.measuring() as calls:
            outcome = sender.handle(send, now)
        if outcome.status != expected:
            raise SystemExit(f"{scenario}: expected {expected}, got {outcome.status} ({outcome.reason})")
        seen[scenario].append(calls)

    world.config.refresh()
    world.config.templates(), world.config.email()  # within a batch: the config is in hand
    meter.probing = True
    try:
        firsts = []
        for i, lead_id in enumerate(world.leads(SAMPLES)):
            send = request(10_000 + i, lead_id, TEMPLATES[i % 2])
            measured("sent", send, NOW, "sent")
            firsts.append(send)
        for send in firsts:
            measured("duplicate", send, NOW, "duplicate")
        for i, lead_id in enumerate(world.leads(SAMPLES)):
            world.store.update_lead(lead_id, "SET unsubscribed = :t", {":t": {"BOOL": True}})
            measured("skipped", request(20_000 + i, lead_id, TEMPLATES[i % 2]), NOW, "skipped")
        for i, lead_id in enumerate(world.leads(SAMPLES)):
            for k in range(3):
                sender.handle(
                    request(30_000 + 10 * i + k, lead_id, TEMPLATES[k % 2]), NOW + k * timedelta(minutes=15)
                )
            later = NOW + timedelta(minutes=45)
            measured("deferred", request(30_000 + 10 * i + 3, lead_id, TEMPLATES[1]), later, "deferred")
        world.config.refresh()
        with meter.measuring() as calls:
            world.config.templates(), world.config.email()
        seen["refresh"].append(calls)
    finally:
        meter.probing = False
    return seen


def report_calls(seen: dict[str, list[list[Call]]], moto: dict[str, Any]) -> None:
    say()
    say("2. AWS calls per send, by operation and item (DynamoDB unless named), counted on the clients")
    say(f"   aws.client('dynamodb') and aws.client('sesv2'); {SAMPLES} sends per scenario, averaged, with")
    say("   the config in hand (as within a batch):")
    for name, text in SCENARIOS:
        say(f"     {name:<10} {text}")
    labels: list[str] = []
    for name, _ in SCENARIOS:
        for calls in seen[name]:
            labels += [c.label for c in calls if c.label not in labels]
    labels.sort(key=lambda label: (not label.startswith("dynamodb.GetItem"), label.startswith("sesv2")))
    shown = {label: label.removeprefix("dynamodb.") for label in labels}
    width = max(len(label) for label in shown.values()) + 2
    say(f"   {'':<{width}}" + "".join(f"{name:>10}" for name, _ in SCENARIOS))

    def row(title: str, value: Callable[[list[Call]], float], fmt: str) -> None:
        cells = []
        for name, _ in SCENARIOS:
            mean = statistics.mean(value(calls) for calls in seen[name])
            cells.append(f"{mean:>10{fmt}}" if mean else f"{'-':>10}")
        say(f"   {title:<{width}}" + "".join(cells))

    def counting(label: str) -> Callable[[list[Call]], float]:
        return lambda calls: sum(c.label == label for c in calls)

    for label in labels:
        row(shown[label], counting(label), ".0f")
    row("AWS calls", len, ".0f")
    row("RCU (reads)", lambda calls: sum(c.rcu for c in calls), ".0f")
    row("WCU (writes to the table)", lambda calls: sum(w.wcu for c in calls for w in c.writes), ".0f")
    row("WCU (writes to GSI1)", lambda calls: sum(w.index_wcu for c in calls for w in c.writes), ".0f")
    failed = sum(not c.ok for name, _ in SCENARIOS for calls in seen[name] for c in calls)
    if failed:
        say(f"   ({failed} calls failed)")
    refresh = seen["refresh"][0]
    wrapped(
        f"The config is read once per SQS batch, not per send: config.refresh() then templates()/email()"
        f" made {len(refresh)} calls ({', '.join(sorted({shown.get(c.label, c.label) for c in refresh}))},"
        f" {sum(c.rcu for c in refresh):.0f} RCU), {len(refresh) / BATCH_SIZE:.1f}/send at BatchSize"
        f" {BATCH_SIZE}: section 1a's {moto['calls'] / SENDS:.2f} calls/send includes them. A duplicate reads"
        " no config at all.",
        "   ",
    )
    wrapped(
        "RCU: ceil(size / 4 KB) per item a GetItem reads (1 when there is none) or for a Query's items"
        " together, min 1; every read here is ConsistentRead. WCU: per item written ceil(max(size before,"
        " size after) / 1 KB), x2 inside TransactWriteItems; an item with GSI1 keys (GSI1 projects ALL)"
        " costs as much again in the index. Sizes by DynamoDB's rules (UTF-8 names + values), read from moto"
        " before and after each write. A first delivery, item by item:",
        "   ",
    )
    per_item: dict[tuple[str, str], list[Written]] = defaultdict(list)
    for calls in seen["sent"]:
        for call in calls:
            for write in call.writes:
                op = call.name.split(".")[1]
                action = f"{op} {write.action}" if op == "TransactWriteItems" else write.action
                per_item[(action, write.kind)].append(write)
    for (action, kind), writes in per_item.items():
        units = sum(w.wcu + w.index_wcu for w in writes) / SAMPLES
        size = statistics.mean(w.size for w in writes)
        say(f"     {action + ' ' + kind:<40}{size:>7,.0f} B{units:>5.0f} WCU")
    total = sum(w.wcu + w.index_wcu for ws in per_item.values() for w in ws) / SAMPLES
    say(f"     {'total':<40}{'':>9}{total:>5.0f} WCU")


def anatomy(raw: bytes) -> dict[str, Any]:
    """What a raw message is made of: its header block, its parts and their transfer encodings."""
    # By name: mypy takes this file for the standard library's ``email`` package.
    parser = importlib.import_module("email.parser")
    message = parser.BytesParser().parsebytes(raw)  # compat32: headers as they are on the wire
    head = raw.split(b"\n\n", 1)[0].decode()
    parts = [
        (part.get_content_type(), part.get("Content-Transfer-Encoding", "7bit"), len(part.get_payload()))
        for part in message.walk()
        if not part.is_multipart()
    ]
    unfolded = head.replace("\n ", " ").replace("\n\t", " ").splitlines()
    unsubscribe = next((line for line in unfolded if line.startswith("List-Unsubscribe:")), "")
    first = next((line for line in head.splitlines() if line.startswith("List-Unsubscribe:")), "")
    return {"head": len(head), "parts": parts, "unsubscribe": unsubscribe, "first": first}


def report_mime(moto: dict[str, Any]) -> None:
    say()
    say("3. What SES gets: Content.Raw of section 1a's sends, built by kindling.adapters.ses.mime")
    for template in TEMPLATES:
        raw, body = moto["mime"][template], moto["bodies"][template]
        sizes = [len(r) for r in raw]
        shape = anatomy(raw[0])
        parts = ", ".join(f"{kind} {size:,} B {cte}" for kind, cte, size in shape["parts"])
        say(
            f"   {template:<19} raw MIME {statistics.mean(sizes):,.0f} B (min {min(sizes):,},"
            f" max {max(sizes):,}); SendEmail request body {statistics.mean(body):,.0f} B"
        )
        say(f"   {'':<19} headers {shape['head']:,} B; {parts}")
    shape = anatomy(moto["mime"][TEMPLATES[0]][0])
    encoded = "=?utf-8?" in shape["unsubscribe"].lower()
    say(
        "   The body carries Raw.Data in base64. List-Unsubscribe goes out as "
        + ("RFC 2047 encoded-words, folded:" if encoded else "a plain <URL>:")
    )
    say(f"     {shape['first'][:104]}")


# --- main ----------------------------------------------------------------------------------
def main() -> None:
    started = time.perf_counter()
    with embedded_aws({**AWS_ENV, **QUIET_POWERTOOLS}):
        header("email")
        world = World()
        try:
            settle()
            moto_figures = bench_moto(world)
            domain = bench_domain(world, moto_figures["leads"])
            report_throughput(moto_figures, domain)
            report_calls(run_scenarios(world), moto_figures)
            report_mime(moto_figures)
        finally:
            world.close()
    say()
    say(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
