"""The website tag's script, as ``GET /v1/tag.js`` serves it to browsers.

The script ships inside this package (``assets/tag.js``) and is read once per process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

CONTENT_TYPE = "application/javascript; charset=utf-8"
#: Short, because the script changes when the stack is deployed; the ETag makes revalidation cheap.
CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class TagScript:
    body: str
    etag: str


@functools.cache
def script() -> TagScript:
    body = resources.files("kindling").joinpath("assets/tag.js").read_text(encoding="utf-8")
    # Weak: the same ETag names the gzipped and the plain representation.
    return TagScript(body=body, etag=f'W/"{hashlib.sha256(body.encode()).hexdigest()[:32]}"')


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current version (RFC 9110: weak comparison, or ``*``)."""
    if not if_none_match:
        return False
    given = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in given or etag.removeprefix("W/") in given
