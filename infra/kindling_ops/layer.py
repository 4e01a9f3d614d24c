"""The Lambda layer as ``sam build`` makes it, and the import path a function gets in Lambda.

In AWS a function sees its CodeUri (``/var/task``), the layer (``/opt/python``: the
``kindling`` package plus what ``shared/requirements.txt`` lists, installed by pip) and
the runtime's own boto3 — nothing from a development virtualenv. ``build_layer`` makes
that layer once per content of ``requirements.txt`` (and Python version), so that a
test can import each handler with exactly that path and catch a missing dependency
before a deploy does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
REQUIREMENTS = SHARED / "requirements.txt"

#: What the Lambda Python runtime ships: boto3 and what boto3 itself needs.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


class LayerBuildError(Exception):
    pass


@dataclass(frozen=True)
class LambdaPath:
    """The folders on a function's import path, in Lambda's order after its CodeUri."""

    layer_packages: Path  # pip install -r shared/requirements.txt --target ...
    layer_code: Path  # the kindling package (sam build copies shared/ into the layer)
    runtime: Path  # boto3 as the runtime provides it

    def for_function(self, code_dir: Path) -> list[str]:
        return [str(code_dir), str(self.layer_code), str(self.layer_packages), str(self.runtime)]


def requirement_lines(path: Path = REQUIREMENTS) -> list[str]:
    """The requirement specifiers in a requirements file, without comments or blank lines."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _fingerprint(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}-{sys.platform}".encode())
    return digest.hexdigest()[:16]


def build_layer(cache: Path, requirements: Path = REQUIREMENTS) -> Path:
    """``pip install -r requirements --target``, cached until the requirements change.

    Returns the folder holding the installed packages. A half-built folder is never
    reused: pip installs into a temporary sibling that is renamed when complete.
    """
    target = cache / f"layer-{_fingerprint(requirements)}"
    if (target / ".complete").is_file():
        return target
    partial = cache / f"{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    command = [
        sys.executable,
        *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"),
        *("--target", str(partial), "-r", str(requirements)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise LayerBuildError(f"pip could not build the layer from {requirements}:\n{result.stderr[-4000:]}")
    (partial / ".complete").write_text(" ".join(command) + "\n")
    try:
        partial.rename(target)
    except OSError:
        if (target / ".complete").is_file():  # built meanwhile by another process: use that one
            shutil.rmtree(partial, ignore_errors=True)
        else:  # left half-made by a build that was killed
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return target


def runtime_packages(cache: Path) -> Path:
    """A folder with boto3 and its dependencies only (links to this interpreter's copies).

    The runtime's boto3 version differs from ours anyway; what matters is that nothing
    else of the development environment is importable.
    """
    target = cache / "lambda-runtime"
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise LayerBuildError(f"{name} is not installed here; the Lambda runtime provides it")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        link = target / source.name
        if not link.exists():
            link.symlink_to(source, target_is_directory=source.is_dir())
    return target


def lambda_path(cache: Path) -> LambdaPath:
    return LambdaPath(layer_packages=build_layer(cache), layer_code=SHARED, runtime=runtime_packages(cache))


def lambda_environment(function_name: str, variables: dict[str, str], region: str) -> dict[str, str]:
    """The variables Lambda sets for every function, with the template's on top (PATH kept for tools)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        **variables,
    }
