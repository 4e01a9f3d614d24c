"""Creates the template's tables, queues, bus, archive and rules in the embedded moto server."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from typing import Any

from kindling_ops.local.template import Template, TemplateError

Say = Callable[[str], None]

_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "StreamSpecification",
)

_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
}


def provision(
    template: Template, session: Any, say: Say, secret_values: dict[str, str] | None = None
) -> None:
    _secrets(template, session.client("secretsmanager"), secret_values or {}, say)
    _tables(template, session.client("dynamodb"), say)
    _queues(template, session.client("sqs"), say)
    _buses_and_rules(template, session.client("events"), say)
    _email(template, session.client("sesv2"), say)


def _secrets(template: Template, secretsmanager: Any, values: dict[str, str], say: Say) -> None:
    """Each secret with the value the local stack was given, else the template's, else a random one.

    ``!Ref`` of a secret is its name here (its ARN in AWS); both work wherever a secret id is read.
    """
    for logical in template.of_type("AWS::SecretsManager::Secret"):
        props = template.resolve(template.properties(logical))
        if logical in values:
            value = values[logical]
        elif "SecretString" in props:
            value = str(props["SecretString"])
        else:
            length = int((props.get("GenerateSecretString") or {}).get("PasswordLength", 32))
            value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))
        secretsmanager.create_secret(Name=template.names[logical], SecretString=value)
        say(f"secret {template.names[logical]}")


def _email(template: Template, sesv2: Any, say: Say) -> None:
    for logical in template.of_type("AWS::SES::ConfigurationSet"):
        sesv2.create_configuration_set(ConfigurationSetName=template.names[logical])
        say(f"SES configuration set {template.names[logical]}")
    if template.of_type("AWS::SES::ConfigurationSetEventDestination"):
        say("SES events: the stack publishes Send, Delivery and the simulator's Bounce and Complaint itself")


def _tables(template: Template, dynamodb: Any, say: Say) -> None:
    for logical in template.of_type("AWS::DynamoDB::Table"):
        props = template.resolve(template.properties(logical))
        request = {key: props[key] for key in _TABLE_KEYS if key in props}
        request.setdefault("BillingMode", "PAY_PER_REQUEST")
        name = template.names[logical]
        dynamodb.create_table(TableName=name, **request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        say(f"table {name}")


def _queues(template: Template, sqs: Any, say: Say) -> None:
    queues = template.of_type("AWS::SQS::Queue")
    # Create every queue first, then wire redrive policies, which point at other queues.
    for logical in queues:
        props = template.resolve(template.properties(logical))
        attributes = {
            attr: str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
            for key, attr in _QUEUE_ATTRIBUTES.items()
            if key in props
        }
        sqs.create_queue(QueueName=template.names[logical], Attributes=attributes)
    for logical in queues:
        props = template.resolve(template.properties(logical))
        redrive = props.get("RedrivePolicy")
        if redrive:
            sqs.set_queue_attributes(
                QueueUrl=template.queue_url(logical),
                Attributes={"RedrivePolicy": json.dumps(redrive)},
            )
        say(f"queue {template.names[logical]}" + (" (with dead-letter queue)" if redrive else ""))


def _buses_and_rules(template: Template, events: Any, say: Say) -> None:
    for logical in template.of_type("AWS::Events::EventBus"):
        events.create_event_bus(Name=template.names[logical])
        say(f"event bus {template.names[logical]}")
    for logical in template.of_type("AWS::Events::Archive"):
        props = template.resolve(template.properties(logical))
        events.create_archive(
            ArchiveName=template.names[logical][:48],
            EventSourceArn=props["SourceArn"],
            RetentionDays=int(props.get("RetentionDays", 0)),
        )
        say(f"archive {template.names[logical]}")
    for logical in template.of_type("AWS::Events::Rule"):
        props = template.resolve(template.properties(logical))
        if "EventPattern" not in props:
            raise TemplateError(f"{logical}: only event-pattern rules are supported (use ScheduleV2)")
        bus = props.get("EventBusName", "default")
        name = template.names[logical]
        events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
        )
        targets = []
        for target in props.get("Targets", []):
            if ":sqs:" not in target["Arn"]:
                raise TemplateError(f"{logical}: the local stack routes rules to SQS queues only")
            targets.append({"Id": target["Id"], "Arn": target["Arn"]})
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        say(f"rule {name} -> {', '.join(t['Arn'].rsplit(':', 1)[-1] for t in targets)}")
