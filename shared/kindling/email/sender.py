"""Exactly one email per send id, and none when we must not send.

SES has no idempotency token, so a send is claimed before the SES call and confirmed
after it. A claim found unconfirmed (a crash came between SES accepting and our record)
is not resent blindly: SES's own Send event, which carries the send id as a message tag,
is awaited for a bounded time, and only if none came is the email sent again. A send
that fails at SES releases its claim at once, so the retry goes out straight away.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kindling.email.config import EmailSettings, EmailTemplate, FrequencyCap
from kindling.email.render import LinkSigner, RenderedEmail, frequency_cap_release, next_send_time, render
from kindling.kernel.bus import BusEvent, EventPublisher
from kindling.kernel.errors import Conflict, InvalidInput, NotFound, Retryable
from kindling.kernel.queue import WorkQueue
from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import MAX_LEAD_ID_LENGTH, Lead
from kindling.metrics.counters import send_origin
from kindling.programs.due import DueItem

#: The subject of a test send starts with this, so nobody takes it for the real thing.
TEST_SUBJECT_PREFIX = "[TEST] "
#: What a test send records as its lead: it is nobody's email.
TEST_LEAD = "test"
#: How long an unconfirmed claim waits for SES's Send event before the email is sent again.
CONFIRMATION_WINDOW = timedelta(minutes=10)

SkipReason = Literal[
    "unknown_lead",
    "unknown_template",
    "no_valid_email",
    "unsubscribed",
    "hard_bounced",
    "complained",
    "suppressed",
    "quiet_period",
    "rejected_by_ses",
]


class SendRequest(BaseModel):
    """A message on the send queue: one email, identified for exactly-once by ``send_id``."""

    # SES message tags carry it back in SES events, so only characters tags allow.
    send_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@-]+$")
    lead_id: str = Field(min_length=1)
    template: str = Field(min_length=1)
    requested_at: datetime | None = None
    #: The program's rank when programs compete for the lead (0 first); None for other sends.
    priority: int | None = Field(default=None, ge=0, le=1000)
    #: When the send was first deferred: a send kept waiting long goes ahead of every rank.
    deferred_since: datetime | None = None
    #: A test send (from the console): to this address, at once, with these traits; it skips the
    #: frequency cap, the send window and consent, and counts in no report or cap.
    test_to: str | None = Field(default=None, max_length=320)
    test_traits: dict[str, Any] | None = None


#: A send held back this long by the frequency cap or the send window goes first at the next
#: opening, whatever its program's priority, so no program is starved by busier ones.
STARVED_AFTER = timedelta(days=7)


def queue_offset(request: SendRequest, opening: datetime) -> timedelta:
    """How long after an opening (the send window's, or a frequency-cap slot's) this send goes.

    Sends that compete for the same opening leave one minute tick apart in program priority
    order, so each sees the sends before it in the frequency cap: the first program sends, the
    rest wait for the next slot, and no burst leaves when the window opens. A send that will
    have waited ``STARVED_AFTER`` by the opening goes first.
    """
    if request.priority is None:
        return timedelta(0)
    if request.deferred_since is not None and opening - request.deferred_since >= STARVED_AFTER:
        return timedelta(0)
    return timedelta(minutes=1 + min(request.priority, 58))


class SendState(BaseModel):
    send_id: str
    status: Literal["claimed", "released", "sent", "skipped", "deferred"]
    lead_id: str
    claimed_at: datetime | None = None
    attempt: int = 0
    ses_message_id: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    from_address: str
    from_name: str
    reply_to: str | None
    rendered: RenderedEmail
    tags: dict[str, str]
    #: The ``Date`` header: when the sender decided to send (its injected ``now``).
    date: datetime | None = None


class EmailStore(Protocol):
    def lead(self, lead_id: str) -> Lead | None: ...
    def suppression(self, email: str) -> str | None: ...
    def send_state(self, send_id: str) -> SendState | None: ...
    def claim(self, request: SendRequest, lead_id: str, now: datetime, expected: SendState | None) -> int:
        """Claim the send (returns the attempt number); ``Conflict`` if the state moved meanwhile."""

    def release(self, send_id: str, attempt: int) -> None: ...
    def mark_sent(self, request: SendRequest, lead_id: str, ses_message_id: str, now: datetime) -> None: ...
    def skip(self, request: SendRequest, lead_id: str, reason: str, now: datetime) -> None: ...
    def defer(self, request: SendRequest, lead_id: str, due: DueItem, reason: str, now: datetime) -> None: ...
    def recent_sends(self, lead_id: str, since: datetime) -> list[datetime]: ...
    def ses_send_seen(self, send_id: str) -> str | None: ...
    def mark_test_sent(self, send_id: str, ses_message_id: str, now: datetime) -> None: ...


class Mailer(Protocol):
    def send(self, email: OutgoingEmail) -> str:
        """Hand the email to SES; its message id. ``Retryable`` if throttled, ``InvalidInput`` if refused."""


class EmailConfigSource(Protocol):
    def email(self) -> EmailSettings: ...
    def templates(self) -> dict[str, EmailTemplate]: ...


@dataclass(frozen=True)
class SendOutcome:
    status: Literal["sent", "skipped", "deferred", "duplicate", "confirmed"]
    reason: str | None = None
    due_at: datetime | None = None


def gate(lead: Lead, template: EmailTemplate, suppression: str | None) -> SkipReason | None:
    """Why this lead must not get this email, or None.

    Transactional mail ignores consent and quiet periods, never bounces or complaints.
    """
    if not normalize_email(lead.email):
        return "no_valid_email"
    if lead.email_status == "hard_bounced":
        return "hard_bounced"
    if lead.email_status == "complained":
        return "complained"
    if suppression is not None:
        return "suppressed"
    if template.kind == "transactional":
        return None
    if lead.unsubscribed:
        return "unsubscribed"
    if lead.quiet:
        return "quiet_period"
    return None


class EmailSender:
    def __init__(
        self,
        store: EmailStore,
        mailer: Mailer,
        config: EmailConfigSource,
        links: LinkSigner,
        api_base_url: str,
        publisher: EventPublisher | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._mailer = mailer
        self._config = config
        self._links = links
        self._api = api_base_url.rstrip("/")

    def handle(self, request: SendRequest, now: datetime) -> SendOutcome:
        """Send, skip or defer the email; the outcome is announced on the bus after it is recorded."""
        if request.test_to is not None:
            return self._test(request, now)
        outcome = self._handle(request, now)
        if outcome.status in ("sent", "skipped", "deferred", "confirmed") and self._publisher is not None:
            self._publisher.publish([send_event(request, outcome, now)])
        return outcome

    def _handle(self, request: SendRequest, now: datetime) -> SendOutcome:
        state = self._store.send_state(request.send_id)
        if state is not None and state.status in ("sent", "skipped"):
            return SendOutcome("duplicate")
        if state is not None and state.status == "claimed":
            confirmed = self._resolve_unconfirmed(request, state, now)
            if confirmed is not None:
                return confirmed
        lead = self._store.lead(request.lead_id)
        templates = self._config.templates()
        if lead is None:
            self._store.skip(request, request.lead_id, "unknown_lead", now)
            return SendOutcome("skipped", "unknown_lead")
        template = templates.get(request.template)
        if template is None:
            self._store.skip(request, lead.lead_id, "unknown_template", now)
            return SendOutcome("skipped", "unknown_template")
        email = normalize_email(lead.email)
        reason = gate(lead, template, self._store.suppression(email) if email else None)
        if reason is not None:
            self._store.skip(request, lead.lead_id, reason, now)
            return SendOutcome("skipped", reason)
        assert email is not None
        settings = self._config.email()
        deferral = self._deferral(lead, template, settings, now)
        if deferral is not None:
            opening, why = deferral
            waiting = request.model_copy(update={"deferred_since": request.deferred_since or now})
            due_at = opening + queue_offset(waiting, opening)
            due = DueItem(
                scheduled_at=now,
                id=f"send:{request.send_id}",
                kind="send",
                due_at=due_at,
                payload=waiting.model_dump(mode="json"),
            )
            self._store.defer(request, lead.lead_id, due, why, now)
            return SendOutcome("deferred", why, due_at)
        try:
            attempt = self._store.claim(request, lead.lead_id, now, state)
        except Conflict as exc:
            raise Retryable(f"send {request.send_id} is being handled by another delivery") from exc
        rendered = render(
            template,
            traits=lead.traits,
            email=email,
            links=self._links,
            send_id=request.send_id,
            lead_id=lead.lead_id,
            settings=settings,
            api_base_url=self._api,
        )
        outgoing = OutgoingEmail(
            to=email,
            from_address=settings.from_address,
            from_name=settings.from_name,
            reply_to=settings.reply_to,
            rendered=rendered,
            tags={"send_id": request.send_id, "lead_id": lead.lead_id, "template": request.template},
            date=now,
        )
        try:
            ses_message_id = self._mailer.send(outgoing)
        except InvalidInput:
            self._store.release(request.send_id, attempt)
            self._store.skip(request, lead.lead_id, "rejected_by_ses", now)
            return SendOutcome("skipped", "rejected_by_ses")
        except Exception:
            self._store.release(request.send_id, attempt)  # SES did not take it: the retry may send at once
            raise
        self._store.mark_sent(request, lead.lead_id, ses_message_id, now)
        return SendOutcome("sent")

    def _test(self, request: SendRequest, now: datetime) -> SendOutcome:
        """A test send: once per send id, at once, subject marked, no timeline, cap or metrics."""
        state = self._store.send_state(request.send_id)
        if state is not None and state.status in ("sent", "skipped"):
            return SendOutcome("duplicate")
        template = self._config.templates().get(request.template)
        to = normalize_email(request.test_to)
        if template is None or to is None:
            self._store.skip(
                request, TEST_LEAD, "unknown_template" if template is None else "no_valid_email", now
            )
            return SendOutcome("skipped", "unknown_template" if template is None else "no_valid_email")
        try:
            attempt = self._store.claim(
                request, TEST_LEAD, now, state if state and state.status != "claimed" else None
            )
        except Conflict as exc:
            raise Retryable(f"test send {request.send_id} is being handled by another delivery") from exc
        settings = self._config.email()
        rendered = render(
            template,
            traits=request.test_traits or {},
            email=to,
            links=self._links,
            send_id=request.send_id,
            lead_id=request.lead_id,
            settings=settings,
            api_base_url=self._api,
        )
        marked = dataclasses.replace(rendered, subject=f"{TEST_SUBJECT_PREFIX}{rendered.subject}")
        outgoing = OutgoingEmail(
            to=to,
            from_address=settings.from_address,
            from_name=settings.from_name,
            reply_to=settings.reply_to,
            rendered=marked,
            # No lead_id tag: SES's events about it are not a lead's (the SES events function ignores them).
            tags={"send_id": request.send_id, "template": request.template, "test": "true"},
            date=now,
        )
        try:
            ses_message_id = self._mailer.send(outgoing)
        except Exception:
            self._store.release(request.send_id, attempt)
            raise
        self._store.mark_test_sent(request.send_id, ses_message_id, now)
        return SendOutcome("sent")

    def _resolve_unconfirmed(
        self, request: SendRequest, state: SendState, now: datetime
    ) -> SendOutcome | None:
        """A claimed, unconfirmed send: SES took it if its Send event says so; otherwise wait, then resend."""
        seen = self._store.ses_send_seen(request.send_id)
        if seen is not None:
            self._store.mark_sent(request, state.lead_id, seen, now)
            return SendOutcome("confirmed")
        if state.claimed_at is not None and now - state.claimed_at < CONFIRMATION_WINDOW:
            raise Retryable(
                f"send {request.send_id} is claimed but unconfirmed; "
                "waiting for SES's Send event before resending"
            )
        return None

    def _deferral(
        self, lead: Lead, template: EmailTemplate, settings: EmailSettings, now: datetime
    ) -> tuple[datetime, str] | None:
        if template.kind == "transactional":
            return None
        opening = next_send_time(now, settings.send_window, lead.timezone)
        cap = settings.frequency_cap
        if lead.email_frequency == "monthly":  # the recipient asked for less
            cap = FrequencyCap(max_emails=1, per_days=30)
        recent = self._store.recent_sends(lead.lead_id, now - timedelta(days=cap.per_days))
        release = frequency_cap_release(recent, now, cap)
        if release is not None:
            return next_send_time(release, settings.send_window, lead.timezone), "frequency_cap"
        if opening > now:
            return opening, "outside_send_window"
        return None


def send_event(request: SendRequest, outcome: SendOutcome, now: datetime) -> BusEvent:
    """``email.sent`` / ``email.skipped`` / ``email.deferred`` for a recorded outcome."""
    status = "sent" if outcome.status == "confirmed" else outcome.status
    program, step = send_origin(request.send_id, request.lead_id)
    return BusEvent(
        source="kindling.email",
        detail_type=f"email.{status}",
        time=now,
        detail={
            "event_id": f"{request.send_id}:{status}",
            "send_id": request.send_id,
            "lead_id": request.lead_id,
            "template": request.template,
            "program": program,
            "step": step,
            "reason": outcome.reason,
            "until": outcome.due_at.isoformat() if outcome.due_at else None,
            "at": now.isoformat(),
        },
    )


class SendEmailCommand(BaseModel):
    """``POST /v1/emails``: one email to one lead, by lead id or email address."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1)
    lead_id: str | None = Field(default=None, max_length=MAX_LEAD_ID_LENGTH)
    email: str | None = None
    send_id: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@-]+$")


def queue_email(
    command: SendEmailCommand,
    *,
    find_lead: Any,
    templates: dict[str, EmailTemplate],
    queue: WorkQueue,
    now: datetime,
    new_id: Any = lambda: uuid.uuid4().hex,
) -> SendRequest:
    """Check what can be checked now (the lead, the template), then queue the send."""
    if bool(command.lead_id) == bool(command.email):
        raise InvalidInput("give exactly one of lead_id or email")
    if command.template not in templates:
        raise InvalidInput(f"template: no template named {command.template!r} is applied")
    lead: Lead | None = find_lead(command.lead_id, command.email)
    if lead is None:
        raise NotFound("no such lead")
    request = SendRequest(
        send_id=command.send_id or f"api-{new_id()}",
        lead_id=lead.lead_id,
        template=command.template,
        requested_at=now,
    )
    queue.send_all([request.model_dump(mode="json")])
    return request
