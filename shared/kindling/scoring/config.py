"""Scoring, fit and lifecycle configuration, as marketing operations write it.

The models are strict (an unknown key is an error) and refuse rules that could never
match or never change anything, so a typo fails ``kindling config validate`` instead of
silently scoring nobody. The YAML is read by the operator tool; Lambda functions read
the applied version back from DynamoDB as JSON into these same models.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def _not_zero(points: int) -> int:
    if points == 0:
        raise ValueError("0 points changes nothing: remove the rule or give it points")
    return points


#: A rule's points: positive or negative, never 0 (a rule that changes nothing is a mistake).
Points = Annotated[int, AfterValidator(_not_zero)]
Grade = Literal["A", "B", "C", "D"]
Stage = Literal["subscriber", "lead", "mql", "sql", "opportunity", "customer", "closed_lost", "recycled"]

#: The funnel, in order. closed_lost and recycled sit beside it.
FUNNEL: tuple[Stage, ...] = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
STAGES: tuple[Stage, ...] = (*FUNNEL, "closed_lost", "recycled")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ValueCondition(_Strict):
    """A condition on one value (an event property or a trait). All given parts must hold."""

    equals: str | int | float | bool | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in")
    contains_any: list[str] | None = None
    matches: str | None = None
    gte: float | None = None
    lte: float | None = None
    exists: bool | None = None
    domain_in: list[str] | None = None

    @model_validator(mode="after")
    def _can_match(self) -> ValueCondition:
        if not self.model_fields_set:
            raise ValueError(
                "a condition needs at least one of equals, in, contains_any, matches, gte, lte, "
                "exists, domain_in"
            )
        if self.in_ is not None and not self.in_:
            raise ValueError("'in' is empty, so it can never match")
        if self.contains_any is not None and not [c for c in self.contains_any if c.strip()]:
            raise ValueError("'contains_any' is empty, so it can never match")
        if self.domain_in is not None and not self.domain_in:
            raise ValueError("'domain_in' is empty, so it can never match")
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise ValueError(f"gte {self.gte} is above lte {self.lte}, so it can never match")
        if self.exists is False and len(self.model_fields_set) > 1:
            raise ValueError("'exists: false' with another condition can never match")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"'matches' is not a valid regular expression: {exc}") from exc
        return self

    def holds(self, value: Any) -> bool:
        if self.exists is not None and (value is not None) != self.exists:
            return False
        if value is None:
            return self.exists is False
        text = str(value).strip().lower()
        if self.equals is not None and text != str(self.equals).strip().lower():
            return False
        if self.in_ is not None and text not in {str(v).strip().lower() for v in self.in_}:
            return False
        needles = [c.lower() for c in self.contains_any or [] if c.strip()]
        if self.contains_any is not None and not any(n in text for n in needles):
            return False
        if self.matches is not None and not re.search(self.matches, str(value), re.IGNORECASE):
            return False
        if self.domain_in is not None:
            domain = text.rpartition("@")[2]
            if not any(domain == d.lower() or domain.endswith("." + d.lower()) for d in self.domain_in):
                return False
        if self.gte is not None or self.lte is not None:
            number = _number(value)
            if number is None:
                return False
            if self.gte is not None and number < self.gte:
                return False
            if self.lte is not None and number > self.lte:
                return False
        return True


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return None


def lookup(data: dict[str, Any], path: str) -> Any:
    """``a.b.c`` inside nested dicts; None when any part is missing."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class EventMatcher(_Strict):
    """Which events a rule counts: all given parts must match."""

    type: Literal["track", "page", "screen", "identify", "group"] | None = None
    event: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1, description="glob on the page URL, e.g. */pricing*")
    properties: dict[str, ValueCondition] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _can_match(self) -> EventMatcher:
        if not self.model_fields_set - {"properties"} and not self.properties:
            raise ValueError("a match needs at least one of type, event, url, properties")
        if self.event is not None and self.type not in (None, "track"):
            raise ValueError(f"only track events have an event name; a {self.type} never matches 'event'")
        if self.url is not None and self.type in ("identify", "group"):
            raise ValueError(f"{self.type} calls carry no page URL, so 'url' never matches")
        return self

    def matches(self, event: dict[str, Any]) -> bool:
        if self.type is not None and event.get("type") != self.type:
            return False
        name = str(event.get("event") or "").strip().lower()
        if self.event is not None and name != self.event.strip().lower():
            return False
        if self.url is not None:
            url = page_url(event)
            if not url or not fnmatch.fnmatch(url.lower(), self.url.lower()):
                return False
        properties = event.get("properties") or {}
        return all(condition.holds(lookup(properties, key)) for key, condition in self.properties.items())


