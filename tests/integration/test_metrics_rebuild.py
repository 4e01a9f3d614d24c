"""Rebuilding the metrics from the logged events gives the numbers the consumer counted, on stored data,
even while events keep arriving; and the new reports (programs, breakdowns, time in stage) against moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.kernel import clock
from kindling.metrics.counters import FOLD_LAG, FunnelKey, MetricEvent
from kindling.metrics.rebuild import rebuild_metrics
from kindling_ops.lambda_events import sqs_record
from tests.integration.events import Context, http_event
from tests.integration.test_metrics import ADMIN
from tests.unit.test_metrics import T0, event_stream, lead_contexts, on_the_bus

RANGE = {"from": "2026-10-25", "to": "2026-12-31"}
BREAKDOWNS = ("source", "industry", "segment", "intent", "program")


def body_of(event: MetricEvent) -> str:
    source, detail_type, detail, time = on_the_bus(event)
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": time.isoformat(),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


@pytest.fixture
def now() -> Iterator[clock.FixedClock]:
    """The process clock, which ``deliver_all`` moves along with the events."""
    fixed = clock.FixedClock(T0 - timedelta(days=1))
    clock.install(fixed)
    yield fixed
    clock.install(clock.SystemClock())


def deliver_all(handler: Any, events: list[MetricEvent], fold: Any, now: clock.FixedClock) -> int:
    """Deliver in batches of ten as they happen (the clock half a minute past a batch's first event),
    redelivering what a batch reports failed (as SQS would), the fold running every ten minutes of
    the clock; the retries."""
    retries = 0
    pending = [(e, body_of(e)) for e in events]
    folded_at = now.now()
    while pending:
        batch, pending = pending[:10], pending[10:]
        now.set(max(now.now(), min(e.at for e, _ in batch) + timedelta(seconds=30)))
        bodies = [body for _, body in batch]
        while bodies:
            records = [sqs_record(body, str(i)) for i, body in enumerate(bodies)]
            failed = handler.lambda_handler({"Records": records}, Context())["batchItemFailures"]
            bodies = [bodies[int(f["itemIdentifier"])] for f in failed]
            retries += len(bodies)
            assert retries < 100
        if now.now() - folded_at >= timedelta(minutes=10):
            fold.lambda_handler({}, Context())
            folded_at = now.now()
    return retries


def settle(fold: Any, now: clock.FixedClock, events: list[MetricEvent]) -> None:
    """Wait, as a reader of the reports would, until every event is folded."""
    now.set(max(now.now(), max(e.at for e in events)) + FOLD_LAG + timedelta(minutes=10))
    fold.lambda_handler({}, Context())


def held_back(events: list[MetricEvent]) -> tuple[list[MetricEvent], list[MetricEvent]]:
    """Every third delivery report held back (SES events redriven after an outage): the rest, and those."""
    late = {e.event_id for e in events if e.kind == "delivered"}
    late = set(sorted(late)[::3])
    return [e for e in events if e.event_id not in late], [e for e in events if e.event_id in late]


def store_leads(dynamodb: Any, table: str, events: list[MetricEvent], templates: dict[str, str]) -> None:
    """What the consumer looks up: each lead's profile (industry, first-touch source, segments) and
    score (intent tags), and each send's template (as the sender stored it)."""
    for send_id, template in templates.items():
        item = {"PK": {"S": f"SEND#{send_id}"}, "SK": {"S": "SEND"}, "template": {"S": template}}
        dynamodb.put_item(TableName=table, Item=item)
    leads = sorted({e.lead_id for e in events})
    contexts = lead_contexts()
    for lead in leads:
        context = contexts[lead]
        traits = {"industry": context.industry, "first_touch_source": context.source}
        profile: dict[str, Any] = {
            "PK": {"S": f"LEAD#{lead}"},
            "SK": {"S": "PROFILE"},
            "traits": {"M": {k: {"S": v} for k, v in traits.items() if v}},
        }
        if context.segments:
            profile["segments"] = {"SS": list(context.segments)}
        dynamodb.put_item(TableName=table, Item=profile)
        state = json.dumps({"lead_id": lead, "intent": list(context.intent)})
        score = {"PK": {"S": f"LEAD#{lead}"}, "SK": {"S": "SCORE"}, "state": {"S": state}}
        dynamodb.put_item(TableName=table, Item=score)


def get(leads_api: Any, path: str, **query: str) -> tuple[int, dict[str, Any]]:
    event = http_event("GET", path, headers={"Authorization": f"Bearer {ADMIN}"}, query=query or None)
    response = leads_api.lambda_handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def every_report(leads_api: Any) -> dict[str, Any]:
    reports = {"emails": get(leads_api, "/v1/reports/emails", **RANGE)[1]}
    reports["funnel"] = get(leads_api, "/v1/reports/funnel", **RANGE)[1]
    for by in BREAKDOWNS:
        reports[f"funnel-{by}"] = get(leads_api, "/v1/reports/funnel", **RANGE, by=by)[1]
    for program in ("welcome", "nurture"):
        reports[program] = get(leads_api, f"/v1/reports/programs/{program}", **RANGE)[1]
    return reports


def test_a_rebuild_from_the_logged_events_gives_the_counted_numbers(
    metrics, metrics_fold, leads_api, dynamodb, table, now
):
    events, templates = event_stream(seed=5, leads=40)
    store_leads(dynamodb, table, events, templates)
    on_time, late = held_back(events)
    deliver_all(metrics, on_time, metrics_fold, now)
    settle(metrics_fold, now, on_time)
    deliver_all(metrics, late, metrics_fold, now)
    log = [i for i in scan_metrics(dynamodb, table) if i["PK"]["S"].startswith("METRICLOG#")]
    applied = [i for i in log if "applied" in i]
    assert len(applied) == len({e.event_id for e in late}) and len(log) > len(applied) > 5
    counted = every_report(leads_api)
    assert counted["emails"]["totals"]["sent"] > 50 and counted["emails"]["totals"]["delivered"] > 40
    assert len(counted["funnel-segment"]["groups"]) >= 3 and len(counted["funnel-intent"]["groups"]) >= 3
    lead_stage = next(s for s in counted["funnel"]["groups"][0]["stages"] if s["stage"] == "lead")
    assert lead_stage["left"] > 0 and lead_stage["median_days_in_stage"] > 0

    summary = rebuild_metrics(DynamoMetricsStore(table, dynamodb), timedelta(days=14))

    assert summary.generation == 1 and summary.replayed >= len({e.event_id for e in events}) - 1
    assert every_report(leads_api) == counted
    # The old generation is gone.
    old = dynamodb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "METRICKEYS#g0#email"}},
    )
    assert summary.dropped > 0 and old["Items"] == []


