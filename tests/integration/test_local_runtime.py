"""Each function of the local stack runs as Lambda runs it: its own process, path and environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kindling_ops.layer import lambda_path
from kindling_ops.local.runtime import FunctionError, FunctionImportError, LocalRuntime
from kindling_ops.local.template import FunctionSpec

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".pytest_cache" / "lambda"

PROBE = """
import os, sys

COLD_STARTS = [os.getpid()]
invocations = []


def handler(event, context):
    from kindling.kernel import clock

    invocations.append(event["n"])
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {
        "pid": os.getpid(),
        "cold_starts": len(COLD_STARTS),
        "invocations": list(invocations),
        "greeting": os.environ.get("GREETING"),
        "other": os.environ.get("OTHER_FUNCTION_ONLY"),
        "yaml_importable": _importable("yaml"),
        "moto_importable": _importable("moto"),
        "now": clock.current().now().isoformat(),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
    }


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True
"""


def spec(tmp_path: Path, name: str, source: str, **environment: str) -> FunctionSpec:
    code = tmp_path / name
    code.mkdir()
    (code / "app.py").write_text(source)
    return FunctionSpec(name, f"stack-{name}", code, code / "app.py", "handler", environment, 10, {})


@pytest.fixture
def runtime(tmp_path: Path):
    specs = [
        spec(tmp_path, "Probe", PROBE, GREETING="hello"),
        spec(tmp_path, "Other", PROBE, OTHER_FUNCTION_ONLY="mine"),
    ]
    running = LocalRuntime(specs, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, lambda_path(CACHE))
    running.start()
    yield running
    running.stop()


def test_a_function_runs_in_its_own_process_with_its_own_environment_and_keeps_its_state(runtime) -> None:
    first = runtime.invoke("Probe", {"n": 1})
    second = runtime.invoke("Probe", {"n": 2})
    other = runtime.invoke("Other", {"n": 3})
    assert first["pid"] == second["pid"] != os.getpid() != other["pid"]
    assert second["cold_starts"] == 1 and second["invocations"] == [1, 2], "module state lives on"
    assert (first["greeting"], first["other"]) == ("hello", None)
    assert (other["greeting"], other["other"]) == (None, "mine")
    assert "GREETING" not in os.environ, "nothing is set in the stack's own environment"
    assert first["function_name"] == "stack-Probe" and 0 < first["remaining_ms"] <= 10_000


def test_only_the_layer_and_boto3_are_importable_not_the_development_environment(runtime) -> None:
    answer = runtime.invoke("Probe", {"n": 1})
    assert answer["yaml_importable"] is False and answer["moto_importable"] is False


def test_the_function_reads_the_stacks_time(runtime) -> None:
    from datetime import UTC, datetime, timedelta

    from kindling.kernel import clock

    monday = datetime(2027, 3, 1, 13, 0, tzinfo=UTC)
    clock.install(clock.FixedClock(monday))
    try:
        answer = runtime.invoke("Probe", {"n": 1})
    finally:
        clock.install(clock.SystemClock())
    assert datetime.fromisoformat(answer["now"]) - monday < timedelta(seconds=5)


def test_a_failing_invocation_reports_its_error_and_the_next_one_runs(runtime) -> None:
    with pytest.raises(FunctionError, match="ValueError: asked to fail"):
        runtime.invoke("Probe", {"n": 1, "fail": True})
    assert runtime.invoke("Probe", {"n": 2})["invocations"] == [1, 2]


def test_a_function_that_cannot_import_fails_the_start_with_its_error(tmp_path: Path) -> None:
    broken = spec(tmp_path, "Broken", "import yaml\n\ndef handler(event, context):\n    return 1\n")
    runtime = LocalRuntime([broken], {}, lambda_path(CACHE))
    with pytest.raises(FunctionImportError) as error:
        runtime.start()
    assert "Broken cannot start" in str(error.value) and "No module named 'yaml'" in str(error.value)
