"""The operator console, as ``GET /console`` serves it to browsers.

The page (``assets/console.html``) holds no data: its script asks for the admin token (kept in
the tab's ``sessionStorage``, as the reports page keeps it) and reads the admin API. It is read
once per process and served with an ETag and the reports page's Content-Security-Policy: only
its own inline script and style, by their sha256 hashes, and requests to the API itself.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from kindling.metrics import report_page

CONTENT_TYPE = report_page.CONTENT_TYPE
CACHE_CONTROL = report_page.CACHE_CONTROL


@dataclass(frozen=True)
class ConsolePage:
    body: str
    etag: str
    content_security_policy: str


@functools.cache
def served() -> ConsolePage:
    body = resources.files("kindling").joinpath("assets/console.html").read_text(encoding="utf-8")
    return ConsolePage(
        body=body,
        etag=f'W/"{hashlib.sha256(body.encode()).hexdigest()[:32]}"',
        content_security_policy=report_page.policy(body),
    )
