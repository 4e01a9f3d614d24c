"""SalesStore on the single table: CRM identities, stage moves with history, quiet periods."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.dynamo import DynamoLeadStore, lead_key
from kindling.adapters.email_store import timeline_put
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
                            "UpdateExpression": "SET stage = :to, stage_changed_at = :at",
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": values,
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
