"""Handing a new MQL to sales: a signed webhook, retried until the receiver takes it.

The webhook id is the MQL event's id, the same on every retry, so a receiver that got a
delivery whose answer was lost can recognise the retry. Each outcome is kept on the
lead's record, so "was this lead handed over, and when?" has an answer in kindling too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from kindling.webhooks.standard import OutboundWebhook, ReceiverGone, WebhookSecret, WebhookTransport, deliver


class HandoffLog(Protocol):
    def record(self, lead_id: str, event_id: str, outcome: str, status: int | None, at: datetime) -> None: ...


def hand_off(
    mql: dict[str, Any],
    *,
    kind: str = "lead.mql",
    url: str,
    secret: WebhookSecret,
    transport: WebhookTransport,
    log: HandoffLog,
    now: datetime,
) -> int | None:
    """Deliver one MQL (or a program's note to sales); the status, or None after 410 Gone (stop)."""
    webhook = OutboundWebhook(
        id=mql["event_id"],
        url=url,
        payload={"type": kind, "timestamp": mql["trigger"]["at"], "data": mql},
    )
    try:
        status = deliver(webhook, secret, transport, now)
    except ReceiverGone:
        log.record(mql["lead_id"], mql["event_id"], "receiver_gone", 410, now)
        return None
    log.record(mql["lead_id"], mql["event_id"], "delivered", status, now)
    return status
