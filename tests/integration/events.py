"""Events as AWS builds them, and a stand-in Lambda context, for invoking real handlers."""

from __future__ import annotations

import base64
import json
from typing import Any


class Context:
    function_name = "test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def http_event(
    method: str,
    path: str,
    *,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as API Gateway builds it."""
    if isinstance(body, dict):
        body = json.dumps(body)
    is_binary = isinstance(body, bytes)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route or path}",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": (headers or {}).get("User-Agent", "test"),
            },
            "requestId": "r1",
            "routeKey": f"{method} {route or path}",
            "stage": "$default",
            "time": "25/Nov/2026:09:30:00 +0000",
            "timeEpoch": 1795599000000,
        },
        "isBase64Encoded": is_binary,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:".encode()).decode()


def bus_routed_to_queue(source: str) -> tuple[str, str]:
    """A new bus whose events from ``source`` go to a new queue, as the template's rules do."""
    import uuid

    import boto3

    events, sqs = boto3.client("events"), boto3.client("sqs")
    name = f"bus-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    url = sqs.create_queue(QueueName=f"q-{name}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"r-{name}", EventBusName=name, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=f"r-{name}", EventBusName=name, Targets=[{"Id": "q", "Arn": arn}])
    return name, url
