"""Every function imports in AWS: only its CodeUri, the layer as built and the runtime's boto3.

The development virtualenv holds everything ``pyproject.toml`` lists, so a handler that
imports a package the layer lacks works in every other test and dies on its first
invocation in Lambda. Here each handler is imported in a fresh interpreter with no
site-packages at all, the layer built by pip from ``shared/requirements.txt`` the way
``sam build`` builds it, and the function's environment from the template. Any AWS call
during the import fails it: secrets and parameters are read on first use, not at cold start.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kindling_ops.layer import LambdaPath, lambda_environment, lambda_path, requirement_lines
from kindling_ops.local.stack import local_parameters
from kindling_ops.local.template import REGION, FunctionSpec, Template, functions

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".pytest_cache" / "lambda"

#: Runs in the fresh interpreter: any HTTP request botocore makes fails the import.
IMPORT_PROBE = """
import importlib, sys
sys.path[:0] = {path!r}
import botocore.httpsession

def refuse(self, request):
    raise RuntimeError(f"AWS call during import: {{request.method}} {{request.url}}")

botocore.httpsession.URLLib3Session.send = refuse
module = importlib.import_module({module!r})
# Imported on a function's first secret read, not at cold start: it must be in the layer too.
from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: F401
handler = getattr(module, {attribute!r})
assert callable(handler), "{attribute} is not callable"
dev_only = ("yaml", "moto", "werkzeug", "pytest", "kindling_ops")
leaked = sorted(name for name in dev_only if name in sys.modules)
assert not leaked, f"imported packages that Lambda does not have: {{leaked}}"
print("imported", module.__file__)
"""


def _template_functions() -> list[FunctionSpec]:
    parameters, _ = local_parameters({}, 3000)
    return functions(Template.from_file(ROOT / "template.yaml", parameters))


FUNCTIONS = _template_functions()


@pytest.fixture(scope="session")
def lambda_import_path() -> LambdaPath:
    return lambda_path(CACHE)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=[spec.logical_id for spec in FUNCTIONS])
def test_each_function_imports_with_only_its_code_the_layer_and_boto3(
    spec: FunctionSpec, lambda_import_path: LambdaPath
) -> None:
    module = spec.module_file.relative_to(spec.code_dir).with_suffix("").as_posix().replace("/", ".")
    probe = IMPORT_PROBE.format(
        path=lambda_import_path.for_function(spec.code_dir), module=module, attribute=spec.attribute
    )
    environment = lambda_environment(
        spec.name,
        {
            **spec.environment,
            "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "example",
            "AWS_SESSION_TOKEN": "example",
        },
        REGION,
    )
    # -I: no user site, no PYTHON* variables; -S: no site-packages, so nothing of the virtualenv.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        cwd=spec.code_dir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{spec.logical_id} fails to import in Lambda:\n{result.stderr[-3000:]}"


def test_the_fresh_interpreter_really_lacks_the_development_packages(lambda_import_path: LambdaPath) -> None:
    """Guards the test above: a package only the virtualenv has must not import there."""
    probe = f"import sys; sys.path[:0] = {lambda_import_path.for_function(ROOT / 'functions')!r}; import yaml"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "No module named 'yaml'" in result.stderr


def test_the_package_dependencies_are_the_layer_requirements() -> None:
    """pyproject.toml takes its install requirements from shared/requirements.txt: one list, no drift."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in project["project"]["dynamic"]
    assert "dependencies" not in project["project"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["dependencies"]
    assert dynamic == {"file": ["shared/requirements.txt"]}
    installed = {
        line.split(";")[0].replace(" ", "") for line in importlib.metadata.requires("kindling") or []
    }
    for line in requirement_lines():
        assert line.replace(" ", "") in installed, f"{line} is not installed: run make again"


def _third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "kindling"}


def test_every_import_in_the_layer_code_is_in_its_requirements_or_the_runtime() -> None:
    """Catches imports the handler test cannot reach: those inside functions, on rare paths."""
    distributions = importlib.metadata.packages_distributions()
    required = {
        line.split(";")[0]
        .split("[")[0]
        .split("<")[0]
        .split(">")[0]
        .split("=")[0]
        .split("~")[0]
        .strip()
        .lower()
        for line in requirement_lines()
    }
    runtime = {"boto3", "botocore"}
    missing = {}
    for path in sorted((ROOT / "shared" / "kindling").rglob("*.py")):
        for name in _third_party_imports(path):
            providers = {d.lower().replace("_", "-") for d in distributions.get(name, [])}
            if name in runtime or providers & {r.replace("_", "-") for r in required}:
                continue
            missing[f"{path.relative_to(ROOT)}: {name}"] = sorted(providers)
    assert not missing, f"imports that the layer does not ship: {missing}"
