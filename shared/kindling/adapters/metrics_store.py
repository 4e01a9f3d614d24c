"""Email and funnel metric counters on the single table.

PK                                        / SK
METRIC#email#<program>#<step>#<template>  / DAY#<yyyy-mm-dd>   counters of one key on one day (ADD)
METRICKEYS#email                          / <program>#<step>#<template>   the keys that exist
METRICEVT#<event id>                      / METRICEVT          an event already counted (expires)
METRICSEEN#<send id>#opened|clicked       / METRICSEEN         the first open / click of a send
LEAD#<id>                                 / METRICRECENT       the lead's recent sends (attribution)
METRIC#funnel#<by>#<stage>#<value>        / DAY#<yyyy-mm-dd>   leads entering a stage on one day (ADD)
METRICKEYS#funnel                         / <by>#<stage>#<value>   the funnel keys that exist

The funnel's ``by`` is ``all`` (value ``-``), ``industry`` or ``source``. The consumer reads the
lead's profile (one GetItem) for ``traits.industry`` and ``traits.first_touch_source``.

One event is one transaction: the dedup record, the unique marker, the recent-sends list and
the counter updates land together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.errors import Retryable
from kindling.metrics import ALL, Change, CounterKey, FunnelKey, RecentSend, breakdown_value

KIND = "email"
#: How long a counted event's dedup record is kept (EventBridge and SQS redeliver within days).
DEDUP_TTL = timedelta(days=30)


def counter_pk(key: CounterKey | FunnelKey) -> str:
    return f"METRIC#{key.kind}#{key.id}"


class DynamoMetricsStore:
    def __init__(self, table_name: str, client: Any = None, clock_seconds: Any = None) -> None:
        self._table = table_name
        self._client = client
        self._now = clock_seconds

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    # --- the consumer ---------------------------------------------------------------------------------

    def recent_sends(self, lead_id: str) -> tuple[list[RecentSend], int]:
        item = self.client.get_item(
            TableName=self._table,
            Key={"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "METRICRECENT"}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return [], 0
        sends = [RecentSend.from_json(s) for s in json.loads(item["sends"]["S"])]
        return sends, int(item["version"]["N"])

    def send_template(self, send_id: str) -> str | None:
        item = self.client.get_item(
            TableName=self._table, Key={"PK": {"S": f"SEND#{send_id}"}, "SK": {"S": "SEND"}}
        ).get("Item")
        if item is None or "template" not in item:
            return None
        return str(item["template"]["S"])

    def lead_traits(self, lead_id: str) -> tuple[str | None, str | None]:
        item = self.client.get_item(
            TableName=self._table,
            Key={"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "PROFILE"}},
            ProjectionExpression="traits",
        ).get("Item")
        traits = ((item or {}).get("traits") or {}).get("M") or {}

        def text(name: str) -> str | None:
            value = traits.get(name) or {}
            return breakdown_value(value.get("S", value.get("N")))

        return text("industry"), text("first_touch_source")

    def commit(self, lead_id: str, event_id: str, change: Change, recent_version: int) -> str:
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": {"S": f"METRICEVT#{event_id}"},
                        "SK": {"S": "METRICEVT"},
                        "expires_at": {"N": str(self._expiry())},
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
        ]
        if change.unique is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {"PK": {"S": f"METRICSEEN#{change.unique}"}, "SK": {"S": "METRICSEEN"}},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        if change.recent is not None:
            items.append(self._recent_put(lead_id, change.recent, recent_version))
        merged: dict[tuple[CounterKey | FunnelKey, str], dict[str, int]] = {}
        for inc in change.increments:
            fields = merged.setdefault((inc.key, inc.day), {})
            fields[inc.field] = fields.get(inc.field, 0) + inc.amount
        for (key, day), fields in merged.items():
            items.append(self._counter_update(key, day, fields))
        # Credited email keys were listed when their emails were sent.
        listed = {inc.key for inc in change.increments if not inc.field.startswith("stage_advances_")}
        for key in sorted(listed, key=lambda k: (k.kind, k.id)):
            items.append(self._key_put(key))
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "duplicate"
            if change.unique is not None and len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return "seen"
            raise Retryable(f"DynamoDB cancelled the metrics write: {reasons}") from exc
        return "applied"

    def _expiry(self) -> int:
        now = self._now() if self._now is not None else time.time()
        return int(now + DEDUP_TTL.total_seconds())

    def _recent_put(self, lead_id: str, sends: tuple[RecentSend, ...], version: int) -> dict[str, Any]:
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                "PK": {"S": f"LEAD#{lead_id}"},
                "SK": {"S": "METRICRECENT"},
                "sends": {"S": json.dumps([s.to_json() for s in sends], separators=(",", ":"))},
                "version": {"N": str(version + 1)},
            },
        }
        if version == 0:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
        return {"Put": put}

    def _counter_update(
        self, key: CounterKey | FunnelKey, day: str, fields: dict[str, int]
    ) -> dict[str, Any]:
        names = {f"#f{i}": name for i, name in enumerate(sorted(fields))}
        values = {f":a{i}": {"N": str(fields[name])} for i, name in enumerate(sorted(fields))}
        adds = ", ".join(f"#f{i} :a{i}" for i in range(len(fields)))
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"PK": {"S": counter_pk(key)}, "SK": {"S": f"DAY#{day}"}},
                "UpdateExpression": f"ADD {adds}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _key_put(self, key: CounterKey | FunnelKey) -> dict[str, Any]:
        if isinstance(key, FunnelKey):
            funnel = {"PK": {"S": f"METRICKEYS#{key.kind}"}, "SK": {"S": key.id}}
            return {"Put": {"TableName": self._table, "Item": funnel}}
        item: dict[str, Any] = {
            "PK": {"S": f"METRICKEYS#{KIND}"},
            "SK": {"S": key.id},
            "template": {"S": key.template},
        }
        if key.program:
            item["program"] = {"S": key.program}
        if key.step:
            item["step"] = {"S": key.step}
        return {"Put": {"TableName": self._table, "Item": item}}

    # --- the report -----------------------------------------------------------------------------------

    def keys(self, program: str | None = None) -> list[CounterKey]:
        """Every key counted so far (one Query), or a program's."""
        condition = "PK = :pk"
        values: dict[str, Any] = {":pk": {"S": f"METRICKEYS#{KIND}"}}
        if program:
            condition += " AND begins_with(SK, :program)"
            values[":program"] = {"S": f"{program}#"}
        return [
            CounterKey.from_id(item["SK"]["S"]) for item in self._query(condition, values, projection="SK")
        ]

    def funnel_keys(self, by: str | None) -> list[FunnelKey]:
        """The funnel keys of one breakdown (``None``: the overall funnel), one Query."""
        values = {":pk": {"S": "METRICKEYS#funnel"}, ":by": {"S": f"{by or ALL}#"}}
        items = self._query("PK = :pk AND begins_with(SK, :by)", values, projection="SK")
        return [FunnelKey.from_id(item["SK"]["S"]) for item in items]

    def days(self, key: CounterKey | FunnelKey, first: date, last: date) -> list[dict[str, int]]:
        """The key's counters on each day from ``first`` to ``last`` (one Query)."""
        items = self._query(
            "PK = :pk AND SK BETWEEN :from AND :to",
            {
                ":pk": {"S": counter_pk(key)},
                ":from": {"S": f"DAY#{first.isoformat()}"},
                ":to": {"S": f"DAY#{last.isoformat()}"},
            },
        )
        return [{name: int(value["N"]) for name, value in item.items() if "N" in value} for item in items]

    def _query(
        self, condition: str, values: dict[str, Any], projection: str | None = None
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if projection:
            request["ProjectionExpression"] = projection
        while True:
            response = self.client.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
