"""Readers for the files a company arrives with: any contact CSV, Mautic, HubSpot, Amazon Pinpoint.

Each reader turns its source's names into kindling's (``Company Name``, ``company``,
``Company`` all become the ``company`` trait; ``Marketing Qualified Lead`` becomes ``mql``)
and returns a :class:`Parsed`. Readers touch nothing but the files (and, for an ``s3://``
Pinpoint export, the S3 client they are given): what to do with each row is the admin API's
decision, so a dry run and the real import read exactly the same rows.

A problem with the whole file (it is not UTF-8, no column holds an address, a mapping names a
column the file lacks) raises :class:`ImportFileError` before any row is returned: importing
half a file that was misread would be worse than importing none of it. A problem with one
record is a :class:`Rejected` row and the rest of the file is read.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import available_timezones

import yaml

from kindling.scoring.config import Stage
from kindling_ops.importing.rows import (
    KNOWN_TRAITS,
    MAX_EMAIL,
    MAX_SOURCE_REF,
    MAX_TRAIT_NAME,
    MAX_TRAITS,
    MAX_USER_ID,
    ContactRow,
    Parsed,
    Rejected,
    SuppressionReason,
    SuppressionRow,
    TraitValue,
)


class ImportFileError(ValueError):
    """The file as a whole cannot be read as asked; ``problems`` says each thing to fix."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --- names -----------------------------------------------------------------------------------------

#: What a column can be read as besides a trait.
FIELDS = ("email", "user_id", "stage", "unsubscribed")
#: How a mapping names a trait of the company's own, e.g. ``traits.lead_source``.
CUSTOM_TRAIT_PREFIX = "traits."
_TRAIT_NAME = re.compile(rf"^[A-Za-z0-9_.\-]{{1,{MAX_TRAIT_NAME}}}$")
_TRUTHY = frozenset({"yes", "true", "1", "y", "x"})


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def header_key(header: str) -> str:
    """A header as it is compared: lower-case letters and digits only (``E-mail`` is ``email``)."""
    return re.sub(r"[^a-z0-9]", "", _ascii(header).lower())


def snake_case(name: str) -> str:
    """A trait name for a header no alias knows: ``Lead Source`` and ``leadSource`` are ``lead_source``.

    ASCII only and at most 64 characters, as the admin API accepts trait names.
    """
    text = _ascii(name)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:MAX_TRAIT_NAME]


def _aliases(**targets: tuple[str, ...]) -> dict[str, str]:
    return {header_key(header): target for target, headers in targets.items() for header in headers}


#: The headers contact exports commonly use, by what kindling reads them as.
CSV_ALIASES = _aliases(
    email=("Email", "E-mail", "Email Address", "email_address", "E-mail Address"),
    user_id=("User ID", "user_id", "userId"),
    first_name=("First Name", "firstname", "Given name", "Forename"),
    last_name=("Last Name", "lastname", "Surname", "Family name"),
    company=("Company", "Company Name", "Organization", "Organisation"),
    title=("Job Title", "Title", "jobtitle", "Position"),
    industry=("Industry",),
    company_size=("Company Size", "Employees", "Number of Employees", "numberofemployees", "Employee Count"),
    phone=("Phone", "Phone Number", "Telephone"),
    country=("Country", "Country/Region"),
    timezone=("Time Zone", "timezone", "tz"),
    stage=("Lifecycle Stage", "lifecyclestage", "Stage"),
    unsubscribed=("Unsubscribed", "Opted Out", "Opt Out", "do_not_email", "Email Opt Out"),
)

#: Mautic's field aliases where they differ from the common names: Mautic's ``title`` is the
#: salutation (Mr, Ms) and ``position`` the job title; its own ids and points are kept apart
#: from kindling's.
MAUTIC_ALIASES = {
    **CSV_ALIASES,
    **_aliases(
        mautic_id=("id",),
        mautic_points=("points",),
        salutation=("title",),
        title=("position",),
        industry=("companyindustry",),
        company_size=("companynumber_of_employees",),
    ),
}

