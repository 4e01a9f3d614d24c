"""The rows every import reader yields, whatever the source: one shape for the CLI to batch and post.

Readers only read. They trim and lower-case addresses but never validate them, and they keep
every record of a file (two rows for one person are the server's to match), so what the admin
API answers per row is the one verdict on it. What a reader refuses is a record it cannot read
at all, and it says so per record, with where the record was.

Where a record was is given twice: ``row``, a number a person finds in the source (for a CSV,
the row number a spreadsheet shows, the header being row 1), and ``source_ref``, a short string
that also names the file (``contacts.csv:2``, ``exports/1.gz:17``). A Mautic or HubSpot import
reads two files and a Pinpoint export many, so ``source_ref`` is what tells rows apart; it is
what the admin API's ``row`` field should carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from kindling.scoring.config import Stage

TraitValue = str | int | float | bool
SuppressionReason = Literal["unsubscribed", "bounced", "complained", "manual"]

#: Kindling's lifecycle stages, in the scoring config's order.
STAGES: tuple[str, ...] = get_args(Stage)
#: The traits kindling itself reads (templates, fit rules, the send window); readers map
#: each source's own names for them onto these.
KNOWN_TRAITS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "industry",
    "company_size",
    "phone",
    "country",
    "timezone",
)
#: What the admin API accepts per row; a record beyond these is refused here, by itself,
#: rather than failing the batch of rows it would be posted with.
MAX_TRAITS = 100
MAX_TRAIT_NAME = 64
MAX_EMAIL = 320
MAX_USER_ID = 100
MAX_SOURCE_REF = 200


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A person as the source has them, in kindling's names.

    ``email`` is trimmed and lower-cased, not validated. ``traits`` holds only non-empty
    values: strings, except ``company_size``, an int when the source's value is a whole number.
    ``unsubscribed`` is True when the source says the person opted out of email (a column,
    a Pinpoint ``OptOut`` of ``ALL``, or the source's own suppression list).
    """

    row: int
    source_ref: str
    email: str | None
    user_id: str | None
    traits: dict[str, TraitValue] = field(default_factory=dict)
    stage: Stage | None = None
    unsubscribed: bool = False


@dataclass(frozen=True, slots=True)
class SuppressionRow:
    """An address the source says must not be mailed, and why."""

    row: int
    source_ref: str
    email: str
    reason: SuppressionReason


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be read, with a reason the person who made the file understands."""

    row: int
    source_ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """Everything read from one import.

    ``skipped`` counts records that were read and deliberately left out, by a reason a person
    understands (``"SMS endpoints (only EMAIL endpoints are imported)"``): they are not errors,
    so they are not in ``rejected``, but a summary should still account for every record.
    """

    contacts: list[ContactRow] = field(default_factory=list)
    suppressions: list[SuppressionRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())
