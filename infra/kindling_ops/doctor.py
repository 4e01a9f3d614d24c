"""``kindling doctor``: is this installation able to do its job, and if not, what to do.

The same checks run against a deployed stack (CloudFormation tells where everything is)
and against the local stack (it tells the same through ``GET /_local/aws``, and its
embedded AWS answers the same API calls). Each check says pass, warn or fail, and for
anything but a pass, what to do. A failed check makes the command exit non-zero.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from kindling.kernel.errors import InvalidInput
from kindling.kernel.secrets import CrmCredentials, StaticSecret
from kindling.webhooks.standard import WebhookSecret

Status = Literal["pass", "warn", "fail"]

#: The outputs every installation has (DLQ URLs are added per dead-letter queue of the template).
REQUIRED_OUTPUTS = ("ApiUrl", "TableName", "EventBusName", "EmailConfigurationSetName")
#: SES event types the reports and suppression need from the configuration set.
SES_EVENT_TYPES = {"SEND", "DELIVERY", "BOUNCE", "COMPLAINT"}
#: How long the round trip waits for its event to reach the lead's timeline.
ROUND_TRIP_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Installation:
    """Where an installation's parts are: its outputs, resources by logical id, and AWS clients."""

    kind: Literal["stack", "local"]
    name: str
    outputs: dict[str, str]
    #: logical id -> (resource type, physical id): a queue's URL, a function's or table's name, a secret's id.
    resources: dict[str, tuple[str, str]]
    client: Callable[[str], Any]
    #: The local stack counts function failures itself; a deployed stack has CloudWatch.
    local_errors: dict[str, int] | None = None
    dev_defaults: frozenset[str] = field(default_factory=frozenset)

    def of_type(self, resource_type: str) -> dict[str, str]:
        return {k: physical for k, (kind, physical) in self.resources.items() if kind == resource_type}


# --- finding the installation ----------------------------------------------------------------------


def from_stack(stack_name: str, session: Any, dev_defaults: Iterable[str] = ()) -> Installation:
    cloudformation = session.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources: dict[str, tuple[str, str]] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if "PhysicalResourceId" in summary:
                resources[summary["LogicalResourceId"]] = (
                    summary["ResourceType"],
                    summary["PhysicalResourceId"],
                )
    # SAM's functions are AWS::Lambda::Function once deployed.
    return Installation(
        "stack", stack_name, outputs, resources, session.client, None, frozenset(dev_defaults)
    )


def from_local(port: int, session_for: Callable[[str], Any]) -> Installation:
    """The running local stack, from ``GET /_local/aws``; ``session_for(endpoint)`` makes its session."""
    url = f"http://127.0.0.1:{port}/_local/aws"
    with urllib.request.urlopen(url, timeout=30) as response:
        described = json.loads(response.read())
    session = session_for(described["endpoint"])
    resources = {k: (v["type"], v["physical_id"]) for k, v in described["resources"].items()}
    return Installation(
        "local",
        f"local stack on port {port}",
        described["outputs"],
        resources,
        session.client,
        {k: int(v) for k, v in described["function_errors"].items()},
        frozenset(described.get("dev_defaults", [])),
    )


# --- the checks ------------------------------------------------------------------------------------


def check_outputs(inst: Installation, template_outputs: Iterable[str]) -> list[Check]:
    expected = set(REQUIRED_OUTPUTS) | set(template_outputs)
    missing = sorted(expected - set(inst.outputs))
    if missing:
        return [
            Check(
                "stack outputs",
                "fail",
                f"missing: {', '.join(missing)}",
                "deploy this version of template.yaml (sam build && sam deploy)",
            )
        ]
    return [Check("stack outputs", "pass", f"{len(expected)} outputs present")]


