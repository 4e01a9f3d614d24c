"""Hostile requests against the real handlers (moto): a named 4xx, never a 5xx; and what capture
accepts, the profiles consumer applies to a lead, with no record failed and no event lost."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kindling.adapters.dynamo import DynamoLeadStore
from kindling.crm import hubspot
from kindling.kernel.bus import BusEvent
from kindling.leads.profiles import Identity
from kindling.webhooks.standard import WebhookSecret, sign
from kindling_ops.lambda_events import sqs_record
from tests.fakes import RecordingPublisher
from tests.hostile import KEPT, REFUSED, Hostile, bodies, json_values, nested, raw_track, track
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, basic, bus_routed_to_queue, http_event
from tests.integration.test_crm_webhooks import (
    HUBSPOT_SECRET,
    PIPEDRIVE,
    PUBLIC,
    SALESFORCE_SECRET,
    WEBHOOK_SECRET,
    environment,
)
from tests.integration.test_handlers import drain

# Refused requests publish nothing, so Powertools says it has no metric to publish.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

WRITE_KEY = "wk-hostile-integration-1"
LINK_SECRET = "link-secret-hostile-0123456789"


@pytest.fixture
def bus(moto_endpoint: str) -> tuple[str, str]:
    """A bus whose web events go to a queue, as the template routes them to the profiles function."""
    return bus_routed_to_queue("kindling.capture")


@pytest.fixture
def capture(load_handler, bus: tuple[str, str]) -> ModuleType:
    return load_handler(
        "capture", PROFILES_QUEUE_URL=bus[1], ALLOWED_ORIGINS="*", secrets={"WRITE_KEY_SECRET_ARN": WRITE_KEY}
    )


@pytest.fixture
def profiles(load_handler, table: str, bus: tuple[str, str]) -> ModuleType:
    return load_handler("profiles", TABLE_NAME=table, BUS_NAME=bus[0], PROGRAMS_QUEUE_URL=bus[1])


@pytest.fixture
def hooks(load_handler, table: str, bus: tuple[str, str]) -> ModuleType:
    return load_handler("crm_webhooks", **environment(table, bus[0]))


@pytest.fixture
def links(load_handler, table: str, bus: tuple[str, str]) -> ModuleType:
    return load_handler(
        "email_links", TABLE_NAME=table, BUS_NAME=bus[0], secrets={"LINK_SECRET_ARN": LINK_SECRET}
    )


def call(module: ModuleType, request: dict[str, Any]) -> dict[str, Any]:
    return module.lambda_handler(request, Context())


def apply(profiles: ModuleType, envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    """The profiles function given these EventBridge envelopes as one SQS batch."""
    records = [sqs_record(json.dumps(e), str(i)) for i, e in enumerate(envelopes)]
    return call(profiles, {"Records": records})


def problems(response: dict[str, Any]) -> str:
    return "; ".join(json.loads(response["body"]).get("problems", []))


# --- the events the fuzzing harness lost --------------------------------------------------------------


def test_the_three_events_that_were_answered_200_and_lost_are_now_refused_or_reach_the_lead(
    capture, profiles, bus, table
) -> None:
    sent = {
        "a 50-digit integer": raw_track(b"1" * 50),
        "a lone surrogate": json.dumps(track(userId="u-surrogate", properties={"s": "\ud800"})).encode(),
        "a timestamp in year 1": json.dumps(
            track(userId="u-year-1", timestamp="0001-01-01T00:00:00Z")
        ).encode(),
    }
    answers = {
        name: call(capture, http_event("POST", "/v1/track", body=body, headers={"X-Write-Key": WRITE_KEY}))
        for name, body in sent.items()
    }
    assert answers["a 50-digit integer"]["statusCode"] == 400
    assert "properties.x: a whole number of more than 38 digits" in problems(answers["a 50-digit integer"])
    assert answers["a lone surrogate"]["statusCode"] == 200
    assert answers["a timestamp in year 1"]["statusCode"] == 200

    envelopes = drain(bus[1])
    assert len(envelopes) == 2
    assert apply(profiles, envelopes) == {"batchItemFailures": []}
    store = DynamoLeadStore(table)
    [surrogate] = store.timeline(lead_of(store, "u-surrogate"), 10)
    assert surrogate.properties == {"s": "\ufffd"} and not surrogate.timestamp_replaced
    [year_1] = store.timeline(lead_of(store, "u-year-1"), 10)
    assert year_1.timestamp == year_1.received_at and year_1.timestamp_replaced


def lead_of(store: DynamoLeadStore, user_id: str) -> str:
    return store.owners([Identity("user", user_id)])[Identity("user", user_id)]


def test_every_hostile_value_capture_accepts_reaches_the_lead_through_the_bus(
    capture, profiles, bus, table
) -> None:
    envelopes = []
    for kept in KEPT:
        body = json.dumps(kept.message).encode()
        response = call(
            capture, http_event("POST", "/v1/track", body=body, headers={"X-Write-Key": WRITE_KEY})
        )
        assert response["statusCode"] == 200, (kept.name, response["body"])
        [envelope] = drain(bus[1])
        assert kept.expect(envelope["detail"]), kept.name
        envelopes.append(envelope)
    assert apply(profiles, envelopes) == {"batchItemFailures": []}
    store = DynamoLeadStore(table)
    assert len(store.timeline(lead_of(store, "u-hostile"), 100)) == len(KEPT)


# --- no 5xx, whatever the body, at every endpoint that reads one --------------------------------------

Endpoint = Callable[[Hostile], dict[str, Any]]


def capture_post(path: str, key: bool = True) -> Endpoint:
    def build(case: Hostile) -> dict[str, Any]:
        headers = {"X-Write-Key": WRITE_KEY} if key else {}
        if case.content_encoding is not None:
            headers["Content-Encoding"] = case.content_encoding
        return http_event("POST", path, body=case.body, headers=headers)

    return build


def pixel(case: Hostile) -> dict[str, Any]:
    # The pixel has no Content-Encoding: a body refused for its encoding is sent as bytes that are not UTF-8.
    body = case.body if case.content_encoding is None else b"\xff" + case.body[:1000]
    data = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return http_event("GET", "/v1/pixel.gif", query={"data": data, "writeKey": WRITE_KEY})


def pipedrive(case: Hostile) -> dict[str, Any]:
    token = base64.b64encode(":".join(PIPEDRIVE).encode()).decode()
    return http_event(
        "POST", "/v1/webhooks/pipedrive", body=case.body, headers={"Authorization": f"Basic {token}"}
    )


def hubspot_signed(case: Hostile) -> dict[str, Any]:
    timestamp = str(int(datetime.now(UTC).timestamp() * 1000))
    uri = hubspot.hubspot_request_uri(PUBLIC, "/v1/webhooks/hubspot")
    signature = hubspot.hubspot_signature(HUBSPOT_SECRET, "POST", uri, case.body, timestamp)
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}
    return http_event("POST", "/v1/webhooks/hubspot", body=case.body, headers=headers)


def generic_signed(case: Hostile) -> dict[str, Any]:
    headers = sign(
        WebhookSecret(WEBHOOK_SECRET), f"msg_{uuid.uuid4().hex[:12]}", datetime.now(UTC), case.body
    )
    return http_event("POST", "/v1/webhooks/generic", body=case.body, headers=headers)


def salesforce(case: Hostile) -> dict[str, Any]:
    headers = {"X-Kindling-Secret": SALESFORCE_SECRET, "Content-Type": "text/xml"}
    return http_event("POST", "/v1/webhooks/salesforce", body=case.body, headers=headers)


def send_email(case: Hostile) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return http_event("POST", "/v1/emails", body=case.body, headers=headers)


def unsubscribe(case: Hostile) -> dict[str, Any]:
    return http_event("POST", "/v1/unsubscribe", body=case.body, query={"token": "not-a-token"})


#: (handler fixture, how a hostile body is sent, whether the answer names the case's own problem).
ENDPOINTS: dict[str, tuple[str, Endpoint, bool]] = {
    "POST /v1/track": ("capture", capture_post("/v1/track"), True),
    "POST /v1/batch": ("capture", capture_post("/v1/batch"), True),
    "POST /v1/identify without a key": ("capture", capture_post("/v1/identify", key=False), True),
    "GET /v1/pixel.gif?data=": ("capture", pixel, False),
    "POST /v1/webhooks/pipedrive": ("hooks", pipedrive, False),
    "POST /v1/webhooks/hubspot": ("hooks", hubspot_signed, False),
    "POST /v1/webhooks/generic": ("hooks", generic_signed, False),
    "POST /v1/webhooks/salesforce (XML)": ("hooks", salesforce, False),
    "POST /v1/emails": ("leads_api", send_email, False),
    "POST /v1/unsubscribe": ("links", unsubscribe, False),  # an HTML page, as for any bad link
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_hostile_body_gets_a_5xx_and_each_gets_a_named_4xx(request, endpoint: str) -> None:
    fixture, build, names_the_problem = ENDPOINTS[endpoint]
    module = request.getfixturevalue(fixture)
    wrong = []
    for case in REFUSED:
        response = call(module, build(case))
        if response["statusCode"] != 400:
            wrong.append(f"{case.name}: {response['statusCode']} {response.get('body', '')[:200]}")
        elif response["headers"].get("Content-Type", "").startswith("application/json"):
            if not problems(response):
                wrong.append(f"{case.name}: no problem named")
            elif names_the_problem and case.problem not in problems(response):
                wrong.append(f"{case.name}: {problems(response)[:200]}")
    assert wrong == []


# --- headers and query strings ------------------------------------------------------------------------

HOSTILE_TEXT = ["\x00", "\ud800", "é" * 3000, "%00", "[" * 5000, "9" * 5000, " ", "\r\n", "\U0001d4b3"]


def hostile_header_requests() -> list[tuple[str, dict[str, Any], int]]:
    body = json.dumps(track()).encode()
    cases: list[tuple[str, dict[str, Any], int]] = []
    for text in HOSTILE_TEXT:
        for name in ("Authorization", "X-Write-Key", "Content-Encoding", "Content-Type", "User-Agent"):
            cases.append(
                (f"{name}: {text[:8]!r}", http_event("POST", "/v1/track", body=body, headers={name: text}), 0)
            )
        cases.append(
            (
                f"Basic {text[:8]!r}",
                http_event("POST", "/v1/t", body=body, headers={"Authorization": "Basic " + text}),
                0,
            )
        )
    broken = http_event("POST", "/v1/track", body=b"{}", headers={"X-Write-Key": WRITE_KEY})
    broken["body"] = "not base64 !!"
    cases.append(("a body that claims base64 and is not", broken, 400))
    return cases


@pytest.mark.parametrize(
    ("name", "request_event", "status"), hostile_header_requests(), ids=lambda v: str(v)[:40]
)
def test_hostile_headers_get_a_4xx_at_capture(
    capture, name: str, request_event: dict[str, Any], status: int
) -> None:
    answered = call(capture, request_event)["statusCode"]
    assert 400 <= answered < 500 and (status == 0 or answered == status), name


def hostile_pixel_queries() -> list[dict[str, str]]:
    queries: list[dict[str, str]] = [
        {"event": "Opened", "userId": "u", "properties": "junk", "properties.x": "1"},
        {"data": base64.b64encode(json.dumps({"type": ["track"], "userId": "u"}).encode()).decode()},
        {"data": base64.b64encode(json.dumps({"type": {"x": 1}}).encode()).decode()},
        {"data": base64.b64encode(nested(40)).decode()},
        {"data": "\ud800"},
        {"data": "=" * 100},
        {"type": "batch", "userId": "u"},
    ]
    for text in HOSTILE_TEXT:
        queries += [
            {"userId": text, "event": "Opened"},
            {"userId": "u", "event": text},
            {"userId": "u", "event": "Opened", f"properties.{text}": text},
            {"userId": "u", "event": "Opened", "timestamp": text},
            {"type": text, "userId": "u"},
            {text: text},
        ]
    return queries


def test_hostile_pixel_query_strings_get_a_gif_or_a_4xx(capture) -> None:
    answered = []
    for query in hostile_pixel_queries():
        status = call(capture, http_event("GET", "/v1/pixel.gif", query={**query, "writeKey": WRITE_KEY}))[
            "statusCode"
        ]
        answered.append(status)
        assert status < 500, query
    assert 200 in answered and 400 in answered


def test_hostile_admin_query_strings_and_ids_get_a_4xx(leads_api) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    statuses = []
    for text in HOSTILE_TEXT:
        for path, query in (
            ("/v1/reports/emails", {"from": text, "to": "2026-11-25"}),
            ("/v1/reports/emails", {"from": "2026-11-01", "to": "2026-11-25", "program": text, "by": text}),
            ("/v1/reports/funnel", {"from": "0001-01-01", "to": "9999-12-31", "by": text}),
            ("/v1/reports/funnel", {"from": "2026-11-01", "to": "2026-11-02", "by": text}),
            ("/v1/leads", {"email": text}),
        ):
            response = call(leads_api, http_event("GET", path, headers=admin, query=query))
            statuses.append(response["statusCode"])
            assert response["statusCode"] < 500, (path, query, response["body"][:300])
        for route, path, parameters in (
            ("/v1/leads/{lead_id}", f"/v1/leads/{text}", {"lead_id": text}),
            ("/v1/leads/{lead_id}/score", f"/v1/leads/{text}/score", {"lead_id": text}),
            ("/v1/leads/{lead_id}/enrollments", f"/v1/leads/{text}/enrollments", {"lead_id": text}),
            ("/v1/reports/programs/{program_id}", f"/v1/reports/programs/{text}", {"program_id": text}),
        ):
            event = http_event(
                "GET",
                path,
                headers=admin,
                path_parameters=parameters,
                route=route,
                query={"from": "2026-11-01", "to": "2026-11-02"},
            )
            response = call(leads_api, event)
            statuses.append(response["statusCode"])
            assert response["statusCode"] < 500, (route, text[:10], response["body"][:300])
    assert set(statuses) <= {200, 400, 404}


def test_hostile_link_tokens_get_a_4xx(links) -> None:
    for text in [*HOSTILE_TEXT, "a" * 10000, base64.urlsafe_b64encode(b"\xff" * 64).decode()]:
        for request_event in (
            http_event("GET", f"/v1/c/{text}", path_parameters={"token": text}, route="/v1/c/{token}"),
            http_event(
                "GET", f"/v1/o/{text}.gif", path_parameters={"token": f"{text}.gif"}, route="/v1/o/{token}"
            ),
            http_event("GET", "/v1/unsubscribe", query={"token": text}),
            http_event("POST", "/v1/unsubscribe", query={"token": text}, body=f"choice={text}"),
        ):
            status = call(links, request_event)["statusCode"]
            assert 400 <= status < 500, (request_event["rawPath"], text[:10], status)


# --- anything, through the real capture handler and on to the profiles consumer ----------------------


def envelope_of(bus_event: BusEvent) -> dict[str, Any]:
    """What EventBridge hands the profiles queue for an event put on the bus."""
    assert bus_event.time is not None
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": bus_event.detail_type,
        "source": bus_event.source,
        "account": "123456789012",
        "time": bus_event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": json.loads(bus_event.detail_json()),
    }


header_text = st.text(st.characters(exclude_categories=()), max_size=20)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    path=st.sampled_from(
        ["/v1/track", "/v1/t", "/v1/identify", "/v1/page", "/v1/batch", "/v1/b", "/v1/import", "/v1/nope"]
    ),
    key=st.sampled_from(["x-write-key", "authorization", "body", "none", "wrong"]),
    encoding=st.one_of(st.none(), st.just("gzip"), header_text),
    user_agent=st.one_of(st.none(), header_text),
)
def test_capture_answers_any_request_with_200_or_a_4xx_and_profiles_applies_what_it_accepted(
    capture, profiles, body: bytes, path: str, key: str, encoding: str | None, user_agent: str | None
) -> None:
    recorded = RecordingPublisher()
    capture.publisher = recorded
    headers: dict[str, str] = {}
    if key == "x-write-key":
        headers["X-Write-Key"] = WRITE_KEY
    elif key == "authorization":
        headers["Authorization"] = basic(WRITE_KEY)
    elif key == "wrong":
        headers["X-Write-Key"] = "guess"
    elif key == "body" and body.startswith(b"{") and len(body) > 2:
        body = b'{"writeKey":"' + WRITE_KEY.encode() + b'",' + body[1:]
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip":
            body = gzip.compress(body)
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    response = call(capture, http_event("POST", path, body=body, headers=headers))
    status = response["statusCode"]
    assert status in (200, 400, 401), response
    event(str(status))
    if status != 200:
        assert recorded.events == []
        return
    assert recorded.events
    assert apply(profiles, [envelope_of(e) for e in recorded.events]) == {"batchItemFailures": []}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(properties=st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4))
def test_any_properties_capture_accepts_the_profiles_consumer_stores(
    capture, profiles, properties: dict[str, Any]
) -> None:
    recorded = RecordingPublisher()
    capture.publisher = recorded
    body = json.dumps(track(properties=properties, traits=properties)).encode()
    response = call(
        capture, http_event("POST", "/v1/identify", body=body, headers={"X-Write-Key": WRITE_KEY})
    )
    assert response["statusCode"] in (200, 400), response
    event(str(response["statusCode"]))
    if response["statusCode"] == 200:
        assert apply(profiles, [envelope_of(e) for e in recorded.events]) == {"batchItemFailures": []}
