"""The capacity meter's rules against numbers worked out by hand from DynamoDB's documented rules."""

from __future__ import annotations

from typing import Any

import pytest

from kindling_ops.local.meter import (
    IndexShape,
    ItemState,
    attribute_size,
    eventbridge_entry_size,
    index_state,
    index_write_units,
    item_size,
    kind_of,
    read_units,
    sqs_billed,
    write_cost,
    write_units,
)

TABLE_KEYS = ("PK", "SK")
#: A sparse index like the template's GSI1, projecting one attribute besides the keys.
INCLUDE = IndexShape("GSI1", ("GSI1PK", "GSI1SK"), "INCLUDE", ("status",))


def S(value: str) -> dict[str, str]:
    return {"S": value}


#: PK 2+9, SK 2+7, email 5+15: 40 bytes.
PROFILE = {"PK": S("LEAD#ld_1"), "SK": S("PROFILE"), "email": S("ada@example.com")}


def due(**changes: Any) -> dict[str, Any]:
    """PK 2+6, SK 2+3, GSI1PK 6+18, GSI1SK 6+23, status 6+7, payload 7+1500: 1,586 bytes; its GSI1
    entry (the keys and status) 79 bytes."""
    item = {
        "PK": S("DUE#d1"),
        "SK": S("DUE"),
        "GSI1PK": S("HOUR#2026-03-02T08"),
        "GSI1SK": S("2026-03-02T08:15:00Z#d1"),
        "status": S("waiting"),
        "payload": S("x" * 1500),
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def state(item: dict[str, Any] | None, *indexes: IndexShape) -> ItemState:
    return ItemState.of(item, indexes, TABLE_KEYS)


# --- sizes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "size"),
    [
        (S("ada@example.com"), 15),
        (S("é"), 2),  # UTF-8 bytes
        ({"N": "123"}, 3),  # 3 digits: 2 bytes, plus 1
        ({"N": "-1.50"}, 2),  # significant digits 1 and 5: 1 byte, plus 1
        ({"N": "12345678901234567890"}, 11),
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"B": "AAEC"}, 3),  # base64 on the wire: 3 bytes
        ({"B": b"\x00\x01"}, 2),
        ({"SS": ["ab", "cde"]}, 5),
        ({"M": {"a": S("xy")}}, 7),  # 3 + name 1 + value 2 + 1
        ({"L": [{"N": "1"}, S("ab")]}, 9),  # 3 + (2 + 1) + (2 + 1)
    ],
)
def test_attribute_sizes(value: dict[str, Any], size: int) -> None:
    assert attribute_size(value) == size


def test_item_size_adds_names_and_values() -> None:
    assert item_size(PROFILE) == 40
    assert item_size(due()) == 1586
    assert item_size(None) == 0


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (2048, 2), (1586, 2)])
def test_write_units_are_whole_kilobytes(size: int, units: int) -> None:
    assert write_units(size) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [(0, True, 1.0), (0, False, 0.5), (4096, False, 0.5), (4097, True, 2.0), (8193, False, 1.5)],
)
def test_read_units_are_4_kb_halved_unless_consistent(size: int, consistent: bool, units: float) -> None:
    assert read_units(size, consistent) == units


def test_kinds_name_the_key_prefixes() -> None:
    assert kind_of({"PK": S("LEAD#ld_1"), "SK": S("EVT#2026-03-02T08:00:00Z#m1")}) == "LEAD/EVT"
    assert kind_of({"PK": S("SEND#welcome.ld_1.1"), "SK": S("SEND")}) == "SEND"
    assert kind_of({"PK": S("METRICLOG#2026-03-02"), "SK": S("2026-03-02T08:00:00Z#e1")}) == "METRICLOG/*"
    assert kind_of({"PK": S("CONFIG#scoring"), "SK": S("v000001")}) == "CONFIG/*"
    assert kind_of({"id": {"N": "7"}}, ("id",)) == "N"


# --- table writes ----------------------------------------------------------------------------------------
def test_a_put_bills_the_larger_of_before_and_after() -> None:
    assert write_cost(state(None), state(PROFILE)).table == 1
    assert (
        write_cost(state(due()), state(due(payload=S("y" * 100))), action="Update").table == 2
    )  # 1,586 -> 186
    big = {**PROFILE, "notes": S("n" * 2960)}  # 40 + 5 + 2,960 = 3,005 bytes
    assert write_cost(state(big), state(None), action="Delete").table == 3


def test_deleting_nothing_still_costs_one() -> None:
    assert write_cost(state(None), state(None), action="Delete").table == 1


def test_a_failed_condition_bills_the_item_as_it_is_or_would_be() -> None:
    existing = state(PROFILE)
    # a put of 2,100 bytes refused on a 40-byte item: the larger, 3 units; nothing written to an index
    refused = write_cost(existing, existing, action="Put", outcome="condition_failed", would_write=2100)
    assert (refused.table, refused.indexes) == (3, {})
    # an update refused on a 1,586-byte item that is in the index
    before = state(due(), INCLUDE)
    assert write_cost(before, before, action="Update", outcome="condition_failed") == write_cost(
        before, before, action="Delete", outcome="condition_failed"
    )
    assert write_cost(before, before, action="Update", outcome="condition_failed").table == 2
    assert write_cost(state(None), state(None), action="Update", outcome="condition_failed").table == 1


