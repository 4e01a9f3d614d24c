"""Web events from the bus, applied to their leads in one pass: profile, timeline and score.

Each event is applied exactly once per message; what changed (stage moves, MQLs, and activity
that programs can react to) goes back on the bus.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.queue import QueueDelivery
from kindling.adapters.score_store import DynamoScoreStore
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ProfilesSettings
from kindling.leads.profiles import ProfileService
from kindling.scoring.config import ScoringConfig
from kindling.scoring.service import ScoringService
from kindling.tracking.segment import WebEvent


class WebEventEnvelope(BusEnvelope):
    detail: WebEvent  # type: ignore[assignment]


class WebEventRecord(SqsRecordModel):
    body: Json[WebEventEnvelope]


settings = ProfilesSettings()
scoring_config = ConfigCache(DynamoConfigStore(settings.table_name), "scoring", ScoringConfig)
service = ProfileService(
    DynamoLeadStore(settings.table_name),
    EventBridgePublisher(settings.bus_name),
    scorer=ScoringService(DynamoScoreStore(settings.table_name), scoring_config),
    activity=QueueDelivery(settings.programs_queue_url),
)


def record_handler(record: WebEventRecord) -> None:
    outcome = service.record(record.body.detail, now=clock.current().now())
    if outcome.duplicate:
        metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
    if outcome.created:
        metrics.add_metric(name="LeadsCreated", unit=MetricUnit.Count, value=1)
    if outcome.scored:
        metrics.add_metric(name="ScoreChanges", unit=MetricUnit.Count, value=1)
    if outcome.stage == "mql":
        metrics.add_metric(name="MarketingQualifiedLeads", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(WebEventRecord, record_handler, config=(scoring_config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
