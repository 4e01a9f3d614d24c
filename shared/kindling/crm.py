"""What the CRM tells us: inbound webhooks from HubSpot, Pipedrive, Salesforce and any
Standard Webhooks sender, normalised into one ``CrmEvent`` each.

Sales works in the CRM; nurturing must follow it: a deal that moves to a proposal puts
the lead in a quiet period, a won deal makes a customer, a lost one recycles the lead.
Each provider says so in its own shape and authenticates in its own way. This module:

- verifies each provider's authentication (pure, ``now`` passed in): HubSpot's v3
  signature, Pipedrive's HTTP Basic credentials, Salesforce's organisation id plus a
  shared secret; the generic endpoint reuses ``kindling.webhooks.verify``;
- parses each provider's payload into ``Delivery`` items, each with a dedup id that is
  the same on every retry of it (the provider's event id where it gives one, else a
  digest of the content), carrying the ``CrmEvent``s it means;
- maps the provider's stage to a lifecycle stage by ``config/crm.yaml`` (``CrmConfig``).
  A stage the config does not name is kept as given and flagged ``stage_known: false``,
  never guessed;
- ``receive`` publishes what was not applied before and records it (``WebhookLedger``),
  so a CRM's retry of a delivery is acknowledged without publishing it again.

Storage and the bus are ports; nothing here calls AWS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from kindling.bus import BusEvent, EventPublisher
from kindling.emails import normalize_email
from kindling.errors import InvalidInput, KindlingError, PayloadTooLarge, Unauthorized
from kindling.scoring_config import Slug, Stage

SOURCE = "kindling.crm"
Provider = Literal["hubspot", "pipedrive", "salesforce", "generic"]
PROVIDERS: tuple[Provider, ...] = ("hubspot", "pipedrive", "salesforce", "generic")

DEAL_STAGE_CHANGED = "crm.deal_stage_changed"
CONTACT_UPDATED = "crm.contact_updated"
OWNER_ASSIGNED = "crm.owner_assigned"
ACTIVITY_LOGGED = "crm.activity_logged"
EventType = Literal[
    "crm.deal_stage_changed", "crm.contact_updated", "crm.owner_assigned", "crm.activity_logged"
]

#: Far above any real delivery (HubSpot batches 100 events, Salesforce 100 notifications).
MAX_BODY_BYTES = 1024 * 1024
#: How far a signed timestamp may be from our clock (HubSpot's documented window; Standard Webhooks').
SIGNATURE_TOLERANCE = timedelta(minutes=5)
#: How long a delivery's id is remembered: longer than any provider keeps retrying one.
DEDUP_RETENTION = timedelta(days=7)
MAX_ID_LENGTH = 256


class NotConfigured(KindlingError):
    """The provider's credentials are not set on this stack, so none of its requests can be trusted."""


# --- configuration ---------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fold(name: str) -> str:
    """How stage names are matched: case and runs of spaces do not matter."""
    return " ".join(name.split()).casefold()


class ReactivationPolicy(_Strict):
    """A lead left silent too long in a quiet stage is handed to a program that wakes it up."""

    program: Slug
    max_silence_days: dict[Stage, PositiveInt] = Field(min_length=1)


class RecyclePolicy(_Strict):
    """A lost deal's lead rests ``cooling_off_days``, then goes back into nurturing."""

    cooling_off_days: PositiveInt
    program: Slug


