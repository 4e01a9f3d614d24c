"""The shape of the domain library: one package per bounded context, AWS only in the adapters.

The rule (README, "Architecture"): ``kindling.<context>`` modules are domain code and ports; they
take their collaborators as arguments and import no AWS SDK. ``kindling.adapters`` holds every
module that talks to AWS, each implementing a port of a context. Handlers wire the two.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "kindling"
CONTEXTS = {
    "kernel",
    "tracking",
    "leads",
    "scoring",
    "programs",
    "email",
    "crm",
    "metrics",
    "webhooks",
    "console",
}
AWS_SDKS = {"boto3", "botocore", "aioboto3", "s3transfer"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_library_is_one_package_per_bounded_context_plus_the_adapters() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == CONTEXTS | {"adapters"}
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside any context: {loose}"


def test_only_adapter_modules_import_an_aws_sdk() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.split(".")[0] in AWS_SDKS)
        for path in _modules()
        if path.parent.name != "adapters"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_domain_code_does_not_depend_on_the_adapters() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.startswith("kindling.adapters"))
        for path in _modules()
        if path.parent.name != "adapters"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_public_names_are_unique_across_the_package() -> None:
    """One name, one thing: a reader never has to ask which ``LeadContext`` this is."""
    where: dict[str, list[str]] = collections.defaultdict(list)
    for path in _modules():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(PACKAGE)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
