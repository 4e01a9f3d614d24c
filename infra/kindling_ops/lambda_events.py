"""What AWS hands a Lambda function: HTTP API requests, SQS batches, schedules, and the context.

One builder for each shape, in the documented form: the local stack turns real HTTP requests,
queue messages and schedule firings into these events, and the tests and benches build theirs
here too. ``tests/unit/test_lambda_events.py`` parses every shape with Powertools' own models.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kindling_ops.local.template import ACCOUNT, REGION

#: A documentation address (RFC 5737): the caller's IP when none is given.
SOURCE_IP = "203.0.113.9"
#: The API id when none is given; the API's domain is ``<api id>.execute-api.<region>.amazonaws.com``.
API_ID = "api"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:queue"

Body = bytes | str | dict[str, Any] | list[Any] | None
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


# --- API Gateway HTTP API, payload format 2.0 ---------------------------------------------------------
def http_event(
    method: str,
    path: str,
    *,
    body: Body = None,
    headers: Headers | None = None,
    query: Mapping[str, str | Sequence[str]] | None = None,
    raw_query: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    route: str | None = None,
    route_key: str | None = None,
    cookies: Sequence[str] = (),
    source_ip: str = SOURCE_IP,
    user_agent: str | None = None,
    api_id: str = API_ID,
    domain_name: str | None = None,
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway hands a function for an HTTP API request (payload format 2.0).

    ``body``: bytes travel base64-encoded (``isBase64Encoded``), a dict or list as JSON, a string
    as it is; with none the event has no body. ``headers`` (a mapping, or name-value pairs where
    a name may repeat): names lower-cased, repeated ones joined by commas, and ``Cookie`` moved
    to ``cookies`` as API Gateway does. ``query``: the ``queryStringParameters`` (a list for a
    repeated name, joined there by commas); ``rawQueryString`` is those pairs as ``k=v&...``
    unless ``raw_query`` gives the query string as sent. ``route`` is the route's path (``/v1/leads/{id}``,
    the request path when not given) and ``route_key`` the whole key when its method differs
    (``ANY /{proxy+}``). ``user_agent`` defaults to the User-Agent header, ``at`` to now.
    """
    merged: dict[str, str] = {}
    jar = list(cookies)
    named = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in named:
        key = name.lower()
        if key == "cookie":
            jar += [c.strip() for c in value.split(";") if c.strip()]
        else:
            merged[key] = f"{merged[key]},{value}" if key in merged else value
    pairs = [(k, v) for k, values in (query or {}).items() for v in _values(values)]
    moment = at or datetime.now(UTC)
    domain = domain_name or f"{api_id}.execute-api.{REGION}.amazonaws.com"
    key = route_key or f"{method} {route or path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": key,
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in pairs) if raw_query is None else raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", "") if user_agent is None else user_agent,
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": key,
            "stage": "$default",
            "time": moment.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(moment.timestamp() * 1000),
        },
        "isBase64Encoded": isinstance(body, bytes),
    }
    if jar:
        event["cookies"] = jar
    if body is not None:
        event["body"] = _text(body)
    if query:
        event["queryStringParameters"] = {k: ",".join(_values(v)) for k, v in query.items()}
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _text(body: bytes | str | dict[str, Any] | list[Any]) -> str:
    if isinstance(body, bytes):
        return _base64(body)
    return body if isinstance(body, str) else json.dumps(body)


# --- SQS ----------------------------------------------------------------------------------------------
def sqs_record(
    body: str | dict[str, Any],
    message_id: str | None = None,
    *,
    queue_arn: str = QUEUE_ARN,
    receipt_handle: str | None = None,
    receive_count: int | None = None,
    attributes: Mapping[str, str] | None = None,
    message_attributes: Mapping[str, Mapping[str, Any]] | None = None,
    md5_of_body: str | None = None,
) -> dict[str, Any]:
    """One record of the event an SQS event source mapping hands a function.

    ``body``: a dict travels as JSON. ``attributes`` are the message's system attributes as
    ReceiveMessage returns them; those it lacks are filled in as a first delivery now, and
    ``receive_count`` sets ApproximateReceiveCount (a redelivery is 2 or more).
    ``message_attributes`` are in the SQS API's form (``DataType``, ``StringValue``,
    ``BinaryValue``); ``md5_of_body`` defaults to the body's MD5, as SQS computes it.
    """
    text = body if isinstance(body, str) else json.dumps(body)
    ident = message_id or str(uuid.uuid4())
    now_ms = str(int(time.time() * 1000))
    system = {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": now_ms,
        "SenderId": "AIDAEXAMPLESENDER",
        "ApproximateFirstReceiveTimestamp": now_ms,
        **(attributes or {}),
    }
    if receive_count is not None:
        system["ApproximateReceiveCount"] = str(receive_count)
    return {
        "messageId": ident,
        "receiptHandle": receipt_handle or f"rh-{ident}",
        "body": text,
        "attributes": system,
        "messageAttributes": {name: _message_attribute(v) for name, v in (message_attributes or {}).items()},
        "md5OfBody": md5_of_body or hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def sqs_record_of(
    message: Mapping[str, Any], queue_arn: str, *, receive_count: int | None = None
) -> dict[str, Any]:
    """The record for ``message`` as ``ReceiveMessage`` returned it (ask for ``AttributeNames=["All"]``)."""
    return sqs_record(
        message["Body"],
        message["MessageId"],
        queue_arn=queue_arn,
        receipt_handle=message["ReceiptHandle"],
        receive_count=receive_count,
        attributes=message.get("Attributes"),
        message_attributes=message.get("MessageAttributes"),
        md5_of_body=message.get("MD5OfBody"),
    )


def sqs_event(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The event for a batch of records (see ``sqs_record``), in the order given."""
    return {"Records": [dict(r) for r in records]}


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """An attribute in the SQS API's form as Lambda shows it: camel-cased, binary values base64-encoded."""
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": None if binary is None else _base64(binary),
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [_base64(b) for b in value.get("BinaryListValues") or []],
        "dataType": value["DataType"],
    }


def _base64(value: bytes | str) -> str:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


# --- schedules ----------------------------------------------------------------------------------------
def scheduled_event(
    name: str, at: datetime | None = None, *, rule: bool = False, event_id: str | None = None
) -> dict[str, Any]:
    """What a schedule with no ``Input`` hands its function when it fires at ``at`` (now if not given).

    EventBridge Scheduler (SAM's ``ScheduleV2``) sends source ``aws.scheduler`` with ``detail`` the
    string ``"{}"``; a scheduled EventBridge rule (``rule=True``, SAM's ``Schedule``) sends
    ``aws.events`` and an empty object. ``name`` is the schedule's or rule's.
    """
    moment = at or datetime.now(UTC)
    service, resource = ("events", f"rule/{name}") if rule else ("scheduler", f"schedule/default/{name}")
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": f"aws.{service}",
        "account": ACCOUNT,
        "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"],
        "detail": {} if rule else "{}",
    }


# --- the context --------------------------------------------------------------------------------------
@dataclass
class LambdaContext:
    """The context object Lambda passes with each invocation; its deadline runs from construction."""

    function_name: str = "kindling-function"
    timeout_seconds: float = 30
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    log_group_name: str = ""
    log_stream_name: str = ""
    tenant_id: str | None = None
    identity: Any = None
    client_context: Any = None

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)
