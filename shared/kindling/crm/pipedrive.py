"""Pipedrive: HTTP Basic credentials on the webhook, and v1/v2 notifications as deliveries."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from kindling.crm.config import CrmConfig
from kindling.crm.events import (
    ACTIVITY_LOGGED,
    CONTACT_UPDATED,
    DEAL_STAGE_CHANGED,
    MAX_CLOCK_AHEAD,
    OWNER_ASSIGNED,
    CrmActivity,
    CrmEvent,
    CrmLead,
    Delivery,
    Text,
    _as_text,
    _digest,
    _json,
    _number,
    _problems,
    _Stager,
)
from kindling.kernel.clock import is_plausible_time
from kindling.kernel.errors import InvalidInput, Unauthorized
from kindling.leads.addresses import normalize_email

# --- Pipedrive -------------------------------------------------------------------------------------


def verify_pipedrive(user: str, password: str, authorization: str | None) -> None:
    """Accept the request only with the HTTP Basic credentials configured on the Pipedrive webhook."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not credentials.strip():
        raise Unauthorized("send the Pipedrive webhook's HTTP Basic credentials")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized("the HTTP Basic credentials are not valid base64") from exc
    given_user, separator, given_password = decoded.partition(":")
    # Both compared, always: how far a guess got is not told by the time it takes.
    user_matches = hmac.compare_digest(given_user.encode(), user.encode())
    password_matches = hmac.compare_digest(given_password.encode(), password.encode())
    if not (separator and user_matches and password_matches):
        raise Unauthorized("invalid Pipedrive webhook credentials")


