"""Sending work to an SQS queue, in batches, retrying only the entries SQS refused."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kindling.adapters import aws
from kindling.kernel.errors import Retryable


class SqsQueue:
    def __init__(self, url: str, client: Any = None) -> None:
        self._url = url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def send_all(self, bodies: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 10):
            pending = [
                {"Id": str(i), "MessageBody": json.dumps(body, default=str)}
                for i, body in enumerate(bodies[start : start + 10])
            ]
            for _ in range(3):
                response = self.client.send_message_batch(QueueUrl=self._url, Entries=pending)
                failed = {f["Id"] for f in response.get("Failed", [])}
                pending = [entry for entry in pending if entry["Id"] in failed]
                if not pending:
                    break
            if pending:
                raise Retryable(f"the queue refused {len(pending)} message(s)")
