"""What the CRM tells us, applied to leads: stage moves, quiet periods, reactivation, recycling.

While a lead sits in a sales stage, marketing goes quiet: its enrollments hold and no
marketing email goes out. Silence that lasts too long (no CRM activity and no
engagement for longer than the policy allows in that stage) wakes the lead up: the
quiet period ends, the lead enters the reactivation program and its owner is told.
Closed-lost leads are recycled after a cooling-off period. The checks are due-work
items on their own daily lane, so the sweep reads only the leads that are due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from kindling.crm.events import DEAL_ASSOCIATED, DEAL_STAGE_CHANGED
from kindling.crm.unmatched import UnmatchedStore, crm_key, release_waiting, unmatched_event
from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.leads.profiles import Lead, TimelineEntry
from kindling.programs.due import DueItem, DueStore, release_due


class SalesPolicy(Protocol):
    def is_quiet(self, stage: str | None) -> bool: ...
    def max_silence(self, stage: str | None) -> timedelta | None: ...
    def reactivation_program(self) -> str | None: ...
    def cooling_off(self) -> timedelta | None: ...
    def lifecycle_stage(self, provider: str, crm_stage: str) -> str | None: ...


class SalesStore(Protocol):
    def find_lead(self, email: str | None, crm_identity: str | None) -> Lead | None: ...
    def link_crm_identity(self, lead_id: str, crm_identity: str) -> None: ...
    def lead(self, lead_id: str) -> Lead | None: ...
    def move_stage(self, lead: Lead, to: str, why: str, by: str, at: datetime, move_id: str) -> bool: ...
    def set_quiet(self, lead_id: str, quiet: bool, since: datetime | None) -> None: ...
    def touch_crm(self, lead_id: str, at: datetime) -> None: ...
    def set_owner(self, lead_id: str, owner: str) -> None: ...
    def add_timeline(self, lead_id: str, entry: TimelineEntry) -> None: ...


@dataclass(frozen=True)
class DealContact:
    contact_id: str
    email: str | None


#: How the service says it went by the event alone because the CRM's API could not be asked.
LOOKUP_UNAVAILABLE = "CRM look-up unavailable"


class CrmLookupUnavailable(Exception):
    """The CRM's API cannot be asked (no token, a refused token): go by what the event says."""


class DealContacts(Protocol):
    """A CRM's API for the contacts of a deal (HubSpot's webhooks name the deal only)."""

    def contacts(self, deal_id: str) -> list[DealContact]: ...
    def contact(self, contact_id: str) -> DealContact | None: ...
    def stage(self, deal_id: str) -> str | None: ...
    def forget_deal(self, deal_id: str) -> None: ...


class EnrollmentControl(Protocol):
    def enrol(self, program_id: str, lead_id: str, trigger_id: str, now: datetime) -> str: ...
    def hold_all(self, lead_id: str, reason: str, now: datetime) -> int: ...
    def release_all(self, lead_id: str, reason: str, now: datetime, *, exit_instead: bool = False) -> int: ...


def _note(event_id: str, name: str, at: datetime, now: datetime, **properties: Any) -> TimelineEntry:
    return TimelineEntry(
        message_id=f"{event_id}:{name.lower().replace(' ', '_')}",
        type="crm",
        event=name,
        timestamp=at,
        received_at=now,
        properties={k: v for k, v in properties.items() if v is not None},
    )


