"""Every minute: hand the work that has fallen due to its queue (deferred sends, program steps)."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.queue import SqsQueue
from kindling.kernel import clock
from kindling.kernel.errors import InvalidInput
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import DueWorkSettings
from kindling.programs.due import DueItem, release_due

settings = DueWorkSettings()
store = DynamoDueStore(settings.table_name)
queues = {
    "send": SqsQueue(settings.send_queue_url),
    "step": SqsQueue(settings.step_queue_url),
    "segments": SqsQueue(settings.programs_queue_url),
}


def dispatch(items: list[DueItem]) -> None:
    for kind in {item.kind for item in items}:
        if kind not in queues:
            raise InvalidInput(f"no queue for due work of kind {kind!r}")
        queues[kind].send_all([item.payload for item in items if item.kind == kind])


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    released = release_due(store, dispatch, clock.current().now())
    metrics.add_metric(name="DueWorkReleased", unit=MetricUnit.Count, value=released)
    return {"released": released}
