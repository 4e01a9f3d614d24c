"""``kindling``: the operator's command line (the local stack now; config, reports and redrive later)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def _local(args: argparse.Namespace) -> int:
    from kindling_ops.local.stack import LocalStack, local_parameters
    from kindling_ops.local.template import TemplateError

    port_text = os.environ.get("PORT", "3000")
    if not port_text.isdigit():
        print(f"kindling: PORT must be a number, not {port_text!r}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else int(port_text)
    parameters, lines = local_parameters(dict(os.environ))
    print(f"PORT={port}{'' if 'PORT' in os.environ or args.port else ' (default)'}")
    for line in lines:
        print(line)
    stack = LocalStack(args.template, port=port, parameters=parameters, say=lambda s: print(s, flush=True))
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
    except (TemplateError, FileNotFoundError, OSError) as exc:
        print(f"kindling: cannot start the local stack: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print("Ctrl-C stops it.", flush=True)
    stopping.wait()
    print("stopping...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kindling", description="Operate kindling.")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="run the whole system on localhost (no AWS account needed)")
    local.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    local.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template to run")
    local.set_defaults(run=_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
