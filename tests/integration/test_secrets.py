"""Secrets come from Secrets Manager on use: a rotated value is in force without a redeploy."""

from __future__ import annotations

import json
import os

import boto3

from tests.integration.events import Context, http_event
from tests.integration.test_crm_webhooks import (  # noqa: F401 (fixtures)
    STAGE_CHANGED,
    crm_bus,
    crm_table,
    environment,
    generic_request,
)
from tests.integration.test_handlers import basic, bus_with_queue  # noqa: F401 (fixture)

OLD_KEY, NEW_KEY = "write-key-before-rotation", "write-key-after-rotation"


def rotate(variable: str, value: str) -> None:
    """What an operator does: put a new value in the secret the function's environment names."""
    boto3.client("secretsmanager").put_secret_value(SecretId=os.environ[variable], SecretString=value)


def track(capture, key: str) -> int:
    event = http_event(
        "POST", "/v1/track", body={"userId": "u1", "event": "x"}, headers={"Authorization": basic(key)}
    )
    return int(capture.lambda_handler(event, Context())["statusCode"])


def test_a_read_secret_is_cached_for_its_max_age(load_handler, bus_with_queue) -> None:  # noqa: F811
    capture = load_handler(
        "capture",
        PROFILES_QUEUE_URL=bus_with_queue[1],
        ALLOWED_ORIGINS="*",
        secrets={"WRITE_KEY_SECRET_ARN": OLD_KEY},
    )
    assert track(capture, OLD_KEY) == 200
    rotate("WRITE_KEY_SECRET_ARN", NEW_KEY)
    assert track(capture, OLD_KEY) == 200, "within its max age the cached value is used (no call per request)"
    assert capture.write_key.max_age_seconds == 300


def test_a_rotated_write_key_is_in_force_once_the_cached_value_has_expired(
    load_handler,
    bus_with_queue,  # noqa: F811
) -> None:
    capture = load_handler(
        "capture",
        PROFILES_QUEUE_URL=bus_with_queue[1],
        ALLOWED_ORIGINS="*",
        secrets={"WRITE_KEY_SECRET_ARN": OLD_KEY},
    )
    capture.write_key.max_age_seconds = 0  # every read is past its max age, as five minutes later
    assert track(capture, OLD_KEY) == 200
    rotate("WRITE_KEY_SECRET_ARN", NEW_KEY)
    assert track(capture, NEW_KEY) == 200
    assert track(capture, OLD_KEY) == 401


def test_crm_credentials_that_are_not_json_turn_the_webhooks_off_with_a_503_naming_the_problem(
    load_handler,
    crm_table,  # noqa: F811
    crm_bus,  # noqa: F811
) -> None:
    settings = environment(crm_table, crm_bus[0])
    settings["secrets"] = {"CRM_SECRETS_ARN": "hubspot_client_secret=abc"}
    module = load_handler("crm_webhooks", **settings)
    response = module.lambda_handler(generic_request(STAGE_CHANGED), Context())
    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["error"] == "not_configured"
    assert "not JSON" in body["message"] and "abc" not in body["message"]


def test_a_provider_turned_on_in_the_secret_works_without_reloading_the_function(
    load_handler,
    crm_table,  # noqa: F811
    crm_bus,  # noqa: F811
) -> None:
    module = load_handler("crm_webhooks", **environment(crm_table, crm_bus[0], webhook_secret=""))
    module.crm_secrets.max_age_seconds = 0
    assert module.lambda_handler(generic_request(STAGE_CHANGED), Context())["statusCode"] == 503
    rotate("CRM_SECRETS_ARN", environment(crm_table, crm_bus[0])["secrets"]["CRM_SECRETS_ARN"])
    assert module.lambda_handler(generic_request(STAGE_CHANGED), Context())["statusCode"] == 200
