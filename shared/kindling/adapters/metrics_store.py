"""Email and funnel metric counters, and the event log they are rebuilt from, on the single table.

PK                                         / SK
METRICGEN                                  / METRICGEN           generations read (reports) and written
METRIC#g<gen>#email#<program>#<step>#<tpl> / DAY#<yyyy-mm-dd>    counters of one email on one day (ADD)
METRICKEYS#g<gen>#email                    / <program>#<step>#<tpl>   the email keys that exist
METRIC#g<gen>#funnel#<by>#<value>          / DAY#<yyyy-mm-dd>    one breakdown value's funnel on a day (ADD)
METRICKEYS#g<gen>#funnel                   / <by>#<value>        the funnel keys that exist
METRICLOG#<yyyy-mm-dd>                     / <time>#<event id>   an event as counted (raw, with its lookups)
METRICKEYS#log                             / <yyyy-mm-dd>        the days that have logged events
METRICEVT#<event id>                       / METRICEVT           an event already counted (expires)
METRICSEEN#<send id>#<what>                / METRICSEEN          a send's first open, click, delivery...
LEAD#<id>                                  / METRICSTATE         the lead's recent sends, stage since when

One event is one transaction: the dedup record, the log entry, the unique marker, the lead's
state and the counter updates land together or not at all. No transaction touches an item every
event touches (DynamoDB cancels concurrent transactions on a shared item): the generation is read
before each event, and the indexes (a day's log, the counter keys) are idempotent puts written
before the transaction, once per container. Before, not after: a key listed for an event that
then fails has no counters yet, and reports leave it out until the event's retry counts it; a
counter whose key was never listed would be invisible to every report.

Generations make a rebuild safe while events keep arriving: the rebuild points the consumer at a
new generation, waits until no event that read the old one can still be in flight, replays every
event logged before into the new one, and only then points the reports at it. Until then reports
read the old generation, whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.items import json_text
from kindling.kernel.errors import Conflict, Retryable
from kindling.metrics.counters import (
    ALL,
    Change,
    CounterKey,
    Counters,
    Days,
    FunnelKey,
    Increment,
    LeadBreakdown,
    LeadState,
    LoggedEvent,
    MetricEvent,
    increments_of,
)

#: How long a counted event's dedup record is kept (EventBridge and SQS redeliver within days).
DEDUP_TTL = timedelta(days=30)
#: The most fields one counter update adds (an update expression may be at most 4 KB long).
FIELDS_PER_UPDATE = 60
GENERATION_KEY = {"PK": {"S": "METRICGEN"}, "SK": {"S": "METRICGEN"}}


def counter_pk(generation: int, key: CounterKey | FunnelKey) -> str:
    return f"METRIC#g{generation}#{key.kind}#{key.id}"


def keys_pk(generation: int, kind: str) -> str:
    return f"METRICKEYS#g{generation}#{kind}"


def log_sort_key(at: datetime, event_id: str) -> str:
    """Fixed-width UTC time first, so a day's log reads in the order things happened."""
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}#{event_id}"


def _merged(increments: Iterable[Increment]) -> dict[tuple[CounterKey | FunnelKey, str], dict[str, int]]:
    merged: dict[tuple[CounterKey | FunnelKey, str], dict[str, int]] = {}
    for inc in increments:
        fields = merged.setdefault((inc.key, inc.day), {})
        fields[inc.field] = fields.get(inc.field, 0) + inc.amount
    return merged


def listed_keys(increments: Iterable[Increment]) -> list[CounterKey | FunnelKey]:
    """The counter keys an event's increments need listed, in a stable order.

    Stage advances credit emails sent earlier, whose keys were listed when they were sent
    (or skipped, or deferred), so they list nothing.
    """
    keys = {inc.key for inc in increments if not inc.field.startswith("stage_advances_")}
    return sorted(keys, key=lambda k: (k.kind, k.id))


