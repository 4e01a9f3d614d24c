"""Salesforce: outbound messages (SOAP, parsed with defusedxml) with the org id and a shared secret."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml

from kindling.crm.config import CrmConfig
from kindling.crm.events import (
    ACTIVITY_LOGGED,
    CONTACT_UPDATED,
    DEAL_STAGE_CHANGED,
    MAX_CLOCK_AHEAD,
    MAX_ID_LENGTH,
    CrmActivity,
    CrmEvent,
    CrmLead,
    Delivery,
    _digest,
    _number,
    _Stager,
)
from kindling.kernel.clock import is_plausible_time
from kindling.kernel.errors import InvalidInput, Unauthorized
from kindling.leads.addresses import normalize_email

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
        matched |= hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), secret.encode())
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
    if not is_plausible_time(parsed, fallback, MAX_CLOCK_AHEAD):
        return fallback  # before 2000, a day ahead of receipt, or beyond what UTC can hold
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
