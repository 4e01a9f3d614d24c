"""Lead activity from the bus is scored exactly once; score, stage and MQL changes go back on the bus."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.score_store import DynamoScoreStore
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import ScoringSettings
from kindling.scoring.config import ScoringConfig
from kindling.scoring.service import LeadActivity, ScoringService


class ActivityEnvelope(BusEnvelope):
    detail: LeadActivity  # type: ignore[assignment]


class ActivityRecord(SqsRecordModel):
    body: Json[ActivityEnvelope]


settings = ScoringSettings()
config = ConfigCache(DynamoConfigStore(settings.table_name), "scoring", ScoringConfig)
service = ScoringService(
    DynamoScoreStore(settings.table_name), config, EventBridgePublisher(settings.bus_name)
)


def record_handler(record: ActivityRecord) -> None:
    write = service.score(record.body.detail, now=clock.current().now())
    if write is not None:
        metrics.add_metric(name="ScoreChanges", unit=MetricUnit.Count, value=1)
        if write.result.stage_move is not None and write.result.stage_move.to_stage == "mql":
            metrics.add_metric(name="MarketingQualifiedLeads", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(ActivityRecord, record_handler, config=(config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
