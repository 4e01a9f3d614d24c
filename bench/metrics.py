"""Metrics benchmark: the consumer's events per second and DynamoDB cost per event, the fold's cost,
what a report costs when ten times the events are behind it, and the rebuild.

Run on demand (``make bench`` or ``.venv/bin/python bench/metrics.py [LEADS LEADS]``: the two table
sizes, 20 and 200 by default); it is not a test.

1. ``functions/metrics/handler.py``, loaded by path and invoked in-process with SQS batches of 10 (the
   function's BatchSize in template.yaml), on an embedded moto server, the process clock half a
   minute past each batch's first event (so the events are fresh: logged, for the fold), and
   ``functions/metrics/fold.py`` run every ten minutes of that clock and once after the last event.
   The stream is tests/unit/test_metrics.py's ``event_stream`` (a month and a half of sends, skips,
   deferrals, SES outcomes, opens, clicks, unsubscribes and stage moves, about 15% of them
   redelivered), each event in the EventBridge envelope it arrives in (``on_the_bus``), with each
   lead's profile, score and send items stored as tests/integration/test_metrics_rebuild.py's
   ``store_leads`` stores them. Events per second on the batches that are not probed; DynamoDB
   calls per event by kind and outcome on every batch; RCU and WCU per event on every
   PROBE_EVERY-th batch; the fold's calls and capacity, every run sized.
2. Three reports through ``functions/leads_api/handler.py`` over the same date range, after counting
   20 leads and, in another table, 200 (ten times the events): DynamoDB calls, items, RCU and time.
3. ``kindling.metrics.rebuild.rebuild_metrics`` on the 200-lead table: time, events replayed per
   second, writes and capacity; the reports after it are checked equal to those before.

Calls and capacity are counted with botocore event hooks on the clients the handlers and the rebuild
use. Reads are sized from the full items (a read with a projection is read again without it, as
DynamoDB bills the whole item); writes from the items read back before and after with a client that
is not metered, whose time is left out of every figure.

moto is kindling_ops.local.aws.EmbeddedAws (moto's server, one request at a time) in this process,
sharing its GIL. Figures from moto show the shape of the cost, not its size: moto reads every item of
the table for every Query, not only the key's, so a report's time and the rebuild's reading of the log
grow with the whole table on moto where DynamoDB's do not. The capacity figures are DynamoDB's billing
rules applied to the items the calls read and wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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

METRICS_HANDLER = ROOT / "functions" / "metrics" / "handler.py"
METRICS_FOLD = ROOT / "functions" / "metrics" / "fold.py"
LEADS_API_HANDLER = ROOT / "functions" / "leads_api" / "handler.py"

SEED = 3  # event_stream's seed, for both sizes
SIZES = (20, 200)  # leads per table: the second has ten times the events over the same weeks
BATCH_SIZE = 10  # the metrics function's SQS BatchSize in template.yaml
PROBE_EVERY = 8  # section 1: every 8th batch has its writes sized (and is not timed)
WINDOW_DAYS = 14  # the attribution window (AttributionWindowDays' default)
ADMIN_TOKEN = "bench-admin-token"
LINK_SECRET = "bench-link-secret-0123456789abcdef"
RANGE = {"from": "2026-10-25", "to": "2026-12-31"}  # covers every event of the stream
REPORTS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("GET /v1/reports/funnel?by=segment", "/v1/reports/funnel", {"by": "segment"}),
    ("GET /v1/reports/emails", "/v1/reports/emails", {}),
    ("GET /v1/reports/programs/welcome", "/v1/reports/programs/welcome", {}),
)
REPORT_RUNS = 3  # section 2: time is the median of this many runs (capacity from one more, probed)

#: What the handlers read at import time (settings; TABLE_NAME is set per table) plus quiet, local AWS.
HANDLER_ENV = {
    **AWS_ENV,
    **QUIET_POWERTOOLS,
    "POWERTOOLS_SERVICE_NAME": "kindling",
    "ATTRIBUTION_WINDOW_DAYS": str(WINDOW_DAYS),
    "ADMIN_TOKEN_SECRET_ARN": "bench/admin-token",
    "LINK_SECRET_ARN": "bench/link-secret",
    "SEND_QUEUE_URL": "http://unused",
    "PROGRAMS_QUEUE_URL": "http://unused",
    "BUS_NAME": "unused-bus",
    "PUBLIC_API_URL": "http://127.0.0.1:3000",
}
# Figures go to common.OUT, the real stdout: the handlers print to sys.stdout (Powertools metrics),
# which is sent to /dev/null.


def load_module(name: str, path: Path, table: str) -> Any:
    """A handler module loaded by path, as Lambda loads it, with TABLE_NAME ``table``."""
    os.environ["TABLE_NAME"] = table
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- counting calls, items and units --------------------------------------------------------------
@dataclasses.dataclass
class Call:
    operation: str
    what: str  # the items it read, by kind
    ok: bool = True
    seconds: float = 0.0
    rcu: float = 0.0
    wcu: int = 0
    count: int = 0  # items returned
    read_bytes: int = 0  # the full size of the items read
    writes: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (item kind, WCU), if sized
    written: list[str] = dataclasses.field(default_factory=list)  # ``PK|SK`` of each item written

    @property
    def label(self) -> str:
        return f"{self.operation} {self.what}".strip() + ("" if self.ok else " (cancelled)")


def item_kind(key: dict[str, Any]) -> str:
    """``kind_of``, with the metrics items told apart by what they hold: ``METRIC funnel`` (a counter),
    ``METRICKEYS email`` (a key list), ``METRICKEYS log`` (the logged days), ``METRICLOG`` (an event)."""
    pk = key["PK"]["S"].split("#")
    if pk[0] == "METRIC":
        return f"METRIC {pk[2]}"
    if pk[0] == "METRICKEYS":
        return f"METRICKEYS {pk[-1]}"
    if pk[0] in ("METRICLOG", "METRICFOLD", "METRICSEEN"):
        return pk[0]
    return kind_of(key)


@dataclasses.dataclass
class _Write:
    table: str
    key: dict[str, Any]
    action: str  # Put, Update, Delete or ConditionCheck
    item: dict[str, Any] | None  # a Put's item, as sent
    txn: bool
    before: dict[str, Any] | None = None


def _writes(operation: str, params: dict[str, Any]) -> list[_Write]:
    if operation == "PutItem":
        return [_Write(params["TableName"], key_of(params["Item"]), "Put", params["Item"], False)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_Write(params["TableName"], params["Key"], operation.removesuffix("Item"), None, False)]
    found = []
    if operation == "TransactWriteItems":
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            key = body.get("Key") or key_of(body["Item"])
            found.append(_Write(body["TableName"], key, kind, body.get("Item"), True))
    elif operation == "BatchWriteItem":
        for table, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append(_Write(table, key_of(item), "Put", item, False))
                else:
                    found.append(_Write(table, request["DeleteRequest"]["Key"], "Delete", None, False))
    return found


def _what(operation: str, params: dict[str, Any]) -> str:
    if operation == "GetItem":
        return item_kind(params["Key"])
    if operation == "BatchGetItem":
        keys = [k for request in params["RequestItems"].values() for k in request["Keys"]]
        return "+".join(sorted({item_kind(k) for k in keys}))
    if operation == "Query":
        pk = params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", "?")
        return pk.split("#")[0]
    return ""


def _unprojected(params: dict[str, Any]) -> dict[str, Any]:
    """A Query's or GetItem's parameters without its projection (and the names only it used)."""
    request = {k: v for k, v in params.items() if k != "ProjectionExpression"}
    used = " ".join(str(params.get(k, "")) for k in ("KeyConditionExpression", "FilterExpression"))
    names = {k: v for k, v in params.get("ExpressionAttributeNames", {}).items() if k in used}
    request.pop("ExpressionAttributeNames", None)
    if names:
        request["ExpressionAttributeNames"] = names
    return request


class Meter:
    """DynamoDB calls via botocore hooks: ``before-parameter-build`` fires once per API call (retries
    are not new calls), ``after-call`` once it is answered.

    With ``probing`` on, reads are sized from the full items and every write's items are read before
    and after it through ``probe``, a client that is not metered, so write units come from the items'
    real sizes in moto. A call's ``seconds`` leave the probes out; ``overhead`` adds up the time the
    hooks spend on probes and on dropping moto's dashboard references.
    """

    def __init__(self, probe: Any) -> None:
        self.calls: list[Call] = []
        self.probing = False
        self.overhead = 0.0
        self._probe = probe

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.*", self._before, unique_id=f"bench-b-{id(client)}")
        events.register("after-call.dynamodb.*", self._after, unique_id=f"bench-a-{id(client)}")

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self._probe.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        began = time.perf_counter()
        writes = _writes(model.name, params)
        if self.probing:
            for write in writes:
                write.before = self._item(write.table, write.key)
        self.overhead += time.perf_counter() - began
        context["bench"] = (dict(params), writes, self.probing, time.perf_counter())

    def _read_sizes(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> list[int]:
        """The full sizes of the items a read returned (read again without its projection)."""
        if operation == "GetItem":
            if "ProjectionExpression" in params:
                parsed = self._probe.get_item(**_unprojected(params))
            return [item_size(parsed.get("Item"))] if parsed.get("Item") else []
        if operation == "Query":
            if "ProjectionExpression" in params:
                parsed = self._probe.query(**_unprojected(params))
            return [item_size(i) for i in parsed.get("Items", [])]
        if operation == "BatchGetItem":  # by the keys asked for: a projection may leave the key out
            sizes = []
            for table, request in params["RequestItems"].items():
                for key in request["Keys"]:
                    found = self._item(table, key)
                    if found is not None:
                        sizes.append(item_size(found))
            return sizes
        return []

    def _after(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        params, writes, probing, started = context.pop("bench")
        seconds = time.perf_counter() - started
        began = time.perf_counter()
        reset_model_data()
        operation = model.name
        call = Call(operation, _what(operation, params), http_response.status_code < 300, seconds)
        consistent = bool(params.get("ConsistentRead"))
        if operation == "BatchGetItem":
            consistent = all(r.get("ConsistentRead") for r in params["RequestItems"].values())
        if operation == "GetItem":
            call.count = int("Item" in parsed)
        elif operation == "Query":
            call.count = len(parsed.get("Items", []))
        elif operation == "BatchGetItem":
            call.count = sum(len(found) for found in parsed.get("Responses", {}).values())
        if probing and operation in ("GetItem", "Query", "BatchGetItem"):
            sizes = self._read_sizes(operation, params, parsed)
            call.read_bytes = sum(sizes)
            if operation == "BatchGetItem":  # each item rounded up on its own
                call.rcu = sum(read_units(size, consistent) for size in sizes)
            else:
                call.rcu = read_units(call.read_bytes, consistent)
        if call.ok:
            call.written = [f"{w.key['PK']['S']}|{w.key['SK']['S']}" for w in writes]
        for write in writes if probing else []:
            if not call.ok:
                # A failed condition is billed like a write of the item as it is; a cancelled
                # transaction is counted as 0.
                units = 0 if write.txn else write_units(item_size(write.before))
            else:
                after = write.item if write.action == "Put" else None
                if write.action == "Update":
                    after = self._item(write.table, write.key)
                elif write.action == "ConditionCheck":
                    after = write.before
                units = write_units(max(item_size(write.before), item_size(after))) * (2 if write.txn else 1)
            call.wcu += units
            call.writes.append((item_kind(write.key), units))
        self.calls.append(call)
        self.overhead += time.perf_counter() - began

    def measuring(self) -> contextlib.AbstractContextManager[list[Call]]:
        """The calls made inside the block."""
        return appended(self.calls)

    @contextlib.contextmanager
    def probed(self) -> Iterator[None]:
        self.probing = True
        try:
            yield
        finally:
            self.probing = False


def by_label(calls: list[Call], per: int = 1) -> str:
    """``2 GetItem METRICGEN, 1 TransactWriteItems (8 items)``, per ``per`` events."""
    counts: Counter[str] = Counter()
    items: Counter[str] = Counter()
    for call in calls:
        counts[call.label] += 1
        items[call.label] += len(call.writes)
    parts = []
    for label, n in counts.items():
        writes = f" ({items[label] / n:.1f} items)" if items[label] else ""
        parts.append(f"{n / per:.2f} {label}{writes}")
    return ", ".join(parts)


# --- 1. the consumer --------------------------------------------------------------------------------
@dataclasses.dataclass
class Seen:
    """One event through the handler's recorder."""

    kind: str
    outcome: str
    calls: list[Call]
    seconds: float  # inside recorder.record, the meter's overhead left out
    probed: bool


