"""CRM events for people kindling does not know yet: kept, listed, and applied when they appear.

A CRM often knows a person first: a deal is opened for a contact who has never filled a form,
or a webhook arrives a moment before the identify that creates the lead. Such an event is kept
under the email and the CRM id it names. When a lead becomes known by that email (it is created
or identifies), or a later CRM event links that CRM id to a lead, the kept events are published
again as they came, in the order they happened, and the CRM events function applies them like
any other; their event ids make a second application harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field

from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.leads.addresses import normalize_email

#: How long an unmatched CRM event waits for its lead before it is dropped.
KEPT_FOR = timedelta(days=90)


class UnmatchedCrmEvent(BaseModel):
    """One CRM event that matched no lead, as the admin API lists it."""

    event_id: str
    kind: str  # crm.deal_stage_changed, crm.contact_updated, ...
    provider: str
    object_id: str | None = None
    email: str | None = None
    stage: str | None = None
    crm_identity: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """What a lead must be known by for this event to apply to it."""
        keys = [email_key(self.email)] if self.email else []
        return keys + ([crm_key(self.crm_identity)] if self.crm_identity else [])

    @property
    def expires_at(self) -> datetime:
        return self.received_at + KEPT_FOR


def email_key(email: str) -> str:
    return f"email:{email}"


def crm_key(identity: str) -> str:
    return f"crm:{identity}"


def unmatched_event(
    kind: str, detail: dict[str, Any], crm_identity: str | None, occurred_at: datetime | None, now: datetime
) -> UnmatchedCrmEvent:
    person = detail.get("lead") or {}
    crm_id = person.get("crm_id")
    return UnmatchedCrmEvent(
        event_id=str(detail["event_id"]),
        kind=kind,
        provider=str(detail.get("provider") or "crm"),
        object_id=str(crm_id) if crm_id is not None else None,
        email=normalize_email(person.get("email")),
        stage=detail.get("lifecycle_stage") or detail.get("crm_stage"),
        crm_identity=crm_identity,
        occurred_at=occurred_at,
        received_at=now,
        detail=detail,
    )


class UnmatchedStore(Protocol):
    def keep(self, event: UnmatchedCrmEvent) -> None: ...
    def waiting_for(self, key: str, now: datetime) -> list[UnmatchedCrmEvent]: ...
    def forget(self, event: UnmatchedCrmEvent) -> None: ...


def release_waiting(
    store: UnmatchedStore, publisher: EventPublisher, keys: list[str], now: datetime
) -> list[UnmatchedCrmEvent]:
    """Publish again every kept event waiting for any of ``keys`` (oldest first), then forget them.

    Published before forgotten: a crash in between publishes again, which the event ids absorb.
    """
    found: dict[str, UnmatchedCrmEvent] = {}
    for key in keys:
        for event in store.waiting_for(key, now):
            found.setdefault(event.event_id, event)
    waiting = sorted(found.values(), key=lambda e: (e.occurred_at or e.received_at).astimezone(UTC))
    if not waiting:
        return []
    publisher.publish(
        [
            BusEvent(
                source="kindling.crm",
                detail_type=event.kind,
                time=event.occurred_at or event.received_at,
                detail={**event.detail, "released_at": now.isoformat()},
            )
            for event in waiting
        ]
    )
    for event in waiting:
        store.forget(event)
    return waiting


def release_for_email(
    store: UnmatchedStore, publisher: EventPublisher, email: str | None, now: datetime
) -> list[UnmatchedCrmEvent]:
    """A lead became known by ``email``: the CRM events kept for that address apply to it now."""
    normal = normalize_email(email)
    return release_waiting(store, publisher, [email_key(normal)], now) if normal else []
