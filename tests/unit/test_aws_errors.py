"""AWS errors become domain errors in one place, the same way for every adapter."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.kernel.errors import Conflict, Retryable


def client_error(code: str, reasons: list[str | None] | None = None) -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": "..."}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} if r else {"Code": "None"} for r in reasons]
    return ClientError(response, "TransactWriteItems")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("ThrottlingException"), Retryable),
        (client_error("ProvisionedThroughputExceededException"), Retryable),
        (client_error("TransactionConflictException"), Retryable),
        (client_error("TransactionCanceledException", [None, "ThrottlingError"]), Retryable),
        (
            client_error("TransactionCanceledException", ["ConditionalCheckFailed", "TransactionConflict"]),
            Retryable,
        ),
        (client_error("ConditionalCheckFailedException"), Conflict),
        (client_error("TransactionCanceledException", [None, "ConditionalCheckFailed"]), Conflict),
    ],
)
def test_throttles_and_transaction_conflicts_are_retryable_and_failed_conditions_conflicts(
    error: ClientError, expected: type
) -> None:
    translated = aws.translate(error, "writing a lead")
    assert type(translated) is expected
    assert str(translated).startswith("writing a lead: ")


def test_any_other_error_propagates_as_it_is() -> None:
    error = client_error("ValidationException")
    assert aws.translate(error, "writing a lead") is error
