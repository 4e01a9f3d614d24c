"""The settings document for Segment's browser loader, and where it tells the loader to send events."""

from __future__ import annotations

import pytest

from kindling.kernel.errors import NotFound
from kindling.tracking.source_settings import api_location, settings_document


@pytest.mark.parametrize(
    ("domain", "protocol", "api_host"),
    [
        (
            "abc123.execute-api.eu-west-1.amazonaws.com",
            "https",
            "abc123.execute-api.eu-west-1.amazonaws.com/v1",
        ),
        ("Track.Acme.io", "https", "track.acme.io/v1"),
        ("127.0.0.1:3000", "http", "127.0.0.1:3000/v1"),
        ("localhost:8080", "http", "localhost:8080/v1"),
        ("[::1]:3000", "http", "[::1]:3000/v1"),
        ("10.0.0.5:3000", "https", "10.0.0.5:3000/v1"),
        ("[not-an-address", "https", "[not-an-address/v1"),
    ],
)
def test_the_api_is_https_except_the_local_stack_on_a_loopback_address(
    domain: str, protocol: str, api_host: str
) -> None:
    assert api_location(domain) == (protocol, api_host)


def test_only_the_stacks_own_write_key_has_settings() -> None:
    document = settings_document("wk-1", "wk-1", "track.acme.io")
    assert document["integrations"]["Segment.io"]["apiKey"] == "wk-1"
    for other in ("wk-2", "wk-1 ", "", "WK-1"):
        with pytest.raises(NotFound, match="no source has this write key"):
            settings_document(other, "wk-1", "track.acme.io")
