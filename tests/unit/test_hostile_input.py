"""Hostile input at the edges: refused with a named problem, or accepted only as what consumers can keep.

Through the real parse paths: the kernel's JSON parser, tracking's ``accept``/``capture`` (with a
recording bus) and the pixel, and each CRM provider's parser. "Keepable" is checked the way the
consumers keep things: a JSON round trip, pydantic's own JSON parser (the consumers read the bus
with it) and ``to_attribute``, which is what the lead store hands boto3's ``TypeSerializer``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kindling.adapters.dynamo import to_attribute, to_item
from kindling.crm import events as crm_events
from kindling.crm import generic, hubspot, pipedrive
from kindling.crm.config import CrmConfig
from kindling.kernel.errors import InvalidInput, PayloadTooLarge
from kindling.kernel.json_input import MAX_JSON_DEPTH, is_storable_number, parse_json, parse_json_object
from kindling.leads.profiles import TimelineEntry
from kindling.tracking.segment import (
    ENDPOINTS,
    CaptureRequest,
    WebEvent,
    accept,
    capture,
    pixel_endpoint,
    pixel_request_body,
)
from tests.fakes import RecordingPublisher
from tests.hostile import KEPT, REFUSED, Hostile, Kept, bodies, json_values, nested, raw_track, track

KEY = "wk-hostile-1"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = CrmConfig()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def storable(value: Any) -> None:
    """What a consumer does with an accepted value: JSON, then DynamoDB's serializer."""
    text = json.dumps(value, allow_nan=False)
    assert json.loads(text) == value
    text.encode("utf-8")  # no lone surrogate survives
    to_attribute(value)


def keepable_web_event(detail: dict[str, Any]) -> None:
    """An accepted event as the profiles consumer takes it: parsed by pydantic, its entry stored."""
    storable(detail)
    parsed = WebEvent.model_validate_json(json.dumps(detail))
    to_item(TimelineEntry.from_web_event(parsed).model_dump())


def send(body: bytes, endpoint: str = "track", content_encoding: str | None = None) -> list[dict[str, Any]]:
    """``capture`` a request with the right write key; the details it put on the (recording) bus."""
    bus = RecordingPublisher()
    request = CaptureRequest(
        endpoint=endpoint, body=body, content_encoding=content_encoding, header_write_key=KEY
    )
    capture(request, write_key=KEY, now=NOW, publisher=bus, is_bot=lambda ua: False)
    return [e.detail for e in bus.events]


# --- the catalogue, through capture -------------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_each_hostile_body_is_refused_by_capture_naming_its_problem(case: Hostile) -> None:
    bus = RecordingPublisher()
    request = CaptureRequest(
        endpoint="track", body=case.body, content_encoding=case.content_encoding, header_write_key=KEY
    )
    with pytest.raises(InvalidInput) as refused:
        capture(request, write_key=KEY, now=NOW, publisher=bus, is_bot=lambda ua: False)
    assert isinstance(refused.value, PayloadTooLarge) == case.too_large
    assert case.problem in str(refused.value)
    assert bus.events == []


@pytest.mark.parametrize("case", KEPT, ids=lambda c: c.name)
def test_each_hostile_value_that_is_accepted_reaches_the_bus_as_something_consumers_keep(case: Kept) -> None:
    [detail] = send(json.dumps(case.message).encode())
    assert case.expect(detail), detail
    keepable_web_event(detail)


# --- the kernel's parser ----------------------------------------------------------------------------


def test_nesting_is_allowed_to_32_levels_and_no_deeper() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(InvalidInput, match="nested deeper than 32 levels"):
        parse_json(nested(MAX_JSON_DEPTH + 1))
    assert parse_json(b'["' + b"[" * 1000 + b'"]') == ["[" * 1000]  # brackets in strings do not count