def check_config(inst: Installation, local_documents: dict[str, dict[str, Any]], where: str) -> list[Check]:
    """Each config file of this checkout is the version in force (what `config apply` would not change)."""
    from kindling.adapters.config_store import DynamoConfigStore, document_digest

    store = DynamoConfigStore(inst.outputs["TableName"], inst.client("dynamodb"))
    checks = []
    for name, document in sorted(local_documents.items()):
        kind = name.removesuffix(".yaml")
        version = store.current_version(kind)
        if version is None:
            checks.append(Check(f"config {kind}", "fail", "never applied", f"kindling config apply {where}"))
            continue
        _, stored_digest = store.load(kind, version)
        if stored_digest != document_digest(document):
            checks.append(
                Check(
                    f"config {kind}",
                    "fail",
                    f"version {version} in force differs from config/{name}",
                    f"kindling config apply {where} (or check out what was applied)",
                )
            )
        else:
            checks.append(Check(f"config {kind}", "pass", f"version {version} is config/{name}"))
    return checks


def _applied_sender(inst: Installation) -> str | None:
    from kindling.adapters.config_store import DynamoConfigStore

    store = DynamoConfigStore(inst.outputs["TableName"], inst.client("dynamodb"))
    version = store.current_version("email")
    if version is None:
        return None
    document, _ = store.load("email", version)
    sender = document.get("from_address")
    return sender if isinstance(sender, str) else None


def _aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code") or type(exc).__name__)


def check_ses(inst: Installation) -> list[Check]:
    sesv2 = inst.client("sesv2")
    checks = []
    sender = _applied_sender(inst)
    if sender is None:
        checks.append(
            Check(
                "SES sender", "fail", "no email config applied", "kindling config apply (config/email.yaml)"
            )
        )
    else:
        domain = sender.rsplit("@", 1)[1]
        identity = None
        for candidate in (domain, sender):
            try:
                identity = (candidate, sesv2.get_email_identity(EmailIdentity=candidate))
                break
            except Exception as exc:
                if _aws_error(exc) != "NotFoundException":
                    raise
        if identity is None:
            checks.append(
                Check(
                    "SES sender",
                    "fail",
                    f"neither {domain} nor {sender} is an SES identity",
                    f"create the SES domain identity {domain} and publish its DKIM records (README: Deploy)",
                )
            )
        else:
            name, found = identity
            verified = (
                bool(found.get("VerifiedForSendingStatus")) or found.get("VerificationStatus") == "SUCCESS"
            )
            dkim = (found.get("DkimAttributes") or {}).get("Status", "NOT_STARTED")
            if not verified:
                checks.append(
                    Check(
                        "SES sender", "fail", f"{name} is not verified", "publish the records SES gave for it"
                    )
                )
            elif dkim != "SUCCESS" and inst.kind == "stack":
                checks.append(
                    Check(
                        "SES sender",
                        "fail",
                        f"{name} verified, DKIM {dkim}",
                        "publish the three DKIM CNAME records SES lists for the domain",
                    )
                )
            else:
                detail = f"{name} verified, DKIM {dkim}" + (
                    " (local: no DKIM)" if inst.kind == "local" else ""
                )
                checks.append(Check("SES sender", "pass", detail))
    if inst.kind == "local":
        # The embedded AWS has no SES account or event destinations: the outbox is the local SES.
        checks.append(
            Check("SES account", "pass", "local: every email goes to the outbox (GET /_local/outbox)")
        )
        checks.append(Check("SES events", "pass", "local: the stack publishes SES's events itself"))
        return checks
    try:
        account = sesv2.get_account()
        if account.get("ProductionAccessEnabled"):
            checks.append(Check("SES account", "pass", "out of the sandbox"))
        else:
            checks.append(
                Check(
                    "SES account",
                    "warn",
                    "in the SES sandbox: mail reaches only verified addresses, 200 a day",
                    "request production access in the SES console (README: Deploy, step 3)",
                )
            )
    except Exception as exc:
        checks.append(Check("SES account", "warn", f"could not read the account: {_aws_error(exc)}"))
    config_set = inst.outputs.get("EmailConfigurationSetName", "")
    try:
        destinations = sesv2.get_configuration_set_event_destinations(ConfigurationSetName=config_set)
        good = [
            d
            for d in destinations.get("EventDestinations", [])
            if d.get("Enabled")
            and "EventBridgeDestination" in d
            and {t.upper() for t in d.get("MatchingEventTypes", [])} >= SES_EVENT_TYPES
        ]
        if good:
            checks.append(Check("SES events", "pass", f"{config_set} sends its events to EventBridge"))
        else:
            checks.append(
                Check(
                    "SES events",
                    "fail",
                    f"{config_set}: no enabled EventBridge destination for send, delivery, bounce, complaint",
                    "redeploy the stack (EmailEventsToEventBridge); without it bounces never suppress",
                )
            )
    except Exception as exc:
        checks.append(
            Check(
                "SES events",
                "fail",
                f"configuration set {config_set!r}: {_aws_error(exc)}",
                "redeploy the stack",
            )
        )
    return checks


