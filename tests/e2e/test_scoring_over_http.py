"""A prospect's visits turn into a score, a stage, and a signed hand-off that sales can verify."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.e2e.conftest import WRITE_KEY, RunningStack

pytestmark = pytest.mark.e2e


def send(stack: RunningStack, path: str, body: dict) -> None:
    response = requests.post(f"{stack.url}/v1/{path}", json=body, auth=(WRITE_KEY, ""), timeout=10)
    assert response.status_code == 200, response.text


def test_an_engaged_decision_maker_becomes_an_mql_and_is_handed_to_sales(stack: RunningStack) -> None:
    assert stack.sales is not None
    user, email = f"u-{uuid.uuid4().hex[:8]}", f"cmo-{uuid.uuid4().hex[:6]}@fintech.io"
    send(
        stack,
        "identify",
        {
            "userId": user,
            "traits": {
                "email": email,
                "title": "CMO",
                "industry": "Fintech",
                "company_size": "1,200",
                "first_name": "Grace",
            },
        },
    )
    stack.settle()
    send(stack, "page", {"userId": user, "name": "Pricing", "properties": {"url": "https://x.io/pricing"}})
    send(stack, "track", {"userId": user, "event": "Demo Requested"})
    stack.settle()
    send(stack, "track", {"userId": user, "event": "Webinar Registered"})
    stack.settle(timeout=30)

    lead = stack.lead_by_email(email).json()["lead"]
    assert lead["stage"] == "mql"
    score = requests.get(f"{stack.url}/v1/leads/{lead['lead_id']}/score", headers=stack.admin(), timeout=10)
    assert score.status_code == 200, score.text
    explained = score.json()
    assert explained["label"] == "A1" and explained["engagement"] == pytest.approx(70, abs=0.1)
    assert {r["rule"]: r["count"] for r in explained["rules"]} == {
        "demo-request": 1,
        "webinar-registration": 1,
        "pricing-page": 1,
    }
    assert [m["to"] for m in explained["stage_history"]] == ["mql", "lead", "subscriber"]

    handed = [
        v["payload"] for v in stack.sales.verified if v["payload"]["data"]["lead_id"] == lead["lead_id"]
    ]
    assert len(handed) == 1, "one verified hand-off per MQL"
    data = handed[0]["data"]
    assert handed[0]["type"] == "lead.mql"
    assert data["lead"]["email"] == email and data["lead"]["first_name"] == "Grace"
    assert data["label"] == "A1" and data["trigger"]["event"] == "Webinar Registered"
    assert [r["rule"] for r in data["reasons"]][:1] == ["demo-request"]
    attempts = [d for d in stack.sales.deliveries if d["id"] == data["event_id"]]
    assert [a["refused"] for a in attempts] == [True, False], "the refused delivery was retried, not lost"


def test_explaining_the_score_of_an_unknown_lead_is_404(stack: RunningStack) -> None:
    response = requests.get(f"{stack.url}/v1/leads/ld_nobody/score", headers=stack.admin(), timeout=10)
    assert response.status_code == 404