def test_transactions_bill_twice_per_item_condition_checks_and_cancellations_included() -> None:
    assert write_cost(state(None), state(due()), transactional=True).table == 4  # 2 units, twice
    assert write_cost(state(PROFILE), state(PROFILE), action="ConditionCheck", transactional=True).table == 2
    cancelled = write_cost(
        state(None), state(None), action="Put", transactional=True, outcome="cancelled", would_write=40
    )
    assert (cancelled.table, cancelled.indexes) == (2, {})
    assert write_cost(state(PROFILE), state(PROFILE), transactional=True, outcome="cancelled").table == 2


# --- index writes ------------------------------------------------------------------------------------------
def test_an_index_entry_holds_what_its_projection_says() -> None:
    item = due()
    assert item_size(INCLUDE.entry(item, TABLE_KEYS)) == 79
    keys_only = IndexShape("GSI1", ("GSI1PK", "GSI1SK"), "KEYS_ONLY")
    assert set(keys_only.entry(item, TABLE_KEYS)) == {"PK", "SK", "GSI1PK", "GSI1SK"}
    assert IndexShape("GSI1", ("GSI1PK", "GSI1SK")).entry(item, TABLE_KEYS) == item
    assert not INCLUDE.holds(PROFILE)  # a sparse index: no GSI1 keys, no entry


def test_entering_and_leaving_an_index_cost_one_write_each() -> None:
    entering = write_cost(state(None, INCLUDE), state(due(), INCLUDE))
    assert (entering.table, entering.indexes) == (2, {"GSI1": 1})
    leaving = write_cost(state(due(), INCLUDE), state(due(GSI1PK=None), INCLUDE), action="Update")
    assert (leaving.table, leaving.indexes) == (2, {"GSI1": 1})
    deleted = write_cost(state(due(), INCLUDE), state(None, INCLUDE), action="Delete")
    assert deleted.indexes == {"GSI1": 1}
    outside = write_cost(state(PROFILE, INCLUDE), state({**PROFILE, "email": S("b@x.io")}, INCLUDE))
    assert outside.indexes == {}


def test_an_item_that_stays_costs_an_index_write_only_when_its_entry_changes() -> None:
    # the payload is not projected: the entry is the same
    unchanged = write_cost(state(due(), INCLUDE), state(due(payload=S("y")), INCLUDE), action="Update")
    assert (unchanged.table, unchanged.indexes) == (2, {})
    # status is projected: one write of the entry (79 bytes)
    changed = write_cost(state(due(), INCLUDE), state(due(status=S("done")), INCLUDE), action="Update")
    assert (changed.table, changed.indexes) == (2, {"GSI1": 1})


def test_changing_an_index_key_is_a_delete_and_a_put() -> None:
    moved = write_cost(state(due(), INCLUDE), state(due(GSI1PK=S("HOUR#2026-03-02T09")), INCLUDE))
    assert moved.indexes == {"GSI1": 2}
    # with an ALL projection each of the two writes is the whole item's size: 2 + 2
    everything = IndexShape("GSI1", ("GSI1PK", "GSI1SK"))
    moved_all = write_cost(state(due(), everything), state(due(GSI1PK=S("HOUR#2026-03-02T09")), everything))
    assert moved_all.indexes == {"GSI1": 4}


def test_an_all_projection_rewrites_the_entry_on_any_change() -> None:
    everything = IndexShape("GSI1", ("GSI1PK", "GSI1SK"))
    changed = write_cost(state(due(), everything), state(due(payload=S("y" * 1600)), everything))
    assert changed.indexes == {"GSI1": 2}  # the larger entry, 1,686 bytes
    keys_only = IndexShape("GSI1", ("GSI1PK", "GSI1SK"), "KEYS_ONLY")
    assert write_cost(state(due(), keys_only), state(due(status=S("done")), keys_only)).indexes == {}


def test_index_writes_of_a_transaction_are_not_doubled() -> None:
    cost = write_cost(state(None, INCLUDE), state(due(), INCLUDE), transactional=True)
    assert (cost.table, cost.indexes) == (4, {"GSI1": 1})


def test_index_write_units_from_states() -> None:
    before = index_state(INCLUDE, due(), TABLE_KEYS)
    assert (before.present, before.size) == (True, 79)
    assert index_write_units(before, before) == 0
    assert index_write_units(before, index_state(INCLUDE, None, TABLE_KEYS)) == 1


# --- other services ----------------------------------------------------------------------------------------
def test_an_eventbridge_entry_is_billed_by_its_size() -> None:
    entry = {"Source": "kindling.capture", "DetailType": "web.page", "Detail": '{"a":1}', "Time": "x"}
    assert eventbridge_entry_size(entry) == 14 + 16 + 8 + 7
    assert eventbridge_entry_size({**entry, "Resources": ["arn:x"]}) == 50


def test_sqs_is_billed_as_event_source_mappings_and_eventbridge_use_it() -> None:
    requests = [
        {"caller": "stack", "service": "sqs", "operation": "ReceiveMessage", "billed": 500},
        {"caller": "DueWorkFunction", "service": "sqs", "operation": "SendMessageBatch", "billed": 3},
        {"caller": "ProfilesFunction", "service": "dynamodb", "operation": "GetItem", "billed": 9},
    ]
    invocations = {
        "ProfilesFunction": {"count": 4, "batches": 4, "messages": 30},
        "StepsFunction": {"count": 2, "batches": 2, "messages": 5},
        "CaptureFunction": {"count": 30},
    }
    billed = sqs_billed(requests, invocations, {"kindling-ProfilesQueue": 20, "kindling-MetricsQueue": 8})
    assert billed == {
        "event_source_receive": 6,
        "event_source_delete_batch": 6,
        "eventbridge_send": 28,
        "functions": {"SendMessageBatch": 3},
        "total": 6 + 6 + 28 + 3,
    }