class ObservedRecorder:
    """The handler's MetricsRecorder, noting each event's kind, outcome, DynamoDB calls and time."""

    def __init__(self, inner: Any, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter
        self.seen: list[Seen] = []

    def record(
        self, source: str, detail_type: str, detail: dict[str, Any], at: datetime, now: datetime
    ) -> str:
        from kindling.metrics.counters import parse_event

        parsed = parse_event(source, detail_type, detail, at)
        kind = parsed.kind if parsed is not None else "none"
        mark, began = self._meter.overhead, time.perf_counter()
        with self._meter.measuring() as calls:
            outcome: str = self._inner.record(source, detail_type, detail, at, now)
        seconds = time.perf_counter() - began - (self._meter.overhead - mark)
        self.seen.append(Seen(kind, outcome, calls, seconds, self._meter.probing))
        return outcome


@dataclasses.dataclass
class World:
    """One table: its leads' events counted by its own metrics handler, read by its own admin API."""

    leads: int
    table: str
    events: list[Any]  # MetricEvent
    metrics: Any  # the handler module
    fold: Any  # the fold's handler module
    api: Any  # the handler module
    recorder: ObservedRecorder
    seconds: float = 0.0  # lambda_handler time of the timed batches, the meter's overhead left out
    inside: float = 0.0  # of it, inside DynamoDB calls
    timed: int = 0  # events in them
    batches: int = 0
    folds: list[list[Call]] = dataclasses.field(default_factory=list)  # each fold's calls, sized


def make_world(leads: int, loader: Any, meter: Meter, docs: dict[str, dict[str, Any]]) -> World:
    from kindling.adapters.config_store import DynamoConfigStore
    from kindling_ops.config import apply
    from tests.integration.test_metrics_rebuild import store_leads
    from tests.unit.test_metrics import event_stream

    table = f"bench-metrics-{leads}"
    create_table(loader, table)
    apply(DynamoConfigStore(table, loader), docs, datetime(2026, 10, 1, tzinfo=UTC))
    events, templates = event_stream(SEED, leads)
    store_leads(loader, table, events, templates)
    metrics = load_module(f"bench_metrics_handler_{leads}", METRICS_HANDLER, table)
    fold = load_module(f"bench_metrics_fold_{leads}", METRICS_FOLD, table)
    api = load_module(f"bench_leads_api_handler_{leads}", LEADS_API_HANDLER, table)
    recorder = ObservedRecorder(metrics.recorder, meter)
    metrics.recorder = recorder  # record_handler looks it up at each call
    reset_model_data()
    return World(leads, table, events, metrics, fold, api, recorder)


def run_fold(world: World, meter: Meter) -> None:
    """One run of the fold, its calls sized (not timed)."""
    from kindling_ops.lambda_events import LambdaContext

    with meter.probed(), meter.measuring() as calls:
        world.fold.lambda_handler({}, LambdaContext("bench-metrics-fold"))
    world.folds.append(calls)


def deliver(world: World, meter: Meter) -> None:
    """Every event, in SQS batches of BATCH_SIZE, as it happens (the clock half a minute past the
    batch's first event), the fold every ten minutes of that clock and once after the last event;
    the first batch (a cold container) and every PROBE_EVERY-th (sized) are not timed."""
    from kindling.kernel import clock
    from kindling.metrics.counters import FOLD_LAG
    from kindling_ops.lambda_events import LambdaContext, sqs_event, sqs_record
    from tests.integration.test_metrics_rebuild import body_of

    bodies = [body_of(e) for e in world.events]
    context = LambdaContext("bench-metrics")
    now = clock.FixedClock(min(e.at for e in world.events))
    clock.install(now)
    folded_at = now.now()
    for number, first in enumerate(range(0, len(bodies), BATCH_SIZE)):
        batch = bodies[first : first + BATCH_SIZE]
        happens = min(e.at for e in world.events[first : first + BATCH_SIZE])
        now.set(max(now.now(), happens + timedelta(seconds=30)))
        records = [sqs_record(body, str(i)) for i, body in enumerate(batch)]
        probed = number % PROBE_EVERY == PROBE_EVERY - 1
        timed = number > 0 and not probed
        with meter.probed() if probed else contextlib.nullcontext():
            mark, began = meter.overhead, time.perf_counter()
            with meter.measuring() as calls:
                response = world.metrics.lambda_handler(sqs_event(records), context)
            seconds = time.perf_counter() - began - (meter.overhead - mark)
        if response["batchItemFailures"]:
            raise SystemExit(f"batch {number} of {world.table}: {response['batchItemFailures']}")
        if timed:
            world.seconds += seconds
            world.inside += sum(c.seconds for c in calls)
            world.timed += len(batch)
        world.batches += 1
        if now.now() - folded_at >= timedelta(minutes=10):
            run_fold(world, meter)
            folded_at = now.now()
    now.set(max(now.now(), max(e.at for e in world.events)) + FOLD_LAG + timedelta(minutes=10))
    run_fold(world, meter)
    clock.install(clock.SystemClock())


#: (title, kinds, outcomes): the rows of section 1's table, the three asked about first.
CATEGORIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("email.sent", ("sent",), ("logged",)),
    ("open (web.track Email Opened)", ("opened",), ("logged",)),
    ("stage move (lead.stage_changed)", ("stage_changed",), ("logged",)),
    ("late event, counted at once (any kind)", ("*",), ("applied", "seen")),
    ("email.delivered / .bounced", ("delivered", "bounced"), ("logged",)),
    ("click", ("clicked",), ("logged",)),
    ("email.skipped / .deferred", ("skipped", "deferred"), ("logged",)),
    ("unsubscribe (template looked up)", ("unsubscribed",), ("logged",)),
    ("redelivered duplicate (any kind)", ("*",), ("duplicate",)),
)


