"""Capture benchmark: throughput, AWS calls and DynamoDB write units per event, import time.

Run on demand (``make bench`` or ``.venv/bin/python bench/capture.py``); it is not a test.

1. Events per second through ``functions/capture/handler.py`` called in-process with API
   Gateway HTTP API (payload 2.0) events, publishing to an EventBridge bus in an embedded
   moto server over HTTP, and again with the publisher stubbed out (the handler's own CPU).
2. AWS API calls and DynamoDB write capacity units per event through the whole pipeline:
   capture -> bus -> rule -> SQS -> ``functions/profiles/handler.py`` -> DynamoDB. Calls
   are counted with botocore event hooks on the clients the handlers use.
3. Import time of the capture handler module against a bare ``import boto3``, each in
   fresh interpreters.

Figures from moto are not AWS latencies: they show the shape of the cost, not its size.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    AWS_ENV,
    QUIET_POWERTOOLS,
    ROOT,
    create_table,
    embedded_aws,
    header,
    item_size,
    key_of,
    say,
    write_units,
)

from kindling_ops.lambda_events import LambdaContext, http_event, sqs_event, sqs_record_of
from tests.fakes import NullPublisher

CAPTURE_HANDLER = ROOT / "functions" / "capture" / "handler.py"
PROFILES_HANDLER = ROOT / "functions" / "profiles" / "handler.py"

BUS_NAME = "bench-bus"
TABLE_NAME = "bench-table"
QUEUE_NAME = "bench-profiles"
WRITE_KEY = "bench-write-key"

THROUGHPUT_SECONDS = 2.0  # per scenario, after a short warm-up
BATCH_SIZE = 20
IMPORT_RUNS = 5

#: What the handlers read at import time (settings) plus quiet, local AWS.
HANDLER_ENV = {
    "BUS_NAME": BUS_NAME,
    "WRITE_KEY_SECRET_ARN": "bench/write-key",
    "ALLOWED_ORIGINS": "https://www.acme.example",
    "TABLE_NAME": TABLE_NAME,
    **QUIET_POWERTOOLS,
    "POWERTOOLS_SERVICE_NAME": "kindling",
    **AWS_ENV,
}
# Figures go to common.OUT, the real stdout: handlers print to sys.stdout (Powertools metrics), which
# is sent to /dev/null.


# --- realistic requests ------------------------------------------------------------------
UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
PAGES = [
    ("/", "Acme - Lead nurturing for B2B teams"),
    ("/pricing", "Pricing - Acme"),
    ("/docs/getting-started", "Getting started - Acme Docs"),
    ("/blog/lead-scoring-101", "Lead scoring 101 - Acme Blog"),
    ("/customers", "Customers - Acme"),
]
SEARCH = "?utm_source=google&utm_medium=cpc&utm_campaign=q4-demand"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page(i: int) -> dict[str, str]:
    path, title = PAGES[i % len(PAGES)]
    return {
        "path": path,
        "referrer": "https://www.google.com/",
        "search": SEARCH,
        "title": title,
        "url": f"https://www.acme.example{path}{SEARCH}",
    }


def _context(i: int) -> dict[str, Any]:
    """What analytics.js puts in ``context`` for a browser visit."""
    return {
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "locale": "en-US",
        "timezone": "Europe/Berlin",
        "userAgent": UA,
        "userAgentData": {
            "brands": [{"brand": "Chromium", "version": "124"}, {"brand": "Google Chrome", "version": "124"}],
            "mobile": False,
            "platform": "macOS",
        },
        "page": _page(i),
        "campaign": {"source": "google", "medium": "cpc", "name": "q4-demand"},
    }


def _common(anon: str, i: int, when: datetime) -> dict[str, Any]:
    return {
        "messageId": f"ajs-next-{uuid.uuid4().hex}",
        "anonymousId": anon,
        "context": _context(i),
        "timestamp": iso(when),
        "sentAt": iso(when),
        "integrations": {},
    }


def page_message(anon: str, i: int, when: datetime) -> dict[str, Any]:
    page = _page(i)
    return {"type": "page", "name": page["title"], "properties": page, **_common(anon, i, when)}


def track_message(anon: str, i: int, when: datetime) -> dict[str, Any]:
    return {
        "type": "track",
        "event": ["Signup Started", "Demo Requested", "Pricing Viewed"][i % 3],
        "properties": {"plan": "team", "seats": 5 + i % 20, "billing": "annual", "value": 1490.0},
        **_common(anon, i, when),
    }


def identify_message(anon: str, user_id: str, email: str, when: datetime) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user_id,
        "traits": {
            "email": email,
            "name": "Dana Whitfield",
            "company": "Northwind Analytics",
            "title": "Head of Growth",
            "plan": "trial",
        },
        **_common(anon, 0, when),
    }


def segment_request(endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event for a Segment client's POST to ``/v1/<endpoint>``."""
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return http_event(
        "POST",
        f"/v1/{endpoint}",
        body=payload,
        headers={
            "accept": "*/*",
            "authorization": f"Basic {auth}",
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "origin": "https://www.acme.example",
            "user-agent": UA,
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        source_ip="203.0.113.7",
        api_id="abc123",
    )


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- counting API calls and DynamoDB write units --------------------------------------------
class Write:
    """One item a DynamoDB write request touches."""

    def __init__(self, kind: str, table: str, key: dict[str, Any], item: dict[str, Any] | None, txn: bool):
        self.kind, self.table, self.key, self.item, self.txn = kind, table, key, item, txn
        self.before = 0


def _writes(operation: str, params: dict[str, Any]) -> list[Write]:
    if operation == "PutItem":
        return [Write("Put", params["TableName"], key_of(params["Item"]), params["Item"], False)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [Write(operation[:-4], params["TableName"], params["Key"], None, False)]
    if operation == "TransactWriteItems":
        found = []
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            item = body.get("Item")
            found.append(Write(kind, body["TableName"], body.get("Key") or key_of(item), item, True))
        return found
    if operation == "BatchWriteItem":
        found = []
        for table, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append(Write("Put", table, key_of(item), item, False))
                else:
                    found.append(Write("Delete", table, request["DeleteRequest"]["Key"], None, False))
        return found
    return []


class Meter:
    """Counts API calls (``service.Operation``) and DynamoDB write units via botocore event hooks.

    ``before-parameter-build`` fires once per API call (retries are not new calls); for DynamoDB
    writes it also reads each touched item's size before the write, and ``after-call`` reads it
    after, through a separate client that is not metered.
    """

    def __init__(self, probe: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.wcu: Counter[str] = Counter()
        self._probe = probe

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._before, unique_id=f"bench-b-{id(client)}")
        client.meta.events.register("after-call", self._after, unique_id=f"bench-a-{id(client)}")

    def snapshot(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        return Counter(self.calls), Counter(self.failed), Counter(self.wcu)

    def _size_now(self, write: Write) -> int:
        response = self._probe.get_item(TableName=write.table, Key=write.key, ConsistentRead=True)
        return item_size(response.get("Item"))

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        self.calls[f"{model.service_model.endpoint_prefix}.{model.name}"] += 1
        if model.service_model.endpoint_prefix != "dynamodb":
            return
        writes = _writes(model.name, params)
        for write in writes:
            write.before = self._size_now(write)
        context["bench_writes"] = writes

    def _after(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}.{model.name}"
        ok = http_response.status_code < 300
        if not ok:
            self.failed[name] += 1
        units = 0
        for write in context.pop("bench_writes", []):
            if ok:
                if write.kind == "Put":
                    after = item_size(write.item)
                elif write.kind == "Update":
                    after = self._size_now(write)
                else:  # Delete, ConditionCheck: the larger image is the one before
                    after = 0
                units += write_units(max(write.before, after)) * (2 if write.txn else 1)
            elif not write.txn:
                units += write_units(write.before)  # a failed conditional write is billed too
            # A cancelled transaction reports no consumed capacity: counted as 0.
        if units:
            self.wcu[name] += units


def diff(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: after[k] - before[k] for k in after if after[k] - before[k]})


# --- 1. throughput -----------------------------------------------------------------------
def throughput(
    handler: Any, requests: list[dict[str, Any]], events_per_request: int, meter: Meter
) -> dict[str, float]:
    context = LambdaContext("bench-capture")
    for request in requests[:20]:  # warm-up: lazy imports, clients, caches
        response = handler.lambda_handler(request, context)
        if response["statusCode"] != 200:
            raise SystemExit(f"capture answered {response['statusCode']}: {response.get('body')}")
    calls_before = meter.snapshot()[0]
    latencies = []
    n = 0
    started = time.perf_counter()
    deadline = started + THROUGHPUT_SECONDS
    while True:
        t0 = time.perf_counter()
        response = handler.lambda_handler(requests[n % len(requests)], context)
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        if response["statusCode"] != 200:
            raise SystemExit(f"capture answered {response['statusCode']}: {response.get('body')}")
        n += 1
        if t1 >= deadline:
            break
    elapsed = time.perf_counter() - started
    calls = sum(diff(meter.snapshot()[0], calls_before).values())
    latencies.sort()
    return {
        "req_s": n / elapsed,
        "ev_s": n * events_per_request / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "calls": calls / (n * events_per_request),
    }


def bench_throughput(capture: Any, meter: Meter) -> dict[str, float]:
    now = datetime.now(UTC)
    singles = [
        segment_request("track", track_message(f"anon-{i % 50}", i, now - timedelta(seconds=i)))
        for i in range(200)
    ]
    batches = []
    for b in range(20):
        batch = [
            (page_message if i % 2 else track_message)(f"anon-{b}", i, now - timedelta(seconds=i))
            for i in range(BATCH_SIZE)
        ]
        batches.append(segment_request("batch", {"batch": batch, "sentAt": iso(now)}))
    body_bytes = statistics.mean(len(e["body"]) for e in singles)
    say("1. Capture handler throughput (in-process lambda_handler, one thread)")
    say(
        f"   requests: POST /v1/track ~{body_bytes / 1024:.1f} KB;"
        f" POST /v1/batch with {BATCH_SIZE} page/track events"
        f" ~{statistics.mean(len(e['body']) for e in batches) / 1024:.1f} KB; {THROUGHPUT_SECONDS:.0f} s each"
    )
    say(f"   {'scenario':<42}{'req/s':>8}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'AWS calls/ev':>14}")
    real = capture.publisher
    results = {}
    for label, publisher in (("EventBridge on moto (HTTP)", real), ("publisher stubbed (handler CPU)", None)):
        capture.publisher = publisher or NullPublisher()
        try:
            for name, requests, per in (("/v1/track", singles, 1), ("/v1/batch", batches, BATCH_SIZE)):
                r = throughput(capture, requests, per, meter)
                results[f"{name} {label}"] = r["calls"]
                say(
                    f"   {name + ', ' + label:<42}{r['req_s']:>8.0f}{r['ev_s']:>10.0f}"
                    f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['calls']:>14.2f}"
                )
        finally:
            capture.publisher = real
    say("   (moto runs in this process: its CPU shares the GIL with the handler)")
    return results


WCU_METHOD = (
    "WCU: per item written ceil(max(size before, size after) / 1 KB), x2 inside TransactWriteItems",
    "(ConditionCheck billed as a write). Item size by DynamoDB's rules (UTF-8 names + values), read",
    "from moto before and after each write. Failed conditional writes count; cancelled transactions 0.",
)


# --- 2. pipeline -------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.events = 0
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.wcu: Counter[str] = Counter()

    def add(self, before: tuple[Counter[str], ...], after: tuple[Counter[str], ...], events: int = 1) -> None:
        self.events += events
        self.calls += diff(after[0], before[0])
        self.failed += diff(after[1], before[1])
        self.wcu += diff(after[2], before[2])


def _print_tally(title: str, tally: Tally) -> None:
    n = tally.events
    say(
        f"   {title} (n={n}): {sum(tally.calls.values()) / n:.2f} calls/event,"
        f" {sum(tally.wcu.values()) / n:.1f} WCU/event"
    )
    for name in sorted(tally.calls):
        extra = f"  ({tally.failed[name] / n:.2f} failed)" if tally.failed[name] else ""
        wcu = f"{tally.wcu[name] / n:>6.1f} WCU" if tally.wcu[name] else ""
        say(f"       {name:<32}{tally.calls[name] / n:>6.2f}  {wcu:<10}{extra}".rstrip())


def bench_pipeline(
    capture: Any, profiles: Any, meter: Meter, aws_clients: dict[str, Any], batch_calls: float
) -> None:
    events, sqs, probe = aws_clients["events"], aws_clients["sqs"], aws_clients["probe"]
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="bench-web-events",
        EventBusName=BUS_NAME,
        EventPattern=json.dumps({"source": ["kindling.capture"]}),
    )
    events.put_targets(
        Rule="bench-web-events", EventBusName=BUS_NAME, Targets=[{"Id": "profiles", "Arn": queue_arn}]
    )

    # Visitors A: identify first (new lead), then 10 pages. Visitors B: 5 pages as an anonymous
    # lead, then identify (claims userId + email for the existing lead).
    start = datetime.now(UTC) - timedelta(hours=1)
    plan: list[tuple[str, str, dict[str, Any]]] = []  # (category, endpoint, message)
    for v in range(2):
        anon = f"anon-a{v}-{uuid.uuid4().hex[:8]}"
        when = start + timedelta(minutes=10 * v)
        plan.append(
            (
                "identify, new lead",
                "identify",
                identify_message(anon, f"user-a{v}", f"dana.a{v}@northwind.example", when),
            )
        )
        plan += [
            ("page, known lead", "page", page_message(anon, i, when + timedelta(seconds=10 * (i + 1))))
            for i in range(10)
        ]
    for v in range(2):
        anon = f"anon-b{v}-{uuid.uuid4().hex[:8]}"
        when = start + timedelta(minutes=30 + 10 * v)
        plan.append(("page, new lead (anonymous)", "page", page_message(anon, 0, when)))
        plan += [
            ("page, known lead", "page", page_message(anon, i, when + timedelta(seconds=10 * i)))
            for i in range(1, 5)
        ]
        plan.append(
            (
                "identify, known lead (claims ids)",
                "identify",
                identify_message(
                    anon, f"user-b{v}", f"sam.b{v}@contoso.example", when + timedelta(seconds=60)
                ),
            )
        )

    # Capture, one request per event.
    context = LambdaContext("bench-capture")
    capture_tally = Tally()
    category_of: dict[str, str] = {}
    for category, endpoint, message in plan:
        category_of[message["messageId"]] = category
        before = meter.snapshot()
        response = capture.lambda_handler(segment_request(endpoint, message), context)
        if response["statusCode"] != 200:
            raise SystemExit(f"capture answered {response['statusCode']}: {response.get('body')}")
        capture_tally.add(before, meter.snapshot())

    # The envelopes EventBridge delivered to the queue, in the order they were captured.
    received: dict[str, dict[str, Any]] = {}
    for _ in range(50):
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch and len(received) >= len(plan):
            break
        for message in batch:
            received[json.loads(message["Body"])["detail"]["message_id"]] = message
        if not batch:
            time.sleep(0.05)
    missing = [m["messageId"] for _, _, m in plan if m["messageId"] not in received]
    if missing:
        raise SystemExit(f"{len(missing)} event(s) never reached the queue")

    # Profiles: one record per invocation so each event's calls can be told apart (the batch
    # processor handles records one by one, so batching does not change calls per record).
    context = LambdaContext("bench-profiles")
    tallies: dict[str, Tally] = {}
    all_profiles = Tally()
    redeliver: list[str] = []
    for _, _, message in plan:
        record = sqs_record_of(received[message["messageId"]], queue_arn, receive_count=1)
        before = meter.snapshot()
        result = profiles.lambda_handler(sqs_event([record]), context)
        after = meter.snapshot()
        if result.get("batchItemFailures"):
            raise SystemExit(f"profiles failed a record: {result}")
        tallies.setdefault(category_of[message["messageId"]], Tally()).add(before, after)
        all_profiles.add(before, after)
        if message["type"] == "page" and len(redeliver) < 4 and message["messageId"] not in redeliver:
            redeliver.append(message["messageId"])
    for message_id in redeliver[::2]:  # SQS delivers at least once: the same message again
        record = sqs_record_of(received[message_id], queue_arn, receive_count=2)
        before = meter.snapshot()
        profiles.lambda_handler(sqs_event([record]), context)
        tallies.setdefault("page, redelivered duplicate", Tally()).add(before, meter.snapshot())

    leads = probe.scan(
        TableName=TABLE_NAME,
        FilterExpression="SK = :p AND attribute_not_exists(merged_into)",
        ExpressionAttributeValues={":p": {"S": "PROFILE"}},
    )["Count"]
    say()
    say(
        "2. AWS API calls and DynamoDB write units per event"
        f" ({len(plan)} events for 4 visitors; {leads} leads in the table, 4 expected)"
    )
    for line in WCU_METHOD:
        say(f"   {line}")
    say(f"   capture, POST /v1/batch of {BATCH_SIZE}: {batch_calls:.2f} calls/event (events.PutEvents)")
    _print_tally("capture, one event per request", capture_tally)
    for category in (
        "identify, new lead",
        "page, new lead (anonymous)",
        "page, known lead",
        "identify, known lead (claims ids)",
        "page, redelivered duplicate",
    ):
        _print_tally(f"profiles, {category}", tallies[category])
    _print_tally("profiles, all first deliveries", all_profiles)
    n = len(plan)
    total_calls = (sum(capture_tally.calls.values()) + sum(all_profiles.calls.values())) / n
    total_wcu = sum(all_profiles.wcu.values()) / n
    say(
        f"   whole pipeline for this mix: {total_calls:.2f} API calls/event (capture one event per request"
        f" + profiles), {total_wcu:.1f} WCU/event"
    )
    say("   not counted: Lambda's SQS polling (ReceiveMessage/DeleteMessage) and EventBridge->SQS delivery.")


