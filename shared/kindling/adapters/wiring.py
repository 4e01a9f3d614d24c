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
    table_name: str, bus_name: str, send_queue_url: str
) -> tuple[SalesService, CrmPolicy, ProgramsConfig]:
    programs, config, publisher = program_service(table_name, bus_name, send_queue_url)
    policy = CrmPolicy(table_name)
    service = SalesService(
        DynamoSalesStore(table_name),
        policy,
        programs,
        DynamoDueStore(table_name, lane="daily"),
        publisher,
        DynamoUnmatchedStore(table_name),
    )
    return service, policy, config
