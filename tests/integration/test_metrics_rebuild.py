"""Rebuilding the metrics from the logged events gives the numbers the consumer counted, on stored data,
even while events keep arriving; and the new reports (programs, breakdowns, time in stage) against moto."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.metrics.counters import FunnelKey, MetricEvent
from kindling.metrics.rebuild import rebuild_metrics
from kindling_ops.lambda_events import sqs_record
from tests.integration.events import Context, http_event
from tests.integration.test_metrics import ADMIN
from tests.unit.test_metrics import event_stream, lead_contexts, on_the_bus

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


def deliver_all(handler: Any, events: list[MetricEvent]) -> int:
    """Deliver in batches of ten, redelivering what a batch reports failed (as SQS would); the retries."""
    retries = 0
    pending = [body_of(e) for e in events]
    while pending:
        batch, pending = pending[:10], pending[10:]
        while batch:
            records = [sqs_record(body, str(i)) for i, body in enumerate(batch)]
            failed = handler.lambda_handler({"Records": records}, Context())["batchItemFailures"]
            batch = [batch[int(f["itemIdentifier"])] for f in failed]
            retries += len(batch)
            assert retries < 100
    return retries


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


def test_a_rebuild_from_the_logged_events_gives_the_counted_numbers(metrics, leads_api, dynamodb, table):
    events, templates = event_stream(seed=5, leads=40)
    store_leads(dynamodb, table, events, templates)
    deliver_all(metrics, events)
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


def test_events_that_arrive_during_a_rebuild_count_once(metrics, leads_api, dynamodb, table, load_handler):
    events, templates = event_stream(seed=6, leads=30)
    store_leads(dynamodb, table, events, templates)
    half = len(events) // 2
    deliver_all(metrics, events[:half])
    drained: list[float] = []

    def events_arrive_while_draining(seconds: float) -> None:
        drained.append(seconds)
        # The consumer reads the new generation for each event from now on.
        assert deliver_all(metrics, events[half:]) == 0

    store = DynamoMetricsStore(table, dynamodb)
    rebuild_metrics(store, timedelta(days=14), timedelta(seconds=30), sleep=events_arrive_while_draining)
    assert drained == [30.0] and store.generations() == (1, 1)
    rebuilt = every_report(leads_api)

    # The same events counted by the consumer alone, in a fresh table state, give the same reports.
    for item in scan_metrics(dynamodb, table):
        dynamodb.delete_item(TableName=table, Key={"PK": item["PK"], "SK": item["SK"]})
    deliver_all(load_handler("metrics", TABLE_NAME=table, ATTRIBUTION_WINDOW_DAYS="14"), events)
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
    metrics, leads_api, dynamodb, table
):
    events, templates = event_stream(seed=7, leads=20)
    store_leads(dynamodb, table, events, templates)
    deliver_all(metrics, events)
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
