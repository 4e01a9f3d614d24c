"""Lead profiles on DynamoDB (moto): exactly once, merge-safe and race-safe."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from kindling.adapters.dynamo import DynamoLeadStore
from kindling.leads.profiles import Identity, ProfileService, find_lead_by_email, read_lead
from kindling.tracking.segment import WebEvent

_ids = itertools.count()


def web(now: datetime, **fields: Any) -> WebEvent:
    base: dict[str, Any] = {
        "message_id": f"m-{next(_ids)}",
        "type": "page",
        "timestamp": now,
        "received_at": now,
    }
    return WebEvent.model_validate({**base, **fields})


@pytest.fixture
def store(table: str) -> DynamoLeadStore:
    return DynamoLeadStore(table)


@pytest.fixture
def service(store: DynamoLeadStore) -> ProfileService:
    return ProfileService(store, sleep=lambda s: None)


def test_an_identify_creates_a_lead_with_a_normalised_email_and_its_traits(service, store, now) -> None:
    event = web(
        now,
        type="identify",
        anonymous_id="a1",
        traits={"email": "Ann.Lee@Example.com", "title": "VP Marketing", "company": "Acme"},
    )
    outcome = service.record(event, now)
    view = find_lead_by_email(store, "ann.lee@example.com")
    assert view is not None and view.lead.lead_id == outcome.lead_id and outcome.created
    assert view.lead.email == "ann.lee@example.com"
    assert view.lead.traits == {"title": "VP Marketing", "company": "Acme"}
    assert view.lead.anonymous_ids == ["a1"]
    assert [e.message_id for e in view.timeline] == [event.message_id]


def test_an_identify_carrying_its_traits_in_context_traits_gives_the_lead_those_traits(
    service, store, now
) -> None:
    # RudderStack's SDKs put identify traits in context.traits; a trait also in traits is that one.
    event = web(
        now,
        type="identify",
        user_id="rs-user-1",
        traits={"title": "VP Marketing"},
        context={"traits": {"email": "Rudi@Example.com", "title": "Intern", "industry": "SaaS"}},
    )
    service.record(event, now)
    view = find_lead_by_email(store, "rudi@example.com")
    assert view is not None
    assert view.lead.traits == {"title": "VP Marketing", "industry": "SaaS"}


def test_the_same_message_delivered_twice_lands_on_the_timeline_once(service, store, now) -> None:
    event = web(now, anonymous_id="a1", name="Pricing")
    first = service.record(event, now)
    again = service.record(event, now + timedelta(minutes=1))
    assert (first.duplicate, again.duplicate) == (False, True)
    assert len(store.timeline(first.lead_id, 10)) == 1


def test_an_anonymous_visitor_who_identifies_keeps_their_history(service, store, now) -> None:
    pages = [web(now + timedelta(minutes=i), anonymous_id="anon-7", name=f"P{i}") for i in range(3)]
    for page in pages:
        anon_lead = service.record(page, now).lead_id
    identify = web(
        now + timedelta(minutes=5),
        type="identify",
        anonymous_id="anon-7",
        user_id="u-7",
        traits={"email": "cto@acme.io"},
    )
    known = service.record(identify, now).lead_id
    assert known == anon_lead  # the anonymous lead becomes the known one
    view = find_lead_by_email(store, "cto@acme.io")
    assert view is not None and view.lead.user_id == "u-7"
    assert len(view.timeline) == 4


def test_a_visitor_identifying_as_an_existing_lead_is_merged_into_it(service, store, now) -> None:
    known = service.record(
        web(now, type="identify", user_id="u-1", traits={"email": "b@acme.io", "title": "CFO"}), now
    ).lead_id
    anon = service.record(web(now + timedelta(hours=1), anonymous_id="laptop-2", name="Pricing"), now).lead_id
    assert anon != known
    outcome = service.record(
        web(
            now + timedelta(hours=2), type="identify", anonymous_id="laptop-2", traits={"email": "B@acme.io"}
        ),
        now,
    )
    assert outcome.lead_id == known and outcome.merged == (anon,)
    view = read_lead(store, anon)  # the old id still finds the person
    assert view is not None and view.lead.lead_id == known
    assert sorted(e.name or e.type for e in view.timeline) == ["Pricing", "identify", "identify"]
    assert view.lead.traits["title"] == "CFO" and "laptop-2" in view.lead.anonymous_ids
    assert store.owners([Identity("anon", "laptop-2")]) == {Identity("anon", "laptop-2"): known}


def test_two_different_people_sharing_a_browser_are_not_merged(service, store, now) -> None:
    first = service.record(
        web(now, type="identify", anonymous_id="shared", traits={"email": "x@acme.io"}), now
    )
    other = service.record(web(now, type="identify", user_id="u-9", traits={"email": "y@acme.io"}), now)
    service.record(web(now, type="identify", anonymous_id="shared", user_id="u-9"), now)
    x, y = find_lead_by_email(store, "x@acme.io"), find_lead_by_email(store, "y@acme.io")
    assert x is not None and y is not None
    assert {x.lead.lead_id, y.lead.lead_id} == {first.lead_id, other.lead_id}


def test_a_merge_interrupted_by_a_crash_is_finished_by_the_next_event(service, store, now) -> None:
    known = service.record(
        web(now, type="identify", user_id="u-3", traits={"email": "c@acme.io"}), now
    ).lead_id
    anon = service.record(web(now, anonymous_id="tab-3", name="Docs"), now).lead_id
    store.mark_merged(anon, known)  # the crash came right after this write
    service.record(web(now + timedelta(minutes=1), anonymous_id="tab-3", name="Pricing"), now)
    assert store.owners([Identity("anon", "tab-3")])[Identity("anon", "tab-3")] == known
    assert sorted(e.name or e.type for e in store.timeline(known, 10)) == ["Docs", "Pricing", "identify"]
    assert store.timeline(anon, 10) == []


def test_bot_traffic_is_recorded_but_does_not_count_as_activity(service, store, now) -> None:
    human = service.record(web(now, anonymous_id="v1"), now)
    service.record(web(now + timedelta(days=1), anonymous_id="v1", bot=True), now)
    lead = store.get(human.lead_id)
    assert lead is not None and lead.last_activity_at == now
    assert len(store.timeline(human.lead_id, 10)) == 2


def test_last_activity_never_moves_back_for_a_late_event(service, store, now) -> None:
    lead_id = service.record(web(now, anonymous_id="v2"), now).lead_id
    service.record(web(now - timedelta(days=2), anonymous_id="v2"), now)
    lead = store.get(lead_id)
    assert lead is not None and lead.last_activity_at == now


def test_many_events_for_one_new_visitor_at_once_make_one_lead_and_lose_nothing(service, store, now) -> None:
    events = [
        web(now + timedelta(seconds=i), anonymous_id="burst", type="identify", traits={f"t{i}": i})
        for i in range(24)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda e: service.record(e, now), events))
    assert len({o.lead_id for o in outcomes}) == 1
    lead_id = outcomes[0].lead_id
    lead = store.get(lead_id)
    assert lead is not None and lead.traits == {f"t{i}": i for i in range(24)}
    assert len(store.timeline(lead_id, 100)) == 24
    assert sum(o.created for o in outcomes) == 1


def test_duplicates_delivered_concurrently_are_applied_once(service, store, now) -> None:
    event = web(now, anonymous_id="dup", type="identify", traits={"plan": "pro"})
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda _: service.record(event, now), range(6)))
    assert sum(not o.duplicate for o in outcomes) == 1
    assert len(store.timeline(outcomes[0].lead_id, 10)) == 1


def test_a_visitor_who_identifies_later_is_announced_as_a_new_lead_then_too(store, now) -> None:
    from tests.fakes import RecordingPublisher

    publisher = RecordingPublisher()
    service = ProfileService(store, publisher, sleep=lambda s: None)
    first = service.record(web(now, anonymous_id="browser-1", name="Pricing"), now)
    later = service.record(
        web(
            now + timedelta(days=3),
            type="identify",
            anonymous_id="browser-1",
            traits={"email": "kim@acme.io"},
        ),
        now,
    )
    again = service.record(
        web(
            now + timedelta(days=4),
            type="identify",
            anonymous_id="browser-1",
            traits={"email": "kim@acme.io"},
        ),
        now,
    )
    assert first.lead_id == later.lead_id == again.lead_id
    assert [a["new_lead"] for a in publisher.of_type("lead.activity")] == [True, True, False]
    assert later.became_emailable and not later.created and not again.new_lead


def test_an_alias_claims_a_previous_id_never_seen_so_its_later_events_find_the_lead(
    service, store, now
) -> None:
    aliased = service.record(web(now, type="alias", user_id="u-new", previous_id="device-7"), now)
    later = service.record(web(now + timedelta(minutes=5), anonymous_id="device-7", name="Pricing"), now)
    assert later.lead_id == aliased.lead_id and not later.created
    lead = store.get(aliased.lead_id)
    assert lead is not None and lead.user_id == "u-new" and lead.anonymous_ids == ["device-7"]


def test_an_alias_of_a_known_visitor_carries_its_history(service, store, now) -> None:
    first = service.record(web(now, anonymous_id="tab-9", name="Docs"), now)
    aliased = service.record(
        web(
            now + timedelta(minutes=1), type="alias", anonymous_id="tab-9", user_id="u-9", previous_id="tab-9"
        ),
        now,
    )
    assert aliased.lead_id == first.lead_id
    assert sorted(e.name or e.type for e in store.timeline(first.lead_id, 10)) == ["Docs", "alias"]


def test_an_alias_whose_previous_id_is_its_own_anonymous_id_makes_one_lead(service, store, now) -> None:
    outcome = service.record(
        web(now, type="alias", anonymous_id="same-1", user_id="u-s", previous_id="same-1"), now
    )
    lead = store.get(outcome.lead_id)
    assert lead is not None and lead.anonymous_ids == ["same-1"] and outcome.created
