"""Daily: leads silent too long in a sales stage are reactivated; closed-lost leads are recycled."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling.adapters.wiring import sales_service
from kindling.kernel import clock
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import SalesSettings

settings = SalesSettings()
service, policy, programs_config = sales_service(
    settings.table_name, settings.bus_name, settings.send_queue_url
)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    policy.refresh()
    programs_config.refresh()
    checked = service.sweep(clock.current().now())
    metrics.add_metric(name="SalesChecksDue", unit=MetricUnit.Count, value=checked)
    return {"checked": checked}