def _secret_problem(logical: str, value: str) -> str | None:
    """What is wrong with a secret's value by its kind, or None."""
    if logical == "CrmWebhookSecrets":
        try:
            CrmCredentials.from_secret(StaticSecret(value))
        except InvalidInput as exc:
            return str(exc)
        return None
    if logical == "HandoffSigningSecret":
        try:
            WebhookSecret(value)
        except InvalidInput as exc:
            return f"not a Standard Webhooks secret: {exc}"
    if not value.strip():
        return "empty"
    shortest = 8 if logical == "WriteKeySecret" else 16  # a write key is in every page; the others guard
    if len(value) < shortest:
        return f"only {len(value)} characters: use at least 32 random ones"
    return None


def check_secrets(inst: Installation) -> list[Check]:
    secretsmanager = inst.client("secretsmanager")
    checks = []
    for logical, secret_id in sorted(inst.of_type("AWS::SecretsManager::Secret").items()):
        name = f"secret {logical}"
        try:
            value = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
        except Exception as exc:
            checks.append(
                Check(name, "fail", f"cannot read it: {_aws_error(exc)}", "check its resource policy")
            )
            continue
        problem = _secret_problem(logical, value)
        defaults = [v for v in inst.dev_defaults if v and v in value]
        if defaults and inst.kind == "stack":
            checks.append(
                Check(
                    name,
                    "fail",
                    "holds a development default from the README",
                    f"put a random value: aws secretsmanager put-secret-value --secret-id {secret_id}",
                )
            )
        elif defaults:
            checks.append(Check(name, "warn", "development default (fine on this machine only)"))
        elif problem:
            # A value the functions cannot use fails anywhere; a weak one only where it matters.
            unusable = logical in ("CrmWebhookSecrets", "HandoffSigningSecret") or problem == "empty"
            status: Status = "fail" if unusable or inst.kind == "stack" else "warn"
            checks.append(
                Check(name, status, problem, f"aws secretsmanager put-secret-value --secret-id {secret_id}")
            )
        elif logical == "CrmWebhookSecrets":
            credentials = CrmCredentials.from_secret(StaticSecret(value))
            on = [
                provider
                for provider, fields in (
                    ("hubspot", (credentials.hubspot_client_secret.get_secret_value(),)),
                    (
                        "pipedrive",
                        (credentials.pipedrive_user, credentials.pipedrive_password.get_secret_value()),
                    ),
                    (
                        "salesforce",
                        (credentials.salesforce_org_id, credentials.salesforce_secret.get_secret_value()),
                    ),
                    ("generic", (credentials.webhook_secret.get_secret_value(),)),
                )
                if all(fields)
            ]
            checks.append(Check(name, "pass", f"CRM webhooks on: {', '.join(on) or 'none'}"))
        else:
            checks.append(Check(name, "pass", "set"))
    return checks


