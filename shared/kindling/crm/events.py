"""The normalised CRM event, how deliveries are received once, and parsing every provider shares.

Each provider module (``hubspot``, ``pipedrive``, ``salesforce``, ``generic``) verifies its own
authentication and turns its payload into ``Delivery`` items carrying ``CrmEvent``s;
``receive`` publishes what was not applied before and records it (``WebhookLedger``), so a
CRM's retry of a delivery is acknowledged without publishing it again. Storage and the bus
are ports; nothing here calls AWS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from kindling.crm.config import CrmConfig, Provider
from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.errors import InvalidInput, KindlingError, PayloadTooLarge, Unauthorized
from kindling.kernel.json_input import is_storable_number, parse_json
from kindling.scoring.config import Stage

SOURCE = "kindling.crm"

DEAL_STAGE_CHANGED = "crm.deal_stage_changed"
CONTACT_UPDATED = "crm.contact_updated"
OWNER_ASSIGNED = "crm.owner_assigned"
ACTIVITY_LOGGED = "crm.activity_logged"
#: A contact was associated with a deal (HubSpot): the deal's stage now applies to that contact.
DEAL_ASSOCIATED = "crm.deal_associated"
EventType = Literal[
    "crm.deal_stage_changed",
    "crm.contact_updated",
    "crm.owner_assigned",
    "crm.activity_logged",
    "crm.deal_associated",
]

#: Far above any real delivery (HubSpot batches 100 events, Salesforce 100 notifications).
MAX_BODY_BYTES = 1024 * 1024
#: How far a signed timestamp may be from our clock (HubSpot's documented window; Standard Webhooks').
SIGNATURE_TOLERANCE = timedelta(minutes=5)
#: How far ahead of receipt a CRM's clock may date a change; later, the time of receipt replaces it.
MAX_CLOCK_AHEAD = timedelta(days=1)
#: How long a delivery's id is remembered: longer than any provider keeps retrying one.
DEDUP_RETENTION = timedelta(days=7)
MAX_ID_LENGTH = 256


class NotConfigured(KindlingError):
    """The provider's credentials are not set on this stack, so none of its requests can be trusted."""


# --- the normalised event --------------------------------------------------------------------------


class _Event(BaseModel):
    # Consumers parse this detail too: fields added later must not break them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CrmLead(_Event):
    """Who the event is about: by email when the CRM says it, and by the CRM's own id.

    ``crm_object`` says what ``crm_id`` names (``contact``, ``person``, ``lead``, ``deal``,
    ``opportunity``): a HubSpot deal event names only the deal, and a Pipedrive person and
    deal may share a number. Match ``crm:<provider>:<crm_id>`` against it.
    """

    email: str | None = None
    crm_id: str | None = None
    crm_object: str | None = None


class CrmActivity(_Event):
    type: str
    subject: str | None = None


