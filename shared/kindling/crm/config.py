"""``config/crm.yaml``: stage mapping per provider and the sales policy, one validated model.

The CRM webhooks map stages with it, and the CRM events function reads the same model for
quiet stages, reactivation, recycling and onboarding.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

from kindling.scoring.config import Slug, Stage

Provider = Literal["hubspot", "pipedrive", "salesforce", "generic"]
PROVIDERS: tuple[Provider, ...] = ("hubspot", "pipedrive", "salesforce", "generic")


# --- configuration ---------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fold(name: str) -> str:
    """How stage names are matched: case and runs of spaces do not matter."""
    return " ".join(name.split()).casefold()


class ReactivationPolicy(_Strict):
    """A lead left silent too long in a quiet stage is handed to a program that wakes it up."""

    program: Slug
    max_silence_days: dict[Stage, PositiveInt] = Field(min_length=1)


class RecyclePolicy(_Strict):
    """A lost deal's lead rests ``cooling_off_days``, then goes back into nurturing."""

    cooling_off_days: PositiveInt
    program: Slug


class CrmConfig(_Strict):
    """``config/crm.yaml``: how each CRM's stages read as lifecycle stages, and what follows them.

    ``stages`` maps, per provider, the stage as the CRM sends it (a HubSpot deal stage id
    or contact lifecycle value, a Pipedrive ``stage_id`` or ``won``/``lost``, a Salesforce
    ``StageName`` or lead ``Status``, a generic sender's stage name) to a lifecycle stage.
    Names match ignoring case and repeated spaces.

    ``quiet_stages`` are lifecycle stages, so one list holds for every CRM: while a lead's
    deal is in one of them, sales is talking to it and marketing email waits.
    """

    stages: dict[Provider, dict[str, Stage]] = Field(default_factory=dict)
    quiet_stages: list[Stage] = Field(default_factory=list)
    reactivation: ReactivationPolicy | None = None
    recycle: RecyclePolicy | None = None
    onboarding_program: Slug | None = None

    @field_validator("stages", mode="before")
    @classmethod
    def _names_are_text(cls, value: Any) -> Any:
        # YAML reads a Pipedrive stage id (`3: opportunity`) as a number; the CRM sends text.
        if not isinstance(value, dict):
            return value
        return {
            provider: {str(k): v for k, v in names.items()} if isinstance(names, dict) else names
            for provider, names in value.items()
        }

    @model_validator(mode="after")
    def _consistent(self) -> CrmConfig:
        problems = []
        for provider, names in self.stages.items():
            seen: dict[str, str] = {}
            for name in names:
                key = _fold(name)
                if not key:
                    problems.append(f"stages.{provider}: a stage name is blank")
                elif key in seen:
                    problems.append(
                        f"stages.{provider}: {name!r} and {seen[key]!r} are the same stage "
                        "(names match ignoring case and spaces); keep one"
                    )
                else:
                    seen[key] = name
        if len(set(self.quiet_stages)) != len(self.quiet_stages):
            problems.append("quiet_stages: a stage is listed twice")
        if self.reactivation is not None:
            for stage in self.reactivation.max_silence_days:
                if stage not in self.quiet_stages:
                    problems.append(
                        f"reactivation.max_silence_days.{stage}: {stage} is not one of quiet_stages, "
                        "so no lead is ever silent in it"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def lifecycle_stage(self, provider: Provider, crm_stage: str) -> Stage | None:
        """The lifecycle stage the config gives ``crm_stage``, or None when it names none."""
        names = self.stages.get(provider) or {}
        if crm_stage in names:
            return names[crm_stage]
        wanted = _fold(crm_stage)
        for name, stage in names.items():
            if _fold(name) == wanted:
                return stage
        return None
