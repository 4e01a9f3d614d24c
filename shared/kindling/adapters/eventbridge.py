"""EventPublisher on EventBridge: batches PutEvents within its limits and retries failed entries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kindling.adapters import aws
from kindling.kernel.bus import BusEvent
from kindling.kernel.errors import Retryable

MAX_ENTRIES_PER_CALL = 10
MAX_BYTES_PER_CALL = 256 * 1024
ATTEMPTS = 4


def _entry_size(entry: dict[str, Any]) -> int:
    # EventBridge's own accounting: Source + DetailType + Detail (+ 14 bytes for a Time).
    size = len(entry["Source"].encode()) + len(entry["DetailType"].encode()) + len(entry["Detail"].encode())
    return size + (14 if "Time" in entry else 0)


def _chunks(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_size(entry)
        if chunk and (len(chunk) == MAX_ENTRIES_PER_CALL or size + entry_size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk


class EventBridgePublisher:
    def __init__(
        self, bus_name: str, client: Any = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._bus_name = bus_name
        self._client = client
        self._sleep = sleep

    @property
    def client(self) -> Any:
        return self._client or aws.client("events")

    def publish(self, events: Sequence[BusEvent]) -> None:
        entries = []
        for event in events:
            entry: dict[str, Any] = {
                "EventBusName": self._bus_name,
                "Source": event.source,
                "DetailType": event.detail_type,
                "Detail": event.detail_json(),
            }
            if event.time is not None:
                entry["Time"] = event.time
            entries.append(entry)
        for chunk in _chunks(entries):
            self._put_all(chunk)

    def _put_all(self, pending: list[dict[str, Any]]) -> None:
        """Retry only the entries EventBridge reports as failed; give up with ``Retryable``."""
        for attempt in range(ATTEMPTS):
            try:
                response = self.client.put_events(Entries=pending)
            except (ClientError, BotoCoreError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise Retryable(
                        f"the event bus refused the events: {aws.error_code(exc) or exc}"
                    ) from exc
            else:
                if not response.get("FailedEntryCount"):
                    return
                pending = [
                    entry
                    for entry, result in zip(pending, response["Entries"], strict=True)
                    if result.get("ErrorCode")
                ]
            self._sleep(0.05 * 2**attempt)
        raise Retryable(f"the event bus kept failing {len(pending)} event(s)")
