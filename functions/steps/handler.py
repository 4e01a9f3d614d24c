"""Runs the program steps that fell due: each message names an enrollment and the token it was due with."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Json

from kindling.adapters.wiring import program_service
from kindling.kernel import clock
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ProgramsSettings


class StepDue(BaseModel):
    lead_id: str
    enrollment_id: str
    token: str


class StepRecord(SqsRecordModel):
    body: Json[StepDue]


settings = ProgramsSettings()
service, config, _ = program_service(settings.table_name, settings.bus_name, settings.send_queue_url)


def record_handler(record: StepRecord) -> None:
    due = record.body
    outcome = service.run_due(due.lead_id, due.enrollment_id, due.token, clock.current().now())
    metrics.add_metric(name=f"Step_{outcome}", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(StepRecord, record_handler, config=(config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
