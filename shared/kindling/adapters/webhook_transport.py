"""WebhookTransport on ``urllib.request``: the Lambda runtime ships no ``requests``.

Redirects are never followed. urllib would turn a redirected POST into a body-less GET
(and copy the signature headers to wherever the redirect points), so a 2xx from the
redirect target would report a webhook as delivered that never was. The 3xx status is
returned instead and ``deliver`` treats it as a misconfigured URL.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from kindling.kernel.errors import InvalidInput, Retryable

USER_AGENT = "kindling-webhooks/1"
ALLOWED_SCHEMES = frozenset({"http", "https"})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class UrllibTransport:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects())

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST once and return whatever status came back.

        ``timeout`` bounds connecting and each socket read, not the whole exchange: a
        receiver that trickles bytes can take longer, and the Lambda timeout is the cap.
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        _check_url(url)
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("User-Agent", USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except http.client.InvalidURL as exc:
            raise InvalidInput("the webhook URL is malformed") from exc
        except urllib.error.URLError as exc:
            raise Retryable(f"could not reach the webhook receiver: {_reason(exc.reason)}") from exc
        except (http.client.HTTPException, OSError) as exc:
            # TimeoutError and ConnectionError are OSErrors; HTTPException covers a dropped or garbled reply.
            raise Retryable(f"the webhook receiver did not answer: {_reason(exc)}") from exc


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidInput("the webhook URL is malformed") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise InvalidInput(f"webhook URLs must be http or https, not {parts.scheme or 'schemeless'!r}")
    if not parts.hostname:
        raise InvalidInput("the webhook URL has no host")


def _reason(reason: object) -> str:
    # The class name and errno text only: never the URL, which may carry a token.
    if isinstance(reason, OSError) and reason.strerror:
        return f"{type(reason).__name__}: {reason.strerror}"
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
