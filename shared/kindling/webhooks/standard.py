"""Signed webhooks in the Standard Webhooks format (https://www.standardwebhooks.com/).

Leads are handed to sales, and later program steps notify them, by POSTing JSON to a URL
the customer owns. The receiver must be able to tell the request came from us, was not
altered, and is not a replay, using any Standard Webhooks library: hence the three
``webhook-*`` headers and an HMAC-SHA256 over ``{id}.{timestamp}.{body}``. ``verify`` is
the same check in reverse, for CRMs that call us the same way.

Secrets are ``whsec_`` + base64 of the key bytes, as the reference libraries expect. This
module only computes; the HTTP call goes through a ``WebhookTransport`` (see
``kindling.adapters.webhook_transport``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kindling.kernel.errors import InvalidInput, Retryable, Unauthorized

SECRET_PREFIX = "whsec_"
#: The spec recommends 24 to 64 random bytes; anything under 16 is a typo or a toy.
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
GENERATED_KEY_BYTES = 32
DEFAULT_TOLERANCE = timedelta(minutes=5)
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE_ID_LENGTH = 256

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"

#: Visible ASCII only: the id goes into a header and into the signed content verbatim.
_MESSAGE_ID = re.compile(r"[!-~]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
#: Unix seconds as a plain integer; the length cap keeps ``int()`` and the arithmetic cheap.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

#: Client errors that mean "not now" rather than "never".
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 425, 429})
GONE = 410


class WebhookSecret:
    """A signing key that never shows itself in messages, reprs or logs.

    Accepts ``whsec_<base64>`` and, like the ``standardwebhooks`` library, the bare
    base64 without the prefix (the same key either way). Unlike that library it refuses
    characters outside the base64 alphabet instead of silently dropping them, which
    would sign with a different key than the receiver holds.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = _decode_secret(secret)

    @classmethod
    def generate(cls) -> WebhookSecret:
        return cls(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode())

    @property
    def key(self) -> bytes:
        return self._key

    def reveal(self) -> str:
        """The ``whsec_`` form, for handing to the receiver once; the name makes call sites easy to audit."""
        return SECRET_PREFIX + base64.b64encode(self._key).decode()

    def __repr__(self) -> str:
        return "WebhookSecret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebhookSecret):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)


def _decode_secret(secret: str) -> bytes:
    if not isinstance(secret, str):
        raise InvalidInput("a webhook secret must be a string like 'whsec_<base64>'")
    encoded = secret.strip()
    encoded = encoded.removeprefix(SECRET_PREFIX)
    if not encoded:
        raise InvalidInput("the webhook secret is empty: expected 'whsec_' followed by base64")
    padded = encoded + "=" * (-len(encoded) % 4)
    if not _BASE64.fullmatch(padded):
        raise InvalidInput(
            "the webhook secret is not valid base64 after 'whsec_' (standard alphabet A-Z a-z 0-9 + /)"
        )
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("the webhook secret is not valid base64 after 'whsec_'") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidInput(
            f"the webhook secret must decode to {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def _unix_seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
    return math.floor(moment.timestamp())


def _check_message_id(message_id: str) -> None:
    if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH or not _MESSAGE_ID.fullmatch(message_id):
        raise InvalidInput(
            f"a webhook id must be 1-{MAX_MESSAGE_ID_LENGTH} visible ASCII characters without spaces"
        )


def _signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> bytes:
    signed = message_id.encode("utf-8", "surrogatepass") + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: WebhookSecret, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The headers that make ``body`` verifiable by any Standard Webhooks receiver.

    ``body`` must be sent byte for byte as given: the signature covers those bytes.
    """
    _check_message_id(message_id)
    seconds = str(_unix_seconds(timestamp))
    digest = _signature(secret.key, message_id, seconds, body)
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: seconds,
        SIGNATURE_HEADER: f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}",
        "content-type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            if value and value.strip():
                return value.strip()
            break
    raise Unauthorized(f"missing the {name} header")


def _v1_signatures(header: str) -> list[bytes]:
    """Every well-formed v1 signature; other versions (e.g. v1a) and garbage are skipped, not fatal."""
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not _BASE64.fullmatch(encoded):
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(
    secret: WebhookSecret,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Accept the request only if a v1 signature matches and it was signed within ``tolerance`` of ``now``.

    Header names are matched case-insensitively. The timestamp window is checked before
    the signature so a replayed request is refused whatever it carries.
    """
    message_id = _header(headers, ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)

    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthorized("the webhook-timestamp header is not a whole number of unix seconds")
    skew = int(timestamp) - _unix_seconds(now)
    if skew < -tolerance.total_seconds():
        raise Unauthorized("the webhook timestamp is too old")
    if skew > tolerance.total_seconds():
        raise Unauthorized("the webhook timestamp is too far in the future")

    expected = _signature(secret.key, message_id, timestamp, body)
    matched = False
    for candidate in _v1_signatures(signatures):
        # No early exit: every candidate costs the same, whichever one matches.
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise Unauthorized("no valid webhook signature")


class OutboundWebhook(BaseModel):
    """One delivery. ``id`` is the receiver's dedup key, so a retry must reuse it, never mint a new one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH, pattern=r"^[!-~]+$")
    url: str
    payload: dict[str, Any]

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook URL must be an absolute http:// or https:// URL")
        return url

    @field_validator("payload")
    @classmethod
    def _json_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        # Fail when the webhook is built, not on every retry of a delivery that can never work.
        try:
            _dumps(payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the payload is not plain JSON: {exc}") from exc
        return payload

    def body(self) -> bytes:
        return _dumps(self.payload)


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class ReceiverGone(InvalidInput):
    """The receiver answered 410 Gone: it wants no more webhooks, so retrying is wrong."""


class WebhookTransport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST and return the HTTP status (any status, without following redirects).

        Raise ``Retryable`` when no status came back (network error, timeout) and
        ``InvalidInput`` for a URL that can never be posted to.
        """
        ...


def deliver(
    webhook: OutboundWebhook,
    secret: WebhookSecret,
    transport: WebhookTransport,
    now: datetime,
    timeout: float = DELIVERY_TIMEOUT_SECONDS,
) -> int:
    """Sign with ``now`` and POST once; the status decides between done, retry later, and never.

    Errors name the webhook id and the status, never the URL (hook URLs are often
    capabilities), the body, or the secret.
    """
    body = webhook.body()
    headers = sign(secret, webhook.id, now, body)
    status = transport.post(webhook.url, body, headers, timeout)
    if 200 <= status < 300:
        return status
    if status == GONE:
        raise ReceiverGone(f"webhook {webhook.id}: the receiver answered 410 Gone and wants no more webhooks")
    if status in RETRYABLE_CLIENT_STATUSES or 500 <= status < 600:
        raise Retryable(f"webhook {webhook.id}: the receiver answered {status}")
    if 300 <= status < 400:
        raise InvalidInput(
            f"webhook {webhook.id}: the receiver redirected ({status}); configure the final URL instead"
        )
    raise InvalidInput(f"webhook {webhook.id}: the receiver refused it with {status}")
