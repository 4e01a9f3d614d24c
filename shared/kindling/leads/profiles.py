"""Lead profiles: who did what, applied exactly once.

A web event names a person by some of: a userId, an email, an anonymousId (and, for
``alias``, a previousId). Each identity is owned by at most one lead, claimed with a
conditional write, so two concurrent events for a new visitor still make one lead.
When an event ties together identities owned by two leads (an anonymous visitor who
identifies with the email of a known lead), the anonymous one is merged into the known
one, its timeline and traits with it. Every step of a merge is idempotent, so a merge
interrupted by a crash is finished by whichever event next touches those identities.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.errors import Conflict, Duplicate, InvalidInput
from kindling.leads.addresses import normalize_email
from kindling.scoring.config import Stage
from kindling.tracking.segment import WebEvent

if TYPE_CHECKING:  # scoring builds on leads, not the other way round
    from kindling.scoring.service import ScoreWrite

IdentityKind = Literal["user", "email", "anon", "crm"]

#: Traits that are identities or bookkeeping, not free-form person data.
_RESERVED_TRAITS = frozenset({"email", "userId", "anonymousId"})
_MISSING = object()
#: Last activity moves forward by at least this much or not at all, so a session's page views cost
#: one profile write, not one each. The sales sweep, its only reader, measures silence in days.
ACTIVITY_GRANULARITY = timedelta(hours=1)
MAX_RESOLVE_ATTEMPTS = 12
#: Far longer than a lead id (``ld_`` and 32 hex digits): a longer one, from a URL, names no lead
#: (and would not fit in a DynamoDB key).
MAX_LEAD_ID_LENGTH = 100


class Identity(NamedTuple):
    kind: IdentityKind
    value: str


class Lead(BaseModel):
    lead_id: str
    email: str | None = None
    user_id: str | None = None
    anonymous_ids: list[str] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    first_seen_at: datetime
    last_activity_at: datetime | None = None
    stage: Stage | None = None
    stage_changed_at: datetime | None = None
    # Email reachability and consent: set by unsubscribes, SES bounces and complaints.
    unsubscribed: bool = False
    unsubscribed_at: datetime | None = None
    email_status: Literal["hard_bounced", "complained"] | None = None
    soft_bounces: int = 0
    email_frequency: Literal["normal", "monthly"] = "normal"
    tags: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    # Set while sales is talking to the lead (CRM stages): marketing email holds.
    quiet: bool = False
    quiet_since: datetime | None = None
    last_crm_activity_at: datetime | None = None
    owner: str | None = None
    merged_into: str | None = None

    @property
    def timezone(self) -> str | None:
        for key in ("timezone", "time_zone", "timeZone"):
            value = self.traits.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    @property
    def identities(self) -> list[Identity]:
        found: list[Identity] = []
        if self.user_id:
            found.append(Identity("user", self.user_id))
        if self.email:
            found.append(Identity("email", self.email))
        found.extend(Identity("anon", a) for a in self.anonymous_ids)
        return found

    @property
    def is_known(self) -> bool:
        return bool(self.user_id or self.email)


class TimelineEntry(BaseModel):
    """One event on a lead's timeline, as stored and as the API shows it."""

    message_id: str
    type: str
    timestamp: datetime
    received_at: datetime
    #: The client's time was unusable, so ``timestamp`` is when the event was received.
    timestamp_replaced: bool = False
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    page: dict[str, Any] = Field(default_factory=dict)
    campaign: dict[str, Any] = Field(default_factory=dict)
    bot: bool = False

    @classmethod
    def from_web_event(cls, event: WebEvent) -> TimelineEntry:
        page = event.context.get("page")
        campaign = event.context.get("campaign")
        return cls(
            message_id=event.message_id,
            type=event.type,
            timestamp=event.timestamp,
            received_at=event.received_at,
            timestamp_replaced=event.timestamp_replaced,
            event=event.event,
            name=event.name,
            properties=event.properties,
            traits=identify_traits(event) if event.type == "identify" else event.traits,
            page=page if isinstance(page, dict) else {},
            campaign=campaign if isinstance(campaign, dict) else {},
            bot=event.bot,
        )


