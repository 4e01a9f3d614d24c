"""One function's execution environment, as Lambda gives it: its own process, path and environment.

The local stack starts this file once per function with ``python -I -S`` (no site-packages,
no ``PYTHON*`` variables) and ``sys.path`` set to what Lambda gives the function: its CodeUri,
the layer (the ``kindling`` package and what ``shared/requirements.txt`` installs) and the
runtime's boto3. The environment is the function's own, from the template. The handler is
imported once (the cold start) and module-level state lives on between invocations.

It reads one invocation per line on stdin and answers one line on the file descriptor it is
given (stdout and stderr stay the function's own, as its logs). This file uses only the
standard library and what is on the function's path (botocore): nothing of the operator tool
is importable here.

When the stack meters capacity, the spec names the function (``metered_as``): every AWS request
it makes then carries that name in a header, and each answer says how long the handler ran. Such
a worker imports botocore before the handler, so its cold start is not the function's own.
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


#: The header the local stack's capacity meter reads (``kindling_ops.local.meter.FUNCTION_HEADER``).
FUNCTION_HEADER = "X-Kindling-Function"


def _label_aws_requests(function: str) -> None:
    """Every AWS client made from now on adds ``FUNCTION_HEADER: function`` to each request it sends."""
    import botocore.session

    create_client = botocore.session.Session.create_client

    def add_header(request: Any, **kwargs: Any) -> None:
        request.headers[FUNCTION_HEADER] = function

    def labelled_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-send", add_header)
        return client

    botocore.session.Session.create_client = labelled_client


def main() -> int:
    spec = json.loads(sys.argv[1])
    sys.path[:0] = spec["path"]
    channel = os.fdopen(int(spec["answer_fd"]), "w", buffering=1)
    started = time.perf_counter()
    metered = spec.get("metered_as")
    try:
        if metered:
            _label_aws_requests(str(metered))
        handler = getattr(importlib.import_module(spec["module"]), spec["attribute"])
    except BaseException:
        _answer(channel, {"ready": False, "error": traceback.format_exc()})
        return 1
    _answer(channel, {"ready": True, "import_ms": round((time.perf_counter() - started) * 1000)})
    for line in sys.stdin:
        request = json.loads(line)
        began = time.perf_counter()
        timing: dict[str, float] = {}
        try:
            _install_time(request["now"])
            result = handler(request["event"], InvocationContext(request["context"]))
            if metered:
                timing = {"duration_ms": (time.perf_counter() - began) * 1000}
            _answer(channel, {"ok": True, "result": result, **timing})
        except BaseException as exc:  # the runtime reports every failure; the next invocation goes on
            if metered:
                timing = {"duration_ms": (time.perf_counter() - began) * 1000}
            _answer(
                channel,
                {
                    "ok": False,
                    "error_type": type(exc).__name__,
                    "error_message": str(exc),
                    "traceback": traceback.format_exc(),
                    **timing,
                },
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
