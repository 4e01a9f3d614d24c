"""Sending work to an SQS queue, in batches, retrying only the entries SQS refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kindling.adapters import aws
from kindling.kernel import clock
from kindling.kernel.bus import BusEvent
from kindling.kernel.errors import Retryable

#: What one SendMessageBatch may carry: 10 messages, 256 KB in all (SQS's limits).
BATCH_ENTRIES = 10
BATCH_BYTES = 256 * 1024


def batches(bodies: Sequence[str]) -> Iterator[list[str]]:
    """Consecutive groups of at most 10 bodies and 256 KB (one body over 256 KB is SQS's to refuse)."""
    group: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if group and (len(group) == BATCH_ENTRIES or size + length > BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(body)
        size += length
    if group:
        yield group


class SqsQueue:
    def __init__(self, url: str, client: Any = None) -> None:
        self._url = url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def send_all(self, bodies: Sequence[dict[str, Any]]) -> None:
        self.send_texts([json.dumps(body, default=str) for body in bodies])

    def send_texts(self, bodies: Sequence[str]) -> None:
        """Send every body, or raise ``Retryable`` (the queue refused some, or could not be reached)."""
        for group in batches(bodies):
            pending = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(group)]
            for _ in range(3):
                try:
                    response = self.client.send_message_batch(QueueUrl=self._url, Entries=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise Retryable(
                        f"the queue could not take the messages: {aws.error_code(exc) or exc}"
                    ) from exc
                failed = {f["Id"] for f in response.get("Failed", [])}
                pending = [entry for entry in pending if entry["Id"] in failed]
                if not pending:
                    break
            if pending:
                raise Retryable(f"the queue refused {len(pending)} message(s)")


class QueueDelivery:
    """An ``EventPublisher`` that hands events straight to their one consumer's queue.

    For events with a single consumer (web events, read only by the profiles function), a
    bus in between adds a PutEvents entry and a delivery per event and routes nothing. The
    message is the envelope EventBridge would have delivered, so the consumer reads both alike.
    """

    def __init__(self, url: str, client: Any = None) -> None:
        self._queue = SqsQueue(url, client)

    def publish(self, events: Sequence[BusEvent]) -> None:
        self._queue.send_texts([_envelope(e) for e in events])


def _envelope(event: BusEvent) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": event.detail_type,
            "source": event.source,
            "time": (event.time or clock.current().now()).isoformat(),
            "resources": [],
            "detail": event.detail,
        },
        separators=(",", ":"),
        default=str,
    )
