"""Programs benchmark: what one scheduler tick costs as enrollments pile up, and steps per second.

Run on demand (``make bench`` or ``.venv/bin/python bench/programs.py``); it is not a test.

1. DynamoDB capacity of ONE minute tick, ``kindling.programs.due.release_due`` as
   functions/due_work/handler.py runs it (its dispatch here only collects the payloads; the tick
   itself deletes what it released), with the same 50 steps due, when the table also holds 1,000
   and then 100,000 enrollments that are
   not due: their ENROLL items and their DUE items, due hours to weeks ahead, in other hour buckets.
   Those are written with BatchWriteItem (25 items a call) in the shapes DynamoProgramStore and
   DynamoDueStore.item() produce, from the enrollment states the engine leaves at every stop of the
   shipped programs: the engine does not run for each of them. Calls, items read and RCU/WCU are
   counted with botocore event hooks on the client ``kindling.adapters.aws.client("dynamodb")`` returns.
2. Steps per second for the shipped program nurture-marketing-leaders (send, wait, branch, send,
   wait, wait-until, update, exit): (a) ``ProgramService.run_due`` on moto, wired as
   functions/steps/handler.py wires it, with the send queue and the event bus replaced by in-memory
   collectors, each enrollment run at its due time as the tick releases it, with AWS calls and
   capacity per run; (b) the pure engine, ``kindling.programs.engine.run``, on the same states.

moto is kindling_ops.local.aws.EmbeddedAws (moto's server, one request at a time) in this process,
sharing its GIL. Figures from moto show the shape of the cost, not its size: moto reads and sorts the
whole table for every Query, so its time per tick grows with the table where DynamoDB's does not. The
capacity figures are DynamoDB's billing rules applied to the items the calls read and wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
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

from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.program_store import DynamoProgramStore
from kindling.leads.profiles import new_lead_id
from kindling.programs.config import Program, Programs
from kindling.programs.due import DueItem, hour_of, release_due
from kindling.programs.engine import (
    Enrollment,
    LeadContext,
    enrollment_id,
    entry_key,
    new_token,
    run,
    start,
)
from kindling.programs.service import step_due
from kindling.scoring.config import ScoringConfig
from kindling_ops.config import documents, load
from tests.fakes import RecordingPublisher, RecordingQueue

TICK_TABLE = "bench-due"
STEPS_TABLE = "bench-steps"
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)  # the tick; the previous one left its cursor at 10:00
DUE = 50  # section 1: steps due at the tick, the same at every size
LATER = 25  # section 1: DUE items later in the tick's own hour: in the bucket it reads, not yet due
SIZES = (1_000, 100_000)  # section 1: enrollments that are not due
AHEAD = (timedelta(hours=2), timedelta(days=14))  # section 1: when those fall due
BATCH_WRITE = 25  # items per BatchWriteItem, DynamoDB's maximum
PROGRAM = "nurture-marketing-leaders"
STEP_LEADS = 60  # section 2a: enrollments timed through every wave
PROBED = 4  # section 2a: more enrollments, run with size probes for capacity, not timed
STEP_BATCH = 10  # the steps function's SQS BatchSize in template.yaml: config.refresh() once per batch
WAVES = (
    timedelta(0),
    timedelta(days=4),
    timedelta(days=11),
)  # section 2: after NOW, when each step falls due
REPEATS = 3  # section 2b: best of this many passes


# --- GSI1 write units ---------------------------------------------------------------------------------
def _index_key(item: dict[str, Any] | None) -> tuple[str, str] | None:
    if not item or "GSI1PK" not in item:
        return None
    return item["GSI1PK"]["S"], item.get("GSI1SK", {}).get("S", "")


def _index_units(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    """GSI1 writes (it projects ALL): an entry added, removed, rewritten in place, or moved (both)."""
    old, new = _index_key(before), _index_key(after)
    if old is None and new is None:
        return 0
    if old == new:
        return write_units(max(item_size(before), item_size(after)))
    return (write_units(item_size(before)) if old else 0) + (write_units(item_size(after)) if new else 0)


# --- counting calls, items and units ----------------------------------------------------------
@dataclasses.dataclass
class Call:
    operation: str
    what: str  # the items it read or wrote, by kind
    ok: bool = True
    seconds: float = 0.0
    rcu: float = 0.0
    wcu: int = 0  # writes to the table
    index_wcu: int = 0  # writes to GSI1
    count: int = 0  # items returned
    scanned: int = 0  # Query: items the key condition read (ScannedCount)

    @property
    def label(self) -> str:
        return f"{self.operation} {self.what}{'' if self.ok else ' (condition failed)'}"


@dataclasses.dataclass
class _Write:
    key: dict[str, Any]
    action: str  # Put, Update, Delete or ConditionCheck
    item: dict[str, Any] | None  # a Put's item, as sent
    txn: bool
    before: dict[str, Any] | None = None


def _writes(operation: str, params: dict[str, Any]) -> list[_Write]:
    if operation == "PutItem":
        return [_Write(key_of(params["Item"]), "Put", params["Item"], False)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_Write(params["Key"], operation.removesuffix("Item"), None, False)]
    if operation == "TransactWriteItems":
        found = []
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            found.append(_Write(body.get("Key") or key_of(body["Item"]), kind, body.get("Item"), True))
        return found
    return []


def _what(operation: str, params: dict[str, Any], writes: list[_Write]) -> str:
    if operation == "TransactWriteItems":
        return "[" + ", ".join(f"{w.action} {kind_of(w.key)}" for w in writes) + "]"
    if writes:
        return ", ".join(kind_of(w.key) for w in writes)
    if operation == "GetItem":
        return kind_of(params["Key"])
    if operation == "Query":
        values: dict[str, dict[str, str]] = params.get("ExpressionAttributeValues", {})
        first = next(iter(values.values()), {}).get("S", "?")
        return f"{params.get('IndexName', '')} {first.split('#')[0]}".strip()
    return ""


class Meter:
    """DynamoDB calls via botocore hooks: ``before-parameter-build`` fires once per API call (retries
    are not new calls), ``after-call`` once it is answered.

    Reads are sized from what they return. With ``probing`` on, every write's items are read before
    and after it through ``probe``, a client that is not metered, so write units come from the items'
    real sizes in moto; a call's ``seconds`` leave the probes out.
    """

    def __init__(self, probe: Any) -> None:
        self.calls: list[Call] = []
        self.probing = False
        self._probe = probe

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.*", self._before, unique_id="bench-programs-b")
        events.register("after-call.dynamodb.*", self._after, unique_id="bench-programs-a")

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self._probe.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        writes = _writes(model.name, params)
        table = params.get("TableName") or next(
            (a[k]["TableName"] for a in params.get("TransactItems", []) for k in a), ""
        )
        if self.probing:
            for write in writes:
                write.before = self._item(table, write.key)
        context["bench"] = (params, writes, table, time.perf_counter())

    def _after(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        seconds = time.perf_counter() - context["bench"][3]
        reset_model_data()
        params, writes, table, _ = context.pop("bench")
        operation = model.name
        call = Call(operation, _what(operation, params, writes), http_response.status_code < 300, seconds)
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            found = parsed.get("Item")
            call.rcu, call.count = read_units(item_size(found), consistent), int(found is not None)
        elif operation == "Query":
            items = parsed.get("Items", [])
            call.rcu = read_units(sum(item_size(i) for i in items), consistent)
            call.count, call.scanned = len(items), int(parsed.get("ScannedCount", len(items)))
        for write in writes if self.probing else []:
            if not call.ok:
                # A failed condition is billed like a write of the item as it is; a cancelled
                # transaction is counted as 0 (none is cancelled here).
                call.wcu += 0 if write.txn else write_units(item_size(write.before))
                continue
            after = write.item if write.action == "Put" else None
            if write.action == "Update":
                after = self._item(table, write.key)
            elif write.action == "ConditionCheck":
                after = write.before
            factor = 2 if write.txn else 1
            call.wcu += write_units(max(item_size(write.before), item_size(after))) * factor
            call.index_wcu += _index_units(write.before, after) * factor
        self.calls.append(call)

    def measuring(self) -> contextlib.AbstractContextManager[list[Call]]:
        """The calls made inside the block."""
        return appended(self.calls)


def counted(calls: list[Call], label: str) -> int:
    return sum(c.label == label for c in calls)


# --- the world: moto, tables, config ------------------------------------------------------------
def write_items(loader: Any, table: str, items: Sequence[dict[str, Any]]) -> int:
    """Put ``items`` with BatchWriteItem, 25 a call, retrying what is left unprocessed: the calls made."""
    calls = 0
    for first in range(0, len(items), BATCH_WRITE):
        request: dict[str, Any] = {
            table: [{"PutRequest": {"Item": item}} for item in items[first : first + BATCH_WRITE]]
        }
        while request:
            request = loader.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            calls += 1
        if calls % 400 == 0:
            reset_model_data()
    reset_model_data()
    return calls


def shipped() -> tuple[Programs, ScoringConfig, dict[str, dict[str, Any]]]:
    loaded = load(ROOT / "config")
    programs, scoring = loaded["programs"], loaded["scoring.yaml"]
    assert isinstance(programs, Programs) and isinstance(scoring, ScoringConfig)
    return programs, scoring, documents(loaded)


# --- 1. one tick as enrollments pile up -----------------------------------------------------------
def stops(programs: Programs) -> list[tuple[Program, Enrollment]]:
    """Every stop (a wait or a wait-until) of each program, as the engine leaves an enrollment there."""
    found = []
    lead = LeadContext(
        lead_id=new_lead_id(),
        email="dana.whitfield@northwind.example",
        traits={"title": "VP Marketing", "company": "Northwind Analytics", "industry": "Software"},
        stage="lead",
        grade="B",
        engagement=12.0,
    )
    for program in programs.programs.values():
        at = NOW - timedelta(days=30)
        state = start(program, lead, f"bench-{program.id}", at)
        while True:
            state = run(program, state, lead, at).enrollment
            if not state.live or state.due_at is None:
                break
            found.append((program, state))
            at = state.due_at
    return found


def clone(program: Program, template: Enrollment, due_at: datetime) -> Enrollment:
    """``template`` for a new lead, due at ``due_at``."""
    lead_id = new_lead_id()
    update: dict[str, Any] = {
        "lead_id": lead_id,
        "enrollment_id": enrollment_id(program.id, lead_id, entry_key(program, f"bench-{lead_id}")),
        "token": new_token(),
        "due_at": due_at,
    }
    if template.waiting is not None:
        update["waiting"] = template.waiting.model_copy(update={"timeout_at": due_at})
    return template.model_copy(update=update)


def bench_tick(loader: Any, meter: Meter, programs: Programs) -> list[dict[str, Any]]:
    create_table(loader, TICK_TABLE)
    program_store = DynamoProgramStore(TICK_TABLE, loader)
    due_store = DynamoDueStore(TICK_TABLE, loader)
    made = stops(programs)
    rng = random.Random(7)

    def enrollments(count: int, when: Callable[[int], datetime]) -> list[Enrollment]:
        return [clone(*made[i % len(made)], when(i)) for i in range(count)]

    def items(chosen: list[Enrollment]) -> list[dict[str, Any]]:
        found = []
        for enrollment in chosen:
            due = step_due(enrollment, NOW)
            assert due is not None
            found += [program_store._item(enrollment), due_store.item(due)]
        return found

    # The same 50 due in the minute before the tick at every size, and 25 later in its hour.
    due_now = enrollments(DUE, lambda i: NOW - timedelta(seconds=60 - i * 60 / DUE))
    later = enrollments(LATER, lambda i: NOW + timedelta(minutes=1 + i * 28 / LATER))
    due_items = [due_store.item(d) for d in (step_due(e, NOW) for e in due_now) if d is not None]
    expected = sorted(e.enrollment_id for e in due_now)
    write_items(loader, TICK_TABLE, items(due_now + later))
    due_store.move_cursor(hour_of(NOW), None)  # where the previous minute's tick left it
    span = (AHEAD[1] - AHEAD[0]).total_seconds()
    results = []
    stored = 0
    for size in SIZES:
        began = time.perf_counter()
        gc.disable()  # moto's new items are long-lived: collecting them over and over is not the bench
        count = size - stored
        batch = items(enrollments(count, lambda i: NOW + AHEAD[0] + timedelta(seconds=rng.uniform(0, span))))
        built = time.perf_counter() - began
        began = time.perf_counter()
        writes = write_items(loader, TICK_TABLE, batch)
        written = time.perf_counter() - began
        del batch
        gc.enable()
        stored = size
        write_items(loader, TICK_TABLE, due_items)  # put back what the previous tick released
        settle()
        held = loader.describe_table(TableName=TICK_TABLE)["Table"]["ItemCount"]

        payloads: list[dict[str, Any]] = []

        def dispatch(released: list[DueItem], into: list[dict[str, Any]] = payloads) -> None:
            into.extend(item.payload for item in released)

        meter.probing = True
        try:
            with meter.measuring() as calls:
                released = release_due(DynamoDueStore(TICK_TABLE), dispatch, NOW)
        finally:
            meter.probing = False
        if released != DUE or sorted(p["enrollment_id"] for p in payloads) != expected:
            raise SystemExit(f"tick with {size:,} enrollments released {released}, expected the {DUE} due")
        results.append(
            {
                "size": size,
                "items": held,
                "calls": calls,
                "released": len(payloads),
                "built": built,
                "writes": writes,
                "written": written,
                "added": count,
            }
        )
    sizes = [item_size(i) for i in items([state for _, state in made])]
    results[0]["stops"] = (len(made), len({p.id for p, _ in made}), sizes)
    loader.delete_table(TableName=TICK_TABLE)
    return results


def report_tick(results: list[dict[str, Any]]) -> None:
    small, large = results
    count, programs, sizes = small["stops"]
    enroll_sizes, due_sizes = sizes[0::2], sizes[1::2]
    say(
        f"1. One scheduler tick with {DUE} steps due, as enrollments that are not due pile up: release_due at"
        f" {NOW:%H:%M}Z,"
    )
    wrapped(
        f"cursor at {hour_of(NOW):%H:%M} (where the previous minute's tick left it), dispatch collecting the"
        " payloads; the tick deletes what it released. Not due: ENROLL and DUE items as DynamoProgramStore"
        f" and DynamoDueStore.item() write them, cloned from the {count} stops the engine makes in the"
        f" {programs} shipped programs (ENROLL {min(enroll_sizes):,}-{max(enroll_sizes):,} B, DUE"
        f" {min(due_sizes)}-{max(due_sizes)} B), due {AHEAD[0].total_seconds() / 3600:.0f} h to"
        f" {AHEAD[1].days} days ahead, in other hour buckets; and in both tables {LATER} DUE items later in"
        " the tick's own hour (in the bucket it reads, not yet due).",
        "   ",
    )
    labels = list(dict.fromkeys(c.label for result in results for c in result["calls"]))
    head = f"{small['size']:,} enrollments"
    tail = f"{large['size']:,} enrollments"
    say(f"   {'':<52}{head:>20}{tail:>22}{'ratio':>9}")

    def row(title: str, value: Callable[[dict[str, Any]], float], fmt: str, ratio: bool = True) -> None:
        a, b = value(small), value(large)
        shown = f"{b / a:>8.2f}x" if ratio and a else ""
        say(f"   {title:<52}{a:>20{fmt}}{b:>22{fmt}}{shown}")

    row("items in the table (describe_table)", lambda r: r["items"], ",.0f", ratio=False)
    row("DynamoDB calls", lambda r: len(r["calls"]), ".0f")
    for label in labels:
        row(f"  {label}", lambda r, x=label: counted(r["calls"], x), ".0f")  # type: ignore[misc]

    def queries(result: dict[str, Any]) -> list[Call]:
        return [c for c in result["calls"] if c.operation == "Query"]

    row("Query: items returned", lambda r: sum(c.count for c in queries(r)), ".0f")
    row("Query: items read (ScannedCount)", lambda r: sum(c.scanned for c in queries(r)), ".0f")
    row("items read in all (Query + GetItem)", lambda r: sum(c.count for c in r["calls"]), ".0f")
    row("RCU", lambda r: sum(c.rcu for c in r["calls"]), ".1f")
    row("WCU, table", lambda r: sum(c.wcu for c in r["calls"]), ".0f")
    row("WCU, GSI1", lambda r: sum(c.index_wcu for c in r["calls"]), ".0f")
    row("WCU in all", lambda r: sum(c.wcu + c.index_wcu for c in r["calls"]), ".0f")
    row("payloads dispatched", lambda r: r["released"], ".0f")
    row("s inside the tick's DynamoDB calls (moto)", lambda r: sum(c.seconds for c in r["calls"]), ".2f")
    wrapped(
        "RCU: GetItem ceil(size / 4 KB), ConsistentRead (the cursor); a Query ceil(sum of the sizes of the"
        " items it returns / 4 KB) x 0.5, GSI1 reads being eventually consistent; min 1 unit. WCU: per item"
        " ceil(max(size before, size after) / 1 KB), a write whose condition fails billed on the item as it"
        " is; an item with GSI1 keys (GSI1 projects ALL) costs ceil(size / 1 KB) again in the index. Sizes"
        " by DynamoDB's rules (UTF-8 names + values) from the items the calls return, and for writes from"
        " the items read back from moto, before and after, with a client that is not metered.",
        "   ",
    )
    query_time = [sum(c.seconds for c in queries(r)) for r in results]
    wrapped(
        f"moto's time is its Query reading and sorting every item of the table ({query_time[0]:.2f} s,"
        f" {query_time[1]:.2f} s); DynamoDB reads only the GSI1 partition DUEAT#<hour> up to the sort key"
        " <now>#~. Populating (BatchWriteItem, 25 items a call, no engine run per enrollment): "
        + "; ".join(
            f"{r['added']:,} enrollments in {r['writes']:,} calls, {r['written']:.1f} s"
            f" ({1e3 * r['written'] / r['writes']:.1f} ms/call; items built in {r['built']:.1f} s)"
            for r in results
        )
        + ".",
        "   ",
    )


# --- 2. steps per second ----------------------------------------------------------------------------
@dataclasses.dataclass
class LeadSpec:
    lead_id: str
    email: str
    traits: dict[str, Any]
    score: Any  # LeadScore


TITLES = ("VP Marketing", "Head of Growth", "Director of Demand Gen", "Marketing Operations Manager")
COMPANIES = (
    ("Northwind Analytics", "northwind.example", "Software"),
    ("Contoso Logistics", "contoso.example", "Logistics"),
    ("Fabrikam Health", "fabrikam.example", "Healthcare"),
)


def make_leads(count: int, scoring: ScoringConfig) -> list[LeadSpec]:
    """Marketing leaders (the program's entry filter); every other one engaged with a good fit."""
    from kindling.scoring.rules import LeadScore, RuleTally

    points = {rule.id: rule.points for rule in scoring.engagement.rules}
    specs = []
    for n in range(count):
        company, domain, industry = COMPANIES[n % len(COMPANIES)]
        engaged = n % 2 == 0
        chosen = (
            ("pricing-page", "case-study", "webinar-registration", "email-click")
            if engaged
            else ("email-click",)
        )
        as_of = NOW - timedelta(days=1)
        rules = {
            rule: RuleTally(
                points=points[rule],
                value=float(points[rule]),
                count=1,
                last_at=as_of,
                days={f"{as_of:%Y-%m-%d}": 1},
            )
            for rule in chosen
        }
        lead_id = new_lead_id()
        score = LeadScore(
            lead_id=lead_id,
            engagement=sum(t.value for t in rules.values()),
            as_of=as_of,
            rules=rules,
            fit=40 if engaged else 5,
            fit_rules={"senior-title": 20, "target-industry": 20} if engaged else {"company-size": 5},
            grade="A" if engaged else "C",
            config_version=1,
            revision=len(rules),
        )
        traits = {
            "first_name": "Dana",
            "last_name": f"Whitfield {n}",
            "title": TITLES[n % len(TITLES)],
            "company": company,
            "industry": industry,
            "company_size": 250 + 50 * n,
        }
        specs.append(LeadSpec(lead_id, f"dana.whitfield{n}@{domain}", traits, score))
    return specs


def score_item(spec: LeadSpec) -> dict[str, Any]:
    """The lead's SCORE item as the profile pass leaves it after scoring its last event (``score_put``).

    One scored message per revision: the item remembers the fingerprints of the last of them.
    """
    from kindling.adapters.score_store import score_put
    from kindling.scoring.rules import ScoringResult
    from kindling.scoring.service import RECENT_MESSAGES, ScoreWrite, message_mark

    score = spec.score
    scored = [f"bench-{spec.lead_id}-{n}" for n in range(score.revision)]
    write = ScoreWrite(
        lead_id=spec.lead_id,
        message_id=scored[-1],
        at=score.as_of,
        result=ScoringResult(score=score),
        expected_revision=score.revision - 1,
        change_record={},
        emitted=[],
        recent=[message_mark(m) for m in scored][-RECENT_MESSAGES:],
    )
    return dict(score_put(write, STEPS_TABLE)["Item"])


def context_of(spec: LeadSpec, at: datetime, decay: Any) -> LeadContext:
    """What DynamoProgramStore.context reads for the lead: no segments were ever set on these profiles."""
    return LeadContext(
        lead_id=spec.lead_id,
        email=spec.email,
        traits=spec.traits,
        stage="lead",
        grade=spec.score.grade,
        engagement=spec.score.engagement_at(at, decay),
    )


def bench_steps(
    loader: Any, meter: Meter, programs: Programs, scoring: ScoringConfig, docs: Any
) -> dict[str, Any]:
    from kindling.adapters.config_store import DynamoConfigStore, ProgramsConfig
    from kindling.adapters.dynamo import DynamoLeadStore
    from kindling.leads.profiles import Lead
    from kindling.programs.service import ProgramService

    create_table(loader, STEPS_TABLE)
    config_store = DynamoConfigStore(STEPS_TABLE, loader)
    for name in ("programs", "segments.yaml", "scoring.yaml"):
        config_store.apply(name.removesuffix(".yaml"), docs[name], NOW - timedelta(days=30))
    program = programs.programs[PROGRAM]
    decay = scoring.engagement.decay
    specs = make_leads(STEP_LEADS + PROBED, scoring)
    probed = {spec.lead_id for spec in specs[STEP_LEADS:]}
    by_id = {spec.lead_id: spec for spec in specs}
    lead_store = DynamoLeadStore(STEPS_TABLE, loader)
    state_store = DynamoProgramStore(STEPS_TABLE, loader)
    due_store = DynamoDueStore(STEPS_TABLE, loader)
    items: list[dict[str, Any]] = []
    for n, spec in enumerate(specs):
        # Entered when it became a lead, 3 days before the tick: its first step ran then (the ROI
        # guide queued), and its wait-3d is due in the tick's hour.
        entered = NOW - timedelta(days=3, minutes=30) + timedelta(seconds=n)
        lead_store.create(
            Lead(
                lead_id=spec.lead_id,
                email=spec.email,
                user_id=f"user-{n}",
                traits=spec.traits,
                created_at=entered - timedelta(days=9),
                first_seen_at=entered - timedelta(days=9),
                last_activity_at=entered,
                stage="lead",
                stage_changed_at=entered,
            )
        )
        items.append(score_item(spec))
        context = context_of(spec, entered, decay)
        enrollment = run(
            program, start(program, context, f"stage-lead-{n}", entered), context, entered
        ).enrollment
        due = step_due(enrollment, entered)
        assert due is not None
        items += [state_store._item(enrollment), due_store.item(due)]
    write_items(loader, STEPS_TABLE, items)
    due_store.move_cursor(hour_of(NOW), None)

    # As functions/steps/handler.py wires it, with the queue and the bus in memory.
    config = ProgramsConfig(STEPS_TABLE)
    sends, bus = RecordingQueue(), RecordingPublisher()
    service = ProgramService(DynamoProgramStore(STEPS_TABLE, decay=config.decay), config, sends, bus)
    # A warm container: the config versions in force are cached, the connection is open.
    config.refresh()
    config.programs(), config.decay()
    service.run_due(specs[0].lead_id, "warm-up", "stale", NOW)
    settle()

    waves = []
    for offset in WAVES:
        at = NOW + offset
        payloads: list[dict[str, Any]] = []

        def dispatch(released: list[DueItem], into: list[dict[str, Any]] = payloads) -> None:
            into.extend(item.payload for item in released if item.kind == "step")

        release_due(due_store, dispatch, at)  # the tick, as the steps queue would deliver it
        before = {p["enrollment_id"]: state_store.get(p["lead_id"], p["enrollment_id"]) for p in payloads}
        timed = [p for p in payloads if p["lead_id"] not in probed]
        sent = len(sends.bodies)
        outcomes: Counter[str] = Counter()
        with meter.measuring() as calls:
            began = time.perf_counter()
            for i, p in enumerate(timed):
                if i % STEP_BATCH == 0:
                    config.refresh()  # once per SQS batch, as the handler does
                outcomes[service.run_due(p["lead_id"], p["enrollment_id"], p["token"], at)] += 1
            seconds = time.perf_counter() - began
        templates = Counter(body["template"] for body in sends.bodies[sent:])
        probes: list[list[Call]] = []
        meter.probing = True
        try:
            for p in payloads:
                if p["lead_id"] in probed:
                    with meter.measuring() as one:
                        service.run_due(p["lead_id"], p["enrollment_id"], p["token"], at)
                    probes.append(one)
        finally:
            meter.probing = False
        notes: Counter[tuple[str, ...]] = Counter()
        inputs = []
        sizes = []
        for p in payloads:
            old, new = before[p["enrollment_id"]], state_store.get(p["lead_id"], p["enrollment_id"])
            assert old is not None and new is not None
            notes[tuple(h["what"] for h in new.history[len(old.history) :])] += 1
            inputs.append((old, context_of(by_id[p["lead_id"]], at, decay), at, new.status))
            sizes.append(item_size(state_store._item(new)))
        if len(timed) != STEP_LEADS or len(outcomes) != 1 or len(notes) != 1:
            raise SystemExit(f"wave at {at:%Y-%m-%d}: {len(timed)} due, {dict(outcomes)}, {dict(notes)}")
        waves.append(
            {
                "at": at,
                "runs": len(timed),
                "seconds": seconds,
                "calls": calls,
                "outcomes": outcomes,
                "notes": notes,
                "templates": templates,
                "probes": probes,
                "inputs": inputs,
                "enroll_size": statistics.mean(sizes),
                "engine": bench_engine(program, inputs),
            }
        )
    loader.delete_table(TableName=STEPS_TABLE)
    return {"waves": waves, "program": program, "events": len(bus.events)}


def bench_engine(program: Program, inputs: list[tuple[Enrollment, LeadContext, datetime, str]]) -> float:
    """Seconds per ``run(...)`` over the wave's states, as run_due found them: the best of REPEATS passes."""
    for state, context, at, status in inputs:
        if run(program, state, context, at).enrollment.status != status:
            raise SystemExit(f"the engine alone and run_due disagree on {state.enrollment_id}")
    best = math.inf
    for _ in range(REPEATS):
        began = time.perf_counter()
        for state, context, at, _status in inputs:
            run(program, state, context, at)
        best = min(best, time.perf_counter() - began)
    return best / len(inputs)


def describe(program: Program) -> str:
    kinds = []
    for step in program.steps:
        kind = step.kind.replace("_", "-")
        if step.wait is not None:
            kind = f"wait {step.wait}"
        elif step.wait_until is not None:
            kind = f"wait-until {step.wait_until.timeout}"
        elif step.send_email is not None:
            kind = "send"
        kinds.append(f"{step.id} ({kind})")
    return ", ".join(kinds)


def report_steps(result: dict[str, Any]) -> None:
    waves, program = result["waves"], result["program"]
    say()
    say(f"2. Steps per second: program {program.id} (shipped), in order:")
    wrapped(describe(program), "   ")
    runs = waves[0]["runs"]
    wrapped(
        f"{runs} enrollments, every other lead engaged with a good fit (grade A, engagement ~60) and the"
        " others not (grade C, ~5), so the branch goes both ways; each run when the tick releases its due"
        " item, at day 3, 7 and 14 after entry. a: ProgramService.run_due on moto, wired as"
        " functions/steps/handler.py wires it (DynamoProgramStore with the scoring decay, ProgramsConfig"
        " refreshed once per batch of"
        f" {STEP_BATCH}), the send queue and the event bus in memory. b: kindling.programs.run alone on the"
        f" same states (best of {REPEATS}). A step is one note the run adds to the enrollment's history.",
        "   ",
    )
    say(f"   {'':<46}{'':>5}{'steps':>6}{'a. run_due on moto':>30}{'b. engine alone':>18}")
    say(
        f"   {'wave':<6}{'notes each run adds':<40}{'runs':>5}{'/run':>6}{'runs/s':>8}{'steps/s':>8}"
        f"{'ms/run':>7}{'calls/run':>10}{'runs/s':>9}{'steps/s':>9}"
    )
    total: dict[str, float] = {"runs": 0, "steps": 0, "seconds": 0.0, "calls": 0, "engine": 0.0}
    for number, wave in enumerate(waves, 1):
        ((notes, _),) = [(k, v) for k, v in wave["notes"].most_common(1)]
        steps = len(notes)
        n, seconds = wave["runs"], wave["seconds"]
        engine = wave["engine"]
        day = (wave["at"] - NOW).days + 3
        say(
            f"   {f'{number} d{day}':<6}{', '.join(notes):<40}{n:>5}{steps:>6}{n / seconds:>8,.0f}"
            f"{n * steps / seconds:>8,.0f}{1e3 * seconds / n:>7.1f}{len(wave['calls']) / n:>10.1f}"
            f"{1 / engine:>9,.0f}{steps / engine:>9,.0f}"
        )
        total["runs"] += n
        total["steps"] += n * steps
        total["seconds"] += seconds
        total["calls"] += len(wave["calls"])
        total["engine"] += engine * n
    runs_all, steps_all, seconds_all = int(total["runs"]), total["steps"], total["seconds"]
    say(
        f"   {'all':<6}{'':<40}{runs_all:>5}{steps_all / runs_all:>6.1f}{runs_all / seconds_all:>8,.0f}"
        f"{steps_all / seconds_all:>8,.0f}{1e3 * seconds_all / runs_all:>7.1f}"
        f"{total['calls'] / runs_all:>10.1f}"
        f"{runs_all / total['engine']:>9,.0f}{steps_all / total['engine']:>9,.0f}"
    )
    every = [c for wave in waves for c in wave["calls"]]
    inside = sum(c.seconds for c in every) / runs_all
    templates: Counter[str] = sum((wave["templates"] for wave in waves), Counter())
    wrapped(
        f"a: {1e3 * inside:.1f} ms/run inside DynamoDB calls (botocore, HTTP, moto in this process),"
        f" {1e3 * (seconds_all / runs_all - inside):.1f} ms/run outside them (service, engine, pydantic,"
        f" the bench's hooks); b is {seconds_all / total['engine']:,.0f}x a. Mean ms per call: "
        + ", ".join(
            f"{name} {1e3 * statistics.mean(c.seconds for c in every if c.operation == name):.1f}"
            for name in dict.fromkeys(c.operation for c in every)
        )
        + " (moto copies the whole table for each action of a transaction, to roll back). Emails queued: "
        + ", ".join(f"{t} {k}" for t, k in sorted(templates.items()))
        + f"; engagement events published: {result['events']}.",
        "   ",
    )
    probes = len(waves[0]["probes"])
    say(f"   DynamoDB calls and capacity per run_due ({probes} more enrollments a wave, sized by reading")
    say("   the items back from moto; counted as in section 1):")
    labels = list(dict.fromkeys(c.label for wave in waves for calls in wave["probes"] for c in calls))
    width = max(len(label) for label in labels) + 2
    say(f"     {'':<{width}}" + "".join(f"{f'wave {i}':>9}" for i in range(1, len(waves) + 1)))

    def row(title: str, value: Callable[[list[Call]], float], fmt: str) -> None:
        cells = []
        for wave in waves:
            mean = statistics.mean(value(calls) for calls in wave["probes"])
            cells.append(f"{mean:>9{fmt}}" if mean else f"{'-':>9}")
        say(f"     {title:<{width}}" + "".join(cells))

    for label in labels:
        row(label, lambda calls, x=label: counted(calls, x), ".0f")  # type: ignore[misc]
    row("RCU", lambda calls: sum(c.rcu for c in calls), ".1f")
    row("WCU, table", lambda calls: sum(c.wcu for c in calls), ".0f")
    row("WCU, GSI1", lambda calls: sum(c.index_wcu for c in calls), ".0f")
    say(
        f"     {'ENROLL item after the run, B':<{width}}"
        + "".join(f"{w['enroll_size']:>9,.0f}" for w in waves)
    )
    config_reads = sum(c.what == "CONFIG/CURRENT" for c in every)
    wrapped(
        f"Plus the config pointers, once per batch: {config_reads} GetItem CONFIG/CURRENT in section a's"
        f" {runs_all} runs ({config_reads / runs_all:.2f}/run). WCU inside TransactWriteItems count x2.",
        "     ",
    )


# --- main ---------------------------------------------------------------------------------------------
def main() -> None:
    import boto3
    from botocore.config import Config

    from kindling.adapters import aws

    started = time.perf_counter()
    with embedded_aws({**AWS_ENV, **QUIET_POWERTOOLS}):
        header("programs", with_pydantic=True)
        aws.reset()
        # Set-up, population and probes: not metered. Its requests are built by the stores' own code, so
        # botocore's parameter validation (a third of the client's time per BatchWriteItem) is skipped.
        loader = boto3.session.Session().client("dynamodb", config=Config(parameter_validation=False))
        try:
            meter = Meter(loader)
            meter.attach(aws.client("dynamodb"))  # the client the stores use
            programs, scoring, docs = shipped()
            settle()
            report_tick(bench_tick(loader, meter, programs))
            gc.unfreeze()
            settle()
            report_steps(bench_steps(loader, meter, programs, scoring, docs))
        finally:
            for client in (loader, aws.client("dynamodb")):
                client.close()
            aws.reset()
    say()
    say(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