#: HubSpot's export headers (labels) and property names where they differ from the common ones.
HUBSPOT_ALIASES = {
    **CSV_ALIASES,
    **_aliases(
        hubspot_record_id=("Record ID", "hs_object_id", "Contact ID"),
        timezone=("hs_timezone",),
        unsubscribed=("Unsubscribed from all email", "hs_email_optout"),
    ),
}

_STAGES: dict[str, Stage | None] = {
    "subscriber": "subscriber",
    "lead": "lead",
    "mql": "mql",
    "marketingqualifiedlead": "mql",
    "sql": "sql",
    "salesqualifiedlead": "sql",
    "opportunity": "opportunity",
    "customer": "customer",
    "evangelist": "customer",
    "closedwon": "customer",
    "closedlost": "closed_lost",
    "recycled": "recycled",
}


def lifecycle_stage(value: str) -> Stage | None:
    """Kindling's stage for a source's stage name or internal value; None when it names none (``other``)."""
    return _STAGES.get(header_key(value))


@cache
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def time_zone(value: str) -> str:
    """The IANA name for a zone written loosely (HubSpot's ``america_slash_new_york``); else as given.

    A zone kindling cannot read is not an error: the send window falls back to its default.
    """
    loose = value.strip().replace("_slash_", "/").replace(" ", "_").lower()
    return _zones().get(loose, value.strip())


def _whole_number(value: str) -> int | None:
    text = value.strip()
    if re.fullmatch(r"\d{1,3}(?:[,' _]\d{3})+|\d+", text):
        return int(re.sub(r"\D", "", text))
    if re.fullmatch(r"\d+\.0*", text):  # a spreadsheet's 250.0
        return int(text.split(".")[0])
    return None


def trait_value(name: str, value: str) -> TraitValue:
    """``company_size`` as an int when it is a whole number (a range such as 51-200 stays text)."""
    if name == "company_size":
        number = _whole_number(value)
        return value if number is None else number
    if name == "timezone":
        return time_zone(value)
    return value


def truthy(value: str) -> bool:
    return value.strip().lower() in _TRUTHY


def _ref(name: str, row: int) -> str:
    ref = f"{name}:{row}"
    return ref if len(ref) <= MAX_SOURCE_REF else "..." + ref[-(MAX_SOURCE_REF - 3) :]


def _contact(
    row: int,
    ref: str,
    email: str | None,
    user_id: str | None,
    traits: dict[str, TraitValue],
    stage: Stage | None,
    unsubscribed: bool,
) -> ContactRow | Rejected:
    if email is None and user_id is None:
        return Rejected(row, ref, "no email and no user id: nothing says who this is")
    if email is not None and len(email) > MAX_EMAIL:
        return Rejected(
            row, ref, f"the email has {len(email)} characters; an address has at most {MAX_EMAIL}"
        )
    if user_id is not None and len(user_id) > MAX_USER_ID:
        return Rejected(
            row, ref, f"the user id has {len(user_id)} characters; kindling takes at most {MAX_USER_ID}"
        )
    if len(traits) > MAX_TRAITS:
        return Rejected(
            row,
            ref,
            f"{len(traits)} traits; a lead keeps at most {MAX_TRAITS}: "
            'leave columns out with a mapping file ("Header": "")',
        )
    return ContactRow(row, ref, email, user_id, traits, stage, unsubscribed)


def _add(parsed: Parsed, result: ContactRow | Rejected) -> None:
    if isinstance(result, Rejected):
        parsed.rejected.append(result)
    else:
        parsed.contacts.append(result)


def _skip(parsed: Parsed, reason: str) -> None:
    parsed.skipped[reason] = parsed.skipped.get(reason, 0) + 1


# --- mappings --------------------------------------------------------------------------------------


