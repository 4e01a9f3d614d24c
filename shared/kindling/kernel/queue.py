"""The port for handing work to a queue (SQS in AWS): the send queue, the step queue."""

from __future__ import annotations

from typing import Any, Protocol


class WorkQueue(Protocol):
    """Takes message bodies in order; an adapter batches and retries what the queue refused."""

    def send_all(self, bodies: Any) -> None: ...
