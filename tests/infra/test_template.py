"""The SAM template, held to what the code and the architecture need.

Everything here runs offline: cfn-lint in process, the SAM transform with aws-sam-translator and a
fixed managed-policy map (no IAM calls), and the handler modules read with ``ast``, never imported.
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from pydantic_settings import BaseSettings
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from kindling.kernel import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

#: Values for the parameters that have no default.
PARAMETER_VALUES = {"HandoffUrl": "https://crm.example/hooks/mql"}

#: What the managed-policy loader would otherwise fetch from IAM: only the policies SAM attaches itself.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    "AWSLambdaDynamoDBExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}

#: Where the code may read the environment: the settings models, nowhere else.
CODE_DIRS = [ROOT / "functions", ROOT / "shared" / "kindling"]
SETTINGS_FILE = ROOT / "shared" / "kindling" / "settings.py"


class OfflineManagedPolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which lists policies through IAM."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    template = yaml_parse(TEMPLATE_PATH.read_text())
    assert isinstance(template, dict)
    return template


@pytest.fixture(scope="module")
def cfn_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml as CloudFormation sees it after the AWS::Serverless transform."""
    packaged = copy.deepcopy(sam_template)  # transform() mutates its input
    # `sam package` replaces local code paths with S3 locations; the translator accepts nothing else.
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://kindling-artifacts/{properties[key].strip('/')}"
    with pytest.MonkeyPatch.context() as mp:
        # The translator asks a boto3 session for the region (no network, but it must be set).
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        return transform(packaged, dict(PARAMETER_VALUES), OfflineManagedPolicyLoader())


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def serverless_functions(sam_template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    functions = resources_of_type(sam_template, "AWS::Serverless::Function")
    assert functions, "template.yaml defines no AWS::Serverless::Function"
    return functions


def function_properties(sam_template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's properties with Globals.Function filled in (local values win)."""
    globals_ = sam_template.get("Globals", {}).get("Function", {})
    return {**globals_, **sam_template["Resources"][name].get("Properties", {})}


def referenced_resource(value: Any) -> str | None:
    """The logical id an ARN-valued property points at: !GetAtt X.Arn, !Ref X or ${X.Arn} in a !Sub."""
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Fn::GetAtt":
            parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return str(parts[0]) if parts[1:] == ["Arn"] else None
        if function == "Ref" and isinstance(argument, str):
            return argument
        if function == "Fn::Sub":
            text = argument[0] if isinstance(argument, list) else argument
            if isinstance(text, str) and text.startswith("${") and text.endswith(".Arn}"):
                return text[2 : -len(".Arn}")]
    return None


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    yield from (part.split("}", 1)[0] for part in text.split("${")[1:])
                yield from refs_in(value)
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def referenced_parameters(sam_template: dict[str, Any]) -> set[str]:
    return set(refs_in(sam_template["Resources"])) | set(refs_in(sam_template.get("Globals", {})))


def role_of(cfn_template: dict[str, Any], function: str) -> dict[str, Any]:
    role = referenced_resource(cfn_template["Resources"][function]["Properties"]["Role"])
    assert role in cfn_template["Resources"], f"{function}: its role is not defined in the template"
    return cfn_template["Resources"][role]["Properties"]


def lint(path: Path) -> list[Any]:
    return list(lint_file(path))


def describe(matches: list[Any]) -> str:
    return "\n".join(f"{m.rule.id} {m.path_string}: {m.message}" for m in matches)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def handler_file(sam_template: dict[str, Any], name: str) -> tuple[Path, str]:
    properties = function_properties(sam_template, name)
    module, _, attribute = properties["Handler"].rpartition(".")
    assert module and attribute, f"{name}: Handler {properties['Handler']!r} is not 'module.function'"
    return ROOT / properties["CodeUri"] / (module.replace(".", "/") + ".py"), attribute


def settings_classes_instantiated(module: ast.Module) -> list[str]:
    """Names of the kindling Settings models a module instantiates at module level."""
    found: list[str] = []
    for statement in module.body:
        value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Call):
            continue
        callee = value.func
        name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
        candidate = getattr(settings_module, name or "", None)
        if name and isinstance(candidate, type) and issubclass(candidate, BaseSettings):
            found.append(name)
    return found


def environment_variable_names(model: type[BaseSettings]) -> list[str]:
    """The variables pydantic-settings reads for a model's fields."""
    config = model.model_config
    prefix = config.get("env_prefix", "") or ""
    names = []
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        name = alias or f"{prefix}{field_name}"
        names.append(name if config.get("case_sensitive") else name.upper())
    return names


def python_files(*directories: Path) -> list[Path]:
    return sorted(p for d in directories for p in d.rglob("*.py") if "__pycache__" not in p.parts)


# --- cfn-lint ---------------------------------------------------------------------------------------


def test_cfn_lint_finds_nothing_in_the_sam_template() -> None:
    matches = lint(TEMPLATE_PATH)
    assert not matches, describe(matches)


def test_cfn_lint_finds_nothing_in_the_transformed_template(
    sam_template: dict[str, Any], cfn_template: dict[str, Any], tmp_path: Path
) -> None:
    transformed = tmp_path / "transformed.json"
    transformed.write_text(json.dumps(cfn_template, indent=2))
    matches = lint(transformed)
    assert not matches, describe(matches)


def test_every_template_parameter_is_referenced(sam_template: dict[str, Any]) -> None:
    # cfn-lint skips W2001 (parameter not used) on SAM templates, so this test stands in for it.
    unused = set(sam_template.get("Parameters", {})) - referenced_parameters(sam_template)
    assert not unused, f"parameters not referenced: {sorted(unused)}"


# --- the transformed template -----------------------------------------------------------------------


def test_every_serverless_function_becomes_a_lambda_function(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    lambdas = resources_of_type(cfn_template, "AWS::Lambda::Function")
    assert set(serverless_functions(sam_template)) <= set(lambdas)


def test_every_sqs_consumer_reports_partial_batch_failures(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    queues = resources_of_type(cfn_template, "AWS::SQS::Queue")
    mappings = resources_of_type(cfn_template, "AWS::Lambda::EventSourceMapping")
    sqs_mappings = {
        name: m
        for name, m in mappings.items()
        if referenced_resource(m["Properties"]["EventSourceArn"]) in queues
        or ":sqs:" in str(m["Properties"]["EventSourceArn"])
    }
    sqs_events = [
        f"{function}{event}"
        for function, resource in serverless_functions(sam_template).items()
        for event, spec in resource["Properties"].get("Events", {}).items()
        if spec["Type"] == "SQS"
    ]
    assert sqs_events, "expected at least one SQS consumer"
    assert set(sqs_mappings) == set(sqs_events)
    for name, mapping in sqs_mappings.items():
        assert "ReportBatchItemFailures" in mapping["Properties"].get("FunctionResponseTypes", []), name


def test_every_consumer_queue_has_a_dead_letter_queue(cfn_template: dict[str, Any]) -> None:
    queues = resources_of_type(cfn_template, "AWS::SQS::Queue")
    sources = {
        referenced_resource(m["Properties"]["EventSourceArn"])
        for m in resources_of_type(cfn_template, "AWS::Lambda::EventSourceMapping").values()
    }
    consumed = {name for name in queues if name in sources}
    assert consumed, "expected at least one queue with a consumer"
    for name in sorted(consumed):
        redrive = queues[name]["Properties"].get("RedrivePolicy")
        assert isinstance(redrive, dict), f"{name} has no RedrivePolicy"
        dead_letter_queue = referenced_resource(redrive.get("deadLetterTargetArn"))
        assert dead_letter_queue in queues, f"{name}: deadLetterTargetArn is not a queue in the template"
        assert dead_letter_queue != name, f"{name} is its own dead-letter queue"
        assert int(redrive.get("maxReceiveCount", 0)) >= 1, f"{name}: maxReceiveCount missing"


def test_the_table_is_on_demand_with_point_in_time_recovery_and_ttl(cfn_template: dict[str, Any]) -> None:
    tables = resources_of_type(cfn_template, "AWS::DynamoDB::Table")
    assert tables, "expected a DynamoDB table"
    for name, table in tables.items():
        properties = table["Properties"]
        assert properties.get("BillingMode") == "PAY_PER_REQUEST", name
        pitr = properties.get("PointInTimeRecoverySpecification", {})
        assert pitr.get("PointInTimeRecoveryEnabled") is True, name
        ttl = properties.get("TimeToLiveSpecification", {})
        assert ttl.get("Enabled") is True and ttl.get("AttributeName"), name


def test_the_event_bus_is_archived(cfn_template: dict[str, Any]) -> None:
    buses = resources_of_type(cfn_template, "AWS::Events::EventBus")
    assert buses, "expected an EventBridge bus"
    archived = {
        referenced_resource(archive["Properties"].get("SourceArn"))
        for archive in resources_of_type(cfn_template, "AWS::Events::Archive").values()
    }
    assert set(buses) <= archived


# --- handlers and their environment -----------------------------------------------------------------


def test_every_handler_points_at_a_top_level_function(sam_template: dict[str, Any]) -> None:
    for name in serverless_functions(sam_template):
        path, attribute = handler_file(sam_template, name)
        assert path.is_file(), f"{name}: {path.relative_to(ROOT)} does not exist"
        defined = {
            node.name
            for node in parse_module(path).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert attribute in defined, f"{name}: {path.relative_to(ROOT)} defines no function {attribute}"


def test_every_handler_builds_exactly_one_settings_model(sam_template: dict[str, Any]) -> None:
    for name in serverless_functions(sam_template):
        path, _ = handler_file(sam_template, name)
        found = settings_classes_instantiated(parse_module(path))
        assert len(found) == 1, f"{name}: expected one Settings model at module level, found {found}"


def test_every_setting_a_function_reads_is_set_by_the_template(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    for name in serverless_functions(sam_template):
        path, _ = handler_file(sam_template, name)
        (class_name,) = settings_classes_instantiated(parse_module(path))
        model = getattr(settings_module, class_name)
        # SAM's own merge of Globals.Function.Environment with the function's Environment.
        variables = cfn_template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
        if not model.model_config.get("case_sensitive"):
            variables = {key.upper(): value for key, value in variables.items()}
        missing = [var for var in environment_variable_names(model) if variables.get(var) in (None, "")]
        assert not missing, f"{name} ({class_name}) reads {missing}, which the template does not set"


def test_settings_models_are_the_only_readers_of_the_environment() -> None:
    offenders = []
    for path in python_files(*CODE_DIRS):
        if path == SETTINGS_FILE:
            continue
        for node in ast.walk(parse_module(path)):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "environb", "getenv", "getenvb"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {alias.name for alias in node.names} & {"environ", "environb", "getenv", "getenvb"}
                offenders.extend(f"{path.relative_to(ROOT)}:{node.lineno} from os import {n}" for n in names)
    assert not offenders, "read the environment through kindling.settings instead:\n" + "\n".join(offenders)


# --- permissions ------------------------------------------------------------------------------------


def test_every_function_declares_its_own_policies(sam_template: dict[str, Any]) -> None:
    for name in serverless_functions(sam_template):
        policies = function_properties(sam_template, name).get("Policies")
        assert isinstance(policies, list) and policies, f"{name} has no Policies list"


def test_no_function_uses_a_full_access_managed_policy(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    for name in serverless_functions(sam_template):
        named = [p for p in function_properties(sam_template, name)["Policies"] if isinstance(p, str)]
        role = role_of(cfn_template, name)
        arns = [str(arn) for arn in role.get("ManagedPolicyArns", [])]
        full_access = [p for p in named + arns if p.endswith("FullAccess")]
        assert not full_access, f"{name} uses {full_access}"


def test_no_function_policy_grants_every_action_or_every_table(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    for name in serverless_functions(sam_template):
        role = role_of(cfn_template, name)
        for policy in role.get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                if statement.get("Effect") != "Allow":
                    continue
                actions = [str(a) for a in as_list(statement.get("Action", []))]
                where = f"{name} / {policy['PolicyName']}"
                assert "*" not in actions, f"{where} allows Action '*'"
                dynamodb = [a for a in actions if a.lower().startswith("dynamodb:")]
                if dynamodb:
                    assert "dynamodb:*" not in dynamodb, f"{where} allows dynamodb:*"
                    assert "*" not in as_list(statement.get("Resource")), (
                        f"{where} allows {dynamodb} on Resource '*'"
                    )


# --- operations: alarms, logs, dashboard ------------------------------------------------------------
#
# Every expected list below comes from the template's own resources: a queue, dead-letter queue or
# function added without its alarms or log group fails here.

#: What CloudWatch Logs accepts as RetentionInDays.
LOG_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827}
LOG_RETENTION_DAYS |= {2192, 2557, 2922, 3288, 3653}

#: Access-log variables that would write query strings, headers, raw paths (link tokens) or bodies.
PRIVATE_ACCESS_LOG_VARIABLES = ("querystring", "header", "$context.path", "$input", "$request", "$method")


def subject(value: Any) -> str | None:
    """The logical id a dimension value names: !Ref X, or !GetAtt X.<attribute>."""
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Ref" and isinstance(argument, str):
            return argument
        if function == "Fn::GetAtt":
            parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return str(parts[0])
    return None


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
    }


def alarms_on(
    template: dict[str, Any], namespace: str, metric: str, dimension: str | None
) -> dict[str | None, list[dict[str, Any]]]:
    """Alarms on one metric, by the resource their ``dimension`` names (None: alarms without dimensions)."""
    found: dict[str | None, list[dict[str, Any]]] = {}
    for properties in alarms(template).values():
        if (properties.get("Namespace"), properties.get("MetricName")) != (namespace, metric):
            continue
        dimensions = {d["Name"]: d["Value"] for d in properties.get("Dimensions", [])}
        if dimension is None:
            key = None if not dimensions else "<has dimensions>"
        else:
            key = subject(dimensions.get(dimension))
        found.setdefault(key, []).append(properties)
    return found


def fires_at(properties: dict[str, Any], value: float) -> bool:
    """Whether the alarm's comparison is breached by ``value``."""
    threshold = float(properties["Threshold"])
    return {
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "GreaterThanThreshold": value > threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }[properties["ComparisonOperator"]]


def dead_letter_queues(template: dict[str, Any]) -> set[str]:
    """Queues named ...DeadLetterQueue, and every queue a redrive policy points at."""
    queues = resources_of_type(template, "AWS::SQS::Queue")
    targets = {
        referenced_resource((q.get("Properties") or {}).get("RedrivePolicy", {}).get("deadLetterTargetArn"))
        for q in queues.values()
    }
    found = {name for name in queues if name.endswith("DeadLetterQueue") or name in targets}
    assert found, "expected dead-letter queues"
    return found


def work_queues(template: dict[str, Any]) -> set[str]:
    found = set(resources_of_type(template, "AWS::SQS::Queue")) - dead_letter_queues(template)
    assert found, "expected queues that are not dead-letter queues"
    return found


def alarm_topics(template: dict[str, Any]) -> set[str]:
    return set(resources_of_type(template, "AWS::SNS::Topic"))


def log_group_of(template: dict[str, Any], value: Any, where: str) -> dict[str, Any]:
    name = referenced_resource(value)
    assert name in resources_of_type(template, "AWS::Logs::LogGroup"), (
        f"{where}: {value!r} is not a log group of the template"
    )
    return template["Resources"][name]["Properties"]


def dashboard_bodies(template: dict[str, Any]) -> dict[str, str]:
    dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard")
    assert dashboards, "expected a CloudWatch dashboard"
    bodies = {}
    for name, dashboard in dashboards.items():
        body = dashboard["Properties"]["DashboardBody"]
        if isinstance(body, dict) and "Fn::Sub" in body:
            body = body["Fn::Sub"] if isinstance(body["Fn::Sub"], str) else body["Fn::Sub"][0]
        assert isinstance(body, str), f"{name}: DashboardBody should be a JSON string (or !Sub of one)"
        bodies[name] = body
    return bodies


def emitted_metric_names() -> tuple[set[str], set[str]]:
    """Names the code passes to add_metric: exact ones, and the fixed prefixes of f-string names."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for path in python_files(*CODE_DIRS):
        for node in ast.walk(parse_module(path)):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric"):
                continue
            for keyword in node.keywords:
                if keyword.arg != "name":
                    continue
                value = keyword.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    exact.add(value.value)
                elif isinstance(value, ast.JoinedStr) and isinstance(value.values[0], ast.Constant):
                    prefixes.add(str(value.values[0].value))
    return exact, prefixes


def test_every_alarm_notifies_the_alarm_topic_and_says_what_to_do(sam_template: dict[str, Any]) -> None:
    topics = alarm_topics(sam_template)
    assert topics, "expected an SNS topic for alarms"
    found = alarms(sam_template)
    assert found, "expected CloudWatch alarms"
    for name, properties in found.items():
        actions = [referenced_resource(a) for a in properties.get("AlarmActions", [])]
        assert actions and set(actions) <= topics, (
            f"{name}: AlarmActions must be the alarm topic, not {actions}"
        )
        ok_actions = [referenced_resource(a) for a in properties.get("OKActions", [])]
        assert set(ok_actions) <= topics, f"{name}: OKActions must be the alarm topic"
        assert properties.get("TreatMissingData") == "notBreaching", f"{name}: missing data is not a breach"
        description = properties.get("AlarmDescription")
        if isinstance(description, dict):
            description = description.get("Fn::Sub")
        assert isinstance(description, str) and len(description) >= 80, (
            f"{name}: say what it means and what to do"
        )


def test_the_alarm_topic_can_be_published_to_by_cloudwatch(sam_template: dict[str, Any]) -> None:
    # CloudWatch cannot use the AWS managed key alias/aws/sns: every alarm action would fail.
    keys = resources_of_type(sam_template, "AWS::KMS::Key")
    for name in alarm_topics(sam_template):
        key = sam_template["Resources"][name]["Properties"].get("KmsMasterKeyId")
        if key is None:
            continue
        assert "alias/aws/sns" not in json.dumps(key), f"{name}: CloudWatch cannot publish with alias/aws/sns"
        key_name = referenced_resource(key)
        assert key_name in keys, f"{name}: encrypt with a key of this template whose policy admits CloudWatch"
        statements = as_list(keys[key_name]["Properties"]["KeyPolicy"]["Statement"])
        granted = {
            str(action)
            for s in statements
            if s.get("Effect") == "Allow"
            and "cloudwatch.amazonaws.com" in as_list((s.get("Principal") or {}).get("Service", []))
            for action in as_list(s.get("Action", []))
        }
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted, f"{key_name}: CloudWatch may not use it"


def test_every_dead_letter_queue_alarms_on_its_first_message(sam_template: dict[str, Any]) -> None:
    by_queue = alarms_on(sam_template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
    for queue in sorted(dead_letter_queues(sam_template)):
        candidates = [
            a
            for a in by_queue.get(queue, [])
            if fires_at(a, 1)
            and not fires_at(a, 0)
            and a.get("Statistic") == "Maximum"
            and int(a["Period"]) == 60
            and int(a["EvaluationPeriods"]) == 1
        ]
        assert candidates, f"{queue}: no alarm on its first visible message (Maximum, one 60 s period)"


def test_every_queue_alarms_when_its_oldest_message_outlives_its_retries(
    sam_template: dict[str, Any],
) -> None:
    by_queue = alarms_on(sam_template, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName")
    for queue in sorted(work_queues(sam_template)):
        properties = sam_template["Resources"][queue].get("Properties") or {}
        redrive = properties.get("RedrivePolicy") or {}
        # A failing message is retried up to maxReceiveCount times, a visibility timeout apart.
        retrying = int(properties.get("VisibilityTimeout", 30)) * int(redrive.get("maxReceiveCount", 1))
        found = by_queue.get(queue, [])
        assert found, f"{queue}: no ApproximateAgeOfOldestMessage alarm"
        for alarm in found:
            assert not fires_at(alarm, retrying), (
                f"{queue}: retries alone ({retrying} s) would set off its age alarm"
            )
            assert fires_at(alarm, 3600), f"{queue}: an hour-old message should set off its age alarm"


def test_every_function_alarms_on_errors_and_throttles(sam_template: dict[str, Any]) -> None:
    for metric in ("Errors", "Throttles"):
        by_function = alarms_on(sam_template, "AWS/Lambda", metric, "FunctionName")
        for name in sorted(serverless_functions(sam_template)):
            candidates = [a for a in by_function.get(name, []) if fires_at(a, 1) and not fires_at(a, 0)]
            assert candidates, f"{name}: no alarm on its first {metric} datapoint"


def test_every_function_logs_to_its_own_log_group_with_the_retention_parameter(
    sam_template: dict[str, Any],
) -> None:
    retention = sam_template["Parameters"]["LogRetentionDays"]
    assert {int(v) for v in retention["AllowedValues"]} <= LOG_RETENTION_DAYS
    assert int(retention["Default"]) in LOG_RETENTION_DAYS
    seen: dict[str | None, str] = {}
    for name in sorted(serverless_functions(sam_template)):
        target = function_properties(sam_template, name).get("LoggingConfig", {}).get("LogGroup")
        log_group = log_group_of(sam_template, target, f"{name} LoggingConfig.LogGroup")
        assert log_group.get("RetentionInDays") == {"Ref": "LogRetentionDays"}, f"{name}: retention"
        # Named after the function resource would be a circular dependency (function -> group -> function).
        assert name not in set(refs_in(log_group)), f"{name}: its log group's name refers to the function"
        group = referenced_resource(target)
        assert group not in seen, f"{name} and {seen.get(group)} share a log group"
        seen[group] = name


def test_every_http_api_alarms_on_5xx(sam_template: dict[str, Any]) -> None:
    apis = resources_of_type(sam_template, "AWS::Serverless::HttpApi")
    assert apis, "expected an HTTP API"
    by_api = alarms_on(sam_template, "AWS/ApiGateway", "5xx", "ApiId")
    for name in sorted(apis):
        assert any(fires_at(a, 5) for a in by_api.get(name, [])), f"{name}: no alarm on 5xx responses"


def test_every_http_api_stage_writes_access_logs_without_query_strings_or_headers(
    cfn_template: dict[str, Any],
) -> None:
    stages = resources_of_type(cfn_template, "AWS::ApiGatewayV2::Stage")
    assert stages, "expected the HTTP API's stage"
    for name, stage in stages.items():
        settings = stage["Properties"].get("AccessLogSettings")
        assert settings, f"{name} writes no access log"
        log_group = log_group_of(cfn_template, settings["DestinationArn"], name)
        assert log_group.get("RetentionInDays") == {"Ref": "LogRetentionDays"}, f"{name}: retention"
        fields = json.loads(settings["Format"])
        expected = {"requestId", "ip", "requestTime", "httpMethod", "routeKey", "status", "responseLength"}
        assert expected | {"integrationErrorMessage"} <= set(fields), f"{name}: access log fields"
        private = [v for v in fields.values() if any(p in v.lower() for p in PRIVATE_ACCESS_LOG_VARIABLES)]
        assert not private, f"{name}: the access log must not record {private}"


def test_ses_reputation_alarms_fire_before_ses_reviews_the_account(sam_template: dict[str, Any]) -> None:
    # SES reviews an account at a 5% bounce rate or a 0.1% complaint rate (account-wide metrics).
    for metric, review_at in (("Reputation.BounceRate", 0.05), ("Reputation.ComplaintRate", 0.001)):
        found = alarms_on(sam_template, "AWS/SES", metric, None).get(None, [])
        assert found, f"no account-level alarm on {metric}"
        for alarm in found:
            assert float(alarm["Threshold"]) < review_at and fires_at(alarm, review_at), (
                f"{metric}: the alarm at {alarm['Threshold']} must fire below SES's review at {review_at}"
            )


def test_the_configuration_sets_publish_reputation_metrics(sam_template: dict[str, Any]) -> None:
    sets = resources_of_type(sam_template, "AWS::SES::ConfigurationSet")
    for name, configuration_set in sets.items():
        options = configuration_set["Properties"].get("ReputationOptions", {})
        assert options.get("ReputationMetricsEnabled") is True, name


def test_the_table_has_deletion_protection(sam_template: dict[str, Any]) -> None:
    tables = resources_of_type(sam_template, "AWS::DynamoDB::Table")
    assert tables, "expected a DynamoDB table"
    for name, table in tables.items():
        assert table["Properties"].get("DeletionProtectionEnabled") is True, f"{name}: no deletion protection"
        assert table.get("DeletionPolicy") == "Retain", f"{name}: a stack delete would delete it"


def dashboard_metrics(template: dict[str, Any]) -> list[list[Any]]:
    """Every metric line of the dashboards' widgets (``${...}`` left as written: inside JSON strings)."""
    found = []
    for name, body in dashboard_bodies(template).items():
        widgets = json.loads(body)["widgets"]
        assert widgets, f"{name} has no widgets"
        for widget in widgets:
            found.extend(widget.get("properties", {}).get("metrics", []))
    return found


def test_the_dashboard_shows_every_dead_letter_queue_and_function(sam_template: dict[str, Any]) -> None:
    shown = {tuple(m[:4]) for m in dashboard_metrics(sam_template) if len(m) >= 4}
    for queue in sorted(dead_letter_queues(sam_template)):
        line = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"${{{queue}.QueueName}}")
        assert line in shown, f"the dashboard does not show how many messages wait in {queue}"
    for name in sorted(serverless_functions(sam_template)):
        assert ("AWS/Lambda", "Errors", "FunctionName", f"${{{name}}}") in shown, (
            f"the dashboard does not show {name}'s errors"
        )


def test_the_dashboard_shows_only_metrics_the_code_emits(sam_template: dict[str, Any]) -> None:
    exact, prefixes = emitted_metric_names()
    assert exact and prefixes, "expected add_metric calls in the handlers"
    shown = {str(m[1]) for m in dashboard_metrics(sam_template) if m and m[0] == "kindling"}
    assert shown, "the dashboard shows no kindling metrics"
    unknown = [m for m in sorted(shown) if m not in exact and not any(m.startswith(p) for p in prefixes)]
    assert not unknown, f"no handler emits {unknown}"
