"""Services put together from their DynamoDB, SQS and EventBridge adapters, once per cold start.

Several functions run the program engine (enrolment, steps, CRM events, the daily sweep);
they build it here the same way.
"""

from __future__ import annotations

from kindling.adapters.config_store import CrmPolicy, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.queue import SqsQueue
from kindling.adapters.sales_store import DynamoSalesStore, DynamoUnmatchedStore
from kindling.crm.sales import SalesService
from kindling.kernel.errors import InvalidInput
from kindling.programs.service import ProgramService


def program_service(
    table_name: str, bus_name: str, send_queue_url: str
) -> tuple[ProgramService, ProgramsConfig, EventBridgePublisher]:
    config = ProgramsConfig(table_name)
    publisher = EventBridgePublisher(bus_name)
    service = ProgramService(
        DynamoProgramStore(table_name, decay=config.decay, event_window_days=config.event_window_days),
        config,
        SqsQueue(send_queue_url),
        publisher,
    )
    return service, config, publisher


def sales_service(
    table_name: str,
    bus_name: str,
    send_queue_url: str,
    crm_secrets_arn: str = "",
    hubspot_api_url: str = "https://api.hubapi.com",
) -> tuple[SalesService, CrmPolicy, ProgramsConfig]:
    """The sales service; with the CRM secret's id, HubSpot deals are looked up with its access token."""
    programs, config, publisher = program_service(table_name, bus_name, send_queue_url)
    policy = CrmPolicy(table_name)
    hubspot = None
    if crm_secrets_arn:
        from kindling.adapters.hubspot_api import HubspotApi
        from kindling.adapters.secrets import SecretsManagerSecret
        from kindling.kernel.secrets import CrmCredentials

        secret = SecretsManagerSecret(crm_secrets_arn)

        def token() -> str:
            try:
                return CrmCredentials.from_secret(secret).hubspot_access_token.get_secret_value()
            except InvalidInput:
                return ""  # a malformed secret: no look-ups, as without a token

        hubspot = HubspotApi(hubspot_api_url, token)
    service = SalesService(
        DynamoSalesStore(table_name),
        policy,
        programs,
        DynamoDueStore(table_name, lane="daily"),
        publisher,
        DynamoUnmatchedStore(table_name),
        hubspot,
    )
    return service, policy, config
