"""Secrets the functions need, read when used rather than at cold start.

The values live in AWS Secrets Manager (the template creates one secret per credential,
and one JSON secret for the CRM webhook credentials); a function's environment holds
only the secret's ARN. Reading on use, through a cache with a maximum age, means that a
rotated secret takes effect within minutes without a redeploy, and that importing a
handler makes no AWS call.
"""

from __future__ import annotations

import json
from typing import Protocol

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from kindling.kernel.errors import InvalidInput


class Secret(Protocol):
    """One secret's current value."""

    def value(self) -> str: ...


class StaticSecret:
    """A value known in advance: tests and the operator tool."""

    def __init__(self, value: str) -> None:
        self._value = value

    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "StaticSecret(***)"


class CrmCredentials(BaseModel):
    """The JSON of the CRM webhooks secret. A provider whose fields are empty is off (503)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    hubspot_client_secret: SecretStr = SecretStr("")
    pipedrive_user: str = ""
    pipedrive_password: SecretStr = SecretStr("")
    salesforce_org_id: str = ""
    salesforce_secret: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    #: A HubSpot private app's access token (scopes crm.objects.deals.read and
    #: crm.objects.contacts.read): lets the CRM consumer find a deal's contacts.
    hubspot_access_token: SecretStr = SecretStr("")

    @classmethod
    def from_secret(cls, secret: Secret) -> CrmCredentials:
        """Parsed from the secret's JSON; a bad value names the problem, never the content."""
        try:
            document = json.loads(secret.value())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the CRM webhooks secret is not JSON (line {exc.lineno})") from None
        if not isinstance(document, dict):
            raise InvalidInput("the CRM webhooks secret must be a JSON object of credentials")
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise InvalidInput(f"the CRM webhooks secret has fields that are not strings: {fields}") from None
