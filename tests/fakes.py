"""In-memory stand-ins for the ports that leave the process, shared by the unit, integration and bench code.

The bus (``EventPublisher``), the send queue (``WorkQueue``), the outbound webhook transport and the
inbound webhook ledger. For time, use the domain's own settable clock,
``kindling.kernel.clock.FixedClock``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kindling.kernel.bus import BusEvent


# --- the bus ---------------------------------------------------------------------------------------
@dataclass
class RecordingPublisher:
    """The bus in memory: keeps every event published, in order.

    ``fail_times``: how many publishes fail first (``RuntimeError``), as they would while the bus is down.
    """

    fail_times: int = 0
    events: list[BusEvent] = field(default_factory=list)

    def publish(self, events: Sequence[BusEvent]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("bus down")
        self.events.extend(events)

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        """The details of the events of ``detail_type``, in order."""
        return [e.detail for e in self.events if e.detail_type == detail_type]


class NullPublisher:
    """A bus that drops what it is given: for timing the code that publishes, not the keeping."""

    def publish(self, events: Sequence[BusEvent]) -> None:
        del events


# --- the send queue ----------------------------------------------------------------------------------
@dataclass
class RecordingQueue:
    """The send queue (``send_all``) in memory: keeps every body sent, in order."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def send_all(self, bodies: Iterable[dict[str, Any]]) -> None:
        self.bodies.extend(bodies)


class NullQueue:
    """A send queue that drops what it is given."""

    def send_all(self, bodies: Iterable[dict[str, Any]]) -> None:
        del bodies


# --- webhooks ------------------------------------------------------------------------------------------
@dataclass
class Post:
    """One POST a ``FakeTransport`` was asked to make."""

    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float


@dataclass
class FakeTransport:
    """The outbound webhook transport: answers each POST with the next status (or raises it), and keeps
    what it was sent."""

    answers: list[int | Exception]
    posts: list[Post] = field(default_factory=list)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.posts.append(Post(url, body, dict(headers), timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class FakeLedger:
    """The inbound webhook ledger in memory: the event ids of each (provider, delivery id) recorded."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def seen(self, provider: str, delivery_ids: Sequence[str]) -> set[str]:
        return {i for i in delivery_ids if (provider, i) in self.records}

    def record(
        self, provider: str, delivery_id: str, digest: str, event_ids: Sequence[str], now: datetime
    ) -> bool:
        if (provider, delivery_id) in self.records:
            return False
        self.records[(provider, delivery_id)] = list(event_ids)
        return True
