"""What the console reads, by index and by partition, never by scanning the table.

GSI1  EMAILPFX#<first two characters> / <email>   email identities, for a prefix search
GSI2  EMAILDOM#<domain>               / <email>   email identities, for a company domain
GSI2  STAGE#<stage>                   / <last activity or stage time>   profiles by stage
GSI2  ENROLLED#<program>              / <status>#<step>#<enrollment>     enrollments by program
(GSI2 projects its keys and ``lead_id`` only: a listing reads the profiles it shows.)
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kindling.adapters import aws
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.export_store import decode_cursor, encode_cursor
from kindling.adapters.items import from_item, lead_key
from kindling.adapters.score_store import score_key, stored_score
from kindling.kernel.errors import InvalidInput
from kindling.leads.profiles import Lead, TimelineEntry
from kindling.leads.views import Search, email_domain_key, email_prefix_key, stage_key
from kindling.programs.overview import enrollment_index_key
from kindling.scoring.rules import LeadScore


class DynamoConsoleStore(aws.TableAdapter):
    def __init__(self, table_name: str, client: Any = None) -> None:
        super().__init__(table_name, client)
        self._leads = DynamoLeadStore(table_name, client)

    def search(self, search: Search, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Lead ids whose email matches, in address order."""
        if search.kind == "email":
            found = self._leads.lead_for_email(search.value)
            return ([found] if found else []), None
        index, key, prefix = (
            ("GSI1", email_prefix_key(search.value), search.value)
            if search.kind == "prefix"
            else ("GSI2", email_domain_key("x@" + search.value), None)
        )
        name = index
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": name,
            "KeyConditionExpression": f"{name}PK = :pk"
            + (f" AND begins_with({name}SK, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {
                ":pk": {"S": key},
                **({":prefix": {"S": prefix}} if prefix else {}),
            },
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = self.client.query(**kwargs)
        ids = [item["lead_id"]["S"] for item in page.get("Items", []) if "lead_id" in item]
        return list(dict.fromkeys(ids)), encode_cursor(page.get("LastEvaluatedKey"))

    def by_stage(self, stage: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Lead ids in a lifecycle stage, most recently active first."""
        return self._listed(stage_key(stage), limit, cursor)

    def recent(self, stages: list[str], limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Known leads of every stage, most recently active first: the stages' lists merged.

        Each stage's list is read from where the last page took its last lead; the cursor keeps
        one position per stage still unread, so a page costs one query per stage.
        """
        positions: dict[str, Any] = {stage: None for stage in stages}
        if cursor:
            try:
                given = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("cursor: give the next_cursor of the previous page") from None
            if not isinstance(given, dict) or not set(given) <= set(stages):
                raise InvalidInput("cursor: give the next_cursor of the previous page")
            positions = {stage: decode_cursor(start) if start else None for stage, start in given.items()}
        found: list[tuple[str, str, dict[str, Any]]] = []
        more: dict[str, bool] = {}
        for stage, start in positions.items():
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "GSI2",
                "KeyConditionExpression": "GSI2PK = :pk",
                "ExpressionAttributeValues": {":pk": {"S": stage_key(stage)}},
                "ScanIndexForward": False,
                "Limit": limit,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.client.query(**kwargs)
            found += [(item["GSI2SK"]["S"], stage, item) for item in page.get("Items", [])]
            more[stage] = "LastEvaluatedKey" in page
        taken = sorted(found, key=lambda f: f[0], reverse=True)[:limit]
        last: dict[str, dict[str, Any]] = {}
        for _, stage, item in taken:
            last[stage] = {k: item[k] for k in ("PK", "SK", "GSI2PK", "GSI2SK")}
        taken_ids = {id(item) for _, _, item in taken}
        untaken = {stage for _, stage, item in found if id(item) not in taken_ids}  # fetched, left for later
        following: dict[str, str | None] = {}
        for stage, start in positions.items():
            if stage in last:
                following[stage] = encode_cursor(last[stage])
                if not more[stage] and stage not in untaken:
                    del following[stage]  # read to its end
            elif stage in untaken:
                following[stage] = encode_cursor(start) if start else None
        next_cursor = base64.urlsafe_b64encode(json.dumps(following).encode()).decode() if following else None
        ids = [item["PK"]["S"].removeprefix("LEAD#") for _, _, item in taken]
        return ids, next_cursor

    def by_grade(self, grade: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Lead ids of a fit grade, highest engagement now first (``score_rank`` keeps the order)."""
        return self._listed(f"GRADE#{grade}", limit, cursor)

    def by_segment(self, segment: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Lead ids in a segment, the latest to enter it first."""
        return self._listed(f"MEMBERS#{segment}", limit, cursor)

    def _listed(self, key: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "GSI2",
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": key}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = self.client.query(**kwargs)
        ids = [
            item["lead_id"]["S"] if "lead_id" in item else item["PK"]["S"].removeprefix("LEAD#")
            for item in page.get("Items", [])
        ]
        return ids, encode_cursor(page.get("LastEvaluatedKey"))

    def cards(self, lead_ids: list[str]) -> list[tuple[Lead, LeadScore | None]]:
        """The profiles and scores of these leads, in the order given (merged ones followed)."""
        wanted = [lead_key(i) for i in lead_ids] + [score_key(i) for i in lead_ids]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            request: dict[str, Any] = {self._table: {"Keys": wanted[start : start + 100]}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    found[f"{item['PK']['S']}|{item['SK']['S']}"] = item
                request = answer.get("UnprocessedKeys") or {}
        cards = []
        for lead_id in lead_ids:
            profile = found.get(f"LEAD#{lead_id}|PROFILE")
            if profile is None or "merged_into" in profile:
                continue
            score = found.get(f"LEAD#{lead_id}|SCORE")
            state = stored_score(lead_id, score) if score else None
            cards.append((Lead.model_validate(from_item(profile)), state))
        return cards

    def timeline(
        self, lead_id: str, before: str | None, limit: int
    ) -> tuple[list[TimelineEntry], str | None]:
        """Entries newest first, ``limit`` at a time; ``before`` is the previous page's ``next_before``."""
        upper = before if before else "EVT#~"
        if not upper.startswith("EVT#") or len(upper) > 600:
            raise InvalidInput("before: give the next_before of the previous page")
        page = self.client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :upper",
            ExpressionAttributeValues={
                ":pk": {"S": f"LEAD#{lead_id}"},
                ":first": {"S": "EVT#"},
                ":upper": {"S": upper},
            },
            ScanIndexForward=False,
            Limit=limit + 1,
        )
        newer_excluded = [i for i in page.get("Items", []) if i["SK"]["S"] != before]
        items = newer_excluded[:limit]
        more = len(newer_excluded) > limit or "LastEvaluatedKey" in page
        entries = [TimelineEntry.model_validate(from_item(i)) for i in items]
        return entries, (items[-1]["SK"]["S"] if more and items else None)

    def email_entries(self, lead_id: str) -> list[TimelineEntry]:
        """Every timeline entry about an email (the sender's and SES's), oldest first."""
        found: list[TimelineEntry] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :evt)",
            "FilterExpression": "#type = :email OR begins_with(#event, :email_event)",
            "ExpressionAttributeNames": {"#type": "type", "#event": "event"},
            "ExpressionAttributeValues": {
                ":pk": {"S": f"LEAD#{lead_id}"},
                ":evt": {"S": "EVT#"},
                ":email": {"S": "email"},
                ":email_event": {"S": "Email "},
            },
        }
        while True:
            page = self.client.query(**kwargs)
            found += [TimelineEntry.model_validate(from_item(i)) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def enrollment_keys(self, program_id: str) -> list[str]:
        """The index sort keys (status, step, enrollment) of every enrollment of the program."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "GSI2",
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": enrollment_index_key(program_id)}},
        }
        while True:
            page = self.client.query(**kwargs)
            keys += [item["GSI2SK"]["S"] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return keys
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
