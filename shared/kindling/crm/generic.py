"""Any Standard Webhooks sender: a small signed JSON body as deliveries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from kindling.crm.config import CrmConfig, _Strict
from kindling.crm.events import (
    ACTIVITY_LOGGED,
    CONTACT_UPDATED,
    DEAL_STAGE_CHANGED,
    MAX_CLOCK_AHEAD,
    OWNER_ASSIGNED,
    CrmActivity,
    CrmLead,
    Delivery,
    Id,
    Text,
    _as_text,
    _digest,
    _header,
    _json,
    _problems,
    _Stager,
)
from kindling.kernel.clock import is_plausible_time
from kindling.kernel.errors import InvalidInput
from kindling.kernel.json_input import is_storable_number
from kindling.leads.addresses import normalize_email

# --- generic (Standard Webhooks) -------------------------------------------------------------------

GenericType = Literal["deal.stage_changed", "contact.updated", "owner.assigned", "activity.logged"]
_GENERIC_EVENT_TYPES: dict[str, str] = {
    "deal.stage_changed": DEAL_STAGE_CHANGED,
    "contact.updated": CONTACT_UPDATED,
    "owner.assigned": OWNER_ASSIGNED,
    "activity.logged": ACTIVITY_LOGGED,
}
#: What each type needs besides the lead.
_GENERIC_REQUIRED: dict[str, tuple[str, ...]] = {
    "deal.stage_changed": ("stage",),
    "contact.updated": (),
    "owner.assigned": ("owner",),
    "activity.logged": ("activity",),
}
ShortText = Annotated[str, BeforeValidator(_as_text), Field(min_length=1, max_length=200)]


class GenericActivity(_Strict):
    type: ShortText
    subject: str | None = Field(default=None, max_length=1000)


class GenericData(_Strict):
    email: str | None = None
    crm_id: Id | None = None
    deal_id: Id | None = None
    stage: ShortText | None = None
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    owner: ShortText | None = None
    activity: GenericActivity | None = None
    occurred_at: AwareDatetime | None = None
    properties: dict[str, Text | None] = Field(default_factory=dict)

    @field_validator("amount")
    @classmethod
    def _storable_amount(cls, value: float | None) -> float | None:
        # A text amount ("1e300") is coerced after the body's own numbers were checked.
        if value is not None and not is_storable_number(value):
            raise ValueError("must be 0 or from 1E-130 to 9.99E+125")
        return value

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        email = normalize_email(value)
        if email is None:
            raise ValueError("not a valid email address")
        return email


class GenericWebhook(BaseModel):
    """``{"type": ..., "data": {...}}``; other top-level fields (``timestamp``, ids) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: GenericType
    data: GenericData


def generic_deliveries(body: bytes, headers: Mapping[str, str], config: CrmConfig) -> list[Delivery]:
    """A verified Standard Webhooks request: its ``webhook-id`` is the delivery id."""
    webhook_id = _header(headers, "webhook-id") or ""
    timestamp = _header(headers, "webhook-timestamp") or ""
    if not re.fullmatch(r"[!-~]{1,256}", webhook_id):
        raise InvalidInput("webhook-id: 1-256 visible ASCII characters")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise InvalidInput("webhook-timestamp: a whole number of unix seconds")
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InvalidInput('expected a JSON object: {"type": ..., "data": {...}}')
    try:
        hook = GenericWebhook.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(_problems(exc)) from exc
    data = hook.data
    problems = [
        f"data.{name}: required for {hook.type}"
        for name in _GENERIC_REQUIRED[hook.type]
        if getattr(data, name) is None
    ]
    if data.email is None and data.crm_id is None:
        problems.append("data.email: name the lead by email or crm_id")
    if problems:
        raise InvalidInput(problems)
    try:
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput("webhook-timestamp: not a time a clock can give") from None
    when = data.occurred_at or signed_at
    if not is_plausible_time(when, signed_at, MAX_CLOCK_AHEAD):
        raise InvalidInput("data.occurred_at: from 2000 on, and at most a day after webhook-timestamp")
    lead = CrmLead(email=data.email, crm_id=data.crm_id)
    event = _Stager("generic", config).event(
        _GENERIC_EVENT_TYPES[hook.type],
        webhook_id,
        when,
        lead,
        data.stage,
        deal_id=data.deal_id,
        amount=data.amount,
        currency=data.currency,
        owner=data.owner,
        activity=CrmActivity(type=data.activity.type, subject=data.activity.subject)
        if data.activity
        else None,
        properties=dict(data.properties),
    )
    return [Delivery("generic", webhook_id, _digest(payload), (event,))]