def _targets_hint() -> str:
    return (
        f"one of {', '.join(FIELDS + KNOWN_TRAITS)}, "
        f'"{CUSTOM_TRAIT_PREFIX}<name>" for a trait of your own, or "" to leave the column out'
    )


def _mapping_target(header: str, target: object, where: str) -> tuple[str | None, str | None]:
    """(the internal target: a field, a trait name or "" for dropped; or the problem with it)."""
    if target is None:
        return "", None
    if not isinstance(target, str):
        return None, f'{where}"{header}": {target!r} is not a name: use {_targets_hint()}'
    name = target.strip()
    if name == "" or name in FIELDS or name in KNOWN_TRAITS:
        return name, None
    if name.startswith(CUSTOM_TRAIT_PREFIX):
        trait = name[len(CUSTOM_TRAIT_PREFIX) :]
        if _TRAIT_NAME.fullmatch(trait):
            return trait, None
        return None, (
            f'{where}"{header}": "{name}": a trait name is letters, digits, "_", "." or "-", '
            f"at most {MAX_TRAIT_NAME} characters"
        )
    close = difflib.get_close_matches(name, FIELDS + KNOWN_TRAITS, n=1)
    guess = f' (did you mean "{close[0]}"?)' if close else ""
    return None, f'{where}"{header}": "{name}" is not something kindling reads{guess}: use {_targets_hint()}'


def _mapping_targets(mapping: Mapping[Any, object], where: str) -> dict[str, str]:
    targets: dict[str, str] = {}
    problems = []
    for header, target in mapping.items():
        if not isinstance(header, str) or not header.strip():
            problems.append(f"{where}{header!r}: a column is named by its header, in quotes")
            continue
        resolved, problem = _mapping_target(header, target, where)
        if problem is not None:
            problems.append(problem)
        elif resolved is not None:
            targets[header] = resolved
    if problems:
        raise ImportFileError(problems)
    return targets


