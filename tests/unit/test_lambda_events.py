"""The events and context ``kindling_ops.lambda_events`` builds are the ones AWS sends.

Each shape is parsed by Powertools' own models, the ones its event handlers and batch
processor trust, so a builder that drifts from AWS's documented payload fails here first.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime

from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    EventBridgeModel,
    SqsModel,
)
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from kindling_ops.lambda_events import (
    LambdaContext,
    http_event,
    scheduled_event,
    sqs_event,
    sqs_record,
    sqs_record_of,
)
from kindling_ops.local.gateway import Route, to_event

AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def parsed(event: dict) -> APIGatewayProxyEventV2Model:
    return APIGatewayProxyEventV2Model.model_validate(event)


# --- API Gateway HTTP API (payload 2.0) ---------------------------------------------------------------
def test_a_binary_body_travels_base64_encoded() -> None:
    raw = gzip.compress(b'{"batch": []}')
    event = http_event(
        "POST", "/v1/b", body=raw, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    )
    model = parsed(event)
    assert model.isBase64Encoded is True
    assert isinstance(model.body, str) and base64.b64decode(model.body) == raw
    assert model.headers == {"content-encoding": "gzip", "content-type": "text/plain"}


def test_a_dict_body_travels_as_json_text() -> None:
    model = parsed(http_event("POST", "/v1/track", body={"userId": "u1", "event": "Demo Requested"}))
    assert model.isBase64Encoded is False
    assert isinstance(model.body, str) and json.loads(model.body) == {
        "userId": "u1",
        "event": "Demo Requested",
    }


def test_with_no_body_the_event_has_none() -> None:
    event = http_event("GET", "/v1/leads")
    model = parsed(event)
    assert "body" not in event and model.body is None and model.isBase64Encoded is False
    assert model.queryStringParameters is None and model.pathParameters is None and model.cookies is None
    assert model.rawQueryString == ""


def test_the_query_is_in_both_forms_and_a_repeated_name_is_joined_by_commas() -> None:
    model = parsed(http_event("GET", "/v1/pixel.gif", query={"writeKey": "wk", "tag": ["a", "b"]}))
    assert model.queryStringParameters == {"writeKey": "wk", "tag": "a,b"}
    assert model.rawQueryString == "writeKey=wk&tag=a&tag=b"
    as_sent = parsed(http_event("GET", "/v1/x", query={"tag": "a:b"}, raw_query="tag=a%3Ab"))
    assert (as_sent.rawQueryString, as_sent.queryStringParameters) == ("tag=a%3Ab", {"tag": "a:b"})


def test_path_parameters_come_with_the_route_they_matched() -> None:
    model = parsed(
        http_event("GET", "/v1/leads/ld_1", path_parameters={"lead_id": "ld_1"}, route="/v1/leads/{lead_id}")
    )
    assert model.pathParameters == {"lead_id": "ld_1"}
    assert model.routeKey == model.requestContext.routeKey == "GET /v1/leads/{lead_id}"
    assert (model.rawPath, model.requestContext.http.path) == ("/v1/leads/ld_1", "/v1/leads/ld_1")


def test_the_request_context_names_the_caller_the_api_and_the_time() -> None:
    model = parsed(
        http_event(
            "POST",
            "/v1/t",
            headers=[("User-Agent", "Mozilla/5.0"), ("Accept", "a"), ("accept", "b"), ("Cookie", "x=1; y=2")],
            api_id="abc123",
            source_ip="198.51.100.4",
            request_id="req-1",
            at=AT,
        )
    )
    context = model.requestContext
    assert (context.apiId, context.domainName) == ("abc123", "abc123.execute-api.us-east-1.amazonaws.com")
    assert (context.domainPrefix, context.stage, context.requestId) == ("abc123", "$default", "req-1")
    assert str(context.http.sourceIp) == "198.51.100.4/32" and context.http.userAgent == "Mozilla/5.0"
    assert (context.time, context.timeEpoch) == ("25/Nov/2026:09:30:00 +0000", AT)
    assert model.headers == {"user-agent": "Mozilla/5.0", "accept": "a,b"}
    assert model.cookies == ["x=1", "y=2"]


def test_the_local_gateway_turns_a_request_into_the_same_event() -> None:
    raw = b"\x1f\x8b not text \xff"
    builder = EnvironBuilder(
        path="/v1/leads/ld_9",
        method="POST",
        query_string="tag=a&tag=b&q=x%20y",
        headers=[("Content-Encoding", "gzip"), ("Cookie", "sid=1")],
        data=raw,
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    event = to_event(Request(builder.get_environ()), Route("ANY", "/v1/leads/{id}", "Leads"), {"id": "ld_9"})
    model = parsed(event)
    assert model.routeKey == "ANY /v1/leads/{id}" and model.requestContext.http.method == "POST"
    assert model.rawQueryString == "tag=a&tag=b&q=x%20y"
    assert model.queryStringParameters == {"tag": "a,b", "q": "x y"}
    assert model.pathParameters == {"id": "ld_9"} and model.cookies == ["sid=1"]
    assert model.headers["content-encoding"] == "gzip" and "cookie" not in model.headers
    assert (
        model.isBase64Encoded is True and isinstance(model.body, str) and base64.b64decode(model.body) == raw
    )
    assert str(model.requestContext.http.sourceIp) == "192.0.2.1/32"


def test_the_local_gateway_sends_text_as_text_and_no_body_as_none() -> None:
    route = Route("POST", "/v1/track", "Capture")
    text = EnvironBuilder(path="/v1/track", method="POST", data='{"event": "é"}')
    model = parsed(to_event(Request(text.get_environ()), route, {}))
    assert (model.body, model.isBase64Encoded) == ('{"event": "é"}', False)
    empty = parsed(
        to_event(Request(EnvironBuilder(path="/v1/track", method="POST").get_environ()), route, {})
    )
    assert (empty.body, empty.isBase64Encoded, empty.queryStringParameters) == (None, False, None)


# --- SQS ----------------------------------------------------------------------------------------------
def test_a_batch_of_records_parses_as_an_sqs_event() -> None:
    bodies = [json.dumps({"n": n}) for n in range(3)]
    event = sqs_event(
        sqs_record(body, str(n), queue_arn="arn:aws:sqs:us-east-1:123456789012:work")
        for n, body in enumerate(bodies)
    )
    model = SqsModel.model_validate(event)
    assert [r.messageId for r in model.Records] == ["0", "1", "2"]
    assert [r.body for r in model.Records] == bodies
    for record in model.Records:
        assert record.eventSource == "aws:sqs" and record.awsRegion == "us-east-1"
        assert record.eventSourceARN == "arn:aws:sqs:us-east-1:123456789012:work"
        assert record.md5OfBody == hashlib.md5(str(record.body).encode()).hexdigest()
        assert record.attributes.ApproximateReceiveCount == "1"
        assert record.attributes.SenderId and record.receiptHandle
        assert record.attributes.SentTimestamp <= record.attributes.ApproximateFirstReceiveTimestamp


def test_a_redelivered_record_with_message_attributes() -> None:
    record = sqs_record(
        {"detail": {}},
        receive_count=3,
        message_attributes={
            "kind": {"DataType": "String", "StringValue": "page"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    [parsed_record] = SqsModel.model_validate(sqs_event([record])).Records
    assert parsed_record.attributes.ApproximateReceiveCount == "3"
    assert json.loads(str(parsed_record.body)) == {"detail": {}}
    assert parsed_record.messageAttributes["kind"].stringValue == "page"
    assert parsed_record.messageAttributes["blob"].binaryValue == base64.b64encode(b"\x00\x01").decode()
    assert parsed_record.messageAttributes["blob"].dataType == "Binary"


def test_a_record_from_what_receive_message_returned() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "AQEB-handle",
        "MD5OfBody": "0" * 32,
        "Body": '{"n": 1}',
        "Attributes": {
            "SenderId": "AIDAEVENTBRIDGE",
            "SentTimestamp": "1795599000000",
            "ApproximateReceiveCount": "2",
            "ApproximateFirstReceiveTimestamp": "1795599000100",
        },
        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "x"}},
    }
    arn = "arn:aws:sqs:us-east-1:123456789012:q"
    [record] = SqsModel.model_validate(sqs_event([sqs_record_of(message, arn)])).Records
    assert (record.messageId, record.receiptHandle, record.body) == ("m-1", "AQEB-handle", '{"n": 1}')
    assert (record.md5OfBody, record.eventSourceARN) == ("0" * 32, arn)
    assert (
        record.attributes.ApproximateReceiveCount == "2" and record.attributes.SenderId == "AIDAEVENTBRIDGE"
    )
    assert record.attributes.SentTimestamp == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert record.messageAttributes["kind"].stringValue == "x"
    again = sqs_record_of(message, arn, receive_count=5)
    assert again["attributes"]["ApproximateReceiveCount"] == "5"


# --- schedules ----------------------------------------------------------------------------------------
def test_an_eventbridge_scheduler_firing_parses_as_an_eventbridge_event() -> None:
    model = EventBridgeModel.model_validate(scheduled_event("kindling-DueWork-EveryMinute", AT))
    assert (model.source, model.detail_type, model.detail) == ("aws.scheduler", "Scheduled Event", {})
    assert model.time == AT and model.region == "us-east-1" and model.account == "123456789012"
    assert model.resources == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/kindling-DueWork-EveryMinute"
    ]


def test_a_scheduled_rule_firing_parses_as_an_eventbridge_event() -> None:
    event = scheduled_event("nightly", AT, rule=True, event_id="e-1")
    model = EventBridgeModel.model_validate(event)
    assert (model.source, model.id, model.detail) == ("aws.events", "e-1", {})
    assert model.resources == ["arn:aws:events:us-east-1:123456789012:rule/nightly"]
    assert event["time"] == "2026-11-25T09:30:00Z"


# --- the context --------------------------------------------------------------------------------------
def test_the_context_has_what_powertools_reads_and_a_deadline() -> None:
    context = LambdaContext("kindling-capture", timeout_seconds=3)
    model = build_lambda_context_model(context)
    assert model.function_name == "kindling-capture" and model.function_memory_size == 512
    assert model.function_arn == "arn:aws:lambda:us-east-1:123456789012:function:kindling-capture"
    assert model.function_request_id == context.aws_request_id and context.aws_request_id
    assert context.log_group_name == "/aws/lambda/kindling-capture"
    assert "[$LATEST]" in context.log_stream_name and context.function_version == "$LATEST"
    assert 0 < context.get_remaining_time_in_millis() <= 3000
    assert LambdaContext().aws_request_id != LambdaContext().aws_request_id
