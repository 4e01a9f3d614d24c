"""The one skeleton every SQS consumer uses: parse each record, refresh config, report failures.

Powertools' ``BatchProcessor`` reports partial batch failures to SQS, but logs a failed
record only at debug level: a poison record would retry its way into the dead-letter queue
without a trace. ``SqsConsumer`` logs each failure with the record's ids and the error (never
the record's content, which holds personal data) and counts it as a metric, before the
record goes back to the queue. It also refreshes the config caches the function declares,
once per batch, so no handler can forget one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import ValidationError

from kindling.kernel.observability import logger, metrics

R = TypeVar("R", bound=SqsRecordModel)

#: How much of an error message goes into the log line.
MAX_ERROR_LENGTH = 500


class Refreshable(Protocol):
    """A config cache: re-reads the version in force (cheaply, when the pointer has not moved)."""

    def refresh(self) -> None: ...


def describe_error(error: BaseException) -> str:
    """The error without the input that caused it: only messages known not to quote it are kept.

    pydantic's messages quote offending values (and custom validators may too): a validation
    error is told by the field and the kind of problem. Our own domain errors name problems, not
    values; an AWS error by its code. Anything else by its type alone.
    """
    from kindling.kernel.errors import KindlingError

    if isinstance(error, ValidationError):
        where = "; ".join(f"{_field(e['loc'])}: {e['type']}" for e in error.errors())
        return f"ValidationError: {where}"[:MAX_ERROR_LENGTH]
    if isinstance(error, KindlingError):
        return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code")
    if code:
        return f"{type(error).__name__}: {code}"[:MAX_ERROR_LENGTH]
    return type(error).__name__


def _field(location: tuple[Any, ...]) -> str:
    """A validation error's place up to the first part a sender chose (a key of free-form data)."""
    parts = []
    for part in location:
        if isinstance(part, str) and part.isidentifier() and len(part) <= 40:
            parts.append(part)
        elif isinstance(part, int):
            parts.append(str(part))
        else:
            break
    return ".".join(parts) or "(record)"


def _event_id(record: Any) -> str | None:
    """The bus event's id (or its detail's ``event_id``) when the body parsed that far."""
    body = getattr(record, "body", None)
    for candidate in (getattr(body, "id", None), getattr(getattr(body, "detail", None), "event_id", None)):
        if isinstance(candidate, str):
            return candidate
    detail = getattr(body, "detail", None)
    if isinstance(detail, dict) and isinstance(detail.get("event_id"), str):
        return str(detail["event_id"])
    return None


class LoggedBatchProcessor(BatchProcessor):
    """``BatchProcessor`` whose failures are logged at error level and counted."""

    def failure_handler(self, record: Any, exception: Any) -> Any:
        error = exception[1]
        logger.error(
            "record failed; it returns to the queue and reaches the dead-letter queue after its last try",
            extra={
                "message_id": _first_attribute(record, "message_id", "messageId"),
                "event_id": _event_id(record),
                "receive_count": _receive_count(record),
                "error": describe_error(error) if isinstance(error, BaseException) else str(error),
            },
        )
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        return super().failure_handler(record, exception)


def _first_attribute(value: Any, *names: str) -> Any:
    """The first of ``names`` that ``value`` has (record models and data classes spell them apart)."""
    return next((getattr(value, name) for name in names if getattr(value, name, None) is not None), None)


def _receive_count(record: Any) -> str | None:
    attributes = getattr(record, "attributes", None)
    count = _first_attribute(attributes, "approximate_receive_count", "ApproximateReceiveCount")
    if count is None and isinstance(attributes, dict):
        count = attributes.get("ApproximateReceiveCount")
    return None if count is None else str(count)


class SqsConsumer(Generic[R]):
    """An SQS event source: each record parsed as ``model`` and given to ``handle``.

    ``config`` lists the caches to refresh before each batch (the version in force, read
    once for the whole batch).
    """

    def __init__(
        self, model: type[R], handle: Callable[[R], None], config: Sequence[Refreshable] = ()
    ) -> None:
        self.handle = handle
        self.config = tuple(config)
        self.processor = LoggedBatchProcessor(event_type=EventType.SQS, model=model)

    def process(self, event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
        for cache in self.config:
            cache.refresh()
        return process_partial_response(
            event=event, record_handler=self._handle, processor=self.processor, context=context
        )

    def _handle(self, record: R) -> None:
        self.handle(record)