def page_url(event: dict[str, Any]) -> str | None:
    for source in (event.get("properties") or {}, (event.get("context") or {}).get("page") or {}):
        for key in ("url", "path"):
            value = source.get(key) if isinstance(source, dict) else None
            if isinstance(value, str) and value:
                return value
    return None


class Cap(_Strict):
    per_day: int | None = Field(default=None, ge=1)
    per_lead: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _given(self) -> Cap:
        if self.per_day is None and self.per_lead is None:
            raise ValueError("a cap needs per_day or per_lead")
        return self


class EngagementRule(_Strict):
    id: Slug
    description: str = Field(min_length=1)
    match: EventMatcher
    points: Points
    cap: Cap | None = None
    #: The intent tag a lead gets when this rule scores (``pricing``, ``demo``): the funnel breaks down by it.
    intent: Slug | None = None


class Decay(_Strict):
    """Engagement halves after this many days without being renewed (exponential decay)."""

    half_life_days: float = Field(gt=0, le=3650)


class Bands(_Strict):
    """Minimum engagement for bands 1 (hottest) to 3; anything below is band 4."""

    band_1: float
    band_2: float
    band_3: float

    @model_validator(mode="after")
    def _descending(self) -> Bands:
        if not self.band_1 > self.band_2 > self.band_3:
            raise ValueError("band thresholds must fall: band_1 > band_2 > band_3")
        return self

    def band(self, engagement: float) -> int:
        for number, floor in ((1, self.band_1), (2, self.band_2), (3, self.band_3)):
            if engagement >= floor:
                return number
        return 4


class Engagement(_Strict):
    rules: list[EngagementRule] = Field(min_length=1)
    decay: Decay | None = None
    bands: Bands

    @model_validator(mode="after")
    def _unique_ids(self) -> Engagement:
        _no_duplicates([r.id for r in self.rules], "engagement rule")
        return self


class FitRule(_Strict):
    id: Slug
    description: str = Field(min_length=1)
    trait: str = Field(min_length=1, description="a trait, e.g. title, industry, company.employees, email")
    when: ValueCondition
    points: Points


class Grades(_Strict):
    """Minimum fit points for grades A to C; anything below is D."""

    A: float
    B: float
    C: float

    @model_validator(mode="after")
    def _descending(self) -> Grades:
        if not self.A > self.B > self.C:
            raise ValueError("grade thresholds must fall: A > B > C")
        return self

    def grade(self, fit: float) -> Grade:
        for letter, floor in (("A", self.A), ("B", self.B), ("C", self.C)):
            if fit >= floor:
                return letter  # type: ignore[return-value]
        return "D"


class Fit(_Strict):
    rules: list[FitRule] = Field(min_length=1)
    grades: Grades

    @model_validator(mode="after")
    def _unique_ids(self) -> Fit:
        _no_duplicates([r.id for r in self.rules], "fit rule")
        return self


class Threshold(_Strict):
    min_engagement: float
    min_grade: Grade = "D"


class Lifecycle(_Strict):
    """When scoring moves a known lead forward. CRM changes may move stages anywhere."""

    lead: Threshold
    mql: Threshold

    @model_validator(mode="after")
    def _ordered(self) -> Lifecycle:
        if self.mql.min_engagement < self.lead.min_engagement:
            raise ValueError("the MQL threshold is below the lead threshold, so no lead would ever be 'lead'")
        return self


class Handoff(_Strict):
    top_reasons: int = Field(default=5, ge=1, le=20)


class ScoringConfig(_Strict):
    engagement: Engagement
    fit: Fit
    lifecycle: Lifecycle
    handoff: Handoff = Handoff()


def _no_duplicates(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for rule_id in ids:
        if rule_id in seen:
            raise ValueError(f"two {what}s have the id {rule_id!r}")
        seen.add(rule_id)
