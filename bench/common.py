"""What the benches share: printing, the embedded AWS, the table, and DynamoDB's sizing and billing rules.

Imported as ``common`` by the benches, which run as scripts (``.venv/bin/python bench/<name>.py``) and so
have bench/ first on sys.path. Importing it also puts the source tree on sys.path when kindling is not
installed, as the Lambda layer does, and the repository root, for the ``tests`` package (its fakes and
event streams).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import platform
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("kindling") is None:  # not installed: use the source tree, as the layer does
    sys.path.insert(0, str(ROOT / "shared"))
    sys.path.insert(0, str(ROOT / "infra"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REGION = "us-east-1"

#: Local credentials and region, and no instance metadata look-ups.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Powertools with no metrics and only warnings logged.
QUIET_POWERTOOLS = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}

#: Where figures go: the real stdout, even while a bench sends sys.stdout elsewhere (Powertools metrics).
OUT = sys.stdout


# --- printing --------------------------------------------------------------------------------
def say(text: str = "") -> None:
    print(text, file=OUT, flush=True)


def wrapped(text: str, indent: str, hanging: str = "") -> None:
    """``text`` wrapped at 108 columns, each line indented, lines after the first by ``hanging`` more."""
    for line in textwrap.wrap(text, width=108, initial_indent=indent, subsequent_indent=indent + hanging):
        say(line)


def header(name: str, with_pydantic: bool = False) -> None:
    """The first line of a bench's report, the versions it ran with, then a blank line."""
    import boto3
    import moto

    versions = [f"Python {platform.python_version()}"]
    if with_pydantic:
        import pydantic

        versions.append(f"pydantic {pydantic.VERSION}")
    versions += [f"boto3 {boto3.__version__}", f"moto {moto.__version__}", f"{os.cpu_count()} CPU(s)"]
    say(f"kindling {name} benchmark: {', '.join(versions)}")
    say()


# --- the embedded AWS and the table --------------------------------------------------------------
@contextlib.contextmanager
def embedded_aws(env: Mapping[str, str], secrets: Mapping[str, str] | None = None) -> Iterator[str]:
    """moto's server in this process (``kindling_ops.local.aws.EmbeddedAws``, one request at a time),
    with ``env`` and ``AWS_ENDPOINT_URL`` set so every boto3 client goes there: its endpoint.
    ``secrets`` (name: value) are put in its Secrets Manager, for handlers whose settings name them.
    """
    import boto3

    from kindling_ops.local.aws import EmbeddedAws

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = EmbeddedAws().start()
    try:
        os.environ.update({**env, "AWS_ENDPOINT_URL": server.endpoint})
        for name, value in (secrets or {}).items():
            boto3.session.Session().client("secretsmanager").create_secret(Name=name, SecretString=value)
        yield server.endpoint
    finally:
        server.stop()


def table_definition() -> dict[str, Any]:
    """The single table's keys and indexes, from template.yaml (as tests/conftest.py reads them)."""
    from kindling_ops.local.provision import _TABLE_KEYS
    from kindling_ops.local.template import Template, load

    path = ROOT / "template.yaml"
    # The Table refers to no parameter: any value does for those the template gives no default.
    placeholders = {
        name: "x" * 32 for name, spec in load(path).get("Parameters", {}).items() if "Default" not in spec
    }
    template = Template.from_file(path, placeholders)
    properties = template.resolve(template.properties("Table"))
    return {key: properties[key] for key in _TABLE_KEYS if key in properties}


def create_table(client: Any, name: str) -> None:
    """A table named ``name`` shaped like template.yaml's."""
    client.create_table(TableName=name, **table_definition())


T = TypeVar("T")


@contextlib.contextmanager
def appended(log: list[T]) -> Iterator[list[T]]:
    """What is appended to ``log`` inside the block (filled in when the block ends)."""
    found: list[T] = []
    mark = len(log)
    try:
        yield found
    finally:
        found.extend(log[mark:])


def reset_model_data() -> None:
    """Drop moto's dashboard references to every model object it made (the tables are untouched)."""
    from moto.core.model_instances import reset_model_data as reset

    reset()


def settle() -> None:
    """Collect, then freeze what is alive (clients, moto, tables): full collections skip it from now on."""
    gc.collect()
    gc.freeze()


# --- DynamoDB item sizes and capacity units: the local stack's capacity meter holds the one copy ------
from kindling_ops.local.meter import (  # noqa: E402  (after the source tree is on sys.path)
    KEY_ATTRIBUTES,
    attribute_size,
    item_size,
    key_of,
    kind_of,
    read_units,
    write_units,
)

__all__ = [
    "AWS_ENV",
    "KEY_ATTRIBUTES",
    "OUT",
    "QUIET_POWERTOOLS",
    "REGION",
    "ROOT",
    "appended",
    "attribute_size",
    "create_table",
    "embedded_aws",
    "header",
    "item_size",
    "key_of",
    "kind_of",
    "read_units",
    "reset_model_data",
    "say",
    "settle",
    "table_definition",
    "wrapped",
    "write_units",
]
