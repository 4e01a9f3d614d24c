"""What SES tells us about our emails, applied to leads.

SES publishes only to the default event bus; a rule there queues its events for us.
Hard bounces and complaints suppress the address for good; soft bounces are counted;
opens and clicks become lead events on our own bus, so scoring and programs see them
like any other activity. A recipient who unsubscribes from everything through SES's list
management (a Subscription event) is unsubscribed as by our own one-click link. Every
effect is idempotent or guarded by the event's id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.clock import isoformat
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import TimelineEntry
from kindling.tracking.segment import WebEvent

#: eventType -> what the lead's timeline says.
TIMELINE_NAMES = {
    "Delivery": "Email Delivered",
    "Bounce": "Email Bounced",
    "Complaint": "Email Complained",
    "Reject": "Email Rejected",
    "Rendering Failure": "Email Rendering Failed",
    "DeliveryDelay": "Email Delivery Delayed",
}
#: eventType -> the outcome event the metrics count (once per send).
OUTCOME_EVENTS = {"Delivery": "email.delivered", "Bounce": "email.bounced", "Complaint": "email.complained"}
#: eventType -> the lead event that scoring and programs see.
ENGAGEMENT_EVENTS = {"Open": "Email Opened", "Click": "Email Clicked"}


class SesMail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(alias="messageId")
    timestamp: datetime
    destination: list[str] = Field(default_factory=list)
    tags: dict[str, list[str]] = Field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        values = self.tags.get(name) or []
        return values[0] if values else None


class SesEvent(BaseModel):
    """``detail`` of an SES event on EventBridge (event publishing, EventBridge destination)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_type: str = Field(alias="eventType")
    mail: SesMail

    def part(self) -> dict[str, Any]:
        """The event-type-specific object: ``bounce``, ``complaint``, ``open``, ``click``, ..."""
        key = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}.get(
            self.event_type, self.event_type[:1].lower() + self.event_type[1:]
        )
        extra = self.model_extra or {}
        value = extra.get(key) or {}
        return value if isinstance(value, dict) else {}


class LeadUpdates(Protocol):
    def update_lead(self, lead_id: str, expression: str, values: dict[str, Any]) -> None:
        """Apply the update to the lead, if it exists."""


class SesEventStore(LeadUpdates, Protocol):
    def record_ses_send(self, send_id: str, ses_message_id: str) -> None: ...
    def suppress(self, email: str, reason: str, at: datetime) -> None: ...
    def add_timeline(self, lead_id: str, entry: TimelineEntry) -> None: ...
    def count_soft_bounce(self, event_id: str, lead_id: str) -> None: ...


