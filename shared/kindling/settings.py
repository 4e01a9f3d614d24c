"""One settings model per function, read from the environment once at cold start.

The template sets every variable named here (a test holds it to that).
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")


class CaptureSettings(_Settings):
    bus_name: str
    write_key: SecretStr
    allowed_origins: str  # comma-separated; "*" for any

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()] or ["*"]


class ProfilesSettings(_Settings):
    table_name: str
    bus_name: str


class LeadsApiSettings(_Settings):
    table_name: str
    admin_token: SecretStr
    send_queue_url: str


class ScoringSettings(_Settings):
    table_name: str
    bus_name: str


class HandoffSettings(_Settings):
    table_name: str
    handoff_url: str
    handoff_secret: SecretStr


class SenderSettings(_Settings):
    table_name: str
    bus_name: str
    configuration_set: str
    link_secret: SecretStr
    public_api_url: str


class SesEventsSettings(_Settings):
    table_name: str
    bus_name: str


class EmailLinksSettings(_Settings):
    table_name: str
    bus_name: str
    link_secret: SecretStr


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


class CrmWebhooksSettings(_Settings):
    """Credentials left empty turn that provider's endpoint off (it answers 503, not configured)."""

    table_name: str
    bus_name: str
    public_api_url: str
    hubspot_client_secret: SecretStr
    pipedrive_user: str
    pipedrive_password: SecretStr
    salesforce_org_id: str
    salesforce_secret: SecretStr
    webhook_secret: SecretStr


class MetricsSettings(_Settings):
    table_name: str
    attribution_window_days: int = 14
