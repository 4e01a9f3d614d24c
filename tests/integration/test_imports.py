"""Imports and the suppression list through the admin API's handler, on moto.

Suppressions first, then contacts; every row's outcome; the same batch twice changes nothing;
a dry run writes nothing; an import never re-subscribes; stages only move forward; and
imported leads enter new-lead programs only when asked.
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

import boto3
import pytest

from kindling.adapters.dynamo import DynamoLeadStore
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, http_event

AUTH = {"Authorization": f"Bearer {ADMIN}"}
LINK_SECRET = "link-secret-integration-0123456789"
ERASURE_KEY = "erasure-key-integration-0123456789"


def _text(value: object) -> object:
    """A scanned value with its packed (compressed) parts uncompressed: what a reader could see."""
    if isinstance(value, bytes):
        try:
            return zlib.decompress(value).decode()
        except zlib.error:
            return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def table_dump(table: str) -> str:
    """Every item of the table as text, packed values uncompressed."""
    return json.dumps(_text(boto3.client("dynamodb").scan(TableName=table)["Items"]))


@pytest.fixture
def api(load_handler, table: str) -> Any:
    programs = boto3.client("sqs").create_queue(QueueName=f"programs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    handler = load_handler(
        "leads_api",
        TABLE_NAME=table,
        SEND_QUEUE_URL="http://unused",
        PROGRAMS_QUEUE_URL=programs,
        BUS_NAME="unused-bus",
        PUBLIC_API_URL="http://127.0.0.1:3000",
        secrets={
            "ADMIN_TOKEN_SECRET_ARN": ADMIN,
            "LINK_SECRET_ARN": LINK_SECRET,
            "ERASURE_KEY_SECRET_ARN": ERASURE_KEY,
        },
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


def test_a_persons_access_export_has_everything_and_erasure_leaves_only_a_hash_of_an_opted_out_address(
    api, table
) -> None:
    from kindling.adapters.email_store import DynamoEmailStore
    from kindling.leads.privacy import suppression_hash

    call(
        api,
        "POST",
        "/v1/imports/contacts",
        {
            "source": "csv",
            "rows": [
                {
                    "row": "2",
                    "email": "erin@acme.io",
                    "user_id": "u-erin",
                    "traits": {"first_name": "Erin"},
                    "unsubscribed": True,
                }
            ],
        },
    )
    store = DynamoLeadStore(table)
    lead_id = store.lead_for_email("erin@acme.io")
    assert lead_id is not None
    route = "/v1/leads/{lead_id}/data"
    status, data = call(api, "GET", f"/v1/leads/{lead_id}/data", route=route, lead_id=lead_id)
    assert status == 200 and data["email"] == "erin@acme.io"
    assert {"profile", "timeline", "identities"} <= set(data["items"])
    assert len(data["items"]["identities"]) == 2, "email and user id"

    erase_route = "/v1/leads/{lead_id}/erase"
    status, answer = call(
        api,
        "POST",
        f"/v1/leads/{lead_id}/erase",
        {"confirm": "someone@else.io", "by": "dpo@acme.io"},
        erase_route,
        lead_id=lead_id,
    )
    assert status == 400 and "confirm" in answer["problems"][0], "erasure asks for the address again"
    status, report = call(
        api,
        "POST",
        f"/v1/leads/{lead_id}/erase",
        {"confirm": "Erin@acme.io", "by": "dpo@acme.io", "note": "ticket 881"},
        erase_route,
        lead_id=lead_id,
    )
    assert status == 200 and report["kept_opt_out"] and report["erased_items"] >= 4

    dump = table_dump(table)
    assert "erin@acme.io" not in dump and "u-erin" not in dump and "Erin" not in dump, "nothing left in clear"
    assert call(api, "GET", f"/v1/leads/{lead_id}/data", route=route, lead_id=lead_id)[0] == 404
    assert (
        call(api, "GET", f"/v1/leads/{lead_id}/export", route="/v1/leads/{lead_id}/export", lead_id=lead_id)[
            0
        ]
        == 404
    )
    status, _ = call(
        api,
        "DELETE",
        f"/v1/leads/{lead_id}",
        {"confirm": "erin@acme.io", "by": "dpo"},
        "/v1/leads/{lead_id}",
        lead_id=lead_id,
    )
    assert status == 404, "erased already: DELETE is the same erasure"
    # A later CRM sync or import brings the address back: the sender still never mails it.
    emails = DynamoEmailStore(table, hash_key=lambda: ERASURE_KEY.encode())
    assert emails.suppression("erin@acme.io") == "unsubscribed"
    assert emails.suppression("someone.else@acme.io") is None
    assert suppression_hash(ERASURE_KEY.encode(), "erin@acme.io") in dump
    # Keyed by the erasure key alone: rotating the link signing key (after a leak) forgets nothing.
    assert suppression_hash(LINK_SECRET.encode(), "erin@acme.io") not in dump
    # An erasure made before the erasure key existed was keyed with the link signing key: the
    # sender (which has both) still never mails that address.
    legacy = suppression_hash(LINK_SECRET.encode(), "olga@acme.io")
    item = {"PK": {"S": f"SUPPRESSHASH#{legacy}"}, "SK": {"S": "SUPPRESSHASH"}, "reason": {"S": "complained"}}
    boto3.client("dynamodb").put_item(TableName=table, Item=item)
    assert emails.suppression("olga@acme.io") is None, "the erasure key alone does not know it"
    sender_view = DynamoEmailStore(
        table, hash_key=lambda: ERASURE_KEY.encode(), legacy_hash_key=lambda: LINK_SECRET.encode()
    )
    assert sender_view.suppression("olga@acme.io") == "complained"
    assert sender_view.suppression("erin@acme.io") == "unsubscribed"


def test_after_an_erasure_no_item_holds_the_address_the_lead_id_or_an_anonymous_id(api, table) -> None:
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from kindling.adapters.config_store import DynamoConfigStore, ProgramsConfig
    from kindling.adapters.program_store import DynamoProgramStore
    from kindling.leads.profiles import ProfileService
    from kindling.programs.service import ProgramService
    from kindling.tracking.segment import WebEvent
    from kindling_ops.config import documents, load
    from tests.fakes import NullPublisher, RecordingQueue

    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    config = documents(load(Path(__file__).resolve().parents[2] / "config"))
    for name in ("scoring.yaml", "email.yaml", "templates", "segments.yaml", "programs"):
        DynamoConfigStore(table).apply(name.removesuffix(".yaml"), config[name], now)
    profiles = ProfileService(DynamoLeadStore(table), sleep=lambda s: None)
    browsing = WebEvent(
        message_id="anon-1",
        type="page",
        anonymous_id="anon-frank-7",
        name="/pricing",
        timestamp=now,
        received_at=now,
    )
    profiles.record(browsing, now)
    form = WebEvent(
        message_id="form-1",
        type="identify",
        anonymous_id="anon-frank-7",
        user_id="u-frank",
        traits={"email": "frank@acme.io", "industry": "SaaS"},
        timestamp=now + timedelta(hours=1),
        received_at=now,
    )
    lead_id = profiles.record(form, now).lead_id
    programs = ProgramService(
        DynamoProgramStore(table), ProgramsConfig(table), RecordingQueue(), NullPublisher()
    )
    programs.on_lead_event(
        lead_id,
        trigger_id="form-1",
        now=now + timedelta(hours=1),
        event=form.model_dump(mode="json"),
        new_lead=True,
    )
    # Metrics counted for the person: an email sent (fresh: logged for the fold) and a stage move
    # that came late (counted at once: the lead's metrics state, counters, the log).
    from kindling.adapters.metrics_store import DynamoMetricsStore
    from kindling.metrics.counters import MetricsRecorder

    recorder = MetricsRecorder(DynamoMetricsStore(table))
    send_id = f"welcome-series.{lead_id}.1.send-welcome"
    sent = {"send_id": send_id, "lead_id": lead_id, "at": (now + timedelta(hours=1)).isoformat()}
    assert recorder.record("kindling.email", "email.sent", sent, now, now + timedelta(hours=1)) == "logged"
    moved = {"event_id": "mv-1", "lead_id": lead_id, "from": "lead", "to": "mql", "at": now.isoformat()}
    assert recorder.record("kindling.scoring", "lead.stage_changed", moved, now, now + timedelta(days=1)) == (
        "applied"
    )
    # And a first open marked by the metrics' first layout, under the send's own id.
    legacy_marker = {"PK": {"S": f"METRICSEEN#{send_id}#opened"}, "SK": {"S": "METRICSEEN"}}
    boto3.client("dynamodb").put_item(TableName=table, Item=legacy_marker)
    dump = table_dump(table)
    assert lead_id in dump and "anon-frank-7" in dump  # enrolled, a wake-up due, a segment joined
    assert "METRICLOG#" in dump and "METRICSTATE#" in dump

    status, report = call(
        api,
        "POST",
        f"/v1/leads/{lead_id}/erase",
        {"confirm": "frank@acme.io", "by": "dpo@acme.io"},
        "/v1/leads/{lead_id}/erase",
        lead_id=lead_id,
    )
    assert status == 200, report
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    for personal in ("frank@acme.io", lead_id, "anon-frank-7", "u-frank"):
        holding = [i["PK"]["S"] + " | " + i["SK"]["S"] for i in items if personal in json.dumps(_text(i))]
        assert not holding, f"{personal} is still stored in clear in {holding}"
