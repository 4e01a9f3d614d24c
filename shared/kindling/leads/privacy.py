"""One person's data: everything stored about them (access), and all of it removed (erasure).

GDPR and CCPA give a person the right to see what is kept about them and to have it erased.
Access gathers every item that names the person: the profile, its identities, timeline,
score, stage history, enrollments, email sends, suppression and CRM events held for them.
Erasure deletes all of that. One thing stays, by design: if the person had opted out
(unsubscribed, complained, hard-bounced or suppressed), a keyed hash of their address, so
that an address that said "never again" is never mailed again, even if a later import or a
CRM sync brings it back, while the address itself is no longer stored anywhere in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kindling.kernel.errors import InvalidInput, NotFound
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import Lead


def suppression_hash(key: bytes, email: str) -> str:
    """The keyed hash an erased opted-out address is remembered by (the key: the erasure key secret)."""
    return hmac.new(key, b"suppressed-address:" + email.encode(), hashlib.sha256).hexdigest()


@dataclass
class PersonData:
    """Every stored item about one person, by kind; ``keys`` are what erasure deletes."""

    lead: Lead
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    keys: list[dict[str, Any]] = field(default_factory=list)
    #: Each of the person's addresses (theirs and those of leads merged into theirs) that said
    #: "never again" (unsubscribed, complained, hard-bounced, suppressed), with why.
    opted_out: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in sorted(self.items.items())}


class PrivacyStore(Protocol):
    def gather(self, lead_id: str) -> PersonData | None: ...
    def erase(self, person: PersonData, keep_hashes: list[tuple[str, str]], audit: dict[str, Any]) -> int:
        """Remember the hashes, delete every key, record the erasure; how many items went."""


class ErasureRequest(BaseModel):
    """``POST /v1/leads/{id}/erase``: a confirmation that names the person, and who asks why."""

    model_config = ConfigDict(extra="forbid")

    #: The lead's email address (or its id when it has none), typed again: erasure cannot be undone.
    confirm: str = Field(min_length=1, max_length=320)
    by: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=1000)


def erase_person(
    store: PrivacyStore, lead_id: str, request: ErasureRequest, hash_key: bytes, now: datetime
) -> dict[str, Any]:
    person = store.gather(lead_id)
    if person is None:
        raise NotFound(f"no lead {lead_id}")
    lead = person.lead
    expected = lead.email or lead.lead_id
    given = normalize_email(request.confirm) or request.confirm.strip()
    if given != expected:
        raise InvalidInput("confirm: type the lead's email address (or its id when it has none) to erase it")
    keep = [(suppression_hash(hash_key, email), reason) for email, reason in sorted(person.opted_out.items())]
    audit = {
        "lead_id": lead.lead_id,
        "erasure_hash": hmac.new(
            hash_key, b"erased-lead:" + lead.lead_id.encode(), hashlib.sha256
        ).hexdigest(),
        "at": now.isoformat(),
        "by": request.by,
        "note": request.note,
        "items": person.counts,
        "kept_opt_out": bool(keep),
        "kept_opt_out_hashes": len(keep),
    }
    erased = store.erase(person, keep, audit)
    return {**audit, "erased_items": erased}
