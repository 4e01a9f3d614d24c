"""CRM events from the bus (crm.*): stage moves, owners, activity, and the quiet periods they cause."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.wiring import sales_service
from kindling.crm.sales import LOOKUP_UNAVAILABLE
from kindling.kernel import clock
from kindling.kernel.bus import BusEnvelope
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import CrmEventsSettings


class CrmRecord(SqsRecordModel):
    body: Json[BusEnvelope]


settings = CrmEventsSettings()
service, policy, programs_config = sales_service(
    settings.table_name,
    settings.bus_name,
    settings.send_queue_url,
    settings.crm_secrets_arn,
    settings.hubspot_api_url,
)


def record_handler(record: CrmRecord) -> None:
    detail: dict[str, Any] = record.body.detail
    done = service.on_crm_event(record.body.detail_type, detail, clock.current().now())
    if done and done[0].startswith(LOOKUP_UNAVAILABLE):
        logger.warning("CRM look-up unavailable", extra={"event_id": detail.get("event_id"), "why": done[0]})
        metrics.add_metric(name="CrmLookupsUnavailable", unit=MetricUnit.Count, value=1)
        done = done[1:]
    if done and done[0].startswith("unmatched"):
        logger.warning("CRM event for no known lead", extra={"event_id": detail.get("event_id")})
        metrics.add_metric(name="CrmEventsUnmatched", unit=MetricUnit.Count, value=1)


consumer = SqsConsumer(CrmRecord, record_handler, config=(policy, programs_config))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