class CrmEvent(_Event):
    """One change in a CRM, the same shape whichever CRM said it: the ``detail`` on the bus."""

    event_id: str
    type: EventType
    provider: Provider
    occurred_at: AwareDatetime
    lead: CrmLead
    deal_id: str | None = None
    crm_stage: str | None = None
    lifecycle_stage: Stage | None = None
    #: True only when ``crm_stage`` is given and the config maps it.
    stage_known: bool = False
    amount: float | None = None
    currency: str | None = None
    owner: str | None = None
    activity: CrmActivity | None = None
    #: Fields the CRM reported on a contact (name as the CRM spells it -> value as text).
    properties: dict[str, str | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_a_lead(self) -> CrmEvent:
        if self.lead.email is None and self.lead.crm_id is None:
            raise ValueError("a CRM event must name its lead by email or crm_id")
        return self

    def bus_event(self) -> BusEvent:
        return BusEvent(
            source=SOURCE,
            detail_type=self.type,
            detail=self.model_dump(mode="json"),
            time=self.occurred_at,
        )


@dataclass(frozen=True)
class Delivery:
    """One thing a CRM delivered (an event of a batch, a notification, a request), applied once.

    ``id`` is the same on every retry of it; ``events`` may be empty when nothing in it
    matters to nurturing (``ignored`` says why).
    """

    provider: Provider
    id: str
    digest: str
    events: tuple[CrmEvent, ...] = ()
    ignored: str | None = None


class _Stager:
    """Builds events for one provider with its stage mapping applied."""

    def __init__(self, provider: Provider, config: CrmConfig) -> None:
        self.provider = provider
        self.config = config

    def event(
        self,
        event_type: str,
        event_id: str,
        occurred_at: datetime,
        lead: CrmLead,
        crm_stage: str | None = None,
        **fields: Any,
    ) -> CrmEvent:
        lifecycle = self.config.lifecycle_stage(self.provider, crm_stage) if crm_stage else None
        try:
            return CrmEvent(
                event_id=f"{self.provider}:{event_id}",
                type=event_type,
                provider=self.provider,
                occurred_at=occurred_at,
                lead=lead,
                crm_stage=crm_stage,
                lifecycle_stage=lifecycle,
                stage_known=lifecycle is not None,
                **fields,
            )
        except ValidationError as exc:  # a value of a shape the provider's parser let through
            raise InvalidInput(_problems(exc)) from exc


# --- receiving -------------------------------------------------------------------------------------


class WebhookLedger(Protocol):
    """Deliveries already applied, remembered for ``DEDUP_RETENTION``."""

    def seen(self, provider: str, delivery_ids: Sequence[str]) -> set[str]:
        """Which of these ids were recorded before."""
        ...

    def record(
        self, provider: str, delivery_id: str, digest: str, event_ids: Sequence[str], now: datetime
    ) -> bool:
        """Remember a delivery; False when it was recorded meanwhile (a concurrent duplicate)."""
        ...


@dataclass
class Receipt:
    published: list[CrmEvent] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def unknown_stages(self) -> list[CrmEvent]:
        return [e for e in self.published if e.crm_stage is not None and not e.stage_known]

    def summary(self) -> dict[str, int]:
        return {
            "published": len(self.published),
            "duplicates": len(self.duplicates),
            "ignored": len(self.ignored),
        }


def receive(
    deliveries: Sequence[Delivery], ledger: WebhookLedger, publisher: EventPublisher, now: datetime
) -> Receipt:
    """Publish the events of every delivery not applied before, then remember those deliveries.

    Publishing comes first: if the bus fails, nothing is recorded and the CRM's retry
    publishes it. A crash between the two, or two copies of one delivery arriving at once,
    can publish a delivery twice; its events keep their ``event_id``, so consumers dedup it.
    """
    receipt = Receipt()
    pending: dict[tuple[str, str], Delivery] = {}
    for delivery in deliveries:
        if not delivery.events:
            receipt.ignored.append(delivery.ignored or "nothing to apply")
        elif (delivery.provider, delivery.id) in pending:
            receipt.duplicates.append(delivery.id)
        else:
            pending[(delivery.provider, delivery.id)] = delivery
    fresh: list[Delivery] = []
    for provider in sorted({p for p, _ in pending}):
        ids = [i for p, i in pending if p == provider]
        seen = ledger.seen(provider, ids)
        for delivery_id in ids:
            if delivery_id in seen:
                receipt.duplicates.append(delivery_id)
            else:
                fresh.append(pending[(provider, delivery_id)])
    events = [event for delivery in fresh for event in delivery.events]
    if events:
        publisher.publish([event.bus_event() for event in events])
    for delivery in fresh:
        ledger.record(
            delivery.provider, delivery.id, delivery.digest, [e.event_id for e in delivery.events], now
        )
    receipt.published = events
    return receipt


# --- shared parsing --------------------------------------------------------------------------------


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES // 1024} KB")


def _as_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an id: text or a whole number")
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


#: An id as CRMs send them, numbers or text; visible ASCII so it can key a record.
Id = Annotated[
    str, BeforeValidator(_as_id), Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[!-~]+$")
]
Text = Annotated[str, BeforeValidator(_as_text)]


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for error in exc.errors():
        where = (prefix + ".".join(str(p) for p in error["loc"])).rstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _json(body: bytes) -> Any:
    return parse_json(body, "the body")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name and value and value.strip():
            return value.strip()
    return None


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def _check_window(signed_at: float, now: datetime, what: str, tolerance: timedelta) -> None:
    skew = signed_at - now.timestamp()
    if skew < -tolerance.total_seconds():
        raise Unauthorized(f"the {what} is more than {tolerance.total_seconds() / 60:.0f} minutes old")
    if skew > tolerance.total_seconds():
        raise Unauthorized(f"the {what} is too far in the future")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if is_storable_number(number) else None