def report_consumer(small: World, large: World) -> None:
    say("1. The metrics consumer: functions/metrics/handler.py, in-process, SQS batches of 10, on moto")
    wrapped(
        f"tests/unit/test_metrics.py event_stream(seed={SEED}, leads) in EventBridge envelopes, in time"
        " order with redeliveries, each lead's PROFILE and SCORE and each send's SEND item stored first."
        f" Timed: every batch but the first (a cold container) and every {PROBE_EVERY}th, whose reads"
        " and writes are sized (capacity below comes from those).",
        "   ",
    )
    say(
        f"   {'':<12}{'events':>8}{'distinct':>10}{'batches':>9}{'timed':>7}{'events/s':>10}{'ms/event':>10}"
        f"{'in DynamoDB calls':>19}"
    )
    for world in (small, large):
        inside = world.inside / world.timed
        distinct = len({e.event_id for e in world.events})
        say(
            f"   {f'{world.leads} leads':<12}{len(world.events):>8,}{distinct:>10,}"
            f"{world.batches:>9}{world.timed:>7,}{world.timed / world.seconds:>10.0f}"
            f"{1e3 * world.seconds / world.timed:>10.1f}{1e3 * inside:>16.1f} ms"
        )
    seen = large.recorder.seen
    say(
        f"   Per event, {large.leads} leads ({len(seen):,} events; RCU and WCU from the"
        f" {sum(s.probed for s in seen):,} in sized batches):"
    )
    say(f"   {'event':<50}{'n':>6}{'sized':>6}{'calls':>7}{'RCU':>6}{'WCU':>6}{'ms':>6}")
    rows: list[tuple[str, list[Seen]]] = []
    for title, kinds, outcomes in CATEGORIES:
        chosen = [s for s in seen if ("*" in kinds or s.kind in kinds) and s.outcome in outcomes]
        rows.append((title, chosen))
    rows.append(("all (the stream)", seen))
    for title, chosen in rows:
        if not chosen:
            continue
        sized = [s for s in chosen if s.probed]
        timed = [s for s in chosen if not s.probed]
        calls = sum(len(s.calls) for s in chosen) / len(chosen)
        rcu = f"{statistics.mean(sum(c.rcu for c in s.calls) for s in sized):>6.1f}" if sized else f"{'-':>6}"
        wcu = f"{statistics.mean(sum(c.wcu for c in s.calls) for s in sized):>6.1f}" if sized else f"{'-':>6}"
        ms = f"{1e3 * statistics.mean(s.seconds for s in timed):>6.1f}" if timed else f"{'-':>6}"
        say(f"   {title:<50}{len(chosen):>6,}{len(sized):>6}{calls:>7.2f}{rcu}{wcu}{ms}")
    wrapped(
        "ms: inside recorder.record (parse, look-ups, the log put or the late transaction), batches not"
        " sized. RCU: per read ceil(full item size / 4 KB), ConsistentRead (lead state, generation,"
        " BatchGetItem of PROFILE + SCORE item by item), 0.5 for the eventually consistent log and SEND"
        " reads. WCU: per item ceil(max(size before, size after) / 1 KB), x2 inside TransactWriteItems;"
        " a failed condition (a racing duplicate) is counted as 0.",
        "   ",
    )
    folds = [c for run in large.folds for c in run]
    by_kind: defaultdict[str, int] = defaultdict(int)
    for call in folds:
        for kind, units in call.writes:
            by_kind[kind] += units
    wrapped(
        f"The fold, {large.leads} leads: {len(large.folds)} runs, {len(folds):,} calls,"
        f" {sum(c.rcu for c in folds):,.1f} RCU and {sum(c.wcu for c in folds):,} WCU, that is"
        f" {sum(c.wcu for c in folds) / len(seen):.2f} WCU per event of the stream. WCU by item: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
        + ".",
        "   ",
    )
    for title, kinds, outcomes in CATEGORIES[:4]:
        chosen = [s for s in seen if ("*" in kinds or s.kind in kinds) and s.outcome in outcomes]
        sized = [s for s in chosen if s.probed] or chosen
        if not sized:
            continue
        by_item: defaultdict[str, float] = defaultdict(float)
        for s in sized:
            for call in s.calls:
                for kind, units in call.writes:
                    by_item[kind] += units / len(sized)
        say(f"   {title}:")
        wrapped(f"calls: {by_label([c for s in sized for c in s.calls], len(sized))}", "     ", "  ")
        if by_item:
            ranked = sorted(((k, v) for k, v in by_item.items() if v >= 0.05), key=lambda kv: -kv[1])
            wrapped("WCU by item: " + ", ".join(f"{k} {v:.1f}" for k, v in ranked), "     ", "  ")


