"""Read the YAML under config/, validate it, and apply it to a stack's table.

Validation errors name the file, the rule (or program and step) and the problem, the
way the person who wrote the YAML thinks of it ("engagement rule 'pricing-page': match.url:
...", "program 'welcome-series': step 'wait-2d': ..."), not pydantic's location tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kindling.adapters.config_store import DynamoConfigStore
from kindling.crm.config import CrmConfig
from kindling.email.config import EmailSettings, EmailTemplates, TemplateProblem
from kindling.programs.config import Program, Programs, Segments, check_references, sale_warnings
from kindling.scoring.config import ScoringConfig
from kindling_ops.email_templates import load_templates

#: Each config file (or folder) and the model it must satisfy. The name without
#: ``.yaml`` is the kind of document it is stored as.
FILES: dict[str, type[BaseModel]] = {
    "scoring.yaml": ScoringConfig,
    "email.yaml": EmailSettings,
    "templates": EmailTemplates,
    "segments.yaml": Segments,
    "programs": Programs,
    "crm.yaml": CrmConfig,
}
#: Entries a config directory may leave out; the version applied before stays in force.
OPTIONAL = frozenset({"email.yaml", "templates", "segments.yaml", "programs", "crm.yaml"})


def _load_templates(folder: Path) -> BaseModel:
    return EmailTemplates(templates=load_templates(folder))


def _load_programs(folder: Path) -> BaseModel:
    """One program per ``*.yaml`` file, named by its id; ``ConfigError`` lists every problem."""
    programs: dict[str, Program] = {}
    problems: list[str] = []
    try:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise ConfigError([f"{folder}: cannot read the folder: {exc.strerror}"]) from exc
    for path in paths:
        if path.suffix == ".yml":
            problems.append(f"{path}: name it {path.stem}.yaml; only .yaml files are read")
            continue
        if path.suffix != ".yaml":
            continue
        try:
            document = _read(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        given = document.get("id")
        program_id = given if isinstance(given, str) and given else path.stem
        label = f"program {program_id!r}"
        named_right = program_id == path.stem
        if not named_right:
            problems.append(
                f"{path}: {label}: the file name must be the program's id: "
                f"name the file {program_id}.yaml or give the program the id '{path.stem}'"
            )
        try:
            program = Program.model_validate(document)
        except ValidationError as exc:
            problems.extend(_problems(path, document, exc, label))
            continue
        if named_right:
            programs[program.id] = program
    if problems:
        raise ConfigError(problems, valid=Programs(programs=programs))
    return Programs(programs=programs)


#: Entries that are a folder of files, and how to read one into its model. Problems
#: come back as ``TemplateProblem`` or ``ConfigError``, each naming the file.
FOLDERS: dict[str, Callable[[Path], BaseModel]] = {
    "templates": _load_templates,
    "programs": _load_programs,
}


class ConfigError(Exception):
    def __init__(self, problems: list[str], valid: BaseModel | None = None) -> None:
        self.problems = problems
        #: What could be read despite the problems (the programs without any), or None.
        self.valid = valid
        super().__init__("\n".join(problems))


#: Lists whose items are named by their id (or, without one, by their place) in problems.
_NAMED_ITEMS = {"rules": "rule", "steps": "step", "segments": "segment", "branch": "branch case"}


def _where(document: Any, location: tuple[Any, ...]) -> str:
    """A pydantic location rendered with rule, step and segment ids in place of list indexes."""
    parts: list[str] = []
    node = document
    i = 0
    while i < len(location):
        key = location[i]
        if (
            isinstance(key, str)
            and key in _NAMED_ITEMS
            and i + 1 < len(location)
            and isinstance(location[i + 1], int)
            and isinstance(node, dict)
        ):
            index = location[i + 1]
            items = node.get(key)
            item = items[index] if isinstance(items, list) and index < len(items) else None
            item_id = item.get("id") if isinstance(item, dict) else None
            label = _NAMED_ITEMS[key]
            if key == "rules":
                kind = parts.pop() if parts else ""
                label = f"{kind} rule" if kind else "rule"
            parts.append(f"{label} {item_id!r}" if item_id else f"{label} #{index + 1}")
            node = item
            i += 2
            continue
        parts.append(str(key))
        node = node.get(key) if isinstance(node, dict) else None
        i += 1
    return ".".join(parts)


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping at the top"])
    return document


def _problems(path: Path, document: dict[str, Any], exc: ValidationError, label: str = "") -> list[str]:
    """Each error as ``file: [label: ]where: problem``; a whole-model error listing several
    problems (``a; b``) becomes a line for each."""
    problems = []
    prefix = f"{path}: {label}: " if label else f"{path}: "
    for error in exc.errors():
        where = _where(document, tuple(error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        if where:
            problems.append(f"{prefix}{where}: {message}")
        elif label:
            problems.extend(f"{prefix}{part}" for part in message.split("; "))
        else:
            problems.append(f"{prefix}{message}")
    return problems


def load_file(path: Path, model: type[BaseModel]) -> BaseModel:
    document = _read(path)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_problems(path, document, exc)) from exc


def load(directory: Path) -> dict[str, BaseModel]:
    """Every config file, validated; all problems of all files at once."""
    loaded: dict[str, BaseModel] = {}
    problems: list[str] = []
    failed: set[str] = set()
    partial: dict[str, BaseModel] = {}
    for name, model in FILES.items():
        path = directory / name
        before = len(problems)
        if not path.exists() and name in OPTIONAL:
            continue
        if name in FOLDERS:
            if not path.is_dir():
                problems.append(f"{path}: expected a folder")
            else:
                try:
                    loaded[name] = FOLDERS[name](path)
                except ConfigError as exc:
                    problems.extend(exc.problems)
                    if exc.valid is not None:
                        partial[name] = exc.valid
                except TemplateProblem as exc:
                    problems.extend(exc.problems)
                except ValidationError as exc:
                    problems.extend(f"{path}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        elif not path.is_file():
            problems.append(f"{path}: missing")
        else:
            try:
                loaded[name] = load_file(path, model)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if len(problems) > before:
            failed.add(name)
    if not failed & {"templates", "segments.yaml"}:
        problems.extend(_reference_problems(directory, {**partial, **loaded}))
    if "programs" not in failed:
        problems.extend(_crm_program_problems(directory, loaded))
    if problems:
        raise ConfigError(problems)
    return loaded


def _reference_problems(directory: Path, loaded: dict[str, BaseModel]) -> list[str]:
    """Templates and segments the programs name that this config directory does not have."""
    programs = loaded.get("programs")
    templates, segments = loaded.get("templates"), loaded.get("segments.yaml")
    if not isinstance(programs, Programs):
        return []
    template_names = set(templates.templates) if isinstance(templates, EmailTemplates) else set()
    segment_ids = {s.id for s in segments.segments} if isinstance(segments, Segments) else set()
    problems: list[str] = []
    for program_id, program in sorted(programs.programs.items()):
        path = directory / "programs" / f"{program_id}.yaml"
        found = check_references(Programs(programs={program_id: program}), template_names, segment_ids)
        problems.extend(f"{path}: {problem}" for problem in found)
    return problems


def _crm_program_problems(directory: Path, loaded: dict[str, BaseModel]) -> list[str]:
    """Programs crm.yaml names that the programs folder does not have (checked when both are here)."""
    crm, programs = loaded.get("crm.yaml"), loaded.get("programs")
    if not isinstance(crm, CrmConfig) or not isinstance(programs, Programs):
        return []
    named = {
        "reactivation.program": crm.reactivation.program if crm.reactivation else None,
        "recycle.program": crm.recycle.program if crm.recycle else None,
        "onboarding_program": crm.onboarding_program,
    }
    return [
        f"{directory / 'crm.yaml'}: {where}: no program {program!r} in {directory / 'programs'}"
        for where, program in named.items()
        if program is not None and program not in programs.programs
    ]


def warnings(directory: Path, loaded: dict[str, BaseModel]) -> list[str]:
    """What is valid but probably not meant: selling programs that would mail a customer."""
    programs, crm = loaded.get("programs"), loaded.get("crm.yaml")
    if not isinstance(programs, Programs):
        return []
    onboarding = crm.onboarding_program if isinstance(crm, CrmConfig) else None
    return [
        f"{directory / 'programs' / f'{program_id}.yaml'}: {warning}"
        for program_id, warning in sale_warnings(programs, onboarding)
    ]


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
