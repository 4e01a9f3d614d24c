"""The reports page, as ``GET /v1/reports`` serves it to browsers.

The page (``assets/report.html``) holds no data: its script asks for the admin token and reads
``/v1/reports/funnel`` and ``/v1/reports/emails``. It is read once per process, and the
Content-Security-Policy allows exactly its inline script and style, by their sha256 hashes.
The one thing filled in is the service's own today, so the default date range ends on the
day the service counts in (UTC, and on the local stack's moved clock) rather than on the
browser's idea of the date.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import date
from importlib import resources

CONTENT_TYPE = "text/html; charset=utf-8"
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class ReportPage:
    body: str
    etag: str
    content_security_policy: str


def _hashes(body: str, tag: str) -> list[str]:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", body, re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks]


def policy(body: str) -> str:
    """A strict CSP for ``body``: only its own inline ``<script>``/``<style>`` blocks, same-origin fetches."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src " + (" ".join(_hashes(body, "script")) or "'none'"),
            "style-src " + (" ".join(_hashes(body, "style")) or "'none'"),
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@functools.cache
def _template() -> str:
    return resources.files("kindling").joinpath("assets/report.html").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=4)
def page(today: date) -> ReportPage:
    body = _template().replace("<body>", f'<body data-today="{today.isoformat()}">', 1)
    return ReportPage(
        body=body,
        etag=f'W/"{hashlib.sha256(body.encode()).hexdigest()[:32]}"',
        content_security_policy=policy(body),
    )