class CrmConfig(_Strict):
    """``config/crm.yaml``: how each CRM's stages read as lifecycle stages, and what follows them.

    ``stages`` maps, per provider, the stage as the CRM sends it (a HubSpot deal stage id
    or contact lifecycle value, a Pipedrive ``stage_id`` or ``won``/``lost``, a Salesforce
    ``StageName`` or lead ``Status``, a generic sender's stage name) to a lifecycle stage.
    Names match ignoring case and repeated spaces.

    ``quiet_stages`` are lifecycle stages, so one list holds for every CRM: while a lead's
    deal is in one of them, sales is talking to it and marketing email waits.
    """

    stages: dict[Provider, dict[str, Stage]] = Field(default_factory=dict)
    quiet_stages: list[Stage] = Field(default_factory=list)
    reactivation: ReactivationPolicy | None = None
    recycle: RecyclePolicy | None = None
    onboarding_program: Slug | None = None

    @field_validator("stages", mode="before")
    @classmethod
    def _names_are_text(cls, value: Any) -> Any:
        # YAML reads a Pipedrive stage id (`3: opportunity`) as a number; the CRM sends text.
        if not isinstance(value, dict):
            return value
        return {
            provider: {str(k): v for k, v in names.items()} if isinstance(names, dict) else names
            for provider, names in value.items()
        }

    @model_validator(mode="after")
    def _consistent(self) -> CrmConfig:
        problems = []
        for provider, names in self.stages.items():
            seen: dict[str, str] = {}
            for name in names:
                key = _fold(name)
                if not key:
                    problems.append(f"stages.{provider}: a stage name is blank")
                elif key in seen:
                    problems.append(
                        f"stages.{provider}: {name!r} and {seen[key]!r} are the same stage "
                        "(names match ignoring case and spaces); keep one"
                    )
                else:
                    seen[key] = name
        if len(set(self.quiet_stages)) != len(self.quiet_stages):
            problems.append("quiet_stages: a stage is listed twice")
        if self.reactivation is not None:
            for stage in self.reactivation.max_silence_days:
                if stage not in self.quiet_stages:
                    problems.append(
                        f"reactivation.max_silence_days.{stage}: {stage} is not one of quiet_stages, "
                        "so no lead is ever silent in it"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def lifecycle_stage(self, provider: Provider, crm_stage: str) -> Stage | None:
        """The lifecycle stage the config gives ``crm_stage``, or None when it names none."""
        names = self.stages.get(provider) or {}
        if crm_stage in names:
            return names[crm_stage]
        wanted = _fold(crm_stage)
        for name, stage in names.items():
            if _fold(name) == wanted:
                return stage
        return None


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
        return CrmEvent(
            event_id=f"{self.provider}:{event_id}",
            type=event_type,  # type: ignore[arg-type]
            provider=self.provider,
            occurred_at=occurred_at,
            lead=lead,
            crm_stage=crm_stage,
            lifecycle_stage=lifecycle,
            stage_known=lifecycle is not None,
            **fields,
        )


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
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc


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


# --- HubSpot ---------------------------------------------------------------------------------------

HUBSPOT_SIGNATURE_HEADER = "x-hubspot-signature-v3"
HUBSPOT_TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
#: The percent-encodings HubSpot decodes in the request URI before it signs (and no others).
_HUBSPOT_DECODED = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_HUBSPOT_ENCODED = re.compile("%(" + "|".join(_HUBSPOT_DECODED) + ")", re.IGNORECASE)
#: HubSpot's object type ids, for subscriptions on the generic ``object.*`` types.
_HUBSPOT_OBJECT_TYPES = {"0-1": "contact", "0-3": "deal"}


#: In the configured public URL, the API's id, known only per request (see template.yaml).
API_ID_PLACEHOLDER = "{api_id}"


def public_base_url(configured: str, api_id: str) -> str:
    """The configured public URL of the API, ``{api_id}`` filled in when it holds one.

    That is the API's own URL (``https://{api_id}.execute-api.<region>.<suffix>``) when no
    ``PublicApiUrl`` is set: what the template would say if it could name the API there.
    """
    if API_ID_PLACEHOLDER not in configured:
        return configured
    if not re.fullmatch(r"[a-z0-9]{1,32}", api_id or ""):
        raise ValueError(f"not an API Gateway API id: {api_id!r}")
    return configured.replace(API_ID_PLACEHOLDER, api_id)


def hubspot_request_uri(public_api_url: str, path: str, query: str = "") -> str:
    """The URI HubSpot signed: the public URL it called, with HubSpot's listed characters decoded.

    It is rebuilt from the API's configured public base URL, never from the host the
    request reached (API Gateway's own domain and stage are not what HubSpot called).
    """
    uri = public_api_url.rstrip("/") + path + (f"?{query}" if query else "")
    return _HUBSPOT_ENCODED.sub(lambda m: _HUBSPOT_DECODED[m.group(1).upper()], uri)


def hubspot_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 over method + URI + body + timestamp."""
    source = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(client_secret.encode(), source, hashlib.sha256).digest()).decode()


def verify_hubspot(
    client_secret: str,
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
) -> None:
    """Accept the request only if it carries a v3 signature of this request made within ``tolerance``."""
    signature = _header(headers, HUBSPOT_SIGNATURE_HEADER)
    timestamp = _header(headers, HUBSPOT_TIMESTAMP_HEADER)
    if signature is None:
        raise Unauthorized("missing the X-HubSpot-Signature-v3 header")
    if timestamp is None:
        raise Unauthorized("missing the X-HubSpot-Request-Timestamp header")
    if not re.fullmatch(r"[0-9]{1,15}", timestamp):
        raise Unauthorized("the X-HubSpot-Request-Timestamp header is not a whole number of milliseconds")
    _check_window(int(timestamp) / 1000, now, "X-HubSpot-Request-Timestamp", tolerance)
    expected = hubspot_signature(client_secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("invalid X-HubSpot-Signature-v3")


class HubspotEvent(BaseModel):
    """One event of a HubSpot webhook batch, as HubSpot documents it (extra fields ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_id: Id = Field(alias="eventId")
    subscription_id: Id | None = Field(default=None, alias="subscriptionId")
    portal_id: Id = Field(alias="portalId")
    app_id: Id | None = Field(default=None, alias="appId")
    occurred_at: int = Field(alias="occurredAt", ge=0, lt=10**14)
    subscription_type: str = Field(alias="subscriptionType", min_length=3)
    attempt_number: int | None = Field(default=None, alias="attemptNumber")
    object_id: Id = Field(alias="objectId")
    object_type_id: str | None = Field(default=None, alias="objectTypeId")
    property_name: str | None = Field(default=None, alias="propertyName")
    property_value: Text | None = Field(default=None, alias="propertyValue")
    change_source: str | None = Field(default=None, alias="changeSource")
    #: Not HubSpot's: some setups add the contact's address on the way (workflows, middleware).
    contact_email: str | None = Field(default=None, alias="contactEmail")
    email: str | None = None

    @property
    def delivery_id(self) -> str:
        # HubSpot says an eventId alone is not guaranteed unique; with these it names one
        # notification, and every retry of it (attemptNumber is all that changes).
        return f"{self.portal_id}:{self.subscription_id or '-'}:{self.event_id}:{self.object_id}"

    @property
    def object_and_action(self) -> tuple[str | None, str]:
        kind, _, action = self.subscription_type.partition(".")
        if kind == "object":
            return _HUBSPOT_OBJECT_TYPES.get(self.object_type_id or ""), action
        return kind, action


def hubspot_deliveries(body: bytes, config: CrmConfig) -> list[Delivery]:
    payload = _json(body)
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise InvalidInput("expected a JSON array of HubSpot webhook events")
    events: list[HubspotEvent] = []
    problems: list[str] = []
    for index, raw in enumerate(payload):
        try:
            events.append(HubspotEvent.model_validate(raw))
        except ValidationError as exc:
            problems.extend(_problems(exc, f"[{index}]."))
    if problems:
        raise InvalidInput(problems)
    stager = _Stager("hubspot", config)
    return [_hubspot_delivery(event, raw, stager) for event, raw in zip(events, payload, strict=True)]


def _hubspot_delivery(event: HubspotEvent, raw: Any, stager: _Stager) -> Delivery:
    content = {k: v for k, v in raw.items() if k != "attemptNumber"}
    kind, action = event.object_and_action
    name = event.property_name
    value = event.property_value if event.property_value != "" else None
    email = normalize_email(event.contact_email) or normalize_email(event.email)
    when = _from_millis(event.occurred_at)
    ident = event.delivery_id

    def built(*events: CrmEvent) -> Delivery:
        return Delivery("hubspot", ident, _digest(content), events)

    if kind == "deal":
        lead = CrmLead(email=email, crm_id=event.object_id, crm_object="deal")
        if action == "propertyChange" and name == "dealstage" and value:
            return built(stager.event(DEAL_STAGE_CHANGED, ident, when, lead, value, deal_id=event.object_id))
        if action == "propertyChange" and name == "hubspot_owner_id":
            return built(
                stager.event(OWNER_ASSIGNED, ident, when, lead, deal_id=event.object_id, owner=value)
            )
    elif kind == "contact":
        if action == "propertyChange" and name == "email":
            email = normalize_email(value) or email
        lead = CrmLead(email=email, crm_id=event.object_id, crm_object="contact")
        if action == "propertyChange" and name == "hubspot_owner_id":
            return built(stager.event(OWNER_ASSIGNED, ident, when, lead, owner=value))
        if action == "propertyChange" and name:
            stage = value if name == "lifecyclestage" else None
            return built(stager.event(CONTACT_UPDATED, ident, when, lead, stage, properties={name: value}))
        if action == "creation":
            return built(stager.event(CONTACT_UPDATED, ident, when, lead))
    detail = f" {name}" if name else ""
    return Delivery(
        "hubspot", ident, _digest(content), ignored=f"hubspot {event.subscription_type}{detail} is not used"
    )


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
        if self.timestamp_micro:
            return datetime.fromtimestamp(self.timestamp_micro / 1_000_000, UTC)
        stamp = self.timestamp
        if isinstance(stamp, str) and stamp.strip().isdigit():
            stamp = int(stamp)
        if isinstance(stamp, int | float) and stamp > 0:
            return datetime.fromtimestamp(stamp / 1000 if stamp > 10**11 else stamp, UTC)
        if isinstance(stamp, str) and stamp.strip():
            try:
                parsed = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
            except ValueError:
                return fallback
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return fallback


def _reference(value: Any) -> str | None:
    """A Pipedrive reference: a bare id, or (v1 API style) an object with ``value`` or ``id``."""
    if isinstance(value, dict):
        value = value.get("value", value.get("id"))
    if value is None or isinstance(value, bool) or value == "":
        return None
    return str(value)


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


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
        amount, currency = _number(current.get("value")), current.get("currency") or None
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
            type=str(current.get("type") or "activity"), subject=current.get("subject") or None
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


# --- Salesforce ------------------------------------------------------------------------------------

SOAP_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NAMESPACE = "http://soap.sforce.com/2005/09/outbound"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
SALESFORCE_SECRET_HEADER = "x-kindling-secret"
#: What Salesforce expects back, or it retries the message (for up to 24 hours).
SALESFORCE_ACK = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?")
#: Record id prefixes: what a WhoId or WhatId points at.
_SALESFORCE_PREFIXES = {"003": "contact", "00Q": "lead", "006": "opportunity"}
_EMAIL_FIELDS = ("Email", "ContactEmail", "Contact_Email__c")


@dataclass(frozen=True)
class SalesforceNotification:
    id: str
    object_type: str
    fields: dict[str, str | None]

    def field(self, *names: str) -> str | None:
        for name in names:
            value = self.fields.get(name)
            if value is not None and value.strip():
                return value.strip()
        return None


@dataclass(frozen=True)
class SalesforceMessage:
    organization_id: str
    action_id: str | None
    notifications: tuple[SalesforceNotification, ...]


def verify_salesforce_secret(secret: str, *given: str | None) -> None:
    """The shared secret, from the URL (``?secret=``) or the ``X-Kindling-Secret`` header."""
    candidates = [g for g in given if g]
    if not candidates:
        raise Unauthorized("missing the secret: add ?secret=... to the outbound message's endpoint URL")
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), secret.encode())
    if not matched:
        raise Unauthorized("invalid secret")


