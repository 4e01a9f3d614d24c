"""One function's execution environment, as Lambda gives it: its own process, path and environment.

The local stack starts this file once per function with ``python -I -S`` (no site-packages,
no ``PYTHON*`` variables) and ``sys.path`` set to what Lambda gives the function: its CodeUri,
the layer (the ``kindling`` package and what ``shared/requirements.txt`` installs) and the
runtime's boto3. The environment is the function's own, from the template. The handler is
imported once (the cold start) and module-level state lives on between invocations.

It reads one invocation per line on stdin and answers one line on the file descriptor it is
given (stdout and stderr stay the function's own, as its logs). This file uses only the
standard library: nothing of the operator tool is importable here.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class InvocationContext:
    """The Lambda context of one invocation, from the fields the local stack sent."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.function_name = fields["function_name"]
        self.function_version = fields["function_version"]
        self.invoked_function_arn = fields["invoked_function_arn"]
        self.memory_limit_in_mb = fields["memory_limit_in_mb"]
        self.aws_request_id = fields["aws_request_id"]
        self.log_group_name = fields["log_group_name"]
        self.log_stream_name = fields["log_stream_name"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + fields["remaining_ms"] / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def _answer(channel: Any, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _install_time(now: str) -> None:
    """The stack's time for this invocation: it runs on from ``now`` like a wall clock."""
    from datetime import datetime

    from kindling.kernel import clock

    clock.install(clock.OffsetClock(datetime.fromisoformat(now)))


def main() -> int:
    spec = json.loads(sys.argv[1])
    sys.path[:0] = spec["path"]
    channel = os.fdopen(int(spec["answer_fd"]), "w", buffering=1)
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(spec["module"]), spec["attribute"])
    except BaseException:
        _answer(channel, {"ready": False, "error": traceback.format_exc()})
        return 1
    _answer(channel, {"ready": True, "import_ms": round((time.perf_counter() - started) * 1000)})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            _install_time(request["now"])
            result = handler(request["event"], InvocationContext(request["context"]))
            _answer(channel, {"ok": True, "result": result})
        except BaseException as exc:  # the runtime reports every failure; the next invocation goes on
            _answer(
                channel,
                {
                    "ok": False,
                    "error_type": type(exc).__name__,
                    "error_message": str(exc),
                    "traceback": traceback.format_exc(),
                },
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
