"""The local stack behaves like AWS where it matters: queues, redrive, rules, schedules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import ROOT, RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fixture_stack() -> Iterator[RunningStack]:
    running = start_stack("--template", str(ROOT / "tests/fixtures/local_stack/template.yaml"))
    yield running
    assert stop_stack(running) == 0


def aws(stack: RunningStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def records(stack: RunningStack, partition: str) -> list[dict[str, Any]]:
    response = aws(stack, "dynamodb").query(
        TableName="kindling-Records",
        KeyConditionExpression="PK = :p",
        ExpressionAttributeValues={":p": {"S": partition}},
        ConsistentRead=True,
    )
    return list(response["Items"])


def test_resources_come_from_the_template_it_was_given(fixture_stack: RunningStack) -> None:
    queues = aws(fixture_stack, "sqs").list_queues()["QueueUrls"]
    assert any(q.endswith("/kindling-WorkQueue") for q in queues)
    assert any(q.endswith("/kindling-WorkDeadLetterQueue") for q in queues)


def test_bus_events_reach_the_consumer_in_sqs_batches_and_poison_goes_to_the_dlq(
    fixture_stack: RunningStack,
) -> None:
    events = aws(fixture_stack, "events")
    entries = [
        {
            "Source": "fixture.work",
            "DetailType": "job",
            "Detail": json.dumps({"n": n}),
            "EventBusName": "fixture-bus",
        }
        for n in range(4)
    ]
    entries.append(
        {
            "Source": "fixture.work",
            "DetailType": "job",
            "Detail": json.dumps({"poison": True}),
            "EventBusName": "fixture-bus",
        }
    )
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    sqs = aws(fixture_stack, "sqs")
    dlq = sqs.get_queue_url(QueueName="kindling-WorkDeadLetterQueue")["QueueUrl"]
    deadline, dead = time.monotonic() + 30, []
    while time.monotonic() < deadline and not dead:
        dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        time.sleep(0.3)
    assert len(dead) == 1 and "poison" in dead[0]["Body"]
    done = records(fixture_stack, "sqs")
    assert sorted(json.loads(r["body"]["S"])["detail"]["n"] for r in done) == [0, 1, 2, 3]
    assert all(r["source_arn"]["S"].endswith(":kindling-WorkQueue") for r in done)


def test_an_eventbridge_rule_invokes_its_function_with_the_event_itself(fixture_stack: RunningStack) -> None:
    aws(fixture_stack, "events").put_events(
        Entries=[
            {"Source": "fixture.direct", "DetailType": "ping", "Detail": "{}", "EventBusName": "fixture-bus"}
        ]
    )
    fixture_stack.settle()
    [item] = records(fixture_stack, "direct")
    assert json.loads(item["body"]["S"])["detail-type"] == "ping"


def test_moving_the_clock_fires_each_schedule_at_each_of_its_times_as_aws_would(
    fixture_stack: RunningStack,
) -> None:
    def fired() -> dict[str, int]:
        return {r["SK"]["S"]: int(r["fired"]["N"]) for r in records(fixture_stack, "ticks")}

    before = fired()
    ran = fixture_stack.advance(2 * 86400)["schedules_run"]
    # Two days hold two 03:00s: the nightly schedule runs at each. The minute tick has nothing
    # due in this fixture, so its 2,880 firings are skipped but for the steps the clock made.
    assert ran.count("TickerFunction.Nightly") == 2
    assert 1 <= ran.count("TickerFunction.EveryMinute") <= 3
    after = fired()
    assert after["nightly"] == before.get("nightly", 0) + 2
    assert fixture_stack.advance(10)["schedules_run"] in ([], ["TickerFunction.EveryMinute"])


def test_the_operator_sees_dead_letters_and_redrives_them(fixture_stack: RunningStack) -> None:
    import subprocess
    import sys

    port = fixture_stack.url.rsplit(":", 1)[1]

    def kindling(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kindling_ops.cli", "dlq", *args, "--local", "--port", port],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    sqs = aws(fixture_stack, "sqs")
    dlq = sqs.get_queue_url(QueueName="kindling-WorkDeadLetterQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"n": 99, "note": "fixed since"}))
    listed = kindling("list")
    assert listed.returncode == 0, listed.stderr
    assert "WorkDeadLetterQueue: " in listed.stdout and "fixed since" in listed.stdout
    moved = kindling("redrive", "WorkDeadLetterQueue")
    assert moved.returncode == 0 and "message(s) redriven" in moved.stdout, moved.stderr
    fixture_stack.settle()
    assert any(json.loads(r["body"]["S"]).get("n") == 99 for r in records(fixture_stack, "sqs")), "processed"
    refused = kindling("redrive", "NoSuchQueue")
    assert refused.returncode == 1 and "queue: one of" in refused.stderr


def test_the_stack_stops_on_sigterm_whichever_thread_the_kernel_hands_it_to() -> None:
    """The kernel may deliver a process's SIGTERM to any thread that does not block it; Python runs
    the handler in the main thread only. Here every thread but one (started first, asleep) blocks
    it, so the signal always lands elsewhere than the main thread: the stack must still stop."""
    import os
    import signal
    import subprocess
    import sys

    from kindling_ops.local.stack import free_port

    template = str(ROOT / "tests/fixtures/local_stack/template.yaml")
    script = (
        "import signal, sys, threading, time\n"
        "threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "from kindling_ops.cli import main\n"
        f"sys.exit(main(['local', '--template', {template!r}]))\n"
    )
    environment = {**os.environ, "PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    for inherited in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        environment.pop(inherited, None)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    for line in process.stdout:
        lines.append(line.rstrip())
        if "is listening on" in line or time.monotonic() > deadline:
            break
    assert any("is listening on" in line for line in lines), "\n".join(lines)
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("SIGTERM went unheard: the stack did not stop") from None
    assert process.returncode == 0 and "stopped." in output, output[-2000:]
