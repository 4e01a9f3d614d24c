"""The single table: item codecs and the lead store.

Keys (PK / SK):
  LEAD#<id>            / PROFILE                 the lead profile
  LEAD#<id>            / EVT#<time>#<message id> one timeline entry
  IDENT#<kind>#<value> / IDENT                   which lead owns an identity (user, email, anon)

  MSG#<message id>     / MSG                     applied: only for messages that may come again
                                                 with another time (kindling's own events, and
                                                 events whose time was replaced on receipt); TTL

A message is applied once: its timeline entry, written last under a key made of its time and
message id, is the record that it was (no separate dedup item, no transaction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.items import (
    from_item,
    identity_item,
    identity_key,
    lead_key,
    timeline_sk,
    to_attribute,
    to_item,
)
from kindling.adapters.score_store import folded_actions, score_put, stage_actions, to_json
from kindling.kernel.bus import BusEvent
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict, Duplicate, Retryable
from kindling.leads.profiles import Identity, Lead, ProfileChange, TimelineEntry
from kindling.scoring.service import ScoreWrite


def _entry_key(lead_id: str, entry: TimelineEntry) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": timeline_sk(entry)}}


def _marker_key(entry: TimelineEntry) -> dict[str, Any]:
    return {"PK": {"S": f"MSG#{entry.message_id}"}, "SK": {"S": "MSG"}}


#: How long a message marker is kept: longer than the bus archive keeps events, so a replay dedups too.
DEDUP_RETENTION = timedelta(days=400)


class DynamoLeadStore(aws.TableAdapter):
    # --- reads -----------------------------------------------------------------
    def owners(self, identities: Sequence[Identity], consistent: bool = True) -> dict[Identity, str]:
        """One BatchGetItem for all the identities an event names."""
        wanted = list(dict.fromkeys(identities))
        if not wanted:
            return {}
        by_key = {(f"IDENT#{i.kind}#{i.value}"): i for i in wanted}
        request: dict[str, Any] = {
            self._table: {
                "Keys": [identity_key(i) for i in wanted],
                "ConsistentRead": consistent,
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

    def _get(
        self, key: dict[str, Any], projection: str | None = None, consistent: bool = True
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"TableName": self._table, "Key": key, "ConsistentRead": consistent}
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
        if lead.stage:  # listed by stage for the console (kindling.adapters.console_store)
            actions[0]["Put"]["Item"]["GSI2PK"] = {"S": f"STAGE#{lead.stage}"}
            actions[0]["Put"]["Item"]["GSI2SK"] = {"S": isoformat(lead.last_activity_at or lead.created_at)}
        for identity in lead.identities:
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": identity_item(identity, lead.lead_id),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        self._transact(actions)

    def claim(self, identity: Identity, lead_id: str) -> None:
        try:
            self.client.put_item(
                TableName=self._table,
                Item=identity_item(identity, lead_id),
                ConditionExpression="attribute_not_exists(PK) OR lead_id = :me",
                ExpressionAttributeValues={":me": {"S": lead_id}},
            )
        except ClientError as exc:
            raise aws.translate(exc, "a lead") from exc

    def applied(
        self, lead_id: str, entry: TimelineEntry, by_message: bool = False, consistent: bool = False
    ) -> list[BusEvent] | None:
        key = _marker_key(entry) if by_message else _entry_key(lead_id, entry)
        # Eventually consistent is enough before writing: a delivery racing this one is stopped by
        # the write's condition (and then reads consistently).
        item = self._get(key, projection="SK, emitted", consistent=consistent)
        if item is None:
            return None
        return [BusEvent.model_validate(e) for e in json.loads(item.get("emitted") or "[]")]

    def append(
        self,
        lead: Lead,
        entry: TimelineEntry,
        change: ProfileChange,
        active_at: datetime | None,
        score: ScoreWrite | None = None,
        by_message: bool = False,
    ) -> None:
        lead_id = lead.lead_id
        if not change.empty or active_at is not None:
            self._apply(lead_id, change, active_at)
        stored = {**_entry_key(lead_id, entry), **to_item(entry.model_dump())}
        emitted: dict[str, Any] = {}
        if score is not None and not score.replayed:
            stored["score"] = {"S": to_json(score.change_record)}
            if score.emitted:
                emitted = {"emitted": {"S": to_json([e.model_dump() for e in score.emitted])}}
                stored.update(emitted)
        # Keyed by time and message, the entry is the message's record of being applied, unless
        # the message may come again with another time (see ``ProfileService``): then a marker
        # keyed by the message alone is, written last.
        entry_put: dict[str, Any] = {"TableName": self._table, "Item": stored}
        if not by_message:
            entry_put["ConditionExpression"] = "attribute_not_exists(SK)"
        marker_put: dict[str, Any] | None = None
        if by_message:
            marker = {
                **_marker_key(entry),
                "lead_id": {"S": lead_id},
                "expires_at": {"N": str(int((entry.received_at + DEDUP_RETENTION).timestamp()))},
                **emitted,
            }
            marker_put = {
                "TableName": self._table,
                "Item": marker,
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        if score is not None and not score.replayed and score.atomic:
            # The marker too, when there is one: what the move produced is never without its record.
            self._commit_atomically(entry_put, score, marker_put)
        else:
            if score is not None and not score.replayed:
                # Points alone: the score first. It remembers this message, so a delivery after a
                # crash before the entry below finds it counted and does not add the points twice.
                try:
                    self.client.put_item(**score_put(score, self._table))
                except ClientError as exc:
                    if aws.error_code(exc) == "ConditionalCheckFailedException":
                        raise Conflict(f"the score of {lead_id} changed under us") from None
                    raise aws.translate(exc, f"the score of {lead_id}") from exc
            self._put_once(entry_put, entry.message_id)
            if marker_put is not None:
                self._put_once(marker_put, entry.message_id)
        # A merge marks the lead before it moves the timeline: if the mark is there now, the move
        # may have run before this entry was written, so the entry follows on its own. A lead with
        # both a userId and an email is never merged away (see ``can_merge``): no need to look.
        if lead.user_id and lead.email:
            return
        marked = self._get(lead_key(lead_id), projection="merged_into")
        if marked and marked.get("merged_into"):
            self._move_entry(stored, marked["merged_into"])

    def _put_once(self, put: dict[str, Any], message_id: str) -> None:
        try:
            self.client.put_item(**put)
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise Duplicate(message_id) from None
            raise aws.translate(exc, "a lead: timeline") from exc

    def _commit_atomically(
        self, entry_put: dict[str, Any], score: ScoreWrite, marker_put: dict[str, Any] | None
    ) -> None:
        """A stage move or a merge: score, stage, history, entry (and marker) at once or not at all."""
        actions = [
            {"Put": entry_put},
            {"Put": score_put(score, self._table)},
            *stage_actions(score, self._table),
            *folded_actions(score, self._table),
        ]
        if marker_put is not None:
            actions.append({"Put": marker_put})
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = aws.cancellation_reasons(exc)
            recorded = reasons[-1:] if marker_put is not None else reasons[:1]
            if recorded == ["ConditionalCheckFailed"]:
                raise Duplicate(score.message_id) from None
            # Another revision or stage won the race (Conflict: read again and score again), or
            # DynamoDB throttled or conflicted (Retryable: the message comes back later).
            raise aws.translate(exc, f"the score of {score.lead_id}") from exc

    def _apply(self, lead_id: str, change: ProfileChange, active_at: datetime | None) -> None:
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
        if change.anonymous_ids:
            values[":anon"] = {"SS": change.anonymous_ids}
            adds.append("anonymous_ids :anon")
        guard = "attribute_exists(PK) AND attribute_not_exists(merged_into)"
        while True:
            expression_sets = list(sets)
            expression_values = dict(values)
            condition = guard
            if active_at is not None:
                # GSI2SK: the stage listing's order (an item without GSI2PK is not listed).
                expression_sets += ["last_activity_at = :active", "GSI2SK = :active"]
                expression_values[":active"] = {"S": isoformat(active_at)}
                condition += " AND (attribute_not_exists(last_activity_at) OR last_activity_at < :active)"
            if not expression_sets and not adds:
                return
            update = " ".join(
                part
                for part in (
                    f"SET {', '.join(expression_sets)}" if expression_sets else "",
                    f"ADD {', '.join(adds)}" if adds else "",
                )
                if part
            )
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "Key": lead_key(lead_id),
                "UpdateExpression": update,
                "ConditionExpression": condition,
            }
            if names:
                kwargs["ExpressionAttributeNames"] = names
            if expression_values:
                kwargs["ExpressionAttributeValues"] = expression_values
            try:
                self.client.update_item(**kwargs)
                return
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise aws.translate(exc, "a lead") from exc
            now_stored = self._get(lead_key(lead_id), projection="PK, merged_into")
            if now_stored is None or now_stored.get("merged_into") or active_at is None:
                raise Conflict(f"lead {lead_id} changed under us")
            active_at = None  # a later event moved last activity further meanwhile: keep the rest

    def _move_entry(self, item: dict[str, Any], to_lead: str) -> None:
        """Copy first and delete after, so a crash between them loses nothing."""
        self.client.put_item(TableName=self._table, Item={**item, "PK": {"S": f"LEAD#{to_lead}"}})
        self.client.delete_item(TableName=self._table, Key={"PK": item["PK"], "SK": item["SK"]})

    def touch(self, lead_id: str, active_at: datetime) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=lead_key(lead_id),
                UpdateExpression="SET last_activity_at = :t, GSI2SK = :t",
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
                UpdateExpression="SET merged_into = :into REMOVE GSI2PK",  # no longer listed
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
                self._move_entry(item, to_lead)

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
        adds = [("merged_ids", ":merged")]  # remembered for the person's access export and erasure
        values[":merged"] = {"SS": [other.lead_id]}
        if other.anonymous_ids:
            values[":anon"] = {"SS": list(other.anonymous_ids)}
            adds.append(("anonymous_ids", ":anon"))
        expression += " ADD " + ", ".join(f"{name} {value}" for name, value in adds)
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
