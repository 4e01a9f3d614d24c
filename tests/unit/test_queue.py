"""Handing events to a queue: SendMessageBatch's limits, and the envelope its consumer reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kindling.adapters.queue import BATCH_BYTES, _envelope, batches
from kindling.kernel.bus import BusEnvelope, BusEvent


def test_a_batch_holds_at_most_ten_messages_and_256_kb() -> None:
    assert [len(b) for b in batches(["x"] * 23)] == [10, 10, 3]
    big = "y" * (100 * 1024)
    groups = list(batches([big, big, big, "z"]))
    assert [len(g) for g in groups] == [2, 2]
    assert all(sum(len(m) for m in g) <= BATCH_BYTES for g in groups)
    assert list(batches([])) == []


def test_the_envelope_is_what_eventbridge_would_have_delivered() -> None:
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    event = BusEvent(source="kindling.capture", detail_type="web.page", detail={"message_id": "m-1"}, time=at)
    envelope = BusEnvelope.model_validate(json.loads(_envelope(event)))
    assert (envelope.source, envelope.detail_type, envelope.time) == ("kindling.capture", "web.page", at)
    assert envelope.detail == {"message_id": "m-1"} and envelope.id