def check_dead_letters(inst: Installation, where: str) -> list[Check]:
    sqs = inst.client("sqs")
    checks = []
    for logical, url in sorted(inst.of_type("AWS::SQS::Queue").items()):
        if not logical.endswith("DeadLetterQueue"):
            continue
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        depth = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        if depth:
            checks.append(
                Check(
                    f"dead letters {logical.removesuffix('DeadLetterQueue')}",
                    "fail",
                    f"{depth} message(s) that failed every retry",
                    f"kindling dlq list {where}; fix the cause; kindling dlq redrive {logical} {where}",
                )
            )
    if not checks:
        checks.append(Check("dead letters", "pass", "every dead-letter queue is empty"))
    return checks


def check_function_errors(inst: Installation, now: datetime) -> list[Check]:
    if inst.local_errors is not None:
        counts = {name: count for name, count in inst.local_errors.items() if count}
        what = "since the stack started"
    else:
        functions = inst.of_type("AWS::Lambda::Function")
        cloudwatch = inst.client("cloudwatch")
        queries = []
        for index, (logical, physical) in enumerate(sorted(functions.items())):
            for metric in ("Errors", "Throttles"):
                queries.append(
                    {
                        "Id": f"m{index}{metric.lower()}",
                        "Label": f"{logical} {metric}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/Lambda",
                                "MetricName": metric,
                                "Dimensions": [{"Name": "FunctionName", "Value": physical}],
                            },
                            "Period": 86400,
                            "Stat": "Sum",
                        },
                    }
                )
        counts = {}
        for start in range(0, len(queries), 500):
            answer = cloudwatch.get_metric_data(
                MetricDataQueries=queries[start : start + 500],
                StartTime=now - timedelta(days=1),
                EndTime=now + timedelta(minutes=1),  # a datapoint of this very minute counts too
            )
            for result in answer.get("MetricDataResults", []):
                total = int(sum(result.get("Values", [])))
                if total:
                    counts[result["Label"]] = total
        what = "in the last 24 hours"
    if counts:
        listed = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        return [
            Check(
                "function errors",
                "fail",
                f"{what}: {listed}",
                "read the function's log group (failures are logged with the event id and the error)",
            )
        ]
    return [Check("function errors", "pass", f"none {what}")]


# --- the synthetic round trip ----------------------------------------------------------------------

Http = Callable[[str, str, dict[str, str], bytes | None], tuple[int, bytes]]


def urllib_http(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _secret_value(inst: Installation, logical: str) -> str:
    secret_id = inst.resources[logical][1]
    return str(inst.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])


