"""Runs each function in its own worker process, as Lambda runs it in its execution environment.

A worker (``worker.py``) is started from the template per function: ``python -I -S`` with
only the function's CodeUri, the layer as ``sam build`` makes it (``kindling_ops.layer``:
pip's install of ``shared/requirements.txt``, built once and cached until it changes) and
boto3 on its path, and only its own environment (the template's variables, Lambda's own,
and the embedded AWS's endpoint). It imports the handler once, keeps module-level state
between invocations, and runs one invocation at a time. A function that cannot import
fails the start with its error. Nothing here touches ``os.environ``.

Each invocation carries the stack's time: the worker's clock runs on from it. With a capacity
meter (``meter.py``), each worker labels its AWS requests with its function's logical id, and
every invocation is counted with the time its handler ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kindling.kernel import clock as kindling_clock
from kindling_ops.lambda_events import LambdaContext
from kindling_ops.layer import LambdaPath, lambda_environment
from kindling_ops.local.meter import Meter
from kindling_ops.local.template import REGION, FunctionSpec

WORKER = Path(__file__).with_name("worker.py")
#: Beyond the function's own timeout, how long an answer may take (the worker's own overhead).
GRACE_SECONDS = 5.0


class FunctionImportError(Exception):
    """A function failed its cold start: the stack does not start, and says why."""


class FunctionError(Exception):
    """An invocation raised: the type and message of the function's own exception."""

    def __init__(self, function: str, error_type: str, message: str, trace: str) -> None:
        super().__init__(f"{error_type}: {message}" if message else error_type)
        self.function = function
        self.error_type = error_type
        self.trace = trace


class Worker:
    """One function's process and the pipe its answers come back on."""

    def __init__(
        self, spec: FunctionSpec, path: LambdaPath, environment: dict[str, str], meter: Meter | None = None
    ) -> None:
        self.spec = spec
        self._path = path
        self._environment = environment
        self._meter = meter
        self.lock = threading.Lock()
        self.import_ms = 0
        self._process: subprocess.Popen[str] | None = None
        self._answers: Any = None

    def start(self) -> None:
        module = self.spec.module_file.relative_to(self.spec.code_dir).with_suffix("").as_posix()
        read_fd, write_fd = os.pipe()
        config = {
            "path": self._path.for_function(self.spec.code_dir),
            "module": module.replace("/", "."),
            "attribute": self.spec.attribute,
            "answer_fd": write_fd,
        }
        if self._meter is not None:
            config["metered_as"] = self.spec.logical_id
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER), json.dumps(config)],
            cwd=self.spec.code_dir,
            env=self._environment,
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            text=True,
        )
        os.close(write_fd)
        self._answers = os.fdopen(read_fd, "r")
        ready = self._read(timeout=120)
        if ready is None or not ready.get("ready"):
            error = (ready or {}).get("error") or "the worker exited before it was ready"
            self.stop()
            raise FunctionImportError(f"{self.spec.logical_id} cannot start:\n{error}")
        self.import_ms = int(ready.get("import_ms", 0))

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The worker's next answer, or None when it died or took longer than ``timeout``."""
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._answers.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            return None
        return dict(json.loads(result[0]))

    def invoke(self, event: dict[str, Any]) -> Any:
        with self.lock:
            if self._process is None or self._process.poll() is not None:
                self.start()  # a worker that died (or timed out) gets a new cold start
            assert self._process is not None and self._process.stdin is not None
            context = LambdaContext(
                function_name=self.spec.name,
                timeout_seconds=self.spec.timeout,
                aws_request_id=str(uuid.uuid4()),
            )
            request = {
                "event": event,
                "now": kindling_clock.current().now().isoformat(),
                "context": {
                    "function_name": context.function_name,
                    "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "aws_request_id": context.aws_request_id,
                    "log_group_name": context.log_group_name,
                    "log_stream_name": context.log_stream_name,
                    "remaining_ms": context.get_remaining_time_in_millis(),
                },
            }
            self._process.stdin.write(json.dumps(request, default=str) + "\n")
            self._process.stdin.flush()
            sent = time.perf_counter()
            answer = self._read(timeout=self.spec.timeout + GRACE_SECONDS)
            if self._meter is not None:
                # The handler's own time as the worker measured it; the whole wait when it gave none.
                reported = (answer or {}).get("duration_ms")
                duration = float(reported) if reported is not None else (time.perf_counter() - sent) * 1000
                self._meter.add_invocation(self.spec.logical_id, duration, not (answer or {}).get("ok"))
            if answer is None:
                exit_code = self._process.poll()
                self.stop()  # as Lambda does: a crashed or timed-out environment is not reused
                if exit_code is not None:
                    raise FunctionError(
                        self.spec.logical_id, "Runtime.ExitError", f"the process exited with {exit_code}", ""
                    )
                raise FunctionError(
                    self.spec.logical_id, "Timeout", f"no answer within {self.spec.timeout} s", ""
                )
        if answer.get("ok"):
            return answer.get("result")
        raise FunctionError(
            self.spec.logical_id,
            str(answer.get("error_type")),
            str(answer.get("error_message")),
            str(answer.get("traceback")),
        )

    def stop(self) -> None:
        self.close_input()
        self.finish(time.monotonic() + 2)

    def close_input(self) -> None:
        """Tell the worker to exit: it does once its invocation in flight, if any, returns."""
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()

    def finish(self, deadline: float) -> None:
        """Wait for the worker to exit until ``deadline`` (monotonic), then kill it."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if self._answers is not None:
            self._answers.close()
            self._answers = None


class LocalRuntime:
    """The functions of a template, each in its worker."""

    def __init__(
        self,
        specs: list[FunctionSpec],
        base_environment: dict[str, str],
        path: LambdaPath,
        meter: Meter | None = None,
    ) -> None:
        self.specs = {spec.logical_id: spec for spec in specs}
        self.meter = meter
        self.workers = {
            spec.logical_id: Worker(
                spec,
                path,
                lambda_environment(spec.name, {**base_environment, **spec.environment}, REGION),
                meter,
            )
            for spec in specs
        }

    def start(self) -> dict[str, int]:
        """Start every worker (their cold starts run side by side); import time per function, in ms."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            failures = [f for f in pool.map(self._start_one, self.workers.values()) if f is not None]
        if failures:
            self.stop()
            raise FunctionImportError("\n".join(str(f) for f in failures))
        return {name: worker.import_ms for name, worker in self.workers.items()}

    @staticmethod
    def _start_one(worker: Worker) -> FunctionImportError | None:
        try:
            worker.start()
        except FunctionImportError as exc:
            return exc
        return None

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        return self.workers[logical_id].invoke(event)

    def stop(self) -> None:
        """Stop every worker within about 2 seconds in all, not 2 each: told together, waited together.

        A worker still inside an invocation (a queue batch after the clock moved days) is killed
        then, as Lambda would end it; its message returns to its queue.
        """
        for worker in self.workers.values():
            worker.close_input()
        deadline = time.monotonic() + 2
        for worker in self.workers.values():
            worker.finish(deadline)
