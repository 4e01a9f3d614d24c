"""Email and funnel metric counters, the event log they are folded from, and the fold's cursor.

PK                                         / SK
METRICGEN                                  / METRICGEN           generations read (reports) and written
METRIC#g<gen>#email#<program>#<step>#<tpl> / DAY#<yyyy-mm-dd>    counters of one email on one day (ADD)
METRICKEYS#g<gen>#email                    / <program>#<step>#<tpl>   the email keys that exist
METRIC#g<gen>#funnel#<by>#<value>          / DAY#<yyyy-mm-dd>    one breakdown value's funnel on a day (ADD)
METRICKEYS#g<gen>#funnel                   / <by>#<value>        the funnel keys that exist
METRICLOG#<yyyy-mm-dd>                     / <time>#<event id>   an event, reduced (``applied``: counted late)
METRICKEYS#log                             / <yyyy-mm-dd>        the days that have logged events
METRICFOLD                                 / METRICFOLD          the fold's cursor: seq, folded through when
METRICSEEN#<send>#<what>                   / METRICSEEN          a send's first open, click, delivery...
METRICSTATE#<lead>                         / METRICSTATE         the lead's recent sends, stage since when

Leads, sends and events are named by their pseudonyms (``kindling.metrics.counters.pseudonym``),
never by their ids: nothing here leads back to a person once their lead is erased.

The log entry is the dedup record: the consumer reads it first (a duplicate costs a read and no
write). A fresh event is one conditional put of its entry, which the fold counts later. A late
event is one transaction, as every event was before the fold: its entry (marked ``applied``), the
unique marker, the lead's state and the counter updates land together or not at all. No
transaction touches an item every event touches (DynamoDB cancels concurrent transactions on a
shared item): the generation is read before each late event, and the indexes (a day's log, the
counter keys) are idempotent puts written before, once per container. Before, not after: a key
listed for an event that then fails has no counters yet, and reports leave it out until the retry
counts it; a counter whose key was never listed would be invisible to every report.

Generations make a rebuild safe while events keep arriving: the rebuild points the consumer and
the fold at a new generation, waits until no late event that read the old one can still be in
flight, replays every event counted into the old one (applied late, or folded before the fold
moved to the new one) into the new one, and only then points the reports at it. Until then
reports read the old generation, whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.items import json_text, packed_json
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
    LogEntry,
    LoggedEvent,
    MetricEvent,
    increments_of,
    pseudonymous,
)
from kindling.metrics.fold import FoldBase, FoldCursor, GenerationMoved, PendingFold

#: The fold's cursor.
FOLD_KEY = {"PK": {"S": "METRICFOLD"}, "SK": {"S": "METRICFOLD"}}
#: A counter's attribute holding the last fold that added to it (one per slice); never a counter field.
FOLD_GUARD = "fold."
#: The most fields one counter update adds (an update expression may be at most 4 KB long).
FIELDS_PER_UPDATE = 60
GENERATION_KEY = {"PK": {"S": "METRICGEN"}, "SK": {"S": "METRICGEN"}}


def state_key(lead: str) -> dict[str, Any]:
    """Where a lead's metrics state is, by the lead's pseudonym."""
    return {"PK": {"S": f"METRICSTATE#{lead}"}, "SK": {"S": "METRICSTATE"}}


def _state_of(value: dict[str, Any]) -> LeadState:
    return LeadState.from_json(json.loads(json_text(value)))


def _packed_state(state: LeadState) -> dict[str, Any]:
    return packed_json(json.dumps(state.to_json(), separators=(",", ":")))


def counter_pk(generation: int, key: CounterKey | FunnelKey) -> str:
    return f"METRIC#g{generation}#{key.kind}#{key.id}"


def keys_pk(generation: int, kind: str) -> str:
    return f"METRICKEYS#g{generation}#{kind}"


def _fixed(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _day_of(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def log_sort_key(at: datetime, event_id: str) -> str:
    """Fixed-width UTC time first, so a day's log reads in the order things happened."""
    return f"{_fixed(at)}#{event_id}"


def log_key(at: datetime, event_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"METRICLOG#{_day_of(at)}"}, "SK": {"S": log_sort_key(at, event_id)}}