def test_numbers_are_kept_exactly_up_to_what_dynamodb_stores() -> None:
    assert parse_json(b"[99999999999999999999999999999999999999, 1e-130, 9.99e125, -0.0, 0e999]") == [
        10**38 - 1,
        1e-130,
        9.99e125,
        0.0,
        0.0,
    ]
    for refused in (b"100000000000000000000000000000000000000", b"1e126", b"9.9e-131", b"1E+400"):
        with pytest.raises(InvalidInput, match="the request body: a"):
            parse_json(refused)
    assert not is_storable_number(float("nan")) and not is_storable_number(10**38)
    assert is_storable_number(True) and is_storable_number(-(10**38) + 1)


def test_every_field_in_trouble_is_named_up_to_ten() -> None:
    body = json.dumps({"batch": [{"n": "X"} for _ in range(15)]}).replace('"X"', "NaN")
    with pytest.raises(InvalidInput) as refused:
        parse_json_object(body.encode())
    assert refused.value.problems[:2] == [
        "batch[0].n: NaN is not a number JSON allows",
        "batch[1].n: NaN is not a number JSON allows",
    ]
    assert len(refused.value.problems) == 11 and refused.value.problems[-1] == "... and 5 more"


def test_lone_surrogates_become_the_replacement_character_in_values_and_keys() -> None:
    value = parse_json(b'{"\\udfff": ["\\ud800x", "\\ud83d\\ude00", "\\u0000"]}')
    assert value == {"\ufffd": ["\ufffdx", "\U0001f600", "\x00"]}
    storable(value)


def test_a_utf8_byte_order_mark_is_allowed() -> None:
    assert parse_json_object(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@FUZZ
@given(bodies)
def test_the_kernel_parser_accepts_only_what_can_be_stored_and_refuses_everything_else(body: bytes) -> None:
    try:
        value = parse_json(body)
    except InvalidInput as refused:
        event("refused")
        assert refused.problems and all(p.strip() for p in refused.problems)
    else:
        event("accepted")
        storable(value)


# --- tracking ---------------------------------------------------------------------------------------


def test_a_plausible_time_is_kept_and_not_flagged() -> None:
    [detail] = send(json.dumps(track(timestamp="2026-11-25T11:59:00+01:00")).encode())
    assert detail["timestamp"] == "2026-11-25T10:59:00Z" and detail["timestamp_replaced"] is False


def test_a_valid_timestamp_is_used_even_when_sent_at_is_beyond_utc() -> None:
    body = track(timestamp="2026-11-25T11:00:00Z", sentAt="0001-01-01T00:00:00+05:00")
    [detail] = send(json.dumps(body).encode())
    assert detail["timestamp"] == "2026-11-25T11:00:00Z" and not detail["timestamp_replaced"]


def test_a_pixel_with_both_a_bare_and_a_dotted_properties_parameter_is_answered() -> None:
    for query in (
        {"event": "Opened", "userId": "u", "properties": "junk", "properties.x": "1"},
        {"event": "Opened", "userId": "u", "properties.x": "1", "properties": "junk"},
    ):
        assert json.loads(pixel_request_body(query))["properties"] == {"x": "1"}


@pytest.mark.parametrize(
    "message",
    [{"type": ["track"], "userId": "u"}, {"type": {"a": 1}}, {"type": None}, {"type": 3}, {"type": "batch"}],
)
def test_a_pixel_whose_type_is_not_a_message_type_is_refused(message: dict[str, Any]) -> None:
    data = base64.urlsafe_b64encode(json.dumps(message).encode()).decode()
    with pytest.raises(InvalidInput, match="type"):
        pixel_endpoint(pixel_request_body({"data": data}))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (base64.urlsafe_b64encode(raw_track(nested(100))).decode(), "data is nested deeper"),
        (base64.urlsafe_b64encode(raw_track(b"1" * 5000)).decode(), "properties.x: a whole number"),
        (base64.urlsafe_b64encode(b'{"event":"\xff"}').decode(), "data is not UTF-8"),
        ("not base64 \u00e9", "data: not valid base64"),
    ],
)
def test_a_pixel_with_hostile_data_is_refused(data: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        pixel_request_body({"data": data})
    assert problem in str(refused.value)


@FUZZ
@given(body=bodies, endpoint=st.sampled_from(sorted(ENDPOINTS)), gzipped=st.booleans())
def test_capture_accepts_any_body_only_as_events_consumers_keep(
    body: bytes, endpoint: str, gzipped: bool
) -> None:
    import gzip

    try:
        details = send(gzip.compress(body) if gzipped else body, endpoint, "gzip" if gzipped else None)
    except InvalidInput as refused:
        event("refused")
        assert refused.problems and all(p.strip() for p in refused.problems)
    else:
        event("accepted")
        assert details
        for detail in details:
            keepable_web_event(detail)


query_text = st.text(st.characters(exclude_categories=()), max_size=30)


@FUZZ
@given(
    query=st.dictionaries(
        st.one_of(
            st.sampled_from(["event", "userId", "anonymousId", "type", "timestamp", "data", "writeKey"]),
            st.sampled_from(["properties", "traits", "context"]).flatmap(
                lambda head: query_text.map(lambda rest: f"{head}.{rest}")
            ),
            query_text,
        ),
        st.one_of(
            query_text, st.just(KEY), json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()))
        ),
        max_size=6,
    ).map(lambda q: {k: v.decode() if isinstance(v, bytes) else v for k, v in q.items()})
)
def test_the_pixel_accepts_any_query_only_as_events_consumers_keep(query: dict[str, str]) -> None:
    try:
        body = pixel_request_body(query)
        endpoint = pixel_endpoint(body)
        events = accept(
            CaptureRequest(endpoint=endpoint, body=body, endpoint_is_pixel=True, header_write_key=KEY),
            write_key=KEY,
            now=NOW,
        )
    except InvalidInput as refused:
        event("refused")
        assert refused.problems
    else:
        event("accepted")
        for accepted in events:
            keepable_web_event(accepted.model_dump(mode="json"))


