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

from kindling import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

#: Values for the parameters that have no default (both must pass MinLength).
PARAMETER_VALUES = {
    "WriteKey": "test-write-key-0123456789",
    "AdminToken": "test-admin-token-0123456789",
}

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
