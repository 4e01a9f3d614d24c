"""ScoreStore on the single table.

LEAD#<id>      / SCORE                       the lead's score state (JSON) and its revision
LEAD#<id>      / SCORECHG#<time>#<message>   one change of score and its cause
LEAD#<id>      / STAGE#<time>#<message>      one lifecycle move: from, to, why, by
SCORED#<message> / SCORED                    a message already scored, with the bus events it produced
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.adapters.dynamo import DEDUP_RETENTION, from_item, lead_key
from kindling.kernel.bus import BusEvent
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Duplicate
from kindling.scoring.rules import LeadScore
from kindling.scoring.service import LeadFacts, ScoreWrite


def score_key(lead_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "SCORE"}}


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: isoformat(v) if hasattr(v, "astimezone") else str(v))


class DynamoScoreStore(aws.TableAdapter):
    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item = self.client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise aws.translate(exc, "a score: read") from exc
        return dict(item) if item else None

    def facts(self, lead_id: str) -> LeadFacts | None:
        item = self._get(lead_key(lead_id))
        if item is None:
            return None
        profile = from_item(item)
        return LeadFacts(
            lead_id=lead_id,
            email=profile.get("email"),
            traits=profile.get("traits") or {},
            stage=profile.get("stage"),
            merged_into=profile.get("merged_into"),
            user_id=profile.get("user_id"),
        )

    def score(self, lead_id: str) -> LeadScore | None:
        item = self._get(score_key(lead_id))
        if item is None:
            return None
        state = LeadScore.model_validate_json(item["state"]["S"])
        return state.model_copy(
            update={
                "revision": int(item["revision"]["N"]),
                "merged_into": item.get("merged_into", {}).get("S"),
            }
        )

    def emitted_for(self, message_id: str) -> list[BusEvent] | None:
        item = self._get({"PK": {"S": f"SCORED#{message_id}"}, "SK": {"S": "SCORED"}})
        if item is None:
            return None
        return [BusEvent.model_validate(e) for e in json.loads(item["emitted"]["S"])]

    def save(self, write: ScoreWrite) -> None:
        score = write.result.score
        revision = write.expected_revision + 1
        stamp = f"{isoformat(write.at)}#{write.message_id}"
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": {"S": f"SCORED#{write.message_id}"},
                        "SK": {"S": "SCORED"},
                        "lead_id": {"S": write.lead_id},
                        "emitted": {"S": _json([e.model_dump() for e in write.emitted])},
                        "expires_at": {"N": str(int((write.at + DEDUP_RETENTION).timestamp()))},
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            self._put_score(write.lead_id, score, write.expected_revision, revision),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": {"S": f"LEAD#{write.lead_id}"},
                        "SK": {"S": f"SCORECHG#{stamp}"},
                        "change": {"S": _json(write.change_record)},
                    },
                }
            },
        ]
        move = write.result.stage_move
        if move is not None:
            values: dict[str, Any] = {":to": {"S": move.to_stage}, ":at": {"S": isoformat(write.at)}}
            if move.from_stage is None:
                stage_condition = "attribute_not_exists(stage)"
            else:
                stage_condition = "stage = :from"
                values[":from"] = {"S": move.from_stage}
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": lead_key(write.lead_id),
                        "UpdateExpression": "SET stage = :to, stage_changed_at = :at",
                        "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(merged_into)"
                        f" AND {stage_condition}",
                        "ExpressionAttributeValues": values,
                    }
                }
            )
            history = {
                "from": move.from_stage,
                "to": move.to_stage,
                "why": move.why,
                "by": "scoring",
                "at": isoformat(write.at),
                "message_id": write.message_id,
            }
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "PK": {"S": f"LEAD#{write.lead_id}"},
                            "SK": {"S": f"STAGE#{stamp}"},
                            "move": {"S": _json(history)},
                        },
                    }
                }
            )
        for other in write.folded:
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
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
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = aws.cancellation_reasons(exc)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise Duplicate(write.message_id) from None
            # Another revision won the race (Conflict: re-read and score again), or DynamoDB
            # throttled or conflicted (Retryable: the message comes back later).
            raise aws.translate(exc, f"the score of {write.lead_id}") from exc

    def _put_score(self, lead_id: str, score: LeadScore, expected: int, revision: int) -> dict[str, Any]:
        state = score.model_dump_json(exclude={"revision", "merged_into"})
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": {**score_key(lead_id), "state": {"S": state}, "revision": {"N": str(revision)}},
        }
        if expected == 0:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "revision = :expected AND attribute_not_exists(merged_into)"
            put["ExpressionAttributeValues"] = {":expected": {"N": str(expected)}}
        return {"Put": put}

    # --- reads for the API ---------------------------------------------------------
    def _query(self, lead_id: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{lead_id}"}, ":prefix": {"S": prefix}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return list(response.get("Items", []))

    def changes(self, lead_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return [json.loads(i["change"]["S"]) for i in self._query(lead_id, "SCORECHG#", limit)]

    def stage_history(self, lead_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(i["move"]["S"]) for i in self._query(lead_id, "STAGE#", limit)]


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
