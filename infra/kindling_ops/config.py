"""Read the YAML under config/, validate it, and apply it to a stack's table.

Validation errors name the file, the rule and the problem, the way the person who
wrote the YAML thinks of it ("engagement rule 'pricing-page': match.url: ..."), not
pydantic's location tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kindling.adapters.config_store import DynamoConfigStore
from kindling.email_config import EmailSettings, EmailTemplates, TemplateProblem, load_templates
from kindling.scoring_config import ScoringConfig

#: Each config file (or folder) and the model it must satisfy. The name without
#: ``.yaml`` is the kind of document it is stored as.
FILES: dict[str, type[BaseModel]] = {
    "scoring.yaml": ScoringConfig,
    "email.yaml": EmailSettings,
    "templates": EmailTemplates,
}
#: Entries a config directory may leave out; the version applied before stays in force.
OPTIONAL = frozenset({"email.yaml", "templates"})


def _load_templates(folder: Path) -> BaseModel:
    return EmailTemplates(templates=load_templates(folder))


#: Entries that are a folder of files, and how to read one into its model. Problems
#: come back as ``TemplateProblem``, each naming the file.
FOLDERS: dict[str, Callable[[Path], BaseModel]] = {"templates": _load_templates}


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _where(document: Any, location: tuple[Any, ...]) -> str:
    """A pydantic location rendered with rule ids in place of list indexes."""
    parts: list[str] = []
    node = document
    i = 0
    while i < len(location):
        key = location[i]
        if (
            isinstance(key, str)
            and key == "rules"
            and i + 1 < len(location)
            and isinstance(location[i + 1], int)
            and isinstance(node, dict)
        ):
            index = location[i + 1]
            rules = node.get("rules") or []
            rule = rules[index] if index < len(rules) else None
            rule_id = rule.get("id") if isinstance(rule, dict) else None
            kind = parts.pop() if parts else ""
            label = f"{kind} rule" if kind else "rule"
            parts.append(f"{label} {rule_id!r}" if rule_id else f"{label} #{index + 1}")
            node = rule
            i += 2
            continue
        parts.append(str(key))
        node = node.get(key) if isinstance(node, dict) else None
        i += 1
    return ".".join(parts)


def load_file(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping at the top"])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _where(document, tuple(error["loc"]))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check its spelling and indentation)"
            problems.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
        raise ConfigError(problems) from exc


def load(directory: Path) -> dict[str, BaseModel]:
    """Every config file, validated; all problems of all files at once."""
    loaded: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, model in FILES.items():
        path = directory / name
        if not path.exists() and name in OPTIONAL:
            continue
        if name in FOLDERS:
            if not path.is_dir():
                problems.append(f"{path}: expected a folder")
                continue
            try:
                loaded[name] = FOLDERS[name](path)
            except TemplateProblem as exc:
                problems.extend(exc.problems)
            except ValidationError as exc:
                problems.extend(f"{path}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
            continue
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            loaded[name] = load_file(path, model)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return loaded


def documents(loaded: dict[str, BaseModel]) -> dict[str, dict[str, Any]]:
    """Validated config as the JSON documents that are stored and read back by the functions."""
    return {
        name: model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for name, model in loaded.items()
    }


def apply(store: DynamoConfigStore, docs: dict[str, dict[str, Any]], now: datetime) -> list[str]:
    """Make each document the version in force (unchanged ones keep theirs); a line per file."""
    lines = []
    for name, document in docs.items():
        kind = name.removesuffix(".yaml")
        version, changed = store.apply(kind, document, now)
        lines.append(f"config {kind}: {'applied as' if changed else 'unchanged,'} version {version}")
    return lines
