"""The capacity meter inside the embedded AWS: real requests, units filed by function, operation and kind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from kindling_ops.layer import lambda_path
from kindling_ops.local.aws import EmbeddedAws
from kindling_ops.local.meter import FUNCTION_HEADER, Meter
from kindling_ops.local.runtime import LocalRuntime
from kindling_ops.local.template import FunctionSpec

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]


def S(value: str) -> dict[str, str]:
    return {"S": value}


@pytest.fixture
def metered() -> Iterator[tuple[str, Meter]]:
    meter = Meter()
    server = EmbeddedAws(meter=meter).start()
    yield server.endpoint, meter
    server.stop()


def client(endpoint: str, service: str, function: str | None = None) -> Any:
    """A client of the metered AWS; with ``function``, every request names it as a worker's would."""
    made = boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if function:

        def add_header(request: Any, **kwargs: Any) -> None:
            request.headers[FUNCTION_HEADER] = function

        made.meta.events.register("before-send", add_header)
    return made


def units(snapshot: dict[str, Any], caller: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(operation, kind) -> (WU, RU) of one caller."""
    return {
        (row["operation"], row["kind"]): (row["wcu"], row["rcu"])
        for row in snapshot["capacity"]
        if row["caller"] == caller
    }


def calls(snapshot: dict[str, Any], caller: str) -> dict[tuple[str, str], dict[str, int]]:
    return {
        (row["service"], row["operation"]): {k: row[k] for k in ("count", "entries", "billed")}
        for row in snapshot["requests"]
        if row["caller"] == caller
    }


def test_units_are_filed_by_function_operation_and_item_kind(metered: tuple[str, Meter]) -> None:
    endpoint, meter = metered
    table = f"meter-{uuid.uuid4().hex[:8]}"
    client(endpoint, "dynamodb").create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GSI1PK", "GSI1SK")
        ],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "GSI1",
                "KeySchema": [
                    {"AttributeName": "GSI1PK", "KeyType": "HASH"},
                    {"AttributeName": "GSI1SK", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]},
            }
        ],
    )
    meter.reset()
    profiles = client(endpoint, "dynamodb", "ProfilesFunction")
    due_work = client(endpoint, "dynamodb", "DueWorkFunction")
    profile = {"PK": S("LEAD#ld_1"), "SK": S("PROFILE"), "email": S("ada@example.com")}  # 40 bytes
    due_key = {"PK": S("DUE#d1"), "SK": S("DUE")}
    # 1,586 bytes; its GSI1 entry (keys and status) 79 bytes
    due_item = {
        **due_key,
        "GSI1PK": S("HOUR#2026-03-02T08"),
        "GSI1SK": S("2026-03-02T08:15:00Z#d1"),
        "status": S("waiting"),
        "payload": S("x" * 1500),
    }

    profiles.put_item(TableName=table, Item=profile)  # 1 WU
    with pytest.raises(ClientError):  # refused, still 1 WU
        profiles.put_item(TableName=table, Item=profile, ConditionExpression="attribute_not_exists(PK)")
    profiles.get_item(TableName=table, Key={"PK": profile["PK"], "SK": profile["SK"]})  # 0.5 RU
    profiles.get_item(
        TableName=table, Key={"PK": S("LEAD#ld_9"), "SK": S("PROFILE")}, ConsistentRead=True
    )  # 1
    profiles.query(  # 40 bytes read whatever the projection: 1 RU, consistent
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": S("LEAD#ld_1")},
        ProjectionExpression="email",
        ConsistentRead=True,
    )
    profiles.transact_write_items(  # a check of the profile and a new 40-byte profile: 2 + 2 WU
        TransactItems=[
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": {"PK": profile["PK"], "SK": profile["SK"]},
                    "ConditionExpression": "attribute_exists(PK)",
                }
            },
            {"Put": {"TableName": table, "Item": {**profile, "PK": S("LEAD#ld_2")}}},
        ]
    )
    with pytest.raises(ClientError):  # cancelled: each item still 2 WU
        profiles.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**profile, "PK": S("LEAD#ld_3")}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"PK": profile["PK"], "SK": profile["SK"]},
                        "UpdateExpression": "SET title = :t",
                        "ConditionExpression": "attribute_not_exists(PK)",
                        "ExpressionAttributeValues": {":t": S("CMO")},
                    }
                },
            ]
        )

    due_work.put_item(TableName=table, Item=due_item)  # 2 WU, enters GSI1: 1
    due_work.update_item(  # 2 WU (1,583 bytes); status is projected: 1 index write
        TableName=table,
        Key=due_key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": S("done")},
    )
    due_work.update_item(  # 2 WU (1,583 bytes); the payload is not projected: no index write
        TableName=table,
        Key=due_key,
        UpdateExpression="SET payload = :p",
        ExpressionAttributeValues={":p": S("y" * 1500)},
    )
    due_work.update_item(  # another hour: 2 WU, a delete and a put in GSI1: 2
        TableName=table,
        Key=due_key,
        UpdateExpression="SET GSI1PK = :h",
        ExpressionAttributeValues={":h": S("HOUR#2026-03-02T09")},
    )
    due_work.query(  # one 76-byte entry read, eventually consistent: 0.5 RU
        TableName=table,
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :h",
        ExpressionAttributeValues={":h": S("HOUR#2026-03-02T09")},
    )
    due_work.query(  # nothing in that hour: still 0.5 RU
        TableName=table,
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :h",
        ExpressionAttributeValues={":h": S("HOUR#2026-03-02T10")},
    )
    due_work.delete_item(TableName=table, Key=due_key)  # 2 WU, leaves GSI1: 1
    client(endpoint, "dynamodb").get_item(TableName=table, Key=due_key)  # the stack's own: 0.5 RU

    snapshot = meter.snapshot()
    assert snapshot["errors"] == []
    assert units(snapshot, "ProfilesFunction") == {
        ("PutItem", "LEAD/PROFILE"): (2, 0),
        ("GetItem", "LEAD/PROFILE"): (0, 1.5),
        ("Query", "LEAD/PROFILE"): (0, 1.0),
        ("TransactWriteItems", "LEAD/PROFILE"): (4 + 4, 0),
    }
    assert units(snapshot, "DueWorkFunction") == {
        ("PutItem", "DUE"): (2, 0),
        ("PutItem", "DUE+GSI1"): (1, 0),
        ("UpdateItem", "DUE"): (2 + 2 + 2, 0),
        ("UpdateItem", "DUE+GSI1"): (1 + 2, 0),
        ("Query", "DUE+GSI1"): (0, 0.5),
        ("Query", "(none)+GSI1"): (0, 0.5),
        ("DeleteItem", "DUE"): (2, 0),
        ("DeleteItem", "DUE+GSI1"): (1, 0),
    }
    assert units(snapshot, "stack") == {("GetItem", "DUE"): (0, 0.5)}
    assert calls(snapshot, "ProfilesFunction")[("dynamodb", "PutItem")]["count"] == 2
    assert calls(snapshot, "ProfilesFunction")[("dynamodb", "TransactWriteItems")]["count"] == 2


def test_other_services_are_counted_with_their_entries_and_billed_chunks(metered: tuple[str, Meter]) -> None:
    endpoint, meter = metered
    admin_sqs, admin_events = client(endpoint, "sqs"), client(endpoint, "events")
    url = admin_sqs.create_queue(QueueName=f"meter-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    # EventBridge delivers each event to a queue (an SQS request in AWS) and to a local bridge (none)
    delivered, bridge = f"meter-bus-{uuid.uuid4().hex[:8]}", f"meter-bridge-{uuid.uuid4().hex[:8]}"
    source = f"meter.{uuid.uuid4().hex[:8]}"
    for name in (delivered, bridge):
        queue = admin_sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = admin_sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        admin_events.put_rule(Name=name, EventPattern=json.dumps({"source": [source]}))
        admin_events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    meter.not_billed_queues.add(bridge)
    meter.reset()
    sqs = client(endpoint, "sqs", "DueWorkFunction")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 30_000} for i in range(3)]
    )  # 90,000 bytes: 2 chunks of 64 KB
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    events = client(endpoint, "events", "ProfilesFunction")
    events.put_events(
        Entries=[
            {"Source": source, "DetailType": "lead.activity", "Detail": "{}"},
            {
                "Source": source,
                "DetailType": "lead.activity",
                "Detail": '{"x": "' + "y" * 70_000 + '"}',
            },
        ]
    )
    meter.add_invocation("ProfilesFunction", 12.5)
    meter.add_batch("ProfilesFunction", messages=3)

    snapshot = meter.snapshot()
    due_work = calls(snapshot, "DueWorkFunction")
    assert due_work[("sqs", "SendMessageBatch")] == {"count": 1, "entries": 3, "billed": 2}
    assert due_work[("sqs", "SendMessage")] == {"count": 1, "entries": 1, "billed": 1}
    assert calls(snapshot, "ProfilesFunction")[("events", "PutEvents")] == {
        "count": 1,
        "entries": 2,
        "billed": 3,
    }
    assert snapshot["invocations"]["ProfilesFunction"] == {
        "count": 1,
        "duration_ms": 12.5,
        "failed": 0,
        "batches": 1,
        "messages": 3,
    }
    assert snapshot["eventbridge_to_sqs"] == {delivered: 2, bridge: 2}
    # a receive and a batch delete for the batch, 2 events sent by EventBridge, the function's own 2 + 1
    assert snapshot["sqs_billed"] == {
        "event_source_receive": 1,
        "event_source_delete_batch": 1,
        "eventbridge_send": 2,
        "functions": {"SendMessage": 1, "SendMessageBatch": 2},
        "total": 1 + 1 + 2 + 2 + 1,
    }
    meter.reset()
    assert meter.snapshot()["requests"] == []


PROBE = """
import boto3


def handler(event, context):
    boto3.client("dynamodb").get_item(
        TableName=event["table"], Key={"PK": {"S": "LEAD#x"}, "SK": {"S": "PROFILE"}}, ConsistentRead=True
    )
    return {"ok": True}
"""


def test_a_metered_worker_names_its_function_on_every_aws_request(
    metered: tuple[str, Meter], tmp_path: Path
) -> None:
    endpoint, meter = metered
    table = f"meter-{uuid.uuid4().hex[:8]}"
    client(endpoint, "dynamodb").create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    )
    code = tmp_path / "probe"
    code.mkdir()
    (code / "app.py").write_text(PROBE)
    spec = FunctionSpec("ProbeFunction", "stack-probe", code, code / "app.py", "handler", {}, 10, {})
    environment = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    runtime = LocalRuntime([spec], environment, lambda_path(ROOT / ".pytest_cache" / "lambda"), meter)
    runtime.start()
    try:
        meter.reset()
        assert runtime.invoke("ProbeFunction", {"table": table}) == {"ok": True}
        assert runtime.invoke("ProbeFunction", {"table": table}) == {"ok": True}
    finally:
        runtime.stop()
    snapshot = meter.snapshot()
    assert units(snapshot, "ProbeFunction") == {("GetItem", "LEAD/PROFILE"): (0, 2.0)}  # 2 consistent misses
    assert "stack" not in {row["caller"] for row in snapshot["requests"]}
    invocations = snapshot["invocations"]["ProbeFunction"]
    assert (invocations["count"], invocations["failed"]) == (2, 0)
    assert invocations["duration_ms"] > 0


def test_an_unmetered_worker_sends_no_function_header(tmp_path: Path) -> None:
    meter = Meter()
    server = EmbeddedAws(meter=meter).start()
    try:
        table = f"meter-{uuid.uuid4().hex[:8]}"
        client(server.endpoint, "dynamodb").create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
        )
        code = tmp_path / "probe"
        code.mkdir()
        (code / "app.py").write_text(PROBE)
        spec = FunctionSpec("ProbeFunction", "stack-probe", code, code / "app.py", "handler", {}, 10, {})
        environment = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        runtime = LocalRuntime([spec], environment, lambda_path(ROOT / ".pytest_cache" / "lambda"))
        runtime.start()
        try:
            meter.reset()
            runtime.invoke("ProbeFunction", {"table": table})
        finally:
            runtime.stop()
        snapshot = meter.snapshot()
        assert {row["caller"] for row in snapshot["requests"]} == {"stack"}
        assert snapshot["invocations"] == {}  # the runtime counts invocations only when it meters
    finally:
        server.stop()


def test_the_meter_routes_exist_only_on_a_metered_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from kindling_ops.local.stack import LocalStack

    monkeypatch.delenv("KINDLING_METER", raising=False)
    assert LocalStack(ROOT / "template.yaml").meter is None, "off unless asked for"
    off = LocalStack(ROOT / "template.yaml", meter=False)._local_routes()
    assert not [path for _, path in off if path.startswith("/_local/meter")]

    monkeypatch.setenv("KINDLING_METER", "1")
    stack = LocalStack(ROOT / "template.yaml")
    assert stack.meter is not None
    routes = stack._local_routes()
    stack.meter.add_invocation("CaptureFunction", 5.0)
    snapshot = routes[("GET", "/_local/meter")](Request(EnvironBuilder(path="/_local/meter").get_environ()))
    assert snapshot.status_code == 200
    assert snapshot.json["invocations"]["CaptureFunction"]["count"] == 1
    reset = routes[("POST", "/_local/meter/reset")](
        Request(EnvironBuilder(path="/_local/meter/reset", method="POST").get_environ())
    )
    assert reset.status_code == 200
    assert stack.meter.snapshot()["invocations"] == {}
