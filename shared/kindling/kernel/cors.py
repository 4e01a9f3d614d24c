"""CORS for the tracking endpoints: a preflight from an allowed origin may send the headers it asks for.

Browser SDKs add request headers of their own, and more with each release: Segment's
analytics-next sends ``X-Retry-Count`` on retries; RudderStack's JS SDK v3 sends ``AnonymousId``
and ``SentAt``, and ``Rsa-Retry-*`` / ``Rsa-Since-*`` on retries. A fixed list refuses every header
it does not name, and the browser then drops the event. So a preflight from an allowed origin is
answered with the headers it asks for (``Access-Control-Request-Headers``), when that is a short
list of header names. Origins are checked as before: any other origin gets no CORS headers at all.
Nothing is exposed to scripts (no ``Access-Control-Expose-Headers``) and credentials are never allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import CORSConfig

#: A header name is an RFC 9110 token.
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
#: The longest ``Access-Control-Request-Headers`` value mirrored, and the most names taken from it.
MAX_REQUEST_HEADERS_LENGTH = 2048
MAX_REQUEST_HEADERS = 50


def requested_headers(value: str | None) -> list[str]:
    """The names ``Access-Control-Request-Headers`` asks for; none unless it is a short list of names."""
    if not value or len(value) > MAX_REQUEST_HEADERS_LENGTH:
        return []
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(names) > MAX_REQUEST_HEADERS or not all(_HEADER_NAME.fullmatch(name) for name in names):
        return []
    return names


class MirroringCORSConfig(CORSConfig):
    """Powertools' ``CORSConfig``, whose allowed headers also take in those the preflight asks for.

    ``request_headers`` gives the current request's ``Access-Control-Request-Headers`` (read per
    request: Powertools builds the CORS headers only for an allowed origin, from ``to_dict``).
    """

    def __init__(self, *, request_headers: Callable[[], str | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._request_headers = request_headers

    def to_dict(self, origin: str | None) -> dict[str, str]:
        headers = super().to_dict(origin)
        asked = requested_headers(self._request_headers()) if headers else []
        if asked:
            allowed = {name.lower(): name for name in sorted(self.allow_headers)}
            for name in asked:
                allowed.setdefault(name.lower(), name)
            headers["Access-Control-Allow-Headers"] = ",".join(allowed.values())
        return headers
