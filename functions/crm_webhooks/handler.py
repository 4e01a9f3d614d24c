"""Inbound CRM webhooks: authenticate each provider its own way, normalise, publish once per delivery."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import SecretStr

from kindling.adapters.config_store import ConfigCache, DynamoConfigStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.adapters.webhook_ledger import DynamoWebhookLedger
from kindling.crm import events, generic, hubspot, pipedrive, salesforce
from kindling.crm.config import CrmConfig
from kindling.kernel import clock
from kindling.kernel.errors import InvalidInput, NotFound
from kindling.kernel.http_api import json_response, raw_body, register_errors
from kindling.kernel.observability import logger, metrics
from kindling.kernel.secrets import CrmCredentials
from kindling.kernel.settings import CrmWebhooksSettings
from kindling.webhooks.standard import WebhookSecret, verify

settings = CrmWebhooksSettings()
publisher = EventBridgePublisher(settings.bus_name)
ledger = DynamoWebhookLedger(settings.table_name)
crm_config = ConfigCache(DynamoConfigStore(settings.table_name), "crm", CrmConfig)
NO_CONFIG = CrmConfig()
#: What an operator sets in the CRM webhooks secret (its JSON) to turn each provider on.
SECRET_FIELDS = {
    "hubspot": "hubspot_client_secret in the CRM webhooks secret",
    "pipedrive": "pipedrive_user and pipedrive_password in the CRM webhooks secret",
    "salesforce": "salesforce_org_id and salesforce_secret in the CRM webhooks secret",
    "generic": "webhook_secret (whsec_...) in the CRM webhooks secret",
}
app = APIGatewayHttpResolver()
register_errors(app, auth_scheme='Basic realm="kindling"')


crm_secrets = SecretsManagerSecret(settings.crm_secrets_arn)


def _credentials() -> CrmCredentials:
    """The credentials in force (read through the secret's cache, so a rotation applies)."""
    try:
        return CrmCredentials.from_secret(crm_secrets)
    except InvalidInput as exc:
        # The operator's mistake, not the caller's: every provider is off until it is fixed.
        raise events.NotConfigured(str(exc)) from None


def _generic_secret(value: SecretStr) -> WebhookSecret | None:
    if not value.get_secret_value():
        return None
    try:
        return WebhookSecret(value.get_secret_value())
    except InvalidInput as exc:
        logger.error(
            "webhook_secret is not a whsec_ secret: generic webhooks are off", extra={"why": str(exc)}
        )
        return None


@app.exception_handler(events.NotConfigured)
def _not_configured(exc: events.NotConfigured) -> Response:
    logger.warning("webhook for a provider that is not configured", extra={"reason": str(exc)})
    return json_response(503, {"error": "not_configured", "message": str(exc)})


def _required(value: str, provider: str, fields: str) -> str:
    if not value:
        raise events.NotConfigured(f"{provider} webhooks are not configured on this stack: set {fields}")
    return value


def _config() -> CrmConfig:
    try:
        return crm_config.current()[1]
    except NotFound:
        logger.warning("no crm config applied: every CRM stage is reported unknown (kindling config apply)")
        return NO_CONFIG


def _body() -> bytes:
    body = raw_body(app.current_event)
    events.check_size(body)
    return body


def _receive(provider: str, deliveries: list[events.Delivery]) -> events.Receipt:
    receipt = events.receive(deliveries, ledger, publisher, clock.current().now())
    for event in receipt.unknown_stages:
        # Kept and passed on as given; a person adds it to config/crm.yaml, nobody guesses it.
        logger.warning(
            "unknown CRM stage",
            extra={"provider": event.provider, "crm_stage": event.crm_stage, "event_id": event.event_id},
        )
    if receipt.unknown_stages:
        metrics.add_metric(name="CrmUnknownStages", unit=MetricUnit.Count, value=len(receipt.unknown_stages))
    duplicates, ignored = receipt.duplicates, receipt.ignored
    if duplicates:
        logger.info("repeated deliveries acknowledged", extra={"provider": provider, "ids": duplicates})
        metrics.add_metric(name="CrmDuplicateDeliveries", unit=MetricUnit.Count, value=len(duplicates))
    if ignored:
        logger.info("deliveries with nothing to apply", extra={"provider": provider, "why": ignored})
    metrics.add_metric(name="CrmEventsPublished", unit=MetricUnit.Count, value=len(receipt.published))
    return receipt


@app.post("/v1/webhooks/hubspot")
def receive_hubspot() -> Response:
    secret = _required(
        _credentials().hubspot_client_secret.get_secret_value(), "hubspot", SECRET_FIELDS["hubspot"]
    )
    event = app.current_event
    body = _body()
    hubspot.verify_hubspot(
        secret,
        method=event.request_context.http.method,
        uri=hubspot.hubspot_request_uri(
            hubspot.public_base_url(settings.public_api_url, event.request_context.api_id),
            event.raw_path,
            event.raw_query_string,
        ),
        body=body,
        headers=event.headers,
        now=clock.current().now(),
    )
    receipt = _receive("hubspot", hubspot.hubspot_deliveries(body, _config()))
    return json_response(200, receipt.summary())


@app.post("/v1/webhooks/pipedrive")
def receive_pipedrive() -> Response:
    credentials = _credentials()
    user = _required(credentials.pipedrive_user, "pipedrive", SECRET_FIELDS["pipedrive"])
    password = _required(
        credentials.pipedrive_password.get_secret_value(), "pipedrive", SECRET_FIELDS["pipedrive"]
    )
    pipedrive.verify_pipedrive(user, password, app.current_event.headers.get("authorization"))
    deliveries = pipedrive.pipedrive_deliveries(_body(), _config(), clock.current().now())
    return json_response(200, _receive("pipedrive", deliveries).summary())


@app.post("/v1/webhooks/salesforce")
def receive_salesforce() -> Response:
    credentials = _credentials()
    org_id = _required(credentials.salesforce_org_id, "salesforce", SECRET_FIELDS["salesforce"])
    secret = _required(
        credentials.salesforce_secret.get_secret_value(), "salesforce", SECRET_FIELDS["salesforce"]
    )
    event = app.current_event
    # Checked before the XML is read: nothing from an unauthenticated caller gets parsed.
    salesforce.verify_salesforce_secret(
        secret, event.headers.get(salesforce.SALESFORCE_SECRET_HEADER), event.get_query_string_value("secret")
    )
    message = salesforce.parse_salesforce(_body())
    salesforce.verify_salesforce_org(org_id, message)
    _receive("salesforce", salesforce.salesforce_deliveries(message, _config(), clock.current().now()))
    return Response(status_code=200, content_type="text/xml; charset=utf-8", body=salesforce.SALESFORCE_ACK)


@app.post("/v1/webhooks/generic")
def receive_generic() -> Response:
    generic_secret = _generic_secret(_credentials().webhook_secret)
    if generic_secret is None:
        raise events.NotConfigured(
            f"generic webhooks are not configured on this stack: set {SECRET_FIELDS['generic']}"
        )
    event = app.current_event
    body = _body()
    verify(generic_secret, event.headers, body, clock.current().now(), events.SIGNATURE_TOLERANCE)
    receipt = _receive("generic", generic.generic_deliveries(body, event.headers, _config()))
    return json_response(200, receipt.summary())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    crm_config.refresh()
    return app.resolve(event, context)