# --- the CRM parsers --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in REFUSED if c.content_encoding is None], ids=lambda c: c.name)
def test_each_hostile_body_is_refused_by_the_crm_parser(case: Hostile) -> None:
    if case.problem != "must be a JSON object" and not case.too_large:  # else JSON, if no provider's
        with pytest.raises(InvalidInput) as refused:
            crm_events._json(case.body)
        assert refused.value.problems
    for parse in (
        lambda: hubspot.hubspot_deliveries(case.body, CONFIG),
        lambda: pipedrive.pipedrive_deliveries(case.body, CONFIG, NOW),
        lambda: generic.generic_deliveries(case.body, GENERIC_HEADERS, CONFIG),
    ):
        with pytest.raises(InvalidInput):
            parse()


GENERIC_HEADERS = {"webhook-id": "msg_hostile", "webhook-timestamp": str(int(NOW.timestamp()))}
times = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda t: t.isoformat() + "Z"
    ),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "\u00b2", "9" * 5000]),
)
crm_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), times)
crm_values = st.recursive(
    crm_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def mostly(
    usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any] = crm_values
) -> st.SearchStrategy[Any]:
    """What a provider sends four times in five, else anything: most payloads get past validation."""
    return st.integers(0, 4).flatmap(lambda pick: hostile if pick == 0 else usual)


