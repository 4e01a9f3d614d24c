"""Dead-letter queues: what is in them, and sending it back to be processed again.

A message lands in a DLQ after its consumer failed it ``maxReceiveCount`` times; once
the cause is fixed, redriving puts it back on the queue it came from. Every consumer is
idempotent, so a redriven message that had partly succeeded is applied once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeadLetters:
    name: str
    url: str
    source_url: str


def inspect(sqs: Any, queue: DeadLetters, sample: int = 3) -> dict[str, Any]:
    """Counts and a few messages, without taking them out (they become visible again at once)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"])
    count = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    messages = []
    if count and sample:
        received = sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=min(sample, 10),
            AttributeNames=["All"],
            VisibilityTimeout=0,
        ).get("Messages", [])
        for message in received:
            body = message["Body"]
            try:
                parsed = json.loads(body)
                what = parsed.get("detail-type") or parsed.get("send_id") or ""
            except (ValueError, AttributeError):
                what = ""
            messages.append(
                {
                    "message_id": message["MessageId"],
                    "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", "0")),
                    "what": what,
                    "body": body[:300],
                }
            )
    return {"queue": queue.name, "messages": count, "sample": messages}


def redrive(sqs: Any, queue: DeadLetters, limit: int = 10_000) -> int:
    """Move messages back to their source queue: sent there first, deleted here after."""
    moved = 0
    while moved < limit:
        received = sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not received:
            break
        for message in received:
            attributes = message.get("MessageAttributes") or {}
            kwargs: dict[str, Any] = {"QueueUrl": queue.source_url, "MessageBody": message["Body"]}
            if attributes:
                kwargs["MessageAttributes"] = attributes
            sqs.send_message(**kwargs)
            sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved


def from_template(template: Any) -> list[DeadLetters]:
    """Each consumer queue's DLQ, from the template's redrive policies."""
    found = []
    for logical, resource in template.of_type("AWS::SQS::Queue").items():
        redrive_policy = template.resolve((resource.get("Properties") or {}).get("RedrivePolicy"))
        if not redrive_policy:
            continue
        dlq_name = str(redrive_policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
        dlq_logical = next(k for k, v in template.names.items() if v == dlq_name)
        found.append(
            DeadLetters(
                name=dlq_logical, url=template.queue_url(dlq_logical), source_url=template.queue_url(logical)
            )
        )
    return sorted(found, key=lambda q: q.name)