# --- 2. reports as the events grow ----------------------------------------------------------------
def get(api: Any, path: str, query: dict[str, str]) -> dict[str, Any]:
    from kindling_ops.lambda_events import LambdaContext, http_event

    event = http_event("GET", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, query=query)
    response = api.lambda_handler(event, LambdaContext("bench-leads-api"))
    if response["statusCode"] != 200:
        raise SystemExit(f"{path}: {response['statusCode']} {response['body'][:200]}")
    body: dict[str, Any] = json.loads(response["body"])
    return body


def every_report(world: World) -> dict[str, dict[str, Any]]:
    return {title: get(world.api, path, {**RANGE, **extra}) for title, path, extra in REPORTS}


def measure_reports(world: World, meter: Meter) -> dict[str, dict[str, Any]]:
    results = {}
    _, path, extra = REPORTS[-1]
    get(world.api, path, {**RANGE, **extra})  # a warm container: the programs config cached
    for title, path, extra in REPORTS:
        query = {**RANGE, **extra}
        with meter.probed(), meter.measuring() as calls:
            body = get(world.api, path, query)
        runs = []
        for _ in range(REPORT_RUNS):
            mark, began = meter.overhead, time.perf_counter()
            with meter.measuring() as timed:
                get(world.api, path, query)
            seconds = time.perf_counter() - began - (meter.overhead - mark)
            runs.append((seconds, seconds - sum(c.seconds for c in timed)))
        results[title] = {
            "calls": calls,
            "seconds": statistics.median(total for total, _ in runs),
            "outside": statistics.median(outside for _, outside in runs),
            "body": body,
        }
    return results


