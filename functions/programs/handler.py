"""Lead activity (with the score it changed) and stage moves drive programs: enrol, wake, exit."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.wiring import program_service
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ProgramsSettings


class LeadChangeRecord(SqsRecordModel):
    body: Json[BusEnvelope]


settings = ProgramsSettings()
service, config, _ = program_service(settings.table_name, settings.bus_name, settings.send_queue_url)


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
    elif envelope.detail_type == "lead.stage_changed":
        changes = service.on_lead_event(
            detail["lead_id"], trigger_id=detail["event_id"], now=now, stage_entered=detail["to"]
        )
    else:  # lead.recheck: time alone may have changed a segment
        changes = service.on_lead_event(detail["lead_id"], trigger_id=detail["event_id"], now=now)
    if changes:
        metrics.add_metric(name="ProgramChanges", unit=MetricUnit.Count, value=len(changes))


consumer = SqsConsumer(LeadChangeRecord, record_handler, config=(config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
