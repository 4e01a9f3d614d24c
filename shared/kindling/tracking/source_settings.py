"""The source settings Segment's browser loader fetches before it sends anything.

analytics.js (analytics-next) loaded with ``cdnURL`` pointing at this API asks
``GET /v1/projects/<write key>/settings`` and configures itself from the answer. Ours makes
Segment.io the only destination, sending to this API (``apiHost``; the loader posts to
``<protocol>://<apiHost>/t``, ``/p``, ``/i``, ... and batches to ``/b``), with no device-mode
integrations, remote plugins, middleware, or telemetry of the loader's own to Segment.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from kindling.kernel.errors import NotFound

#: A few minutes: a browser or CDN reuses it, and a changed stack shows soon.
CACHE_CONTROL = "public, max-age=300"
#: Where the tracking endpoints are, under the API's host.
API_PATH = "/v1"
#: The analytics.js version Segment's own settings name for the Segment.io destination.
SEGMENTIO_VERSION = "4.4.7"


def _is_loopback(host: str) -> bool:
    try:
        name = urlsplit(f"//{host}").hostname or ""
        return name == "localhost" or name.endswith(".localhost") or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def api_location(domain_name: str) -> tuple[str, str]:
    """(protocol, apiHost) for the API answering on ``domain_name`` (a host, with its port if any).

    The deployed API is HTTPS only; the local stack serves plain HTTP on a loopback address.
    """
    host = domain_name.strip().lower()
    return ("http" if _is_loopback(host) else "https"), f"{host}{API_PATH}"


def settings_document(path_write_key: str, write_key: str, domain_name: str) -> dict[str, Any]:
    """The settings document for the source ``path_write_key`` names (``NotFound`` unless it is ours)."""
    if not hmac.compare_digest(path_write_key.encode(), write_key.encode()):
        raise NotFound("no source has this write key")
    protocol, api_host = api_location(domain_name)
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": path_write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": SEGMENTIO_VERSION, "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # The loader would report its own counters to Segment's API; a sample rate of 0 sends none.
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