@dataclass(frozen=True)
class ProfileChange:
    """What one event changes on its lead, applied atomically with its timeline entry."""

    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    #: An alias's previousId, kept among the lead's anonymous ids.
    alias_id: str | None = None
    invalid_email: str | None = None
    #: Set only where the lead has none yet: where it first came from (see ``first_touch``).
    first_touch: dict[str, str] = field(default_factory=dict)

    def beyond(self, lead: Lead) -> ProfileChange:
        """Only what the lead, as read, does not have yet: most events change nothing on the profile.

        Never drops a value the lead lacks (a read is at most behind the table, never ahead), so
        applying the rest gives the same profile as applying all of it.
        """
        return ProfileChange(
            traits={k: v for k, v in self.traits.items() if lead.traits.get(k, _MISSING) != v},
            email=self.email if self.email != lead.email else None,
            user_id=self.user_id if self.user_id != lead.user_id else None,
            anonymous_id=self.anonymous_id if self.anonymous_id not in lead.anonymous_ids else None,
            alias_id=self.alias_id if self.alias_id not in lead.anonymous_ids else None,
            invalid_email=self.invalid_email,
            first_touch={k: v for k, v in self.first_touch.items() if k not in lead.traits},
        )

    def applied_to(self, lead: Lead) -> Lead:
        """The lead as this change leaves it (first touches only where it has none)."""
        traits = {**lead.traits, **{k: v for k, v in self.first_touch.items() if k not in lead.traits}}
        traits.update(self.traits)
        anonymous_ids = list(lead.anonymous_ids)
        for anonymous_id in self.anonymous_ids:
            if anonymous_id not in anonymous_ids:
                anonymous_ids.append(anonymous_id)
        return lead.model_copy(
            update={
                "traits": traits,
                "email": self.email or lead.email,
                "user_id": self.user_id or lead.user_id,
                "anonymous_ids": anonymous_ids,
            }
        )

    @property
    def anonymous_ids(self) -> list[str]:
        return list(dict.fromkeys(a for a in (self.anonymous_id, self.alias_id) if a))

    @property
    def empty(self) -> bool:
        return not (
            self.traits
            or self.email
            or self.user_id
            or self.anonymous_id
            or self.alias_id
            or self.invalid_email
            or self.first_touch
        )

    def limited_to(self, owned: set[Identity]) -> ProfileChange:
        """Drop identities the lead does not own (they belong to another person's lead)."""
        return replace(
            self,
            email=self.email if self.email and Identity("email", self.email) in owned else None,
            user_id=self.user_id if self.user_id and Identity("user", self.user_id) in owned else None,
            anonymous_id=(
                self.anonymous_id
                if self.anonymous_id and Identity("anon", self.anonymous_id) in owned
                else None
            ),
            alias_id=self.alias_id if self.alias_id and Identity("anon", self.alias_id) in owned else None,
        )


#: Event types that, when they change nothing, nothing downstream reacts to.
QUIET_TYPES = frozenset({"page", "screen"})


class Scorer(Protocol):
    def plan(
        self, lead: Lead, event: WebEvent, merged: list[str], fit_changed: bool = True
    ) -> ScoreWrite | None:
        """What scoring the event writes for the lead as the event leaves it (None: nothing).

        ``fit_changed``: the event changed what fit is computed from (traits, email).
        """


