"""HubSpot: v3 request signatures, and webhook subscriptions' events as deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
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
    CONTACT_UPDATED,
    DEAL_ASSOCIATED,
    DEAL_STAGE_CHANGED,
    OWNER_ASSIGNED,
    SIGNATURE_TOLERANCE,
    CrmEvent,
    CrmLead,
    Delivery,
    Id,
    Text,
    _check_window,
    _digest,
    _from_millis,
    _header,
    _json,
    _problems,
    _Stager,
)
from kindling.kernel.errors import InvalidInput, Unauthorized
from kindling.leads.addresses import normalize_email

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
    source = method.upper().encode() + uri.encode("utf-8", "surrogatepass") + body + timestamp.encode()
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
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
        raise Unauthorized("invalid X-HubSpot-Signature-v3")


class HubspotEvent(BaseModel):
    """One event of a HubSpot webhook batch, as HubSpot documents it (extra fields ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_id: Id = Field(alias="eventId")
    subscription_id: Id | None = Field(default=None, alias="subscriptionId")
    portal_id: Id = Field(alias="portalId")
    app_id: Id | None = Field(default=None, alias="appId")
    #: Unix milliseconds, from 2000 (``EARLIEST_EVENT_TIME``) on.
    occurred_at: int = Field(alias="occurredAt", ge=946_684_800_000, lt=10**14)
    subscription_type: str = Field(alias="subscriptionType", min_length=3)
    attempt_number: int | None = Field(default=None, alias="attemptNumber")
    #: Absent from association changes, which name both ends instead.
    object_id: Id | None = Field(default=None, alias="objectId")
    from_object_id: Id | None = Field(default=None, alias="fromObjectId")
    to_object_id: Id | None = Field(default=None, alias="toObjectId")
    association_type: str | None = Field(default=None, alias="associationType")
    association_removed: bool = Field(default=False, alias="associationRemoved")
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
        subject = self.object_id or f"{self.from_object_id}-{self.to_object_id}"
        return f"{self.portal_id}:{self.subscription_id or '-'}:{self.event_id}:{subject}"

    @model_validator(mode="after")
    def _names_an_object(self) -> HubspotEvent:
        if self.object_id is None and (self.from_object_id is None or self.to_object_id is None):
            raise ValueError(
                "objectId (or fromObjectId and toObjectId for an association change) is required"
            )
        return self

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

    if action == "associationChange" and kind in ("deal", "contact"):
        deal_id, contact_id = (
            (event.from_object_id, event.to_object_id)
            if kind == "deal"
            else (event.to_object_id, event.from_object_id)
        )
        wanted = "DEAL_TO_CONTACT" if kind == "deal" else "CONTACT_TO_DEAL"
        if (event.association_type or "").upper() == wanted and not event.association_removed:
            lead = CrmLead(email=email, crm_id=contact_id, crm_object="contact")
            return built(stager.event(DEAL_ASSOCIATED, ident, when, lead, deal_id=deal_id))
    elif kind == "deal" and event.object_id is not None:
        lead = CrmLead(email=email, crm_id=event.object_id, crm_object="deal")
        if action == "propertyChange" and name == "dealstage" and value:
            return built(stager.event(DEAL_STAGE_CHANGED, ident, when, lead, value, deal_id=event.object_id))
        if action == "propertyChange" and name == "hubspot_owner_id":
            return built(
                stager.event(OWNER_ASSIGNED, ident, when, lead, deal_id=event.object_id, owner=value)
            )
    elif kind == "contact" and event.object_id is not None:
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
