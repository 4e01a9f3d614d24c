"""Load real handler modules with the environment a test gives them."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The admin token the API handlers here are loaded with.
ADMIN = "admin-token-integration-1"


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str):
    def load(
        function: str, secrets: dict[str, str] | None = None, module: str = "handler", **environment: str
    ) -> ModuleType:
        """``secrets`` maps a ``*_SECRET_ARN``-style variable to a value, put in Secrets Manager for it;
        ``module`` is the file in the function's code (``handler`` unless the template says another)."""
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        for variable, value in (secrets or {}).items():
            name = f"test/{variable.lower()}/{uuid.uuid4().hex[:8]}"
            arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
            monkeypatch.setenv(variable, arn)
        path = ROOT / "functions" / function / f"{module}.py"
        spec = importlib.util.spec_from_file_location(f"{module}_{function}_{uuid.uuid4().hex}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # as Lambda's importer would register it
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def weeks_later() -> Iterator[None]:
    """The process clock weeks after November 2026: metric events of then reach the consumer late
    (a redrive, a CRM import), so it counts each at once."""
    from datetime import UTC, datetime

    from kindling.kernel import clock

    clock.install(clock.FixedClock(datetime(2026, 12, 12, tzinfo=UTC)))
    yield
    clock.install(clock.SystemClock())


@pytest.fixture
def metrics(load_handler, table: str) -> ModuleType:
    """The metrics consumer, with the default attribution window."""
    return load_handler("metrics", TABLE_NAME=table, ATTRIBUTION_WINDOW_DAYS="14")


@pytest.fixture
def metrics_fold(load_handler, table: str) -> ModuleType:
    """The metrics fold, with the default attribution window."""
    return load_handler("metrics", module="fold", TABLE_NAME=table, ATTRIBUTION_WINDOW_DAYS="14")


@pytest.fixture
def leads_api(load_handler, table: str) -> ModuleType:
    """The admin API (profiles and reports), its send queue unused."""
    return load_handler(
        "leads_api",
        TABLE_NAME=table,
        SEND_QUEUE_URL="http://unused",
        PROGRAMS_QUEUE_URL="http://unused",
        BUS_NAME="unused-bus",
        PUBLIC_API_URL="http://127.0.0.1:3000",
        secrets={
            "ADMIN_TOKEN_SECRET_ARN": ADMIN,
            "LINK_SECRET_ARN": "link-secret-integration-0123456789",
            "ERASURE_KEY_SECRET_ARN": "erasure-key-integration-0123456789",
        },
    )
