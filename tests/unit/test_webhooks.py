"""Standard Webhooks signing: what receiver libraries accept from us, what we refuse, delivery outcomes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from kindling.kernel.errors import InvalidInput, Retryable, Unauthorized
from kindling.webhooks.standard import (
    OutboundWebhook,
    WebhookSecret,
    deliver,
    sign,
    verify,
)
from tests.fakes import FakeTransport

# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = WebhookSecret(SPEC_SECRET)
OTHER_SECRET = WebhookSecret("whsec_" + base64.b64encode(b"another-key-of-24-bytes!").decode())
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
BODY = b'{"lead":{"email":"ada@example.com","score":42}}'
TOKEN_URL = "https://hooks.example.com/catch/123/s3cr3t-token"


def signed(body: bytes = BODY, at: datetime = NOW, message_id: str = "msg_1") -> dict[str, str]:
    return sign(SECRET, message_id, at, body)


# --- interoperability ------------------------------------------------------------------------


def test_signing_reproduces_the_specifications_published_test_vector() -> None:
    headers = sign(SECRET, SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
        "content-type": "application/json",
    }


def test_the_specifications_published_test_vector_verifies() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verify(SECRET, headers, SPEC_BODY, now=datetime.fromtimestamp(SPEC_TIMESTAMP, UTC))


def test_what_we_sign_verifies_with_the_standardwebhooks_library() -> None:
    # The library only checks against the wall clock, so sign with it.
    headers = sign(SECRET, "msg_interop", datetime.now(UTC), BODY)
    assert Webhook(SPEC_SECRET).verify(BODY, headers) == json.loads(BODY)


def test_what_the_standardwebhooks_library_signs_verifies_with_ours() -> None:
    library = Webhook(SPEC_SECRET)
    signature = library.sign("msg_from_library", NOW, BODY.decode())
    headers = {
        "webhook-id": "msg_from_library",
        "webhook-timestamp": str(int(NOW.timestamp())),
        "webhook-signature": signature,
    }
    verify(SECRET, headers, BODY, now=NOW)


def test_a_signature_made_with_a_different_secret_fails_the_library_too() -> None:
    headers = sign(OTHER_SECRET, "msg_interop", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SPEC_SECRET).verify(BODY, headers)


@settings(max_examples=50, deadline=None)
@given(
    message_id=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
    ),
    payload=st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20)), max_size=5),
)
def test_any_id_and_json_payload_round_trips_through_both_implementations(
    message_id: str, payload: dict[str, object]
) -> None:
    body = OutboundWebhook(id=message_id, url=TOKEN_URL, payload=payload).body()
    now = datetime.now(UTC)
    headers = sign(SECRET, message_id, now, body)
    verify(SECRET, headers, body, now=now)
    assert Webhook(SPEC_SECRET).verify(body, headers) == payload


# --- secrets ---------------------------------------------------------------------------------


def test_a_secret_without_the_whsec_prefix_is_the_same_key_as_the_library_reads_it() -> None:
    bare = WebhookSecret(SPEC_SECRET.removeprefix("whsec_"))
    assert bare == SECRET
    headers = sign(bare, "msg_bare", datetime.now(UTC), BODY)
    Webhook(SPEC_SECRET.removeprefix("whsec_")).verify(BODY, headers)


def test_a_secret_read_with_a_trailing_newline_still_parses() -> None:
    assert WebhookSecret(SPEC_SECRET + "\n") == SECRET


@pytest.mark.parametrize("key", [b"0123456789abcdefghij", b"0123456789abcdefghijkl"])
def test_unpadded_base64_parses_like_the_library_pads_it(key: bytes) -> None:
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    assert WebhookSecret("whsec_" + padded.rstrip("=")).key == key
    assert Webhook("whsec_" + padded.rstrip("=")).sign("m", NOW, "{}") == Webhook(padded).sign("m", NOW, "{}")


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [
        ("", "empty"),
        ("whsec_", "empty"),
        ("   ", "empty"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw", "base64"),  # url-safe alphabet
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", "base64"),
        ("whsec_a", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "16-64 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "16-64 bytes"),
    ],
)
def test_a_malformed_secret_is_refused_without_echoing_it(secret: str, complaint: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        WebhookSecret(secret)
    assert complaint in str(refused.value)
    if len(secret) > 12:
        assert secret.removeprefix("whsec_") not in str(refused.value)


def test_a_secret_never_shows_itself_in_repr_or_str() -> None:
    for shown in (repr(SECRET), str(SECRET), f"{SECRET}", repr([SECRET])):
        assert "MfKQ9r8" not in shown
        assert "redacted" in shown


def test_a_generated_secret_reveals_a_whsec_string_the_library_accepts() -> None:
    secret = WebhookSecret.generate()
    revealed = secret.reveal()
    assert revealed.startswith("whsec_")
    assert WebhookSecret(revealed) == secret
    assert secret != WebhookSecret.generate()
    headers = sign(secret, "msg_generated", datetime.now(UTC), BODY)
    Webhook(revealed).verify(BODY, headers)


# --- sign ------------------------------------------------------------------------------------


def test_the_timestamp_header_is_whole_unix_seconds_whatever_the_offset() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert signed(at=paris + timedelta(milliseconds=999))["webhook-timestamp"] == str(int(NOW.timestamp()))


def test_signing_refuses_a_time_without_an_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        signed(at=NOW.replace(tzinfo=None))


@pytest.mark.parametrize("message_id", ["", "has space", "line\nbreak", "ünïcode", "x" * 257])
def test_signing_refuses_an_id_that_cannot_travel_in_a_header(message_id: str) -> None:
    with pytest.raises(InvalidInput):
        signed(message_id=message_id)


# --- verify ----------------------------------------------------------------------------------


def test_a_request_we_signed_verifies() -> None:
    verify(SECRET, signed(), BODY, now=NOW)


def test_header_names_are_matched_whatever_their_case() -> None:
    headers = {name.title(): value for name, value in signed().items()}
    verify(SECRET, headers, BODY, now=NOW)


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, signed(), BODY.replace(b"42", b"43"), now=NOW)


def test_a_swapped_webhook_id_is_refused() -> None:
    headers = signed() | {"webhook-id": "msg_2"}
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, headers, BODY, now=NOW)


def test_a_request_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(Unauthorized, match="signature"):
        verify(OTHER_SECRET, signed(), BODY, now=NOW)


def test_a_rewritten_timestamp_is_refused_even_inside_the_window() -> None:
    headers = signed() | {"webhook-timestamp": str(int(NOW.timestamp()) + 1)}
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "complaint"),
    [(NOW - timedelta(minutes=5, seconds=1), "too old"), (NOW + timedelta(minutes=5, seconds=1), "future")],
)
def test_a_request_signed_outside_the_tolerance_is_refused(signed_at: datetime, complaint: str) -> None:
    with pytest.raises(Unauthorized, match=complaint):
        verify(SECRET, signed(at=signed_at), BODY, now=NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=-5), timedelta(minutes=5)])
def test_a_request_signed_exactly_at_the_tolerance_edge_passes(offset: timedelta) -> None:
    verify(SECRET, signed(at=NOW + offset), BODY, now=NOW)


def test_the_tolerance_can_be_narrowed() -> None:
    with pytest.raises(Unauthorized, match="too old"):
        verify(SECRET, signed(at=NOW - timedelta(seconds=31)), BODY, now=NOW, tolerance=timedelta(seconds=30))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_by_name(missing: str) -> None:
    headers = {name: value for name, value in signed().items() if name != missing}
    with pytest.raises(Unauthorized, match=missing):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_an_empty_header_counts_as_missing(missing: str) -> None:
    with pytest.raises(Unauthorized, match=missing):
        verify(SECRET, signed() | {missing: " "}, BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["1764063000.5", "-1764063000", "soon", "1e9", "١٧٦٤٠٦٣٠٠٠", "9" * 40])
def test_a_timestamp_that_is_not_whole_unix_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(Unauthorized, match="timestamp"):
        verify(SECRET, signed() | {"webhook-timestamp": timestamp}, BODY, now=NOW)


def test_one_valid_signature_among_several_passes() -> None:
    good = signed()["webhook-signature"]
    stale = sign(OTHER_SECRET, "msg_1", NOW, BODY)["webhook-signature"]
    for header in (f"{stale} {good}", f"{good} {stale}", f"  {stale}   {good}  "):
        verify(SECRET, signed() | {"webhook-signature": header}, BODY, now=NOW)


def test_unknown_versions_and_garbage_entries_are_skipped_not_fatal() -> None:
    good = signed()["webhook-signature"]
    noise = "v1a,c29tZXRoaW5n v2,abc v1, v1,not*base64 nocomma v1,YWJj,extra"
    verify(SECRET, signed() | {"webhook-signature": f"{noise} {good}"}, BODY, now=NOW)


def test_the_right_signature_under_another_version_label_is_refused() -> None:
    digest = signed()["webhook-signature"].removeprefix("v1,")
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, signed() | {"webhook-signature": f"v1a,{digest} v2,{digest}"}, BODY, now=NOW)


def test_a_header_of_only_garbage_is_refused() -> None:
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, signed() | {"webhook-signature": "v1,=== ,,, v1"}, BODY, now=NOW)


def test_a_truncated_signature_is_refused() -> None:
    good = signed()["webhook-signature"]
    truncated = "v1," + base64.b64encode(base64.b64decode(good[3:])[:16]).decode()
    with pytest.raises(Unauthorized, match="signature"):
        verify(SECRET, signed() | {"webhook-signature": truncated}, BODY, now=NOW)


# --- the outbound webhook --------------------------------------------------------------------


def test_the_body_is_compact_utf8_json_in_the_payloads_order() -> None:
    webhook = OutboundWebhook(id="lead-1", url=TOKEN_URL, payload={"z": 1, "a": {"name": "Zoë"}, "n": [1, 2]})
    assert webhook.body() == '{"z":1,"a":{"name":"Zoë"},"n":[1,2]}'.encode()
    assert webhook.body() == webhook.body()


@pytest.mark.parametrize("payload", [{"at": NOW}, {"score": float("nan")}, {"raw": b"bytes"}])
def test_a_payload_that_is_not_plain_json_is_refused_when_the_webhook_is_built(
    payload: dict[str, object],
) -> None:
    with pytest.raises(ValidationError, match="plain JSON"):
        OutboundWebhook(id="lead-1", url=TOKEN_URL, payload=payload)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "example.com/hook", "https://", "http:///x"]
)
def test_a_webhook_url_must_be_absolute_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        OutboundWebhook(id="lead-1", url=url, payload={})


@pytest.mark.parametrize("webhook_id", ["", "two words", "x" * 257])
def test_a_webhook_id_must_be_able_to_travel_in_a_header(webhook_id: str) -> None:
    with pytest.raises(ValidationError):
        OutboundWebhook(id=webhook_id, url=TOKEN_URL, payload={})


# --- deliver ---------------------------------------------------------------------------------


WEBHOOK = OutboundWebhook(id="handoff-lead-42", url=TOKEN_URL, payload={"lead": {"email": "ada@example.com"}})


def test_a_delivery_posts_the_body_signed_with_now_to_the_url() -> None:
    transport = FakeTransport([200])
    assert deliver(WEBHOOK, SECRET, transport, now=NOW) == 200
    [post] = transport.posts
    assert (post.url, post.body) == (TOKEN_URL, WEBHOOK.body())
    assert post.headers["webhook-id"] == "handoff-lead-42"
    assert post.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert post.headers["content-type"] == "application/json"
    assert post.timeout > 0
    verify(SECRET, post.headers, post.body, now=NOW)


def test_a_delivery_made_now_verifies_with_the_standardwebhooks_library() -> None:
    transport = FakeTransport([204])
    deliver(WEBHOOK, SECRET, transport, now=datetime.now(UTC))
    [post] = transport.posts
    assert Webhook(SPEC_SECRET).verify(post.body, post.headers) == WEBHOOK.payload


def test_a_retry_keeps_the_webhook_id_and_signs_a_fresh_timestamp() -> None:
    transport = FakeTransport([503, Retryable("timed out"), 200])
    attempts = [NOW, NOW + timedelta(minutes=1), NOW + timedelta(hours=2)]
    for attempt in attempts[:2]:
        with pytest.raises(Retryable):
            deliver(WEBHOOK, SECRET, transport, now=attempt)
    assert deliver(WEBHOOK, SECRET, transport, now=attempts[2]) == 200

    assert {post.headers["webhook-id"] for post in transport.posts} == {"handoff-lead-42"}
    assert {post.body for post in transport.posts} == {WEBHOOK.body()}
    assert [post.headers["webhook-timestamp"] for post in transport.posts] == [
        str(int(attempt.timestamp())) for attempt in attempts
    ]
    for post, attempt in zip(transport.posts, attempts, strict=True):
        verify(SECRET, post.headers, post.body, now=attempt)
    # An old attempt's headers are no use to a replayer hours later.
    with pytest.raises(Unauthorized, match="too old"):
        verify(SECRET, transport.posts[0].headers, transport.posts[0].body, now=attempts[2])


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_a_delivery(status: int) -> None:
    assert deliver(WEBHOOK, SECRET, FakeTransport([status]), now=NOW) == status


def test_410_gone_means_stop_sending() -> None:
    with pytest.raises(InvalidInput, match="410 Gone"):
        deliver(WEBHOOK, SECRET, FakeTransport([410]), now=NOW)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 422])
def test_other_client_errors_are_permanent_and_name_the_status(status: int) -> None:
    with pytest.raises(InvalidInput, match=str(status)) as refused:
        deliver(WEBHOOK, SECRET, FakeTransport([status]), now=NOW)
    assert not isinstance(refused.value, Retryable)


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 599])
def test_timeouts_throttling_and_server_errors_are_retryable_and_name_the_status(status: int) -> None:
    with pytest.raises(Retryable, match=str(status)):
        deliver(WEBHOOK, SECRET, FakeTransport([status]), now=NOW)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_misconfigured_url_not_a_delivery(status: int) -> None:
    with pytest.raises(InvalidInput, match="redirect"):
        deliver(WEBHOOK, SECRET, FakeTransport([status]), now=NOW)


def test_a_transport_failure_surfaces_as_retryable() -> None:
    with pytest.raises(Retryable):
        deliver(WEBHOOK, SECRET, FakeTransport([Retryable("connection refused")]), now=NOW)


@pytest.mark.parametrize("status", [400, 410, 429, 503, 302])
def test_delivery_errors_name_the_webhook_but_never_the_secret_body_or_url(status: int) -> None:
    with pytest.raises((InvalidInput, Retryable)) as failed:
        deliver(WEBHOOK, SECRET, FakeTransport([status]), now=NOW)
    message = str(failed.value)
    assert "handoff-lead-42" in message
    for leak in ("MfKQ9r8", "ada@example.com", "s3cr3t-token", "hooks.example.com"):
        assert leak not in message


# --- CRM credentials, as the CRM webhooks secret holds them ---------------------------------------


def test_crm_credentials_read_every_field_and_default_the_missing_ones_to_off() -> None:
    from kindling.kernel.secrets import CrmCredentials, StaticSecret

    credentials = CrmCredentials.from_secret(StaticSecret('{"pipedrive_user": "hooks", "unknown": 1}'))
    assert credentials.pipedrive_user == "hooks"
    assert credentials.hubspot_client_secret.get_secret_value() == ""
    assert "hooks" not in repr(StaticSecret("hooks"))


@pytest.mark.parametrize(
    ("value", "named"),
    [("[1, 2]", "must be a JSON object"), ('{"webhook_secret": 5}', "webhook_secret"), ("x=1", "not JSON")],
)
def test_crm_credentials_that_cannot_be_read_name_the_problem_not_the_value(value: str, named: str) -> None:
    from kindling.kernel.errors import InvalidInput
    from kindling.kernel.secrets import CrmCredentials, StaticSecret

    with pytest.raises(InvalidInput) as error:
        CrmCredentials.from_secret(StaticSecret(value))
    assert named in str(error.value)
