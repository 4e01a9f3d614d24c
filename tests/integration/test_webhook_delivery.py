"""Webhooks over real HTTP: a loopback receiver checks every request with the standardwebhooks library."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from kindling.adapters.webhook_transport import UrllibTransport
from kindling.kernel.errors import InvalidInput, Retryable
from kindling.webhooks.standard import OutboundWebhook, WebhookSecret, deliver

SECRET = WebhookSecret.generate()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any = None
    refusal: str | None = None


@dataclass
class Receiver:
    """What the receiver answers, and everything it was sent."""

    status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def webhook(self, payload: dict[str, Any], webhook_id: str = "handoff-lead-42") -> OutboundWebhook:
        return OutboundWebhook(id=webhook_id, url=f"{self.url}/hooks/sales?token=t0k3n", payload=payload)


def _handler(receiver: Receiver, secret: str) -> type[BaseHTTPRequestHandler]:
    library = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            # Header names lowered: urllib sends "Webhook-id", and HTTP names are case-insensitive.
            headers = {name.lower(): value for name, value in self.headers.items()}
            received = Received(self.command, self.path, headers, body)
            try:
                received.verified = library.verify(body, received.headers)
            except WebhookVerificationError as exc:
                received.refusal = str(exc)
            receiver.requests.append(received)
            if receiver.hold is not None:
                receiver.hold.wait(timeout=5)
            status = receiver.status if received.refusal is None else 401
            self.send_response(status)
            for name, value in receiver.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _answer
        do_GET = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Receiver]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread, Receiver]] = []

    def start(secret: str = SECRET.reveal(), **answers: Any) -> Receiver:
        receiver = Receiver(**answers)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver, secret))
        server.daemon_threads = True
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread, receiver))
        return receiver

    yield start
    for server, thread, receiver in servers:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PAYLOAD = {"type": "lead.handoff", "lead": {"email": "ada@example.com", "score": 87, "name": "Ada Lovelace"}}


def test_a_delivered_webhook_is_verified_by_the_receiver_and_carries_the_payload(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(status=202)
    webhook = receiver.webhook(PAYLOAD)

    assert deliver(webhook, SECRET, UrllibTransport(), now=datetime.now(UTC)) == 202

    [request] = receiver.requests
    assert request.refusal is None
    assert request.verified == PAYLOAD
    assert (request.method, request.path) == ("POST", "/hooks/sales?token=t0k3n")
    assert request.body == webhook.body()
    assert request.headers["webhook-id"] == "handoff-lead-42"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("kindling-webhooks/")


def test_a_receiver_holding_another_secret_refuses_the_delivery(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(secret=WebhookSecret.generate().reveal())

    with pytest.raises(InvalidInput, match="401"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC))

    [request] = receiver.requests
    assert request.refusal == "No matching signature found"


def test_a_delivery_signed_with_a_stale_clock_is_refused_by_the_receiver(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver()

    with pytest.raises(InvalidInput, match="401"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime(2026, 1, 1, tzinfo=UTC))

    assert receiver.requests[0].refusal == "Message timestamp too old"


def test_retries_reach_the_receiver_with_the_same_webhook_id(start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(status=503)
    webhook = receiver.webhook(PAYLOAD)
    with pytest.raises(Retryable, match="503"):
        deliver(webhook, SECRET, UrllibTransport(), now=datetime.now(UTC))
    receiver.status = 200
    assert deliver(webhook, SECRET, UrllibTransport(), now=datetime.now(UTC)) == 200

    assert [r.headers["webhook-id"] for r in receiver.requests] == ["handoff-lead-42", "handoff-lead-42"]
    assert all(r.verified == PAYLOAD for r in receiver.requests)


def test_a_receiver_answering_503_makes_the_delivery_retryable(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(status=503)

    with pytest.raises(Retryable, match="503"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC))

    assert receiver.requests[0].verified == PAYLOAD


def test_a_receiver_answering_400_makes_the_delivery_permanently_invalid(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(status=400)

    with pytest.raises(InvalidInput, match="400"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC))


def test_a_receiver_answering_410_asks_us_to_stop(start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(status=410)

    with pytest.raises(InvalidInput, match="410 Gone"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC))


def test_a_receiver_that_is_down_makes_the_delivery_retryable(closed_port: int) -> None:
    webhook = OutboundWebhook(
        id="handoff-lead-42", url=f"http://127.0.0.1:{closed_port}/hooks", payload=PAYLOAD
    )

    with pytest.raises(Retryable, match="reach"):
        deliver(webhook, SECRET, UrllibTransport(), now=datetime.now(UTC))


def test_a_receiver_slower_than_the_timeout_makes_the_delivery_retryable(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(hold=threading.Event())

    with pytest.raises(Retryable):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC), timeout=0.2)

    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_not_followed_and_fails_the_delivery(
    start_receiver: Callable[..., Receiver], status: int
) -> None:
    target = start_receiver()
    receiver = start_receiver(status=status, extra_headers={"Location": f"{target.url}/elsewhere"})

    with pytest.raises(InvalidInput, match="redirect"):
        deliver(receiver.webhook(PAYLOAD), SECRET, UrllibTransport(), now=datetime.now(UTC))

    assert len(receiver.requests) == 1
    assert target.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/hook", "data:,hello", "127.0.0.1:8080/hook", "http:///nohost"],
)
def test_the_transport_only_posts_to_http_or_https(url: str) -> None:
    with pytest.raises(InvalidInput):
        UrllibTransport().post(url, b"{}", {"content-type": "application/json"}, timeout=1.0)


def test_a_url_with_control_characters_is_refused_not_retried(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver()

    with pytest.raises(InvalidInput):
        UrllibTransport().post(f"{receiver.url}/hook\r\nX-Injected: 1", b"{}", {}, timeout=1.0)

    assert receiver.requests == []


def test_the_receiver_gets_the_exact_bytes_that_were_signed(start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    payload = {"note": "Zoë — café ✓", "nested": {"list": [1, 2.5, None, True]}}

    deliver(receiver.webhook(payload), SECRET, UrllibTransport(), now=datetime.now(UTC))

    [request] = receiver.requests
    assert request.verified == payload
    assert json.loads(request.body) == payload
