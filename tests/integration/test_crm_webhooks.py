"""The CRM webhooks handler, invoked with the events API Gateway sends, against moto."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from standardwebhooks import Webhook

from kindling.adapters.config_store import DynamoConfigStore
from kindling.crm import hubspot
from kindling.crm.config import CrmConfig
from kindling_ops.config import documents, load_file
from tests.integration.events import Context, bus_routed_to_queue, http_event
from tests.integration.test_handlers import drain

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "https://api.kindling.example"
HUBSPOT_SECRET = "6c4e1b6e-9a2f-4f3e-8a51-0d6c2f1e7b90"
PIPEDRIVE = ("kindling-hooks", "pipedrive-password-0123456789")
ORG = "00D5e000000TkQZEA0"
SALESFORCE_SECRET = "salesforce-shared-secret-0123456789"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"crm-integration-webhook-key!").decode()


@pytest.fixture
def crm_bus(moto_endpoint: str) -> tuple[str, str]:
    """A bus whose CRM events are routed to a queue, as the template routes them to their consumer."""
    return bus_routed_to_queue("kindling.crm")


@pytest.fixture
def crm_table(table: str, now: datetime) -> str:
    config = load_file(ROOT / "config" / "crm.yaml", CrmConfig)
    DynamoConfigStore(table).apply("crm", documents({"crm.yaml": config})["crm.yaml"], now)
    return table


def environment(table: str, bus: str, **overrides: str) -> dict[str, Any]:
    """The function's settings, and its CRM credentials secret with ``overrides`` (by JSON field)."""
    credentials = {
        "hubspot_client_secret": HUBSPOT_SECRET,
        "pipedrive_user": PIPEDRIVE[0],
        "pipedrive_password": PIPEDRIVE[1],
        "salesforce_org_id": ORG,
        "salesforce_secret": SALESFORCE_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        **overrides,
    }
    return {
        "TABLE_NAME": table,
        "BUS_NAME": bus,
        "PUBLIC_API_URL": PUBLIC,
        "secrets": {"CRM_SECRETS_ARN": json.dumps(credentials)},
    }


@pytest.fixture
def hooks(load_handler, crm_table: str, crm_bus: tuple[str, str]) -> ModuleType:
    return load_handler("crm_webhooks", **environment(crm_table, crm_bus[0]))


def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    return module.lambda_handler(event, Context())


def problems(response: dict[str, Any]) -> list[str]:
    return json.loads(response["body"])["problems"]


# --- HubSpot ---------------------------------------------------------------------------------------


def deal_stage(stage: str = "contractsent", event_id: int = 100, attempt: int = 0) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": int(time.time() * 1000) - 2000,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": attempt,
        "objectId": 9001,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
    }


def hubspot_request(
    events: list[dict[str, Any]],
    *,
    signed_at: datetime | None = None,
    uri: str | None = None,
    query: dict[str, str] | None = None,
    tamper: bool = False,
) -> dict[str, Any]:
    body = json.dumps(events).encode()
    timestamp = str(int((signed_at or datetime.now(UTC)).timestamp() * 1000))
    raw_query = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    signed_uri = uri or hubspot.hubspot_request_uri(PUBLIC, "/v1/webhooks/hubspot", raw_query)
    signature = hubspot.hubspot_signature(HUBSPOT_SECRET, "POST", signed_uri, body, timestamp)
    return http_event(
        "POST",
        "/v1/webhooks/hubspot",
        body=(body + b" ") if tamper else body,
        query=query,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-Version": "v3",
        },
    )


def test_a_signed_hubspot_batch_is_on_the_bus_once(hooks, crm_bus, crm_table, dynamodb) -> None:
    response = invoke(hooks, hubspot_request([deal_stage()], query={"portal": "62515", "tag": "a%3Ab"}))
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == {"published": 1, "duplicates": 0, "ignored": 0}
    [envelope] = drain(crm_bus[1])
    assert (envelope["source"], envelope["detail-type"]) == ("kindling.crm", "crm.deal_stage_changed")
    detail = envelope["detail"]
    assert detail["event_id"] == "hubspot:62515:7:100:9001"
    assert detail["lead"] == {"email": None, "crm_id": "9001", "crm_object": "deal"}
    assert (detail["crm_stage"], detail["lifecycle_stage"], detail["stage_known"]) == (
        "contractsent",
        "opportunity",
        True,
    )
    record = dynamodb.get_item(
        TableName=crm_table, Key={"PK": {"S": "WEBHOOK#hubspot#62515:7:100:9001"}, "SK": {"S": "WEBHOOK"}}
    )["Item"]
    expires = int(record["expires_at"]["N"]) - time.time()
    assert timedelta(days=7) - timedelta(minutes=1) < timedelta(seconds=expires) <= timedelta(days=7)

    # HubSpot's retry: a new request, newly signed, the same event with a higher attemptNumber.
    again = invoke(hooks, hubspot_request([deal_stage(attempt=1)]))
    assert again["statusCode"] == 200
    assert json.loads(again["body"]) == {"published": 0, "duplicates": 1, "ignored": 0}
    assert drain(crm_bus[1]) == []


