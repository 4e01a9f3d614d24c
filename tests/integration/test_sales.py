"""CRM stages drive marketing silence; silence that lasts too long wakes the lead up (moto)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kindling.adapters.config_store import CrmPolicy, DynamoConfigStore, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.program_store import DynamoProgramStore
from kindling.adapters.sales_store import DynamoSalesStore, DynamoUnmatchedStore
from kindling.crm.sales import SalesService
from kindling.crm.unmatched import release_for_email
from kindling.leads.profiles import ProfileService
from kindling.programs.engine import SendResult
from kindling.programs.service import ProgramService
from kindling.tracking.segment import WebEvent
from kindling_ops.config import documents, load
from tests.fakes import RecordingPublisher, RecordingQueue

CONFIG = documents(load(Path(__file__).resolve().parents[2] / "config"))
POLICY = {
    "quiet_stages": ["sql", "opportunity"],
    "reactivation": {"max_silence_days": {"sql": 21, "opportunity": 30}, "program": "reactivation"},
    "recycle": {"cooling_off_days": 30, "program": "recycle-nurture"},
}
T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def world(table: str) -> dict[str, Any]:
    store = DynamoConfigStore(table)
    for name in ("scoring.yaml", "email.yaml", "templates", "segments.yaml", "programs"):
        store.apply(name.removesuffix(".yaml"), CONFIG[name], T0)
    store.apply("crm", POLICY, T0)
    programs_config, policy = ProgramsConfig(table), CrmPolicy(table)
    policy.refresh()
    bus, sends = RecordingPublisher(), RecordingQueue()
    programs = ProgramService(
        DynamoProgramStore(table, decay=programs_config.decay),
        programs_config,
        sends,
        bus,
        sleep=lambda s: None,
    )
    unmatched = DynamoUnmatchedStore(table)
    sales = SalesService(
        DynamoSalesStore(table), policy, programs, DynamoDueStore(table, lane="daily"), bus, unmatched
    )
    return {
        "unmatched": unmatched,
        "table": table,
        "programs": programs,
        "sales": sales,
        "bus": bus,
        "sends": sends,
        "store": DynamoProgramStore(table),
    }


def emails_go_out(world: dict[str, Any], at: datetime) -> None:
    """The sender's word on every email queued since the last call: sent at ``at``."""
    queued, done = world["sends"].bodies, world.setdefault("sent", 0)
    for body in queued[done:]:
        world["programs"].on_send_result(
            body["lead_id"], body["send_id"], SendResult(status="sent", at=at), at
        )
    world["sent"] = len(queued)


def new_lead(world: dict[str, Any]) -> tuple[str, str]:
    email = f"buyer-{uuid.uuid4().hex[:6]}@acme.io"
    event = WebEvent(
        message_id=f"m-{uuid.uuid4().hex}",
        type="identify",
        user_id=email,
        timestamp=T0,
        received_at=T0,
        traits={"email": email, "first_name": "Bo"},
    )
    outcome = ProfileService(DynamoLeadStore(world["table"])).record(event, T0)
    world["programs"].on_lead_event(
        outcome.lead_id,
        trigger_id=event.message_id,
        now=T0,
        event=event.model_dump(mode="json"),
        new_lead=True,
    )
    emails_go_out(world, T0)
    return outcome.lead_id, email


def deal(
    email: str, lifecycle: str | None, crm_stage: str, at: datetime, known: bool = True
) -> dict[str, Any]:
    return {
        "event_id": f"hubspot:{uuid.uuid4().hex}",
        "provider": "hubspot",
        "occurred_at": at.isoformat(),
        "lead": {"email": email, "crm_id": None},
        "deal_id": "9001",
        "crm_stage": crm_stage,
        "lifecycle_stage": lifecycle,
        "stage_known": known,
        "amount": 24000,
        "owner": None,
    }


def timeline(world: dict[str, Any], lead_id: str) -> list[str]:
    return [e.event or e.type for e in DynamoLeadStore(world["table"]).timeline(lead_id, 100)]


def statuses(world: dict[str, Any], lead_id: str) -> dict[str, str]:
    return {e.program_id: e.status for e in world["store"].enrollments(lead_id)}


def test_a_sales_stage_starts_a_quiet_period_that_holds_programs(world) -> None:
    lead_id, email = new_lead(world)
    assert statuses(world, lead_id) == {"welcome-series": "active"}
    done = world["sales"].on_crm_event(
        "crm.deal_stage_changed", deal(email, "sql", "appointmentscheduled", T0), T0
    )
    assert "stage None -> sql" in done and any("quiet period started" in d for d in done)
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.quiet and lead.stage == "sql"
    assert statuses(world, lead_id)["welcome-series"] in ("held", "exited")
    assert "Quiet Period Started" in timeline(world, lead_id)
    assert [d["to"] for d in world["bus"].of_type("lead.stage_changed")] == ["sql"]


def test_leaving_sales_stages_ends_the_quiet_period_and_resumes_programs(world) -> None:
    lead_id, email = new_lead(world)
    world["sales"].on_crm_event("crm.deal_stage_changed", deal(email, "opportunity", "contractsent", T0), T0)
    held = statuses(world, lead_id)
    world["sales"].on_crm_event(
        "crm.deal_stage_changed",
        deal(email, "recycled", "nurture", T0 + timedelta(days=2)),
        T0 + timedelta(days=2),
    )
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and not lead.quiet
    assert "Quiet Period Ended" in timeline(world, lead_id)
    if held.get("welcome-series") == "held":
        assert statuses(world, lead_id)["welcome-series"] in ("active", "waiting")