def test_events_that_arrive_during_a_rebuild_count_once(
    metrics, metrics_fold, leads_api, dynamodb, table, load_handler, now
):
    events, templates = event_stream(seed=6, leads=30)
    store_leads(dynamodb, table, events, templates)
    half = len(events) // 2
    deliver_all(metrics, events[:half], metrics_fold, now)
    # The latest events are logged and not folded yet when the rebuild starts.
    deliver_all(metrics, events[half : half + 10], metrics_fold, now)
    store = DynamoMetricsStore(table, dynamodb)
    assert store.unfolded(store.fold_cursor().through, now.now() + timedelta(days=30))[0]
    drained: list[float] = []

    def events_arrive_while_draining(seconds: float) -> None:
        drained.append(seconds)
        # The consumer reads the new generation for each late event from now on, and the fold
        # counts into it: the first fold into it notes where it began.
        assert deliver_all(metrics, events[half + 10 :], metrics_fold, now) == 0

    rebuild_metrics(store, timedelta(days=14), timedelta(seconds=30), sleep=events_arrive_while_draining)
    assert drained == [30.0] and store.generations() == (1, 1)
    settle(metrics_fold, now, events)
    rebuilt = every_report(leads_api)

    # The same events counted by the consumer and the fold alone, in a fresh table state, give the
    # same reports.
    for item in scan_metrics(dynamodb, table):
        dynamodb.delete_item(TableName=table, Key={"PK": item["PK"], "SK": item["SK"]})
    now.set(T0 - timedelta(days=1))
    fold = load_handler("metrics", module="fold", TABLE_NAME=table, ATTRIBUTION_WINDOW_DAYS="14")
    deliver_all(load_handler("metrics", TABLE_NAME=table, ATTRIBUTION_WINDOW_DAYS="14"), events, fold, now)
    settle(fold, now, events)
    assert every_report(leads_api) == rebuilt


