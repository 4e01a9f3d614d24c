"""The operator's `kindling config` commands, against files and against the running local stack."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, RunningStack

pytestmark = pytest.mark.e2e


def kindling(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kindling_ops.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_accepts_the_shipped_config() -> None:
    result = kindling("config", "validate")
    assert result.returncode == 0, result.stderr
    assert "scoring.yaml: valid (10 engagement rules, 7 fit rules)" in result.stdout


def test_validate_names_every_problem_and_fails(tmp_path: Path) -> None:
    text = (ROOT / "config/scoring.yaml").read_text()
    (tmp_path / "scoring.yaml").write_text(
        text.replace("points: 40", "points: forty").replace("cap: {per_day: 1}", "cap: {per_week: 1}", 1)
    )
    result = kindling("config", "validate", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "engagement rule 'demo-request'.points" in result.stderr
    assert "engagement rule 'pricing-page'.cap.per_week: unknown key" in result.stderr


def test_apply_to_the_local_stack_stores_a_new_version_only_when_something_changed(
    stack: RunningStack, tmp_path: Path
) -> None:
    port = stack.url.rsplit(":", 1)[1]
    # Only scoring.yaml: the other files are optional, and what was applied before stays in force.
    shutil.copy(ROOT / "config/scoring.yaml", tmp_path / "scoring.yaml")
    unchanged = kindling("config", "apply", "--local", "--port", port, "--dir", str(tmp_path))
    assert unchanged.returncode == 0, unchanged.stderr
    assert "config scoring: unchanged, version" in unchanged.stdout
    edited = (tmp_path / "scoring.yaml").read_text().replace("Requested a demo", "Asked for a demo")
    (tmp_path / "scoring.yaml").write_text(edited)
    applied = kindling("config", "apply", "--local", "--port", port, "--dir", str(tmp_path))
    assert applied.returncode == 0, applied.stderr
    assert "config scoring: applied as version" in applied.stdout


def test_apply_needs_to_know_where() -> None:
    result = kindling("config", "apply")
    assert result.returncode == 2 and "--local" in result.stderr


# --- kindling doctor --------------------------------------------------------------------------------


def test_doctor_passes_a_healthy_local_stack_after_a_round_trip_and_leaves_no_test_lead(
    stack: RunningStack, tmp_path: Path
) -> None:
    import boto3

    port = stack.url.rsplit(":", 1)[1]
    shutil.copy(ROOT / "config/scoring.yaml", tmp_path / "scoring.yaml")
    assert kindling("config", "apply", "--local", "--port", port, "--dir", str(tmp_path)).returncode == 0
    result = kindling("doctor", "--local", "--port", port, "--config", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {
        line.split()[0] + " " + line.split()[1]: line for line in result.stdout.splitlines() if line.strip()
    }
    assert " ok " in lines["round trip"] and "test lead removed" in lines["round trip"]
    assert " ok " in lines["config scoring"]
    assert "WARN" in lines["secret LinkSigningSecret"], "dev defaults are flagged, as warnings locally"
    table = boto3.client(
        "dynamodb",
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    name = next(t for t in table.list_tables()["TableNames"])
    left = [item for item in table.scan(TableName=name)["Items"] if "kindling-doctor" in str(item)]
    assert left == []


def test_doctor_fails_on_dead_letters_and_config_that_was_not_applied_saying_what_to_do(
    stack: RunningStack, tmp_path: Path
) -> None:
    import boto3

    port = stack.url.rsplit(":", 1)[1]
    edited = (ROOT / "config/scoring.yaml").read_text().replace("half_life_days: 30", "half_life_days: 31")
    assert edited != (ROOT / "config/scoring.yaml").read_text()
    (tmp_path / "scoring.yaml").write_text(edited)
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    dlq = sqs.get_queue_url(QueueName="kindling-ProfilesDeadLetterQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody='{"poison": true}')
    try:
        result = kindling("doctor", "--local", "--port", port, "--config", str(tmp_path), "--no-round-trip")
    finally:
        sqs.purge_queue(QueueUrl=dlq)
    assert result.returncode == 1, result.stdout
    assert "dead letters Profiles" in result.stdout and "FAIL" in result.stdout
    assert "kindling dlq redrive ProfilesDeadLetterQueue --local" in result.stdout
    assert "differs from config/scoring.yaml" in result.stdout
    assert "kindling config apply --local" in result.stdout
    assert "round trip" not in result.stdout


def test_doctor_needs_to_know_where() -> None:
    result = kindling("doctor")
    assert result.returncode == 2
    assert "--local" in result.stderr and "--stack" in result.stderr
