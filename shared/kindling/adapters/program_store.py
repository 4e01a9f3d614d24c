"""ProgramStore on the single table.

LEAD#<id>     / ENROLL#<enrollment id>   an enrollment's state (``state``: its JSON, zlib-compressed,
                                         as every save pays for the item's size), guarded by its token
PROGRAM#<id>  / STATE                    whether a program is paused
SEND#<send id> / SEND                    the sender's record of a send (read; given up when overdue)
held enrollments carry GSI1PK = HELD#<program>, so resuming reads only those
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore, lead_key
from kindling.adapters.items import STAGE_INDEX_SET, json_text, packed_json, send_key, stage_index_values
from kindling.adapters.score_store import DynamoScoreStore
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict
from kindling.leads.profiles import read_lead
from kindling.programs.due import DueItem
from kindling.programs.engine import SEND_GIVE_UP_AFTER, Enrollment, LeadContext, SendResult, UpdateLead
from kindling.programs.overview import enrollment_index_key, enrollment_index_sort
from kindling.scoring.config import Decay

#: How long a wake-up's key is remembered after it fell due: by then the minute tick has released
#: and deleted it (a scheduler that is days behind leaves a stale one to an erasure, which holds
#: only ids, and drops it as stale when it runs).
DUE_KEY_MEMORY = timedelta(days=1)
#: The most wake-up keys an enrollment remembers.
MAX_DUE_KEYS = 10
#: A wake-up due sooner than this after it is scheduled could be released by a running tick
#: between two writes: it is saved with its state in one transaction.
SAVE_TOGETHER_WITHIN = timedelta(minutes=2)


def enrollment_key(lead_id: str, enrollment_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": f"ENROLL#{enrollment_id}"}}


def enrollment_of(item: dict[str, Any]) -> Enrollment:
    """An enrollment from its item (one written before its state was packed holds plain JSON)."""
    return Enrollment.model_validate_json(json_text(item["state"]))


def remembered_due_keys(keys: list[str], now: datetime) -> list[str]:
    """The wake-up keys (``PK|SK``, the SK starting with the due time) that may still be stored."""
    kept = []
    for key in keys:
        _, _, sort_key = key.partition("|")
        try:
            due_at = datetime.fromisoformat(sort_key.split("#", 1)[0].replace("Z", "+00:00"))
        except ValueError:
            kept.append(key)  # not a time-keyed wake-up: kept, to be safe
            continue
        if due_at >= now - DUE_KEY_MEMORY:
            kept.append(key)
    return kept[-MAX_DUE_KEYS:]


class DynamoProgramStore(aws.TableAdapter):
    def __init__(
        self,
        table_name: str,
        client: Any = None,
        decay: Callable[[], Decay | None] = lambda: None,
        event_window_days: Callable[[], int] = lambda: 0,
    ) -> None:
        super().__init__(table_name, client)
        self._leads = DynamoLeadStore(table_name, client)
        self._scores = DynamoScoreStore(table_name, client)
        self._due = DynamoDueStore(table_name, client)
        self._decay = decay
        self._event_window_days = event_window_days

    def context(self, lead_id: str, now: datetime) -> LeadContext | None:
        view = read_lead(self._leads, lead_id, timeline_limit=0)
        if view is None:
            return None
        lead = view.lead
        score = self._scores.score(lead.lead_id)
        return LeadContext(
            lead_id=lead.lead_id,
            email=lead.email,
            traits=lead.traits,
            stage=lead.stage,
            grade=score.grade if score else "D",
            engagement=score.engagement_at(now, self._decay()) if score else 0.0,
            segments=set(lead.segments),
            as_of=now,
            recent_events=self._recent_events(lead.lead_id, now),
            quiet=lead.quiet,
        )

    def _recent_events(self, lead_id: str, now: datetime) -> list[tuple[str, datetime]]:
        """The lead's events as far back as any condition looks (nothing when none does)."""
        days = self._event_window_days()
        if days <= 0:
            return []
        paginator = self.client.get_paginator("query")
        found = []
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :since AND :end",
            ExpressionAttributeValues={
                ":pk": {"S": f"LEAD#{lead_id}"},
                ":since": {"S": f"EVT#{isoformat(now - timedelta(days=days))}"},
                ":end": {"S": "EVT#~"},
            },
            ProjectionExpression="#e, #ty, #ts",
            ExpressionAttributeNames={"#e": "event", "#ty": "type", "#ts": "timestamp"},
        ):
            for item in page.get("Items", []):
                name = item.get("event", {}).get("S") or item["type"]["S"]
                found.append((name, datetime.fromisoformat(item["timestamp"]["S"].replace("Z", "+00:00"))))
        return found

    def schedule(self, item: DueItem) -> None:
        self._due.put_due(item)

    def enrollments(self, lead_id: str) -> list[Enrollment]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{lead_id}"}, ":prefix": {"S": "ENROLL#"}},
            ConsistentRead=True,
        )
        return [enrollment_of(i) for i in response.get("Items", [])]

    def get(self, lead_id: str, enrollment_id: str) -> Enrollment | None:
        item = self.client.get_item(
            TableName=self._table, Key=enrollment_key(lead_id, enrollment_id), ConsistentRead=True
        ).get("Item")
        return enrollment_of(item) if item else None

    def _item(self, enrollment: Enrollment, due: DueItem | None = None) -> dict[str, Any]:
        if due is not None:
            # In place: the caller goes on from this enrollment (a new one is run at once), and the
            # next save must still name this wake-up.
            stored = self._due.item(due)
            key = f"{stored['PK']['S']}|{stored['SK']['S']}"
            if key not in enrollment.due_keys:
                now = due.scheduled_at or due.due_at
                enrollment.due_keys[:] = remembered_due_keys([*enrollment.due_keys, key], now)
        item: dict[str, Any] = {
            **enrollment_key(enrollment.lead_id, enrollment.enrollment_id),
            "state": packed_json(enrollment.model_dump_json()),
            "token": {"S": enrollment.token},
            "program_id": {"S": enrollment.program_id},
            "status": {"S": enrollment.status},
        }
        if enrollment.status == "held":
            item["GSI1PK"] = {"S": f"HELD#{enrollment.program_id}"}
            item["GSI1SK"] = {"S": enrollment.enrollment_id}
        # Where the program's leads are, for the console (kindling.programs.overview).
        item["GSI2PK"] = {"S": enrollment_index_key(enrollment.program_id)}
        item["GSI2SK"] = {
            "S": enrollment_index_sort(enrollment.status, enrollment.step_id, enrollment.enrollment_id)
        }
        item["lead_id"] = {"S": enrollment.lead_id}
        return item

    def _due_put(self, due: DueItem) -> dict[str, Any]:
        return {"Put": {"TableName": self._table, "Item": self._due.item(due)}}

    def create(self, enrollment: Enrollment, due: DueItem) -> bool:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._item(enrollment, due),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    self._due_put(due),
                ]
            )
        except ClientError as exc:
            if aws.error_code(exc) == "TransactionCanceledException":
                reasons = aws.cancellation_reasons(exc)
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False  # the same trigger, delivered again
                if aws.RETRY_REASONS.intersection(aws.cancellation_reasons(exc)):
                    raise aws.translate(exc, "program store") from exc
                raise Conflict(f"enrolling {enrollment.enrollment_id}: {reasons}") from exc
            raise aws.translate(exc, "an enrollment: create") from exc
        self._due.lower_cursor(due)
        return True

    def save(self, enrollment: Enrollment, expected_token: str, due: DueItem | None) -> None:
        """The new state if its token has not moved (``Conflict`` if it has), with its wake-up.

        A wake-up due later than ``SAVE_TOGETHER_WITHIN`` (a wait, a send's check an hour on)
        is written first, then the state, without a transaction (half the write units): a
        wake-up names the token of the state it wakes, so if the state's write fails or never
        happens, the wake-up finds another token when it falls due and is dropped as stale (and
        one whose state lost the race is deleted at once). The other order could lose a wake-up.
        One due sooner could be released by a tick running between the two writes, find the old
        token and be dropped before the state lands: it is written with the state, together.
        """
        item = self._item(enrollment, due)
        condition = {
            "ConditionExpression": "#t = :expected",
            "ExpressionAttributeNames": {"#t": "token"},
            "ExpressionAttributeValues": {":expected": {"S": expected_token}},
        }
        if due is not None and (
            due.scheduled_at is None or due.due_at <= due.scheduled_at + SAVE_TOGETHER_WITHIN
        ):
            self._save_together(enrollment, item, condition, due)
            return
        if due is not None:
            self._due.put_due(due)  # and the tick's cursor, so even a stale one is released in time
        try:
            self.client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                if due is not None:  # never woken for anything: gone now, not left for an erasure
                    self._due.remove_due(due)
                raise Conflict(f"enrollment {enrollment.enrollment_id} moved on meanwhile") from exc
            raise aws.translate(exc, "an enrollment: save") from exc

    def _save_together(
        self, enrollment: Enrollment, item: dict[str, Any], condition: dict[str, Any], due: DueItem
    ) -> None:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": item, **condition}},
                    self._due_put(due),
                ]
            )
        except ClientError as exc:
            if aws.error_code(exc) == "TransactionCanceledException":
                if aws.RETRY_REASONS.intersection(aws.cancellation_reasons(exc)):
                    raise aws.translate(exc, "program store") from exc
                raise Conflict(f"enrollment {enrollment.enrollment_id} moved on meanwhile") from exc
            raise aws.translate(exc, "an enrollment: save") from exc
        self._due.lower_cursor(due)

    def set_segments(
        self, lead_id: str, segments: set[str], previous: set[str] | None = None, at: datetime | None = None
    ) -> None:
        """The lead's segments, and a membership item per segment entered (removed when left): the
        console lists a segment's members, latest first, from ``SEGMENT#<id>`` without a scan."""
        for entered in sorted(segments - (previous or set())):
            self.client.put_item(
                TableName=self._table,
                Item={
                    "PK": {"S": f"SEGMENT#{entered}"},
                    "SK": {"S": lead_id},
                    "GSI2PK": {"S": f"MEMBERS#{entered}"},
                    "GSI2SK": {"S": f"{isoformat(at) if at else ''}#{lead_id}"},
                    "lead_id": {"S": lead_id},
                },
            )
        for left in sorted((previous or set()) - segments):
            self.client.delete_item(
                TableName=self._table, Key={"PK": {"S": f"SEGMENT#{left}"}, "SK": {"S": lead_id}}
            )
        # "segments" is a DynamoDB reserved word: always through a name placeholder.
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": lead_key(lead_id),
            "ExpressionAttributeNames": {"#seg": "segments"},
        }
        if segments:
            kwargs["UpdateExpression"] = "SET #seg = :s"
            kwargs["ExpressionAttributeValues"] = {":s": {"SS": sorted(segments)}}
        else:
            kwargs["UpdateExpression"] = "REMOVE #seg"
        self.client.update_item(**kwargs)

    def update_lead(
        self, lead_id: str, update: UpdateLead, enrollment_id: str, now: datetime
    ) -> tuple[bool, str | None]:
        """Apply a program's update step; (whether the stage moved, the stage it moved from)."""
        if update.add_tags:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="ADD tags :t",
                ExpressionAttributeValues={":t": {"SS": list(update.add_tags)}},
            )
        if update.remove_tags:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="DELETE tags :t",
                ExpressionAttributeValues={":t": {"SS": list(update.remove_tags)}},
            )
        if update.stage is not None:
            lead = self._leads.get(lead_id)
            if lead is None or lead.stage == update.stage:
                return False, None
            move = {
                "from": lead.stage,
                "to": update.stage,
                "why": f"program step {update.step_id}",
                "by": f"program:{enrollment_id.split('.', 1)[0]}",
                "at": isoformat(now),
                "message_id": f"{enrollment_id}.{update.step_id}",
            }
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": lead_key(lead_id),
                            "UpdateExpression": f"SET stage = :to, stage_changed_at = :at, {STAGE_INDEX_SET}",
                            "ExpressionAttributeValues": {
                                ":to": {"S": update.stage},
                                ":at": {"S": isoformat(now)},
                                **stage_index_values(update.stage),
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "PK": {"S": f"LEAD#{lead_id}"},
                                "SK": {"S": f"STAGE#{isoformat(now)}#{enrollment_id}.{update.step_id}"},
                                "move": {"S": json.dumps(move)},
                            },
                        }
                    },
                ]
            )
            return True, lead.stage
        return False, None

    # --- the sends enrollments wait for ------------------------------------------------
    def send_result(self, send_id: str) -> SendResult | None:
        item = self.client.get_item(TableName=self._table, Key=send_key(send_id), ConsistentRead=True).get(
            "Item"
        )
        return _send_result(item) if item else None

    def give_up_send(self, send_id: str, lead_id: str, now: datetime) -> SendResult | None:
        """Skipped as given up, unless it went out, was skipped, or is being sent (a fresh claim)."""
        try:
            self.client.update_item(
                TableName=self._table,
                Key=send_key(send_id),
                UpdateExpression="SET #s = :skipped, reason = :why, skipped_at = :now, lead_id = :lead",
                ConditionExpression=(
                    "attribute_not_exists(PK) OR #s IN (:released, :deferred) "
                    "OR (#s = :claimed AND claimed_at < :stale)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":skipped": {"S": "skipped"},
                    ":why": {"S": "given_up"},
                    ":now": {"S": isoformat(now)},
                    ":lead": {"S": lead_id},
                    ":released": {"S": "released"},
                    ":deferred": {"S": "deferred"},
                    ":claimed": {"S": "claimed"},
                    ":stale": {"S": isoformat(now - SEND_GIVE_UP_AFTER)},
                },
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a send: give up") from exc
            return self.send_result(send_id)
        return SendResult(status="given_up", at=now, reason="given_up")

    # --- pausing programs ------------------------------------------------------------
    def paused(self, program_id: str) -> bool:
        item = self.client.get_item(
            TableName=self._table, Key={"PK": {"S": f"PROGRAM#{program_id}"}, "SK": {"S": "STATE"}}
        ).get("Item")
        return bool(item and item.get("paused", {}).get("BOOL"))

    def set_paused(self, program_id: str, paused: bool) -> None:
        self.client.put_item(
            TableName=self._table,
            Item={"PK": {"S": f"PROGRAM#{program_id}"}, "SK": {"S": "STATE"}, "paused": {"BOOL": paused}},
        )

    def held(self, program_id: str) -> list[Enrollment]:
        paginator = self.client.get_paginator("query")
        found = []
        for page in paginator.paginate(
            TableName=self._table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :held",
            ExpressionAttributeValues={":held": {"S": f"HELD#{program_id}"}},
        ):
            found += [enrollment_of(i) for i in page.get("Items", [])]
        return found


def _send_result(item: dict[str, Any]) -> SendResult | None:
    """The sender's record as an outcome a send step can act on; None while it is in flight."""

    def when(name: str) -> datetime | None:
        value = item.get(name, {}).get("S")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    status, reason = item["status"]["S"], item.get("reason", {}).get("S")
    if status == "sent":
        sent_at = when("sent_at")
        return SendResult(status="sent", at=sent_at) if sent_at else None
    if status == "skipped":
        # Older records of a skip carry no time: the step then completes when it learns of it.
        status_ = "given_up" if reason == "given_up" else "skipped"
        return SendResult(status=status_, at=when("skipped_at"), reason=reason)
    if status == "deferred":
        until = when("due_at")
        return SendResult(status="deferred", at=until, reason=reason, until=until) if until else None
    return None