def table_counts(loader: Any, table: str) -> tuple[int, int]:
    """Items in the table, and METRIC# counter items (key x day) among them."""
    total = counters = 0
    for page in loader.get_paginator("scan").paginate(TableName=table, ProjectionExpression="PK"):
        total += len(page["Items"])
        counters += sum(i["PK"]["S"].startswith("METRIC#") for i in page["Items"])
    reset_model_data()
    return total, counters


def report_size(body: dict[str, Any]) -> str:
    if "groups" in body:
        return f"{len(body['groups'])} funnels"
    if "emails" in body:
        return f"{len(body['emails'])} email rows + funnel"
    return f"{len(body['rows'])} rows"


def report_reports(
    small: World, large: World, results: dict[int, dict[str, Any]], counts: dict[int, tuple[int, int]]
) -> None:
    say()
    say("2. Reports through functions/leads_api/handler.py as the events behind them grow tenfold")
    days = (datetime.fromisoformat(RANGE["to"]) - datetime.fromisoformat(RANGE["from"])).days + 1
    wrapped(
        f"from {RANGE['from']} to {RANGE['to']} ({days} days, every event inside), one table per size,"
        f" a warm container; capacity from one probed run, time the median of {REPORT_RUNS} more.",
        "   ",
    )
    a, b = small.leads, large.leads
    say(f"   {'':<52}{f'{a} leads':>12}{f'{b} leads':>12}{'ratio':>9}")

    def row(title: str, pair: list[float], fmt: str) -> None:
        x, y = pair
        ratio = f"{y / x:>8.2f}x" if x else f"{'-':>9}"
        say(f"   {title:<52}{x:>12{fmt}}{y:>12{fmt}}{ratio}")

    def each(value: Callable[[World], float]) -> list[float]:
        return [value(small), value(large)]

    row("events delivered (with redeliveries)", each(lambda w: len(w.events)), ",.0f")
    row("distinct events counted", each(lambda w: len({e.event_id for e in w.events})), ",.0f")
    row("items in the table", each(lambda w: counts[w.leads][0]), ",.0f")
    row("  counter items (METRIC#, one per key and day)", each(lambda w: counts[w.leads][1]), ",.0f")
    for title, _, _ in REPORTS:
        x, y = results[a][title], results[b][title]
        say(f"   {title}  ({report_size(x['body'])} / {report_size(y['body'])})")
        runs: list[list[Call]] = [x["calls"], y["calls"]]

        def over(value: Callable[[list[Call]], float], chosen: list[list[Call]] = runs) -> list[float]:
            return [value(calls) for calls in chosen]

        row("  DynamoDB calls", over(len), ".0f")
        for label in dict.fromkeys(c.label for calls in runs for c in calls):
            row(f"    {label}", over(lambda cs, x=label: sum(c.label == x for c in cs)), ".0f")  # type: ignore[misc]
        row(
            "  items the per-key Queries return (key x day)",
            over(lambda cs: sum(c.count for c in cs if c.label == "Query METRIC")),
            ".0f",
        )
        row("  KB read (full item sizes)", over(lambda cs: sum(c.read_bytes for c in cs) / 1024), ".1f")
        row("  RCU", over(lambda cs: sum(c.rcu for c in cs)), ".1f")
        row("  ms per request (median, moto)", [1e3 * x["seconds"], 1e3 * y["seconds"]], ".1f")
        outside = [1e3 * x["outside"], 1e3 * y["outside"]]
        row("    of it outside DynamoDB calls (the handler's own)", outside, ".1f")
    wrapped(
        "A report makes one GetItem (the generation), one Query per key list and one Query per key over"
        " the range; each key's Query returns one item per day with counts. RCU: per Query ceil(sum of the"
        " full sizes of the items it returns / 4 KB) x 0.5 (eventually consistent), GetItem x 1"
        " (consistent).",
        "   ",
    )


