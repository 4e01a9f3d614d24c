"""Email outcomes, engagement and stage moves are logged once each, for the fold to count (a late one
is counted at once); see ``kindling.metrics.counters``."""

from __future__ import annotations

from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import MetricsSettings
from kindling.metrics.counters import MetricsRecorder


class MetricRecord(SqsRecordModel):
    body: Json[BusEnvelope]


settings = MetricsSettings()
recorder = MetricsRecorder(
    DynamoMetricsStore(settings.table_name), timedelta(days=settings.attribution_window_days)
)


def record_handler(record: MetricRecord) -> None:
    envelope = record.body
    outcome = recorder.record(
        envelope.source, envelope.detail_type, envelope.detail, envelope.time, clock.current().now()
    )
    if outcome == "duplicate":
        metrics.add_metric(name="MetricEventDuplicates", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(MetricRecord, record_handler)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