def test_with_no_public_url_the_apis_own_url_is_the_signed_one(load_handler, crm_table, crm_bus) -> None:
    # What the template sets when PublicApiUrl is empty; http_event's requestContext.apiId is "api".
    default = "https://{api_id}.execute-api.us-east-1.amazonaws.com"
    module = load_handler("crm_webhooks", **{**environment(crm_table, crm_bus[0]), "PUBLIC_API_URL": default})
    own = "https://api.execute-api.us-east-1.amazonaws.com/v1/webhooks/hubspot"
    assert invoke(module, hubspot_request([deal_stage()], uri=own))["statusCode"] == 200
    assert invoke(module, hubspot_request([deal_stage(event_id=2)]))["statusCode"] == 401  # signed for PUBLIC
    assert len(drain(crm_bus[1])) == 1


def test_an_unknown_hubspot_stage_is_published_flagged_unknown(hooks, crm_bus) -> None:
    response = invoke(
        hooks, hubspot_request([deal_stage("9988776"), {**deal_stage(), "subscriptionType": "x.y"}])
    )
    assert json.loads(response["body"]) == {"published": 1, "duplicates": 0, "ignored": 1}
    [envelope] = drain(crm_bus[1])
    detail = envelope["detail"]
    assert (detail["crm_stage"], detail["lifecycle_stage"], detail["stage_known"]) == ("9988776", None, False)


@pytest.mark.parametrize(
    "request_event",
    [
        pytest.param(
            lambda: http_event("POST", "/v1/webhooks/hubspot", body=json.dumps([deal_stage()])), id="unsigned"
        ),
        pytest.param(lambda: hubspot_request([deal_stage()], tamper=True), id="tampered"),
        pytest.param(
            lambda: hubspot_request([deal_stage()], signed_at=datetime.now(UTC) - timedelta(minutes=6)),
            id="replayed",
        ),
        pytest.param(
            # Signed for the URL API Gateway reports, not the public one HubSpot was given.
            lambda: hubspot_request([deal_stage()], uri="https://api.example.com/v1/webhooks/hubspot"),
            id="other-url",
        ),
    ],
)
def test_unauthenticated_hubspot_requests_get_401_and_publish_nothing(hooks, crm_bus, request_event) -> None:
    response = invoke(hooks, request_event())
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == "unauthorized"
    assert drain(crm_bus[1]) == []


def test_a_signed_but_malformed_hubspot_batch_gets_400_naming_the_problem(hooks, crm_bus) -> None:
    event = deal_stage()
    del event["objectId"]
    response = invoke(hooks, hubspot_request([deal_stage(event_id=5), event]))
    assert response["statusCode"] == 400
    assert problems(response) == [
        "[1]: objectId (or fromObjectId and toObjectId for an association change) is required"
    ]
    assert drain(crm_bus[1]) == []


# --- Pipedrive -------------------------------------------------------------------------------------


def pipedrive_request(payload: dict[str, Any], credentials: tuple[str, str] = PIPEDRIVE) -> dict[str, Any]:
    token = base64.b64encode(":".join(credentials).encode()).decode()
    return http_event(
        "POST", "/v1/webhooks/pipedrive", body=payload, headers={"Authorization": f"Basic {token}"}
    )


def deal_moved(retry: int = 0) -> dict[str, Any]:
    deal = {"id": 501, "stage_id": 4, "status": "open", "person_id": 42, "value": 24000, "currency": "EUR"}
    return {
        "v": 1,
        "meta": {
            "v": 1,
            "action": "updated",
            "object": "deal",
            "id": 501,
            "timestamp": 1795599000,
            "timestamp_micro": 1795599000123456,
            "webhook_id": "77",
            "host": "acme.pipedrive.com",
        },
        "current": {**deal, "user_id": 11},
        "previous": {**deal, "stage_id": 2, "user_id": 11},
        "retry": retry,
        "event": "updated.deal",
    }


