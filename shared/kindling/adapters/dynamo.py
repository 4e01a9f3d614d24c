"""The single table: item codecs and the lead store.

Keys (PK / SK):
  LEAD#<id>            / PROFILE                 the lead profile
  LEAD#<id>            / EVT#<time>#<message id> one timeline entry
  IDENT#<kind>#<value> / IDENT                   which lead owns an identity (user, email, anon)
  MSG#<message id>     / MSG                     a message already applied (dedup, TTL)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict, Duplicate, Retryable
from kindling.leads.profiles import Identity, Lead, ProfileChange, TimelineEntry

#: Longer than the bus archive keeps events, so a replay from the archive dedups too.
DEDUP_RETENTION = timedelta(days=400)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)  # one sortable form, so string comparisons order by time
    return str(value)


def to_attribute(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute (floats become Decimals, as DynamoDB needs)."""
    plain = json.loads(json.dumps(value, default=_encode), parse_float=Decimal)
    return _serializer.serialize(plain)


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in values.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def lead_key(lead_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "PROFILE"}}


def identity_key(identity: Identity) -> dict[str, Any]:
    return {"PK": {"S": f"IDENT#{identity.kind}#{identity.value}"}, "SK": {"S": "IDENT"}}


def timeline_sk(entry: TimelineEntry) -> str:
    return f"EVT#{isoformat(entry.timestamp)}#{entry.message_id}"