# --- 3. import time ----------------------------------------------------------------------
IMPORT_HANDLER = """
import importlib.util, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("bench_capture_handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
t1 = time.perf_counter()
boto3_loaded = "boto3" in sys.modules
if sys.argv[2:] == ["import-only"]:
    raise SystemExit(0)
from kindling.adapters import aws
aws.client("events")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, boto3_loaded)
"""
IMPORT_BOTO3 = """
import time
t0 = time.perf_counter()
import boto3
print(time.perf_counter() - t0)
"""


def _run(args: list[str], env: dict[str, str]) -> tuple[list[str], float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import subprocess failed:\n{done.stderr[-2000:]}")
    return done.stdout.split(), wall, done.stderr


def _top_imports(stderr: str, count: int) -> list[tuple[str, float]]:
    """Top-level imports by cumulative time from ``-X importtime``."""
    top = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  ") and name.strip() not in ("site", "encodings"):
            top.append((name.strip(), int(cumulative) / 1e6))
    return sorted(top, key=lambda x: -x[1])[:count]


def bench_imports() -> None:
    env = {**os.environ, **HANDLER_ENV}
    env.pop("AWS_ENDPOINT_URL", None)
    handler_args = ["-c", IMPORT_HANDLER, str(CAPTURE_HANDLER)]
    _run(handler_args, env)  # warm the bytecode caches once
    _run(["-c", IMPORT_BOTO3], env)
    handler, client, handler_wall, boto, boto_wall = [], [], [], [], []
    boto3_loaded = ""
    for _ in range(IMPORT_RUNS):
        out, wall, _ = _run(handler_args, env)
        handler.append(float(out[0]))
        client.append(float(out[1]))
        boto3_loaded = out[2]
        handler_wall.append(wall)
        out, wall, _ = _run(["-c", IMPORT_BOTO3], env)
        boto.append(float(out[0]))
        boto_wall.append(wall)
    _, _, stderr = _run(["-X", "importtime", *handler_args, "import-only"], env)
    h, b = statistics.median(handler), statistics.median(boto)
    say()
    say(f"3. Import time, fresh interpreter each, median of {IMPORT_RUNS}")
    rows = (
        ("capture handler module (importlib by path)", h, statistics.median(handler_wall)),
        ("import boto3", b, statistics.median(boto_wall)),
    )
    say(f"   {'':<44}{'import s':>10}{'process s':>11}")
    for label, seconds, process in rows:
        say(f"   {label:<44}{seconds:>10.3f}{process:>11.3f}")
    say(f"   ratio handler / boto3: {h / b:.2f}x   (boto3 already imported by the handler: {boto3_loaded})")
    first_client = statistics.median(client)
    say(f"   then the first aws.client('events') (paid on the first request): {first_client:.3f} s")
    tops = ", ".join(f"{name} {seconds:.3f}" for name, seconds in _top_imports(stderr, 6))
    say(f"   largest top-level imports in the handler (-X importtime, s): {tops}")


# --- main ----------------------------------------------------------------------------------
def in_process() -> None:
    """Sections 1 and 2: both handlers in this process, AWS on the moto server ``AWS_ENDPOINT_URL`` names."""
    import boto3

    # Powertools warns on every invocation that adds no metric (most profiles records).
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from kindling.adapters import aws

    aws.reset()
    setup = {name: boto3.session.Session().client(name) for name in ("events", "sqs", "dynamodb")}
    setup["probe"] = setup["dynamodb"]  # not metered: only the handlers' cached clients are
    setup["events"].create_event_bus(Name=BUS_NAME)
    create_table(setup["dynamodb"], TABLE_NAME)

    capture = load_module("bench_capture_handler", CAPTURE_HANDLER)
    profiles = load_module("bench_profiles_handler", PROFILES_HANDLER)
    meter = Meter(probe=setup["probe"])
    for service in ("events", "dynamodb"):  # the cached clients both handlers use
        meter.attach(aws.client(service))

    header("capture")
    calls = bench_throughput(capture, meter)
    bench_pipeline(capture, profiles, meter, setup, calls["/v1/batch EventBridge on moto (HTTP)"])


def main() -> None:
    started = time.perf_counter()
    # Powertools prints metrics to stdout (even when disabled, every 100 values): discard them.
    with (
        embedded_aws(HANDLER_ENV, {"bench/write-key": WRITE_KEY}),
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
    ):
        in_process()
    bench_imports()
    say()
    say(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