def test_a_pipedrive_deal_stage_change_is_published_once(hooks, crm_bus) -> None:
    response = invoke(hooks, pipedrive_request(deal_moved()))
    assert response["statusCode"] == 200, response["body"]
    [envelope] = drain(crm_bus[1])
    detail = envelope["detail"]
    assert envelope["detail-type"] == "crm.deal_stage_changed"
    assert (detail["crm_stage"], detail["lifecycle_stage"], detail["amount"]) == ("4", "opportunity", 24000.0)
    assert detail["lead"] == {"email": None, "crm_id": "42", "crm_object": "person"}
    retried = invoke(hooks, pipedrive_request(deal_moved(retry=1)))
    assert retried["statusCode"] == 200 and json.loads(retried["body"])["duplicates"] == 1
    assert drain(crm_bus[1]) == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic " + base64.b64encode(b"kindling-hooks:guess").decode()}],
    ids=["no-credentials", "wrong-password"],
)
def test_pipedrive_without_its_credentials_gets_401(hooks, crm_bus, headers) -> None:
    response = invoke(hooks, http_event("POST", "/v1/webhooks/pipedrive", body=deal_moved(), headers=headers))
    assert response["statusCode"] == 401 and "Basic" in response["headers"]["WWW-Authenticate"]
    assert drain(crm_bus[1]) == []


def test_a_malformed_pipedrive_payload_gets_400(hooks, crm_bus) -> None:
    response = invoke(hooks, pipedrive_request({"meta": {"action": "updated"}, "current": {}}))
    assert response["statusCode"] == 400
    assert problems(response) == ["meta: names no object: expected meta.object (v1) or meta.entity (v2)"]
    assert drain(crm_bus[1]) == []


# --- Salesforce ------------------------------------------------------------------------------------

OUTBOUND = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{ORG}</OrganizationId>
   <ActionId>04k5e000000Gm3HAAS</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/61.0/00D5e000000TkQZ</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/61.0/00D5e000000TkQZ</PartnerUrl>
   <Notification>
    <Id>04l5e00000BnCxWAAV</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0065e00000AbCdEAAZ</sf:Id>
     <sf:Amount>25000.0</sf:Amount>
     <sf:ContactId>0035e00000QwErTAAZ</sf:ContactId>
     <sf:OwnerId>0055e000001XyZAAAY</sf:OwnerId>
     <sf:StageName>Negotiation/Review</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