# --- 3. the rebuild -------------------------------------------------------------------------------
def bench_rebuild(world: World, meter: Meter, client: Any, before: dict[str, Any]) -> dict[str, Any]:
    from kindling.adapters.metrics_store import DynamoMetricsStore
    from kindling.metrics.rebuild import rebuild_metrics

    store = DynamoMetricsStore(world.table, client)
    mark = meter.overhead
    with meter.probed(), meter.measuring() as calls:
        began = time.perf_counter()
        summary = rebuild_metrics(store, timedelta(days=WINDOW_DAYS))
        wall = time.perf_counter() - began
    seconds = wall - (meter.overhead - mark)
    after = every_report(world)
    same = all(after[title] == before[title] for title, _, _ in REPORTS)
    if not same:
        raise SystemExit("the reports after the rebuild differ from those the consumer counted")
    return {"summary": summary, "calls": calls, "seconds": seconds, "same": same}


def report_rebuild(world: World, result: dict[str, Any], table_items: int) -> None:
    summary, calls, seconds = result["summary"], result["calls"], result["seconds"]
    say()
    say(f"3. Rebuild: rebuild_metrics(DynamoMetricsStore(table, client)) on the {world.leads}-lead table")
    say(f"   {summary.line()}")
    say(
        f"   {seconds:.1f} s (sizing probes left out): {summary.replayed / seconds:,.0f} events replayed/s;"
        f" the reports after it equal those before: {'yes' if result['same'] else 'NO'}"
    )
    say(f"   {'DynamoDB calls':<40}{'calls':>7}{'items':>8}{'s':>7}{'RCU':>8}{'WCU':>8}")
    for operation in dict.fromkeys(c.operation for c in calls):
        chosen = [c for c in calls if c.operation == operation]
        items = sum(len(c.writes) or c.count for c in chosen)
        say(
            f"   {operation:<40}{len(chosen):>7,}{items:>8,}{sum(c.seconds for c in chosen):>7.1f}"
            f"{sum(c.rcu for c in chosen):>8.1f}{sum(c.wcu for c in chosen):>8,}"
        )
    inside = sum(c.seconds for c in calls)
    say(
        f"   {'all':<40}{len(calls):>7,}{'':>8}{inside:>7.1f}{sum(c.rcu for c in calls):>8.1f}"
        f"{sum(c.wcu for c in calls):>8,}"
    )
    wcu: defaultdict[str, int] = defaultdict(int)
    for call in calls:
        for kind, units in call.writes:
            wcu[kind] += units
    queries = [c for c in calls if c.operation == "Query"]
    query_seconds = sum(c.seconds for c in queries)
    wrapped(
        f"Outside DynamoDB calls (the replay itself, botocore, the bench's hooks): {seconds - inside:.1f} s."
        " The Queries read the log day by day and the old generation key by key; on moto each of them"
        f" reads all (about {table_items:,}) items of the table ({query_seconds:.1f} s), on DynamoDB they"
        f" read only the {sum(c.count for c in queries):,} items they return. TransactWriteItems: up to 100"
        " counter and key writes each, x2; BatchWriteItem: the old generation's deletes. WCU by item: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(wcu.items(), key=lambda kv: -kv[1]))
        + ".",
        "   ",
    )


