"""boto3 clients, created lazily and once per process.

Lazily, so that a function pays at cold start only for the clients it uses; once, so
that connections are reused across invocations. ``reset()`` lets tests and the local
stack point new clients at another endpoint.
"""

from __future__ import annotations

import functools
from typing import Any

from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@functools.cache
def client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service, config=_CONFIG)


def reset() -> None:
    client.cache_clear()


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