class DynamoLeadStore(aws.TableAdapter):
    # --- reads -----------------------------------------------------------------
    def owners(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        """One consistent BatchGetItem for all the identities an event names."""
        wanted = list(dict.fromkeys(identities))
        if not wanted:
            return {}
        by_key = {(f"IDENT#{i.kind}#{i.value}"): i for i in wanted}
        request: dict[str, Any] = {
            self._table: {
                "Keys": [identity_key(i) for i in wanted],
                "ConsistentRead": True,
                "ProjectionExpression": "PK, lead_id",
            }
        }
        found: dict[Identity, str] = {}
        for _ in range(8):
            try:
                response = self.client.batch_get_item(RequestItems=request)
            except ClientError as exc:
                raise aws.translate(exc, "a lead") from exc
            for item in response.get("Responses", {}).get(self._table, []):
                found[by_key[item["PK"]["S"]]] = item["lead_id"]["S"]
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise Retryable("DynamoDB left identity lookups unprocessed")

    def lead_for_email(self, email: str) -> str | None:
        item = self._get(identity_key(Identity("email", email)), projection="lead_id")
        return item["lead_id"] if item else None

    def get(self, lead_id: str) -> Lead | None:
        item = self._get(lead_key(lead_id))
        if item is None:
            return None
        item.pop("PK")
        item.pop("SK")
        return Lead.model_validate(item)

    def timeline(self, lead_id: str, limit: int) -> list[TimelineEntry]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :evt)",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{lead_id}"}, ":evt": {"S": "EVT#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [TimelineEntry.model_validate(from_item(i)) for i in response.get("Items", [])]

    def _get(self, key: dict[str, Any], projection: str | None = None) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"TableName": self._table, "Key": key, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
        try:
            response = self.client.get_item(**kwargs)
        except ClientError as exc:
            raise aws.translate(exc, "a lead") from exc
        item = response.get("Item")
        return from_item(item) if item else None

    # --- writes ----------------------------------------------------------------
    def create(self, lead: Lead) -> None:
        profile = lead.model_dump(exclude_none=True)
        sets = {key: profile.pop(key, None) for key in ("anonymous_ids", "tags", "segments")}
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {**lead_key(lead.lead_id), **to_item(profile)},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
        ]
        for key, values in sets.items():
            if values:  # string sets (ADD and DELETE work on them); DynamoDB has no empty set
                actions[0]["Put"]["Item"][key] = {"SS": list(values)}
        for identity in lead.identities:
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**identity_key(identity), "lead_id": {"S": lead.lead_id}},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        self._transact(actions)

    def claim(self, identity: Identity, lead_id: str) -> None:
        try:
            self.client.put_item(
                TableName=self._table,
                Item={**identity_key(identity), "lead_id": {"S": lead_id}},
                ConditionExpression="attribute_not_exists(PK) OR lead_id = :me",
                ExpressionAttributeValues={":me": {"S": lead_id}},
            )
        except ClientError as exc:
            raise aws.translate(exc, "a lead") from exc

    def append(self, lead_id: str, entry: TimelineEntry, change: ProfileChange) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        adds: list[str] = []
        for index, (trait, value) in enumerate(change.traits.items()):
            names[f"#t{index}"] = trait
            values[f":t{index}"] = to_attribute(value)
            sets.append(f"traits.#t{index} = :t{index}")
        for index, (trait, text) in enumerate(change.first_touch.items()):
            if trait in change.traits:
                continue  # an identify that names its own first touch wins
            names[f"#f{index}"] = trait
            values[f":f{index}"] = {"S": text}
            sets.append(f"traits.#f{index} = if_not_exists(traits.#f{index}, :f{index})")
        for attribute in ("email", "user_id", "invalid_email"):
            value = getattr(change, attribute)
            if value:
                values[f":{attribute}"] = {"S": value}
                sets.append(f"{attribute} = :{attribute}")
        if change.anonymous_id:
            values[":anon"] = {"SS": [change.anonymous_id]}
            adds.append("anonymous_ids :anon")
        update = " ".join(
            part
            for part in (f"SET {', '.join(sets)}" if sets else "", f"ADD {', '.join(adds)}" if adds else "")
            if part
        )
        dedup = {
            "PK": {"S": f"MSG#{entry.message_id}"},
            "SK": {"S": "MSG"},
            "lead_id": {"S": lead_id},
            "expires_at": {"N": str(int((entry.received_at + DEDUP_RETENTION).timestamp()))},
        }
        stored = {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": timeline_sk(entry)}}
        stored.update(to_item(entry.model_dump()))
        profile_guard: dict[str, Any] = {
            "TableName": self._table,
            "Key": lead_key(lead_id),
            "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(merged_into)",
        }
        if update:
            profile_action = {"Update": {**profile_guard, "UpdateExpression": update}}
            if names:
                profile_action["Update"]["ExpressionAttributeNames"] = names
            if values:
                profile_action["Update"]["ExpressionAttributeValues"] = values
        else:
            profile_action = {"ConditionCheck": profile_guard}
        actions = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dedup,
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {"Put": {"TableName": self._table, "Item": stored}},
            profile_action,
        ]
        try:
            self._transact(actions)
        except _Cancelled as cancelled:
            if cancelled.failed(0):
                raise Duplicate(entry.message_id) from None
            raise Conflict(f"lead {lead_id} changed under us") from None

    def touch(self, lead_id: str, active_at: datetime) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="SET last_activity_at = :t",
                ConditionExpression=(
                    "attribute_exists(PK)"
                    " AND (attribute_not_exists(last_activity_at) OR last_activity_at < :t)"
                ),
                ExpressionAttributeValues={":t": {"S": isoformat(active_at)}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a lead") from exc

    def mark_merged(self, lead_id: str, into: str) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="SET merged_into = :into",
                ConditionExpression=(
                    "attribute_exists(PK) AND (attribute_not_exists(merged_into) OR merged_into = :into)"
                ),
                ExpressionAttributeValues={":into": {"S": into}},
            )
        except ClientError as exc:
            raise aws.translate(exc, "a lead") from exc

    def repoint(self, identity: Identity, from_lead: str, to_lead: str) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=identity_key(identity),
                UpdateExpression="SET lead_id = :to",
                ConditionExpression="lead_id = :from OR lead_id = :to",
                ExpressionAttributeValues={":from": {"S": from_lead}, ":to": {"S": to_lead}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a lead") from exc

    def move_timeline(self, from_lead: str, to_lead: str) -> None:
        """Copy each entry first and delete it after, so a crash between them loses nothing."""
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :evt)",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{from_lead}"}, ":evt": {"S": "EVT#"}},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                self.client.put_item(TableName=self._table, Item={**item, "PK": {"S": f"LEAD#{to_lead}"}})
                self.client.delete_item(TableName=self._table, Key={"PK": item["PK"], "SK": item["SK"]})

    def absorb(self, lead_id: str, other: Lead) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        for index, (trait, value) in enumerate(other.traits.items()):
            names[f"#t{index}"] = trait
            values[f":t{index}"] = to_attribute(value)
            sets.append(f"traits.#t{index} = if_not_exists(traits.#t{index}, :t{index})")
        for attribute in ("email", "user_id"):
            value = getattr(other, attribute)
            if value:
                values[f":{attribute}"] = {"S": value}
                sets.append(f"{attribute} = if_not_exists({attribute}, :{attribute})")
        expression = f"SET {', '.join(sets)}" if sets else ""
        if other.anonymous_ids:
            values[":anon"] = {"SS": list(other.anonymous_ids)}
            expression += " ADD anonymous_ids :anon"
        if expression:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "Key": lead_key(lead_id),
                "UpdateExpression": expression.strip(),
                "ExpressionAttributeValues": values,
            }
            if names:
                kwargs["ExpressionAttributeNames"] = names
            self.client.update_item(**kwargs)
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="SET first_seen_at = :t",
                ConditionExpression="first_seen_at > :t",
                ExpressionAttributeValues={":t": {"S": isoformat(other.first_seen_at)}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "a lead") from exc
        if other.last_activity_at is not None:
            self.touch(lead_id, other.last_activity_at)

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            translated = aws.translate(exc, "a lead: transaction")
            if isinstance(translated, Conflict):  # a condition of ours: the caller asks which one
                raise _Cancelled(aws.cancellation_reasons(exc)) from exc
            raise translated from exc


class _Cancelled(Conflict):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"
