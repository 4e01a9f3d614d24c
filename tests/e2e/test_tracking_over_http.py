"""A website tag, a server library and an operator, driving the local stack over HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from segment.analytics import Client

from tests.e2e.conftest import ALLOWED_ORIGIN, WRITE_KEY, RunningStack

pytestmark = pytest.mark.e2e


def unique_email() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}@acme.io"


def test_the_official_segment_python_client_works_unchanged(stack: RunningStack) -> None:
    email = unique_email()
    errors: list[Exception] = []
    client = Client(
        WRITE_KEY, host=stack.url, sync_mode=True, gzip=True, on_error=lambda e, b: errors.append(e)
    )
    client.identify("user-42", {"email": email, "title": "Head of Growth", "company": "Acme"})
    client.track("user-42", "Demo Requested", {"source": "pricing"})
    client.page("user-42", "Docs", "Quickstart", {"url": "https://acme.io/docs"})
    client.flush()
    assert errors == []
    stack.settle()
    response = stack.lead_by_email(email.upper())
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["lead"]["user_id"] == "user-42"
    assert view["lead"]["traits"]["title"] == "Head of Growth"
    assert sorted(e["type"] for e in view["timeline"]) == ["identify", "page", "track"]


def test_a_browser_tag_sends_text_plain_beacons_from_an_allowed_origin(stack: RunningStack) -> None:
    anonymous_id = str(uuid.uuid4())
    preflight = requests.options(
        f"{stack.url}/v1/t",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    body = json.dumps({"anonymousId": anonymous_id, "event": "Pricing Viewed", "writeKey": WRITE_KEY})
    response = requests.post(
        f"{stack.url}/v1/t",
        data=body,
        headers={"Content-Type": "text/plain", "Origin": ALLOWED_ORIGIN},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    other = requests.post(
        f"{stack.url}/v1/t",
        data=body,
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_segments_loader_gets_settings_that_send_its_events_to_the_stack(stack: RunningStack) -> None:
    """analytics-next with ``cdnURL`` = the stack: the settings first, then events where they point."""
    response = requests.get(
        f"{stack.url}/v1/projects/{WRITE_KEY}/settings", headers={"Origin": ALLOWED_ORIGIN}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert response.headers["Cache-Control"] == "public, max-age=300"
    segmentio = response.json()["integrations"]["Segment.io"]
    assert segmentio["apiKey"] == WRITE_KEY
    assert segmentio["apiHost"] == f"{urlsplit(stack.url).netloc}/v1" and segmentio["protocol"] == "http"

    # What the loader then sends: text/plain, the write key in the body, to <protocol>://<apiHost>/t.
    anonymous_id = str(uuid.uuid4())
    body = {"type": "track", "event": "Loader Works", "anonymousId": anonymous_id, "writeKey": WRITE_KEY}
    sent = requests.post(
        f"{segmentio['protocol']}://{segmentio['apiHost']}/t",
        data=json.dumps(body),
        headers={"Content-Type": "text/plain", "Origin": ALLOWED_ORIGIN},
        timeout=10,
    )
    assert sent.status_code == 200, sent.text

    unknown = requests.get(f"{stack.url}/v1/projects/not-our-key/settings", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "message": "no source has this write key"}


def test_preflights_allow_the_headers_segment_and_rudderstack_browsers_send(stack: RunningStack) -> None:
    asked = {
        "/v1/t": "content-type,x-retry-count",
        "/v1/batch": "anonymousid,authorization,content-type,rsa-retry-attempt,rsa-retry-reason,"
        "rsa-since-last-attempt,sentat",
    }
    for path, request_headers in asked.items():
        for origin in (ALLOWED_ORIGIN, "https://evil.example"):
            preflight = requests.options(
                f"{stack.url}{path}",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": request_headers,
                },
                timeout=10,
            )
            allowed = {
                h.strip().lower()
                for h in preflight.headers.get("Access-Control-Allow-Headers", "").split(",")
            }
            if origin == ALLOWED_ORIGIN:
                assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
                assert set(request_headers.split(",")) <= allowed
            else:
                assert "Access-Control-Allow-Origin" not in preflight.headers


def test_an_anonymous_visitor_who_identifies_is_one_lead_with_their_history(stack: RunningStack) -> None:
    anonymous_id, email = str(uuid.uuid4()), unique_email()
    auth = (WRITE_KEY, "")
    for path in ("/pricing", "/case-studies"):
        body = {"anonymousId": anonymous_id, "name": path, "properties": {"path": path}}
        assert requests.post(f"{stack.url}/v1/page", json=body, auth=auth, timeout=10).status_code == 200
    stack.settle()
    identify = {"anonymousId": anonymous_id, "traits": {"email": email, "firstName": "Ada"}}
    assert requests.post(f"{stack.url}/v1/identify", json=identify, auth=auth, timeout=10).status_code == 200
    stack.settle()
    view = stack.lead_by_email(email).json()
    assert [e["name"] for e in view["timeline"] if e["type"] == "page"] == ["/case-studies", "/pricing"]
    assert view["lead"]["anonymous_ids"] == [anonymous_id]
    again = requests.get(f"{stack.url}/v1/leads/{view['lead']['lead_id']}", headers=stack.admin(), timeout=10)
    assert again.json()["lead"]["email"] == email


def test_the_same_message_id_twice_is_stored_once(stack: RunningStack) -> None:
    email, message_id = unique_email(), str(uuid.uuid4())
    body = {"userId": f"u-{message_id}", "messageId": message_id, "traits": {"email": email}}
    for _ in range(2):
        assert requests.post(f"{stack.url}/v1/identify", json=body, auth=(WRITE_KEY, ""), timeout=10).ok
    stack.settle()
    assert len(stack.lead_by_email(email).json()["timeline"]) == 1


def test_many_concurrent_events_for_one_lead_lose_nothing(stack: RunningStack) -> None:
    email, user_id = unique_email(), f"u-{uuid.uuid4().hex[:8]}"
    bodies = [{"userId": user_id, "traits": {"email": email, f"trait_{i}": i}} for i in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda b: (
                    requests.post(
                        f"{stack.url}/v1/identify", json=b, auth=(WRITE_KEY, ""), timeout=30
                    ).status_code
                ),
                bodies,
            )
        )
    assert statuses == [200] * 20
    stack.settle()
    view = stack.lead_by_email(email).json()
    assert len(view["timeline"]) == 20
    assert all(view["lead"]["traits"][f"trait_{i}"] == i for i in range(20))


def test_gzip_batches_and_the_short_paths_are_accepted(stack: RunningStack) -> None:
    email = unique_email()
    batch = {
        "batch": [
            {"type": "identify", "userId": email, "traits": {"email": email}},
            {"type": "track", "userId": email, "event": "Whitepaper Downloaded"},
        ]
    }
    response = requests.post(
        f"{stack.url}/v1/b",
        data=gzip.compress(json.dumps(batch).encode()),
        headers={"Content-Encoding": "gzip", "X-Write-Key": WRITE_KEY, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    stack.settle()
    assert len(stack.lead_by_email(email).json()["timeline"]) == 2


def test_the_pixel_records_an_event_and_answers_a_gif(stack: RunningStack) -> None:
    email = unique_email()
    data = base64.urlsafe_b64encode(
        json.dumps(
            {"type": "identify", "userId": email, "traits": {"email": email}, "writeKey": WRITE_KEY}
        ).encode()
    ).decode()
    response = requests.get(f"{stack.url}/v1/pixel.gif", params={"data": data}, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    stack.settle()
    assert stack.lead_by_email(email).status_code == 200


@pytest.mark.parametrize(
    ("body", "auth", "status", "says"),
    [
        ({"userId": "u", "event": "x"}, ("wrong", ""), 401, "invalid write key"),
        ({"userId": "u"}, (WRITE_KEY, ""), 400, "track needs a non-empty event name"),
        ({"userId": "u", "event": "x", "properties": {"blob": "x" * 40_000}}, (WRITE_KEY, ""), 400, "32 KB"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    stack: RunningStack, body: dict, auth: tuple, status: int, says: str
) -> None:
    response = requests.post(f"{stack.url}/v1/track", json=body, auth=auth, timeout=10)
    assert response.status_code == status
    assert says in response.text


def test_the_admin_api_refuses_callers_without_the_token(stack: RunningStack) -> None:
    assert requests.get(f"{stack.url}/v1/leads", params={"email": "a@b.io"}, timeout=10).status_code == 401
    missing = requests.get(f"{stack.url}/v1/leads/ld_missing", headers=stack.admin(), timeout=10)
    assert missing.status_code == 404


def test_the_clock_moves_forward_on_request_and_refuses_nonsense(stack: RunningStack) -> None:
    before = requests.get(f"{stack.url}/_local/clock", timeout=10).json()["now"]
    after = stack.advance(3 * 86400)["now"]
    assert after[:10] > before[:10]
    bad = requests.post(f"{stack.url}/_local/clock", json={"advance_seconds": "soon"}, timeout=10)
    assert bad.status_code == 400
    back = requests.post(f"{stack.url}/_local/clock", json={"now": "2001-01-01T00:00:00Z"}, timeout=10)
    assert back.status_code == 400 and "forward" in back.text
