"""The metrics consumer and the email report, through the real handlers, against moto.

These events reach the consumer weeks after they happened (a redrive, a CRM import): each is late,
so it is counted at once (see ``test_metrics_fold`` for the fresh ones, which the fold counts)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kindling_ops.lambda_events import sqs_record
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, http_event

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LEAD = "ld_metrics1"

pytestmark = pytest.mark.usefixtures("weeks_later")


def envelope(source: str, detail_type: str, detail: dict[str, Any]) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": "2026-11-02T09:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def email(status: str, send_id: str, at: datetime, template: str = "welcome-1", **extra: Any) -> str:
    program, _, rest = send_id.partition(".")
    step = rest.split(".")[2] if rest.count(".") >= 2 else None
    detail = {
        "event_id": f"{send_id}:{status}",
        "send_id": send_id,
        "lead_id": LEAD,
        "template": template,
        "program": program if step else None,
        "step": step,
        "reason": extra.get("reason"),
        "at": at.isoformat(),
    }
    return envelope("kindling.email", f"email.{status}", detail)


def engagement(name: str, message_id: str, send_id: str, at: datetime, template: str | None) -> str:
    properties = {"send_id": send_id, **({"template": template} if template else {})}
    detail = {
        "message_id": message_id,
        "type": "track",
        "event": name,
        "lead_id": LEAD,
        "timestamp": at.isoformat(),
        "received_at": at.isoformat(),
        "properties": properties,
    }
    return envelope("kindling.email", "web.track", detail)


def stage(event_id: str, at: datetime, from_stage: str, to: str) -> str:
    detail = {"event_id": event_id, "lead_id": LEAD, "from": from_stage, "to": to, "by": "scoring"}
    return envelope("kindling.scoring", "lead.stage_changed", dict(detail, at=at.isoformat()))


def deliver(handler: Any, *bodies: str) -> dict[str, Any]:
    records = [sqs_record(body, str(i)) for i, body in enumerate(bodies)]
    return handler.lambda_handler({"Records": records}, Context())


def report(leads_api: Any, **query: str) -> tuple[int, dict[str, Any]]:
    event = http_event(
        "GET", "/v1/reports/emails", headers={"Authorization": f"Bearer {ADMIN}"}, query=query or None
    )
    response = leads_api.lambda_handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def test_events_count_once_and_advances_credit_the_emails_in_the_window(metrics, leads_api, dynamodb, table):
    old = f"welcome.{LEAD}.1.intro"  # 20 days before the move: outside the window
    recent = f"welcome.{LEAD}.1.case"
    last = "api-abc"
    # Unsubscribes do not name the template: the send's own record does, as the sender wrote it.
    send_item = {"PK": {"S": f"SEND#{recent}"}, "SK": {"S": "SEND"}, "template": {"S": "welcome-1"}}
    dynamodb.put_item(TableName=table, Item=send_item)
    sent_old, sent_recent, sent_last = (
        email("sent", old, T0),
        email("sent", recent, T0 + timedelta(days=10)),
        email("sent", last, T0 + timedelta(days=15), template="webinar"),
    )
    opened = [
        engagement("Email Opened", f"open-{i}", recent, T0 + timedelta(days=10, hours=i), "welcome-1")
        for i in range(3)
    ]
    result = deliver(
        metrics,
        sent_old,
        sent_recent,
        sent_recent,  # a redelivery
        *opened,
        opened[0],
        engagement("Email Clicked", "click-1", recent, T0 + timedelta(days=10, hours=4), "welcome-1"),
        engagement("Unsubscribed", "unsub-1", recent, T0 + timedelta(days=11), None),
        email("skipped", f"welcome.{LEAD}.1.follow", T0 + timedelta(days=12), reason="quiet_period"),
        sent_last,
    )
    assert result == {"batchItemFailures": []}
    move = stage("m-9:stage", T0 + timedelta(days=20), "lead", "mql")
    assert deliver(metrics, move, move, stage("m-10:stage", T0 + timedelta(days=21), "mql", "lead")) == {
        "batchItemFailures": []
    }

    status, body = report(leads_api, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 200
    rows = {(r["program"], r["step"], r["template"]): r for r in body["rows"]}
    intro, case, api = (
        rows[("welcome", "intro", "welcome-1")],
        rows[("welcome", "case", "welcome-1")],
        rows[(None, None, "webinar")],
    )
    assert case["sent"] == 1 and case["opened_unique"] == 1 and case["clicked_unique"] == 1
    assert case["unsubscribed"] == 1 and case["rates"]["open"] == 1.0
    assert (case["stage_advances_last_touch"], case["stage_advances_any_touch"]) == (0, 1)
    assert (api["stage_advances_last_touch"], api["stage_advances_any_touch"]) == (1, 1)
    assert (intro["sent"], intro["stage_advances_any_touch"]) == (1, 0), "outside the window"
    assert rows[("welcome", "follow", "welcome-1")]["skipped"] == {
        "total": 1,
        "by_reason": {"quiet_period": 1},
    }

    status, body = report(leads_api, **{"from": "2026-11-14", "to": "2026-11-14", "program": "welcome"})
    assert status == 200 and [(r["step"], r["sent"], r["skipped"]["total"]) for r in body["rows"]] == [
        ("follow", 0, 1)
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"to": "2026-11-30"}, "from"),
        ({"from": "2026-11-01", "to": "30/11/2026"}, "to"),
        ({"from": "2026-12-01", "to": "2026-11-30"}, "from"),
        ({"from": "2025-01-01", "to": "2026-11-30"}, "to"),
    ],
)
def test_the_report_refuses_a_bad_range_naming_the_parameter(leads_api, query, named) -> None:
    status, body = report(leads_api, **query)
    assert status == 400 and body["problems"][0].startswith(f"{named}:")


def test_the_report_needs_the_admin_token(leads_api) -> None:
    event = http_event("GET", "/v1/reports/emails", query={"from": "2026-11-01", "to": "2026-11-02"})
    assert leads_api.lambda_handler(event, Context())["statusCode"] == 401


class ThrottledOnce:
    """A DynamoDB client that throttles the first ``operation`` call (as under a burst)."""

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._operation = operation
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != self._operation:
            return call

        def throttled(**kwargs: Any) -> Any:
            if name == "put_item" and not kwargs["Item"]["PK"]["S"].startswith("METRICKEYS#g"):
                return call(**kwargs)
            if not self.refused:
                self.refused += 1
                error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
                raise ClientError(error, name)
            return call(**kwargs)

        return throttled


@pytest.mark.parametrize("throttled_call", ["put_item", "transact_write_items"])
def test_an_email_whose_counting_is_retried_is_reported_once_it_lands_and_counted_once(
    metrics, leads_api, dynamodb, table, throttled_call
) -> None:
    """Its key is listed (put_item) before its counters are written (transact_write_items): when
    either is throttled, the retry lists and counts it, so no counter is left where no report finds it."""
    throttled = ThrottledOnce(dynamodb, throttled_call)
    metrics.recorder._store._client = throttled
    intro, case = email("sent", f"welcome.{LEAD}.1.intro", T0), email("sent", f"welcome.{LEAD}.1.case", T0)
    assert deliver(metrics, intro, case) == {"batchItemFailures": [{"itemIdentifier": "0"}]}
    window = {"from": "2026-11-01", "to": "2026-11-30"}
    sent = {r["step"]: r["sent"] for r in report(leads_api, **window)[1]["rows"]}
    assert sent == {"case": 1}, "not counted yet: no row until the retry lands"

    assert deliver(metrics, intro) == {"batchItemFailures": []}
    assert throttled.refused == 1
    sent = {r["step"]: r["sent"] for r in report(leads_api, **window)[1]["rows"]}
    assert sent == {"intro": 1, "case": 1}
