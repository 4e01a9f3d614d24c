"""Item codecs and keys of the single table, shared by its adapters."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from kindling.kernel.clock import isoformat
from kindling.leads.profiles import Identity, TimelineEntry

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)  # one sortable form, so string comparisons order by time
    return str(value)


def to_attribute(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute (floats become Decimals, as DynamoDB needs)."""
    plain = json.loads(json.dumps(value, default=_encode), parse_float=Decimal)
    return _serializer.serialize(plain)


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in values.items() if v is not None}


def packed_json(text: str) -> dict[str, Any]:
    """A JSON document as a zlib-compressed binary attribute.

    For the per-lead state items rewritten most often (a score, an enrollment): DynamoDB bills a
    write by the item's size, and their JSON shrinks to about a quarter.
    """
    return {"B": zlib.compress(text.encode(), 6)}


def json_text(value: dict[str, Any]) -> str | bytes:
    """The JSON document an attribute holds, packed (``packed_json``) or as a plain string."""
    return zlib.decompress(value["B"]) if "B" in value else str(value["S"])


def _plain(value: Any) -> Any:
    if isinstance(value, Binary | bytes):  # a packed JSON document reads back as the document
        return json.loads(zlib.decompress(bytes(value)))
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def lead_key(lead_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"LEAD#{lead_id}"}, "SK": {"S": "PROFILE"}}


def send_key(send_id: str) -> dict[str, Any]:
    """An email send's state: written by the sender, read (and given up) by programs."""
    return {"PK": {"S": f"SEND#{send_id}"}, "SK": {"S": "SEND"}}


def suppression_key(email: str) -> dict[str, Any]:
    """An address never mailed: written by SES events, the admin API and imports; read by the sender."""
    return {"PK": {"S": f"SUPPRESS#{email}"}, "SK": {"S": "SUPPRESS"}}


def identity_item(identity: Identity, lead_id: str) -> dict[str, Any]:
    """An identity's item; an email's is also listed for the console's search by prefix and domain."""
    item = {**identity_key(identity), "lead_id": {"S": lead_id}}
    if identity.kind == "email":
        item["GSI1PK"] = {"S": f"EMAILPFX#{identity.value[:2]}"}
        item["GSI1SK"] = {"S": identity.value}
        item["GSI2PK"] = {"S": f"EMAILDOM#{identity.value.rsplit('@', 1)[-1]}"}
        item["GSI2SK"] = {"S": identity.value}
    return item


#: Added to each update that sets a lead's stage: lists the profile under it, by last activity.
STAGE_INDEX_SET = "GSI2PK = :stage_key, GSI2SK = if_not_exists(last_activity_at, :at)"


def stage_index_values(stage: str) -> dict[str, Any]:
    return {":stage_key": {"S": f"STAGE#{stage}"}}


def identity_key(identity: Identity) -> dict[str, Any]:
    return {"PK": {"S": f"IDENT#{identity.kind}#{identity.value}"}, "SK": {"S": "IDENT"}}


def timeline_sk(entry: TimelineEntry) -> str:
    return f"EVT#{isoformat(entry.timestamp)}#{entry.message_id}"
