"""Demo benchmark: `kindling demo --leads 20 --weeks 1` on a fresh local stack.

Run on demand (``make bench`` or ``.venv/bin/python bench/demo.py``); it is not a test. It starts
``kindling local`` as ``make run`` does (every function in its worker process), plays the demo
over HTTP, and prints the wall time of the start and of the demo, the embedded AWS's API calls,
and what the demo made. Target on a 2-core machine: the demo in under 90 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from common import ROOT, say

LEADS, WEEKS = 20, 1


def main() -> None:
    from kindling_ops.local.stack import free_port

    port = free_port()
    environment = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    for inherited in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        environment.pop(inherited, None)
    started = time.perf_counter()
    stack = subprocess.Popen(
        [sys.executable, "-m", "kindling_ops.cli", "local"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert stack.stdout is not None
        for line in stack.stdout:
            if "is listening on" in line:
                break
        else:
            raise SystemExit("the local stack did not start")
        listening = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}"
        before = json.loads(urllib.request.urlopen(f"{url}/_local/aws", timeout=30).read())["aws_requests"]
        began = time.perf_counter()
        demo = subprocess.run(
            [sys.executable, "-m", "kindling_ops.cli", "demo", "--leads", str(LEADS), "--weeks", str(WEEKS)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - began
        after = json.loads(urllib.request.urlopen(f"{url}/_local/aws", timeout=30).read())["aws_requests"]
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=60)
    say(f"kindling demo benchmark: --leads {LEADS} --weeks {WEEKS} on a fresh `kindling local`")
    say(f"  stack listening after   {listening:6.1f} s (14 functions, each in its own process)")
    say(f"  demo wall time          {seconds:6.1f} s (target: under 90 s)")
    say(f"  embedded AWS API calls  {after - before:6,d} ({(after - before) / seconds:,.0f} per second)")
    say(f"  {demo.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