"""
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">' for i in range(1, 10))
    + "]><lolz>&lol9;</lolz>"
)
EXTERNAL_ENTITY = OUTBOUND.replace(
    "?>", '?><!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 1
).replace(f"<OrganizationId>{ORG}", "<OrganizationId>&xxe;")


def salesforce_request(body: str, secret: str | None = SALESFORCE_SECRET, in_header: bool = False) -> dict:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    query = None
    if secret is not None and in_header:
        headers["X-Kindling-Secret"] = secret
    elif secret is not None:
        query = {"secret": secret}
    return http_event("POST", "/v1/webhooks/salesforce", body=body, headers=headers, query=query)


def test_a_salesforce_outbound_message_is_acknowledged_the_soap_way(hooks, crm_bus) -> None:
    response = invoke(hooks, salesforce_request(OUTBOUND))
    assert response["statusCode"] == 200, response["body"]
    assert response["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert response["body"] == (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
        "</notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    [envelope] = drain(crm_bus[1])
    detail = envelope["detail"]
    assert (detail["event_id"], detail["crm_stage"], detail["lifecycle_stage"]) == (
        "salesforce:04l5e00000BnCxWAAV",
        "Negotiation/Review",
        "opportunity",
    )
    assert detail["lead"] == {"email": None, "crm_id": "0035e00000QwErTAAZ", "crm_object": "contact"}
    # Salesforce resends until it reads the ack: the resend is acknowledged again, not applied again.
    again = invoke(hooks, salesforce_request(OUTBOUND, in_header=True))
    assert again["statusCode"] == 200 and "<Ack>true</Ack>" in again["body"]
    assert drain(crm_bus[1]) == []


@pytest.mark.parametrize(
    ("request_event", "status"),
    [
        pytest.param(lambda: salesforce_request(OUTBOUND, secret=None), 401, id="no-secret"),
        pytest.param(
            lambda: salesforce_request(OUTBOUND, secret="guess-guess-guess-guess"), 401, id="bad-secret"
        ),
        pytest.param(
            lambda: salesforce_request(OUTBOUND.replace(ORG, "00D5e000000TkQYEA0")), 401, id="other-org"
        ),
        pytest.param(lambda: salesforce_request(BILLION_LAUGHS), 400, id="billion-laughs"),
        pytest.param(lambda: salesforce_request(EXTERNAL_ENTITY), 400, id="external-entity"),
        pytest.param(lambda: salesforce_request("<not xml"), 400, id="not-xml"),
    ],
)
def test_refused_salesforce_messages_publish_nothing(hooks, crm_bus, request_event, status) -> None:
    response = invoke(hooks, request_event())
    assert response["statusCode"] == status, response["body"]
    if status == 400:
        assert problems(response)
    assert drain(crm_bus[1]) == []


def test_xml_bombs_are_refused_with_a_reason(hooks) -> None:
    response = invoke(hooks, salesforce_request(BILLION_LAUGHS))
    assert problems(response)[0].startswith("the XML declares a DTD, entities or external references")


# --- generic (Standard Webhooks) -------------------------------------------------------------------


def generic_request(
    payload: Any, *, message_id: str = "msg_2KqXcRtY", at: datetime | None = None, tamper: bool = False
) -> dict[str, Any]:
    body = json.dumps(payload)
    signature = Webhook(WEBHOOK_SECRET).sign(message_id, at or datetime.now(UTC), body)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int((at or datetime.now(UTC)).timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return http_event("POST", "/v1/webhooks/generic", body=body + (" " if tamper else ""), headers=headers)


STAGE_CHANGED = {
    "type": "deal.stage_changed",
    "data": {
        "email": "Ada@Acme.io",
        "crm_id": "C-1",
        "deal_id": "D-7",
        "stage": "negotiation",
        "amount": 9000,
    },
}


def test_a_signed_generic_webhook_is_on_the_bus_and_its_retry_is_not(hooks, crm_bus) -> None:
    response = invoke(hooks, generic_request(STAGE_CHANGED))
    assert response["statusCode"] == 200, response["body"]
    [envelope] = drain(crm_bus[1])
    detail = envelope["detail"]
    assert (envelope["detail-type"], detail["event_id"]) == ("crm.deal_stage_changed", "generic:msg_2KqXcRtY")
    assert detail["lead"] == {"email": "ada@acme.io", "crm_id": "C-1", "crm_object": None}
    assert (detail["lifecycle_stage"], detail["amount"], detail["deal_id"]) == ("opportunity", 9000.0, "D-7")
    # Standard Webhooks retries reuse webhook-id (with a new timestamp and signature).
    retried = invoke(hooks, generic_request(STAGE_CHANGED, at=datetime.now(UTC) + timedelta(seconds=30)))
    assert retried["statusCode"] == 200 and json.loads(retried["body"])["duplicates"] == 1
    assert drain(crm_bus[1]) == []


@pytest.mark.parametrize(
    ("request_event", "status"),
    [
        pytest.param(
            lambda: http_event("POST", "/v1/webhooks/generic", body=STAGE_CHANGED), 401, id="unsigned"
        ),
        pytest.param(lambda: generic_request(STAGE_CHANGED, tamper=True), 401, id="tampered"),
        pytest.param(
            lambda: generic_request(STAGE_CHANGED, at=datetime.now(UTC) - timedelta(minutes=10)),
            401,
            id="stale",
        ),
        pytest.param(
            lambda: generic_request({"type": "deal.stage_changed", "data": {"email": "a@b.io"}}),
            400,
            id="no-stage",
        ),
        pytest.param(lambda: generic_request({"type": "lead.won", "data": {}}), 400, id="bad-type"),
    ],
)
def test_refused_generic_webhooks_publish_nothing(hooks, crm_bus, request_event, status) -> None:
    response = invoke(hooks, request_event())
    assert response["statusCode"] == status, response["body"]
    assert drain(crm_bus[1]) == []


def test_a_bad_generic_body_is_answered_with_the_field(hooks) -> None:
    response = invoke(hooks, generic_request({"type": "deal.stage_changed", "data": {"email": "a@b.io"}}))
    assert problems(response) == ["data.stage: required for deal.stage_changed"]


# --- configuration ---------------------------------------------------------------------------------


def test_a_provider_without_credentials_is_refused_as_not_configured(
    load_handler, crm_table, crm_bus
) -> None:
    module = load_handler(
        "crm_webhooks",
        **environment(
            crm_table, crm_bus[0], hubspot_client_secret="", pipedrive_password="", webhook_secret=""
        ),
    )
    for event in (
        hubspot_request([deal_stage()]),
        pipedrive_request(deal_moved()),
        generic_request(STAGE_CHANGED),
    ):
        response = invoke(module, event)
        assert response["statusCode"] == 503
        assert json.loads(response["body"])["error"] == "not_configured"
    assert invoke(module, salesforce_request(OUTBOUND))["statusCode"] == 200  # the others still work
    assert len(drain(crm_bus[1])) == 1


def test_with_no_crm_config_applied_stages_are_reported_unknown(load_handler, table, crm_bus) -> None:
    module = load_handler("crm_webhooks", **environment(table, crm_bus[0]))
    assert invoke(module, hubspot_request([deal_stage("closedwon")]))["statusCode"] == 200
    [envelope] = drain(crm_bus[1])
    assert (envelope["detail"]["crm_stage"], envelope["detail"]["stage_known"]) == ("closedwon", False)
