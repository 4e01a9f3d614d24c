"""Queued emails go out through SES exactly once, or are skipped or deferred with a reason."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from kindling.adapters.config_store import EmailConfig
from kindling.adapters.email_store import DynamoEmailStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.adapters.ses import SesMailer
from kindling.email.render import LinkSigner
from kindling.email.sender import EmailSender, SendRequest
from kindling.kernel import clock
from kindling.kernel.consumer import SqsConsumer
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import SenderSettings


class SendRecord(SqsRecordModel):
    body: Json[SendRequest]


settings = SenderSettings()
link_secret = SecretsManagerSecret(settings.link_secret_arn)
# Erased addresses that had opted out are remembered by a hash under a key of their own, which
# is never rotated (the link key may be, if it leaks).
erasure_key = SecretsManagerSecret(settings.erasure_key_secret_arn)
store = DynamoEmailStore(
    settings.table_name,
    hash_key=lambda: erasure_key.value().encode(),
    legacy_hash_key=lambda: link_secret.value().encode(),  # erasures made before the erasure key
)
config = EmailConfig(settings.table_name)
mailer = SesMailer(settings.configuration_set)
publisher = EventBridgePublisher(settings.bus_name)


def _sender() -> EmailSender:
    """The sender with the link key in force (read through the secret's cache, so a rotation applies)."""
    links = LinkSigner(link_secret.value().encode())
    return EmailSender(store, mailer, config, links, settings.public_api_url, publisher)


def record_handler(record: SendRecord) -> None:
    try:
        outcome = _sender().handle(record.body, clock.current().now())
    except Exception as exc:
        store.note_failure(record.body.send_id, record.body.lead_id, f"{type(exc).__name__}: {exc}")
        raise
    metrics.add_metric(name=f"Email_{outcome.status}", unit=MetricUnit.Count, value=1)
    if outcome.reason:
        logger.info(
            "send not sent now",
            extra={"send_id": record.body.send_id, "outcome": outcome.status, "reason": outcome.reason},
        )


consumer = SqsConsumer(SendRecord, record_handler, config=(config,))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return consumer.process(event, context)
