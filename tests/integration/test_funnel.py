"""Funnel counters through the metrics consumer, and the funnel report, against moto (the moves reach
the consumer weeks later, so it counts each at once; the fold's funnels: test_metrics_fold)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.events import Context, http_event
from tests.integration.test_metrics import ADMIN, T0, deliver, envelope

pytestmark = pytest.mark.usefixtures("weeks_later")


def move(event_id: str, lead: str, days: int, from_stage: str, to: str, **extra: Any) -> str:
    at = (T0 + timedelta(days=days)).isoformat()
    detail = {"event_id": event_id, "lead_id": lead, "from": from_stage, "to": to, "at": at, **extra}
    return envelope("kindling.crm" if extra else "kindling.scoring", "lead.stage_changed", detail)


def funnel(leads_api: Any, **query: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    event = http_event("GET", "/v1/reports/funnel", headers=headers, query=query or None)
    response = leads_api.lambda_handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def test_stage_moves_count_once_per_stage_industry_and_source(metrics, leads_api, dynamodb, table) -> None:
    traits = {"industry": {"S": "Software"}, "first_touch_source": {"S": "google"}}
    profile = {"PK": {"S": "LEAD#ld_a"}, "SK": {"S": "PROFILE"}, "traits": {"M": traits}}
    dynamodb.put_item(TableName=table, Item=profile)
    to_mql = move("a1", "ld_a", 1, "lead", "mql")
    bodies = [
        move("a0", "ld_a", 0, "subscriber", "lead"),
        to_mql,
        to_mql,  # a redelivery
        move("b0", "ld_b", 0, "subscriber", "lead"),
        move("b1", "ld_b", 2, "lead", "mql"),
        move("c0", "ld_c", 0, "subscriber", "lead"),
        move("a2", "ld_a", 3, "opportunity", "customer", amount=1200.5),
        move("b2", "ld_b", 4, "mql", "closed_lost", amount=None),
    ]
    assert deliver(metrics, *bodies) == {"batchItemFailures": []}

    status, body = funnel(leads_api, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 200 and body["by"] is None
    [group] = body["groups"]
    stages = {s["stage"]: s for s in group["stages"]}
    assert (stages["lead"]["entered"], stages["mql"]["entered"]) == (3, 2)
    assert stages["lead"]["conversion_to_next"] == round(2 / 3, 4)
    assert group["closed"] == {
        "won": {"count": 1, "with_amount": 1, "amount": 1200.5},
        "lost": {"count": 1, "with_amount": 0, "amount": 0.0},
    }

    status, body = funnel(leads_api, **{"from": "2026-11-01", "to": "2026-11-30", "by": "industry"})
    groups = {g["value"]: g for g in body["groups"]}
    assert status == 200 and set(groups) == {"Software", "unknown"}
    software = {s["stage"]: s["entered"] for s in groups["Software"]["stages"]}
    assert (software["lead"], software["mql"], software["customer"]) == (1, 1, 1)
    unknown = {s["stage"]: s["entered"] for s in groups["unknown"]["stages"]}
    assert (unknown["lead"], unknown["mql"], unknown["closed_lost"]) == (2, 1, 1)

    status, body = funnel(leads_api, **{"from": "2026-11-03", "to": "2026-11-03", "by": "source"})
    assert status == 200 and [g["value"] for g in body["groups"]] == ["google"]
    assert {s["stage"]: s["entered"] for s in body["groups"][0]["stages"]}["mql"] == 1


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"to": "2026-11-30"}, "from"),
        ({"from": "2026-12-01", "to": "2026-11-30"}, "from"),
        ({"from": "2026-11-01", "to": "2026-11-30", "by": "country"}, "by"),
    ],
)
def test_the_funnel_report_refuses_bad_parameters_naming_them(leads_api, query, named) -> None:
    status, body = funnel(leads_api, **query)
    assert status == 400 and body["problems"][0].startswith(f"{named}:")


def test_the_funnel_report_needs_the_admin_token(leads_api) -> None:
    event = http_event("GET", "/v1/reports/funnel", query={"from": "2026-11-01", "to": "2026-11-02"})
    assert leads_api.lambda_handler(event, Context())["statusCode"] == 401
