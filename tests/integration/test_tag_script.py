"""GET /v1/tag.js from the capture function: type, caching, validators, compression and CORS."""

from __future__ import annotations

import base64
import gzip

import pytest

from kindling.tracking import website_tag
from tests.integration.events import Context, http_event

# A script request records no metric, so Powertools says it has none to publish.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def capture(load_handler):
    # Only the one origin may send events; the script itself is public all the same.
    return load_handler(
        "capture",
        PROFILES_QUEUE_URL="unused",
        secrets={"WRITE_KEY_SECRET_ARN": "wk-0123456789"},
        ALLOWED_ORIGINS="https://a.io",
        POWERTOOLS_METRICS_DISABLED="true",
    )


def get(capture, **headers: str) -> dict:
    return capture.lambda_handler(http_event("GET", "/v1/tag.js", headers=headers), Context())


def test_the_script_is_served_as_javascript_with_short_public_caching(capture) -> None:
    response = get(capture, Origin="https://elsewhere.example")
    headers = response["headers"]
    assert response["statusCode"] == 200
    assert headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers["ETag"] == website_tag.script().etag
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert response["body"] == website_tag.script().body


def test_the_script_is_gzipped_for_clients_that_accept_it(capture) -> None:
    response = get(capture, **{"Accept-Encoding": "gzip, deflate, br"})
    assert response["headers"]["Content-Encoding"] == "gzip"
    assert response["headers"]["Vary"] == "Accept-Encoding"
    assert response["isBase64Encoded"]
    body = base64.b64decode(response["body"])
    assert gzip.decompress(body).decode() == website_tag.script().body


def test_a_cached_copy_is_revalidated_with_a_304(capture) -> None:
    etag = get(capture)["headers"]["ETag"]
    response = get(capture, **{"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert response["statusCode"] == 304
    assert not response.get("body")
    assert response["headers"]["ETag"] == etag
    assert response["headers"]["Cache-Control"] == "public, max-age=300"
    assert get(capture, **{"If-None-Match": 'W/"stale"'})["statusCode"] == 200