class DynamoMetricsStore(aws.TableAdapter):
    def __init__(self, table_name: str, client: Any = None, clock_seconds: Any = None) -> None:
        super().__init__(table_name, client)
        self._now = clock_seconds
        self._logged_days: set[str] = set()
        self._listed_keys: set[tuple[int, str, str]] = set()

    # --- generations ----------------------------------------------------------------------------------

    def generations(self) -> tuple[int, int]:
        """``(serving, writing)``: what reports read and what the consumer writes (0, 0 at first)."""
        item = self.client.get_item(TableName=self._table, Key=GENERATION_KEY, ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return 0, 0
        return int(item["serving"]["N"]), int(item["writing"]["N"])

    # --- the consumer ---------------------------------------------------------------------------------

    def counted(self, event_id: str) -> bool:
        # Eventually consistent is enough: a delivery racing this one is stopped by the commit's condition.
        item = self.client.get_item(
            TableName=self._table,
            Key={"PK": {"S": f"METRICEVT#{event_id}"}, "SK": {"S": "METRICEVT"}},
            ProjectionExpression="PK",
        ).get("Item")
        return item is not None

    def lead_state(self, lead_id: str) -> tuple[LeadState, int]:
        item = self.client.get_item(
            TableName=self._table,
            Key={"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "METRICSTATE"}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return LeadState(), 0
        return LeadState.from_json(json.loads(item["state"]["S"])), int(item["version"]["N"])

    def send_template(self, send_id: str) -> str | None:
        item = self.client.get_item(
            TableName=self._table, Key={"PK": {"S": f"SEND#{send_id}"}, "SK": {"S": "SEND"}}
        ).get("Item")
        if item is None or "template" not in item:
            return None
        return str(item["template"]["S"])

    def lead_context(self, lead_id: str) -> LeadBreakdown:
        """The profile's industry, first-touch source and segments, and the score's intent tags (one call)."""
        lead = f"LEAD#{lead_id}"
        response = self.client.batch_get_item(
            RequestItems={
                self._table: {
                    # Consistent: the score that moved the stage was saved just before the move was published.
                    "ConsistentRead": True,
                    "Keys": [
                        {"PK": {"S": lead}, "SK": {"S": "PROFILE"}},
                        {"PK": {"S": lead}, "SK": {"S": "SCORE"}},
                    ],
                    "ProjectionExpression": "SK, traits, #segments, #state",
                    "ExpressionAttributeNames": {"#segments": "segments", "#state": "state"},
                }
            }
        )
        if response.get("UnprocessedKeys"):
            raise Retryable("DynamoDB left the lead's profile unread")
        items = {i["SK"]["S"]: i for i in response.get("Responses", {}).get(self._table, [])}
        profile, score = items.get("PROFILE", {}), items.get("SCORE", {})
        traits = (profile.get("traits") or {}).get("M") or {}

        def trait(name: str) -> Any:
            value = traits.get(name) or {}
            return value.get("S", value.get("N"))

        segments = (profile.get("segments") or {}).get("SS") or [
            v.get("S") for v in (profile.get("segments") or {}).get("L") or []
        ]
        intent = json.loads(json_text(score["state"])).get("intent") or [] if "state" in score else []
        return LeadBreakdown.of(trait("industry"), trait("first_touch_source"), segments, intent)

    def commit(self, logged: LoggedEvent, event: MetricEvent, change: Change, state_version: int) -> str:
        generation = self.generations()[1]
        day = event.at.astimezone(UTC).date().isoformat()
        if day not in self._logged_days:  # the days a rebuild reads; idempotent, so before the transaction
            item = {"PK": {"S": "METRICKEYS#log"}, "SK": {"S": day}}
            self.client.put_item(TableName=self._table, Item=item)
            self._logged_days.add(day)
        for key in listed_keys(change.increments):
            if (generation, key.kind, key.id) not in self._listed_keys:
                self.client.put_item(TableName=self._table, Item=self._key_item(generation, key))
                self._listed_keys.add((generation, key.kind, key.id))
        items = self._transaction(generation, day, logged, event, change, state_version)
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise aws.translate(exc, "metrics: commit") from exc
            reasons = aws.cancellation_reasons(exc)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "duplicate"
            if change.unique is not None and len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
                # Not counted again, but logged: a future metric (all opens, say) may want it.
                self.commit(logged, event, Change(), 0)
                return "seen"
            raise Retryable(f"DynamoDB cancelled the metrics write: {reasons}") from exc
        return "applied"

    def _transaction(
        self,
        generation: int,
        day: str,
        logged: LoggedEvent,
        event: MetricEvent,
        change: Change,
        state_version: int,
    ) -> list[dict[str, Any]]:
        log_item: dict[str, Any] = {
            "PK": {"S": f"METRICLOG#{day}"},
            "SK": {"S": log_sort_key(event.at, event.event_id)},
            "source": {"S": logged.source},
            "detail_type": {"S": logged.detail_type},
            "time": {"S": logged.time.isoformat()},
            "detail": {"S": json.dumps(logged.detail, separators=(",", ":"), default=str)},
            "generation": {"N": str(generation)},
        }
        if logged.template is not None:
            log_item["template"] = {"S": logged.template}
        if logged.context is not None:
            log_item["context"] = {"S": json.dumps(logged.context.to_json(), separators=(",", ":"))}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": {"S": f"METRICEVT#{event.event_id}"},
                        "SK": {"S": "METRICEVT"},
                        "expires_at": {"N": str(self._expiry())},
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {"Put": {"TableName": self._table, "Item": log_item}},
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
        if change.state is not None:
            items.append(self._state_put(event.lead_id, change.state, state_version))
        items += self.counter_updates(generation, change.increments)
        return items

    def counter_updates(self, generation: int, increments: Iterable[Increment]) -> list[dict[str, Any]]:
        """The updates that add ``increments``.

        A counter with more than ``FIELDS_PER_UPDATE`` fields gets one update per slice of them
        (a rebuild's busy day); the slices of one counter must not share a transaction.
        """
        writes = []
        for (key, day), fields in _merged(increments).items():
            names = sorted(fields)
            for start in range(0, len(names), FIELDS_PER_UPDATE):
                part = {name: fields[name] for name in names[start : start + FIELDS_PER_UPDATE]}
                writes.append(self._counter_update(generation, key, day, part))
        return writes

    def _expiry(self) -> int:
        now = self._now() if self._now is not None else time.time()
        return int(now + DEDUP_TTL.total_seconds())

    def _state_put(self, lead_id: str, state: LeadState, version: int) -> dict[str, Any]:
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                "PK": {"S": f"LEAD#{lead_id}"},
                "SK": {"S": "METRICSTATE"},
                "state": {"S": json.dumps(state.to_json(), separators=(",", ":"))},
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
        self, generation: int, key: CounterKey | FunnelKey, day: str, fields: dict[str, int]
    ) -> dict[str, Any]:
        names = {f"#f{i}": name for i, name in enumerate(sorted(fields))}
        values = {f":a{i}": {"N": str(fields[name])} for i, name in enumerate(sorted(fields))}
        adds = ", ".join(f"#f{i} :a{i}" for i in range(len(fields)))
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"PK": {"S": counter_pk(generation, key)}, "SK": {"S": f"DAY#{day}"}},
                "UpdateExpression": f"ADD {adds}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    @staticmethod
    def _key_item(generation: int, key: CounterKey | FunnelKey) -> dict[str, Any]:
        return {"PK": {"S": keys_pk(generation, key.kind)}, "SK": {"S": key.id}}

    # --- the reports ----------------------------------------------------------------------------------

    def serving(self) -> int:
        return self.generations()[0]

    def keys(self, generation: int, program: str | None = None) -> list[CounterKey]:
        """Every email key counted so far (one Query), or a program's."""
        condition = "PK = :pk"
        values: dict[str, Any] = {":pk": {"S": keys_pk(generation, "email")}}
        if program:
            condition += " AND begins_with(SK, :program)"
            values[":program"] = {"S": f"{program}#"}
        return [
            CounterKey.from_id(item["SK"]["S"]) for item in self._query(condition, values, projection="SK")
        ]

    def funnel_keys(self, generation: int, by: str | None, value: str | None = None) -> list[FunnelKey]:
        """The funnel keys of one breakdown (``None``: the overall funnel), or one value of it; one Query."""
        prefix = f"{by or ALL}#" + (value if value is not None else "")
        values = {":pk": {"S": keys_pk(generation, "funnel")}, ":by": {"S": prefix}}
        items = self._query("PK = :pk AND begins_with(SK, :by)", values, projection="SK")
        found = [FunnelKey.from_id(item["SK"]["S"]) for item in items]
        return [k for k in found if value is None or k.value == value]

    def days(self, generation: int, key: CounterKey | FunnelKey, first: date, last: date) -> Days:
        """The key's counters on each day from ``first`` to ``last`` that has any (one Query)."""
        items = self._query(
            "PK = :pk AND SK BETWEEN :from AND :to",
            {
                ":pk": {"S": counter_pk(generation, key)},
                ":from": {"S": f"DAY#{first.isoformat()}"},
                ":to": {"S": f"DAY#{last.isoformat()}"},
            },
        )
        return {
            item["SK"]["S"][4:]: {name: int(value["N"]) for name, value in item.items() if "N" in value}
            for item in items
        }

    # --- the rebuild ----------------------------------------------------------------------------------

    def start_generation(self, serving: int, writing: int, new: int) -> None:
        """Point the consumer at ``new`` (reports stay on ``serving``), if nobody moved it meanwhile."""
        self._set_generation(serving, new, expected_writing=writing)

    def serve_generation(self, new: int) -> None:
        """Point the reports at ``new``, if the consumer still writes it."""
        self._set_generation(new, new, expected_writing=new)

    def _set_generation(self, serving: int, writing: int, expected_writing: int) -> None:
        try:
            self.client.put_item(
                TableName=self._table,
                Item={**GENERATION_KEY, "serving": {"N": str(serving)}, "writing": {"N": str(writing)}},
                ConditionExpression="attribute_not_exists(PK) OR writing = :w"
                if expected_writing == 0
                else "writing = :w",
                ExpressionAttributeValues={":w": {"N": str(expected_writing)}},
            )
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("another rebuild moved the metrics generation meanwhile") from exc
            raise aws.translate(exc, "metrics: set generation") from exc

    def logged_days(self) -> list[str]:
        query = self._query("PK = :pk", {":pk": {"S": "METRICKEYS#log"}}, consistent=True)
        return [item["SK"]["S"] for item in query]

    def logged_events(self, day: str) -> Iterator[tuple[LoggedEvent, int]]:
        """A day's logged events in the order they happened, with the generation that counted each."""
        for item in self._query("PK = :pk", {":pk": {"S": f"METRICLOG#{day}"}}, consistent=True):
            context = item.get("context")
            yield (
                LoggedEvent(
                    source=item["source"]["S"],
                    detail_type=item["detail_type"]["S"],
                    time=datetime.fromisoformat(item["time"]["S"]),
                    detail=json.loads(item["detail"]["S"]),
                    template=item["template"]["S"] if "template" in item else None,
                    context=LeadBreakdown.from_json(json.loads(context["S"])) if context else None,
                ),
                int(item["generation"]["N"]),
            )

    def add_rebuilt(self, generation: int, counters: Counters) -> int:
        """Add rebuilt counters to ``generation`` (the consumer adds to it too); the writes made.

        Each write is an ADD or an idempotent put, sent 100 to a transaction so that a throttled
        batch is retried whole (a half-applied one is never retried: ADD twice would double).
        """
        increments = list(increments_of(counters))
        listed = sorted({inc.key for inc in increments}, key=lambda k: (k.kind, k.id))
        writes = self.counter_updates(generation, increments) + [
            {"Put": {"TableName": self._table, "Item": self._key_item(generation, key)}} for key in listed
        ]
        # Rounds of writes to distinct items: the n-th write to each item goes in round n.
        rounds: list[list[dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for write in writes:
            body = write.get("Update") or write["Put"]
            key = body.get("Key") or {"PK": body["Item"]["PK"], "SK": body["Item"]["SK"]}
            item = f"{key['PK']['S']}|{key['SK']['S']}"
            n = seen[item] = seen.get(item, -1) + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(write)
        for r, batch in enumerate(rounds):
            for start in range(0, len(batch), 100):
                self._transact_retrying(batch[start : start + 100], f"rebuild-g{generation}-{r}-{start}")
        return len(writes)

    def _transact_retrying(self, items: list[dict[str, Any]], token: str) -> None:
        """One transaction, retried while it conflicts with the consumer's; the token makes a retry of
        one that did land (its answer lost) a no-op."""
        for attempt in range(8):
            try:
                self.client.transact_write_items(TransactItems=items, ClientRequestToken=token)
                return
            except ClientError as exc:
                if aws.error_code(exc) not in (
                    "TransactionCanceledException",
                    "TransactionConflictException",
                ):
                    raise aws.translate(exc, "metrics: transact retrying") from exc
                time.sleep(min(1.0, 0.05 * 2**attempt))
        raise Retryable("DynamoDB kept cancelling the rebuilt counters' writes; run the rebuild again")

    def drop_generation(self, generation: int) -> int:
        """Delete a generation no one reads or writes any more; the items deleted."""
        deleted = 0
        for kind in ("email", "funnel"):
            for key_item in list(self._query("PK = :pk", {":pk": {"S": keys_pk(generation, kind)}})):
                key = (CounterKey if kind == "email" else FunnelKey).from_id(key_item["SK"]["S"])
                pk = {":pk": {"S": counter_pk(generation, key)}}
                doomed = [{"PK": i["PK"], "SK": i["SK"]} for i in self._query("PK = :pk", pk, "PK, SK")]
                doomed.append({"PK": key_item["PK"], "SK": key_item["SK"]})
                for start in range(0, len(doomed), 25):
                    self._delete_batch(doomed[start : start + 25])
                deleted += len(doomed)
        return deleted

    def _delete_batch(self, keys: list[dict[str, Any]]) -> None:
        requests = {self._table: [{"DeleteRequest": {"Key": key}} for key in keys]}
        for attempt in range(8):
            unprocessed = self.client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            requests = unprocessed
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise Retryable("DynamoDB kept refusing to delete an old metrics generation")

    def _query(
        self, condition: str, values: dict[str, Any], projection: str | None = None, consistent: bool = False
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": consistent,
        }
        if projection:
            request["ProjectionExpression"] = projection
        while True:
            response = self.client.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