class LeadStore(Protocol):
    def owners(self, identities: Sequence[Identity], consistent: bool = True) -> dict[Identity, str]:
        """Which lead owns each identity; ``consistent=False`` may be a moment behind (cheaper)."""

    def get(self, lead_id: str) -> Lead | None: ...
    def create(self, lead: Lead) -> None:
        """Create the lead and claim its identities, all or nothing (``Conflict`` if taken)."""

    def claim(self, identity: Identity, lead_id: str) -> None:
        """Make ``lead_id`` own ``identity`` unless another lead does (``Conflict``)."""

    def applied(
        self, lead_id: str, entry: TimelineEntry, by_message: bool = False, consistent: bool = False
    ) -> list[BusEvent] | None:
        """The bus events the message's first application produced if it was applied, else None.

        ``by_message``: the message may come again with another time, so its timeline entry's key
        (time and message id) cannot tell; a record keyed by the message alone does.
        """

    def append(
        self,
        lead: Lead,
        entry: TimelineEntry,
        change: ProfileChange,
        active_at: datetime | None,
        score: ScoreWrite | None = None,
        by_message: bool = False,
    ) -> None:
        """Apply the change (and move last activity to ``active_at``), the score, then add the entry.

        The entry, written last under its own key, is the record that the message was applied
        (``Duplicate`` if another delivery wrote it first); a crash before it is written is
        repaired by the next delivery, which applies the (idempotent) change again and finds the
        score already counted. ``Conflict`` if the lead was merged away or its score moved on.
        """

    def touch(self, lead_id: str, active_at: datetime) -> None:
        """Move last activity forward to ``active_at`` (never back)."""

    def mark_merged(self, lead_id: str, into: str) -> None: ...
    def repoint(self, identity: Identity, from_lead: str, to_lead: str) -> None: ...
    def move_timeline(self, from_lead: str, to_lead: str) -> None: ...
    def absorb(self, lead_id: str, other: Lead) -> None:
        """Fold the other lead's anonymous ids, missing traits and first-seen time into this one."""

    def timeline(self, lead_id: str, limit: int) -> list[TimelineEntry]: ...
    def lead_for_email(self, email: str) -> str | None: ...


def identities_of(event: WebEvent) -> tuple[list[Identity], list[Identity]]:
    """(identities to look up, identities this event lets its lead claim)."""
    lookup: list[Identity] = []
    claim: list[Identity] = []
    if event.user_id:
        lookup.append(Identity("user", event.user_id))
        claim.append(Identity("user", event.user_id))
    email = normalize_email(event.email)
    if email:
        lookup.append(Identity("email", email))
        claim.append(Identity("email", email))
    if event.anonymous_id:
        lookup.append(Identity("anon", event.anonymous_id))
        claim.append(Identity("anon", event.anonymous_id))
    if event.type == "alias" and event.previous_id:
        # previousId is whatever the visitor was known by before: an anonymous id or an old userId.
        lookup.extend([Identity("user", event.previous_id), Identity("anon", event.previous_id)])
        # Never seen before, it is claimed as an anonymous id: later events from it find this lead.
        claim.append(Identity("anon", event.previous_id))
    return lookup, claim


def identify_traits(event: WebEvent) -> dict[str, Any]:
    """An identify's traits: ``traits``, over those in ``context.traits``.

    RudderStack's SDKs carry a person's traits in ``context.traits``; a trait named in both
    places is the one in ``traits``.
    """
    carried = event.context.get("traits")
    return {**carried, **event.traits} if isinstance(carried, dict) else dict(event.traits)


def profile_change(event: WebEvent) -> ProfileChange:
    traits: dict[str, Any] = {}
    if event.type == "identify":
        traits = {k: v for k, v in identify_traits(event).items() if k and k not in _RESERVED_TRAITS}
    elif event.type == "group":
        traits = {"company": {**event.traits, "id": event.group_id}}
    email = normalize_email(event.email)
    invalid = event.email if event.email and not email else None
    return ProfileChange(
        traits=traits,
        email=email,
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        alias_id=event.previous_id if event.type == "alias" else None,
        invalid_email=invalid,
        first_touch=first_touch(event),
    )