def _org15(org_id: str) -> str:
    # An 18-character id is the 15-character one plus a case checksum: either names the org.
    return org_id[:15] if _SALESFORCE_ID.fullmatch(org_id) else org_id


def verify_salesforce_org(org_id: str, message: SalesforceMessage) -> None:
    if not hmac.compare_digest(_org15(message.organization_id).encode(), _org15(org_id).encode()):
        raise Unauthorized("the message comes from another Salesforce organization")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: Element | None) -> str | None:
    if element is None or element.get(f"{{{XSI_NAMESPACE}}}nil") == "true":
        return None
    return (element.text or "").strip() or None


def parse_salesforce(body: bytes) -> SalesforceMessage:
    """An outbound message, parsed without DTDs, entity expansion or external references."""
    try:
        root = parse_xml(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidInput(
            f"the XML declares a DTD, entities or external references; refused ({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise InvalidInput(f"the body is not well-formed XML: {exc}") from exc
    body_element = _child(root, "Body") if root.tag == f"{{{SOAP_ENVELOPE}}}Envelope" else None
    notifications = _child(body_element, "notifications") if body_element is not None else None
    if notifications is None or notifications.tag != f"{{{OUTBOUND_NAMESPACE}}}notifications":
        raise InvalidInput("not a Salesforce outbound message: expected soapenv:Envelope/Body/notifications")
    organization_id = _text(_child(notifications, "OrganizationId"))
    if not organization_id:
        raise InvalidInput("notifications.OrganizationId: required")
    problems: list[str] = []
    parsed: list[SalesforceNotification] = []
    items = [n for n in notifications if _local(n.tag) == "Notification"]
    if not items:
        raise InvalidInput("notifications: holds no Notification")
    for index, item in enumerate(items):
        where = f"Notification[{index}]"
        notification_id = _text(_child(item, "Id"))
        sobject = _child(item, "sObject")
        if not notification_id or len(notification_id) > MAX_ID_LENGTH or not notification_id.isascii():
            problems.append(f"{where}.Id: required, a Salesforce id")
            continue
        if sobject is None:
            problems.append(f"{where}.sObject: required")
            continue
        declared = sobject.get(f"{{{XSI_NAMESPACE}}}type") or ""
        object_type = declared.rpartition(":")[2]
        if not object_type:
            problems.append(f"{where}.sObject: names no xsi:type (e.g. sf:Opportunity)")
            continue
        fields = {_local(child.tag): _text(child) for child in sobject if len(child) == 0}
        parsed.append(SalesforceNotification(notification_id, object_type, fields))
    if problems:
        raise InvalidInput(problems)
    return SalesforceMessage(organization_id, _text(_child(notifications, "ActionId")), tuple(parsed))


def _salesforce_time(value: str | None, fallback: datetime) -> datetime:
    if not value:
        return fallback
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _kind_of(record_id: str | None) -> str | None:
    return _SALESFORCE_PREFIXES.get(record_id[:3]) if record_id else None


def salesforce_deliveries(message: SalesforceMessage, config: CrmConfig, now: datetime) -> list[Delivery]:
    stager = _Stager("salesforce", config)
    return [_salesforce_delivery(n, stager, now) for n in message.notifications]


def _salesforce_delivery(notification: SalesforceNotification, stager: _Stager, now: datetime) -> Delivery:
    n = notification
    ident = n.id
    digest = _digest({"type": n.object_type, "fields": n.fields})
    when = _salesforce_time(n.field("LastModifiedDate", "SystemModstamp"), now)
    record_id = n.field("Id")
    email = normalize_email(n.field(*_EMAIL_FIELDS))
    owner = n.field("OwnerId")
    kind = n.object_type.lower()

    def built(event: CrmEvent) -> Delivery:
        return Delivery("salesforce", ident, digest, (event,))

    if kind == "opportunity" and record_id:
        contact_id = n.field("ContactId")
        lead = (
            CrmLead(email=email, crm_id=contact_id, crm_object="contact")
            if contact_id
            else CrmLead(email=email, crm_id=record_id, crm_object="opportunity")
        )
        return built(
            stager.event(
                DEAL_STAGE_CHANGED,
                ident,
                when,
                lead,
                n.field("StageName"),
                deal_id=record_id,
                amount=_number(n.field("Amount")),
                currency=n.field("CurrencyIsoCode"),
                owner=owner,
            )
        )
    if kind in ("lead", "contact") and (record_id or email):
        lead = CrmLead(email=email, crm_id=record_id, crm_object=kind)
        stage = n.field("Status") if kind == "lead" else None
        properties = {k: v for k, v in n.fields.items() if k != "Id"}
        return built(
            stager.event(CONTACT_UPDATED, ident, when, lead, stage, owner=owner, properties=properties)
        )
    if kind in ("task", "event"):
        who = n.field("WhoId")
        what = n.field("WhatId")
        deal_id = what if _kind_of(what) == "opportunity" else None
        if who or deal_id:
            lead = (
                CrmLead(email=email, crm_id=who, crm_object=_kind_of(who))
                if who
                else CrmLead(email=email, crm_id=deal_id, crm_object="opportunity")
            )
            activity = CrmActivity(
                type=n.field("TaskSubtype", "EventSubtype", "Type") or kind, subject=n.field("Subject")
            )
            return built(
                stager.event(
                    ACTIVITY_LOGGED, ident, when, lead, deal_id=deal_id, owner=owner, activity=activity
                )
            )
    return Delivery("salesforce", ident, digest, ignored=f"salesforce {n.object_type} is not used")


# --- generic (Standard Webhooks) -------------------------------------------------------------------

GenericType = Literal["deal.stage_changed", "contact.updated", "owner.assigned", "activity.logged"]
_GENERIC_EVENT_TYPES: dict[str, str] = {
    "deal.stage_changed": DEAL_STAGE_CHANGED,
    "contact.updated": CONTACT_UPDATED,
    "owner.assigned": OWNER_ASSIGNED,
    "activity.logged": ACTIVITY_LOGGED,
}
#: What each type needs besides the lead.
_GENERIC_REQUIRED: dict[str, tuple[str, ...]] = {
    "deal.stage_changed": ("stage",),
    "contact.updated": (),
    "owner.assigned": ("owner",),
    "activity.logged": ("activity",),
}
ShortText = Annotated[str, BeforeValidator(_as_text), Field(min_length=1, max_length=200)]


class GenericActivity(_Strict):
    type: ShortText
    subject: str | None = Field(default=None, max_length=1000)


class GenericData(_Strict):
    email: str | None = None
    crm_id: Id | None = None
    deal_id: Id | None = None
    stage: ShortText | None = None
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    owner: ShortText | None = None
    activity: GenericActivity | None = None
    occurred_at: AwareDatetime | None = None
    properties: dict[str, Text | None] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        email = normalize_email(value)
        if email is None:
            raise ValueError("not a valid email address")
        return email


class GenericWebhook(BaseModel):
    """``{"type": ..., "data": {...}}``; other top-level fields (``timestamp``, ids) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: GenericType
    data: GenericData


def generic_deliveries(body: bytes, headers: Mapping[str, str], config: CrmConfig) -> list[Delivery]:
    """A verified Standard Webhooks request: its ``webhook-id`` is the delivery id."""
    webhook_id = _header(headers, "webhook-id") or ""
    timestamp = _header(headers, "webhook-timestamp") or ""
    if not re.fullmatch(r"[!-~]{1,256}", webhook_id):
        raise InvalidInput("webhook-id: 1-256 visible ASCII characters")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise InvalidInput("webhook-timestamp: a whole number of unix seconds")
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InvalidInput('expected a JSON object: {"type": ..., "data": {...}}')
    try:
        hook = GenericWebhook.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(_problems(exc)) from exc
    data = hook.data
    problems = [
        f"data.{name}: required for {hook.type}"
        for name in _GENERIC_REQUIRED[hook.type]
        if getattr(data, name) is None
    ]
    if data.email is None and data.crm_id is None:
        problems.append("data.email: name the lead by email or crm_id")
    if problems:
        raise InvalidInput(problems)
    when = data.occurred_at or datetime.fromtimestamp(int(timestamp), UTC)
    lead = CrmLead(email=data.email, crm_id=data.crm_id)
    event = _Stager("generic", config).event(
        _GENERIC_EVENT_TYPES[hook.type],
        webhook_id,
        when,
        lead,
        data.stage,
        deal_id=data.deal_id,
        amount=data.amount,
        currency=data.currency,
        owner=data.owner,
        activity=CrmActivity(type=data.activity.type, subject=data.activity.subject)
        if data.activity
        else None,
        properties=dict(data.properties),
    )
    return [Delivery("generic", webhook_id, _digest(payload), (event,))]