def load_mapping(path: str | Path) -> dict[str, str]:
    """A mapping file's columns, checked: ``{columns: {"Header": "trait"}}``.

    The targets are kindling's names, so a typo (``frist_name``) is an error here rather than
    a trait nobody reads; a company's own trait is named with ``traits.`` in front.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImportFileError(f"cannot read the mapping file {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path.name} is not valid YAML: {exc}") from exc
    example = 'e.g.\ncolumns:\n  "Work Email": email\n  "Lead Source": traits.lead_source\n  "Notes": ""'
    if not isinstance(document, dict) or "columns" not in document:
        raise ImportFileError(
            f"{path.name}: a mapping file has one key, columns, mapping each header to a name; {example}"
        )
    unknown = sorted(str(key) for key in document if key != "columns")
    if unknown:
        raise ImportFileError(
            f"{path.name}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; {example}"
        )
    columns = document["columns"]
    if not isinstance(columns, dict) or not columns:
        raise ImportFileError(f"{path.name}: columns must map each header to a name; {example}")
    _mapping_targets(columns, f"{path.name}: columns.")
    return {header: "" if target is None else str(target).strip() for header, target in columns.items()}


# --- CSV -------------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode Text"
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"{path.name} is not UTF-8 (line {line} has the byte 0x{data[exc.start]:02x}): "
            'save it as "CSV UTF-8"'
        ) from exc


def _delimiter(text: str) -> str:
    """Whichever of comma, semicolon and tab splits the header into most columns (comma on a tie)."""
    first = text.split("\n", 1)[0]
    widths = {d: len(next(csv.reader([first], delimiter=d), [])) for d in (",", ";", "\t")}
    return max(widths, key=lambda d: widths[d])


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def _csv_problem(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return "a quote opened in this row is never closed, so the rest of the file cannot be read"
    return (
        f"cannot be read as CSV ({exc}): a value with a quote in it must be in quotes, its own quotes doubled"
    )


@dataclass(frozen=True)
class _Record:
    row: int
    values: list[str] | None
    problem: str | None = None


@dataclass(frozen=True)
class _Table:
    name: str
    headers: list[str]
    records: Iterator[_Record]


def _read_table(path: Path) -> _Table:
    """The header and the records of a CSV; records numbered as a spreadsheet numbers its rows."""
    text = _text(path)
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        headers = [header.strip() for header in next(reader)]
    except StopIteration:
        raise ImportFileError(f"{path.name} is empty") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path.name}: the header row {_csv_problem(exc)}") from exc
    if not any(headers):
        raise ImportFileError(f"{path.name}: the first row is empty; it should name the columns")

    def records() -> Iterator[_Record]:
        row = 1
        while True:
            row += 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield _Record(row, None, _csv_problem(exc))
                continue
            if not any(value.strip() for value in values):
                continue
            if len(values) > len(headers):
                if any(value.strip() for value in values[len(headers) :]):
                    yield _Record(
                        row,
                        None,
                        f"{len(values)} values under {len(headers)} columns: a value with a "
                        f"{_DELIMITER_NAMES[delimiter]} in it must be in quotes",
                    )
                    continue
                values = values[: len(headers)]
            yield _Record(row, values + [""] * (len(headers) - len(values)))

    return _Table(path.name, headers, records())


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    #: A field of FIELDS, a trait name, or "" for a column left out.
    target: str


def _columns(table: _Table, aliases: Mapping[str, str], mapping: Mapping[str, str] | None) -> list[_Column]:
    """What each column is read as: the mapping's word first, then the aliases, else a trait of its own."""
    chosen: dict[int, str] = {}
    if mapping:
        targets = _mapping_targets(mapping, "mapping: ")
        missing = []
        for header, target in targets.items():
            exact = [i for i, h in enumerate(table.headers) if h == header.strip()]
            loose = [i for i, h in enumerate(table.headers) if header_key(h) == header_key(header)]
            if not (exact or loose):
                missing.append(header)
            for i in loose:
                chosen.setdefault(i, target)
            for i in exact:  # a header named exactly beats one that only looks like it
                chosen[i] = target
        if missing:
            raise ImportFileError(
                [f'{table.name} has no column "{header}" (the mapping names it)' for header in missing]
                + [f"its columns are: {', '.join(table.headers)}"]
            )
    columns = []
    for i, header in enumerate(table.headers):
        mapped = chosen.get(i)
        automatic = aliases.get(header_key(header)) or snake_case(header) or f"column_{i + 1}"
        columns.append(_Column(i, header, automatic if mapped is None else mapped))
    if not any(column.target in ("email", "user_id") for column in columns):
        raise ImportFileError(
            f"{table.name}: no column reads as an email address or a user id "
            f"(its columns are: {', '.join(table.headers)}); name one in a mapping file, "
            'e.g. columns: {"Work Email": email}'
        )
    return columns


def _row_contact(columns: list[_Column], record: _Record, ref: str) -> ContactRow | Rejected:
    assert record.values is not None
    email: str | None = None
    user_id: str | None = None
    stage: Stage | None = None
    unsubscribed = False
    traits: dict[str, TraitValue] = {}
    for column in columns:
        value = record.values[column.index].strip()
        if not value or not column.target:
            continue
        if column.target == "email":
            email = email or value.lower()
        elif column.target == "user_id":
            user_id = user_id or value
        elif column.target == "stage":
            stage = stage or lifecycle_stage(value)
        elif column.target == "unsubscribed":
            unsubscribed = unsubscribed or truthy(value)
        elif column.target not in traits:
            traits[column.target] = trait_value(column.target, value)
    return _contact(record.row, ref, email, user_id, traits, stage, unsubscribed)


def _read_contacts(path: str | Path, aliases: Mapping[str, str], mapping: Mapping[str, str] | None) -> Parsed:
    table = _read_table(Path(path))
    columns = _columns(table, aliases, mapping)
    parsed = Parsed()
    for record in table.records:
        ref = _ref(table.name, record.row)
        if record.problem is not None:
            parsed.rejected.append(Rejected(record.row, ref, record.problem))
        else:
            _add(parsed, _row_contact(columns, record, ref))
    return parsed


