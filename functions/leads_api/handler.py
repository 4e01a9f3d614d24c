"""Admin API: leads and their enrollments, reports, CRM events held for unknown people, the
suppression list and contact imports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore, EmailConfig, ProgramsConfig
from kindling.adapters.console_store import DynamoConsoleStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.export_store import DynamoExportStore, lead_export_row
from kindling.adapters.import_store import DynamoImportStore
from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.adapters.privacy_store import DynamoPrivacyStore, readable
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.queue import QueueDelivery, SqsQueue
from kindling.adapters.sales_store import DynamoUnmatchedStore
from kindling.adapters.score_store import DynamoScoreStore
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.console import page as console_page
from kindling.crm.hubspot import public_base_url
from kindling.crm.unmatched import release_for_email
from kindling.email.render import LinkSigner, RenderFailed, render
from kindling.email.sender import SendEmailCommand, SendRequest, queue_email
from kindling.kernel import clock
from kindling.kernel.bus import BusEvent
from kindling.kernel.errors import InvalidInput, NotFound
from kindling.kernel.http_api import (
    GuardedRouter,
    bearer_middleware,
    json_response,
    raw_body,
    register_errors,
)
from kindling.kernel.json_input import parse_json_object
from kindling.kernel.observability import logger
from kindling.kernel.settings import LeadsApiSettings
from kindling.leads.addresses import normalize_email
from kindling.leads.importing import (
    ContactBatch,
    Suppression,
    SuppressionBatch,
    SuppressionChange,
    import_contacts,
    import_suppressions,
)
from kindling.leads.privacy import ErasureRequest, erase_person
from kindling.leads.profiles import Lead, TimelineEntry, find_lead_by_email, read_lead
from kindling.leads.views import lead_emails, parse_search
from kindling.metrics import report_page, reports
from kindling.programs.engine import describe_enrollments
from kindling.programs.overview import overview
from kindling.programs.service import pause_program, resume_program
from kindling.scoring.config import ScoringConfig, Stage
from kindling.scoring.service import explain_lead_score

settings = LeadsApiSettings()
store = DynamoLeadStore(settings.table_name)
admin_token = SecretsManagerSecret(settings.admin_token_secret_arn)
scores = DynamoScoreStore(settings.table_name)
email_config = EmailConfig(settings.table_name)
programs_config = ProgramsConfig(settings.table_name)
programs = DynamoProgramStore(settings.table_name)
metrics_reader = DynamoMetricsStore(settings.table_name)
send_queue = SqsQueue(settings.send_queue_url)
unmatched_crm = DynamoUnmatchedStore(settings.table_name)
imports = DynamoImportStore(settings.table_name)
exports = DynamoExportStore(settings.table_name)
privacy = DynamoPrivacyStore(settings.table_name)
console = DynamoConsoleStore(settings.table_name)
link_secret = SecretsManagerSecret(settings.link_secret_arn)
erasure_key = SecretsManagerSecret(settings.erasure_key_secret_arn)
programs_queue = QueueDelivery(settings.programs_queue_url)
bus = EventBridgePublisher(settings.bus_name)
scoring_config = ConfigCache(DynamoConfigStore(settings.table_name), "scoring", ScoringConfig)
app = APIGatewayHttpResolver()
register_errors(app, auth_scheme="Bearer")
#: Every route of the admin API needs the admin token; the report page's shell is public (on ``app``).
admin = GuardedRouter(bearer_middleware(admin_token.value))


@admin.get("/v1/leads/<lead_id>")
def get_lead(lead_id: str) -> Response:
    view = read_lead(store, lead_id)
    if view is None:
        raise NotFound(f"no lead {lead_id}")
    return json_response(200, view.model_dump(mode="json"))


@admin.get("/v1/leads/<lead_id>/export")
@admin.get("/v1/leads/<lead_id>/data")
def access_export(lead_id: str) -> Response:
    """Everything stored about one person (a GDPR / CCPA access request), as plain JSON."""
    person = privacy.gather(lead_id) if len(lead_id) <= 200 and lead_id.isprintable() else None
    if person is None:
        raise NotFound(f"no lead {lead_id}")
    return json_response(200, readable(person))


@admin.delete("/v1/leads/<lead_id>")
@admin.post("/v1/leads/<lead_id>/erase")
def erase(lead_id: str) -> Response:
    """Delete everything about one person; an opted-out address is kept only as a keyed hash."""
    request = _parsed(ErasureRequest)
    if len(lead_id) > 200 or not lead_id.isprintable():
        raise NotFound(f"no lead {lead_id[:200]}")
    report = erase_person(privacy, lead_id, request, erasure_key.value().encode(), clock.current().now())
    return json_response(200, report)


@admin.get("/v1/leads/<lead_id>/score")
def explain_score(lead_id: str) -> Response:
    view = read_lead(store, lead_id, timeline_limit=0)
    if view is None:
        raise NotFound(f"no lead {lead_id}")
    return json_response(200, explain_lead_score(view.lead, scores, scoring_config, clock.current().now()))


@admin.post("/v1/emails")
def send_email() -> Response:
    try:
        command = SendEmailCommand.model_validate(parse_json_object(raw_body(admin.current_event)))
    except ValidationError as exc:
        raise InvalidInput([f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from exc

    def find(lead_id: str | None, email: str | None) -> Lead | None:
        view = read_lead(store, lead_id, 0) if lead_id else find_lead_by_email(store, email or "", 0)
        return view.lead if view else None

    request = queue_email(
        command,
        find_lead=find,
        templates=email_config.templates(),
        queue=send_queue,
        now=clock.current().now(),
    )
    return json_response(202, {"send_id": request.send_id, "lead_id": request.lead_id, "status": "queued"})


@admin.get("/v1/leads/<lead_id>/enrollments")
def enrollments(lead_id: str) -> Response:
    view = read_lead(store, lead_id, timeline_limit=0)
    if view is None:
        raise NotFound(f"no lead {lead_id}")
    return json_response(
        200,
        {
            "lead_id": view.lead.lead_id,
            "enrollments": describe_enrollments(
                programs.enrollments(view.lead.lead_id), programs_config.programs()
            ),
        },
    )


@admin.get("/v1/leads")
def find_lead() -> Response:
    email = admin.current_event.get_query_string_value("email")
    if not email:
        raise InvalidInput("email: give ?email=<address> to look a lead up")
    view = find_lead_by_email(store, email)
    if view is None:
        raise NotFound("no lead with that email")
    return json_response(200, view.model_dump(mode="json"))


def _parsed(model: Any) -> Any:
    try:
        return model.model_validate(parse_json_object(raw_body(admin.current_event)))
    except ValidationError as exc:
        raise InvalidInput([f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from exc


class _Enroller:
    """Imported leads enter ``new_lead`` programs as a new lead from a form would: via programs' queue."""

    def new_lead(self, lead_id: str, trigger_id: str, at: datetime) -> None:
        event = {
            "message_id": trigger_id,
            "type": "identify",
            "timestamp": at.isoformat(),
            "received_at": at.isoformat(),
        }
        detail = {"lead_id": lead_id, "new_lead": True, "merged": [], "event": event}
        programs_queue.publish(
            [BusEvent(source="kindling.imports", detail_type="lead.activity", detail=detail, time=at)]
        )