def check_round_trip(
    inst: Installation,
    http: Http,
    sleep: Callable[[float], None],
    wait_seconds: float = ROUND_TRIP_SECONDS,
) -> list[Check]:
    """A test event through the public API reaches a lead's timeline; then that lead is removed."""
    import base64

    api = inst.outputs["ApiUrl"].rstrip("/")
    table = inst.outputs["TableName"]
    dynamodb = inst.client("dynamodb")
    anonymous_id = f"kindling-doctor-{uuid.uuid4().hex}"
    message_id = f"kindling-doctor-{uuid.uuid4().hex}"
    body = {
        "type": "track",
        "anonymousId": anonymous_id,
        "messageId": message_id,
        "event": "kindling doctor check",
        "properties": {"synthetic": True},
    }
    write_key = _secret_value(inst, "WriteKeySecret")
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    status, answer = http(
        "POST",
        f"{api}/v1/track",
        {"Authorization": auth, "Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    if status != 200:
        return [
            Check(
                "round trip",
                "fail",
                f"POST /v1/track answered {status}: {answer[:200].decode(errors='replace')}",
                "check the API URL, the write key secret and the capture function's log",
            )
        ]
    lead_id = None
    waited = 0.0
    seen = False
    admin = {"Authorization": f"Bearer {_secret_value(inst, 'AdminTokenSecret')}"}
    try:
        while waited <= wait_seconds:
            if lead_id is None:
                claim = dynamodb.get_item(
                    TableName=table, Key={"PK": {"S": f"IDENT#anon#{anonymous_id}"}, "SK": {"S": "IDENT"}}
                ).get("Item")
                lead_id = claim["lead_id"]["S"] if claim else None
            if lead_id is not None:
                status, answer = http("GET", f"{api}/v1/leads/{lead_id}", admin, None)
                if status == 200:
                    timeline = json.loads(answer).get("timeline", [])
                    if any(entry.get("event") == body["event"] for entry in timeline):
                        seen = True
                        break
                elif status in (401, 403):
                    return [
                        Check(
                            "round trip",
                            "fail",
                            f"the admin API refused the admin token secret ({status})",
                            "check the AdminTokenSecret and the leads API function's log",
                        )
                    ]
            sleep(1.0)
            waited += 1.0
    finally:
        removed = remove_lead(dynamodb, table, lead_id, anonymous_id, message_id)
    if not seen:
        where = "no lead was created" if lead_id is None else f"lead {lead_id} has no such timeline entry"
        return [
            Check(
                "round trip",
                "fail",
                f"after {wait_seconds:.0f} s {where}",
                "kindling dlq list, then the profiles function's log (the bus rule or queue may be missing)",
            )
        ]
    return [
        Check("round trip", "pass", f"event reached lead {lead_id}'s timeline in ~{waited:.0f} s; {removed}")
    ]


def remove_lead(dynamodb: Any, table: str, lead_id: str | None, anonymous_id: str, message_id: str) -> str:
    """Deletes the synthetic lead's items: its partition, its identity claim and its message marker."""
    keys = [
        {"PK": {"S": f"IDENT#anon#{anonymous_id}"}, "SK": {"S": "IDENT"}},
        {"PK": {"S": f"MSG#{message_id}"}, "SK": {"S": "MSG"}},
    ]
    if lead_id is not None:
        pages = dynamodb.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"LEAD#{lead_id}"}},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
        )
        keys += [item for page in pages for item in page["Items"]]
    for key in keys:
        dynamodb.delete_item(TableName=table, Key=key)
    return f"test lead removed ({len(keys)} items)"


# --- all of it -------------------------------------------------------------------------------------


def run(
    inst: Installation,
    *,
    template_outputs: Iterable[str],
    config_documents: dict[str, dict[str, Any]],
    where: str,
    now: datetime,
    http: Http = urllib_http,
    sleep: Callable[[float], None] | None = None,
    round_trip: bool = True,
) -> list[Check]:
    import time

    checks = check_outputs(inst, template_outputs)
    if checks[0].status == "fail" and "TableName" not in inst.outputs:
        return checks
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("config", lambda: check_config(inst, config_documents, where)),
        ("SES", lambda: check_ses(inst)),
        ("secrets", lambda: check_secrets(inst)),
        ("dead letters", lambda: check_dead_letters(inst, where)),
        ("function errors", lambda: check_function_errors(inst, now)),
    ]
    if round_trip:
        steps.append(("round trip", lambda: check_round_trip(inst, http, sleep or time.sleep)))
    for name, step in steps:
        try:
            checks.extend(step())
        except Exception as exc:  # one broken check must not hide the others
            checks.append(Check(name, "fail", f"the check itself failed: {_aws_error(exc)}: {exc}"[:300]))
    return checks


def report(checks: list[Check]) -> str:
    """A table of checks, then what to do for each that did not pass."""
    marks = {"pass": "ok", "warn": "WARN", "fail": "FAIL"}
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  result  detail"]
    lines += [f"{c.name.ljust(width)}  {marks[c.status].ljust(6)}  {c.detail}" for c in checks]
    todo = [c for c in checks if c.status != "pass" and c.fix]
    if todo:
        lines += ["", "what to do:"]
        lines += [f"  {c.name}: {c.fix}" for c in todo]
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines += ["", f"{len(checks) - failed - warned} passed, {warned} warning(s), {failed} failed"]
    return "\n".join(lines)


def template_output_names(template_path: Path) -> list[str]:
    from kindling_ops.local.template import load

    return list((load(template_path).get("Outputs") or {}).keys())