class SalesService:
    def __init__(
        self,
        store: SalesStore,
        policy: SalesPolicy,
        programs: EnrollmentControl,
        daily: DueStore,
        publisher: EventPublisher,
        unmatched: UnmatchedStore | None = None,
        hubspot_deals: DealContacts | None = None,
    ) -> None:
        self._unmatched = unmatched
        self._hubspot_deals = hubspot_deals
        self._store = store
        self._policy = policy
        self._programs = programs
        self._daily = daily
        self._publisher = publisher

    def on_crm_event(self, kind: str, detail: dict[str, Any], now: datetime) -> list[str]:
        """Apply one normalised CRM event (``crm.*``); what it did.

        A HubSpot deal event names only the deal: with an access token, the deal's associated
        contacts are looked up and the event applies to each contact's lead (one event id per
        contact). A contact newly associated with a deal takes the deal's current stage.
        """
        person = detail.get("lead") or {}
        deals = self._hubspot_deals
        unavailable: list[str] = []
        if deals is not None and detail.get("provider") == "hubspot" and detail.get("deal_id"):
            try:
                if kind == DEAL_ASSOCIATED:
                    return self._associated(deals, detail, now)
                if person.get("crm_object") == "deal" and not person.get("email"):
                    contacts = deals.contacts(str(detail["deal_id"]))
                    if contacts:
                        return self._for_each_contact(kind, detail, contacts, now)
            except CrmLookupUnavailable as exc:
                unavailable = [f"{LOOKUP_UNAVAILABLE}: {exc}"]
        if kind == DEAL_ASSOCIATED:
            return [
                *unavailable,
                "ignored: a deal association needs the HubSpot access token to read the deal",
            ]
        return [*unavailable, *self._apply(kind, detail, now)]

    def _for_each_contact(
        self, kind: str, detail: dict[str, Any], contacts: list[DealContact], now: datetime
    ) -> list[str]:
        done = []
        for contact in contacts:
            copy = {
                **detail,
                "event_id": f"{detail['event_id']}:contact:{contact.contact_id}",
                "lead": {"email": contact.email, "crm_id": contact.contact_id, "crm_object": "contact"},
            }
            done += [f"contact {contact.contact_id}: {d}" for d in self._apply(kind, copy, now)]
        return done

    def _associated(self, deals: DealContacts, detail: dict[str, Any], now: datetime) -> list[str]:
        """A contact joined a deal: the deal's stage, read from HubSpot, applies to its lead."""
        deal_id = str(detail["deal_id"])
        deals.forget_deal(deal_id)
        crm_stage = deals.stage(deal_id)
        if crm_stage is None:
            return [f"ignored: deal {deal_id} has no stage (or is gone)"]
        person = dict(detail.get("lead") or {})
        if not person.get("email") and person.get("crm_id"):
            found = deals.contact(str(person["crm_id"]))
            person["email"] = found.email if found else None
        lifecycle = self._policy.lifecycle_stage("hubspot", crm_stage)
        moved = {
            **detail,
            "event_id": f"{detail['event_id']}:stage",
            "type": DEAL_STAGE_CHANGED,
            "lead": person,
            "crm_stage": crm_stage,
            "lifecycle_stage": lifecycle,
            "stage_known": lifecycle is not None,
        }
        return self._apply(DEAL_STAGE_CHANGED, moved, now)

    def _apply(self, kind: str, detail: dict[str, Any], now: datetime) -> list[str]:
        provider = str(detail.get("provider") or "crm")
        person = detail.get("lead") or {}
        crm_id = person.get("crm_id")
        # A deal id and a contact id may be equal numbers: the object type keeps them apart.
        identity = f"{provider}:{person.get('crm_object') or 'object'}:{crm_id}" if crm_id else None
        lead = self._store.find_lead(person.get("email"), identity)
        at = _time(detail.get("occurred_at")) or now
        if lead is None:
            kept = unmatched_event(kind, detail, identity, _time(detail.get("occurred_at")), now)
            if self._unmatched is None or not kept.keys:
                return ["unmatched: no lead with that email or CRM id"]
            self._unmatched.keep(kept)
            if self._store.find_lead(person.get("email"), identity) is not None:
                # The lead appeared while this was kept, maybe after it looked for kept events.
                release_waiting(self._unmatched, self._publisher, kept.keys, now)
                return ["unmatched at first; the lead appeared meanwhile: published again"]
            return ["unmatched: kept until a lead with that email or CRM id appears"]
        if identity:
            self._store.link_crm_identity(lead.lead_id, identity)
            if self._unmatched is not None:  # events for this CRM id that came before it was linked
                release_waiting(self._unmatched, self._publisher, [crm_key(identity)], now)
        event_id = str(detail["event_id"])
        self._store.touch_crm(lead.lead_id, at)
        done: list[str] = []
        if kind == "crm.deal_stage_changed" or (
            kind == "crm.contact_updated" and detail.get("lifecycle_stage")
        ):
            done += self._stage_changed(lead, detail, provider, event_id, at, now)
        elif kind == "crm.owner_assigned" and detail.get("owner"):
            self._store.set_owner(lead.lead_id, str(detail["owner"]))
            self._store.add_timeline(
                lead.lead_id, _note(event_id, "Owner Assigned", at, now, owner=detail["owner"])
            )
            done.append("owner assigned")
        elif kind == "crm.activity_logged":
            activity = detail.get("activity") or {}
            self._store.add_timeline(lead.lead_id, _note(event_id, "Sales Activity", at, now, **activity))
            done.append("activity logged")
        else:
            self._store.add_timeline(
                lead.lead_id, _note(event_id, "CRM Contact Updated", at, now, provider=provider)
            )
            done.append("contact updated")
        if lead.quiet or self._policy.is_quiet(detail.get("lifecycle_stage")):
            self._schedule_silence_check(lead.lead_id, detail.get("lifecycle_stage") or lead.stage, at)
        return done

    def _stage_changed(
        self, lead: Lead, detail: dict[str, Any], provider: str, event_id: str, at: datetime, now: datetime
    ) -> list[str]:
        to = detail.get("lifecycle_stage")
        crm_stage = detail.get("crm_stage")
        if not to or detail.get("stage_known") is False:
            self._store.add_timeline(
                lead.lead_id,
                _note(event_id, "CRM Stage Unknown", at, now, provider=provider, crm_stage=crm_stage),
            )
            return [f"unknown {provider} stage {crm_stage!r} kept, not mapped"]
        done = []
        why = f"{provider} deal {detail.get('deal_id') or ''} moved to {crm_stage}".replace("  ", " ")
        if outdated(lead.stage, lead.stage_changed_at, to, at):
            # Delivered late (a retry, a held event released): the stage moved on since it happened.
            return [f"outdated: the lead moved to {lead.stage} after this {provider} change to {to}"]
        if lead.stage != to and self._store.move_stage(lead, to, why, f"crm:{provider}", at, event_id):
            done.append(f"stage {lead.stage} -> {to}")
            self._publisher.publish(
                [
                    BusEvent(
                        source="kindling.crm",
                        detail_type="lead.stage_changed",
                        time=at,
                        detail={
                            "event_id": f"{event_id}:stage",
                            "lead_id": lead.lead_id,
                            "from": lead.stage,
                            "to": to,
                            "why": why,
                            "by": f"crm:{provider}",
                            "at": at.isoformat(),
                            "amount": detail.get("amount"),
                        },
                    )
                ]
            )
        quiet = self._policy.is_quiet(to)
        # Holding and releasing are idempotent and done every time, so a redelivery after a
        # crash between the flag and the enrollments still finishes the job.
        if quiet:
            if not lead.quiet:
                self._store.set_quiet(lead.lead_id, True, at)
                self._store.add_timeline(
                    lead.lead_id,
                    _note(event_id, "Quiet Period Started", at, now, why=f"sales stage {to} ({crm_stage})"),
                )
                done.append("quiet period started")
            held = self._programs.hold_all(lead.lead_id, "quiet period", now)
            if held:
                done.append(f"{held} enrollment(s) held")
        elif lead.quiet:
            self._end_quiet(lead.lead_id, event_id, f"left sales stages: now {to}", at, now)
            done.append("quiet period ended")
        else:
            self._programs.release_all(lead.lead_id, f"not in a sales stage: {to}", now)
        if to == "closed_lost":
            cooling = self._policy.cooling_off()
            if cooling is not None:
                self._daily.put_due(
                    DueItem(
                        id=f"recycle:{lead.lead_id}:{event_id}",
                        kind="recycle",
                        due_at=at + cooling,
                        payload={"lead_id": lead.lead_id, "since": at.isoformat()},
                    )
                )
                done.append(f"recycling after {cooling.days} days")
        return done

    def _end_quiet(
        self, lead_id: str, event_id: str, why: str, at: datetime, now: datetime, exit_held: bool = False
    ) -> None:
        self._store.set_quiet(lead_id, False, None)
        self._programs.release_all(lead_id, why, now, exit_instead=exit_held)
        self._store.add_timeline(lead_id, _note(event_id, "Quiet Period Ended", at, now, why=why))

    def _schedule_silence_check(self, lead_id: str, stage: str | None, basis: datetime) -> None:
        limit = self._policy.max_silence(stage)
        if limit is None:
            return
        due = basis + limit
        self._daily.put_due(
            DueItem(
                id=f"silence:{lead_id}:{due.isoformat()}",
                kind="silence",
                due_at=due,
                payload={"lead_id": lead_id},
            )
        )

    # --- the daily sweep -------------------------------------------------------------
    def sweep(self, now: datetime) -> int:
        return release_due(self._daily, lambda items: self._handle(items, now), now)

    def _handle(self, items: list[DueItem], now: datetime) -> None:
        for item in items:
            if item.kind == "silence":
                self._check_silence(item.payload["lead_id"], item.id, now)
            elif item.kind == "recycle":
                self._recycle(item.payload["lead_id"], item.id, now)

    def _check_silence(self, lead_id: str, item_id: str, now: datetime) -> None:
        lead = self._store.lead(lead_id)
        if lead is None or not lead.quiet or not self._policy.is_quiet(lead.stage):
            return
        limit = self._policy.max_silence(lead.stage)
        if limit is None:
            return
        basis = (
            max(
                t
                for t in (
                    lead.last_crm_activity_at,
                    lead.last_activity_at,
                    lead.quiet_since,
                    lead.stage_changed_at,
                )
                if t is not None
            )
            if any((lead.last_crm_activity_at, lead.last_activity_at, lead.quiet_since))
            else now
        )
        if basis + limit > now:
            self._schedule_silence_check(
                lead_id, lead.stage, basis
            )  # something happened since: look again later
            return
        days = limit.days
        why = f"no sales activity or engagement for {days} days in stage {lead.stage}"
        self._end_quiet(lead_id, item_id, why, now, now, exit_held=True)
        program = self._policy.reactivation_program()
        outcome = (
            self._programs.enrol(program, lead_id, item_id, now) if program else "no reactivation program"
        )
        self._store.add_timeline(lead_id, _note(item_id, "Reactivated", now, now, why=why, program=program))
        self._publisher.publish(
            [
                BusEvent(
                    source="kindling.programs",
                    detail_type="lead.notify_sales",
                    time=now,
                    detail={
                        "event_id": f"{item_id}:notify",
                        "lead_id": lead_id,
                        "owner": lead.owner,
                        "message": f"Reactivating: {why}. {outcome}.",
                        "trigger": {"at": now.isoformat()},
                    },
                )
            ]
        )

    def _recycle(self, lead_id: str, item_id: str, now: datetime) -> None:
        lead = self._store.lead(lead_id)
        if lead is None or lead.stage != "closed_lost":
            return  # the deal came back to life meanwhile
        why = "cooling-off after closed lost is over"
        if self._store.move_stage(lead, "recycled", why, "policy", now, item_id):
            self._publisher.publish(
                [
                    BusEvent(
                        source="kindling.crm",
                        detail_type="lead.stage_changed",
                        time=now,
                        detail={
                            "event_id": f"{item_id}:stage",
                            "lead_id": lead_id,
                            "from": "closed_lost",
                            "to": "recycled",
                            "why": why,
                            "by": "policy",
                            "at": now.isoformat(),
                        },
                    )
                ]
            )


_FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")


def outdated(current: str | None, changed_at: datetime | None, to: str, at: datetime) -> bool:
    """A CRM stage change that happened before the lead's last stage move, and would move it back."""
    if current is None or changed_at is None or at >= changed_at or current == to:
        return False
    forward = current in _FUNNEL and to in _FUNNEL and _FUNNEL.index(to) > _FUNNEL.index(current)
    return not forward


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
