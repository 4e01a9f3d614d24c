"""The real handlers, invoked with the events AWS sends them, against moto."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import Any

import boto3
import pytest

from kindling.adapters.dynamo import DynamoLeadStore
from kindling.kernel import clock
from kindling_ops.lambda_events import sqs_record
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, basic, bus_routed_to_queue, http_event

WRITE_KEY = "wk-integration-1"


@pytest.fixture
def bus_with_queue(moto_endpoint: str) -> tuple[str, str]:
    """The profiles queue capture hands its events to (and a bus routing kindling's own to it)."""
    return bus_routed_to_queue("kindling.capture")


def drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def capture(load_handler, bus_with_queue):
    return load_handler(
        "capture",
        PROFILES_QUEUE_URL=bus_with_queue[1],
        ALLOWED_ORIGINS="*",
        secrets={"WRITE_KEY_SECRET_ARN": WRITE_KEY},
    )


def test_an_accepted_event_is_on_the_profiles_queue_before_the_api_answers(capture, bus_with_queue) -> None:
    event = http_event(
        "POST",
        "/v1/track",
        body={"userId": "u1", "event": "Demo Requested"},
        headers={"Authorization": basic(WRITE_KEY)},
    )
    response = capture.lambda_handler(event, Context())
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"success": True}
    [envelope] = drain(bus_with_queue[1])
    assert envelope["source"] == "kindling.capture" and envelope["detail-type"] == "web.track"
    assert envelope["detail"]["event"] == "Demo Requested"
    assert envelope["detail"]["context"]["ip"] == "203.0.113.9"


def test_a_gzipped_text_plain_batch_reaches_the_queue_whole(capture, bus_with_queue) -> None:
    batch = {"batch": [{"type": "page", "anonymousId": "a", "name": f"P{i}"} for i in range(25)]}
    event = http_event(
        "POST",
        "/v1/b",
        body=gzip.compress(json.dumps(batch).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain", "X-Write-Key": WRITE_KEY},
    )
    assert capture.lambda_handler(event, Context())["statusCode"] == 200
    assert sorted(e["detail"]["name"] for e in drain(bus_with_queue[1])) == sorted(f"P{i}" for i in range(25))


def test_a_wrong_write_key_gets_401_and_stores_nothing(capture, bus_with_queue) -> None:
    event = http_event(
        "POST", "/v1/track", body={"userId": "u1", "event": "x"}, headers={"Authorization": basic("guess")}
    )
    response = capture.lambda_handler(event, Context())
    assert response["statusCode"] == 401
    assert "Basic" in response["headers"]["WWW-Authenticate"]
    assert drain(bus_with_queue[1]) == []


def test_a_malformed_event_gets_400_naming_the_field(capture, bus_with_queue) -> None:
    event = http_event(
        "POST",
        "/v1/identify",
        body={"userId": "u1", "traits": [1, 2]},
        headers={"Authorization": basic(WRITE_KEY)},
    )
    response = capture.lambda_handler(event, Context())
    assert response["statusCode"] == 400
    assert any(p.startswith("traits") for p in json.loads(response["body"])["problems"])
    assert drain(bus_with_queue[1]) == []


def test_when_the_queue_is_unreachable_the_client_is_told_to_retry(load_handler, moto_endpoint) -> None:
    capture = load_handler(
        "capture",
        PROFILES_QUEUE_URL=f"{moto_endpoint}/123456789012/no-such-queue",
        ALLOWED_ORIGINS="*",
        secrets={"WRITE_KEY_SECRET_ARN": WRITE_KEY},
    )
    event = http_event(
        "POST", "/v1/track", body={"userId": "u1", "event": "x"}, headers={"Authorization": basic(WRITE_KEY)}
    )
    response = capture.lambda_handler(event, Context())
    assert response["statusCode"] == 503 and response["headers"]["Retry-After"] == "1"


def test_the_pixel_answers_a_gif_and_records_the_open(capture, bus_with_queue) -> None:
    event = http_event(
        "GET",
        "/v1/pixel.gif",
        query={
            "writeKey": WRITE_KEY,
            "event": "Email Opened",
            "userId": "u5",
            "properties.email": "welcome-1",
        },
        headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Thunderbird/128.0"},
    )
    response = capture.lambda_handler(event, Context())
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "image/gif"
    assert response["isBase64Encoded"] and base64.b64decode(response["body"]).startswith(b"GIF89a")
    [envelope] = drain(bus_with_queue[1])
    assert envelope["detail"]["properties"] == {"email": "welcome-1"}


def envelope(detail: dict[str, Any]) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "web.identify",
            "source": "kindling.capture",
            "account": "123456789012",
            "time": "2026-11-25T09:30:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def test_the_profiles_consumer_fails_only_the_poison_record_and_applies_duplicates_once(
    load_handler, table, bus_with_queue, now
) -> None:
    profiles = load_handler(
        "profiles", TABLE_NAME=table, BUS_NAME=bus_with_queue[0], PROGRAMS_QUEUE_URL=bus_with_queue[1]
    )
    clock.install(clock.FixedClock(now))
    detail = {
        "message_id": "m-1",
        "type": "identify",
        "anonymous_id": "a1",
        "timestamp": "2026-11-25T09:00:00Z",
        "received_at": "2026-11-25T09:00:01Z",
        "traits": {"email": "dana@acme.io"},
    }
    event = {
        "Records": [
            sqs_record(envelope(detail), "1"),
            sqs_record(envelope({"type": "nonsense"}), "2"),
            sqs_record(envelope(detail), "3"),
        ]
    }
    try:
        result = profiles.lambda_handler(event, Context())
    finally:
        clock.install(clock.SystemClock())
    assert result == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    store = DynamoLeadStore(table)
    lead_id = store.lead_for_email("dana@acme.io")
    assert lead_id is not None and len(store.timeline(lead_id, 10)) == 1


