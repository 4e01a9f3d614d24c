"""DueStore on the single table.

DUEAT#[<lane>#]<hour> / <due time>#<id>   an item due at a time, under the hour it falls due in:
                                          the tick reads an hour with one query of its partition,
                                          and no index doubles the cost of writing an item
TICK#due<lane> / TICK                     the earliest hour that may still hold items (the cursor)

Items written by earlier versions (``DUE#<id> / DUE``, found through GSI1 by hour) are still
read and removed, so an upgrade loses no wait that was pending.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.kernel.clock import isoformat
from kindling.programs.due import DueItem, hour_of

LEGACY_INDEX = "GSI1"


def _hour_key(hour: datetime, lane: str = "") -> str:
    return f"DUEAT#{lane + '#' if lane else ''}{hour_of(hour).strftime('%Y-%m-%dT%H')}"


def _due_item(raw: dict[str, Any], item_id: str, legacy: bool = False) -> DueItem:
    return DueItem(
        id=item_id,
        kind=raw["kind"]["S"],
        due_at=raw["due_at"]["S"],
        payload=json.loads(raw["payload"]["S"]),
        legacy=legacy,
    )


class DynamoDueStore(aws.TableAdapter):
    """One lane of due work; each lane has its own hour buckets and its own cursor.

    The minute tick reads the default lane; the daily sweep reads the "daily" lane, so
    neither ever reads the other's items.
    """

    def __init__(self, table_name: str, client: Any = None, lane: str = "") -> None:
        super().__init__(table_name, client)
        self._lane = lane

    def item(self, item: DueItem) -> dict[str, Any]:
        return {
            "PK": {"S": _hour_key(item.due_at, self._lane)},
            "SK": {"S": f"{isoformat(item.due_at)}#{item.id}"},
            "id": {"S": item.id},
            "kind": {"S": item.kind},
            "payload": {"S": json.dumps(item.payload, default=str)},
            "due_at": {"S": isoformat(item.due_at)},
        }

    def put_due(self, item: DueItem) -> None:
        self.client.put_item(TableName=self._table, Item=self.item(item))
        self.lower_cursor(item)

    def lower_cursor(self, item: DueItem) -> None:
        """Make sure the next tick starts no later than this item's hour (an item may be due already).

        Items due in a later hour cannot be behind the cursor, so they cost nothing here: the
        cursor is one item every step would otherwise write.
        """
        if not item.may_be_behind_the_tick:
            return
        hour = isoformat(hour_of(item.due_at))
        try:
            self.client.update_item(
                TableName=self._table,
                Key=self._cursor_key(),
                UpdateExpression="SET #h = :hour",
                ConditionExpression="attribute_not_exists(#h) OR #h > :hour",
                ExpressionAttributeNames={"#h": "hour"},
                ExpressionAttributeValues={":hour": {"S": hour}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "due work: lower cursor") from exc

    def _cursor_key(self) -> dict[str, Any]:
        return {"PK": {"S": f"TICK#due{self._lane}"}, "SK": {"S": "TICK"}}

    def due_in_hour(self, hour: datetime, until: datetime) -> list[DueItem]:
        paginator = self.client.get_paginator("query")
        bounds = {":hour": {"S": _hour_key(hour, self._lane)}, ":until": {"S": isoformat(until) + "#~"}}
        items = []
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="PK = :hour AND SK <= :until",
            ExpressionAttributeValues=bounds,
            # An item written a moment before the tick must not be missed as the cursor moves on.
            ConsistentRead=True,
        ):
            items += [_due_item(raw, raw["id"]["S"]) for raw in page.get("Items", [])]
        for page in paginator.paginate(  # written by an earlier version
            TableName=self._table,
            IndexName=LEGACY_INDEX,
            KeyConditionExpression="GSI1PK = :hour AND GSI1SK <= :until",
            ExpressionAttributeValues=bounds,
        ):
            items += [
                _due_item(raw, raw["PK"]["S"].removeprefix("DUE#"), legacy=True) for raw in page["Items"]
            ]
        return items

    def remove_due(self, item: DueItem) -> None:
        if item.legacy:
            key = {"PK": {"S": f"DUE#{item.id}"}, "SK": {"S": "DUE"}}
        else:
            key = {
                "PK": {"S": _hour_key(item.due_at, self._lane)},
                "SK": {"S": f"{isoformat(item.due_at)}#{item.id}"},
            }
        self.client.delete_item(TableName=self._table, Key=key)

    def cursor(self) -> datetime | None:
        item = self.client.get_item(TableName=self._table, Key=self._cursor_key(), ConsistentRead=True).get(
            "Item"
        )
        return datetime.fromisoformat(item["hour"]["S"].replace("Z", "+00:00")) if item else None

    def move_cursor(self, hour: datetime, expected: datetime | None) -> None:
        """Forward to ``hour``, unless it moved meanwhile (an earlier item came in for the next tick)."""
        condition = "attribute_not_exists(#h)" if expected is None else "#h = :expected"
        values = {":hour": {"S": isoformat(hour)}}
        if expected is not None:
            values[":expected"] = {"S": isoformat(expected)}
        try:
            self.client.update_item(
                TableName=self._table,
                Key=self._cursor_key(),
                UpdateExpression="SET #h = :hour",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#h": "hour"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise aws.translate(exc, "due work: move cursor") from exc
