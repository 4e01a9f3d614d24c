"""`kindling doctor`'s checks against the embedded AWS, as they see a deployed stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from kindling.adapters.config_store import DynamoConfigStore
from kindling.scoring.config import ScoringConfig
from kindling_ops import doctor
from kindling_ops.config import documents, load_file
from kindling_ops.local.stack import dev_secret_defaults
from tests.conftest import ROOT

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
RANDOM = "Q7vX2mR9kP4sT8wZ1yB6nC3dF5gH0jLa"


def installation(table: str, resources: dict[str, tuple[str, str]], **outputs: str) -> doctor.Installation:
    return doctor.Installation(
        kind="stack",
        name="test",
        outputs={"TableName": table, **outputs},
        resources=resources,
        client=lambda service: boto3.client(service),
        dev_defaults=frozenset(dev_secret_defaults()),
    )


def secret(name: str, value: str) -> tuple[str, str]:
    arn = boto3.client("secretsmanager").create_secret(Name=f"{name}-{table_suffix()}", SecretString=value)[
        "ARN"
    ]
    return ("AWS::SecretsManager::Secret", arn)


def table_suffix() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name: check for check in checks}


def test_a_deployed_secret_left_at_its_development_default_fails_naming_the_command_to_fix_it(table) -> None:
    inst = installation(
        table,
        {
            "WriteKeySecret": secret("write-key", "dev-write-key"),
            "AdminTokenSecret": secret("admin-token", RANDOM),
            "HandoffSigningSecret": secret("handoff", "not base64 at all!"),
            "CrmWebhookSecrets": secret("crm", json.dumps({"hubspot_client_secret": RANDOM})),
        },
    )
    checks = by_name(doctor.check_secrets(inst))
    assert checks["secret WriteKeySecret"].status == "fail"
    assert "development default" in checks["secret WriteKeySecret"].detail
    assert "put-secret-value" in checks["secret WriteKeySecret"].fix
    assert checks["secret AdminTokenSecret"].status == "pass"
    assert checks["secret HandoffSigningSecret"].status == "fail"
    assert (checks["secret CrmWebhookSecrets"].status, checks["secret CrmWebhookSecrets"].detail) == (
        "pass",
        "CRM webhooks on: hubspot",
    )
    assert RANDOM not in doctor.report(list(checks.values())), "a secret's value is never printed"


def test_applied_config_is_compared_file_by_file_with_the_checkout(table) -> None:
    shipped = documents({"scoring.yaml": load_file(ROOT / "config" / "scoring.yaml", ScoringConfig)})
    inst = installation(table, {})
    [never] = doctor.check_config(inst, shipped, "--stack test")
    assert (never.status, never.detail, never.fix) == (
        "fail",
        "never applied",
        "kindling config apply --stack test",
    )
    DynamoConfigStore(table).apply("scoring", shipped["scoring.yaml"], NOW)
    assert [c.status for c in doctor.check_config(inst, shipped, "--stack test")] == ["pass"]
    edited = json.loads(json.dumps(shipped))
    edited["scoring.yaml"]["engagement"]["decay"]["half_life_days"] = 45.0
    [differs] = doctor.check_config(inst, edited, "--stack test")
    assert differs.status == "fail" and "differs from config/scoring.yaml" in differs.detail


def test_a_dead_letter_queue_with_a_message_fails_with_the_redrive_command(moto_endpoint) -> None:
    sqs = boto3.client("sqs")
    empty = sqs.create_queue(QueueName=f"empty-dlq-{table_suffix()}")["QueueUrl"]
    full = sqs.create_queue(QueueName=f"full-dlq-{table_suffix()}")["QueueUrl"]
    sqs.send_message(QueueUrl=full, MessageBody="{}")
    inst = installation(
        "unused",
        {
            "ScoringDeadLetterQueue": ("AWS::SQS::Queue", empty),
            "SendDeadLetterQueue": ("AWS::SQS::Queue", full),
            "SendQueue": ("AWS::SQS::Queue", empty),
        },
    )
    [check] = doctor.check_dead_letters(inst, "--stack test")
    assert (check.name, check.status) == ("dead letters Send", "fail")
    assert "kindling dlq redrive SendDeadLetterQueue --stack test" in check.fix


def test_function_errors_of_the_last_day_come_from_cloudwatch(moto_endpoint) -> None:
    name = f"kindling-SenderFunction-{table_suffix()}"
    inst = installation("unused", {"SenderFunction": ("AWS::Lambda::Function", name)})
    assert doctor.check_function_errors(inst, datetime.now(UTC))[0].status == "pass"
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": name}],
                "Value": 3,
                "Timestamp": datetime.now(UTC),
            }
        ],
    )
    [check] = doctor.check_function_errors(inst, datetime.now(UTC))
    assert check.status == "fail" and "SenderFunction Errors: 3" in check.detail


def test_a_sender_without_dkim_or_event_destination_fails_on_a_deployed_stack(table) -> None:
    sender = f"news@{table_suffix()}.example"
    DynamoConfigStore(table).apply(
        "email", {"from_address": sender, "from_name": "A", "postal_address": "x"}, NOW
    )
    config_set = f"cs-{table_suffix()}"
    boto3.client("sesv2").create_configuration_set(ConfigurationSetName=config_set)
    boto3.client("sesv2").create_email_identity(EmailIdentity=sender)
    inst = installation(table, {}, EmailConfigurationSetName=config_set)
    checks = by_name(doctor.check_ses(inst))
    assert checks["SES sender"].status == "fail" and "DKIM NOT_STARTED" in checks["SES sender"].detail
    assert checks["SES events"].status == "fail"


@pytest.mark.parametrize("missing", ["ApiUrl", "ProfilesDeadLetterQueueUrl"])
def test_missing_outputs_fail_and_say_to_deploy(missing: str) -> None:
    outputs: dict[str, Any] = dict.fromkeys(
        [*doctor.REQUIRED_OUTPUTS, "ProfilesDeadLetterQueueUrl", "AlarmTopicArn"], "x"
    )
    del outputs[missing]
    inst = doctor.Installation("stack", "t", outputs, {}, lambda service: None)
    [check] = doctor.check_outputs(inst, ["ProfilesDeadLetterQueueUrl", "AlarmTopicArn"])
    assert check.status == "fail" and missing in check.detail and "sam deploy" in check.fix