# --- main -----------------------------------------------------------------------------------------------
def main() -> None:
    import boto3
    from botocore.config import Config

    from kindling.adapters import aws
    from kindling_ops.config import documents, load

    started = time.perf_counter()
    # Powertools warns on every invocation that adds no metric.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # Powertools prints metrics to stdout (even when disabled, every 100 values): discard them.
    with (
        embedded_aws(HANDLER_ENV, {"bench/admin-token": ADMIN_TOKEN, "bench/link-secret": LINK_SECRET}),
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
    ):
        header("metrics", with_pydantic=True)
        aws.reset()
        # Set-up and probes: not metered.
        loader = boto3.session.Session().client("dynamodb", config=Config(parameter_validation=False))
        rebuilder = boto3.session.Session().client("dynamodb")
        try:
            meter = Meter(loader)
            meter.attach(aws.client("dynamodb"))  # the client both handlers use
            meter.attach(rebuilder)
            docs = documents(load(ROOT / "config"))
            sizes = tuple(int(a) for a in sys.argv[1:3]) or SIZES
            worlds = [make_world(leads, loader, meter, docs) for leads in sizes]
            settle()
            for world in worlds:
                deliver(world, meter)
            small, large = worlds
            report_consumer(small, large)
            results = {w.leads: measure_reports(w, meter) for w in worlds}
            counts = {w.leads: table_counts(loader, w.table) for w in worlds}
            report_reports(small, large, results, counts)
            before = {title: results[large.leads][title]["body"] for title, _, _ in REPORTS}
            report_rebuild(large, bench_rebuild(large, meter, rebuilder, before), counts[large.leads][0])
        finally:
            for client in (loader, rebuilder, aws.client("dynamodb")):
                client.close()
            aws.reset()
    say()
    say(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
