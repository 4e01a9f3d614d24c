"""The Segment Tracking Spec at the edge: parse, validate and normalise what tags send.

Existing Segment and RudderStack clients must work unchanged, so the wire format is
theirs (camelCase, ``batch`` envelopes, ``sentAt`` clock-skew correction). What leaves
this module is a ``WebEvent``: one validated, normalised message with a ``message_id``
that downstream consumers use to apply it exactly once.

Bodies are parsed by ``kindling.kernel.json_input`` (its docstring has the rules: numbers
DynamoDB cannot store are refused, lone surrogates become U+FFFD), so whatever is accepted
here the consumers can keep. An event time before 2000 (``kernel.clock.EARLIEST_EVENT_TIME``)
or ahead of receipt by more than ``MAX_FUTURE_SKEW`` is a device clock gone wrong: ``receivedAt``
replaces it, as Segment does, and ``timestamp_replaced`` says so on the event and its
timeline entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.clock import is_plausible_time
from kindling.kernel.errors import InvalidInput, PayloadTooLarge, Unauthorized
from kindling.kernel.json_input import parse_json_object

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_ID_LENGTH = 200
#: A device clock that runs ahead must not date events in the future.
MAX_FUTURE_SKEW = timedelta(minutes=5)

EventType = Literal["identify", "track", "page", "screen", "group", "alias"]

#: Every path a client may call, with the message type it implies (None: a batch).
ENDPOINTS: dict[str, EventType | None] = {
    "identify": "identify",
    "i": "identify",
    "track": "track",
    "t": "track",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
    "batch": None,
    "b": None,
    "import": None,
}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SegmentMessage(BaseModel):
    """One message as a client sends it. Unknown top-level fields are ignored, as Segment does."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: EventType
    message_id: str | None = Field(
        default=None, alias="messageId", min_length=1, max_length=MAX_MESSAGE_ID_LENGTH
    )
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=500)
    user_id: str | None = Field(default=None, alias="userId", max_length=500)
    timestamp: datetime | None = None
    original_timestamp: datetime | None = Field(default=None, alias="originalTimestamp")
    sent_at: datetime | None = Field(default=None, alias="sentAt")
    context: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    event: str | None = Field(default=None, max_length=500)
    name: str | None = Field(default=None, max_length=500)
    category: str | None = Field(default=None, max_length=500)
    group_id: str | None = Field(default=None, alias="groupId", max_length=500)
    previous_id: str | None = Field(default=None, alias="previousId", max_length=500)

    @field_validator("anonymous_id", "user_id", "group_id", "previous_id", mode="before")
    @classmethod
    def _ids_may_be_numbers(cls, value: Any) -> Any:
        # Segment's libraries accept numeric ids and send them as JSON numbers.
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("context", "properties", "traits", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _required_by_type(self) -> SegmentMessage:
        if self.type == "alias":
            if not self.user_id or not self.previous_id:
                raise ValueError("alias needs both userId and previousId")
            return self
        if not self.user_id and not self.anonymous_id:
            raise ValueError(f"{self.type} needs a userId or an anonymousId")
        if self.type == "track" and not (self.event and self.event.strip()):
            raise ValueError("track needs a non-empty event name")
        if self.type == "group" and not self.group_id:
            raise ValueError("group needs a groupId")
        return self


class WebEvent(BaseModel):
    """A validated web event as it travels on the bus (``detail`` of ``web.<type>``)."""

    model_config = ConfigDict(extra="forbid")

    message_id: str
    type: EventType
    anonymous_id: str | None = None
    user_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    timestamp: datetime
    received_at: datetime
    #: The client's time was unusable (before 2000, in the future): ``timestamp`` is ``received_at``.
    timestamp_replaced: bool = False
    #: ``timestamp`` is the client's own, as it sent it: every delivery of the message carries the
    #: same one (a time derived from ``receivedAt`` or ``sentAt`` differs per delivery).
    timestamp_from_client: bool = False
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    bot: bool = False
    #: Set by kindling's own producers (email opens, clicks, unsubscribes) that know the lead.
    lead_id: str | None = None

    @property
    def detail_type(self) -> str:
        return f"web.{self.type}"

    @property
    def email(self) -> str | None:
        """The email the event tells us about, if any (identify traits, then context.traits)."""
        for source in (self.traits, self.context.get("traits") or {}):
            value = source.get("email") if isinstance(source, dict) else None
            if isinstance(value, str) and value.strip():
                return value
        return None

    @property
    def user_agent(self) -> str | None:
        value = self.context.get("userAgent")
        return value if isinstance(value, str) else None


class CaptureRequest(BaseModel):
    """What the HTTP edge knows about one tracking request, independent of API Gateway."""

    endpoint: str
    body: bytes
    content_encoding: str | None = None
    basic_username: str | None = None
    header_write_key: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    endpoint_is_pixel: bool = False


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding: gzip`` (as the server libraries send), refusing zip bombs."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InvalidInput(f"unsupported Content-Encoding {content_encoding!r}: send gzip or none")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(body, MAX_BATCH_BYTES + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding}: {exc}") from exc
    if len(out) > MAX_BATCH_BYTES or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"the request body is over {MAX_BATCH_BYTES // 1024} KB once decompressed")
    return out


