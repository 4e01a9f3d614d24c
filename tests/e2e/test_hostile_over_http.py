"""Whatever the edge accepts, every consumer of the whole local stack processes: no dead letters."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.conftest import WRITE_KEY, RunningStack
from tests.hostile import KEPT, REFUSED, REPLACED_TIMES, track

pytestmark = pytest.mark.e2e


def post(stack: RunningStack, body: bytes, encoding: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json", "X-Write-Key": WRITE_KEY}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return requests.post(f"{stack.url}/v1/track", data=body, headers=headers, timeout=30)


def dead_letters(stack: RunningStack) -> dict[str, int]:
    queues = requests.get(f"{stack.url}/_local/dlq", timeout=30).json()["queues"]
    return {queue["queue"]: queue["messages"] for queue in queues if queue["messages"]}


def test_hostile_values_are_refused_at_the_edge_or_processed_by_every_consumer(stack: RunningStack) -> None:
    before = dead_letters(stack)
    accepted = 0
    for kept in KEPT:
        response = post(stack, json.dumps({**kept.message, "userId": "u-hostile-e2e"}).encode())
        assert response.status_code == 200, (kept.name, response.text)
        accepted += 1
    for times in REPLACED_TIMES:
        body = json.dumps({**track(event="Hostile Time"), "userId": "u-hostile-e2e", **times}).encode()
        assert post(stack, body).status_code == 200, times
        accepted += 1
    refused = 0
    for case in REFUSED:
        response = post(stack, case.body, case.content_encoding)
        assert response.status_code < 500, (case.name, response.status_code, response.text)
        refused += response.status_code in (400, 413)
    stack.settle(timeout=60)
    assert dead_letters(stack) == before, "an event the edge accepted was dead-lettered by a consumer"
    assert accepted == len(KEPT) + len(REPLACED_TIMES)
    assert refused == len(REFUSED), "every refused body is answered with a named 4xx"