def first_touch(event: WebEvent) -> dict[str, str]:
    """Where a page view came from, as first-touch traits: the UTM source (and medium and campaign)
    when the link had them, else the referring site, else ``direct``.

    Only page views are touches. The profile keeps the first it is given and ignores the rest,
    so the funnel can be broken down by the source that brought each lead.
    """
    if event.type != "page" or event.bot:
        return {}
    campaign = event.context.get("campaign")
    campaign = campaign if isinstance(campaign, dict) else {}
    source = _clean(campaign.get("source"))
    if source:
        touch = {"first_touch_source": source.lower()}
        for name in ("medium", "name"):
            value = _clean(campaign.get(name))
            if value:
                touch[f"first_touch_{'campaign' if name == 'name' else name}"] = value.lower()
        return touch
    page = event.context.get("page")
    page = page if isinstance(page, dict) else {}
    referrer = _host(page.get("referrer"))
    if referrer and referrer != _host(page.get("url")):
        return {"first_touch_source": referrer, "first_touch_medium": "referral"}
    return {"first_touch_source": "direct", "first_touch_medium": "none"}


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip()[:100] or None


def _host(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None


def choose_primary(leads: Iterable[Lead], event: WebEvent) -> Lead:
    """The lead an event's identities converge on: the userId's, else a known one, else the oldest."""

    def rank(lead: Lead) -> tuple[int, int, datetime]:
        return (
            0 if event.user_id and lead.user_id == event.user_id else 1,
            0 if lead.is_known else 1,
            lead.created_at,
        )

    return min(leads, key=rank)


def can_merge(other: Lead, primary: Lead) -> bool:
    """Merge only what cannot be two different people: conflicting userIds or emails stay apart."""
    if other.user_id and primary.user_id and other.user_id != primary.user_id:
        return False
    return not (other.email and primary.email and other.email != primary.email)


def moved_activity(lead: Lead, at: datetime) -> datetime | None:
    """The last activity an event at ``at`` moves the lead to, or None when it need not move."""
    last = lead.last_activity_at
    return at if last is None or at >= last + ACTIVITY_GRANULARITY else None


def new_lead_id() -> str:
    return f"ld_{uuid.uuid4().hex}"


class RecordOutcome(NamedTuple):
    lead_id: str
    created: bool
    duplicate: bool
    merged: tuple[str, ...]
    #: The event changed the lead's score (points, grade or stage).
    scored: bool = False
    #: The stage scoring moved the lead to, if it did.
    stage: str | None = None
    #: The lead got its first email address with this event (it may have browsed anonymously before).
    became_emailable: bool = False

    @property
    def new_lead(self) -> bool:
        """What ``new_lead`` programs start on: a lead made, or one that just became known and emailable."""
        return self.created or self.became_emailable


class ProfileService:
    """Applies web events to lead profiles; every method is safe to run twice."""

    def __init__(
        self,
        store: LeadStore,
        publisher: EventPublisher | None = None,
        new_id: Callable[[], str] = new_lead_id,
        sleep: Callable[[float], None] = time.sleep,
        scorer: Scorer | None = None,
        activity: EventPublisher | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        #: Where ``lead.activity`` goes: programs' own queue (its one consumer), else the bus.
        self._activity = activity or publisher
        self._new_id = new_id
        self._sleep = sleep
        self._scorer = scorer

    def record(self, event: WebEvent, now: datetime) -> RecordOutcome:
        lookup, claim = identities_of(event)
        entry = TimelineEntry.from_web_event(event)
        change = profile_change(event)
        merged_here: list[str] = []  # across attempts: a merge done before a lost race still counts
        # Also across attempts: an attempt that lost a race after its profile write leaves the
        # next one reading a lead that already has what the event brought.
        created_here = became_emailable_here = False
        for attempt in range(MAX_RESOLVE_ATTEMPTS):
            try:
                lead, created, _, owned = self._resolve(
                    event, lookup, claim, now, merged_here, consistent=attempt > 0
                )
                created_here = created_here or created
                lead_id = lead.lead_id
                merged = tuple(dict.fromkeys(m for m in merged_here if m != lead_id))
                # The timeline entry's key (time and message id) recognises a message only when
                # every delivery carries the same time: the client's own timestamp. A time derived
                # on receipt (none given, or from sentAt), replaced on receipt, or set by one of
                # kindling's own producers (an unsubscribe by link and by SES) differs per delivery:
                # those messages are recognised by a marker keyed by their id alone.
                by_message = not event.timestamp_from_client
                emitted = self._store.applied(lead_id, entry, by_message)
                if emitted is not None:  # applied before: tell again what it produced (a crash may have
                    outcome = RecordOutcome(lead_id, False, True, merged)  # come before the publish)
                    self._announce(event, outcome, emitted, relevant=event.type not in QUIET_TYPES)
                    return outcome
                owned_change = change.limited_to(owned)
                effective = owned_change.beyond(lead)
                became_emailable_here = became_emailable_here or (
                    not created_here and lead.email is None and effective.email is not None
                )
                active_at = None if event.bot else moved_activity(lead, event.timestamp)
                # Fit inputs the event carries count even when an earlier attempt already wrote them.
                fit_changed = created_here or bool(
                    owned_change.traits or owned_change.email or effective.first_touch
                )
                score = (
                    self._scorer.plan(
                        effective.applied_to(lead), event, list(merged), fit_changed=fit_changed
                    )
                    if self._scorer is not None
                    else None
                )
                try:
                    self._store.append(lead, entry, effective, active_at, score, by_message)
                except Duplicate:
                    # Another delivery at the same moment was first, or this one's own write whose
                    # answer was lost and retried: tell what the record says it produced.
                    outcome = RecordOutcome(lead_id, False, True, merged)
                    produced = self._store.applied(lead_id, entry, by_message, consistent=True) or []
                    self._announce(event, outcome, produced, relevant=event.type not in QUIET_TYPES)
                    return outcome
                scored = score is not None and not score.replayed
                move = score.result.stage_move if score is not None and scored else None
                outcome = RecordOutcome(
                    lead_id,
                    created_here,
                    False,
                    merged,
                    scored,
                    move.to_stage if move else None,
                    became_emailable_here and not created_here,
                )
                relevant = (
                    created_here
                    or bool(merged)
                    or event.type not in QUIET_TYPES
                    or bool(effective.traits or effective.email or effective.user_id)
                    or scored
                )
                self._announce(event, outcome, score.emitted if scored and score else [], relevant=relevant)
                return outcome
            except Conflict:
                # Lost a race for an identity or the score, or the lead was merged away: look again.
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # full jitter
        raise Conflict(f"could not settle the lead for message {event.message_id}")

    def _resolve(
        self,
        event: WebEvent,
        lookup: list[Identity],
        claim: list[Identity],
        now: datetime,
        merged_here: list[str] | None = None,
        consistent: bool = True,
    ) -> tuple[Lead, bool, tuple[str, ...], set[Identity]]:
        """The lead this event belongs to, and the identities it now owns of those the event names."""
        merged_here = merged_here if merged_here is not None else []
        if event.lead_id:
            known = self._live(event.lead_id, merged_here)
            if known is not None:
                return known, False, (), set()
        # A stale answer is caught by the conditions of the writes it leads to (Conflict): the
        # retry then reads consistently.
        owners = self._store.owners(lookup, consistent=consistent)
        live_owner: dict[str, str] = {}
        leads: dict[str, Lead] = {}
        for owner_id in set(owners.values()):
            lead = self._live(owner_id, merged_here)
            if lead is not None:
                live_owner[owner_id] = lead.lead_id
                leads[lead.lead_id] = lead
        if not leads:
            # Created with what the event says, so that applying the event then changes nothing.
            change = profile_change(event)
            lead = Lead(
                lead_id=self._new_id(),
                email=next((i.value for i in claim if i.kind == "email"), None),
                user_id=event.user_id,
                anonymous_ids=change.anonymous_ids,
                traits={**change.first_touch, **change.traits},
                created_at=now,
                first_seen_at=event.timestamp,
                last_activity_at=None if event.bot else event.timestamp,
            )
            self._store.create(lead)
            return lead, True, (), set(claim)
        primary = choose_primary(leads.values(), event)
        merged = []
        for other in leads.values():
            if other.lead_id != primary.lead_id and can_merge(other, primary):
                self.merge(other, primary.lead_id)
                merged_here.append(other.lead_id)
                live_owner = {k: primary.lead_id if v == other.lead_id else v for k, v in live_owner.items()}
                merged.append(other.lead_id)
        if merged:  # the merges folded the others' email and traits into it: read it as it is now
            primary = self._store.get(primary.lead_id) or primary
        owned = set()
        for identity in claim:
            raw_owner = owners.get(identity)
            owner = live_owner.get(raw_owner) if raw_owner else None
            if owner is None:
                self._store.claim(identity, primary.lead_id)
            elif owner != primary.lead_id:
                continue  # another person's identity: leave it where it is
            owned.add(identity)
        return primary, False, tuple(merged), owned

    def _live(self, lead_id: str, merged_here: list[str] | None = None) -> Lead | None:
        """Follow merge pointers, finishing any merge a crash left half-done (and reporting it)."""
        lead = self._store.get(lead_id)
        hops = 0
        while lead is not None and lead.merged_into and hops < 5:
            target = lead.merged_into
            self._finish_merge(lead, target)
            if merged_here is not None:
                merged_here.append(lead.lead_id)
            lead = self._store.get(target)
            hops += 1
        return lead

    def merge(self, other: Lead, into: str) -> None:
        self._store.mark_merged(other.lead_id, into)
        # Read it again: anything written to it before it was marked is folded in too.
        self._finish_merge(self._store.get(other.lead_id) or other, into)

    def _finish_merge(self, other: Lead, into: str) -> None:
        for identity in other.identities:
            self._store.repoint(identity, other.lead_id, into)
        self._store.move_timeline(other.lead_id, into)
        self._store.absorb(into, other)

    def _announce(
        self, event: WebEvent, outcome: RecordOutcome, emitted: list[BusEvent], *, relevant: bool
    ) -> None:
        """What is told: the score's stage moves and hand-offs (the bus), and for programs the activity.

        A page view that made no lead, changed no profile and scored nothing is kept on the
        timeline but not announced: no trigger, wait or goal can react to it. Duplicates are
        announced again (a crash may have come between the write and the publish): consumers
        deduplicate.
        """
        if self._publisher is not None and emitted:
            self._publisher.publish(list(emitted))
        if self._activity is not None and relevant:
            self._activity.publish(
                [
                    BusEvent(
                        source="kindling.profiles",
                        detail_type="lead.activity",
                        detail={
                            "lead_id": outcome.lead_id,
                            "new_lead": outcome.new_lead,
                            "merged": list(outcome.merged),
                            "event": event.model_dump(mode="json"),
                        },
                        time=event.timestamp,
                    )
                ]
            )


class LeadView(BaseModel):
    """A profile with its recent timeline, as the admin API returns it."""

    lead: Lead
    timeline: list[TimelineEntry]


def read_lead(store: LeadStore, lead_id: str, timeline_limit: int = 50) -> LeadView | None:
    if len(lead_id) > MAX_LEAD_ID_LENGTH or not lead_id.isprintable():
        return None
    lead = store.get(lead_id)
    hops = 0
    while lead is not None and lead.merged_into and hops < 5:
        lead = store.get(lead.merged_into)
        hops += 1
    if lead is None:
        return None
    timeline = store.timeline(lead.lead_id, timeline_limit) if timeline_limit > 0 else []
    return LeadView(lead=lead, timeline=timeline)


def find_lead_by_email(store: LeadStore, email: str, timeline_limit: int = 50) -> LeadView | None:
    normal = normalize_email(email)
    if normal is None:
        raise InvalidInput(f"email: {email!r} is not a valid email address")
    lead_id = store.lead_for_email(normal)
    return read_lead(store, lead_id, timeline_limit) if lead_id else None
