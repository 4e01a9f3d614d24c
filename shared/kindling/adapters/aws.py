"""boto3 clients, created lazily and once per process.

Lazily, so that a function pays at cold start only for the clients it uses; once, so
that connections are reused across invocations. ``reset()`` lets tests and the local
stack point new clients at another endpoint.
"""

from __future__ import annotations

import functools
from typing import Any

from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@functools.cache
def client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service, config=_CONFIG)


class TableAdapter:
    """Base of the single-table adapters: the table's name, and a client made on first use.

    ``client`` may be given (tests, the operator tool); otherwise the process's shared client
    is used, so a function pays for it only when it first calls DynamoDB.
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        self._table = table_name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or client("dynamodb")


def reset() -> None:
    client.cache_clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)

#: Why DynamoDB cancels a transaction item when it is worth trying the same write again later.
RETRY_REASONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict", "RequestLimitExceeded"}
)


def cancellation_reasons(exc: BaseException) -> list[str]:
    """Per item of a cancelled transaction, why (``None`` for items that were fine)."""
    response = getattr(exc, "response", None) or {}
    return [str(reason.get("Code") or "None") for reason in response.get("CancellationReasons", [])]


def translate(exc: BaseException, what: str) -> BaseException:
    """The one mapping of AWS errors onto domain errors, for every adapter.

    A throttle or a transaction conflict is ``Retryable`` (the same input may succeed later);
    a condition of ours that failed is ``Conflict`` (re-read and decide again); anything
    else is returned as it is, to propagate. ``what`` says what was being done, for the log.
    """
    from kindling.kernel.errors import Conflict, Retryable

    code = error_code(exc)
    if code in THROTTLING_CODES or code == "TransactionConflictException":
        return Retryable(f"{what}: {code}")
    if code == "ConditionalCheckFailedException":
        return Conflict(f"{what}: a condition failed")
    if code == "TransactionCanceledException":
        reasons = cancellation_reasons(exc)
        if RETRY_REASONS.intersection(reasons):
            return Retryable(f"{what}: cancelled {reasons}")
        if "ConditionalCheckFailed" in reasons:
            return Conflict(f"{what}: cancelled {reasons}")
    return exc
