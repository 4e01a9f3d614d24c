"""What SES does after a send, for the local stack: the outbox, and the events SES would publish.

moto accepts the email and keeps it; it publishes no events. Here each email SES took is
followed by the events SES's event publishing would put on the default bus: ``Send``, then
``Delivery`` (or, for the mailbox simulator's addresses, a permanent ``Bounce`` or a
``Complaint``), tagged like the real ones, so the configuration set's rule queues them for
the SES events function, and reports and suppression behave locally as in AWS.

The outbox joins each email with its send record in the table: the lead, the send id, the
program and step it came from, the template, and the stack's time of sending. The record is
read by the ``send_id`` tag the email was sent with (``tags_of``: what the embedded AWS saw in
the SendEmail request); only an email whose tag names no record is looked for with a scan.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from email import message_from_string, policy
from typing import Any

from kindling.kernel.clock import isoformat
from kindling.metrics.counters import send_origin
from kindling_ops.local.template import ACCOUNT, REGION

#: SES's mailbox simulator: what an email to each address does (any other address is delivered).
SIMULATOR = {
    "bounce@simulator.amazonses.com": "Bounce",
    "complaint@simulator.amazonses.com": "Complaint",
}


#: How many polls an accepted email may wait for its send record before it is passed over.
PATIENCE = 50


def _sent_messages() -> list[Any]:
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def _origin(item: dict[str, Any]) -> dict[str, Any]:
    """What the outbox and SES's events say of an email's send record."""
    send_id = item["PK"]["S"].removeprefix("SEND#")
    lead_id = item.get("lead_id", {}).get("S", "")
    program, step = send_origin(send_id, lead_id)
    return {
        "send_id": send_id,
        "lead_id": lead_id or None,
        "template": item.get("template", {}).get("S"),
        "program": program,
        "step": step,
        "sent_at": item.get("sent_at", {}).get("S"),
    }


class LocalSes:
    def __init__(
        self,
        session: Any,
        table_name: str,
        configuration_set: str,
        tags_of: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self._dynamodb = session.client("dynamodb")
        self._events = session.client("events")
        self._table = table_name
        self._configuration_set = configuration_set
        self._tags_of = tags_of or (lambda message_id: {})
        self._published = 0
        self._waiting: dict[str, int] = {}
        self._lock = threading.Lock()

    def sends(self) -> dict[str, dict[str, Any]]:
        """Send records by SES message id (a scan: the local table is small, and this is local only)."""
        found: dict[str, dict[str, Any]] = {}
        paginator = self._dynamodb.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self._table,
            FilterExpression="begins_with(PK, :send) AND attribute_exists(ses_message_id)",
            ExpressionAttributeValues={":send": {"S": "SEND#"}},
        ):
            for item in page["Items"]:
                found[item["ses_message_id"]["S"]] = _origin(item)
        return found

    def origins(self, messages: list[Any]) -> dict[str, dict[str, Any]]:
        """The send records of these emails (SES message id -> origin), for those that have one written.

        Each is read by its ``send_id`` tag; a record there that does not name the email yet is not
        written yet. Emails whose tag names no record (none, or an id SES's tag rules changed) are
        looked for with a scan, as ``sends`` does.
        """
        found: dict[str, dict[str, Any]] = {}
        unresolved = []
        for message in messages:
            send_id = self._tags_of(message.id).get("send_id")
            item = None
            if send_id:
                item = self._dynamodb.get_item(
                    TableName=self._table,
                    Key={"PK": {"S": f"SEND#{send_id}"}, "SK": {"S": "SEND"}},
                    ConsistentRead=True,
                ).get("Item")
            if item is None:
                unresolved.append(message.id)
            elif item.get("ses_message_id", {}).get("S") == message.id:
                found[message.id] = _origin(item)
        if unresolved:
            scanned = self.sends()
            found.update({m: scanned[m] for m in unresolved if m in scanned})
        return found

    def outbox(self, since: int = 0) -> list[dict[str, Any]]:
        """What SES accepted (from its ``since``-th email), as headers and bodies, with what sent it."""
        sent_messages = _sent_messages()[since:]
        sends = self.origins(sent_messages)
        messages = []
        for sent in sent_messages:
            origin = sends.get(sent.id, {})
            raw = getattr(sent, "raw_data", None)
            if raw is None:
                messages.append(
                    {"id": sent.id, "to": sent.destinations, "subject": getattr(sent, "subject", None)}
                )
                continue
            parsed = message_from_string(raw, policy=policy.default)
            text = parsed.get_body(preferencelist=("plain",))
            html = parsed.get_body(preferencelist=("html",))
            messages.append(
                {
                    "id": sent.id,
                    **origin,
                    "to": list(dict.fromkeys(sent.destinations)),  # moto adds the To header's again
                    "subject": str(parsed["Subject"]),
                    "headers": {k: str(v) for k, v in parsed.items()},
                    "text": text.get_content() if text else None,
                    "html": html.get_content() if html else None,
                }
            )
        return messages

    def publish_events(self, now: datetime) -> int:
        """SES's events for each email accepted since the last call; how many emails that was.

        An email whose send record is not written yet waits for a later call; one that never
        gets a record (not sent by the sender) is passed over after ``PATIENCE`` calls, so it
        cannot hold up the events of every email after it.
        """
        with self._lock:
            sent = _sent_messages()
            new = sent[self._published :]
            if not new:
                return 0
            sends = self.origins(new)
            entries, done = [], 0
            for message in new:
                origin = sends.get(message.id)
                if origin is None:
                    self._waiting[message.id] = self._waiting.get(message.id, 0) + 1
                    if self._waiting[message.id] < PATIENCE:
                        break  # its send record is not written yet: next time
                    done += 1  # not one of the sender's: no events, as nothing would map them
                    continue
                recipients = list(dict.fromkeys(message.destinations))
                outcome = next((SIMULATOR[r] for r in recipients if r in SIMULATOR), "Delivery")
                entries += [self._entry("Send", message.id, recipients, origin, now)]
                entries += [self._entry(outcome, message.id, recipients, origin, now)]
                done += 1
            for start in range(0, len(entries), 10):
                answer = self._events.put_events(Entries=entries[start : start + 10])
                if answer.get("FailedEntryCount"):
                    raise RuntimeError(f"the default bus refused {answer['FailedEntryCount']} SES event(s)")
            self._published += done  # only once the events are on the bus
            return len(entries) // 2

    def _entry(
        self, event_type: str, message_id: str, recipients: list[str], origin: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        at = isoformat(now)
        tags = {
            "ses:configuration-set": [self._configuration_set],
            "send_id": [origin["send_id"]],
            "lead_id": [origin["lead_id"] or ""],
            "template": [origin["template"] or ""],
        }
        detail: dict[str, Any] = {
            "eventType": event_type,
            "mail": {"messageId": message_id, "timestamp": at, "destination": recipients, "tags": tags},
        }
        if event_type == "Send":
            detail["send"] = {}
        elif event_type == "Delivery":
            detail["delivery"] = {"timestamp": at, "recipients": recipients, "smtpResponse": "250 2.0.0 OK"}
        elif event_type == "Bounce":
            detail["bounce"] = {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": r} for r in recipients],
                "timestamp": at,
            }
        else:
            detail["complaint"] = {
                "complainedRecipients": [{"emailAddress": r} for r in recipients],
                "complaintFeedbackType": "abuse",
                "timestamp": at,
            }
        detail_type = {
            "Send": "Email Sent",
            "Delivery": "Email Delivered",
            "Bounce": "Email Bounced",
            "Complaint": "Email Complaint Received",
        }[event_type]
        return {"Source": "aws.ses", "DetailType": detail_type, "Detail": json.dumps(detail), "Time": now}
