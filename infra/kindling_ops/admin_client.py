"""The admin API from the operator tool: one client for every command that works with only a token.

A target is the running local stack (``--local``: its port and, unless given, the development
token), a deployed stack by name (``--stack``: its ``ApiUrl`` output and the admin token from
its secret), or any URL with a token (``--url`` and ``--token``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ATTEMPTS = 5


class AdminApiError(Exception):
    """The API refused (its first problem) or could not be reached; the message says which."""


@dataclass
class AdminApi:
    base: str
    token: str
    sleep: Callable[[float], None] = time.sleep

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._call("GET", path + suffix, None)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, json.dumps(body).encode())

    def _call(self, method: str, path: str, data: bytes | None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(ATTEMPTS):
            request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 502, 503, 504) and attempt + 1 < ATTEMPTS:
                    self.sleep(min(8.0, 0.5 * 2**attempt))  # throttled or busy: the rows are idempotent
                    continue
                try:
                    problems = json.loads(exc.read() or b"{}").get("problems") or [exc.reason]
                except ValueError:
                    problems = [exc.reason]
                raise AdminApiError(f"{method} {path.split('?')[0]}: {exc.code} {problems[0]}") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt + 1 < ATTEMPTS:
                    self.sleep(min(8.0, 0.5 * 2**attempt))
                    continue
                raise AdminApiError(f"cannot reach {self.base}: {exc}") from None
        raise AssertionError("unreachable")


def admin_api(
    local: bool, port: int | None, url: str | None, token: str | None, stack: str | None
) -> AdminApi:
    """The client for a command's ``--local``, ``--url`` or ``--stack`` target (else ``AdminApiError``)."""
    token = token or os.environ.get("KINDLING_ADMIN_TOKEN")
    if stack:
        import boto3

        described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        if "ApiUrl" not in outputs:
            raise AdminApiError(f"stack {stack} has no ApiUrl output: is it a kindling stack?")
        if not token:
            secret = boto3.client("secretsmanager").get_secret_value(SecretId=outputs["AdminTokenSecretArn"])
            token = secret["SecretString"]
        return AdminApi(outputs["ApiUrl"].rstrip("/"), token)
    if local:
        if not token:
            from kindling_ops.local.stack import PARAMETER_ENVIRONMENT

            token = PARAMETER_ENVIRONMENT["AdminToken"][1]
        chosen = port if port is not None else int(os.environ.get("PORT", "3000"))
        return AdminApi(f"http://127.0.0.1:{chosen}", token)
    if not url:
        raise AdminApiError("give --local, --stack NAME or --url URL")
    if not token:
        raise AdminApiError("give --token or set KINDLING_ADMIN_TOKEN")
    return AdminApi(url.rstrip("/"), token)