class PipedriveMeta(BaseModel):
    """``meta`` of a Pipedrive webhook: v1 (``object``; ``added``, ``updated``) or v2 (``entity``;
    ``create``, ``change``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: str = Field(min_length=1)
    object: str | None = None
    entity: str | None = None
    version: Text | None = None
    v: int | None = None
    #: The object's id (v1), the event's (v2); test deliveries send "".
    id: Any = None
    entity_id: Any = None
    timestamp: int | float | str | None = None
    timestamp_micro: int | None = None

    @model_validator(mode="after")
    def _names_an_object(self) -> PipedriveMeta:
        if not (self.object or self.entity):
            raise ValueError("names no object: expected meta.object (v1) or meta.entity (v2)")
        return self

    @property
    def kind(self) -> str:
        return str(self.entity or self.object)

    @property
    def verb(self) -> str:
        return {"added": "create", "updated": "change", "deleted": "delete", "merged": "merge"}.get(
            self.action, self.action
        )

    def occurred_at(self, fallback: datetime) -> datetime:
        """When the change happened; ``fallback`` (the time of receipt) when the meta says nothing
        usable: no time, one that does not parse or exist, before 2000, or a day ahead of receipt."""
        try:
            when = self._stated_time()
        except (ValueError, OverflowError, OSError):
            return fallback
        if when is None or not is_plausible_time(when, fallback, MAX_CLOCK_AHEAD):
            return fallback
        return when

    def _stated_time(self) -> datetime | None:
        if self.timestamp_micro:
            return datetime.fromtimestamp(self.timestamp_micro / 1_000_000, UTC)
        stamp = self.timestamp
        if isinstance(stamp, str) and stamp.strip().isascii() and stamp.strip().isdigit():
            stamp = int(stamp) if len(stamp.strip()) <= 20 else None
        if isinstance(stamp, int | float) and stamp > 0:
            return datetime.fromtimestamp(stamp / 1000 if stamp > 10**11 else stamp, UTC)
        if isinstance(stamp, str) and stamp.strip():
            parsed = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return None


def _reference(value: Any) -> str | None:
    """A Pipedrive reference: a bare id, or (v1 API style) an object with ``value`` or ``id``."""
    if isinstance(value, dict):
        value = value.get("value", value.get("id"))
    if value is None or isinstance(value, bool) or value == "":
        return None
    return str(value)


def _text_or_none(value: Any) -> str | None:
    """A text field as Pipedrive sends it: anything else (a number, an object) is not that field."""
    return value if isinstance(value, str) and value else None


def _primary_email(value: Any) -> str | None:
    if isinstance(value, str):
        return normalize_email(value)
    if isinstance(value, list):
        entries = [e for e in value if isinstance(e, dict) and e.get("value")]
        entries.sort(key=lambda e: not e.get("primary"))
        for entry in entries:
            if email := normalize_email(entry["value"]):
                return email
    return None


def _changed(current: dict[str, Any], previous: dict[str, Any] | None, *names: str) -> bool:
    """Whether any of ``names`` differs from ``previous`` (v1 sends all of it, v2 only what changed)."""
    if previous is None:
        return False
    return any(
        name in previous and _reference(previous[name]) != _reference(current.get(name)) for name in names
    )


def _scalar_changes(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, str | None]:
    if not previous:
        return {}
    changes: dict[str, str | None] = {}
    for name, before in previous.items():
        after = current.get(name)
        if after != before and (after is None or isinstance(after, str | int | float | bool)):
            changes[name] = None if after is None else str(_as_text(after))
    return changes


def pipedrive_deliveries(body: bytes, config: CrmConfig, now: datetime) -> list[Delivery]:
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object with meta and current (v1) or data (v2)")
    try:
        meta = PipedriveMeta.model_validate(payload.get("meta"))
    except ValidationError as exc:
        raise InvalidInput(_problems(exc, "meta.")) from exc
    is_v2 = "data" in payload or meta.entity is not None
    record_name = "data" if is_v2 else "current"
    current = payload.get(record_name)
    previous = payload.get("previous")
    if previous is not None and not isinstance(previous, dict):
        raise InvalidInput("previous: expected an object or null")
    # The same notification on every retry, but for the counters a retry bumps.
    content = {k: v for k, v in payload.items() if k != "retry"}
    content["meta"] = {k: v for k, v in payload["meta"].items() if k not in ("attempt", "retry")}
    ident = _digest(content)[:40]

    def ignored(reason: str) -> list[Delivery]:
        return [Delivery("pipedrive", ident, ident, ignored=f"pipedrive {meta.kind}.{meta.verb}: {reason}")]

    if meta.verb not in ("create", "change") or meta.kind not in ("deal", "person", "activity"):
        return ignored("not used")
    if not isinstance(current, dict):
        raise InvalidInput(f"{record_name}: expected the {meta.kind} as an object")
    object_id = _reference(current.get("id")) or _reference(meta.entity_id) or _reference(meta.id)
    if object_id is None:
        raise InvalidInput(f"{record_name}.id: required")
    stager = _Stager("pipedrive", config)
    when = meta.occurred_at(now)
    owner = _reference(current.get("owner_id", current.get("user_id")))
    events: list[CrmEvent] = []

    if meta.kind == "deal":
        person = current.get("person_id")
        person_id = _reference(person)
        email = _primary_email(person.get("email")) if isinstance(person, dict) else None
        lead = (
            CrmLead(email=email, crm_id=person_id, crm_object="person")
            if person_id
            else CrmLead(email=email, crm_id=object_id, crm_object="deal")
        )
        status = str(current.get("status") or "").lower()
        stage = status if status in ("won", "lost") else _reference(current.get("stage_id"))
        amount, currency = _number(current.get("value")), _text_or_none(current.get("currency"))
        if stage and (previous is None or _changed(current, previous, "stage_id", "status")):
            events.append(
                stager.event(
                    DEAL_STAGE_CHANGED,
                    f"{ident}:stage",
                    when,
                    lead,
                    stage,
                    deal_id=object_id,
                    amount=amount,
                    currency=currency,
                    owner=owner,
                )
            )
        if previous is not None and _changed(current, previous, "owner_id", "user_id"):
            events.append(
                stager.event(
                    OWNER_ASSIGNED,
                    f"{ident}:owner",
                    when,
                    lead,
                    deal_id=object_id,
                    amount=amount,
                    currency=currency,
                    owner=owner,
                )
            )
    elif meta.kind == "person":
        email = _primary_email(current.get("emails", current.get("email")))
        lead = CrmLead(email=email, crm_id=object_id, crm_object="person")
        changes = _scalar_changes(current, previous)
        events.append(
            stager.event(CONTACT_UPDATED, f"{ident}:contact", when, lead, owner=owner, properties=changes)
        )
        if previous is not None and _changed(current, previous, "owner_id", "user_id"):
            events.append(stager.event(OWNER_ASSIGNED, f"{ident}:owner", when, lead, owner=owner))
    elif meta.verb == "create":  # an activity logged against a person or a deal
        participants = current.get("participants")
        person_id = _reference(current.get("person_id"))
        if person_id is None and isinstance(participants, list):
            named = [p for p in participants if isinstance(p, dict) and p.get("person_id")]
            named.sort(key=lambda p: not p.get("primary"))
            person_id = _reference(named[0]["person_id"]) if named else None
        deal_id = _reference(current.get("deal_id"))
        if person_id:
            lead = CrmLead(crm_id=person_id, crm_object="person")
        elif deal_id:
            lead = CrmLead(crm_id=deal_id, crm_object="deal")
        else:
            return ignored("the activity names no person or deal")
        activity = CrmActivity(
            type=str(current.get("type") or "activity"), subject=_text_or_none(current.get("subject"))
        )
        events.append(
            stager.event(
                ACTIVITY_LOGGED,
                f"{ident}:activity",
                when,
                lead,
                deal_id=deal_id,
                owner=owner,
                activity=activity,
            )
        )
    if not events:
        return ignored("no stage or owner change")
    return [Delivery("pipedrive", ident, ident, tuple(events))]
