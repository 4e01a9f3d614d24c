"""What happens behind the links in our emails: tracked clicks, opens, one-click unsubscribe.

Every link carries a token we signed, so a click redirects only to a URL that was in the
email we sent (no open redirect), and only the recipient's own link can unsubscribe them.
Unsubscribing takes effect at once and never on a GET alone (RFC 8058: mail scanners
follow links; only a POST counts).
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Any, Literal, Protocol

from kindling.email.render import LinkSigner
from kindling.email.ses_events import engagement_event, unsubscribe_from_all
from kindling.kernel.bus import EventPublisher
from kindling.kernel.errors import NotFound
from kindling.leads.profiles import Lead, TimelineEntry

Choice = Literal["all", "monthly"]


class LinkStore(Protocol):
    def send_lead(self, send_id: str) -> tuple[str, str] | None:
        """(lead id, template) of a send we made."""

    def lead(self, lead_id: str) -> Lead | None: ...
    def update_lead(self, lead_id: str, expression: str, values: dict[str, Any]) -> None: ...
    def add_timeline(self, lead_id: str, entry: TimelineEntry) -> None: ...


def follow_click(
    token: str,
    links: LinkSigner,
    store: LinkStore,
    publisher: EventPublisher,
    now: datetime,
    user_agent: str | None,
) -> str:
    """The URL to redirect to; the click is recorded as a lead event on the way."""
    send_id, url = links.read_click(token)
    sent = store.send_lead(send_id)
    if sent is not None:
        lead_id, template = sent
        properties = {"send_id": send_id, "template": template, "url": url}
        publisher.publish(
            [
                engagement_event(
                    f"click-{uuid.uuid4().hex}", "Email Clicked", lead_id, properties, now, now, user_agent
                )
            ]
        )
    return url


def record_open(
    token: str,
    links: LinkSigner,
    store: LinkStore,
    publisher: EventPublisher,
    now: datetime,
    user_agent: str | None,
) -> None:
    send_id = links.read_open(token)
    sent = store.send_lead(send_id)
    if sent is not None:
        lead_id, template = sent
        properties = {"send_id": send_id, "template": template}
        publisher.publish(
            [
                engagement_event(
                    f"open-{uuid.uuid4().hex}", "Email Opened", lead_id, properties, now, now, user_agent
                )
            ]
        )


def unsubscribe(
    token: str, choice: Choice, links: LinkSigner, store: LinkStore, publisher: EventPublisher, now: datetime
) -> Lead:
    """Apply the recipient's choice at once: no more marketing email, or at most one a month."""
    lead_id, send_id = links.read_unsubscribe(token)
    lead = store.lead(lead_id)
    if lead is None:
        raise NotFound("this unsubscribe link belongs to nobody we know")
    if choice == "all":
        unsubscribe_from_all(store, publisher, lead.lead_id, send_id, now, now)
        return lead
    store.update_lead(lead.lead_id, "SET email_frequency = :monthly", {":monthly": {"S": "monthly"}})
    # The same link used twice is one event: its id comes from the link, not the moment.
    message_id = f"unsub-{choice}-{lead.lead_id}-{send_id}"
    reduced = engagement_event(
        message_id, "Email Frequency Reduced", lead.lead_id, {"send_id": send_id}, now, now
    )
    publisher.publish([reduced])
    return lead


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}"
        "button{font-size:1rem;padding:.6rem 1rem;margin:.3rem 0;cursor:pointer}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _masked(email: str | None) -> str:
    if not email or "@" not in email:
        return "your address"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def confirmation_page(token: str, links: LinkSigner, store: LinkStore) -> str:
    """GET shows the choice; nothing changes until the recipient presses a button."""
    lead_id, _ = links.read_unsubscribe(token)
    lead = store.lead(lead_id)
    if lead is None:
        raise NotFound("this unsubscribe link belongs to nobody we know")
    action = html.escape(f"?token={token}", quote=True)
    return _page(
        "Email preferences",
        f"<p>Emails to <strong>{html.escape(_masked(lead.email))}</strong>.</p>"
        f'<form method=post action="{action}">'
        "<button name=choice value=all type=submit>Unsubscribe from all marketing email</button><br>"
        "<button name=choice value=monthly type=submit>Send me at most one email a month</button>"
        "</form><p>You will still get emails you ask for, such as password resets or receipts.</p>",
    )


def done_page(choice: Choice) -> str:
    if choice == "all":
        return _page("You are unsubscribed", "<p>You will get no more marketing email from us.</p>")
    return _page("Preferences saved", "<p>You will get at most one marketing email a month.</p>")


def invalid_page() -> str:
    return _page("This link is not valid", "<p>It may have been altered or copied incompletely.</p>")
