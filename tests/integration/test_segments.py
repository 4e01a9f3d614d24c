"""Segments kept current as leads change, and as time passes (moto)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kindling.adapters.config_store import DynamoConfigStore, ProgramsConfig
from kindling.adapters.due_store import DynamoDueStore
from kindling.adapters.dynamo import DynamoLeadStore
from kindling.adapters.privacy_store import DynamoPrivacyStore
from kindling.adapters.program_store import DynamoProgramStore
from kindling.kernel.errors import Conflict
from kindling.leads.profiles import ProfileService
from kindling.programs.due import release_due
from kindling.programs.service import ProgramService
from kindling.tracking.segment import WebEvent
from tests.fakes import NullPublisher, NullQueue, RecordingPublisher

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
SEGMENTS = {
    "segments": [
        {
            "id": "webinar-fans",
            "name": "Registered for 2 webinars in 30 days",
            "when": {"did": {"event": "Webinar Registered", "within_days": 30, "at_least": 2}},
        },
    ]
}
PROGRAMS = {
    "programs": {
        "fan-club": {
            "id": "fan-club",
            "name": "Fan club",
            "trigger": {"segment": "webinar-fans"},
            "steps": [{"id": "tag", "update": {"add_tags": ["webinar-fan"]}}],
        }
    }
}


def test_a_did_in_the_last_n_days_segment_is_entered_then_left_as_time_passes(table: str) -> None:
    config = DynamoConfigStore(table)
    config.apply("segments", SEGMENTS, T0)
    config.apply("programs", PROGRAMS, T0)
    programs_config = ProgramsConfig(table)
    store = DynamoProgramStore(table, event_window_days=programs_config.event_window_days)
    service = ProgramService(store, programs_config, NullQueue(), NullPublisher(), sleep=lambda s: None)
    profiles = ProfileService(DynamoLeadStore(table))
    user = f"u-{uuid.uuid4().hex[:6]}"

    def track(at: datetime) -> list[str]:
        event = WebEvent(
            message_id=uuid.uuid4().hex,
            type="track",
            user_id=user,
            event="Webinar Registered",
            timestamp=at,
            received_at=at,
        )
        lead_id = profiles.record(event, at).lead_id
        return service.on_lead_event(
            lead_id, trigger_id=event.message_id, now=at, event=event.model_dump(mode="json")
        )

    assert track(T0) == []
    changes = track(T0 + timedelta(days=5))
    assert "entered segment webinar-fans" in changes
    [enrollment] = [e for e in changes if "fan-club" in e and e.endswith("entered")]
    lead = DynamoLeadStore(table).get(enrollment.split(".")[1])
    assert lead is not None and "webinar-fans" in lead.segments and "webinar-fan" in lead.tags

    rechecks: list[dict[str, Any]] = []

    def collect(items: list[Any]) -> None:
        rechecks.extend(i.payload for i in items if i.kind == "segments")

    due = DynamoDueStore(table)
    release_due(due, collect, T0 + timedelta(days=29))
    assert rechecks == [], "still two registrations within 30 days"
    release_due(due, collect, T0 + timedelta(days=30, hours=1))
    assert [r["detail-type"] for r in rechecks] == ["lead.recheck"]
    left = service.on_lead_event(lead.lead_id, trigger_id="recheck", now=T0 + timedelta(days=30, hours=1))
    assert left == ["left segment webinar-fans"]

    # The person is erased before a later recheck falls due: it finds no one and is dropped,
    # where an event for a lead not yet readable is retried (it overtook the lead's own write).
    privacy = DynamoPrivacyStore(table)
    person = privacy.gather(lead.lead_id)
    assert person is not None
    privacy.erase(person, [], {"at": T0.isoformat(), "erasure_hash": "test"})
    later = T0 + timedelta(days=40)
    assert service.on_lead_event(lead.lead_id, trigger_id="recheck-2", now=later, recheck=True) == []
    with pytest.raises(Conflict):
        service.on_lead_event(lead.lead_id, trigger_id="activity", now=later)


def test_a_program_moving_a_stage_tells_the_bus_like_any_other_stage_move(table: str) -> None:
    promote = {
        "programs": {
            "promote": {
                "id": "promote",
                "name": "Promote",
                "trigger": {"new_lead": True},
                "steps": [{"id": "to-lead", "update": {"stage": "lead"}}],
            }
        }
    }
    DynamoConfigStore(table).apply("programs", promote, T0)
    bus = RecordingPublisher()
    service = ProgramService(
        DynamoProgramStore(table), ProgramsConfig(table), NullQueue(), bus, sleep=lambda s: None
    )
    event = WebEvent(
        message_id=uuid.uuid4().hex,
        type="identify",
        user_id="u-promo",
        timestamp=T0,
        received_at=T0,
        traits={"email": "promo@acme.io"},
    )
    lead_id = ProfileService(DynamoLeadStore(table)).record(event, T0).lead_id
    service.on_lead_event(
        lead_id, trigger_id=event.message_id, now=T0, event=event.model_dump(mode="json"), new_lead=True
    )
    [moved] = [e for e in bus.events if e.detail_type == "lead.stage_changed"]
    assert moved.source == "kindling.programs" and (moved.detail["from"], moved.detail["to"]) == (
        None,
        "lead",
    )
    lead = DynamoLeadStore(table).get(lead_id)
    assert lead is not None and lead.stage == "lead"
