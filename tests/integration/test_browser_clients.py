"""What browser SDKs need from the capture function: preflights that allow their headers, and the
settings Segment's loader fetches before it sends anything."""

from __future__ import annotations

import json

import pytest

from tests.integration.events import Context, http_event

# A preflight or a settings request records no metric, so Powertools says it has none to publish.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

WRITE_KEY = "wk-browser-0123456789"
SITE = "https://www.acme.io"
API_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"


@pytest.fixture
def capture(load_handler, moto_endpoint: str):
    return load_handler(
        "capture",
        PROFILES_QUEUE_URL="unused",
        secrets={"WRITE_KEY_SECRET_ARN": WRITE_KEY},
        ALLOWED_ORIGINS=f"{SITE}, https://app.acme.io",
        POWERTOOLS_METRICS_DISABLED="true",
    )


def preflight(capture, path: str, origin: str, request_headers: str) -> dict:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": request_headers,
    }
    return capture.lambda_handler(http_event("OPTIONS", path, headers=headers), Context())


def allowed_headers(response: dict) -> set[str]:
    value = response["headers"].get("Access-Control-Allow-Headers", "")
    return {name.strip().lower() for name in value.split(",") if name.strip()}


@pytest.mark.parametrize(
    ("path", "request_headers"),
    [
        # Segment's analytics-next, retrying a text/plain beacon.
        ("/v1/t", "content-type,x-retry-count"),
        # RudderStack's JS SDK v3, first send and a retry (browsers send the names lower-cased, sorted).
        ("/v1/batch", "anonymousid,authorization,content-type,sentat"),
        (
            "/v1/batch",
            "anonymousid,authorization,content-type,rsa-retry-attempt,rsa-retry-reason,"
            "rsa-since-last-attempt,sentat",
        ),
    ],
)
def test_a_preflight_from_an_allowed_origin_allows_the_headers_the_sdk_sends(
    capture, path: str, request_headers: str
) -> None:
    response = preflight(capture, path, SITE, request_headers)
    assert response["statusCode"] == 204
    headers = response["headers"]
    assert headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in headers["Access-Control-Allow-Methods"].split(",")
    assert set(request_headers.split(",")) <= allowed_headers(response)
    # Still allowed besides: what kindling's own clients send.
    assert {"content-type", "content-encoding", "authorization", "x-write-key"} <= allowed_headers(response)
    # Nothing is exposed to scripts, and no credentials are allowed.
    assert "Access-Control-Expose-Headers" not in headers
    assert "Access-Control-Allow-Credentials" not in headers


def test_a_preflight_from_another_origin_is_not_allowed(capture) -> None:
    response = preflight(capture, "/v1/t", "https://evil.example", "content-type,x-retry-count")
    assert "Access-Control-Allow-Origin" not in response["headers"]
    assert "Access-Control-Allow-Headers" not in response["headers"]


@pytest.mark.parametrize(
    "request_headers",
    [
        "x-retry-count,x evil",  # not a header name
        "x-retry-count,x-a\r\nset-cookie: a=b",
        ",".join(f"x-h{i}" for i in range(60)),  # too many
        "x-" + "a" * 3000,  # too long
    ],
)
def test_a_preflight_asking_for_anything_but_a_short_list_of_header_names_gets_the_fixed_list(
    capture, request_headers: str
) -> None:
    response = preflight(capture, "/v1/t", SITE, request_headers)
    assert response["headers"]["Access-Control-Allow-Origin"] == SITE
    assert allowed_headers(response) == {
        "authorization",
        "content-encoding",
        "content-type",
        "x-amz-date",
        "x-amz-security-token",
        "x-api-key",
        "x-write-key",
    }


def get_settings(capture, write_key: str, domain: str = API_DOMAIN, origin: str = SITE) -> dict:
    event = http_event(
        "GET",
        f"/v1/projects/{write_key}/settings",
        headers={"Origin": origin, "Host": domain},
        path_parameters={"write_key": write_key},
        route="/v1/projects/{write_key}/settings",
        domain_name=domain,
    )
    return capture.lambda_handler(event, Context())


def test_the_loader_gets_settings_that_send_its_events_here(capture) -> None:
    response = get_settings(capture, WRITE_KEY)
    assert response["statusCode"] == 200, response["body"]
    headers = response["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers["Access-Control-Allow-Origin"] == SITE and headers["Vary"] == "Origin"
    document = json.loads(response["body"])
    segmentio = document["integrations"]["Segment.io"]
    assert segmentio["apiKey"] == WRITE_KEY
    # analytics-next posts to https://<apiHost>/t, /p, /i, ... and batches to /b: kindling's /v1/<x>.
    assert segmentio["apiHost"] == f"{API_DOMAIN}/v1" and segmentio["protocol"] == "https"
    assert list(document["integrations"]) == ["Segment.io"], "no device-mode integrations to load"
    assert segmentio["versionSettings"]["componentTypes"] == ["browser"]
    assert document["plan"]["track"]["__default"] == {"enabled": True, "integrations": {}}
    assert document["analyticsNextEnabled"] is True
    assert document["remotePlugins"] == [] and document["enabledMiddleware"] == {}
    assert document["metrics"]["sampleRate"] == 0, "the loader reports nothing to Segment"


def test_on_the_local_stack_the_loader_is_told_plain_http(capture) -> None:
    segmentio = json.loads(get_settings(capture, WRITE_KEY, domain="127.0.0.1:3000")["body"])["integrations"][
        "Segment.io"
    ]
    assert segmentio["apiHost"] == "127.0.0.1:3000/v1" and segmentio["protocol"] == "http"


def test_settings_for_another_write_key_are_a_404_that_names_the_problem(capture) -> None:
    response = get_settings(capture, "wk-someone-else")
    assert response["statusCode"] == 404
    assert response["headers"]["Access-Control-Allow-Origin"] == SITE
    body = json.loads(response["body"])
    assert body == {"error": "not_found", "message": "no source has this write key"}
    assert "wk-someone-else" not in response["body"] and WRITE_KEY not in response["body"]


def test_settings_are_not_shared_with_other_origins(capture) -> None:
    response = get_settings(capture, WRITE_KEY, origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response["headers"]
