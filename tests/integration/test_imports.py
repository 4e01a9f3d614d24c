"""Imports and the suppression list through the admin API's handler, on moto.

Suppressions first, then contacts; every row's outcome; the same batch twice changes nothing;
a dry run writes nothing; an import never re-subscribes; stages only move forward; and
imported leads enter new-lead programs only when asked.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from kindling.adapters.dynamo import DynamoLeadStore
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, http_event

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def api(load_handler, table: str) -> Any:
    programs = boto3.client("sqs").create_queue(QueueName=f"programs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    handler = load_handler(
        "leads_api",
        TABLE_NAME=table,
        SEND_QUEUE_URL="http://unused",
        PROGRAMS_QUEUE_URL=programs,
        secrets={"ADMIN_TOKEN_SECRET_ARN": ADMIN},
    )
    handler.programs_queue_url_for_tests = programs
    return handler


def call(
    api: Any, method: str, path: str, body: Any = None, route: str | None = None, **params: str
) -> tuple[int, Any]:
    event = http_event(
        method, path, body=body, headers=AUTH, path_parameters=params or None, route=route or path
    )
    answer = api.lambda_handler(event, Context())
    return answer["statusCode"], json.loads(answer["body"] or "null")


def outcomes(answer: dict[str, Any]) -> dict[str, str]:
    return {r["row"]: r["outcome"] for r in answer["results"]}


def test_suppressions_then_contacts_give_each_row_its_outcome_and_a_second_run_changes_nothing(
    api, table
) -> None:
    suppressions = {
        "source": "hubspot",
        "rows": [
            {"row": "2", "email": "Bounced@Acme.io ", "reason": "bounced"},
            {"row": "3", "email": "gone@acme.io", "reason": "unsubscribed"},
            {"row": "4", "email": "not-an-address", "reason": "bounced"},
        ],
    }
    status, answer = call(api, "POST", "/v1/imports/suppressions", suppressions)
    assert status == 200 and outcomes(answer) == {"2": "suppressed", "3": "suppressed", "4": "rejected"}
    contacts = {
        "source": "csv",
        "rows": [
            {
                "row": "2",
                "email": "ada@acme.io",
                "traits": {"first_name": "Ada", "company_size": 1200},
                "stage": "mql",
            },
            {"row": "3", "email": "bounced@acme.io", "traits": {"first_name": "Bo"}},
            {"row": "4", "email": "ADA@acme.io", "traits": {"title": "CTO"}},
            {"row": "5", "traits": {"first_name": "Nobody"}},
            {"row": "6", "email": "gone@acme.io", "traits": {"first_name": "Gus"}, "unsubscribed": False},
        ],
    }
    status, first = call(api, "POST", "/v1/imports/contacts", contacts)
    assert status == 200
    assert outcomes(first) == {
        "2": "created",
        "3": "suppressed",
        "4": "updated",
        "5": "rejected",
        "6": "suppressed",
    }
    assert "no email and no user id" in next(r["reason"] for r in first["results"] if r["row"] == "5")
    store = DynamoLeadStore(table)
    ada = store.get(store.lead_for_email("ada@acme.io") or "")
    assert ada is not None and ada.traits == {"first_name": "Ada", "company_size": 1200, "title": "CTO"}
    assert ada.stage == "mql"
    _, again = call(api, "POST", "/v1/imports/contacts", contacts)
    assert outcomes(again) == {
        "2": "unchanged",
        "3": "suppressed",
        "4": "unchanged",
        "5": "rejected",
        "6": "suppressed",
    }
    _, again = call(api, "POST", "/v1/imports/suppressions", suppressions)
    assert outcomes(again) == {"2": "unchanged", "3": "unchanged", "4": "rejected"}


def test_an_import_never_resubscribes_and_never_moves_a_stage_back(api, table) -> None:
    call(
        api,
        "POST",
        "/v1/imports/contacts",
        {
            "source": "csv",
            "rows": [{"row": "2", "email": "cat@acme.io", "stage": "customer", "unsubscribed": True}],
        },
    )
    _, answer = call(
        api,
        "POST",
        "/v1/imports/contacts",
        {
            "source": "mautic",
            "rows": [{"row": "9", "email": "cat@acme.io", "stage": "lead", "unsubscribed": False}],
        },
    )
    assert outcomes(answer) == {"9": "unchanged"}
    store = DynamoLeadStore(table)
    cat = store.get(store.lead_for_email("cat@acme.io") or "")
    assert cat is not None and cat.unsubscribed and cat.stage == "customer"


def test_a_dry_run_reports_the_outcomes_and_writes_nothing(api, table) -> None:
    batch = {"source": "csv", "dry_run": True, "rows": [{"row": "2", "email": "dry@acme.io"}]}
    _, answer = call(api, "POST", "/v1/imports/contacts", batch)
    assert answer["dry_run"] and outcomes(answer) == {"2": "created"}
    assert DynamoLeadStore(table).lead_for_email("dry@acme.io") is None


def test_imported_leads_enter_new_lead_programs_only_when_asked(api) -> None:
    sqs, queue = boto3.client("sqs"), api.programs_queue_url_for_tests
    call(
        api,
        "POST",
        "/v1/imports/contacts",
        {"source": "csv", "rows": [{"row": "2", "email": "quiet@acme.io"}]},
    )
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages") is None
    call(
        api,
        "POST",
        "/v1/imports/contacts",
        {"source": "csv", "enroll": True, "rows": [{"row": "2", "email": "welcome@acme.io"}]},
    )
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["detail-type"] == "lead.activity" and envelope["detail"]["new_lead"] is True


def test_a_batch_over_the_limit_or_with_unknown_fields_is_refused_naming_the_problem(api) -> None:
    rows = [{"row": str(i), "email": f"p{i}@acme.io"} for i in range(501)]
    status, answer = call(api, "POST", "/v1/imports/contacts", {"source": "csv", "rows": rows})
    assert status == 400 and any("rows" in p for p in answer["problems"])
    status, answer = call(
        api, "POST", "/v1/imports/contacts", {"source": "csv", "rows": [{"row": "2", "mail": "x"}]}
    )
    assert status == 400 and any("mail" in p for p in answer["problems"])


def test_the_suppression_list_is_listed_and_a_removal_needs_a_reason_and_is_recorded(api) -> None:
    for email in ("b@acme.io", "a@acme.io"):
        status, _ = call(
            api, "POST", "/v1/suppressions", {"email": email, "reason": "manual", "by": "ops@acme.io"}
        )
        assert status == 201
    status, _ = call(
        api, "POST", "/v1/suppressions", {"email": "a@acme.io", "reason": "manual", "by": "ops@acme.io"}
    )
    assert status == 200, "already on it"
    status, page = call(api, "GET", "/v1/suppressions")
    assert [s["email"] for s in page["suppressions"]] == ["a@acme.io", "b@acme.io"]
    route = "/v1/suppressions/{email}/remove"
    status, answer = call(
        api, "POST", "/v1/suppressions/a%40acme.io/remove", {"by": "ops@acme.io"}, route, email="a%40acme.io"
    )
    assert status == 400 and "note" in answer["problems"][0]
    removal = {"by": "ops@acme.io", "note": "re-confirmed opt-in by phone"}
    status, _ = call(api, "POST", "/v1/suppressions/a%40acme.io/remove", removal, route, email="a%40acme.io")
    assert status == 200
    status, record = call(
        api, "GET", "/v1/suppressions/a%40acme.io", route="/v1/suppressions/{email}", email="a%40acme.io"
    )
    assert record["suppression"] is None
    [removed] = record["removals"]
    assert (removed["by"], removed["reason"], removed["was"]) == (
        "ops@acme.io",
        "re-confirmed opt-in by phone",
        "manual",
    )
