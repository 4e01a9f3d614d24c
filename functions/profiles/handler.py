"""Web events from the bus become lead profiles and timelines, exactly once per message."""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ProfilesSettings
from kindling.leads.profiles import ProfileService
from kindling.tracking.segment import WebEvent


class WebEventEnvelope(BusEnvelope):
    detail: WebEvent  # type: ignore[assignment]


class WebEventRecord(SqsRecordModel):
    body: Json[WebEventEnvelope]


settings = ProfilesSettings()
service = ProfileService(DynamoLeadStore(settings.table_name), EventBridgePublisher(settings.bus_name))


def record_handler(record: WebEventRecord) -> None:
    outcome = service.record(record.body.detail, now=clock.current().now())
    if outcome.duplicate:
        metrics.add_metric(name="DuplicateEvents", unit="Count", value=1)
    if outcome.created:
        metrics.add_metric(name="LeadsCreated", unit="Count", value=1)


consumer = SqsConsumer(WebEventRecord, record_handler)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