def read_csv(path: str | Path, mapping: Mapping[str, str] | None = None) -> Parsed:
    """Any contact CSV: UTF-8 (a BOM or not), comma, semicolon or tab separated, headers read loosely.

    ``mapping`` names what a header is read as (see :func:`load_mapping`) and beats the
    automatic reading; a column no alias knows is kept as a trait named after its header.
    When two columns give one name, the first non-empty value in the row wins.
    """
    return _read_contacts(path, CSV_ALIASES, mapping)


def _column_index(table: _Table, *names: str) -> int | None:
    keys = [header_key(header) for header in table.headers]
    for name in names:
        if header_key(name) in keys:
            return keys.index(header_key(name))
    return None


def _with_unsubscribes(parsed: Parsed, emails: set[str]) -> None:
    """Contacts the source's own suppression list says opted out are unsubscribed on the row as well.

    The suppression list only reaches leads that exist when it is imported; a lead the
    contact rows then create must not start out subscribed.
    """
    parsed.contacts[:] = [
        replace(contact, unsubscribed=True)
        if contact.email in emails and not contact.unsubscribed
        else contact
        for contact in parsed.contacts
    ]


# --- Mautic ----------------------------------------------------------------------------------------

#: Mautic's do-not-contact reasons (``DoNotContact::UNSUBSCRIBED``, ``BOUNCED``, ``MANUAL``).
MAUTIC_REASONS: dict[str, SuppressionReason] = {"1": "unsubscribed", "2": "bounced", "3": "manual"}


def _contactable(value: str) -> bool:
    """Reason 0: an entry that no longer keeps the contact from being mailed."""
    return header_key(value) in ("0", "contactable")


def _mautic_reason(value: str) -> SuppressionReason | None:
    """The reason for Mautic's number or for its label (a report may show either); None if neither."""
    key = header_key(value)
    if key in MAUTIC_REASONS:
        return MAUTIC_REASONS[key]
    if "bounce" in key:
        return "bounced"
    if "manual" in key:
        return "manual"
    if "unsub" in key:
        return "unsubscribed"
    return None


def read_mautic_do_not_contact(path: str | Path) -> Parsed:
    """A report of Mautic's do-not-contact entries: email channel only, reason 1, 2 or 3."""
    table = _read_table(Path(path))
    email_at = _column_index(table, "email", "Email address", "Contact email", "Lead email")
    reason_at = _column_index(table, "reason", "DNC reason", "Do not contact reason")
    channel_at = _column_index(table, "channel", "DNC channel")
    if email_at is None or reason_at is None:
        raise ImportFileError(
            f"{table.name}: a do-not-contact report needs an email column and a reason column "
            f"(its columns are: {', '.join(table.headers)})"
        )
    parsed = Parsed()
    for record in table.records:
        ref = _ref(table.name, record.row)
        if record.values is None:
            parsed.rejected.append(Rejected(record.row, ref, record.problem or "cannot be read"))
            continue
        channel = record.values[channel_at].strip().lower() if channel_at is not None else ""
        if channel not in ("", "email"):
            _skip(parsed, f"do-not-contact entries for the {channel} channel (only email is imported)")
            continue
        email = record.values[email_at].strip().lower()
        if not email:
            parsed.rejected.append(Rejected(record.row, ref, "no email address"))
            continue
        given = record.values[reason_at].strip()
        reason = _mautic_reason(given)
        if _contactable(given):
            _skip(parsed, "do-not-contact entries with reason 0 (contactable)")
        elif reason is not None:
            parsed.suppressions.append(SuppressionRow(record.row, ref, email, reason))
        else:
            parsed.rejected.append(
                Rejected(
                    record.row,
                    ref,
                    f"reason {given!r} is not one of Mautic's: 1 (unsubscribed), 2 (bounced), 3 (manual)",
                )
            )
    return parsed


