"""Email templates from their folder: one YAML file per template, each validated by rendering.

The operator tool reads files; the Lambda layer never does (it reads the applied version
back from the table), so YAML parsing lives here, outside the layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kindling.email.config import SLUG, EmailTemplate, TemplateProblem
from kindling.email.render import template_problems


def load_templates(directory: Path) -> dict[str, EmailTemplate]:
    """Every ``*.yaml`` in ``directory`` by file stem, each validated by rendering.

    Raises ``TemplateProblem`` listing every problem of every file at once.
    """
    templates: dict[str, EmailTemplate] = {}
    problems: list[str] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise TemplateProblem([f"{directory}: cannot read the folder: {exc.strerror}"]) from exc
    for path in paths:
        if path.suffix == ".yml":
            problems.append(f"{path}: name it {path.stem}.yaml; only .yaml files are read")
            continue
        if path.suffix != ".yaml":
            continue
        if not SLUG.fullmatch(path.stem):
            problems.append(
                f"{path}: the file name is the template's name and must be lower-case letters, digits, "
                "'-' and '_' (at most 63), starting with a letter or digit"
            )
            continue
        found = _template_file_problems(path)
        if isinstance(found, EmailTemplate):
            templates[path.stem] = found
        else:
            problems.extend(found)
    if problems:
        raise TemplateProblem(problems)
    return templates


def _template_file_problems(path: Path) -> EmailTemplate | list[str]:
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [f"{path}: cannot read it: {exc.strerror}"]
    except UnicodeDecodeError:
        return [f"{path}: not UTF-8 text"]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    if not isinstance(document, dict):
        return [f"{path}: expected a mapping with subject, html and text at the top"]
    try:
        template = EmailTemplate.model_validate(document)
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check its spelling and indentation)"
            found.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
        return found
    rendered = template_problems(template)
    return [f"{path}: {problem}" for problem in rendered] if rendered else template
