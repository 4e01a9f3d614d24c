"""Read template.yaml the way CloudFormation would, far enough for the local stack.

The local stack creates nothing from a second list: every table, queue, rule, route,
queue subscription and schedule comes from the SAM template, with intrinsic functions
resolved against local names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
ACCOUNT = "123456789012"


class TemplateError(Exception):
    pass


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(), Loader=_CfnLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} has no Resources")
    return document


@dataclass
class Template:
    """A loaded template with its parameters bound and names chosen for every resource."""

    document: dict[str, Any]
    root: Path
    parameters: dict[str, Any]
    stack_name: str = "kindling"
    endpoint: str = "http://127.0.0.1"
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(
        cls,
        path: Path,
        parameters: dict[str, str],
        stack_name: str = "kindling",
        endpoint: str = "http://127.0.0.1",
    ) -> Template:
        document = load(path)
        bound: dict[str, Any] = {}
        for name, spec in (document.get("Parameters") or {}).items():
            if name in parameters:
                value: Any = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no value and no default")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            bound[name] = value
        template = cls(
            document=document, root=path.parent, parameters=bound, stack_name=stack_name, endpoint=endpoint
        )
        template.names = {logical: template._physical_name(logical) for logical in template.resources}
        return template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.document["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == resource_type}

    def properties(self, logical: str) -> dict[str, Any]:
        return self.resources[logical].get("Properties") or {}

    def globals(self, section: str) -> dict[str, Any]:
        return (self.document.get("Globals") or {}).get(section) or {}

    def _physical_name(self, logical: str) -> str:
        props = self.properties(logical)
        explicit = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Events::EventBus": "Name",
            "AWS::Events::Rule": "Name",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::SES::ConfigurationSet": "Name",
            "AWS::SecretsManager::Secret": "Name",
        }.get(self.resources[logical]["Type"])
        if explicit and explicit in props:
            return str(self.resolve(props[explicit]))
        return f"{self.stack_name}-{logical}"

    # --- intrinsic functions ------------------------------------------------
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        kind = self.resources[name]["Type"]
        if kind == "AWS::SQS::Queue":
            return self.queue_url(name)
        return self.names.get(name, name)

    def queue_url(self, logical: str) -> str:
        return f"{self.endpoint}/{ACCOUNT}/{self.names[logical]}"

    def get_att(self, logical: str, attribute: str) -> Any:
        if logical not in self.resources:
            raise TemplateError(f"!GetAtt {logical}.{attribute}: no such resource")
        kind = self.resources[logical]["Type"]
        name = self.names[logical]
        service = {
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        }
        if attribute == "Arn" and kind in service:
            return service[kind]
        if attribute in ("QueueName", "Name"):
            return name
        if attribute == "QueueUrl":
            return self.queue_url(logical)
        raise TemplateError(f"!GetAtt {logical}.{attribute} is not supported by the local stack")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                name, when_true, when_false = arg
                chosen = when_true if self.condition(name) else when_false
                return self.resolve(chosen)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local stack")
        return {k: self.resolve(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        conditions = self.document.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"condition {name} is not defined")
        return self._truth(conditions[name])

    def _truth(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, arg),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return bool(left == right)
            if key == "Fn::Not":
                return not self._truth(arg[0])
            if key == "Fn::And":
                return all(self._truth(a) for a in arg)
            if key == "Fn::Or":
                return any(self._truth(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
        raise TemplateError(f"condition {expression!r} is not supported by the local stack")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    module_file: Path
    attribute: str
    environment: dict[str, str]
    timeout: int
    events: dict[str, dict[str, Any]]


def functions(template: Template) -> list[FunctionSpec]:
    defaults = template.globals("Function")
    specs = []
    for logical, resource in template.of_type("AWS::Serverless::Function").items():
        props = resource.get("Properties") or {}
        code_uri = props.get("CodeUri", defaults.get("CodeUri"))
        handler = props.get("Handler", defaults.get("Handler"))
        if not code_uri or not handler:
            raise TemplateError(f"{logical} needs CodeUri and Handler")
        module, _, attribute = str(handler).rpartition(".")
        code_dir = (template.root / str(code_uri)).resolve()
        environment: dict[str, str] = {}
        for source in (defaults.get("Environment"), props.get("Environment")):
            for key, value in ((source or {}).get("Variables") or {}).items():
                resolved = template.resolve(value)
                environment[key] = ",".join(resolved) if isinstance(resolved, list) else str(resolved)
        specs.append(
            FunctionSpec(
                logical_id=logical,
                name=template.names[logical],
                code_dir=code_dir,
                module_file=code_dir / (module.replace(".", "/") + ".py"),
                attribute=attribute,
                environment=environment,
                timeout=int(props.get("Timeout", defaults.get("Timeout", 3))),
                events={k: v for k, v in (props.get("Events") or {}).items()},
            )
        )
    return specs