@admin.post("/v1/imports/suppressions")
def import_suppression_rows() -> Response:
    batch = _parsed(SuppressionBatch)
    results = import_suppressions(imports, batch, clock.current().now(), by=f"import:{batch.source}")
    return json_response(200, {"dry_run": batch.dry_run, "results": [r.as_json() for r in results]})


@admin.post("/v1/imports/contacts")
def import_contact_rows() -> Response:
    batch = _parsed(ContactBatch)
    now = clock.current().now()

    def created(lead: Lead) -> None:  # CRM events kept for this address apply to the new lead now
        release_for_email(unmatched_crm, bus, lead.email, now)

    results = import_contacts(imports, batch, now, _Enroller(), on_created=created)
    return json_response(200, {"dry_run": batch.dry_run, "results": [r.as_json() for r in results]})


def _suppression_json(suppression: Suppression) -> dict[str, Any]:
    return {
        "email": suppression.email,
        "reason": suppression.reason,
        "at": suppression.at.isoformat(),
        "source": suppression.source,
        "by": suppression.by,
    }


def _address(email: str) -> str:
    normal = normalize_email(unquote(email))
    if normal is None:
        raise InvalidInput(f"email: {email!r} is not a valid address")
    return normal


@admin.get("/v1/suppressions")
def list_suppressions() -> Response:
    query = admin.current_event.get_query_string_value
    limit_text = query("limit") or "100"
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
        raise InvalidInput("limit: give a whole number from 1 to 1000")
    after = query("after")
    if after is not None:
        after = _address(after)
    found, last = imports.suppressions(int(limit_text), after)
    return json_response(200, {"suppressions": [_suppression_json(s) for s in found], "next_after": last})


