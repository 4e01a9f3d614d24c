"""PrivacyStore on the single table: find every item that names a person, and delete them all.

Found from the lead, never by scanning: its partition (profile, timeline, score, stage history,
enrollments, sends made), the identities it lists (email, user id, anonymous ids, CRM ids), the
leads merged into it, the message markers and email sends its timeline names, and the
suppression list, its removals and the CRM events held for its address.

SUPPRESSHASH#<hash> / SUPPRESSHASH   an erased address that had opted out (kindling.leads.privacy)
ERASURE#<hash>      / <time>         that a person was erased (keyed by a hash of the lead id):
                                     when, by whom, why, item counts; no personal data
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kindling.adapters import aws
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.items import from_item, lead_key, send_key, suppression_key
from kindling.adapters.program_store import enrollment_of
from kindling.adapters.sales_store import DynamoUnmatchedStore
from kindling.crm.unmatched import UnmatchedCrmEvent, crm_key, email_key
from kindling.leads.privacy import PersonData
from kindling.leads.profiles import Lead
from kindling.programs.due import DueItem
from kindling.programs.engine import queued_send_ids
from kindling.programs.service import step_due

_KINDS = (
    ("EVT#", "timeline"),
    ("ENROLL#", "enrollments"),
    ("STAGE#", "stage_history"),
    ("SENT#", "sends_made"),
    ("HANDOFF#", "hand_offs"),
    ("SCORE", "score"),
    ("PROFILE", "profile"),
)


#: What the metrics' first layout marked once per send, under the send's own id.
LEGACY_MARKERS = ("delivered", "bounced", "complained", "opened", "clicked")


def hashed_suppression_key(digest: str) -> dict[str, Any]:
    return {"PK": {"S": f"SUPPRESSHASH#{digest}"}, "SK": {"S": "SUPPRESSHASH"}}


class DynamoPrivacyStore(aws.TableAdapter):
    def gather(self, lead_id: str) -> PersonData | None:
        profile = self._get(lead_key(lead_id))
        hops = 0
        while profile is not None and "merged_into" in profile and hops < 5:
            profile = self._get(lead_key(profile["merged_into"]["S"]))
            hops += 1
        if profile is None:
            return None
        lead = Lead.model_validate(from_item(profile))
        person = PersonData(lead=lead)
        lead_ids = [lead.lead_id, *profile.get("merged_ids", {}).get("SS", [])]
        profiles: list[dict[str, Any]] = []
        send_ids: set[str] = set()
        for owner in lead_ids:
            for item in self._partition(f"LEAD#{owner}"):
                self._add(person, self._kind(item["SK"]["S"]), item)
                if item["SK"]["S"] == "PROFILE":
                    profiles.append(item)
                values = from_item(item)
                send_id = (values.get("properties") or {}).get("send_id")
                if isinstance(send_id, str):
                    send_ids.add(send_id)
                if item["SK"]["S"].startswith("SENT#"):
                    send_ids.add(item["SK"]["S"].split("#", 2)[2])
                if item["SK"]["S"].startswith("ENROLL#"):  # queued, if not (yet) sent
                    send_ids.update(queued_send_ids(enrollment_of(item)))
        # Every profile's identities: the survivor's and those of the leads merged into it.
        identities: list[tuple[str, str | None]] = []
        emails: dict[str, dict[str, Any]] = {}
        for item in profiles:
            values = from_item(item)
            if values.get("email"):
                emails[values["email"]] = values
            identities += [("email", values.get("email")), ("user", values.get("user_id"))]
            identities += [("anon", anon) for anon in values.get("anonymous_ids") or []]
            identities += [("crm", crm) for crm in values.get("crm_ids") or []]
        keys = [
            {"PK": {"S": f"IDENT#{kind}#{value}"}, "SK": {"S": "IDENT"}}
            for kind, value in identities
            if value
        ]
        entries = person.items.get("timeline", [])
        keys += [
            {"PK": {"S": f"MSG#{e['message_id']['S']}"}, "SK": {"S": "MSG"}}
            for e in entries
            if "message_id" in e
        ]
        for send_id in sorted(send_ids):
            keys += [send_key(send_id), {"PK": {"S": f"SESSEND#{send_id}"}, "SK": {"S": "SESSEND"}}]
            # First-open markers of the metrics' first layout named the send itself (now a pseudonym).
            person.keys += [
                {"PK": {"S": f"METRICSEEN#{send_id}#{what}"}, "SK": {"S": "METRICSEEN"}}
                for what in LEGACY_MARKERS
            ]
        keys += [suppression_key(email) for email in emails]
        names = {"ident": "identities", "msg": "message_markers", "send": "sends", "sessend": "sends"}
        for item in self._batch_get(keys):
            pk = item["PK"]["S"]
            if pk.startswith("IDENT#") and item.get("lead_id", {}).get("S") not in lead_ids:
                continue  # an identity another lead holds is theirs, not this person's
            kind = pk.split("#", 1)[0].lower()
            self._add(person, names.get(kind, "suppression" if kind == "suppress" else kind), item)
            if pk.startswith("SUPPRESS#"):
                person.opted_out[pk.removeprefix("SUPPRESS#")] = item["reason"]["S"]
        for email, values in emails.items():
            if email not in person.opted_out:
                reason = values.get("email_status") or (
                    "unsubscribed" if values.get("unsubscribed") else None
                )
                if reason:
                    person.opted_out[email] = reason
            for item in self._partition(f"SUPPRESSLOG#{email}"):
                self._add(person, "suppression_removals", item)
        # Membership of segments, and the work due for the person: their enrollments' wake-ups
        # and their deferred sends (both name the lead).
        for item in profiles:
            owner = item["PK"]["S"].removeprefix("LEAD#")
            for segment in from_item(item).get("segments") or []:
                person.keys.append({"PK": {"S": f"SEGMENT#{segment}"}, "SK": {"S": owner}})
        due = DynamoDueStore(self._table, self.client)
        for item in person.items.get("enrollments", []):
            enrollment = enrollment_of(item)
            wake = step_due(enrollment, enrollment.updated_at)
            if wake is not None:
                person.keys.append({k: due.item(wake)[k] for k in ("PK", "SK")})
            for written in enrollment.due_keys:  # earlier wake-ups, stale but not yet released
                pk, _, sk = written.partition("|")
                person.keys.append({"PK": {"S": pk}, "SK": {"S": sk}})
        for item in person.items.get("sends", []):
            if item.get("status", {}).get("S") == "deferred" and "due_at" in item:
                send_id = item["PK"]["S"].removeprefix("SEND#")
                at = datetime.fromisoformat(item["due_at"]["S"].replace("Z", "+00:00"))
                deferred = DueItem(id=f"send:{send_id}", kind="send", due_at=at, payload={})
                person.keys.append({k: due.item(deferred)[k] for k in ("PK", "SK")})
        waiting = [f"CRMWAIT#{email_key(email)}" for email in emails]
        waiting += [f"CRMWAIT#{crm_key(value)}" for kind, value in identities if kind == "crm" and value]
        unmatched = DynamoUnmatchedStore(self._table, self.client)
        for partition in waiting:
            for item in self._partition(partition):
                self._add(person, "crm_events_held", item)
                event = UnmatchedCrmEvent.model_validate_json(item["event"]["S"])
                # The event is kept under each key it has and in the list: all of them go.
                person.keys.append({"PK": {"S": unmatched.LIST_PK}, "SK": {"S": unmatched.list_sk(event)}})
                person.keys += [
                    {"PK": {"S": f"CRMWAIT#{k}"}, "SK": {"S": event.event_id}} for k in event.keys
                ]
        return person

    def erase(self, person: PersonData, keep_hashes: list[tuple[str, str]], audit: dict[str, Any]) -> int:
        for digest, reason in keep_hashes:  # first: never a moment when an opted-out address could be mailed
            self.client.put_item(
                TableName=self._table,
                Item={**hashed_suppression_key(digest), "reason": {"S": reason}, "at": {"S": audit["at"]}},
            )
        keys = list({(k["PK"]["S"], k["SK"]["S"]): k for k in person.keys}.values())
        # The profiles last: an erasure cut short (a timeout, throttling) can be run again, as the
        # person is still found by their profile until everything else is gone.
        keys.sort(key=lambda k: k["SK"]["S"] == "PROFILE")
        for start in range(0, len(keys), 25):
            request: dict[str, Any] = {
                self._table: [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
            }
            for _ in range(8):
                answer = self.client.batch_write_item(RequestItems=request)
                request = answer.get("UnprocessedItems") or {}
                if not request:
                    break
            else:
                raise aws.translate(RuntimeError("DynamoDB left deletes unprocessed"), "an erasure")
        record = {k: v for k, v in audit.items() if k not in ("lead_id", "erasure_hash")}
        self.client.put_item(
            TableName=self._table,
            Item={
                "PK": {"S": f"ERASURE#{audit['erasure_hash']}"},  # the person, never named in clear
                "SK": {"S": audit["at"]},
                "record": {"S": json.dumps(record)},
            },
        )
        return len(keys)

    # --- plumbing ------------------------------------------------------------------------------
    @staticmethod
    def _kind(sk: str) -> str:
        return next((kind for prefix, kind in _KINDS if sk.startswith(prefix)), "other")

    @staticmethod
    def _add(person: PersonData, kind: str, item: dict[str, Any]) -> None:
        person.items.setdefault(kind, []).append(item)
        person.keys.append({"PK": item["PK"], "SK": item["SK"]})

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            found += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        unique = list({(k["PK"]["S"], k["SK"]["S"]): k for k in keys}.values())
        found: list[dict[str, Any]] = []
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self._table: {"Keys": unique[start : start + 100], "ConsistentRead": True}
            }
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                found += answer.get("Responses", {}).get(self._table, [])
                request = answer.get("UnprocessedKeys") or {}
        return found


def readable(person: PersonData) -> dict[str, Any]:
    """The access export: every item as plain JSON (a packed state as its document), grouped by kind."""
    return {
        "lead_id": person.lead.lead_id,
        "email": person.lead.email,
        "items": {kind: [from_item(item) for item in found] for kind, found in sorted(person.items.items())},
    }