hubspot_events = st.fixed_dictionaries(
    {
        "eventId": mostly(st.integers(1, 10**12)),
        "portalId": st.just(62515),
        "objectId": mostly(st.one_of(st.integers(1, 10**12), st.text("0123456789", min_size=1))),
        "occurredAt": mostly(st.integers(946_684_800_000, 10**14 - 1), st.one_of(st.integers(), times)),
        "subscriptionType": st.sampled_from(
            ["deal.propertyChange", "contact.propertyChange", "contact.creation", "object.propertyChange"]
        ),
        "propertyName": st.sampled_from(["dealstage", "email", "lifecyclestage", "hubspot_owner_id"]),
        "propertyValue": mostly(st.sampled_from(["closedwon", "ada@acme.io", "subscriber", ""]), crm_scalars),
    },
    optional={
        "contactEmail": mostly(st.just("ada@acme.io")),
        "objectTypeId": st.sampled_from(["0-1", "0-3"]),
        "anything": crm_values,
    },
)
pipedrive_payloads = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {
                "action": st.sampled_from(["change", "create", "updated", "added"]),
                "entity": st.sampled_from(["deal", "person", "activity"]),
            },
            optional={
                "timestamp": times,
                "timestamp_micro": st.integers(),
                "entity_id": mostly(st.integers(1, 10**6)),
            },
        ),
        "data": st.fixed_dictionaries(
            {"id": mostly(st.integers(1, 10**6))},
            optional={
                "stage_id": mostly(st.integers(1, 9)),
                "status": st.sampled_from(["won", "lost", "open"]),
                "person_id": mostly(st.integers(1, 10**6)),
                "value": mostly(st.floats(0, 1e9), crm_scalars),
                "currency": mostly(st.just("EUR")),
                "owner_id": mostly(st.integers(1, 99)),
                "emails": mostly(st.just([{"value": "ada@acme.io", "primary": True}])),
                "email": crm_values,
                "name": crm_scalars,
                "type": mostly(st.just("call")),
                "subject": crm_scalars,
            },
        ),
    },
    optional={"previous": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), crm_values, max_size=3))},
)
generic_payloads = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["deal.stage_changed", "contact.updated", "owner.assigned", "activity.logged"]
        ),
        "data": st.fixed_dictionaries(
            {"crm_id": mostly(st.just("C-1"))},
            optional={
                "email": mostly(st.just("ada@acme.io")),
                "stage": mostly(st.just("negotiation")),
                "amount": mostly(st.floats(0, 1e12), crm_scalars),
                "owner": mostly(st.just("owner-1")),
                "occurred_at": mostly(st.just("2026-11-25T11:00:00Z"), times),
                "properties": st.dictionaries(st.text(max_size=8), crm_scalars, max_size=3),
                "activity": mostly(st.fixed_dictionaries({"type": st.text(min_size=1)})),
            },
        ),
    }
)


