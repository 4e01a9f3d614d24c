"""SalesStore on the single table: CRM identities, stage moves with history, quiet periods, and the
CRM events that matched no lead yet."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.dynamo import DynamoLeadStore, lead_key
from kindling.adapters.email_store import timeline_put
from kindling.adapters.items import STAGE_INDEX_SET, stage_index_values
from kindling.crm.unmatched import UnmatchedCrmEvent
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import Identity, Lead, TimelineEntry, read_lead


class DynamoSalesStore(aws.TableAdapter):
    def __init__(self, table_name: str, client: Any = None) -> None:
        super().__init__(table_name, client)
        self._leads = DynamoLeadStore(table_name, client)

    def find_lead(self, email: str | None, crm_identity: str | None) -> Lead | None:
        wanted = []
        if crm_identity:
            wanted.append(Identity("crm", crm_identity))
        normal = normalize_email(email)
        if normal:
            wanted.append(Identity("email", normal))
        owners = self._leads.owners(wanted)
        for identity in wanted:  # the CRM id first: it names the deal's person exactly
            if identity in owners:
                return self.lead(owners[identity])
        return None

    def link_crm_identity(self, lead_id: str, crm_identity: str) -> None:
        with contextlib.suppress(Conflict):  # already someone's: the first match keeps it
            self._leads.claim(Identity("crm", crm_identity), lead_id)
            # The lead knows its CRM ids too: a person's access export and erasure find them there.
            try:
                self.client.update_item(
                    TableName=self._table,
                    Key=lead_key(lead_id),
                    UpdateExpression="ADD crm_ids :id",
                    ConditionExpression="attribute_exists(PK)",
                    ExpressionAttributeValues={":id": {"SS": [crm_identity]}},
                )
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise aws.translate(exc, "sales state: crm id") from exc

    def lead(self, lead_id: str) -> Lead | None:
        view = read_lead(self._leads, lead_id, timeline_limit=0)
        return view.lead if view else None

    def move_stage(self, lead: Lead, to: str, why: str, by: str, at: datetime, move_id: str) -> bool:
        values: dict[str, Any] = {":to": {"S": to}, ":at": {"S": isoformat(at)}}
        if lead.stage is None:
            condition = "attribute_exists(PK) AND attribute_not_exists(stage)"
        else:
            condition = "attribute_exists(PK) AND stage = :from"
            values[":from"] = {"S": lead.stage}
        move = {
            "from": lead.stage,
            "to": to,
            "why": why,
            "by": by,
            "at": isoformat(at),
            "message_id": move_id,
        }
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": lead_key(lead.lead_id),
                            "UpdateExpression": f"SET stage = :to, stage_changed_at = :at, {STAGE_INDEX_SET}",
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": {**values, **stage_index_values(to)},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "PK": {"S": f"LEAD#{lead.lead_id}"},
                                "SK": {"S": f"STAGE#{isoformat(at)}#{move_id}"},
                                "move": {"S": json.dumps(move)},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if aws.error_code(exc) == "TransactionCanceledException":
                # The stage moved meanwhile (scoring, another CRM event): fail this message so
                # its redelivery reads the new stage, rather than drop the CRM's move.
                if aws.RETRY_REASONS.intersection(aws.cancellation_reasons(exc)):
                    raise aws.translate(exc, "sales store") from exc
                raise Conflict(f"stage of {lead.lead_id} moved meanwhile") from exc
            raise aws.translate(exc, "sales state: move stage") from exc
        return True

    def set_quiet(self, lead_id: str, quiet: bool, since: datetime | None) -> None:
        if quiet and since is not None:
            expression = "SET quiet = :q, quiet_since = :since"
            values: dict[str, Any] = {":q": {"BOOL": True}, ":since": {"S": isoformat(since)}}
        else:
            expression, values = "SET quiet = :q REMOVE quiet_since", {":q": {"BOOL": False}}
        self.client.update_item(
            TableName=self._table,
            Key=lead_key(lead_id),
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )

    def touch_crm(self, lead_id: str, at: datetime) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="SET last_crm_activity_at = :t",
                ConditionExpression="attribute_not_exists(last_crm_activity_at) OR last_crm_activity_at < :t",
                ExpressionAttributeValues={":t": {"S": isoformat(at)}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "sales state: touch crm") from exc

    def set_owner(self, lead_id: str, owner: str) -> None:
        self.client.update_item(
            TableName=self._table,
            Key=lead_key(lead_id),
            UpdateExpression="SET #o = :o",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":o": {"S": owner}},
        )

    def add_timeline(self, lead_id: str, entry: TimelineEntry) -> None:
        self.client.transact_write_items(TransactItems=[timeline_put(self._table, lead_id, entry)])


class DynamoUnmatchedStore(aws.TableAdapter):
    """CRM events that matched no lead, on the single table (kept 90 days, filtered by their TTL).

    CRMUNMATCHED       / <occurred or received>#<event id>   the list the admin API pages through
    CRMWAIT#<key>      / <event id>                          the same event, under an email or CRM id
    """

    LIST_PK = "CRMUNMATCHED"

    @staticmethod
    def list_sk(event: UnmatchedCrmEvent) -> str:
        return f"{isoformat(event.occurred_at or event.received_at)}#{event.event_id}"

    def keep(self, event: UnmatchedCrmEvent) -> None:
        """The listing and every waiting key in one transaction: never listed but not waiting."""
        body = {"S": event.model_dump_json()}
        expires = {"N": str(int(event.expires_at.timestamp()))}
        puts = [
            {
                "PK": {"S": self.LIST_PK},
                "SK": {"S": self.list_sk(event)},
                "event": body,
                "expires_at": expires,
            }
        ]
        puts += [
            {"PK": {"S": f"CRMWAIT#{key}"}, "SK": {"S": event.event_id}, "event": body, "expires_at": expires}
            for key in event.keys
        ]
        self.client.transact_write_items(
            TransactItems=[{"Put": {"TableName": self._table, "Item": item}} for item in puts]
        )

    def waiting_for(self, key: str, now: datetime) -> list[UnmatchedCrmEvent]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CRMWAIT#{key}"}},
            ConsistentRead=True,
        )
        return _live_events(response.get("Items", []), now)

    def forget(self, event: UnmatchedCrmEvent) -> None:
        keys = [{"PK": {"S": self.LIST_PK}, "SK": {"S": self.list_sk(event)}}]
        keys += [{"PK": {"S": f"CRMWAIT#{key}"}, "SK": {"S": event.event_id}} for key in event.keys]
        self.client.transact_write_items(
            TransactItems=[{"Delete": {"TableName": self._table, "Key": key}} for key in keys]
        )

    def listing(
        self, now: datetime, limit: int = 50, after: str | None = None
    ) -> tuple[list[UnmatchedCrmEvent], str | None]:
        """Newest first; ``after`` is the cursor the previous page returned."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": self.LIST_PK}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = {"PK": {"S": self.LIST_PK}, "SK": {"S": after}}
        response = self.client.query(**kwargs)
        last = response.get("LastEvaluatedKey")
        return _live_events(response.get("Items", []), now), (last["SK"]["S"] if last else None)


def _live_events(items: list[dict[str, Any]], now: datetime) -> list[UnmatchedCrmEvent]:
    """The stored events whose time to live has not passed (DynamoDB deletes expired ones late)."""
    return [
        UnmatchedCrmEvent.model_validate_json(item["event"]["S"])
        for item in items
        if int(item.get("expires_at", {}).get("N", "0")) > now.timestamp()
    ]
