"""New MQLs from the bus are posted to sales as signed webhooks; failures retry, then dead-letter."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.score_store import DynamoHandoffLog
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.adapters.webhook_transport import UrllibTransport
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import HandoffSettings
from kindling.scoring.handoff import hand_off
from kindling.webhooks.standard import WebhookSecret


class MqlRecord(SqsRecordModel):
    body: Json[BusEnvelope]


settings = HandoffSettings()
handoff_secret = SecretsManagerSecret(settings.handoff_secret_arn)
transport = UrllibTransport()
log = DynamoHandoffLog(settings.table_name)


def record_handler(record: MqlRecord) -> None:
    mql: dict[str, Any] = record.body.detail
    status = hand_off(
        mql,
        kind=record.body.detail_type,
        url=settings.handoff_url,
        secret=WebhookSecret(handoff_secret.value()),
        transport=transport,
        log=log,
        now=clock.current().now(),
    )
    if status is None:
        logger.warning("receiver answered 410 Gone; hand-off dropped", extra={"event_id": mql["event_id"]})
    else:
        metrics.add_metric(name="HandoffsDelivered", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(MqlRecord, record_handler)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
