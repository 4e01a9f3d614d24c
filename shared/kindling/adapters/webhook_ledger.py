"""WebhookLedger on the single table: the inbound webhook deliveries already applied.

  WEBHOOK#<provider>#<delivery id> / WEBHOOK   one applied delivery; expires after 7 days

A CRM retries what it thinks failed; the record makes the retry a no-op. DynamoDB's TTL
removes records once no provider would retry them any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from kindling.adapters import aws
from kindling.crm.events import DEDUP_RETENTION
from kindling.kernel.clock import isoformat


def webhook_key(provider: str, delivery_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"WEBHOOK#{provider}#{delivery_id}"}, "SK": {"S": "WEBHOOK"}}


class DynamoWebhookLedger(aws.TableAdapter):
    def seen(self, provider: str, delivery_ids: Sequence[str]) -> set[str]:
        found = set()
        for delivery_id in delivery_ids:
            try:
                item = self.client.get_item(
                    TableName=self._table,
                    Key=webhook_key(provider, delivery_id),
                    ConsistentRead=True,
                    ProjectionExpression="PK",
                ).get("Item")
            except ClientError as exc:
                raise aws.translate(exc, "webhook ledger") from exc
            if item:
                found.add(delivery_id)
        return found

    def record(
        self, provider: str, delivery_id: str, digest: str, event_ids: Sequence[str], now: datetime
    ) -> bool:
        item: dict[str, Any] = {
            **webhook_key(provider, delivery_id),
            "digest": {"S": digest},
            "received_at": {"S": isoformat(now)},
            "expires_at": {"N": str(int((now + DEDUP_RETENTION).timestamp()))},
        }
        if event_ids:
            item["event_ids"] = {"L": [{"S": event_id} for event_id in event_ids]}
        try:
            self.client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(PK)"
            )
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws.translate(exc, "webhook ledger") from exc
        return True
