"""HubSpot deals reach their contacts' leads: the API client against a fake HubSpot over HTTP, and
the sales service on moto with that client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kindling.adapters.config_store import CrmPolicy, DynamoConfigStore, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.hubspot_api import HubspotApi
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.sales_store import DynamoSalesStore, DynamoUnmatchedStore
from kindling.crm.sales import CrmLookupUnavailable, DealContact, SalesService
from kindling.kernel.errors import Retryable
from kindling.leads.profiles import ProfileService
from kindling.programs.service import ProgramService
from kindling.tracking.segment import WebEvent
from tests.fakes import RecordingPublisher, RecordingQueue
from tests.hubspot_fake import TOKEN, FakeHubspot

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CRM = {
    "stages": {"hubspot": {"appointmentscheduled": "sql", "closedwon": "customer"}},
    "quiet_stages": ["sql"],
}


@pytest.fixture
def hubspot() -> Iterator[FakeHubspot]:
    fake = FakeHubspot(
        deals={"9001": ("closedwon", ["501", "502", "503"]), "9002": ("appointmentscheduled", [])},
        contacts={"501": "buyer@acme.io", "502": "Champion@Acme.io", "503": "newcomer@acme.io"},
    )
    yield fake
    fake.close()


def api(hubspot: FakeHubspot, token: str = TOKEN) -> HubspotApi:
    return HubspotApi(hubspot.url, lambda: token, sleep=lambda s: None)


def test_a_deals_contacts_are_read_across_pages_with_their_emails_and_cached(hubspot) -> None:
    client = api(hubspot)
    expected = [
        DealContact("501", "buyer@acme.io"),
        DealContact("502", "Champion@Acme.io"),
        DealContact("503", "newcomer@acme.io"),
    ]
    assert client.contacts("9001") == expected
    asked = len(hubspot.requests)
    assert asked == 3, "two pages of associations and one batch read"
    assert client.contacts("9001") == expected and len(hubspot.requests) == asked, "the second look is cached"
    assert client.stage("9001") == "closedwon"
    assert client.contacts("404404") == [] and client.stage("404404") is None, "a deleted deal"


def test_rate_limited_answers_are_retried(hubspot) -> None:
    hubspot.throttle_next = 2
    assert api(hubspot).stage("9002") == "appointmentscheduled"
    hubspot.throttle_next = 99
    with pytest.raises(Retryable, match="429"):
        api(hubspot).stage("9001")


def test_a_refused_or_missing_token_makes_the_look_up_unavailable(hubspot) -> None:
    with pytest.raises(CrmLookupUnavailable, match="401"):
        api(hubspot, token="pat-wrong").contacts("9001")
    with pytest.raises(CrmLookupUnavailable, match="hubspot_access_token"):
        api(hubspot, token="").contacts("9001")


@pytest.fixture
def sales(table: str, hubspot: FakeHubspot) -> dict[str, Any]:
    DynamoConfigStore(table).apply("crm", CRM, T0)
    policy = CrmPolicy(table)
    policy.refresh()
    bus = RecordingPublisher()
    programs = ProgramService(
        DynamoProgramStore(table), ProgramsConfig(table), RecordingQueue(), bus, sleep=lambda s: None
    )
    unmatched = DynamoUnmatchedStore(table)
    service = SalesService(
        DynamoSalesStore(table),
        policy,
        programs,
        DynamoDueStore(table, lane="daily"),
        bus,
        unmatched,
        api(hubspot),
    )
    return {"service": service, "bus": bus, "unmatched": unmatched, "table": table}


def lead_with(table: str, email: str) -> str:
    event = WebEvent(
        message_id=f"m-{uuid.uuid4().hex}",
        type="identify",
        user_id=email,
        timestamp=T0,
        received_at=T0,
        traits={"email": email},
    )
    return ProfileService(DynamoLeadStore(table)).record(event, T0).lead_id


def deal_event(deal_id: str, kind: str = "crm.deal_stage_changed", **changes: Any) -> dict[str, Any]:
    return {
        "event_id": f"hubspot:62515:7:{uuid.uuid4().hex[:8]}:{deal_id}",
        "type": kind,
        "provider": "hubspot",
        "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        "lead": {"email": None, "crm_id": deal_id, "crm_object": "deal"},
        "deal_id": deal_id,
        "crm_stage": "closedwon",
        "lifecycle_stage": "customer",
        "stage_known": True,
        **changes,
    }


def test_a_deal_stage_moves_every_associated_contacts_lead_and_keeps_the_unknown_one(sales) -> None:
    table = sales["table"]
    buyer, champion = lead_with(table, "buyer@acme.io"), lead_with(table, "champion@acme.io")
    done = sales["service"].on_crm_event(
        "crm.deal_stage_changed", deal_event("9001"), T0 + timedelta(hours=1)
    )
    leads = DynamoLeadStore(table)
    assert leads.get(buyer).stage == "customer" and leads.get(champion).stage == "customer"  # type: ignore[union-attr]
    assert any("contact 503: unmatched: kept" in d for d in done), done
    listed, _ = sales["unmatched"].listing(T0 + timedelta(hours=1))
    assert [(e.email, e.object_id, e.stage) for e in listed] == [("newcomer@acme.io", "503", "customer")]


def test_a_contact_associated_with_a_deal_takes_the_deals_stage(sales, hubspot) -> None:
    table = sales["table"]
    lead_id = lead_with(table, "late.joiner@acme.io")
    hubspot.contacts["777"] = "late.joiner@acme.io"
    hubspot.deals["9002"] = ("appointmentscheduled", ["777"])
    associated = deal_event(
        "9002",
        "crm.deal_associated",
        lead={"email": None, "crm_id": "777", "crm_object": "contact"},
        crm_stage=None,
        lifecycle_stage=None,
        stage_known=False,
    )
    sales["service"].on_crm_event("crm.deal_associated", associated, T0 + timedelta(hours=1))
    lead = DynamoLeadStore(table).get(lead_id)
    assert lead is not None and lead.stage == "sql" and lead.quiet, "sales is talking to them now"


def test_without_a_token_a_deal_event_goes_by_what_it_says(table, hubspot) -> None:
    DynamoConfigStore(table).apply("crm", CRM, T0)
    policy = CrmPolicy(table)
    policy.refresh()
    bus = RecordingPublisher()
    programs = ProgramService(
        DynamoProgramStore(table), ProgramsConfig(table), RecordingQueue(), bus, sleep=lambda s: None
    )
    service = SalesService(
        DynamoSalesStore(table),
        policy,
        programs,
        DynamoDueStore(table, lane="daily"),
        bus,
        DynamoUnmatchedStore(table),
        api(hubspot, token=""),
    )
    done = service.on_crm_event("crm.deal_stage_changed", deal_event("9001"), T0)
    assert done[0].startswith("CRM look-up unavailable") and "kept" in done[1]