def check_write_key(expected: str, *candidates: str | None) -> None:
    """Accept the request if any place a client may put the write key holds the right one."""
    given = [c for c in candidates if c]
    if not given:
        raise Unauthorized(
            "missing write key: send it as the HTTP Basic username, the X-Write-Key header or writeKey"
        )
    if not any(hmac.compare_digest(c.encode("utf-8", "surrogatepass"), expected.encode()) for c in given):
        raise Unauthorized("invalid write key")


def _pydantic_problems(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")
    return problems


def _generated_message_id(message: dict[str, Any]) -> str:
    """A missing messageId is derived from the content, so a client's retry dedups too."""
    digest = hashlib.sha256(json.dumps(message, sort_keys=True, default=str).encode()).hexdigest()
    return f"kdl-{digest[:32]}"


def _event_time(msg: SegmentMessage, received_at: datetime) -> tuple[datetime, bool, bool]:
    """Segment's rule: trust ``timestamp``; else correct the device clock by ``sentAt``.

    With whether the time given was unusable and ``received_at`` replaced it: before 2000,
    more than ``MAX_FUTURE_SKEW`` ahead, or beyond what a ``datetime`` holds once converted
    to UTC (year 1 at +01:00); and whether it is the client's ``timestamp`` as sent.
    """
    try:
        if msg.timestamp is not None:
            when = _utc(msg.timestamp)
        else:
            original, sent = _utc(msg.original_timestamp), _utc(msg.sent_at)
            when = received_at - (sent - original) if original and sent else original
    except OverflowError:
        return received_at, True, False
    if when is None:
        return received_at, False, False
    if not is_plausible_time(when, received_at, MAX_FUTURE_SKEW):
        return received_at, True, False
    return when, False, msg.timestamp is not None


def _to_event(
    raw: dict[str, Any],
    where: str,
    received_at: datetime,
    request: CaptureRequest,
    is_bot: Callable[[str], bool],
) -> WebEvent:
    size = len(json.dumps(raw, separators=(",", ":"), default=str).encode())
    if size > MAX_EVENT_BYTES:
        raise PayloadTooLarge(
            f"{where}is {size} bytes; one event may be at most {MAX_EVENT_BYTES // 1024} KB"
        )
    try:
        msg = SegmentMessage.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(_pydantic_problems(where, exc)) from exc
    context = dict(msg.context)
    if request.source_ip and "ip" not in context:
        context["ip"] = request.source_ip
    if request.user_agent and request.endpoint_is_pixel and "userAgent" not in context:
        # A pixel is fetched by the visitor's own browser or mail client; any other call may
        # come from a server library, whose User-Agent says nothing about the visitor.
        context["userAgent"] = request.user_agent
    user_agent = context.get("userAgent")
    timestamp, replaced, from_client = _event_time(msg, received_at)
    return WebEvent(
        message_id=msg.message_id or _generated_message_id(raw),
        type=msg.type,
        anonymous_id=msg.anonymous_id,
        user_id=msg.user_id,
        event=msg.event,
        name=msg.name,
        category=msg.category,
        group_id=msg.group_id,
        previous_id=msg.previous_id,
        timestamp=timestamp,
        received_at=received_at,
        timestamp_replaced=replaced,
        timestamp_from_client=from_client,
        properties=msg.properties,
        traits=msg.traits,
        context=context,
        bot=bool(isinstance(user_agent, str) and is_bot(user_agent)),
    )


def accept(
    request: CaptureRequest,
    *,
    write_key: str,
    now: datetime,
    is_bot: Callable[[str], bool] = lambda ua: False,
) -> list[WebEvent]:
    """Validate one tracking request into the events it carries; all of them or none."""
    kind = ENDPOINTS.get(request.endpoint)
    if request.endpoint not in ENDPOINTS:
        raise InvalidInput(f"unknown endpoint /v1/{request.endpoint}")
    if len(request.body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(f"the request body is over {MAX_BATCH_BYTES // 1024} KB")
    raw = decode_body(request.body, request.content_encoding)
    payload = parse_json_object(raw)
    body_key = payload.get("writeKey") if isinstance(payload.get("writeKey"), str) else None
    check_write_key(write_key, request.basic_username, request.header_write_key, body_key)
    received_at = _utc(now)
    assert received_at is not None

    if kind is not None:
        payload = {**payload, "type": kind}
        return [_to_event(payload, "", received_at, request, is_bot)]

    if len(raw) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(f"a batch may be at most {MAX_BATCH_BYTES // 1024} KB")
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise InvalidInput("batch: a list of messages is required")
    if not batch:
        raise InvalidInput("batch: the list is empty")
    shared_context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    events, problems = [], []
    for index, item in enumerate(batch):
        where = f"batch[{index}]."
        if not isinstance(item, dict):
            problems.append(f"batch[{index}]: each message must be a JSON object")
            continue
        if "sentAt" not in item and "sentAt" in payload:
            item = {**item, "sentAt": payload["sentAt"]}
        if shared_context:
            item = {**item, "context": {**shared_context, **(item.get("context") or {})}}
        try:
            events.append(_to_event(item, where, received_at, request, is_bot))
        except PayloadTooLarge:
            raise
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return events


def pixel_request_body(query: dict[str, str]) -> bytes:
    """Turn ``/v1/pixel.gif``'s query string into a message body.

    Either Segment's pixel form (``data`` = base64 of the JSON message) or flat
    parameters, with ``properties.*``, ``traits.*`` and ``context.*`` for nested fields.
    """
    if "data" in query:
        encoded = query["data"]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("data: not valid base64") from exc
        message = parse_json_object(raw, "data")
    else:
        message: dict[str, Any] = {}  # type: ignore[no-redef]
        for key, value in query.items():
            head, _, rest = key.partition(".")
            if rest and head in ("properties", "traits", "context"):
                nested = message.get(head)
                if not isinstance(nested, dict):
                    nested = message[head] = {}
                nested[rest] = value
            elif not isinstance(message.get(key), dict):
                # A bare ``properties=...`` (text, not an object) gives way to ``properties.*``.
                message[key] = value
    message.setdefault("type", "track" if message.get("event") else "page")
    return json.dumps(message).encode()


def pixel_endpoint(body: bytes) -> str:
    message_type = parse_json_object(body).get("type")
    if not isinstance(message_type, str) or ENDPOINTS.get(message_type) is None:
        raise InvalidInput(f"type: {message_type!r} is not a message type the pixel accepts")
    return str(message_type)


ONE_PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def capture(
    request: CaptureRequest,
    *,
    write_key: str,
    now: datetime,
    publisher: EventPublisher,
    is_bot: Callable[[str], bool],
) -> int:
    """Accept a tracking request and hand its events to the bus; raise unless all are handed over.

    The caller answers 200 only after this returns: an accepted event is never lost, and
    a client that sees an error retries, its messageIds dedup what did get through.
    """
    events = accept(request, write_key=write_key, now=now, is_bot=is_bot)
    publisher.publish(
        [
            BusEvent(
                source="kindling.capture",
                detail_type=e.detail_type,
                detail=e.model_dump(mode="json"),
                time=e.timestamp,
            )
            for e in events
        ]
    )
    return len(events)