def read_mautic(contacts_path: str | Path, do_not_contact_path: str | Path | None = None) -> Parsed:
    """Mautic's contact export (field aliases or labels as headers) and its do-not-contact report.

    A contact whose address the report lists as unsubscribed (1) or manually added (3) is read
    as unsubscribed; a bounce (2) is the suppression list's alone.
    """
    parsed = _read_contacts(contacts_path, MAUTIC_ALIASES, None)
    if do_not_contact_path is None:
        return parsed
    dnc = read_mautic_do_not_contact(do_not_contact_path)
    _with_unsubscribes(parsed, {s.email for s in dnc.suppressions if s.reason in ("unsubscribed", "manual")})
    return Parsed(parsed.contacts, dnc.suppressions, parsed.rejected + dnc.rejected, dnc.skipped)


# --- HubSpot ---------------------------------------------------------------------------------------

#: The columns of HubSpot's "unsubscribes and bounces" export, and what each means when true.
HUBSPOT_SUPPRESSION_COLUMNS: tuple[tuple[str, SuppressionReason], ...] = (
    ("Portal Bounce", "bounced"),
    ("Global Bounce", "bounced"),
    ("Portal Spam Report", "complained"),
    ("Portal Unsubscribe", "unsubscribed"),
)


def read_hubspot_suppressions(path: str | Path) -> Parsed:
    """HubSpot's unsubscribes and bounces: one suppression per reason that is true in the row."""
    table = _read_table(Path(path))
    email_at = _column_index(table, "Email", "Email Address")
    flags = [
        (at, reason)
        for header, reason in HUBSPOT_SUPPRESSION_COLUMNS
        if (at := _column_index(table, header)) is not None
    ]
    if email_at is None or not flags:
        expected = ", ".join(header for header, _ in HUBSPOT_SUPPRESSION_COLUMNS)
        raise ImportFileError(
            f"{table.name} is not HubSpot's unsubscribes and bounces export: it needs Email and "
            f"at least one of {expected} (its columns are: {', '.join(table.headers)})"
        )
    parsed = Parsed()
    for record in table.records:
        ref = _ref(table.name, record.row)
        if record.values is None:
            parsed.rejected.append(Rejected(record.row, ref, record.problem or "cannot be read"))
            continue
        email = record.values[email_at].strip().lower()
        reasons = dict.fromkeys(reason for at, reason in flags if truthy(record.values[at]))
        if not email:
            parsed.rejected.append(Rejected(record.row, ref, "no email address"))
        elif not reasons:
            _skip(parsed, "addresses with no bounce, spam report or unsubscribe marked")
        for reason in reasons if email else ():
            parsed.suppressions.append(SuppressionRow(record.row, ref, email, reason))
    return parsed


def read_hubspot(contacts_path: str | Path, suppressions_path: str | Path | None = None) -> Parsed:
    """HubSpot's contacts export and, optionally, its unsubscribes and bounces export.

    The Record ID is kept as the ``hubspot_record_id`` trait, never as the user id: it is
    HubSpot's number for the contact, not the id a product knows its user by. A contact the
    suppression export lists as unsubscribed or as a spam reporter is read as unsubscribed.
    """
    parsed = _read_contacts(contacts_path, HUBSPOT_ALIASES, None)
    if suppressions_path is None:
        return parsed
    listed = read_hubspot_suppressions(suppressions_path)
    _with_unsubscribes(
        parsed, {s.email for s in listed.suppressions if s.reason in ("unsubscribed", "complained")}
    )
    return Parsed(parsed.contacts, listed.suppressions, parsed.rejected + listed.rejected, listed.skipped)


# --- Amazon Pinpoint -------------------------------------------------------------------------------


class S3Client(Protocol):
    """The two calls the Pinpoint reader makes: a boto3 S3 client, or a fake in tests."""

    def get_paginator(self, operation_name: str) -> Any: ...
    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...