def _entry(item: dict[str, Any]) -> LogEntry:
    if "event" in item:
        event_id = item["SK"]["S"].split("#", 1)[1]
        event = MetricEvent.from_json(event_id, json.loads(item["event"]["S"]))
        return LogEntry(event, int(item["applied"]["N"]) if "applied" in item else None)
    # Written before the log was reduced: the raw bus event, counted then by the generation it names.
    context = item.get("context")
    legacy = LoggedEvent(
        source=item["source"]["S"],
        detail_type=item["detail_type"]["S"],
        time=datetime.fromisoformat(item["time"]["S"]),
        detail=json.loads(item["detail"]["S"]),
        template=item["template"]["S"] if "template" in item else None,
        context=LeadBreakdown.from_json(json.loads(context["S"])) if context else None,
    )
    raw = legacy.event()
    return LogEntry(pseudonymous(raw) if raw else None, int(item["generation"]["N"]))


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
    def __init__(self, table_name: str, client: Any = None) -> None:
        super().__init__(table_name, client)
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

    def logged(self, event: MetricEvent) -> bool:
        # Eventually consistent is enough: a delivery racing this one is stopped by the put's condition.
        item = self.client.get_item(
            TableName=self._table, Key=log_key(event.at, event.event_id), ProjectionExpression="PK"
        ).get("Item")
        return item is not None

    def lead_state(self, lead_id: str) -> tuple[LeadState, int]:
        """The state a late event applies to; ``Retryable`` while a fold that changed it is unfinished
        (the fold's retry starts from the state it saved beside, which this event would not be in)."""
        item = self.client.get_item(TableName=self._table, Key=state_key(lead_id), ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return LeadState(), 0
        if "fold_seq" in item and int(item["fold_seq"]["N"]) > self.fold_cursor().seq:
            raise Retryable("a metrics fold is applying this lead's events")
        return _state_of(item["state"]), int(item["version"]["N"])

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

    def log(self, event: MetricEvent) -> str:
        """One put of the reduced event, for the fold to count: ``"logged"`` or ``"duplicate"``."""
        self._list_day(event)
        try:
            self.client.put_item(
                TableName=self._table,
                Item=self._log_item(event),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return "duplicate"
            raise aws.translate(exc, "metrics: log") from exc
        return "logged"

    def commit(self, event: MetricEvent, change: Change, state_version: int) -> str:
        generation = self.generations()[1]
        self._list_day(event)
        for key in listed_keys(change.increments):
            if (generation, key.kind, key.id) not in self._listed_keys:
                self.client.put_item(TableName=self._table, Item=self._key_item(generation, key))
                self._listed_keys.add((generation, key.kind, key.id))
        items = self._transaction(generation, event, change, state_version)
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise aws.translate(exc, "metrics: commit") from exc
            reasons = aws.cancellation_reasons(exc)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "duplicate"
            if change.unique is not None and len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                # Not counted again, but logged (as applied, so no fold counts it either).
                self.commit(event, Change(), 0)
                return "seen"
            raise Retryable(f"DynamoDB cancelled the metrics write: {reasons}") from exc
        return "applied"

    def _list_day(self, event: MetricEvent) -> None:
        """The days the fold and a rebuild read; idempotent, so before the entry."""
        day = event.at.astimezone(UTC).date().isoformat()
        if day not in self._logged_days:
            item = {"PK": {"S": "METRICKEYS#log"}, "SK": {"S": day}}
            self.client.put_item(TableName=self._table, Item=item)
            self._logged_days.add(day)

    @staticmethod
    def _log_item(event: MetricEvent, applied: int | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            **log_key(event.at, event.event_id),
            "event": {"S": json.dumps(event.to_json(), separators=(",", ":"))},
        }
        if applied is not None:
            item["applied"] = {"N": str(applied)}
        return item

    def _transaction(
        self, generation: int, event: MetricEvent, change: Change, state_version: int
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._log_item(event, applied=generation),
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
        if change.state is not None:
            items.append({"Put": self._state_put(event.lead_id, change.state, state_version)})
        items += [{"Update": u} for u in self.counter_updates(generation, change.increments)]
        return items

    def counter_updates(
        self, generation: int, increments: Iterable[Increment], fold_seq: int | None = None
    ) -> list[dict[str, Any]]:
        """The updates that add ``increments`` (with ``fold_seq``: each once for that fold).

        A counter with more than ``FIELDS_PER_UPDATE`` fields gets one update per slice of them
        (a rebuild's busy day); the slices of one counter must not share a transaction, and each
        slice has its own fold guard.
        """
        writes = []
        for (key, day), fields in _merged(increments).items():
            names = sorted(fields)
            for n, start in enumerate(range(0, len(names), FIELDS_PER_UPDATE)):
                part = {name: fields[name] for name in names[start : start + FIELDS_PER_UPDATE]}
                guard = None if fold_seq is None else (f"{FOLD_GUARD}{n}", fold_seq)
                writes.append(self._counter_update(generation, key, day, part, guard))
        return writes

    def _state_put(
        self,
        lead_id: str,
        state: LeadState,
        version: int,
        fold: tuple[int, LeadState] | None = None,
    ) -> dict[str, Any]:
        """A versioned put of the lead's state; a fold's notes its ``seq`` and the state it started from."""
        item = {**state_key(lead_id), "state": _packed_state(state), "version": {"N": str(version + 1)}}
        if fold is not None:
            item["fold_seq"] = {"N": str(fold[0])}
            item["before"] = _packed_state(fold[1])
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if version == 0:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
        return put

    def _counter_update(
        self,
        generation: int,
        key: CounterKey | FunnelKey,
        day: str,
        fields: dict[str, int],
        guard: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        names = {f"#f{i}": name for i, name in enumerate(sorted(fields))}
        values = {f":a{i}": {"N": str(fields[name])} for i, name in enumerate(sorted(fields))}
        expression = "ADD " + ", ".join(f"#f{i} :a{i}" for i in range(len(fields)))
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"PK": {"S": counter_pk(generation, key)}, "SK": {"S": f"DAY#{day}"}},
        }
        if guard is not None:
            names["#g"], values[":n"] = guard[0], {"N": str(guard[1])}
            expression += " SET #g = :n"
            update["ConditionExpression"] = "attribute_not_exists(#g) OR #g < :n"
        update |= {
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return update

    @staticmethod
    def _key_item(generation: int, key: CounterKey | FunnelKey) -> dict[str, Any]:
        return {"PK": {"S": keys_pk(generation, key.kind)}, "SK": {"S": key.id}}

    # --- the fold -------------------------------------------------------------------------------------

    def fold_cursor(self) -> FoldCursor:
        item = self.client.get_item(TableName=self._table, Key=FOLD_KEY, ConsistentRead=True).get("Item")
        if item is None:
            return FoldCursor()
        pending = None
        if "pending_seq" in item:
            pending = PendingFold(
                int(item["pending_seq"]["N"]),
                datetime.fromisoformat(item["pending_until"]["S"]),
                int(item["pending_generation"]["N"]),
            )
        through = datetime.fromisoformat(item["through"]["S"]) if "through" in item else None
        generation = int(item["generation"]["N"]) if "generation" in item else None
        return FoldCursor(int(item.get("seq", {"N": "0"})["N"]), through, generation, pending)

    def folded_through(self, generation: int) -> datetime | None:
        """The time through which the fold counted events into generations older than ``generation``.

        Call once no fold can move the cursor into an older one (after ``start_generation``)."""
        item = self.client.get_item(TableName=self._table, Key=FOLD_KEY, ConsistentRead=True).get("Item")
        if item is None or "generation" not in item:
            return None
        if int(item["generation"]["N"]) < generation:
            through = item.get("through", {}).get("S")
        elif int(item.get("handover_generation", {"N": "-1"})["N"]) == generation:
            through = item.get("handover_through", {}).get("S")
        else:
            raise Conflict("the metrics fold is ahead of this rebuild's generation: run it again")
        return datetime.fromisoformat(through) if through else None

    def unfolded(
        self, after: datetime | None, until: datetime, limit: int | None = None
    ) -> tuple[list[MetricEvent], datetime]:
        events: list[MetricEvent] = []
        read, last = 0, None
        for day in self._log_days(_day_of(after) if after is not None else None, _day_of(until)):
            # From just after ``after`` through every "<until>#<event id>" ("$" sorts after "#").
            condition, values = "PK = :pk AND SK <= :to", {":to": {"S": _fixed(until) + "$"}}
            if after is not None:
                condition = "PK = :pk AND SK BETWEEN :from AND :to"
                values[":from"] = {"S": _fixed(after + timedelta(microseconds=1))}
            values[":pk"] = {"S": f"METRICLOG#{day}"}
            for item in self._query(condition, values, consistent=True):
                at = item["SK"]["S"].split("#", 1)[0]
                if limit is not None and read >= limit and at != last:
                    # Stop between two times: the entries of one time are folded together.
                    return events, datetime.fromisoformat(f"{last}+00:00")
                read, last = read + 1, at
                entry = _entry(item)
                if entry.applied is None and entry.event is not None:
                    events.append(entry.event)
        return events, until

    def _log_days(self, first: str | None, last: str) -> list[str]:
        condition, values = "PK = :pk AND SK <= :to", {":pk": {"S": "METRICKEYS#log"}, ":to": {"S": last}}
        if first is not None:
            condition = "PK = :pk AND SK BETWEEN :from AND :to"
            values[":from"] = {"S": first}
        return [item["SK"]["S"] for item in self._query(condition, values, consistent=True)]

    @staticmethod
    def _unclaimed(cursor: FoldCursor) -> tuple[str, dict[str, Any]]:
        """The condition that the cursor is still ``cursor`` with no fold claimed, and its values."""
        if cursor.seq == 0:
            return "attribute_not_exists(pending_seq) AND attribute_not_exists(seq)", {}
        return "attribute_not_exists(pending_seq) AND seq = :seq", {":seq": {"N": str(cursor.seq)}}

    def claim_fold(self, cursor: FoldCursor, pending: PendingFold) -> None:
        condition, values = self._unclaimed(cursor)
        try:
            self.client.update_item(
                TableName=self._table,
                Key=FOLD_KEY,
                UpdateExpression="SET pending_seq = :n, pending_until = :u, pending_generation = :g",
                ConditionExpression=condition,
                ExpressionAttributeValues={
                    ":n": {"N": str(pending.seq)},
                    ":u": {"S": pending.until.isoformat()},
                    ":g": {"N": str(pending.generation)},
                    **values,
                },
            )
        except ClientError as exc:
            raise aws.translate(exc, "metrics: claim a fold") from exc

    def skip_fold(self, cursor: FoldCursor, until: datetime) -> None:
        """No counter is written, so no generation is checked: a rebuild may count the stretch as folded
        into any generation, as nothing in it was left to the fold."""
        condition, values = self._unclaimed(cursor)
        try:
            self.client.update_item(
                TableName=self._table,
                Key=FOLD_KEY,
                UpdateExpression="SET through = :u",
                ConditionExpression=condition,
                ExpressionAttributeValues={":u": {"S": until.isoformat()}, **values},
            )
        except ClientError as exc:
            raise aws.translate(exc, "metrics: move the fold's cursor") from exc

    def retarget_fold(self, pending: PendingFold) -> None:
        try:
            self.client.update_item(
                TableName=self._table,
                Key=FOLD_KEY,
                UpdateExpression="SET pending_generation = :g",
                ConditionExpression="pending_seq = :n",
                ExpressionAttributeValues={
                    ":n": {"N": str(pending.seq)},
                    ":g": {"N": str(pending.generation)},
                },
            )
        except ClientError as exc:
            raise aws.translate(exc, "metrics: retarget a fold") from exc

    def fold_bases(self, lead_ids: Iterable[str], seq: int) -> dict[str, FoldBase]:
        leads = list(lead_ids)
        bases = {lead: FoldBase(LeadState(), 0) for lead in leads}
        for item in self._get_many([state_key(lead) for lead in leads]):
            lead, version = item["PK"]["S"].removeprefix("METRICSTATE#"), int(item["version"]["N"])
            if "fold_seq" in item and int(item["fold_seq"]["N"]) == seq:
                bases[lead] = FoldBase(_state_of(item["before"]), version, written=True)
            else:
                bases[lead] = FoldBase(_state_of(item["state"]), version)
        return bases

    def fold_markers(self, uniques: Iterable[str], seq: int) -> tuple[set[str], set[str]]:
        keys = [{"PK": {"S": f"METRICSEEN#{u}"}, "SK": {"S": "METRICSEEN"}} for u in uniques]
        seen: set[str] = set()
        ours: set[str] = set()
        for item in self._get_many(keys):
            unique = item["PK"]["S"][len("METRICSEEN#") :]
            mine = "fold_seq" in item and int(item["fold_seq"]["N"]) == seq
            (ours if mine else seen).add(unique)
        return seen, ours

    def put_markers(self, uniques: Iterable[str], seq: int) -> None:
        """Each conditional: a late event that set one meanwhile made this fold's view stale."""
        for unique in uniques:
            item = {
                "PK": {"S": f"METRICSEEN#{unique}"},
                "SK": {"S": "METRICSEEN"},
                "fold_seq": {"N": str(seq)},
            }
            try:
                self.client.put_item(
                    TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(PK)"
                )
            except ClientError as exc:
                raise aws.translate(exc, "metrics: fold a marker") from exc

    def put_states(self, states: dict[str, LeadState], bases: dict[str, FoldBase], seq: int) -> None:
        for lead, state in sorted(states.items()):
            base = bases[lead]
            put = self._state_put(lead, state, base.version, fold=(seq, base.state))
            try:
                self.client.put_item(**put)
            except ClientError as exc:
                raise aws.translate(exc, "metrics: fold a lead's state") from exc

    def add_folded(self, generation: int, counters: Counters, seq: int) -> int:
        increments = list(increments_of(counters))
        keys = [k for k in listed_keys(increments) if (generation, k.kind, k.id) not in self._listed_keys]
        self._put_many([self._key_item(generation, key) for key in keys])
        self._listed_keys.update((generation, k.kind, k.id) for k in keys)
        writes = len(keys)
        for update in self.counter_updates(generation, increments, fold_seq=seq):
            try:
                self.client.update_item(**update)
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise aws.translate(exc, "metrics: fold a counter") from exc
                continue  # added by this fold's attempt that crashed
            writes += 1
        return writes

    def advance_fold(self, cursor: FoldCursor, pending: PendingFold) -> None:
        """Through ``pending.until``, if the consumer still writes its generation; the first fold into a
        generation notes where it began (``handover``), for the rebuild."""
        expression = "SET seq = :n, through = :u, generation = :g"
        values: dict[str, Any] = {
            ":n": {"N": str(pending.seq)},
            ":u": {"S": pending.until.isoformat()},
            ":g": {"N": str(pending.generation)},
        }
        if cursor.generation != pending.generation:
            expression += ", handover_generation = :g, handover_through = :h"
            values[":h"] = {"S": cursor.through.isoformat() if cursor.through else ""}
        generation_check: dict[str, Any] = {
            "TableName": self._table,
            "Key": GENERATION_KEY,
            "ConditionExpression": "writing = :w",
            "ExpressionAttributeValues": {":w": {"N": str(pending.generation)}},
        }
        if pending.generation == 0:
            generation_check["ConditionExpression"] = "attribute_not_exists(PK) OR writing = :w"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"ConditionCheck": generation_check},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": FOLD_KEY,
                            "UpdateExpression": expression
                            + " REMOVE pending_seq, pending_until, pending_generation",
                            "ConditionExpression": "pending_seq = :n",
                            "ExpressionAttributeValues": values,
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = aws.cancellation_reasons(exc)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise GenerationMoved("a rebuild moved the writing generation during the fold") from exc
            raise aws.translate(exc, "metrics: advance the fold") from exc

    def _get_many(self, keys: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The items that exist of ``keys``, read consistently, 100 a call."""
        for start in range(0, len(keys), 100):
            request = {self._table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for attempt in range(8):
                response = self.client.batch_get_item(RequestItems=request)
                yield from response.get("Responses", {}).get(self._table, [])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise Retryable("DynamoDB kept leaving metrics items unread")

    def _put_many(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            requests = {self._table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
            for attempt in range(8):
                requests = self.client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
                if not requests:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise Retryable("DynamoDB kept refusing to list metrics keys")

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
            item["SK"]["S"][4:]: {
                name: int(value["N"])
                for name, value in item.items()
                if "N" in value and not name.startswith(FOLD_GUARD)
            }
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

    def logged_events(self, day: str) -> Iterator[LogEntry]:
        """A day's logged events in the order they happened, with the generation that applied each late.

        An entry of the layout before the reduced log (the raw bus event, with ids and whatever
        personal data the event held) is rewritten in the reduced one as it is read, and the raw
        one deleted: a rebuild after upgrading leaves no raw event behind. The reduced entry says it
        was counted (``applied``) by the generation the raw one names, as the raw one did.
        """
        for item in self._query("PK = :pk", {":pk": {"S": f"METRICLOG#{day}"}}, consistent=True):
            entry = _entry(item)
            if "event" not in item:
                if entry.event is not None:
                    reduced = self._log_item(entry.event, applied=entry.applied)
                    self.client.put_item(TableName=self._table, Item=reduced)
                self.client.delete_item(TableName=self._table, Key={"PK": item["PK"], "SK": item["SK"]})
            yield entry

    def add_rebuilt(self, generation: int, counters: Counters) -> int:
        """Add rebuilt counters to ``generation`` (the consumer adds to it too); the writes made.

        Each write is an ADD or an idempotent put, sent 100 to a transaction so that a throttled
        batch is retried whole (a half-applied one is never retried: ADD twice would double).
        """
        increments = list(increments_of(counters))
        listed = sorted({inc.key for inc in increments}, key=lambda k: (k.kind, k.id))
        writes = [{"Update": u} for u in self.counter_updates(generation, increments)] + [
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