def test_the_leads_api_requires_the_admin_token(leads_api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": basic(ADMIN)}):
        event = http_event(
            "GET",
            "/v1/leads/ld_x",
            headers=headers,
            path_parameters={"lead_id": "ld_x"},
            route="/v1/leads/{lead_id}",
        )
        assert leads_api.lambda_handler(event, Context())["statusCode"] == 401


def _leads_api_routes() -> list[tuple[str, str]]:
    """Every route the template gives the admin API function, as (method, path)."""
    from samtranslator.yaml_helper import yaml_parse

    from tests.conftest import ROOT

    template = yaml_parse((ROOT / "template.yaml").read_text())
    events = template["Resources"]["LeadsApiFunction"]["Properties"]["Events"]
    return [(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()]


#: Public pages, and what they answer without a token: the shells, and a preview link without its signature.
PUBLIC_PAGES = {
    ("GET", "/v1/reports"): 200,
    ("GET", "/console"): 200,
    ("GET", "/v1/templates/{name}/preview.html"): 403,
}


@pytest.mark.parametrize(("method", "route"), _leads_api_routes())
def test_every_admin_route_refuses_a_request_without_the_token_and_only_the_page_shell_is_public(
    leads_api, method: str, route: str
) -> None:
    values = {"lead_id": "ld_x", "program_id": "welcome", "email": "a@b.io", "name": "welcome-1"}
    path = route
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    parameters = {name: value for name, value in values.items() if "{" + name + "}" in route} or None
    event = http_event(
        method, path, body={} if method == "POST" else None, path_parameters=parameters, route=route
    )
    status = leads_api.lambda_handler(event, Context())["statusCode"]
    assert status == PUBLIC_PAGES.get((method, route), 401)


def test_the_leads_api_answers_404_for_an_unknown_lead(leads_api) -> None:
    event = http_event(
        "GET",
        "/v1/leads/ld_nobody",
        headers={"Authorization": f"Bearer {ADMIN}"},
        path_parameters={"lead_id": "ld_nobody"},
        route="/v1/leads/{lead_id}",
    )
    assert leads_api.lambda_handler(event, Context())["statusCode"] == 404


def test_looking_a_lead_up_needs_an_email(leads_api) -> None:
    for query in (None, {"email": "not-an-address"}):
        event = http_event("GET", "/v1/leads", headers={"Authorization": f"Bearer {ADMIN}"}, query=query)
        response = leads_api.lambda_handler(event, Context())
        assert response["statusCode"] == 400, query
        assert "email" in json.loads(response["body"])["problems"][0]
