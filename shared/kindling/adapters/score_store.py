"""Scores on the single table.

LEAD#<id>      / SCORE                       the lead's score state (packed JSON), its revision and the
                                             fingerprints of the last messages it scored
LEAD#<id>      / EVT#<time>#<message>        the timeline entry of a scored event carries its score
                                             change (``score``: points per rule and their cause)
LEAD#<id>      / STAGE#<time>#<message>      one lifecycle move: from, to, why, by

The score is written with the event's timeline entry by ``DynamoLeadStore.append``; the items
it writes are made here.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.items import STAGE_INDEX_SET, json_text, lead_key, packed_json, stage_index_values
from kindling.kernel.clock import isoformat
from kindling.scoring.rules import LeadScore
from kindling.scoring.service import ScoreWrite

#: Timeline entries looked through for score changes, at most, per request for them.
_CHANGE_SCAN_PAGES = 10


def score_key(lead_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "SCORE"}}


def stored_score(lead_id: str, item: dict[str, Any]) -> LeadScore:
    """The score state a SCORE item holds (packed, or plain JSON as written before)."""
    return LeadScore.model_validate({"lead_id": lead_id, **json.loads(json_text(item["state"]))})


def to_json(value: Any) -> str:
    return json.dumps(value, default=lambda v: isoformat(v) if hasattr(v, "astimezone") else str(v))


def score_put(write: ScoreWrite, table: str) -> dict[str, Any]:
    """The conditional put of the new score state: refused if another event scored the lead meanwhile."""
    score = write.result.score
    # Defaults are left out (an empty day or credit list per rule adds up): read back, they return.
    state = score.model_dump_json(
        exclude={"lead_id", "revision", "merged_into", "recent"}, exclude_defaults=True
    )
    put: dict[str, Any] = {
        "TableName": table,
        "Item": {
            **score_key(write.lead_id),
            "state": packed_json(state),
            "revision": {"N": str(write.expected_revision + 1)},
        },
    }
    if write.recent:
        put["Item"]["recent"] = {"S": " ".join(write.recent)}
    if write.rank is not None:  # the console lists a grade's leads by score (kindling.adapters.console_store)
        put["Item"]["GSI2PK"] = {"S": f"GRADE#{score.grade}"}
        put["Item"]["GSI2SK"] = {"S": write.rank}
    if write.expected_revision == 0:
        put["ConditionExpression"] = "attribute_not_exists(PK)"
    else:
        put["ConditionExpression"] = "revision = :expected AND attribute_not_exists(merged_into)"
        put["ExpressionAttributeValues"] = {":expected": {"N": str(write.expected_revision)}}
    return put


def stage_actions(write: ScoreWrite, table: str) -> list[dict[str, Any]]:
    """A stage move: the profile's stage (only from where the score saw it) and its history entry."""
    move = write.result.stage_move
    if move is None:
        return []
    stamp = f"{isoformat(write.at)}#{write.message_id}"
    values: dict[str, Any] = {":to": {"S": move.to_stage}, ":at": {"S": isoformat(write.at)}}
    if move.from_stage is None:
        stage_condition = "attribute_not_exists(stage)"
    else:
        stage_condition = "stage = :from"
        values[":from"] = {"S": move.from_stage}
    history = {
        "from": move.from_stage,
        "to": move.to_stage,
        "why": move.why,
        "by": "scoring",
        "at": isoformat(write.at),
        "message_id": write.message_id,
    }
    return [
        {
            "Update": {
                "TableName": table,
                "Key": lead_key(write.lead_id),
                "UpdateExpression": f"SET stage = :to, stage_changed_at = :at, {STAGE_INDEX_SET}",
                "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(merged_into)"
                f" AND {stage_condition}",
                "ExpressionAttributeValues": {**values, **stage_index_values(move.to_stage)},
            }
        },
        {
            "Put": {
                "TableName": table,
                "Item": {
                    "PK": {"S": f"LEAD#{write.lead_id}"},
                    "SK": {"S": f"STAGE#{stamp}"},
                    "move": {"S": to_json(history)},
                },
            }
        },
    ]


def folded_actions(write: ScoreWrite, table: str) -> list[dict[str, Any]]:
    """Merged-away scores, marked as folded into this one (only as they were read).

    A merged-away lead with no score yet gets one, already marked: an event of its racing the
    merge then cannot start a score there that nothing would fold.
    """
    actions: list[dict[str, Any]] = []
    for other in write.folded:
        if other.revision == 0:
            actions.append(
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            **score_key(other.lead_id),
                            "state": {"S": "{}"},
                            "revision": {"N": "0"},
                            "merged_into": {"S": write.lead_id},
                        },
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
            continue
        actions.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": score_key(other.lead_id),
                    "UpdateExpression": "SET merged_into = :into",
                    "ConditionExpression": "revision = :rev AND attribute_not_exists(merged_into)",
                    "ExpressionAttributeValues": {
                        ":into": {"S": write.lead_id},
                        ":rev": {"N": str(other.revision)},
                    },
                }
            }
        )
    return actions


class DynamoScoreStore(aws.TableAdapter):
    def score(self, lead_id: str) -> LeadScore | None:
        try:
            item = self.client.get_item(
                TableName=self._table, Key=score_key(lead_id), ConsistentRead=True
            ).get("Item")
        except ClientError as exc:
            raise aws.translate(exc, "a score: read") from exc
        if item is None:
            return None
        state = stored_score(lead_id, item)
        return state.model_copy(
            update={
                "revision": int(item["revision"]["N"]),
                "merged_into": item.get("merged_into", {}).get("S"),
                "recent": item.get("recent", {}).get("S", "").split(),
            }
        )

    # --- reads for the API ---------------------------------------------------------
    def changes(self, lead_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest score changes, newest first, from the timeline entries that carry one."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :evt)",
            "FilterExpression": "attribute_exists(score)",
            "ProjectionExpression": "score",
            "ExpressionAttributeValues": {":pk": {"S": f"LEAD#{lead_id}"}, ":evt": {"S": "EVT#"}},
            "ScanIndexForward": False,
        }
        for _ in range(_CHANGE_SCAN_PAGES):
            response = self.client.query(**kwargs)
            found += [json.loads(i["score"]["S"]) for i in response.get("Items", [])]
            if len(found) >= limit or "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def stage_history(self, lead_id: str, limit: int = 50) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{lead_id}"}, ":prefix": {"S": "STAGE#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(i["move"]["S"]) for i in response.get("Items", [])]


class DynamoHandoffLog:
    """``LEAD#<id> / HANDOFF#<time>#<event id>``: each hand-off attempt that reached an answer."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self._table = table_name
        self._client = client

    def record(self, lead_id: str, event_id: str, outcome: str, status: int | None, at: Any) -> None:
        item = {
            "PK": {"S": f"LEAD#{lead_id}"},
            "SK": {"S": f"HANDOFF#{isoformat(at)}#{event_id}"},
            "event_id": {"S": event_id},
            "outcome": {"S": outcome},
        }
        if status is not None:
            item["status"] = {"N": str(status)}
        (self._client or aws.client("dynamodb")).put_item(TableName=self._table, Item=item)
