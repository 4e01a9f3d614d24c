"""The Segment wire format at the edge: what is accepted, normalised, or refused and why."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kindling.kernel.errors import InvalidInput, PayloadTooLarge, Unauthorized
from kindling.tracking.segment import (
    MAX_EVENT_BYTES,
    CaptureRequest,
    accept,
    pixel_endpoint,
    pixel_request_body,
)

KEY = "wk-test-123456"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def request(endpoint: str, body: object, **kwargs: object) -> CaptureRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CaptureRequest(endpoint=endpoint, body=raw, **kwargs)  # type: ignore[arg-type]


def test_a_track_call_with_the_write_key_as_basic_username_is_accepted() -> None:
    [event] = accept(
        request(
            "track",
            {"userId": "u1", "event": "Demo Requested", "properties": {"plan": "pro"}},
            basic_username=KEY,
        ),
        write_key=KEY,
        now=NOW,
    )
    assert (event.type, event.user_id, event.event, event.properties) == (
        "track",
        "u1",
        "Demo Requested",
        {"plan": "pro"},
    )
    assert event.received_at == NOW


@pytest.mark.parametrize("where", ["basic_username", "header_write_key", "body"])
def test_the_write_key_may_come_from_any_place_segment_clients_put_it(where: str) -> None:
    body = {"anonymousId": "a1", "name": "Pricing"}
    kwargs = {}
    if where == "body":
        body["writeKey"] = KEY
    else:
        kwargs[where] = KEY
    assert len(accept(request("page", body, **kwargs), write_key=KEY, now=NOW)) == 1


@pytest.mark.parametrize("given_key", [None, "wrong-key"])
def test_a_missing_or_wrong_write_key_is_refused(given_key: str | None) -> None:
    with pytest.raises(Unauthorized):
        accept(
            request("track", {"userId": "u", "event": "x"}, basic_username=given_key), write_key=KEY, now=NOW
        )


@pytest.mark.parametrize(
    ("endpoint", "body", "problem"),
    [
        ("track", {"userId": "u1"}, "track needs a non-empty event name"),
        ("track", {"event": "Clicked"}, "needs a userId or an anonymousId"),
        ("group", {"userId": "u1"}, "group needs a groupId"),
        ("alias", {"userId": "u1"}, "alias needs both userId and previousId"),
        ("identify", {"userId": "u1", "traits": "not an object"}, "traits"),
        ("page", {"anonymousId": "a", "timestamp": "yesterday-ish"}, "timestamp"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_problem(endpoint: str, body: dict, problem: str) -> None:
    with pytest.raises(InvalidInput) as error:
        accept(request(endpoint, body, basic_username=KEY), write_key=KEY, now=NOW)
    assert problem in str(error.value)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        accept(request("track", b"{nope", basic_username=KEY), write_key=KEY, now=NOW)


def test_an_event_over_32_kb_is_refused() -> None:
    body = {"userId": "u1", "event": "Big", "properties": {"blob": "x" * MAX_EVENT_BYTES}}
    with pytest.raises(PayloadTooLarge, match="32 KB"):
        accept(request("track", body, basic_username=KEY), write_key=KEY, now=NOW)


def test_a_batch_over_500_kb_is_refused_as_a_whole() -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 20_000}} for _ in range(30)
    ]
    with pytest.raises(PayloadTooLarge, match="500 KB"):
        accept(request("batch", {"batch": batch}, basic_username=KEY), write_key=KEY, now=NOW)


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    with pytest.raises(PayloadTooLarge):
        accept(request("batch", bomb, basic_username=KEY, content_encoding="gzip"), write_key=KEY, now=NOW)


def test_a_gzipped_batch_is_accepted_with_its_shared_context_and_sent_at() -> None:
    payload = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}},
            {
                "type": "track",
                "userId": "u1",
                "event": "Webinar Registered",
                "context": {"page": {"path": "/w"}},
            },
        ],
        "context": {"library": {"name": "analytics-python"}},
        "writeKey": KEY,
    }
    events = accept(
        request("batch", gzip.compress(json.dumps(payload).encode()), content_encoding="gzip"),
        write_key=KEY,
        now=NOW,
    )
    assert [e.type for e in events] == ["identify", "track"]
    assert all(e.context["library"]["name"] == "analytics-python" for e in events)
    assert events[1].context["page"] == {"path": "/w"}


def test_one_bad_message_rejects_the_whole_batch_and_names_each_problem() -> None:
    payload = {"batch": [{"type": "track", "userId": "u"}, {"type": "page", "anonymousId": "a"}, "junk"]}
    with pytest.raises(InvalidInput) as error:
        accept(request("batch", payload, basic_username=KEY), write_key=KEY, now=NOW)
    assert error.value.problems == [
        "batch[0].track needs a non-empty event name",
        "batch[2]: each message must be a JSON object",
    ]


def test_the_endpoint_decides_the_type_of_a_single_message() -> None:
    [event] = accept(
        request("t", {"type": "page", "userId": "u", "event": "Clicked"}, basic_username=KEY),
        write_key=KEY,
        now=NOW,
    )
    assert event.type == "track"


def test_a_missing_message_id_is_derived_from_the_content_so_client_retries_dedup() -> None:
    body = {"userId": "u1", "event": "Clicked", "timestamp": "2026-11-25T11:00:00Z"}
    first = accept(request("track", body, basic_username=KEY), write_key=KEY, now=NOW)[0]
    retry = accept(request("track", body, basic_username=KEY), write_key=KEY, now=NOW + timedelta(seconds=5))[
        0
    ]
    other = accept(request("track", {**body, "event": "Other"}, basic_username=KEY), write_key=KEY, now=NOW)[
        0
    ]
    assert first.message_id == retry.message_id != other.message_id


def test_sent_at_corrects_a_device_clock_that_runs_wrong() -> None:
    body = {"anonymousId": "a", "originalTimestamp": "2020-01-01T00:00:00Z", "sentAt": "2020-01-01T00:00:10Z"}
    [event] = accept(request("page", body, basic_username=KEY), write_key=KEY, now=NOW)
    assert event.timestamp == NOW - timedelta(seconds=10)


def test_an_event_dated_in_the_future_is_dated_when_received() -> None:
    body = {"anonymousId": "a", "timestamp": "2030-01-01T00:00:00Z"}
    [event] = accept(request("page", body, basic_username=KEY), write_key=KEY, now=NOW)
    assert event.timestamp == NOW


def test_numeric_ids_are_accepted_as_strings() -> None:
    [event] = accept(request("identify", {"userId": 42}, basic_username=KEY), write_key=KEY, now=NOW)
    assert event.user_id == "42"


def test_bot_traffic_is_accepted_but_flagged() -> None:
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    chrome = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
    )
    from kindling.tracking.bots import is_bot

    events = [
        accept(
            request("page", {"anonymousId": "a", "context": {"userAgent": ua}}, basic_username=KEY),
            write_key=KEY,
            now=NOW,
            is_bot=is_bot,
        )[0]
        for ua in (googlebot, chrome)
    ]
    assert [e.bot for e in events] == [True, False]


def test_a_server_librarys_own_user_agent_is_not_taken_for_the_visitors() -> None:
    [event] = accept(
        request(
            "track", {"userId": "u", "event": "E"}, basic_username=KEY, user_agent="python-requests/2.32"
        ),
        write_key=KEY,
        now=NOW,
        is_bot=lambda ua: True,
    )
    assert not event.bot and "userAgent" not in event.context


def test_the_pixel_takes_segment_base64_data_or_flat_parameters() -> None:
    data = base64.urlsafe_b64encode(
        json.dumps({"type": "track", "event": "Email Opened", "userId": "u"}).encode()
    )
    from_data = json.loads(pixel_request_body({"data": data.decode().rstrip("=")}))
    flat = json.loads(
        pixel_request_body({"event": "Email Opened", "userId": "u", "properties.email_id": "e1"})
    )
    assert from_data == {"type": "track", "event": "Email Opened", "userId": "u"}
    assert flat == {"type": "track", "event": "Email Opened", "userId": "u", "properties": {"email_id": "e1"}}
    assert pixel_endpoint(json.dumps(flat).encode()) == "track"


def test_the_pixel_refuses_a_type_it_cannot_carry() -> None:
    with pytest.raises(InvalidInput, match="type"):
        pixel_endpoint(pixel_request_body({"type": "batch"}))


@given(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=8
    )
)
def test_any_json_object_is_either_accepted_or_refused_with_a_named_problem(body: dict) -> None:
    try:
        events = accept(request("track", body, basic_username=KEY), write_key=KEY, now=NOW)
    except InvalidInput as error:
        assert error.problems and all(p.strip() for p in error.problems)
    else:
        assert len(events) == 1 and events[0].event
