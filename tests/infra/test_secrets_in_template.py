"""Secrets are Secrets Manager secrets: never parameters or plain environment values, each read by few."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document = yaml_parse((ROOT / "template.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


def _secrets(template: dict[str, Any]) -> set[str]:
    return {k for k, v in template["Resources"].items() if v["Type"] == "AWS::SecretsManager::Secret"}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def test_no_parameter_carries_a_secret(template: dict[str, Any]) -> None:
    hidden = [name for name, spec in template["Parameters"].items() if spec.get("NoEcho")]
    assert hidden == [], "secrets belong in Secrets Manager, not in parameters that land in the environment"


def test_each_function_may_read_exactly_the_secrets_its_environment_names(template: dict[str, Any]) -> None:
    secrets = _secrets(template)
    assert {
        "WriteKeySecret",
        "AdminTokenSecret",
        "LinkSigningSecret",
        "ErasureKeySecret",
        "HandoffSigningSecret",
    } <= secrets
    readers: dict[str, set[str]] = {}
    for name, function in _functions(template).items():
        properties = function["Properties"]
        named = _refs(properties.get("Environment", {})) & secrets
        readable = {
            policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
            for policy in properties.get("Policies", [])
            if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy
        }
        assert readable == named, (
            f"{name} may read {sorted(readable)} but its environment names {sorted(named)}"
        )
        for variable, value in properties.get("Environment", {}).get("Variables", {}).items():
            if _refs(value) & secrets:
                assert variable.endswith("_ARN"), f"{name}: {variable} holds a secret's ARN; name it so"
        for secret in named:
            readers.setdefault(secret, set()).add(name)
    assert set(readers) == secrets, f"secrets nobody reads: {sorted(secrets - set(readers))}"
    assert readers["AdminTokenSecret"] == {"LeadsApiFunction"}
    assert readers["WriteKeySecret"] == {"CaptureFunction"}


def test_the_crm_secrets_initial_value_never_changes(template: dict[str, Any]) -> None:
    """Operators fill this secret in; CloudFormation would overwrite their values if the literal changed."""
    import json

    literal = template["Resources"]["CrmWebhookSecrets"]["Properties"]["SecretString"]
    assert json.loads(literal) == {
        "hubspot_client_secret": "",
        "pipedrive_user": "",
        "pipedrive_password": "",
        "salesforce_org_id": "",
        "salesforce_secret": "",
        "webhook_secret": "",
    }, "changing this value resets every deployed stack's CRM credentials: add fields in code instead"
