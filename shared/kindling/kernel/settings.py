"""One settings model per function, read from the environment once at cold start.

The template sets every variable named here (a test holds it to that). Secrets are not
here: a ``*_secret_arn`` names the Secrets Manager secret, read on use (``kindling.kernel.secrets``).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")


class CaptureSettings(_Settings):
    profiles_queue_url: str
    write_key_secret_arn: str
    allowed_origins: str  # comma-separated; "*" for any

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()] or ["*"]


class ProfilesSettings(_Settings):
    table_name: str
    bus_name: str
    programs_queue_url: str


class LeadsApiSettings(_Settings):
    table_name: str
    admin_token_secret_arn: str
    send_queue_url: str
    #: Where imported leads are announced as new leads when an import asks to enrol them.
    programs_queue_url: str
    #: Signs template previews' links.
    link_secret_arn: str
    #: Keys the hash an erased opted-out address is remembered by (as the sender checks it).
    erasure_key_secret_arn: str
    #: Where CRM events kept for an imported lead's address are published again.
    bus_name: str
    #: The links of a template preview (``{api_id}`` filled in per request, as for CRM webhooks).
    public_api_url: str


class HandoffSettings(_Settings):
    table_name: str
    handoff_url: str
    handoff_secret_arn: str


class SenderSettings(_Settings):
    table_name: str
    bus_name: str
    configuration_set: str
    link_secret_arn: str
    #: The key of the hashes erased opted-out addresses are remembered by (checked before a send).
    erasure_key_secret_arn: str
    public_api_url: str


class SesEventsSettings(_Settings):
    table_name: str
    bus_name: str


class EmailLinksSettings(_Settings):
    table_name: str
    bus_name: str
    link_secret_arn: str


class DueWorkSettings(_Settings):
    table_name: str
    send_queue_url: str
    step_queue_url: str
    programs_queue_url: str


class ProgramsSettings(_Settings):
    table_name: str
    bus_name: str
    send_queue_url: str


class SalesSettings(_Settings):
    table_name: str
    bus_name: str
    send_queue_url: str


class CrmEventsSettings(SalesSettings):
    """The CRM consumer's: the CRM secret (its HubSpot access token) and where HubSpot's API is."""

    crm_secrets_arn: str
    hubspot_api_url: str = "https://api.hubapi.com"


class CrmWebhooksSettings(_Settings):
    """The credentials are one JSON secret; a provider left empty there answers 503, not configured."""

    table_name: str
    bus_name: str
    public_api_url: str
    crm_secrets_arn: str


class MetricsSettings(_Settings):
    table_name: str
    attribution_window_days: int = 14