@admin.post("/v1/suppressions")
def add_suppression() -> Response:
    change = _parsed(SuppressionChange)
    if not change.email:
        raise InvalidInput("email: give the address to suppress")
    email = _address(change.email)
    added = imports.suppress(
        Suppression(email, change.reason or "manual", clock.current().now(), "admin", change.by)
    )
    current = imports.suppression(email)
    assert current is not None
    return json_response(201 if added else 200, {"added": added, "suppression": _suppression_json(current)})


@admin.get("/v1/suppressions/<email>")
def get_suppression(email: str) -> Response:
    address = _address(email)
    current = imports.suppression(address)
    body = {
        "email": address,
        "suppression": _suppression_json(current) if current else None,
        "removals": imports.removals(address),
    }
    return json_response(200, body)


@admin.post("/v1/suppressions/<email>/remove")
def remove_suppression(email: str) -> Response:
    change = _parsed(SuppressionChange)
    address = _address(email)
    if change.email and _address(change.email) != address:
        raise InvalidInput("email: the body names another address than the path")
    if not change.note:
        raise InvalidInput("note: say why the address may be mailed again (recorded with who and when)")
    removed = imports.remove_suppression(address, change.note, change.by, clock.current().now())
    return json_response(200, {"removed": _suppression_json(removed), "by": change.by, "note": change.note})


def _page_size(default: int, most: int) -> int:
    text = admin.current_event.get_query_string_value("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidInput(f"limit: give a whole number from 1 to {most}")
    return int(text)


def _moment(name: str) -> datetime:
    text = admin.current_event.get_query_string_value(name)
    if not text:
        raise InvalidInput(f"{name}: give a date (YYYY-MM-DD) or a time with an offset")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name}: {text!r} is not a date or a time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@admin.get("/v1/exports/leads")
def export_leads() -> Response:
    """Every lead, a page at a time (pages may be short, even empty: go on while next_cursor is set)."""
    now = clock.current().now()
    rows, cursor = exports.leads(admin.current_event.get_query_string_value("cursor"), _page_size(500, 1000))
    scoring_config.refresh()
    decay = scoring_config.current()[1].engagement.decay
    leads = [lead_export_row(lead, score, suppressed, now, decay) for lead, score, suppressed in rows]
    return json_response(200, {"leads": leads, "next_cursor": cursor})


@admin.get("/v1/exports/activity")
def export_activity() -> Response:
    """Every timeline entry from ``from`` (inclusive) to ``to`` (exclusive), a page at a time."""
    start, end = _moment("from"), _moment("to")
    if end <= start:
        raise InvalidInput("to: must be after from")
    found, cursor = exports.activity(
        start, end, admin.current_event.get_query_string_value("cursor"), _page_size(1000, 1000)
    )
    events = [{"lead_id": lead_id, **entry.model_dump(mode="json")} for lead_id, entry in found]
    return json_response(200, {"events": events, "next_cursor": cursor})


@admin.get("/v1/crm/unmatched")
def unmatched_crm_events() -> Response:
    """CRM events that matched no lead yet, newest first: they apply when the lead appears."""
    query = admin.current_event.get_query_string_value
    limit_text = query("limit") or "50"
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 200:
        raise InvalidInput("limit: give a whole number from 1 to 200")
    cursor = query("cursor")
    if cursor is not None and (len(cursor) > 400 or not cursor.isprintable()):
        raise InvalidInput("cursor: give the next_cursor of the previous page")
    events, next_cursor = unmatched_crm.listing(clock.current().now(), int(limit_text), cursor)
    listed = [e.model_dump(mode="json", exclude={"detail", "crm_identity"}) for e in events]
    return json_response(200, {"unmatched": listed, "next_cursor": next_cursor})


# --- the console's routes ---------------------------------------------------------------------------


@app.get("/console", cors=False)
def console_shell() -> Response:
    """The operator console: public HTML without data; its script asks for the admin token."""
    served = console_page.served()
    return _html_page(served.body, served.etag, served.content_security_policy)