def test_silence_beyond_the_policy_reactivates_the_lead_and_tells_the_owner(world) -> None:
    lead_id, email = new_lead(world)
    world["sales"].on_crm_event("crm.deal_stage_changed", deal(email, "sql", "qualifiedtobuy", T0), T0)
    activity = {
        "event_id": "hubspot:call-1",
        "provider": "hubspot",
        "occurred_at": (T0 + timedelta(days=10)).isoformat(),
        "lead": {"email": email},
        "activity": {"type": "call", "subject": "Discovery call"},
    }
    world["sales"].on_crm_event("crm.activity_logged", activity, T0 + timedelta(days=10))
    assert world["sales"].sweep(T0 + timedelta(days=22)) >= 1  # 21 days after the stage move: but a call came
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.quiet, "the call on day 10 restarted the clock"
    world["sales"].sweep(T0 + timedelta(days=32))  # 21 days after the call
    assert statuses(world, lead_id).get("reactivation") == "sending", "its first email is with the sender"
    emails_go_out(world, T0 + timedelta(days=32))
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and not lead.quiet
    assert statuses(world, lead_id).get("reactivation") in ("active", "waiting")
    [notice] = world["bus"].of_type("lead.notify_sales")
    assert "no sales activity or engagement for 21 days in stage sql" in notice["message"]
    assert "Reactivated" in timeline(world, lead_id)


def test_closed_lost_recycles_the_lead_after_cooling_off(world) -> None:
    lead_id, email = new_lead(world)
    world["sales"].on_crm_event("crm.deal_stage_changed", deal(email, "closed_lost", "closedlost", T0), T0)
    world["sales"].sweep(T0 + timedelta(days=29))
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.stage == "closed_lost"
    world["sales"].sweep(T0 + timedelta(days=30, hours=1))
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.stage == "recycled"
    assert [d["to"] for d in world["bus"].of_type("lead.stage_changed")] == ["closed_lost", "recycled"]


def test_an_unknown_crm_stage_is_kept_and_reported_not_guessed(world) -> None:
    lead_id, email = new_lead(world)
    done = world["sales"].on_crm_event(
        "crm.deal_stage_changed", deal(email, None, "custom-stage-7", T0, known=False), T0
    )
    assert "unknown hubspot stage 'custom-stage-7'" in done[0]
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.stage != "sql" and not lead.quiet
    assert "CRM Stage Unknown" in timeline(world, lead_id)


def test_a_crm_event_for_nobody_we_know_is_kept_listed_and_applied_when_the_lead_appears(world) -> None:
    email = f"Later-{uuid.uuid4().hex[:6]}@Acme.io"
    opened = deal(email, "sql", "appointmentscheduled", T0)
    done = world["sales"].on_crm_event("crm.deal_stage_changed", opened, T0)
    assert done == ["unmatched: kept until a lead with that email or CRM id appears"]
    listed, _ = world["unmatched"].listing(T0)
    [kept] = [e for e in listed if e.event_id == opened["event_id"]]
    assert (kept.provider, kept.email, kept.stage) == ("hubspot", email.lower(), "sql")

    # Three days later the person fills a form: the deal's stage applies to the new lead.
    later = T0 + timedelta(days=3)
    event = WebEvent(
        message_id=f"m-{uuid.uuid4().hex}",
        type="identify",
        user_id=email,
        timestamp=later,
        received_at=later,
        traits={"email": email},
    )
    lead_id = ProfileService(DynamoLeadStore(world["table"])).record(event, later).lead_id
    released = release_for_email(world["unmatched"], world["bus"], email, later)
    assert [e.event_id for e in released] == [opened["event_id"]]
    [replayed] = [e for e in world["bus"].events if e.detail_type == "crm.deal_stage_changed"]
    assert replayed.detail["event_id"] == opened["event_id"] and replayed.source == "kindling.crm"
    world["sales"].on_crm_event(replayed.detail_type, replayed.detail, later)
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.stage == "sql" and lead.quiet
    assert [e.event_id for e in world["unmatched"].listing(later)[0] if e.email == email.lower()] == []
    assert release_for_email(world["unmatched"], world["bus"], email, later) == [], "released once"


def test_a_crm_event_without_an_email_or_crm_id_cannot_be_kept(world) -> None:
    anonymous = deal("", "sql", "x", T0)
    done = world["sales"].on_crm_event("crm.deal_stage_changed", anonymous, T0)
    assert done == ["unmatched: no lead with that email or CRM id"]


def test_a_program_update_step_tags_a_new_lead(world) -> None:
    from kindling.programs.engine import UpdateLead

    lead_id, _ = new_lead(world)
    world["store"].update_lead(lead_id, UpdateLead("tag", None, ("stalled-mql",), (), None), "p.x.1", T0)
    lead = DynamoLeadStore(world["table"]).get(lead_id)
    assert lead is not None and lead.tags == ["stalled-mql"]
