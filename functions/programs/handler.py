"""Lead activity, stage moves and the sender's outcomes drive programs: enrol, wake, exit, go on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Json

from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.sales_store import DynamoUnmatchedStore
from kindling.adapters.wiring import program_service
from kindling.crm.unmatched import release_for_email
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ProgramsSettings
from kindling.programs.engine import SendResult

SEND_OUTCOMES = {"email.sent": "sent", "email.skipped": "skipped", "email.deferred": "deferred"}


class LeadChangeRecord(SqsRecordModel):
    body: Json[BusEnvelope]


class SendOutcomeDetail(BaseModel):
    """The sender's ``email.sent`` / ``email.skipped`` / ``email.deferred``."""

    send_id: str
    lead_id: str
    at: datetime
    reason: str | None = None
    until: datetime | None = None


settings = ProgramsSettings()
service, config, publisher = program_service(settings.table_name, settings.bus_name, settings.send_queue_url)
leads = DynamoLeadStore(settings.table_name)
unmatched_crm = DynamoUnmatchedStore(settings.table_name)


def record_handler(record: LeadChangeRecord) -> None:
    envelope = record.body
    detail: dict[str, Any] = envelope.detail
    now = clock.current().now()
    if envelope.detail_type == "lead.activity":
        event = detail["event"]
        changes = service.on_lead_event(
            detail["lead_id"],
            trigger_id=event["message_id"],
            now=now,
            event=event,
            new_lead=detail.get("new_lead", False),
        )
        if detail.get("new_lead"):  # known by email now: CRM events that came first apply to it
            lead = leads.get(detail["lead_id"])
            released = release_for_email(unmatched_crm, publisher, lead.email if lead else None, now)
            changes += [f"CRM event {e.event_id} released" for e in released]
    elif envelope.detail_type in SEND_OUTCOMES:
        sent = SendOutcomeDetail.model_validate(detail)
        result = SendResult(
            status=SEND_OUTCOMES[envelope.detail_type], at=sent.at, reason=sent.reason, until=sent.until
        )
        outcome = service.on_send_result(sent.lead_id, sent.send_id, result, now)
        changes = [outcome] if outcome not in ("stale", "not a program send") else []
    elif envelope.detail_type == "lead.stage_changed":
        changes = service.on_lead_event(
            detail["lead_id"], trigger_id=detail["event_id"], now=now, stage_entered=detail["to"]
        )
    else:  # lead.recheck: time alone may have changed a segment (dropped if the lead was erased since)
        changes = service.on_lead_event(
            detail["lead_id"], trigger_id=detail["event_id"], now=now, recheck=True
        )
    if changes:
        metrics.add_metric(name="ProgramChanges", unit=MetricUnit.Count, value=len(changes))


consumer = SqsConsumer(LeadChangeRecord, record_handler, config=(config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
