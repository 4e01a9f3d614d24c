"""Every ten minutes, folds the metrics log into the counters (see ``kindling.metrics.fold``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.kernel import clock
from kindling.kernel.observability import logger
from kindling.kernel.settings import MetricsSettings
from kindling.metrics.fold import fold_metrics

settings = MetricsSettings()
store = DynamoMetricsStore(settings.table_name)
window = timedelta(days=settings.attribution_window_days)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = fold_metrics(store, clock.current().now(), window)
    result = {
        "seq": summary.seq,
        "through": summary.through.isoformat() if summary.through else None,
        "events": summary.events,
        "counted": summary.counted,
        "writes": summary.writes,
    }
    logger.info("metrics folded", extra=result)
    return result