_EXPORT_SUFFIXES = (".gz", ".json", ".jsonl")
_DUPLICATES = (
    "endpoints sharing an address with a preferred one (ACTIVE first, then the latest EffectiveDate)"
)


@dataclass(frozen=True)
class _ExportFile:
    name: str
    gzipped: bool
    opener: Any  # () -> a binary stream with read(size)


def _local_files(root: Path) -> list[_ExportFile]:
    if root.is_file():
        paths, base = [root], root.parent
    elif root.is_dir():
        paths = sorted(
            p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(_EXPORT_SUFFIXES)
        )
        base = root
    else:
        raise ImportFileError(f"{root}: no such file or folder")
    return [
        _ExportFile(
            path.relative_to(base).as_posix(), path.name.lower().endswith(".gz"), partial(path.open, "rb")
        )
        for path in paths
    ]


def _s3_errors() -> tuple[type[Exception], ...]:
    """What an S3 call raises when it is refused or unreachable: a file problem to the person importing."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 comes with the operator tool
        return ()
    return (BotoCoreError, ClientError)


def _unreadable() -> tuple[type[Exception], ...]:
    """What reading an export file raises when the file is damaged (a cut-off gzip) or refused."""
    return (OSError, EOFError, zlib.error, *_s3_errors())


def _s3_files(url: str, client: S3Client | None) -> list[_ExportFile]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ImportFileError(f"{url}: an S3 source is s3://bucket/prefix")
    if client is None:
        import boto3

        client = boto3.client("s3")
    keys = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
    except _s3_errors() as exc:
        raise ImportFileError(f"{url}: cannot list the export: {exc}") from exc
    folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    s3 = client

    def opener(key: str) -> Any:
        return lambda: s3.get_object(Bucket=bucket, Key=key)["Body"]

    return [
        _ExportFile(key.removeprefix(folder) or key, key.lower().endswith(".gz"), opener(key))
        for key in sorted(keys)
        if key.lower().endswith(_EXPORT_SUFFIXES)
    ]


def _lines(stream: Any) -> Iterator[bytes]:
    """Lines of a binary stream read in chunks (S3's streaming body has no readline of its own)."""
    pending = b""
    while chunk := stream.read(1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _file_lines(export: _ExportFile) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of one export file, numbered as an editor numbers them."""
    try:
        raw = export.opener()
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if export.gzipped else raw
        try:
            for number, line in enumerate(_lines(stream), start=1):
                if line.strip():
                    yield number, line
        finally:
            stream.close()
            raw.close()
    except _unreadable() as exc:
        raise ImportFileError(f"{export.name} cannot be read ({exc})") from exc


def _attribute(values: object) -> str | None:
    """Pinpoint keeps attributes as lists of strings: one value as itself, several joined with ", "."""
    items = values if isinstance(values, list) else [values]
    texts = [str(item).strip() for item in items if item is not None and str(item).strip()]
    return ", ".join(texts) if texts else None


def _effective(endpoint: dict[str, Any]) -> datetime:
    value = endpoint.get("EffectiveDate")
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _pinpoint_contact(endpoint: dict[str, Any], row: int, ref: str) -> ContactRow | Rejected:
    traits: dict[str, TraitValue] = {}
    stage: Stage | None = None
    user = endpoint.get("User")
    if not isinstance(user, dict):
        user = {}
    for attributes in (endpoint.get("Attributes"), user.get("UserAttributes")):
        for name, values in (attributes if isinstance(attributes, dict) else {}).items():
            value = _attribute(values)
            target = CSV_ALIASES.get(header_key(str(name))) or snake_case(str(name))
            if value is None or not target or target in ("email", "user_id", "unsubscribed"):
                continue  # the address, the user id and the opt-out are the endpoint's own fields
            if target == "stage":
                stage = lifecycle_stage(value) or stage
            else:
                traits[target] = trait_value(target, value)
    structured = {
        "timezone": ("Demographic", "Timezone"),
        "locale": ("Demographic", "Locale"),
        "country": ("Location", "Country"),
        "region": ("Location", "Region"),
        "city": ("Location", "City"),
        "postal_code": ("Location", "PostalCode"),
    }
    for trait, (part, field) in structured.items():
        section = endpoint.get(part)
        value = _attribute(section.get(field)) if isinstance(section, dict) else None
        if value is not None:
            traits[trait] = trait_value(trait, value)
    if isinstance(endpoint.get("Id"), str) and endpoint["Id"]:
        traits["pinpoint_endpoint_id"] = endpoint["Id"]
    address = endpoint.get("Address")
    email = (address.strip().lower() or None) if isinstance(address, str) else None
    given_id = user.get("UserId")
    user_id = (str(given_id).strip() or None) if given_id is not None else None
    unsubscribed = str(endpoint.get("OptOut") or "").strip().upper() == "ALL"
    return _contact(row, ref, email, user_id, traits, stage, unsubscribed)


def read_pinpoint(source: str | Path, s3_client: S3Client | None = None) -> Parsed:
    """An Amazon Pinpoint endpoint export (``CreateExportJob``): JSON lines, gzipped or not.

    ``source`` is a file, a folder (read recursively) or ``s3://bucket/prefix``; files are
    read in name order and ``row`` counts endpoints across all of them. Only EMAIL endpoints
    are read; the others are counted in ``skipped`` by channel. Endpoints sharing an address
    are one contact: the ACTIVE one, then the one with the latest EffectiveDate (the first
    read on a tie), unsubscribed if any of them opted out of ALL: mailing someone who opted
    out is worse than missing someone who opted back in.
    """
    text = str(source)
    files = _s3_files(text, s3_client) if text.startswith("s3://") else _local_files(Path(source))
    if not files:
        raise ImportFileError(f"{text}: no export files (*.gz, *.json) found")
    parsed = Parsed()
    by_address: dict[str, list[tuple[tuple[bool, datetime], ContactRow]]] = {}
    order: list[str | ContactRow] = []
    row = 0
    for export in files:
        for line_number, line in _file_lines(export):
            row += 1
            ref = _ref(export.name, line_number)
            try:
                endpoint = json.loads(line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
                parsed.rejected.append(Rejected(row, ref, f"not a JSON endpoint: {exc}"))
                continue
            if not isinstance(endpoint, dict):
                parsed.rejected.append(
                    Rejected(row, ref, "not a JSON endpoint: a JSON object per line is expected")
                )
                continue
            channel = endpoint.get("ChannelType")
            if not isinstance(channel, str) or not channel.strip():
                parsed.rejected.append(Rejected(row, ref, "the endpoint has no ChannelType"))
                continue
            if channel.strip().upper() != "EMAIL":
                _skip(parsed, f"{channel.strip().upper()} endpoints (only EMAIL endpoints are imported)")
                continue
            contact = _pinpoint_contact(endpoint, row, ref)
            if isinstance(contact, Rejected):
                parsed.rejected.append(contact)
            elif contact.email is None:
                order.append(contact)
            else:
                if contact.email not in by_address:
                    order.append(contact.email)
                active = str(endpoint.get("EndpointStatus") or "ACTIVE").strip().upper() == "ACTIVE"
                by_address.setdefault(contact.email, []).append(((active, _effective(endpoint)), contact))
    for entry in order:
        if isinstance(entry, ContactRow):
            parsed.contacts.append(entry)
            continue
        candidates = by_address[entry]
        best = max(candidates, key=lambda candidate: candidate[0])[1]
        if any(contact.unsubscribed for _, contact in candidates):
            best = replace(best, unsubscribed=True)
        parsed.contacts.append(best)
        for _ in candidates[1:]:
            _skip(parsed, _DUPLICATES)
    return parsed
