"""Admin API over lead profiles: one lead by id or by email, with its recent timeline."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore, EmailConfig, ProgramsConfig
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.queue import SqsQueue
from kindling.adapters.sales_store import DynamoUnmatchedStore
from kindling.adapters.score_store import DynamoScoreStore
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.email.sender import SendEmailCommand, queue_email
from kindling.kernel import clock
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
