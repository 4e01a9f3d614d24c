"""How the console finds and shows leads: what a search box means, and a lead's emails.

A search is an email address (that lead), an email prefix (``ada`` or ``ada@ac``), or a
company domain (``acme.io`` or ``@acme.io``). Each is one query on an index of the email
identities, never a scan: prefixes by their first two characters, domains by the domain.
A lead's emails are read off its timeline: every entry about a send (queued, deferred, sent,
skipped, delivered, opened, clicked, bounced, complained) grouped by its send id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kindling.kernel.errors import InvalidInput
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import TimelineEntry
from kindling.metrics.counters import send_origin

#: An email prefix shorter than this would read a whole index partition per letter.
MIN_PREFIX = 2
_DOMAIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class Search:
    kind: Literal["email", "prefix", "domain"]
    value: str


def email_prefix_key(email: str) -> str:
    return f"EMAILPFX#{email[:MIN_PREFIX]}"


def email_domain_key(email: str) -> str:
    return f"EMAILDOM#{email.rsplit('@', 1)[-1]}"


def parse_search(text: str) -> Search:
    q = text.strip().lower()
    if not q or len(q) > 320 or not q.isprintable():
        raise InvalidInput("q: give an email address, the start of one, or a company domain")
    if "@" in q and not q.startswith("@"):
        normal = normalize_email(q)
        if normal is not None:
            return Search("email", normal)
        return Search("prefix", q) if len(q) >= MIN_PREFIX else _too_short()
    domain = q.removeprefix("@")
    if "." in domain and set(domain) <= _DOMAIN_CHARS:
        return Search("domain", domain)
    return Search("prefix", q) if len(q) >= MIN_PREFIX else _too_short()


def _too_short() -> Search:
    raise InvalidInput(f"q: give at least {MIN_PREFIX} characters of the address")


_ORDER = ("queued", "deferred", "skipped", "sent", "delivered", "opened", "clicked", "bounced", "complained")
_EVENTS = {
    "Email Queued": "queued",
    "Email Deferred": "deferred",
    "Email Skipped": "skipped",
    "Email Sent": "sent",
    "Email Delivered": "delivered",
    "Email Opened": "opened",
    "Email Clicked": "clicked",
    "Email Bounced": "bounced",
    "Email Complained": "complained",
}


def lead_emails(lead_id: str, entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    """One row per send, newest first, with its furthest outcome and every step on the way."""
    sends: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: e.timestamp):
        what = _EVENTS.get(entry.event or "")
        send_id = entry.properties.get("send_id")
        if what is None or not isinstance(send_id, str):
            continue
        program, step = send_origin(send_id, lead_id)
        row = sends.setdefault(
            send_id,
            {
                "send_id": send_id,
                "template": entry.properties.get("template"),
                "program": program,
                "step": step,
                "status": what,
                "reason": None,
                "until": None,
                "at": entry.timestamp,
                "events": [],
            },
        )
        row["template"] = row["template"] or entry.properties.get("template")
        row["events"].append({"event": what, "at": entry.timestamp})
        if what in ("skipped", "deferred", "bounced"):
            row["reason"] = entry.properties.get("reason") or entry.properties.get("bounce_type")
        if what == "deferred":
            row["until"] = entry.properties.get("until")
        if _ORDER.index(what) >= _ORDER.index(row["status"]) or row["status"] == "deferred":
            row["status"] = what
            row["at"] = entry.timestamp
    return sorted(sends.values(), key=lambda r: r["events"][0]["at"], reverse=True)


def stage_key(stage: str) -> str:
    return f"STAGE#{stage}"


def as_of(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
