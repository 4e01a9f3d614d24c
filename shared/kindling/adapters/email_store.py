"""EmailStore on the single table.

SEND#<send id>    / SEND         the send's state: claimed, sent, skipped or deferred
LEAD#<id>         / SENT#<time>#<send id>   a marketing email that went out (frequency cap)
LEAD#<id>         / EVT#<time>#<send id>:<what>   the send on the lead's timeline
SUPPRESS#<email>  / SUPPRESS     an address we never send to, and why
SESSEND#<send id> / SESSEND      SES's Send event for the send (its message id)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore, lead_key, timeline_sk, to_item
from kindling.adapters.items import send_key, suppression_key
from kindling.email.sender import SendRequest, SendState
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict, Retryable
from kindling.leads.privacy import suppression_hash
from kindling.leads.profiles import Lead, TimelineEntry, read_lead
from kindling.programs.due import DueItem


def timeline_put(table: str, lead_id: str, entry: TimelineEntry) -> dict[str, Any]:
    item = {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": timeline_sk(entry)}, **to_item(entry.model_dump())}
    return {"Put": {"TableName": table, "Item": item}}


def email_entry(request: SendRequest, what: str, now: datetime, **properties: Any) -> TimelineEntry:
    return TimelineEntry(
        message_id=f"{request.send_id}:{what.lower().replace(' ', '_')}",
        type="email",
        event=what,
        timestamp=now,
        received_at=now,
        properties={"send_id": request.send_id, "template": request.template, **properties},
    )


class DynamoEmailStore(aws.TableAdapter):
    def __init__(
        self,
        table_name: str,
        client: Any = None,
        hash_key: Callable[[], bytes] | None = None,
        legacy_hash_key: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(table_name, client)
        #: The key of the hashes erased opted-out addresses are remembered by (the erasure key secret).
        self._hash_key = hash_key
        #: The key such hashes were made with before the erasure key existed (the link signing key):
        #: those remembered then must still hold.
        self._legacy_hash_key = legacy_hash_key
        self._leads = DynamoLeadStore(table_name, client)
        self._due = DynamoDueStore(table_name, client)

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def lead(self, lead_id: str) -> Lead | None:
        view = read_lead(self._leads, lead_id, timeline_limit=0)
        return view.lead if view else None

    def suppression(self, email: str) -> str | None:
        """Why the address must not be mailed: on the list, or erased after it opted out (one read)."""
        if self._hash_key is None:
            item = self._get(suppression_key(email))
            return item["reason"]["S"] if item else None
        keys = list(
            dict.fromkeys([self._hash_key(), *([self._legacy_hash_key()] if self._legacy_hash_key else [])])
        )
        hashed = [
            {"PK": {"S": f"SUPPRESSHASH#{suppression_hash(key, email)}"}, "SK": {"S": "SUPPRESSHASH"}}
            for key in keys
        ]
        answer = self.client.batch_get_item(
            RequestItems={self._table: {"Keys": [suppression_key(email), *hashed], "ConsistentRead": True}}
        )
        found = answer.get("Responses", {}).get(self._table, [])
        if answer.get("UnprocessedKeys"):
            raise Retryable("DynamoDB left the suppression check unprocessed")
        return found[0]["reason"]["S"] if found else None

    def send_state(self, send_id: str) -> SendState | None:
        item = self._get(send_key(send_id))
        if item is None:
            return None
        return SendState(
            send_id=send_id,
            status=item["status"]["S"],
            lead_id=item["lead_id"]["S"],
            claimed_at=item["claimed_at"]["S"] if "claimed_at" in item else None,
            attempt=int(item.get("attempt", {}).get("N", "0")),
            ses_message_id=item.get("ses_message_id", {}).get("S"),
        )

    def claim(self, request: SendRequest, lead_id: str, now: datetime, expected: SendState | None) -> int:
        attempt = (expected.attempt if expected else 0) + 1
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                **send_key(request.send_id),
                "status": {"S": "claimed"},
                "lead_id": {"S": lead_id},
                "template": {"S": request.template},
                "claimed_at": {"S": isoformat(now)},
                "attempt": {"N": str(attempt)},
            },
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        if expected is not None:
            # Take over only the state we looked at: a deferred send, or a claim we gave up waiting on.
            kwargs["ConditionExpression"] = "#s = :status AND attempt = :attempt"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"] = {
                ":status": {"S": expected.status},
                ":attempt": {"N": str(expected.attempt)},
            }
        try:
            self.client.put_item(**kwargs)
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"send {request.send_id} was claimed meanwhile") from exc
            raise aws.translate(exc, "a send: claim") from exc
        return attempt

    def release(self, send_id: str, attempt: int) -> None:
        """SES did not take it: free the claim (kept, with its attempt count) for the next delivery."""
        try:
            self.client.update_item(
                TableName=self._table,
                Key=send_key(send_id),
                UpdateExpression="SET #s = :released",
                ConditionExpression="#s = :claimed AND attempt = :attempt",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":released": {"S": "released"},
                    ":claimed": {"S": "claimed"},
                    ":attempt": {"N": str(attempt)},
                },
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a send: release") from exc

    def mark_sent(self, request: SendRequest, lead_id: str, ses_message_id: str, now: datetime) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": send_key(request.send_id),
                        "UpdateExpression": "SET #s = :sent, ses_message_id = :mid, sent_at = :now",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {
                            ":sent": {"S": "sent"},
                            ":mid": {"S": ses_message_id},
                            ":now": {"S": isoformat(now)},
                        },
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "PK": {"S": f"LEAD#{lead_id}"},
                            "SK": {"S": f"SENT#{isoformat(now)}#{request.send_id}"},
                            "template": {"S": request.template},
                        },
                    }
                },
                timeline_put(
                    self._table,
                    lead_id,
                    email_entry(request, "Email Sent", now, ses_message_id=ses_message_id),
                ),
            ]
        )

    def mark_test_sent(self, send_id: str, ses_message_id: str, now: datetime) -> None:
        """A test send went out: only its own record says so (no lead's timeline, cap or metrics)."""
        self.client.update_item(
            TableName=self._table,
            Key=send_key(send_id),
            UpdateExpression="SET #s = :sent, ses_message_id = :mid, sent_at = :now",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":sent": {"S": "sent"},
                ":mid": {"S": ses_message_id},
                ":now": {"S": isoformat(now)},
            },
        )

    def skip(self, request: SendRequest, lead_id: str, reason: str, now: datetime) -> None:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **send_key(request.send_id),
                                "status": {"S": "skipped"},
                                "lead_id": {"S": lead_id},
                                "template": {"S": request.template},
                                "reason": {"S": reason},
                                "skipped_at": {"S": isoformat(now)},
                            },
                            "ConditionExpression": "attribute_not_exists(PK) OR #s <> :sent",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {":sent": {"S": "sent"}},
                        }
                    },
                    timeline_put(
                        self._table, lead_id, email_entry(request, "Email Skipped", now, reason=reason)
                    ),
                ]
            )
        except ClientError as exc:
            _refused_by_condition(exc)

    def defer(self, request: SendRequest, lead_id: str, due: DueItem, reason: str, now: datetime) -> None:
        """One transaction: the send waits, its wake-up is scheduled, the timeline says why.

        Never over a send that went out meanwhile (a duplicate delivery racing the original).
        """
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **send_key(request.send_id),
                                "status": {"S": "deferred"},
                                "lead_id": {"S": lead_id},
                                "template": {"S": request.template},
                                "reason": {"S": reason},
                                "due_at": {"S": isoformat(due.due_at)},
                                "attempt": {"N": "0"},
                            },
                            # Never over a send that went out, or one skipped meanwhile (given up).
                            "ConditionExpression": (
                                "attribute_not_exists(PK) OR (#s <> :sent AND #s <> :skipped)"
                            ),
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {
                                ":sent": {"S": "sent"},
                                ":skipped": {"S": "skipped"},
                            },
                        }
                    },
                    {"Put": {"TableName": self._table, "Item": self._due.item(due)}},
                    timeline_put(
                        self._table,
                        lead_id,
                        email_entry(
                            request, "Email Deferred", now, reason=reason, until=isoformat(due.due_at)
                        ),
                    ),
                ]
            )
        except ClientError as exc:
            _refused_by_condition(exc)  # the send went out meanwhile: nothing to defer
            return
        self._due.lower_cursor(due)

    def recent_sends(self, lead_id: str, since: datetime) -> list[datetime]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :from AND :to",
            ExpressionAttributeValues={
                ":pk": {"S": f"LEAD#{lead_id}"},
                ":from": {"S": f"SENT#{isoformat(since)}"},
                ":to": {"S": "SENT#~"},
            },
            ConsistentRead=True,
        )
        return [
            datetime.fromisoformat(i["SK"]["S"].split("#")[1].replace("Z", "+00:00"))
            for i in response.get("Items", [])
        ]

    def send_lead(self, send_id: str) -> tuple[str, str] | None:
        item = self._get(send_key(send_id))
        if item is None:
            return None
        return item["lead_id"]["S"], item.get("template", {}).get("S", "")

    def note_failure(self, send_id: str, lead_id: str, reason: str) -> None:
        """Kept beside the send, so a message in the dead-letter queue can be explained."""
        self.client.update_item(
            TableName=self._table,
            Key=send_key(send_id),
            UpdateExpression=(
                "SET last_error = :reason, #s = if_not_exists(#s, :released),"
                " lead_id = if_not_exists(lead_id, :lead), attempt = if_not_exists(attempt, :zero)"
            ),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":reason": {"S": reason[:500]},
                ":released": {"S": "released"},
                ":lead": {"S": lead_id},
                ":zero": {"N": "0"},
            },
        )

    def ses_send_seen(self, send_id: str) -> str | None:
        item = self._get({"PK": {"S": f"SESSEND#{send_id}"}, "SK": {"S": "SESSEND"}})
        return item["ses_message_id"]["S"] if item else None

    # --- what SES events and unsubscribes change ---------------------------------
    def record_ses_send(self, send_id: str, ses_message_id: str) -> None:
        self.client.put_item(
            TableName=self._table,
            Item={
                "PK": {"S": f"SESSEND#{send_id}"},
                "SK": {"S": "SESSEND"},
                "ses_message_id": {"S": ses_message_id},
            },
        )

    def suppress(self, email: str, reason: str, at: datetime) -> None:
        self.client.put_item(
            TableName=self._table,
            Item={
                **suppression_key(email),
                "reason": {"S": reason},
                "at": {"S": isoformat(at)},
                "source": {"S": "ses"},
                # Listed with the rest of the suppression list (kindling.adapters.import_store).
                "GSI1PK": {"S": "SUPPRESSED"},
                "GSI1SK": {"S": email},
            },
        )

    def update_lead(self, lead_id: str, expression: str, values: dict[str, Any]) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a send: update lead") from exc

    def add_timeline(self, lead_id: str, entry: TimelineEntry) -> None:
        self.client.transact_write_items(TransactItems=[timeline_put(self._table, lead_id, entry)])

    def count_soft_bounce(self, event_id: str, lead_id: str) -> None:
        """Counted once per SES event, however often it is delivered."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {"PK": {"S": f"SESEVT#{event_id}"}, "SK": {"S": "SESEVT"}},
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": lead_key(lead_id),
                            "UpdateExpression": "ADD soft_bounces :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            _refused_by_condition(exc)


def _refused_by_condition(exc: ClientError) -> None:
    """Swallow a transaction that our own condition refused (its first item); raise anything else.

    A cancellation for a conflicting write or throttling is not "already done": the
    message must be retried, or the work would be lost.
    """
    if aws.error_code(exc) == "TransactionCanceledException":
        reasons = aws.cancellation_reasons(exc)
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return
        raise Retryable(f"DynamoDB cancelled the write: {reasons}") from exc
    raise exc
