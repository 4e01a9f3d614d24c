"""Everything out, a page at a time: every lead with its score and consent, and activity by date.

An export is a full dump, so it reads the table from end to end (a paginated Scan, filtered to
the items it wants); it is what an operator runs now and then, never on the event path. The
cursor is DynamoDB's own position, encoded, so a page picks up exactly where the last stopped.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from kindling.adapters import aws
from kindling.adapters.items import from_item
from kindling.adapters.score_store import score_key, stored_score
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import InvalidInput
from kindling.leads.profiles import Lead, TimelineEntry
from kindling.scoring.config import Decay
from kindling.scoring.rules import LeadScore


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """A position that ``encode_cursor`` made (a table's or an index's key), or ``InvalidInput``."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor: give the next_cursor of the previous page") from None
    if (
        not isinstance(key, dict)
        or not {"PK", "SK"} <= set(key)
        or not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
    ):
        raise InvalidInput("cursor: give the next_cursor of the previous page")
    return key


class DynamoExportStore(aws.TableAdapter):
    def leads(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[Lead, LeadScore | None, str | None]], str | None]:
        """A page of leads (merged ones left out), each with its score and suppression reason."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": (
                "SK = :profile AND begins_with(PK, :lead) AND attribute_not_exists(merged_into)"
            ),
            "ExpressionAttributeValues": {":profile": {"S": "PROFILE"}, ":lead": {"S": "LEAD#"}},
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = self.client.scan(**kwargs)
        leads = [Lead.model_validate(from_item(item)) for item in page.get("Items", [])]
        extras = self._batch_get(
            [score_key(lead.lead_id) for lead in leads]
            + [
                {"PK": {"S": f"SUPPRESS#{lead.email}"}, "SK": {"S": "SUPPRESS"}}
                for lead in leads
                if lead.email
            ]
        )
        rows = []
        for lead in leads:
            score_item = extras.get(f"LEAD#{lead.lead_id}|SCORE")
            score = stored_score(lead.lead_id, score_item) if score_item else None
            suppressed = extras.get(f"SUPPRESS#{lead.email}|SUPPRESS") if lead.email else None
            rows.append((lead, score, suppressed["reason"]["S"] if suppressed else None))
        return rows, encode_cursor(page.get("LastEvaluatedKey"))

    def activity(
        self, start: datetime, end: datetime, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, TimelineEntry]], str | None]:
        """A page of timeline entries (lead id, entry) whose time is in [start, end)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(PK, :lead) AND SK BETWEEN :from AND :to",
            "ExpressionAttributeValues": {
                ":lead": {"S": "LEAD#"},
                ":from": {"S": f"EVT#{isoformat(start)}"},
                ":to": {"S": f"EVT#{isoformat(end)}"},
            },
            "Limit": limit,
        }
        first = decode_cursor(cursor)
        if first:
            kwargs["ExclusiveStartKey"] = first
        page = self.client.scan(**kwargs)
        found = []
        for item in page.get("Items", []):
            values = from_item(item)
            lead_id = values.pop("PK").removeprefix("LEAD#")
            values.pop("SK", None)
            found.append((lead_id, TimelineEntry.model_validate(values)))
        return found, encode_cursor(page.get("LastEvaluatedKey"))

    def _batch_get(self, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100]}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    found[f"{item['PK']['S']}|{item['SK']['S']}"] = item
                request = answer.get("UnprocessedKeys") or {}
        return found


def lead_export_row(
    lead: Lead, score: LeadScore | None, suppressed: str | None, at: datetime, decay: Decay | None
) -> dict[str, Any]:
    """One lead as the export gives it: who, where in the funnel, how engaged, may we mail them."""
    return {
        "lead_id": lead.lead_id,
        "email": lead.email,
        "user_id": lead.user_id,
        "traits": lead.traits,
        "stage": lead.stage,
        "stage_changed_at": lead.stage_changed_at.isoformat() if lead.stage_changed_at else None,
        "score": round(score.engagement_at(at, decay), 2) if score else 0.0,
        "grade": score.grade if score else None,
        "segments": sorted(lead.segments),
        "tags": sorted(lead.tags),
        "unsubscribed": lead.unsubscribed,
        "email_status": lead.email_status,
        "suppressed": suppressed,
        "quiet": lead.quiet,
        "owner": lead.owner,
        "created_at": lead.created_at.isoformat(),
        "last_activity_at": lead.last_activity_at.isoformat() if lead.last_activity_at else None,
    }