def scan_metrics(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    prefixes = ("METRIC", "LEAD#")
    items = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            pk, sk = item["PK"]["S"], item["SK"]["S"]
            if pk.startswith(prefixes[0]) or (pk.startswith(prefixes[1]) and sk == "METRICSTATE"):
                items.append(item)
    return items


def test_the_program_report_gives_its_steps_trend_and_the_funnel_it_touched(
    metrics, metrics_fold, leads_api, dynamodb, table, now
):
    events, templates = event_stream(seed=7, leads=20)
    store_leads(dynamodb, table, events, templates)
    deliver_all(metrics, events, metrics_fold, now)
    settle(metrics_fold, now, events)
    status, body = get(leads_api, "/v1/reports/programs/welcome", **RANGE)
    assert status == 200 and body["program"] == "welcome"
    assert {r["program"] for r in body["emails"]} == {"welcome"} and len(body["emails"]) > 1
    assert body["totals"]["sent"] == sum(r["sent"] for r in body["emails"])
    assert sum(d["sent"] for d in body["totals"]["daily"]) == body["totals"]["sent"]
    assert body["funnel"] is not None and body["funnel"]["value"] == "welcome"
    _, by_program = get(leads_api, "/v1/reports/emails", **RANGE, by="program")
    welcome = next(r for r in by_program["rows"] if r["program"] == "welcome")
    assert welcome["sent"] == body["totals"]["sent"]

    status, body = get(leads_api, "/v1/reports/programs/no-such-program", **RANGE)
    assert status == 404 and body["message"] == "no program no-such-program"
    status, body = get(leads_api, "/v1/reports/programs/welcome", **RANGE, by="segment")
    assert status == 400 and body["problems"][0].startswith("by:")
    status, body = get(leads_api, "/v1/reports/emails", **RANGE, by="industry")
    assert status == 400 and body["problems"][0] == "by: the email report breaks down by program"


def test_a_rebuilt_counter_with_many_fields_is_written_in_slices(dynamodb, table) -> None:
    """A busy day's funnel holds more fields than one update expression may name (4 KB)."""
    fields = {f"lead:tis:{bucket}": bucket + 1 for bucket in range(150)} | {"lead:entered": 7}
    store = DynamoMetricsStore(table, dynamodb)
    writes = store.add_rebuilt(3, {("funnel|all#-", "2026-11-02"): fields})
    assert writes == 3 + 1  # three slices of at most 60 fields, and the key listed
    key = FunnelKey("all")
    assert store.funnel_keys(3, None) == [key]
    assert store.days(3, key, date(2026, 11, 1), date(2026, 11, 30)) == {"2026-11-02": fields}


def test_a_rebuild_after_upgrading_counts_the_raw_log_entries_and_rewrites_them_without_ids(
    leads_api, dynamodb, table
):
    """Entries of the log's first layout held the raw bus event (ids, and whatever personal data
    it carried): a rebuild counts them and leaves them reduced, named by pseudonyms."""
    from kindling.metrics.counters import pseudonym

    lead, send = "ld_0legacy0000000000000000000000", "welcome-series.ld_0legacy0000000000000000000000.1.w1"
    at = T0.isoformat()
    detail = {"send_id": send, "lead_id": lead, "at": at, "template": "welcome-1", "to": "olga@acme.io"}
    raw = {
        "PK": {"S": f"METRICLOG#{T0.date().isoformat()}"},
        "SK": {"S": f"{T0.strftime('%Y-%m-%dT%H:%M:%S.%f')}#{send}:sent"},
        "source": {"S": "kindling.email"},
        "detail_type": {"S": "email.sent"},
        "time": {"S": at},
        "detail": {"S": json.dumps(detail)},
        "template": {"S": "welcome-1"},
        "generation": {"N": "0"},
    }
    dynamodb.put_item(TableName=table, Item=raw)
    dynamodb.put_item(
        TableName=table, Item={"PK": {"S": "METRICKEYS#log"}, "SK": {"S": T0.date().isoformat()}}
    )

    rebuild_metrics(DynamoMetricsStore(table, dynamodb), timedelta(days=14))

    assert every_report(leads_api)["emails"]["totals"]["sent"] == 1, "counted"
    log = [i for i in scan_metrics(dynamodb, table) if i["PK"]["S"].startswith("METRICLOG#")]
    text = json.dumps(log)
    assert len(log) == 1 and "detail" not in log[0] and log[0]["applied"]["N"] == "0"
    for clear in (lead, send, "olga@acme.io"):
        assert clear not in text
    assert pseudonym(lead) in text and pseudonym(send) in text
