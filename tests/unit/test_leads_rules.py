"""Identity rules for lead profiles, without any storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kindling.leads.addresses import normalize_email
from kindling.leads.profiles import (
    Identity,
    Lead,
    TimelineEntry,
    can_merge,
    choose_primary,
    identities_of,
    profile_change,
)
from kindling.tracking.segment import WebEvent

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def web(**fields: object) -> WebEvent:
    base: dict[str, object] = {
        "message_id": "m1",
        "type": "track",
        "event": "E",
        "timestamp": T0,
        "received_at": T0,
    }
    return WebEvent.model_validate({**base, **fields})


def lead(lead_id: str, *, email: str | None = None, user_id: str | None = None, age_days: int = 0) -> Lead:
    created = T0 - timedelta(days=age_days)
    return Lead(lead_id=lead_id, email=email, user_id=user_id, created_at=created, first_seen_at=created)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Ann.Lee@Example.COM", "ann.lee@example.com"),
        ("  bob@example.org ", "bob@example.org"),
        ("not-an-email", None),
        ("two@@example.com", None),
        ("", None),
        (42, None),
    ],
)
def test_emails_are_normalised_or_rejected(raw: object, normal: str | None) -> None:
    assert normalize_email(raw) == normal


def test_an_identify_names_its_user_email_and_anonymous_id() -> None:
    event = web(type="identify", user_id="u1", anonymous_id="a1", traits={"email": "Ann@X.io"})
    lookup, claim = identities_of(event)
    expected = [Identity("user", "u1"), Identity("email", "ann@x.io"), Identity("anon", "a1")]
    assert lookup == claim == expected


def test_an_email_in_context_traits_counts_too() -> None:
    lookup, _ = identities_of(web(anonymous_id="a1", context={"traits": {"email": "c@d.io"}}))
    assert Identity("email", "c@d.io") in lookup


def test_an_alias_looks_up_the_previous_id_and_claims_it_as_an_anonymous_id() -> None:
    lookup, claim = identities_of(web(type="alias", user_id="u2", previous_id="a9", event=None))
    assert Identity("anon", "a9") in lookup and Identity("user", "a9") in lookup
    # Owned by no lead yet, the previous id becomes the new one's: its later events find the lead.
    assert claim == [Identity("user", "u2"), Identity("anon", "a9")]


def test_an_invalid_email_is_kept_aside_not_used_as_an_identity() -> None:
    change = profile_change(web(type="identify", anonymous_id="a", traits={"email": "nope", "title": "CTO"}))
    assert change.email is None and change.invalid_email == "nope"
    assert change.traits == {"title": "CTO"}


def test_an_identify_with_its_traits_only_in_context_traits_gives_the_lead_those_traits() -> None:
    # How RudderStack's SDKs send an identify: every trait under context.traits.
    event = web(
        type="identify",
        user_id="u1",
        anonymous_id="a1",
        event=None,
        context={"traits": {"email": "Ann@X.io", "title": "CTO", "company": "Acme"}, "library": {}},
    )
    change = profile_change(event)
    assert change.traits == {"title": "CTO", "company": "Acme"}
    assert change.email == "ann@x.io"
    assert TimelineEntry.from_web_event(event).traits == {
        "email": "Ann@X.io",
        "title": "CTO",
        "company": "Acme",
    }


def test_explicit_identify_traits_win_over_context_traits() -> None:
    event = web(
        type="identify",
        user_id="u1",
        traits={"title": "VP Marketing", "plan": "pro"},
        context={"traits": {"title": "Intern", "industry": "SaaS"}},
    )
    assert profile_change(event).traits == {"title": "VP Marketing", "plan": "pro", "industry": "SaaS"}


def test_context_traits_of_other_events_are_not_profile_changes() -> None:
    assert profile_change(web(user_id="u1", context={"traits": {"title": "CTO"}})).traits == {}
    assert profile_change(web(type="identify", user_id="u1", context={"traits": "CTO"})).traits == {}


def test_group_traits_become_the_leads_company() -> None:
    change = profile_change(web(type="group", user_id="u", group_id="acme", traits={"employees": 300}))
    assert change.traits == {"company": {"employees": 300, "id": "acme"}}


def test_the_lead_with_the_events_user_id_wins_over_older_anonymous_ones() -> None:
    event = web(user_id="u1", anonymous_id="a1")
    chosen = choose_primary([lead("old-anon", age_days=30), lead("known", user_id="u1")], event)
    assert chosen.lead_id == "known"


def test_a_known_lead_wins_over_an_anonymous_one_then_the_oldest() -> None:
    event = web(anonymous_id="a1")
    assert choose_primary([lead("anon"), lead("known", email="k@x.io")], event).lead_id == "known"
    assert choose_primary([lead("new"), lead("old", age_days=3)], event).lead_id == "old"


def test_leads_of_two_different_people_are_never_merged() -> None:
    assert not can_merge(lead("a", user_id="u1"), lead("b", user_id="u2"))
    assert not can_merge(lead("a", email="x@x.io"), lead("b", email="y@x.io"))
    assert can_merge(lead("anon"), lead("b", user_id="u2", email="y@x.io"))
    assert can_merge(lead("a", email="y@x.io"), lead("b", user_id="u2"))


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            {
                "campaign": {"source": "Google", "medium": "cpc", "name": "Spring"},
                "page": {"referrer": "https://x.io"},
            },
            {"first_touch_source": "google", "first_touch_medium": "cpc", "first_touch_campaign": "spring"},
        ),
        (
            {"page": {"url": "https://acme.io/", "referrer": "https://www.linkedin.com/feed"}},
            {"first_touch_source": "linkedin.com", "first_touch_medium": "referral"},
        ),
        (
            {"page": {"url": "https://acme.io/pricing", "referrer": "https://acme.io/"}},
            {"first_touch_source": "direct", "first_touch_medium": "none"},
        ),
        ({}, {"first_touch_source": "direct", "first_touch_medium": "none"}),
    ],
)
def test_a_page_view_says_where_the_lead_first_came_from(context, expected) -> None:
    assert profile_change(web(type="page", event=None, context=context)).first_touch == expected


def test_only_page_views_by_people_are_touches() -> None:
    campaign = {"campaign": {"source": "google"}}
    assert profile_change(web(context=campaign)).first_touch == {}
    assert profile_change(web(type="page", event=None, context=campaign, bot=True)).first_touch == {}
