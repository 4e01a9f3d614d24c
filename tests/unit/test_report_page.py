"""The reports page carries the service's today, so its default range ends on the right day."""

from __future__ import annotations

from datetime import date

from kindling.metrics import report_page


def test_the_page_names_the_services_today_without_loosening_its_policy() -> None:
    monday, tuesday = report_page.page(date(2026, 3, 2)), report_page.page(date(2026, 3, 3))
    assert '<body data-today="2026-03-02">' in monday.body
    assert '<body data-today="2026-03-03">' in tuesday.body
    assert monday.content_security_policy == tuesday.content_security_policy
    assert "'unsafe-inline'" not in monday.content_security_policy
    assert monday.etag != tuesday.etag, "a cached page from yesterday is not served as today's"