def crm_bodies(payloads: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A provider's payload with hostile values three times in four, else any body."""
    spelled = payloads.map(lambda p: json.dumps(p).encode("utf-8", "surrogatepass"))
    return st.integers(0, 3).flatmap(lambda pick: bodies if pick == 0 else spelled)


def keepable_crm_deliveries(parse: Callable[[], list[crm_events.Delivery]]) -> list[crm_events.Delivery]:
    """What ``parse`` accepts, checked storable and readable back; a refusal must name its problem."""
    try:
        deliveries = parse()
    except InvalidInput as refused:
        event("refused")
        assert refused.problems
        return []
    event(f"accepted, {sum(len(d.events) for d in deliveries)} event(s)")
    for delivery in deliveries:
        for crm_event in delivery.events:
            bus = crm_event.bus_event()
            storable(bus.detail)
            crm_events.CrmEvent.model_validate_json(bus.detail_json())
            assert bus.time is not None and bus.time.astimezone(UTC).year >= 2000
    return deliveries


@FUZZ
@given(crm_bodies(st.lists(hubspot_events, min_size=1, max_size=3)))
def test_hubspot_accepts_any_body_only_as_events_consumers_keep(body: bytes) -> None:
    keepable_crm_deliveries(lambda: hubspot.hubspot_deliveries(body, CONFIG))


@FUZZ
@given(crm_bodies(pipedrive_payloads))
def test_pipedrive_accepts_any_body_only_as_events_consumers_keep(body: bytes) -> None:
    for delivery in keepable_crm_deliveries(lambda: pipedrive.pipedrive_deliveries(body, CONFIG, NOW)):
        for crm_event in delivery.events:
            assert crm_event.occurred_at <= NOW + crm_events.MAX_CLOCK_AHEAD


@FUZZ
@given(crm_bodies(generic_payloads))
def test_generic_webhooks_accept_any_body_only_as_events_consumers_keep(body: bytes) -> None:
    keepable_crm_deliveries(lambda: generic.generic_deliveries(body, GENERIC_HEADERS, CONFIG))


@pytest.mark.parametrize(
    "meta",
    [
        {"timestamp_micro": 10**37},
        {"timestamp_micro": -(10**37)},
        {"timestamp": 10**30},
        {"timestamp": "9" * 5000},
        {"timestamp": "\u00b2"},
        {"timestamp": "0001-01-01T00:00:00+01:00"},
        {"timestamp": "1999-12-31T23:59:59Z"},
        {"timestamp": (NOW + timedelta(days=2)).isoformat()},
    ],
)
def test_a_pipedrive_time_that_is_unusable_is_the_time_of_receipt(meta: dict[str, Any]) -> None:
    payload = {"meta": {"action": "change", "entity": "deal", **meta}, "data": {"id": 5, "stage_id": 3}}
    [delivery] = pipedrive.pipedrive_deliveries(json.dumps(payload).encode(), CONFIG, NOW)
    [event] = delivery.events
    assert event.occurred_at == NOW


@pytest.mark.parametrize(
    "occurred_at", ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2026-11-27T12:00:01Z"]
)
def test_a_generic_event_dated_before_2000_or_days_ahead_is_refused(occurred_at: str) -> None:
    payload = {"type": "contact.updated", "data": {"crm_id": "C-1", "occurred_at": occurred_at}}
    with pytest.raises(InvalidInput, match=r"data\.occurred_at"):
        generic.generic_deliveries(json.dumps(payload).encode(), GENERIC_HEADERS, CONFIG)


def test_a_generic_amount_given_as_text_must_be_storable_too() -> None:
    payload = {"type": "deal.stage_changed", "data": {"crm_id": "C-1", "stage": "won", "amount": "1e300"}}
    with pytest.raises(InvalidInput, match=r"data\.amount"):
        generic.generic_deliveries(json.dumps(payload).encode(), GENERIC_HEADERS, CONFIG)


def test_a_hubspot_event_dated_before_2000_is_refused_naming_it() -> None:
    event = {
        "eventId": 1,
        "portalId": 2,
        "objectId": 3,
        "occurredAt": 0,
        "subscriptionType": "contact.creation",
    }
    with pytest.raises(InvalidInput, match=r"\[0\]\.occurredAt"):
        hubspot.hubspot_deliveries(json.dumps([event]).encode(), CONFIG)


# --- ids and query parameters that reach a DynamoDB key ------------------------------------------------


class _NoReads:
    """A store that fails the test if it is asked anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was asked {name}")


@pytest.mark.parametrize("lead_id", ["ld_" + "0" * 98, "ld_\x00", "ld_\ud800", "\n"])
def test_an_id_no_lead_can_have_names_no_lead_without_a_lookup(lead_id: str) -> None:
    from kindling.leads.profiles import read_lead

    assert read_lead(_NoReads(), lead_id) is None  # type: ignore[arg-type]


def test_a_send_naming_an_id_no_lead_can_have_is_refused() -> None:
    from pydantic import ValidationError

    from kindling.email.sender import SendEmailCommand

    with pytest.raises(ValidationError, match="lead_id"):
        SendEmailCommand.model_validate({"template": "t", "lead_id": "x" * 3000})


@pytest.mark.parametrize("program", ["p" * 64, "Welcome", "a\x00", "\ud800", "../x"])
def test_a_report_for_something_that_is_not_a_program_id_reads_nothing(program: str) -> None:
    from kindling.kernel.errors import NotFound
    from kindling.metrics import reports

    with pytest.raises(InvalidInput, match="program"):
        reports.emails(_NoReads(), "2026-11-01", "2026-11-02", program, None)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        reports.program(_NoReads(), program, [], "2026-11-01", "2026-11-02", None)  # type: ignore[arg-type]
