"""Bringing people in: suppressions first, then contacts, each row applied idempotently.

A company moving from Pinpoint, Mautic or HubSpot arrives with contacts, unsubscribes and
bounces. The operator tool reads those files into rows and posts them in batches to the admin
API; this module decides, per row, what happens, so the same file imported twice changes
nothing the second time and an interrupted import can simply be run again:

- A suppression row puts its address on the suppression list (the first reason stays), and
  an unsubscribe marks the address's lead unsubscribed.
- A contact row is matched to a lead by its normalised email, then by its user id, and
  creates the lead or updates the traits the row gives. An import never re-subscribes: a row
  that says "subscribed" leaves an unsubscribed lead unsubscribed, and an address on the
  suppression list stays there (the row's outcome says ``suppressed``). The lifecycle stage
  moves forward only, never back (a customer in kindling stays a customer).
- Imported leads enter ``new_lead`` programs only when the import asks for it: nobody gets a
  welcome series by surprise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kindling.kernel.errors import Conflict
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import MAX_LEAD_ID_LENGTH, Lead, TimelineEntry, new_lead_id
from kindling.scoring.config import Stage

#: The most rows one request may carry (the admin API's limit; the CLI sends batches of this size).
MAX_ROWS = 500
MAX_TRAITS = 100
_FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")

SuppressionReason = Literal["unsubscribed", "bounced", "complained", "manual"]
Outcome = Literal["created", "updated", "unchanged", "suppressed", "rejected"]
TraitName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
TraitValue = str | int | float | bool
Source = Literal["csv", "mautic", "hubspot", "pinpoint", "api"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuppressionRow(_Strict):
    row: str = Field(min_length=1, max_length=200, description="where the row came from: line or record")
    email: str = Field(max_length=320)
    reason: SuppressionReason


class ContactRow(_Strict):
    row: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    user_id: str | None = Field(default=None, min_length=1, max_length=MAX_LEAD_ID_LENGTH)
    traits: dict[TraitName, Annotated[TraitValue, Field(union_mode="left_to_right")]] = Field(
        default_factory=dict, max_length=MAX_TRAITS
    )
    stage: Stage | None = None
    unsubscribed: bool = False


class SuppressionBatch(_Strict):
    """``POST /v1/imports/suppressions``."""

    source: Source
    rows: list[SuppressionRow] = Field(min_length=1, max_length=MAX_ROWS)
    dry_run: bool = False


class ContactBatch(_Strict):
    """``POST /v1/imports/contacts``."""

    source: Source
    rows: list[ContactRow] = Field(min_length=1, max_length=MAX_ROWS)
    dry_run: bool = False
    #: Enrol created leads in ``new_lead`` programs (the welcome series); off unless asked.
    enroll: bool = False


class SuppressionChange(_Strict):
    """``POST /v1/suppressions`` (add) and ``POST /v1/suppressions/{email}/remove``."""

    email: str | None = Field(default=None, max_length=320)
    reason: SuppressionReason | None = None
    #: Who asks: a person's name or address, recorded with the change.
    by: str = Field(min_length=1, max_length=200)
    #: Why: required to remove an address (it may then be mailed again).
    note: str | None = Field(default=None, max_length=1000)


@dataclass(frozen=True)
class RowResult:
    row: str
    outcome: Outcome
    lead_id: str | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    at: datetime
    source: str = "ses"
    by: str | None = None


class ImportStore(Protocol):
    def find(self, email: str | None, user_id: str | None) -> Lead | None: ...
    def suppression(self, email: str) -> Suppression | None: ...
    def suppress(self, suppression: Suppression) -> bool:
        """Put the address on the list unless it is there already; whether it was added."""

    def unsubscribe(self, lead_id: str, at: datetime, entry: TimelineEntry) -> None: ...
    def create(self, lead: Lead, entry: TimelineEntry) -> None:
        """``Conflict`` if the lead or one of its identities exists meanwhile."""

    def update(
        self,
        lead: Lead,
        traits: dict[str, Any],
        stage: str | None,
        unsubscribe: bool,
        identities: list[tuple[str, str]],
        entry: TimelineEntry,
        at: datetime,
    ) -> None: ...


class Enroller(Protocol):
    def new_lead(self, lead_id: str, trigger_id: str, at: datetime) -> None: ...


def _entry(batch_source: str, row: str, what: str, at: datetime, **properties: Any) -> TimelineEntry:
    return TimelineEntry(
        message_id=f"import:{batch_source}:{what}:{row}:{at.date().isoformat()}",
        type="import",
        event=what,
        timestamp=at,
        received_at=at,
        properties={"source": batch_source, "row": row, **properties},
    )


def import_suppressions(
    store: ImportStore, batch: SuppressionBatch, now: datetime, by: str
) -> list[RowResult]:
    """Each address onto the suppression list (first reason wins); unsubscribes reach the lead."""
    results = []
    for row in batch.rows:
        email = normalize_email(row.email)
        if email is None:
            results.append(
                RowResult(row.row, "rejected", reason=f"email: {row.email!r} is not a valid address")
            )
            continue
        existing = store.suppression(email)
        lead = store.find(email, None)
        if batch.dry_run:
            outcome: Outcome = "unchanged" if existing is not None else "suppressed"
            results.append(
                RowResult(
                    row.row,
                    outcome,
                    lead.lead_id if lead else None,
                    existing.reason if existing else row.reason,
                )
            )
            continue
        added = existing is None and store.suppress(Suppression(email, row.reason, now, batch.source, by))
        if lead is not None and row.reason in ("unsubscribed", "complained") and not lead.unsubscribed:
            store.unsubscribe(
                lead.lead_id, now, _entry(batch.source, row.row, "Unsubscribed", now, by="import")
            )
        reason = row.reason if added or existing is None else existing.reason
        results.append(
            RowResult(row.row, "suppressed" if added else "unchanged", lead.lead_id if lead else None, reason)
        )
    return results


def _moves_forward(current: str | None, imported: str | None) -> bool:
    if imported is None or imported == current:
        return False
    if current is None:
        return True
    if imported in _FUNNEL and current in _FUNNEL:
        return _FUNNEL.index(imported) > _FUNNEL.index(current)
    return False  # closed_lost / recycled come from the CRM, not from a file


def import_contacts(
    store: ImportStore,
    batch: ContactBatch,
    now: datetime,
    enroller: Enroller | None = None,
    new_id: Any = new_lead_id,
    on_created: Any = None,
) -> list[RowResult]:
    """``on_created(lead)``: told of each lead made (what waited for its address applies to it now)."""
    results = []
    for row in batch.rows:
        email = normalize_email(row.email) if row.email else None
        if row.email and email is None:
            results.append(
                RowResult(row.row, "rejected", reason=f"email: {row.email!r} is not a valid address")
            )
            continue
        if email is None and row.user_id is None:
            results.append(
                RowResult(row.row, "rejected", reason="no email and no user id: nothing names the person")
            )
            continue
        for attempt in range(3):
            try:
                results.append(_import_contact(store, batch, row, email, now, enroller, new_id, on_created))
                break
            except Conflict:  # the same person made by another row or request meanwhile: match again
                if attempt == 2:
                    raise
    return results


def _import_contact(
    store: ImportStore,
    batch: ContactBatch,
    row: ContactRow,
    email: str | None,
    now: datetime,
    enroller: Enroller | None,
    new_id: Any,
    on_created: Any = None,
) -> RowResult:
    lead = store.find(email, row.user_id)
    suppression = store.suppression(email) if email else None
    traits = {k: v for k, v in row.traits.items() if v != ""}
    if lead is None:
        outcome: Outcome = "suppressed" if suppression else "created"
        reason = (
            f"on the suppression list ({suppression.reason}): imported, never mailed" if suppression else None
        )
        if batch.dry_run:
            return RowResult(row.row, outcome, None, reason)
        created = Lead(
            lead_id=new_id(),
            email=email,
            user_id=row.user_id,
            traits=traits,
            created_at=now,
            first_seen_at=now,
            stage=row.stage,
            stage_changed_at=now if row.stage else None,
            unsubscribed=row.unsubscribed,
            unsubscribed_at=now if row.unsubscribed else None,
        )
        store.create(created, _entry(batch.source, row.row, "Imported", now, created=True))
        if on_created is not None:
            on_created(created)
        if batch.enroll and enroller is not None and email and not row.unsubscribed and not suppression:
            enroller.new_lead(created.lead_id, f"import:{batch.source}:{row.row}", now)
        return RowResult(row.row, outcome, created.lead_id, reason)
    changed = {k: v for k, v in traits.items() if lead.traits.get(k) != v}
    stage = row.stage if _moves_forward(lead.stage, row.stage) else None
    unsubscribe = row.unsubscribed and not lead.unsubscribed
    identities = []
    if email and lead.email is None:
        identities.append(("email", email))
    if row.user_id and lead.user_id is None:
        identities.append(("user", row.user_id))
    reason = f"on the suppression list ({suppression.reason}): never mailed" if suppression else None
    if not (changed or stage or unsubscribe or identities):
        return RowResult(row.row, "suppressed" if suppression else "unchanged", lead.lead_id, reason)
    if not batch.dry_run:
        entry = _entry(batch.source, row.row, "Import Updated", now, traits=sorted(changed), stage=stage)
        store.update(lead, changed, stage, unsubscribe, identities, entry, now)
    return RowResult(row.row, "suppressed" if suppression else "updated", lead.lead_id, reason)


@dataclass
class ImportSummary:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, results: list[RowResult]) -> None:
        for result in results:
            self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