def _html_page(body: str, etag: str, policy: str) -> Response:
    """A public page of the admin API (no data in it): cached by ETag, framed by nobody."""
    return Response(
        status_code=200,
        content_type=report_page.CONTENT_TYPE,
        body=body,
        headers={
            "Cache-Control": report_page.CACHE_CONTROL,
            "ETag": etag,
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
        compress=True,
    )


_STAGES = set(Stage.__args__)  # type: ignore[attr-defined]


@admin.get("/v1/console/leads")
def console_leads() -> Response:
    """Leads found by an email, an email prefix or a company domain; or listed: a stage's by latest
    activity, a grade's by score now, a segment's by the latest to enter it."""
    query = admin.current_event.get_query_string_value
    limit = _page_size(25, 100)
    cursor = query("cursor")
    q, stage, grade, segment = query("q"), query("stage"), query("grade"), query("segment")
    if q:
        ids, next_cursor = console.search(parse_search(q), limit, cursor)
    elif stage:
        if stage not in _STAGES:
            raise InvalidInput(f"stage: one of {', '.join(sorted(_STAGES))}")
        ids, next_cursor = console.by_stage(stage, limit, cursor)
    elif grade:
        if grade not in ("A", "B", "C", "D"):
            raise InvalidInput("grade: one of A, B, C, D")
        ids, next_cursor = console.by_grade(grade, limit, cursor)
    elif segment:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", segment):
            raise InvalidInput("segment: a segment id (lower-case letters, digits, - and _)")
        ids, next_cursor = console.by_segment(segment, limit, cursor)
    elif query("recent"):
        ids, next_cursor = console.recent(sorted(_STAGES), limit, cursor)
    else:
        raise InvalidInput(
            "q: give an email, the start of one or a company domain; or stage, grade, segment or recent=1"
        )
    now = clock.current().now()
    decay = scoring_config.current()[1].engagement.decay
    leads = [
        {
            "lead_id": lead.lead_id,
            "email": lead.email,
            "first_name": lead.traits.get("first_name"),
            "last_name": lead.traits.get("last_name"),
            "company": lead.traits.get("company"),
            "title": lead.traits.get("title"),
            "stage": lead.stage,
            "grade": score.grade if score else None,
            "score": round(score.engagement_at(now, decay), 1) if score else 0.0,
            "last_activity_at": lead.last_activity_at.isoformat() if lead.last_activity_at else None,
        }
        for lead, score in console.cards(ids)
    ]
    return json_response(200, {"leads": leads, "next_cursor": next_cursor})


def _lead(lead_id: str) -> Lead:
    view = read_lead(store, lead_id, timeline_limit=0)
    if view is None:
        raise NotFound(f"no lead {lead_id}")
    return view.lead


@admin.get("/v1/leads/<lead_id>/timeline")
def lead_timeline(lead_id: str) -> Response:
    lead = _lead(lead_id)
    entries, before = console.timeline(
        lead.lead_id, admin.current_event.get_query_string_value("before"), _page_size(50, 200)
    )
    return json_response(
        200, {"entries": [e.model_dump(mode="json") for e in entries], "next_before": before}
    )


@admin.get("/v1/leads/<lead_id>/emails")
def lead_email_sends(lead_id: str) -> Response:
    lead = _lead(lead_id)
    return json_response(200, {"emails": lead_emails(lead.lead_id, console.email_entries(lead.lead_id))})


@admin.post("/v1/leads/<lead_id>/unsubscribe")
def console_unsubscribe(lead_id: str) -> Response:
    change = _parsed(SuppressionChange)
    lead, now = _lead(lead_id), clock.current().now()
    if not lead.unsubscribed:
        imports.unsubscribe(lead.lead_id, now, _console_entry("Unsubscribed", now, change.by, change.note))
    return json_response(200, {"lead_id": lead.lead_id, "unsubscribed": True})


@admin.post("/v1/leads/<lead_id>/resubscribe")
def console_resubscribe(lead_id: str) -> Response:
    change = _parsed(SuppressionChange)
    if not change.note:
        raise InvalidInput("note: record the person's consent (where and when they asked to be mailed again)")
    lead, now = _lead(lead_id), clock.current().now()
    imports.resubscribe(lead.lead_id, now, _console_entry("Resubscribed", now, change.by, change.note))
    suppressed = imports.suppression(lead.email) if lead.email else None
    body = {
        "lead_id": lead.lead_id,
        "unsubscribed": False,
        "still_suppressed": suppressed.reason if suppressed else None,
    }
    return json_response(200, body)


@admin.post("/v1/leads/<lead_id>/suppress")
def console_suppress(lead_id: str) -> Response:
    change = _parsed(SuppressionChange)
    lead = _lead(lead_id)
    if not lead.email:
        raise InvalidInput("the lead has no email address to suppress")
    suppression = Suppression(
        lead.email, change.reason or "manual", clock.current().now(), "console", change.by
    )
    added = imports.suppress(suppression)
    return json_response(
        201 if added else 200, {"lead_id": lead.lead_id, "email": lead.email, "added": added}
    )


def _console_entry(what: str, now: datetime, by: str, note: str | None) -> TimelineEntry:
    return TimelineEntry(
        message_id=f"console:{what.lower()}:{now.isoformat()}",
        type="consent",
        event=what,
        timestamp=now,
        received_at=now,
        properties={"by": by, **({"note": note} if note else {})},
    )


def _program_view(program_id: str) -> dict[str, Any]:
    programs_now = programs_config.programs().programs
    program = programs_now.get(program_id)
    if program is None:
        raise NotFound(f"no program {program_id}")
    today = clock.current().now().date()
    try:
        report = reports.program(
            metrics_reader,
            program_id,
            list(programs_now),
            (today - timedelta(days=365)).isoformat(),
            today.isoformat(),
            None,
        )
        rows = report["emails"]
    except NotFound:
        rows = []
    sent: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = sent.setdefault(row.get("step") or "", {"sent": 0, "skipped": 0})
        counts["sent"] += int(row.get("sent") or 0)
        skipped = row.get("skipped") or 0  # {"total", "by_reason"} in the email report
        counts["skipped"] += int(skipped.get("total", 0) if isinstance(skipped, dict) else skipped)
    view = overview(program, programs.paused(program_id), console.enrollment_keys(program_id), sent)
    view["priority_rank"] = programs_config.programs().rank(program_id)
    return view


@admin.get("/v1/programs")
def list_programs() -> Response:
    return json_response(200, {"programs": [_program_view(p) for p in programs_config.programs().programs]})


@admin.get("/v1/programs/<program_id>")
def get_program(program_id: str) -> Response:
    return json_response(200, _program_view(program_id))


@admin.post("/v1/programs/<program_id>/pause")
def pause(program_id: str) -> Response:
    _program_view(program_id)  # 404 for a program that does not exist
    pause_program(programs, program_id)
    return json_response(
        200, {"program": program_id, "paused": True, "result": "its enrollments hold at their next step"}
    )


@admin.post("/v1/programs/<program_id>/resume")
def resume(program_id: str) -> Response:
    _program_view(program_id)
    count = resume_program(programs, program_id, clock.current().now())
    return json_response(
        200, {"program": program_id, "paused": False, "result": f"{count} held enrollment(s) go on"}
    )


class _TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    traits: dict[str, Any] | None = None
    to: str | None = Field(default=None, max_length=320)


def _template_traits(request: _TemplateRequest) -> tuple[dict[str, Any], str, str]:
    """The traits, address and lead id a preview or test renders with: a lead's, or sample ones."""
    if request.lead_id or request.email:
        view = (
            read_lead(store, request.lead_id, 0)
            if request.lead_id
            else find_lead_by_email(store, request.email or "", 0)
        )
        if view is None:
            raise NotFound("no such lead")
        return view.lead.traits, view.lead.email or "lead@example.com", view.lead.lead_id
    return request.traits or {}, "sample@example.com", "preview"


def _template(name: str) -> Any:
    template = email_config.templates().get(name)
    if template is None:
        raise NotFound(f"no template {name}")
    return template


@admin.get("/v1/templates")
def list_templates() -> Response:
    found = [
        {"name": name, "subject": t.subject, "kind": t.kind}
        for name, t in sorted(email_config.templates().items())
    ]
    return json_response(200, {"templates": found})


def _rendered(name: str, request: _TemplateRequest, api_id: str) -> Any:
    """The template as the lead (or the sample traits) would get it, links pointing at this API."""
    template = _template(name)
    traits, email, lead_id = _template_traits(request)
    try:
        return render(
            template,
            traits=traits,
            email=email,
            lead_id=lead_id,
            links=LinkSigner(link_secret.value().encode()),
            send_id="preview",
            settings=email_config.email(),
            api_base_url=public_base_url(settings.public_api_url, api_id),
        )
    except RenderFailed as exc:
        raise InvalidInput(f"template {name}: {exc}") from exc


@admin.post("/v1/templates/<name>/preview")
def preview_template(name: str) -> Response:
    request = _parsed(_TemplateRequest)
    rendered = _rendered(name, request, admin.current_event.request_context.api_id)
    return json_response(
        200,
        {
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
            "preview_url": _preview_link(name, request),
        },
    )


#: How long a preview link works: the console frames it at once.
PREVIEW_SECONDS = 300
#: The preview document's own policy: the email's inline styles and inline images, nothing else.
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)


