"""Admin API: leads and their enrollments, reports, CRM events held for unknown people, the
suppression list and contact imports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore, EmailConfig, ProgramsConfig
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
from kindling.crm.unmatched import release_for_email
from kindling.email.sender import SendEmailCommand, queue_email
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
from kindling.leads.profiles import Lead, find_lead_by_email, read_lead
from kindling.metrics import report_page, reports
from kindling.programs.engine import describe_enrollments
from kindling.scoring.config import ScoringConfig
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
link_secret = SecretsManagerSecret(settings.link_secret_arn)
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


@admin.get("/v1/leads/<lead_id>/data")
def access_export(lead_id: str) -> Response:
    """Everything stored about one person (a GDPR / CCPA access request), as plain JSON."""
    person = privacy.gather(lead_id) if len(lead_id) <= 200 and lead_id.isprintable() else None
    if person is None:
        raise NotFound(f"no lead {lead_id}")
    return json_response(200, readable(person))


@admin.post("/v1/leads/<lead_id>/erase")
def erase(lead_id: str) -> Response:
    """Delete everything about one person; an opted-out address is kept only as a keyed hash."""
    request = _parsed(ErasureRequest)
    if len(lead_id) > 200 or not lead_id.isprintable():
        raise NotFound(f"no lead {lead_id[:200]}")
    report = erase_person(privacy, lead_id, request, link_secret.value().encode(), clock.current().now())
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


@app.get("/v1/reports", cors=False)
def reports_page() -> Response:
    """The reports page: public HTML without data; its script asks for the admin token."""
    served = report_page.page(clock.current().now().date())
    return Response(
        status_code=200,
        content_type=report_page.CONTENT_TYPE,
        body=served.body,
        headers={
            "Cache-Control": report_page.CACHE_CONTROL,
            "ETag": served.etag,
            "Content-Security-Policy": served.content_security_policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
        compress=True,
    )


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
