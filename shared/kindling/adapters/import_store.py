"""ImportStore and the suppression list on the single table.

SUPPRESS#<email> / SUPPRESS            an address never mailed: reason, when, source, by whom;
                                       GSI1PK = SUPPRESSED, GSI1SK = <email> lists them in order
SUPPRESSLOG#<email> / <time>#removed   a removal, with who, when and why (kept after the removal)
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.dynamo import DynamoLeadStore, lead_key, to_item
from kindling.adapters.email_store import timeline_put
from kindling.adapters.items import (
    STAGE_INDEX_SET,
    identity_item,
    stage_index_values,
    suppression_key,
    to_attribute,
)
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict, NotFound
from kindling.leads.importing import Suppression
from kindling.leads.profiles import Identity, Lead, TimelineEntry, read_lead

LISTED = "SUPPRESSED"


def suppression_item(suppression: Suppression) -> dict[str, Any]:
    item = {
        **suppression_key(suppression.email),
        "reason": {"S": suppression.reason},
        "at": {"S": isoformat(suppression.at)},
        "source": {"S": suppression.source},
        "GSI1PK": {"S": LISTED},
        "GSI1SK": {"S": suppression.email},
    }
    if suppression.by:
        item["by"] = {"S": suppression.by}
    return item


def _suppression(item: dict[str, Any]) -> Suppression:
    return Suppression(
        email=item["PK"]["S"].removeprefix("SUPPRESS#"),
        reason=item["reason"]["S"],
        at=datetime.fromisoformat(item["at"]["S"].replace("Z", "+00:00")) if "at" in item else datetime.min,
        source=item.get("source", {}).get("S", "ses"),
        by=item.get("by", {}).get("S"),
    )


class DynamoImportStore(aws.TableAdapter):
    def __init__(self, table_name: str, client: Any = None) -> None:
        super().__init__(table_name, client)
        self._leads = DynamoLeadStore(table_name, client)

    # --- leads ---------------------------------------------------------------------------------
    def find(self, email: str | None, user_id: str | None) -> Lead | None:
        wanted = ([Identity("email", email)] if email else []) + (
            [Identity("user", user_id)] if user_id else []
        )
        owners = self._leads.owners(wanted)
        for identity in wanted:  # the email first: it is what a person is known by
            if identity in owners:
                view = read_lead(self._leads, owners[identity], timeline_limit=0)
                if view is not None:
                    return view.lead
        return None

    def create(self, lead: Lead, entry: TimelineEntry) -> None:
        profile = lead.model_dump(exclude_none=True)
        for key in ("anonymous_ids", "tags", "segments"):
            profile.pop(key, None)
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {**lead_key(lead.lead_id), **to_item(profile)},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            timeline_put(self._table, lead.lead_id, entry),
        ]
        if lead.stage:  # listed by stage for the console
            actions[0]["Put"]["Item"]["GSI2PK"] = {"S": f"STAGE#{lead.stage}"}
            actions[0]["Put"]["Item"]["GSI2SK"] = {"S": isoformat(lead.created_at)}
        actions += [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": identity_item(identity, lead.lead_id),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            for identity in lead.identities
        ]
        self._transact(actions)

    def update(
        self,
        lead: Lead,
        traits: dict[str, Any],
        stage: str | None,
        unsubscribe: bool,
        identities: list[tuple[str, str]],
        entry: TimelineEntry,
        at: datetime,
    ) -> None:
        claimed = []
        for kind, value in identities:  # another lead's address or id stays theirs (no merge here)
            with contextlib.suppress(Conflict):
                self._leads.claim(Identity("email" if kind == "email" else "user", value), lead.lead_id)
                claimed.append((kind, value))
        names: dict[str, str] = {}
        values: dict[str, Any] = {":at": {"S": isoformat(at)}}
        sets = []
        for index, (trait, value) in enumerate(traits.items()):
            names[f"#t{index}"] = trait
            values[f":t{index}"] = to_attribute(value)
            sets.append(f"traits.#t{index} = :t{index}")
        if stage:
            values[":stage"] = {"S": stage}
            values.update(stage_index_values(stage))
            sets += ["stage = :stage", "stage_changed_at = :at", STAGE_INDEX_SET]
        if unsubscribe:
            values[":yes"] = {"BOOL": True}
            sets += ["unsubscribed = :yes", "unsubscribed_at = :at"]
        for kind, value in claimed:
            attribute = "email" if kind == "email" else "user_id"
            values[f":{attribute}"] = {"S": value}
            sets.append(f"{attribute} = :{attribute}")
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": lead_key(lead.lead_id),
            "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(merged_into)",
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        if sets:
            update["UpdateExpression"] = "SET " + ", ".join(sets)
            self._transact([{"Update": update}, timeline_put(self._table, lead.lead_id, entry)])

    def unsubscribe(self, lead_id: str, at: datetime, entry: TimelineEntry) -> None:
        self._transact(
            [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": lead_key(lead_id),
                        "UpdateExpression": "SET unsubscribed = :yes, unsubscribed_at = :at",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeValues": {":yes": {"BOOL": True}, ":at": {"S": isoformat(at)}},
                    }
                },
                timeline_put(self._table, lead_id, entry),
            ]
        )

    def resubscribe(self, lead_id: str, at: datetime, entry: TimelineEntry) -> None:
        """Consent given again (the console records who, when and the person's words)."""
        self._transact(
            [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": lead_key(lead_id),
                        "UpdateExpression": "SET unsubscribed = :no REMOVE unsubscribed_at",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeValues": {":no": {"BOOL": False}},
                    }
                },
                timeline_put(self._table, lead_id, entry),
            ]
        )

    # --- the suppression list ------------------------------------------------------------------
    def suppression(self, email: str) -> Suppression | None:
        item = self.client.get_item(
            TableName=self._table, Key=suppression_key(email), ConsistentRead=True
        ).get("Item")
        return _suppression(item) if item else None

    def suppress(self, suppression: Suppression) -> bool:
        try:
            self.client.put_item(
                TableName=self._table,
                Item=suppression_item(suppression),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws.translate(exc, "the suppression list") from exc
        return True

    def remove_suppression(self, email: str, reason: str, by: str, at: datetime) -> Suppression:
        """Off the list, with a record of who removed it, when and why; ``NotFound`` if not on it."""
        current = self.suppression(email)
        if current is None:
            raise NotFound(f"{email} is not on the suppression list")
        removal = {
            "PK": {"S": f"SUPPRESSLOG#{email}"},
            "SK": {"S": f"{isoformat(at)}#removed"},
            "reason": {"S": reason},
            "by": {"S": by},
            "was": {"S": current.reason},
            "was_source": {"S": current.source},
        }
        self._transact(
            [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": suppression_key(email),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                {"Put": {"TableName": self._table, "Item": removal}},
            ]
        )
        return current

    def removals(self, email: str) -> list[dict[str, str]]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"SUPPRESSLOG#{email}"}},
        )
        return [
            {
                "at": i["SK"]["S"].split("#")[0],
                "reason": i["reason"]["S"],
                "by": i["by"]["S"],
                "was": i["was"]["S"],
            }
            for i in response.get("Items", [])
        ]

    def suppressions(
        self, limit: int = 100, after: str | None = None
    ) -> tuple[list[Suppression], str | None]:
        """The list in address order, a page at a time (``after``: the last address of the page before)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :listed",
            "ExpressionAttributeValues": {":listed": {"S": LISTED}},
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = {
                **suppression_key(after),
                "GSI1PK": {"S": LISTED},
                "GSI1SK": {"S": after},
            }
        response = self.client.query(**kwargs)
        found = [_suppression(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return found, (last["GSI1SK"]["S"] if last else None)

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            raise aws.translate(exc, "an import") from exc
