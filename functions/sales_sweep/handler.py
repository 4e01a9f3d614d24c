"""Daily: leads silent too long in a sales stage are reactivated; closed-lost leads are recycled."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling import clock
from kindling.adapters.config_store import CrmPolicy, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.queue import SqsQueue
from kindling.adapters.sales_store import DynamoSalesStore
from kindling.observability import logger, metrics
from kindling.program_service import ProgramService
from kindling.sales import SalesService
from kindling.settings import SalesSettings

settings = SalesSettings()  # type: ignore[call-arg]
policy = CrmPolicy(settings.table_name)
programs_config = ProgramsConfig(settings.table_name)
publisher = EventBridgePublisher(settings.bus_name)
service = SalesService(
    DynamoSalesStore(settings.table_name),
    policy,
    ProgramService(
        DynamoProgramStore(settings.table_name, decay=programs_config.decay),
        programs_config,
        SqsQueue(settings.send_queue_url),
        publisher,
    ),
    DynamoDueStore(settings.table_name, lane="daily"),
    publisher,
)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    policy.refresh()
    programs_config.refresh()
    checked = service.sweep(clock.current().now())
    metrics.add_metric(name="SalesChecksDue", unit=MetricUnit.Count, value=checked)
    return {"checked": checked}
