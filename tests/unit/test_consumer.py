"""The SQS consumer skeleton: failed records go back to the queue, logged and counted, content unlogged."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, Json

from kindling.kernel.consumer import SqsConsumer, describe_error
from kindling_ops.lambda_events import LambdaContext, sqs_event, sqs_record


class Order(BaseModel):
    email: str
    quantity: int


class OrderRecord(SqsRecordModel):
    body: Json[Order]


class CountingCache:
    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1


def test_failed_and_unparseable_records_are_reported_logged_with_their_ids_and_never_their_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[str] = []

    def handle(record: OrderRecord) -> None:
        if record.body.quantity < 0:
            raise ValueError("negative quantity")
        handled.append(record.body.email)

    cache = CountingCache()
    consumer = SqsConsumer(OrderRecord, handle, config=[cache])
    event = sqs_event(
        [
            sqs_record({"email": "ok@acme.io", "quantity": 1}, "m-ok"),
            sqs_record({"email": "neg@acme.io", "quantity": -1}, "m-fails", receive_count=3),
            sqs_record({"email": "secret@acme.io", "quantity": "many"}, "m-poison"),
        ]
    )
    response = consumer.process(event, LambdaContext())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m-fails", "m-poison"]
    assert handled == ["ok@acme.io"] and cache.refreshed == 1
    logged = [{**vars(r), "message": r.getMessage()} for r in caplog.records]
    failures = {entry["message_id"]: entry for entry in logged if entry["levelname"] == "ERROR"}
    assert set(failures) == {"m-fails", "m-poison"}
    assert failures["m-fails"]["error"] == "ValueError", "a message that may quote the record is not logged"
    assert failures["m-fails"]["receive_count"] == "3"
    assert (
        "ValidationError" in failures["m-poison"]["error"] and "int_parsing" in failures["m-poison"]["error"]
    )
    text = json.dumps(logged, default=str)
    assert "secret@acme.io" not in text and "many" not in text


def test_a_validation_error_is_described_by_place_and_kind_only() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as error:
        Order.model_validate({"email": "x@y.z", "quantity": "lots"})
    assert describe_error(error.value) == "ValidationError: quantity: int_parsing"


def test_domain_errors_keep_their_message_and_aws_errors_their_code() -> None:
    from botocore.exceptions import ClientError

    from kindling.kernel.errors import Retryable

    assert (
        describe_error(Retryable("the queue refused 2 message(s)"))
        == "Retryable: the queue refused 2 message(s)"
    )
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "a@b.c"}}, "PutItem")
    assert describe_error(throttled) == "ClientError: ThrottlingException"
    assert describe_error(KeyError("ada@acme.io")) == "KeyError"
