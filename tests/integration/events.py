"""What the tests that invoke real handlers share: events, context, credentials, a routed bus.

The events and the context are ``kindling_ops.lambda_events``'s, under the names the tests use.
"""

from __future__ import annotations

import base64
import json

from kindling_ops.lambda_events import LambdaContext as Context
from kindling_ops.lambda_events import http_event

__all__ = ["Context", "basic", "bus_routed_to_queue", "http_event"]


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
