"""Start `kindling local` as a user would, in its own process, and drive it over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from kindling_ops.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
WRITE_KEY = "e2e-write-key"
ADMIN_TOKEN = "e2e-admin-token-0123456789"
ALLOWED_ORIGIN = "https://www.acme.io"


@dataclass
class RunningStack:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def aws_endpoint(self) -> str:
        for line in self.output:
            match = re.search(r"embedded AWS \(moto\) on (\S+)", line)
            if match:
                return f"http://{match.group(1)}"
        raise AssertionError("the stack did not say where its AWS endpoint is")

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def settle(self, timeout: float = 20) -> None:
        response = requests.post(
            f"{self.url}/_local/settle", params={"timeout": timeout}, timeout=timeout + 5
        )
        assert response.status_code == 200, response.text

    def advance(self, seconds: float) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_local/clock", json={"advance_seconds": seconds}, timeout=60)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def lead_by_email(self, email: str) -> requests.Response:
        return requests.get(f"{self.url}/v1/leads", params={"email": email}, headers=self.admin(), timeout=10)


def start_stack(*extra_args: str, env: dict[str, str] | None = None) -> RunningStack:
    port = free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "KINDLING_WRITE_KEY": WRITE_KEY,
        "KINDLING_ADMIN_TOKEN": ADMIN_TOKEN,
        "KINDLING_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    for inherited in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        environment.pop(inherited, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kindling_ops.cli", "local", *extra_args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = RunningStack(url=f"http://127.0.0.1:{port}", process=process)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line.rstrip())
            if "is listening on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready.is_set():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the local stack did not start:\n" + "\n".join(stack.output))
        ready.wait(0.1)
    return stack


def stop_stack(stack: RunningStack) -> int:
    stack.process.send_signal(signal.SIGTERM)
    try:
        return stack.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
    yield running
    assert stop_stack(running) == 0, "\n".join(running.output[-30:])
    assert "stopped." in running.output[-1]
