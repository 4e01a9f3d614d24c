"""SES events from the default bus: bounces and complaints suppress, opens and clicks become lead events."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.email_store import DynamoEmailStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.email.ses_events import SesEvent, apply_ses_event
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import SesEventsSettings


class SesEnvelope(BusEnvelope):
    detail: SesEvent  # type: ignore[assignment]


class SesRecord(SqsRecordModel):
    body: Json[SesEnvelope]


settings = SesEventsSettings()
store = DynamoEmailStore(settings.table_name)
publisher = EventBridgePublisher(settings.bus_name)


def record_handler(record: SesRecord) -> None:
    outcome = apply_ses_event(record.body.id, record.body.detail, store, publisher, clock.current().now())
    metrics.add_metric(name=f"SesEvent_{outcome}", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(SesRecord, record_handler)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
