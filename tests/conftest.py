"""Shared fixtures: an embedded moto server for integration tests, and per-test resources."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from kindling.adapters import aws

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One embedded AWS for the whole run; every boto3 client in the process goes there."""
    from kindling_ops.local.aws import EmbeddedAws

    server = EmbeddedAws().start()
    endpoint = server.endpoint
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    aws.reset()
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    aws.reset()


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture(scope="session")
def table_definition() -> dict[str, Any]:
    """The single table's keys and indexes, read from template.yaml (the one source of truth)."""
    from kindling_ops.local.provision import _TABLE_KEYS
    from kindling_ops.local.template import Template

    template = Template.from_file(
        ROOT / "template.yaml",
        {"HandoffUrl": "http://x"},
    )
    properties = template.resolve(template.properties("Table"))
    return {key: properties[key] for key in _TABLE_KEYS if key in properties}


@pytest.fixture
def table(dynamodb: Any, table_definition: dict[str, Any]) -> Iterator[str]:
    """A fresh single table shaped like the template's."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    dynamodb.create_table(TableName=name, **table_definition)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