def _preview_signature(payload: str) -> str:
    return hmac.new(
        link_secret.value().encode(), b"template-preview:" + payload.encode(), hashlib.sha256
    ).hexdigest()


def _preview_link(name: str, request: _TemplateRequest) -> str:
    """A short-lived link to the rendered email as its own document, so its inline styles apply.

    A frame's ``srcdoc`` inherits the console's policy, which allows no inline styles; the
    link carries what to render, signed, because a frame cannot send the admin token.
    """
    wanted = {**request.model_dump(exclude_none=True, exclude={"to"}), "template": name}
    if "email" in wanted:  # the link names the lead by its random id, never by its address
        _, _, wanted["lead_id"] = _template_traits(request)
        del wanted["email"]
    wanted["expires"] = int(clock.current().now().timestamp()) + PREVIEW_SECONDS
    payload = base64.urlsafe_b64encode(json.dumps(wanted, separators=(",", ":")).encode()).decode()
    query = urlencode({"p": payload, "s": _preview_signature(payload)})
    return f"/v1/templates/{quote(name, safe='')}/preview.html?{query}"


@app.get("/v1/templates/<name>/preview.html", cors=False)
def preview_document(name: str) -> Response:
    """The rendered email alone, for the console's preview frame (a signed, short-lived link)."""
    query = app.current_event.get_query_string_value
    payload, signature = query("p") or "", query("s") or ""
    refused = Response(
        status_code=403,
        content_type="text/plain; charset=utf-8",
        body="This preview link is not valid or has expired.",
    )
    if not payload or len(payload) > 8000 or not hmac.compare_digest(signature, _preview_signature(payload)):
        return refused
    wanted = json.loads(base64.urlsafe_b64decode(payload.encode()))
    if wanted.get("template") != name or int(wanted.get("expires", 0)) < clock.current().now().timestamp():
        return refused
    request = _TemplateRequest.model_validate(
        {k: v for k, v in wanted.items() if k not in ("template", "expires")}
    )
    rendered = _rendered(name, request, app.current_event.request_context.api_id)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=rendered.html,
        headers={
            "Content-Security-Policy": PREVIEW_POLICY + "; frame-ancestors 'self'",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


@admin.post("/v1/templates/<name>/test")
def test_send(name: str) -> Response:
    _template(name)
    request = _parsed(_TemplateRequest)
    to = normalize_email(request.to)
    if to is None:
        raise InvalidInput("to: give the address the test goes to")
    traits, _, lead_id = _template_traits(request)
    send = SendRequest(
        send_id=f"test-{uuid.uuid4().hex}",
        lead_id=lead_id,
        template=name,
        requested_at=clock.current().now(),
        test_to=to,
        test_traits=traits,
    )
    send_queue.send_all([send.model_dump(mode="json")])
    return json_response(202, {"send_id": send.send_id, "to": to, "status": "queued"})


@app.get("/v1/reports", cors=False)
def reports_page() -> Response:
    """The reports page: public HTML without data; its script asks for the admin token."""
    served = report_page.page(clock.current().now().date())
    return _html_page(served.body, served.etag, served.content_security_policy)


@admin.get("/v1/reports/emails")
def email_metrics_report() -> Response:
    query = admin.current_event.get_query_string_value
    report = reports.emails(metrics_reader, query("from"), query("to"), query("program"), query("by"))
    return json_response(200, report)


@admin.get("/v1/reports/funnel")
def funnel_metrics_report() -> Response:
    query = admin.current_event.get_query_string_value
    return json_response(200, reports.funnel(metrics_reader, query("from"), query("to"), query("by")))


@admin.get("/v1/reports/programs/<program_id>")
def program_metrics_report(program_id: str) -> Response:
    query = admin.current_event.get_query_string_value
    known = list(programs_config.programs().programs)
    report = reports.program(metrics_reader, program_id, known, query("from"), query("to"), query("by"))
    return json_response(200, report)


app.include_router(admin)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    scoring_config.refresh()
    email_config.refresh()
    programs_config.refresh()
    return app.resolve(event, context)
