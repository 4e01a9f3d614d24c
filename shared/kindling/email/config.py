"""Email settings and templates, as marketing operations write them.

``config/email.yaml`` says who sends, from which postal address (CAN-SPAM wants one in
every marketing email), how often a lead may be emailed and when. ``config/templates/``
holds one YAML file per template. Like the scoring config, the models are strict, and a
template is only accepted once it renders: with no traits at all (every trait needs a
``| default(...)``) and with a full sample lead. Rendering lives in
``kindling.email.render``; this module is what the operator tool validates and what the
sender reads back from the config store.
"""

from __future__ import annotations

import re
from email.utils import formataddr
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kindling.scoring.config import Slug

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: ``date.weekday()`` order.
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TemplateKind = Literal["marketing", "transactional"]

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
#: IANA names only ("Europe/Berlin", "UTC", "Etc/GMT+5"): no paths, no spaces.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
#: Names the tz database directory holds that are not zones a person lives in.
_NOT_ZONES = frozenset({"localtime", "posixrules"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def zone(name: object) -> ZoneInfo | None:
    """The IANA time zone called ``name``, or None when it is not one (never an exception)."""
    if not isinstance(name, str):
        return None
    key = name.strip()
    if not key or len(key) > 64 or not _ZONE_NAME.fullmatch(key) or key in _NOT_ZONES:
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _email_address(value: str, what: str) -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{what} {value!r} is not a valid email address: {exc}") from exc


class FrequencyCap(_Strict):
    """At most ``max_emails`` marketing emails to one lead in any ``per_days`` days (rolling)."""

    max_emails: int = Field(ge=1)
    per_days: int = Field(ge=1)


class SendWindow(_Strict):
    """When marketing email may go out, in the lead's own time zone: [start, end) on ``days``."""

    days: list[Day] = Field(min_length=1)
    start: str = Field(pattern=_CLOCK, description="HH:MM, 24-hour clock")
    end: str = Field(pattern=_CLOCK, description="HH:MM, 24-hour clock")
    default_timezone: str = Field(description="for leads whose time zone is unknown, e.g. America/New_York")

    @field_validator("days")
    @classmethod
    def _unique(cls, days: list[Day]) -> list[Day]:
        repeated = sorted({d for d in days if days.count(d) > 1}, key=DAYS.index)
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return days

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if zone(name) is None:
            raise ValueError(
                f"{name!r} is not an IANA time zone name, e.g. America/New_York or Europe/Berlin"
            )
        return name.strip()

    @model_validator(mode="after")
    def _opens_before_it_closes(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError(
                f"start {self.start} is not before end {self.end}; a window cannot cross midnight"
            )
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        """The allowed days as ``date.weekday()`` numbers (Monday is 0)."""
        return frozenset(DAYS.index(d) for d in self.days)

    @property
    def opens(self) -> tuple[int, int]:
        hour, minute = self.start.split(":")
        return int(hour), int(minute)

    @property
    def closes(self) -> tuple[int, int]:
        hour, minute = self.end.split(":")
        return int(hour), int(minute)


class EmailSettings(_Strict):
    """The content of ``config/email.yaml``."""

    from_address: str
    from_name: str = Field(min_length=1, max_length=100)
    reply_to: str | None = None
    postal_address: str = Field(description="a physical postal address; CAN-SPAM requires it")
    frequency_cap: FrequencyCap
    send_window: SendWindow

    @field_validator("from_address")
    @classmethod
    def _from_address(cls, value: str) -> str:
        return _email_address(value, "from_address")

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return None if value is None else _email_address(value, "reply_to")

    @field_validator("from_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("from_name must be one line without control characters")
        if not value.strip():
            raise ValueError("from_name is blank")
        return value.strip()

    @field_validator("postal_address")
    @classmethod
    def _postal_address(cls, value: str) -> str:
        text = "\n".join(line.strip() for line in value.strip().splitlines() if line.strip())
        if len(text) < 10:
            raise ValueError(
                "postal_address is too short to be a postal address; marketing email must carry "
                "a physical address (street or P.O. box, city, postal code, country)"
            )
        return text

    @property
    def from_header(self) -> str:
        """``From:`` as mail wants it: ``Acme Marketing <marketing@acme.example>``, quoted if needed."""
        return formataddr((self.from_name, self.from_address))


class EmailTemplate(_Strict):
    """One email: a Jinja2 subject, HTML body and plain-text body, rendered per lead."""

    subject: str = Field(min_length=1)
    html: str = Field(min_length=1)
    text: str = Field(min_length=1)
    kind: TemplateKind = "marketing"
    description: str = ""


class EmailTemplates(_Strict):
    """Every template by name: the ``templates`` config document.

    Validating (from YAML or from the stored JSON) renders each template, so a template
    that cannot be rendered never becomes the version in force.
    """

    templates: dict[Slug, EmailTemplate] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _renderable(self) -> EmailTemplates:
        # Rendering needs these models, so it is imported here rather than at the top (a cycle).
        from kindling.email.render import template_problems

        problems = [
            f"template {name!r}: {problem}"
            for name, template in self.templates.items()
            for problem in template_problems(template)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def __getitem__(self, name: str) -> EmailTemplate:
        return self.templates[name]

    def __contains__(self, name: object) -> bool:
        return name in self.templates

    def __len__(self) -> int:
        return len(self.templates)

    def names(self) -> list[str]:
        return sorted(self.templates)


class TemplateProblem(ValueError):
    """One or more template files cannot be used; each problem names the file and the part."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
