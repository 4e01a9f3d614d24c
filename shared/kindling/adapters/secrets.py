"""Secrets Manager through Powertools Parameters: read on first use, cached for a few minutes."""

from __future__ import annotations

from typing import Any

from kindling.adapters import aws

#: How long a read value is used before it is read again: a rotated secret is in force after this.
MAX_AGE_SECONDS = 300


class SecretsManagerSecret:
    """The current value of one secret, by ARN or name; the environment holds only that id."""

    def __init__(self, secret_id: str, max_age_seconds: int = MAX_AGE_SECONDS) -> None:
        self.secret_id = secret_id
        self.max_age_seconds = max_age_seconds
        self._provider: Any = None

    def value(self) -> str:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._provider = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        value = self._provider.get(self.secret_id, max_age=self.max_age_seconds)
        if isinstance(value, bytes):
            return value.decode()
        return str(value)

    def __repr__(self) -> str:
        return f"SecretsManagerSecret({self.secret_id!r})"