def apply_ses_event(
    event_id: str, event: SesEvent, store: SesEventStore, publisher: EventPublisher, now: datetime
) -> str:
    """Apply one SES event; what it did, for metrics."""
    mail = event.mail
    send_id, lead_id, template = mail.tag("send_id"), mail.tag("lead_id"), mail.tag("template")
    part = event.part()
    at = _time(part.get("timestamp")) or mail.timestamp
    if event.event_type == "Send":
        if send_id:
            store.record_ses_send(send_id, mail.message_id)
        return "send_confirmed"
    if not lead_id:
        return "ignored_untagged"  # not one of ours (another sender on this account)
    properties: dict[str, Any] = {"send_id": send_id, "template": template, "ses_message_id": mail.message_id}
    if event.event_type in ENGAGEMENT_EVENTS:
        link = part.get("link")
        if isinstance(link, str):
            properties["url"] = link
        publisher.publish(
            [
                engagement_event(
                    f"ses-{event_id}",
                    ENGAGEMENT_EVENTS[event.event_type],
                    lead_id,
                    properties,
                    at,
                    now,
                    part.get("userAgent"),
                )
            ]
        )
        return event.event_type.lower()
    if event.event_type == "Subscription":
        preferences = part.get("newTopicPreferences")
        if not isinstance(preferences, dict) or preferences.get("unsubscribeAll") is not True:
            return "subscription_changed"  # topic preferences alone: we send no topics
        properties.update(contact_list=part.get("contactList"), via=part.get("source"))
        unsubscribe_from_all(store, publisher, lead_id, send_id, at, now, properties)
        return "unsubscribe"
    outcome = event.event_type.lower()
    if event.event_type == "Bounce":
        bounce_type = part.get("bounceType")
        properties["bounce_type"] = bounce_type
        if bounce_type == "Permanent":
            for address in _recipients(part.get("bouncedRecipients"), mail):
                store.suppress(address, "hard_bounce", at)
            store.update_lead(lead_id, "SET email_status = :s", {":s": {"S": "hard_bounced"}})
            outcome = "hard_bounce"
        else:
            store.count_soft_bounce(event_id, lead_id)
            outcome = "soft_bounce"
    elif event.event_type == "Complaint":
        for address in _recipients(part.get("complainedRecipients"), mail):
            store.suppress(address, "complaint", at)
        store.update_lead(lead_id, "SET email_status = :s", {":s": {"S": "complained"}})
    elif event.event_type in ("Reject", "Rendering Failure"):
        properties["reason"] = part.get("reason") or part.get("errorMessage")
    name = TIMELINE_NAMES.get(event.event_type)
    if name:
        store.add_timeline(
            lead_id,
            TimelineEntry(
                message_id=f"ses-{event_id}",
                type="email",
                event=name,
                timestamp=at,
                received_at=now,
                properties={k: v for k, v in properties.items() if v is not None},
            ),
        )
    outcome_type = OUTCOME_EVENTS.get(event.event_type)
    if outcome_type and send_id:
        # For the metrics: after the effects above, so a failed publish retries them (they are idempotent).
        publisher.publish(
            [
                BusEvent(
                    source="kindling.email",
                    detail_type=outcome_type,
                    time=at,
                    detail={
                        "event_id": f"ses-{event_id}",
                        "lead_id": lead_id,
                        "send_id": send_id,
                        "template": template,
                        "bounce_type": properties.get("bounce_type"),
                        "at": at.isoformat(),
                    },
                )
            ]
        )
    return outcome


def engagement_event(
    message_id: str,
    name: str,
    lead_id: str,
    properties: dict[str, Any],
    at: datetime,
    now: datetime,
    user_agent: str | None = None,
) -> BusEvent:
    """An email open, click or unsubscribe as a lead event, on its way to profiles and scoring."""
    event = WebEvent(
        message_id=message_id,
        type="track",
        event=name,
        lead_id=lead_id,
        timestamp=at,
        received_at=now,
        properties={k: v for k, v in properties.items() if v is not None},
        context={"userAgent": user_agent} if user_agent else {},
    )
    return BusEvent(
        source="kindling.email", detail_type=event.detail_type, detail=event.model_dump(mode="json"), time=at
    )


def unsubscribe_from_all(
    store: LeadUpdates,
    publisher: EventPublisher,
    lead_id: str,
    send_id: str | None,
    at: datetime,
    now: datetime,
    properties: dict[str, Any] | None = None,
) -> None:
    """No more marketing email to the lead, however they asked: our one-click link, or SES's list management.

    ``unsubscribed_at`` keeps the first time. The ``Unsubscribed`` lead event (the timeline, scoring,
    the metrics) takes its id from the send, not the moment: the same unsubscribe arriving twice,
    or both ways, is one event.
    """
    store.update_lead(
        lead_id,
        "SET unsubscribed = :yes, unsubscribed_at = if_not_exists(unsubscribed_at, :now)",
        {":yes": {"BOOL": True}, ":now": {"S": isoformat(at)}},
    )
    message_id = f"unsub-all-{lead_id}-{send_id or '-'}"
    details = {**(properties or {}), "send_id": send_id}
    publisher.publish([engagement_event(message_id, "Unsubscribed", lead_id, details, at, now)])


def _recipients(listed: Any, mail: SesMail) -> list[str]:
    found = []
    for recipient in listed or []:
        address = normalize_email(recipient.get("emailAddress") if isinstance(recipient, dict) else None)
        if address:
            found.append(address)
    return found or [a for a in (normalize_email(d) for d in mail.destination) if a]


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
