"""The console's JSON routes through the admin API's handler, on moto: search and lists by index,
a lead's emails and timeline pages, a program's whereabouts, template previews and test sends."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from kindling.adapters.config_store import DynamoConfigStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.leads.profiles import ProfileService
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, http_event

AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = documents(load(Path(__file__).resolve().parents[2] / "config"))
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture
def api(load_handler, table: str) -> Any:
    store = DynamoConfigStore(table)
    for name in ("scoring.yaml", "email.yaml", "templates", "segments.yaml", "programs"):
        store.apply(name.removesuffix(".yaml"), CONFIG[name], NOW)
    sends = boto3.client("sqs").create_queue(QueueName=f"sends-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    handler = load_handler(
        "leads_api",
        TABLE_NAME=table,
        SEND_QUEUE_URL=sends,
        PROGRAMS_QUEUE_URL="http://unused",
        BUS_NAME="unused-bus",
        PUBLIC_API_URL="http://127.0.0.1:3000",
        secrets={
            "ADMIN_TOKEN_SECRET_ARN": ADMIN,
            "LINK_SECRET_ARN": "link-secret-integration-0123456789",
            "ERASURE_KEY_SECRET_ARN": "erasure-key-integration-0123456789",
        },
    )
    handler.sends_for_tests = sends
    return handler


def call(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    route: str | None = None,
    query: dict | None = None,
    **params: str,
) -> tuple[int, Any]:
    event = http_event(
        method,
        path,
        body=body,
        headers=AUTH,
        path_parameters=params or None,
        route=route or path,
        query=query,
    )
    answer = api.lambda_handler(event, Context())
    return answer["statusCode"], json.loads(answer["body"] or "null")


def lead(table: str, email: str, **traits: Any) -> str:
    event = WebEvent(
        message_id=f"m-{uuid.uuid4().hex}",
        type="identify",
        user_id=email,
        timestamp=NOW,
        received_at=NOW,
        traits={"email": email, **traits},
    )
    return ProfileService(DynamoLeadStore(table)).record(event, NOW).lead_id


def test_leads_are_found_by_address_prefix_and_company_domain(api, table) -> None:
    ada = lead(table, "ada@acme.io", first_name="Ada", company="Acme")
    lead(table, "adam@globex.example", first_name="Adam")
    lead(table, "bo@acme.io", first_name="Bo")

    def found(q: str) -> list[str]:
        status, page = call(api, "GET", "/v1/console/leads", query={"q": q})
        assert status == 200, page
        return sorted(row["email"] for row in page["leads"])

    assert found("ada@acme.io") == ["ada@acme.io"]
    assert found("ada") == ["ada@acme.io", "adam@globex.example"]
    assert found("@acme.io") == found("acme.io") == ["ada@acme.io", "bo@acme.io"]
    _status, page = call(api, "GET", "/v1/console/leads", query={"q": "ada@acme.io"})
    assert page["leads"][0]["lead_id"] == ada and page["leads"][0]["first_name"] == "Ada"
    assert call(api, "GET", "/v1/console/leads", query={"q": "a"})[0] == 400, "one letter would read too much"


def test_a_lead_s_timeline_pages_back_to_its_first_event(api, table) -> None:
    lead_id = lead(table, "pager@acme.io")
    service = ProfileService(DynamoLeadStore(table))
    for minute in range(7):
        page_view = WebEvent(
            message_id=f"p-{minute}",
            type="page",
            user_id="pager@acme.io",
            name=f"/p{minute}",
            timestamp=NOW + timedelta(minutes=minute + 1),
            received_at=NOW,
        )
        service.record(page_view, NOW)
    seen, before = [], None
    route = "/v1/leads/{lead_id}/timeline"
    while True:
        status, page = call(
            api,
            "GET",
            f"/v1/leads/{lead_id}/timeline",
            route=route,
            query={"limit": "3", **({"before": before} if before else {})},
            lead_id=lead_id,
        )
        assert status == 200, page
        seen += [e["message_id"] for e in page["entries"]]
        before = page["next_before"]
        if not before:
            break
    assert len(seen) == len(set(seen)) == 8, "the identify and seven pages, each once, newest first"
    assert seen[0] == "p-6"


def test_a_program_says_where_its_leads_are_and_a_template_previews_and_test_sends(api, table) -> None:
    status, programs = call(api, "GET", "/v1/programs")
    assert status == 200
    welcome = next(p for p in programs["programs"] if p["id"] == "welcome-series")
    assert next(s["id"] for s in welcome["steps"]) == "send-welcome"
    assert set(welcome["counts"]) >= {
        "entered",
        "active",
        "sending",
        "waiting",
        "held",
        "exited",
        "completed",
    }
    route = "/v1/templates/{name}/preview"
    status, preview = call(
        api,
        "POST",
        "/v1/templates/welcome-1/preview",
        {"traits": {"first_name": "Zed"}},
        route,
        name="welcome-1",
    )
    assert status == 200 and "Zed" in preview["html"] and preview["subject"]
    status, queued = call(
        api,
        "POST",
        "/v1/templates/welcome-1/test",
        {"to": "colleague@acme.io", "traits": {"first_name": "Zed"}},
        "/v1/templates/{name}/test",
        name="welcome-1",
    )
    assert status == 202 and queued["to"] == "colleague@acme.io"
    [message] = boto3.client("sqs").receive_message(QueueUrl=api.sends_for_tests)["Messages"]
    body = json.loads(message["Body"])
    assert body["test_to"] == "colleague@acme.io" and body["send_id"] == queued["send_id"]
    status, _ = call(
        api, "POST", "/v1/templates/nope/test", {"to": "c@acme.io"}, "/v1/templates/{name}/test", name="nope"
    )
    assert status == 404


def test_a_grade_lists_its_leads_by_score_now_and_a_segment_its_latest_members(api, table) -> None:
    from kindling.adapters.config_store import ConfigCache, ProgramsConfig
    from kindling.adapters.program_store import DynamoProgramStore
    from kindling.adapters.score_store import DynamoScoreStore
    from kindling.programs.service import ProgramService
    from kindling.scoring.config import ScoringConfig
    from kindling.scoring.service import ScoringService
    from tests.fakes import NullPublisher, NullQueue

    scorer = ScoringService(
        DynamoScoreStore(table), ConfigCache(DynamoConfigStore(table), "scoring", ScoringConfig)
    )
    profiles = ProfileService(DynamoLeadStore(table), sleep=lambda s: None, scorer=scorer)
    programs = ProgramService(DynamoProgramStore(table), ProgramsConfig(table), NullQueue(), NullPublisher())
    vp = {"title": "VP Marketing", "industry": "SaaS", "company_size": 1200}
    for name, demos in (("keen", 3), ("mild", 1), ("cold", 0)):
        email = f"{name}@bigco.example"
        event = WebEvent(
            message_id=f"i-{name}",
            type="identify",
            user_id=email,
            timestamp=NOW,
            received_at=NOW,
            traits={"email": email, **vp},
        )
        lead_id = profiles.record(event, NOW).lead_id
        for n in range(demos):
            webinar = WebEvent(
                message_id=f"w-{name}-{n}",
                type="track",
                user_id=email,
                event="Webinar Attended",
                timestamp=NOW + timedelta(hours=n),
                received_at=NOW,
            )
            profiles.record(webinar, NOW)
        programs.on_lead_event(
            lead_id, trigger_id=f"i-{name}", now=NOW + timedelta(minutes=["keen", "mild", "cold"].index(name))
        )
    status, graded = call(api, "GET", "/v1/console/leads", query={"grade": "A"})
    assert status == 200, graded
    assert [row["email"] for row in graded["leads"]] == [
        "keen@bigco.example",
        "mild@bigco.example",
        "cold@bigco.example",
    ]
    status, members = call(api, "GET", "/v1/console/leads", query={"segment": "saas-industry"})
    assert status == 200, members
    assert [row["email"] for row in members["leads"]] == [
        "cold@bigco.example",
        "mild@bigco.example",
        "keen@bigco.example",
    ]
    assert call(api, "GET", "/v1/console/leads", query={"grade": "Z"})[0] == 400


def test_recently_active_leads_of_every_stage_come_newest_first_across_pages(api, table) -> None:
    from kindling.adapters.import_store import DynamoImportStore
    from kindling.leads.importing import ContactBatch, import_contacts

    stages = ["lead", "mql", "customer", "lead", "sql", "mql", "lead"]
    rows = [{"row": str(i), "email": f"r{i}@acme.io", "stage": stage} for i, stage in enumerate(stages)]
    store = DynamoImportStore(table)
    for i, row in enumerate(rows):  # one at a time, each a minute later: its time is its activity
        import_contacts(
            store, ContactBatch.model_validate({"source": "api", "rows": [row]}), NOW + timedelta(minutes=i)
        )
    seen, cursor = [], None
    while True:
        status, page = call(
            api,
            "GET",
            "/v1/console/leads",
            query={"recent": "1", "limit": "3", **({"cursor": cursor} if cursor else {})},
        )
        assert status == 200, page
        seen += [row["email"] for row in page["leads"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"r{i}@acme.io" for i in reversed(range(len(stages)))], seen
    status, leads = call(api, "GET", "/v1/console/leads", query={"stage": "lead"})
    assert [row["email"] for row in leads["leads"]] == ["r6@acme.io", "r3@acme.io", "r0@acme.io"], (
        "a stage's, latest first"
    )


def test_a_preview_link_serves_the_email_alone_under_its_own_policy_and_only_while_signed(api) -> None:
    from urllib.parse import parse_qs, urlsplit

    route = "/v1/templates/{name}/preview"
    status, preview = call(
        api,
        "POST",
        "/v1/templates/welcome-1/preview",
        {"traits": {"first_name": "Zed"}},
        route,
        name="welcome-1",
    )
    assert status == 200
    link = urlsplit(preview["preview_url"])
    query = {k: v[0] for k, v in parse_qs(link.query).items()}
    page_route = "/v1/templates/{name}/preview.html"

    def fetch(params: dict[str, str]) -> dict[str, Any]:
        event = http_event(
            "GET", link.path, query=params, path_parameters={"name": "welcome-1"}, route=page_route
        )
        return dict(api.lambda_handler(event, Context()))

    served = fetch(query)
    assert served["statusCode"] == 200 and "Zed" in served["body"]
    policy = served["headers"]["Content-Security-Policy"]
    assert (
        "style-src 'unsafe-inline'" in policy
        and "script-src" not in policy
        and "default-src 'none'" in policy
    )
    forged = fetch({**query, "s": "0" * 64})
    assert forged["statusCode"] == 403
