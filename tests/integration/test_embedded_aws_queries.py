"""Queries on the embedded AWS read only what they can match, and still answer as DynamoDB does."""

from __future__ import annotations

from typing import Any

import pytest


def S(value: str) -> dict[str, str]:
    return {"S": value}


def _all(dynamodb: Any, **request: Any) -> list[tuple[str, str]]:
    """Every page of a Query, as (PK, SK) in the order the pages gave them."""
    found, start = [], None
    while True:
        page = dynamodb.query(**request, **({"ExclusiveStartKey": start} if start else {}))
        found += [(item["PK"]["S"], item["SK"]["S"]) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


@pytest.fixture
def filled(dynamodb: Any, table: str) -> str:
    """Two leads' timelines and due items in three hours, two of them due at the same instant."""
    for lead, count in (("a", 23), ("b", 9)):
        for n in range(count):
            dynamodb.put_item(
                TableName=table,
                Item={"PK": S(f"LEAD#{lead}"), "SK": S(f"EVT#{n:03d}"), "n": {"N": str(n)}},
            )
        dynamodb.put_item(TableName=table, Item={"PK": S(f"LEAD#{lead}"), "SK": S("PROFILE")})
    for n in range(12):
        dynamodb.put_item(
            TableName=table,
            Item={
                "PK": S(f"DUE#{11 - n:02d}"),
                "SK": S("DUE"),
                "GSI1PK": S(f"DUEAT#2026-03-02T{8 + n % 3:02d}"),
                "GSI1SK": S(f"2026-03-02T08:{n // 2:02d}:00Z"),  # pairs due at the same instant
            },
        )
    return table


def test_a_partition_query_answers_its_items_in_key_order(dynamodb: Any, filled: str) -> None:
    lead_a = [("LEAD#a", f"EVT#{n:03d}") for n in range(23)] + [("LEAD#a", "PROFILE")]
    request = {"TableName": filled, "KeyConditionExpression": "PK = :pk"}
    assert _all(dynamodb, **request, ExpressionAttributeValues={":pk": S("LEAD#a")}) == lead_a
    assert _all(dynamodb, **request, ExpressionAttributeValues={":pk": S("LEAD#a")}, Limit=5) == lead_a
    backwards = _all(
        dynamodb, **request, ExpressionAttributeValues={":pk": S("LEAD#a")}, ScanIndexForward=False, Limit=4
    )
    assert backwards == lead_a[::-1]
    assert _all(dynamodb, **request, ExpressionAttributeValues={":pk": S("LEAD#nobody")}) == []
    events = _all(
        dynamodb,
        TableName=filled,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :evt)",
        FilterExpression="n >= :two",
        ExpressionAttributeValues={":pk": S("LEAD#b"), ":evt": S("EVT#"), ":two": {"N": "2"}},
    )
    assert events == [("LEAD#b", f"EVT#{n:03d}") for n in range(2, 9)]
    between = _all(
        dynamodb,
        TableName=filled,
        KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
        ExpressionAttributeValues={":pk": S("LEAD#a"), ":lo": S("EVT#005"), ":hi": S("EVT#009")},
        Limit=2,
    )
    assert between == [("LEAD#a", f"EVT#{n:03d}") for n in range(5, 10)]


def test_an_index_query_answers_in_the_index_order_then_the_tables(dynamodb: Any, filled: str) -> None:
    for hour in (8, 9, 10):
        items = [n for n in range(12) if 8 + n % 3 == hour]
        # by GSI1SK, then (same instant) by the table's key
        expected = sorted(
            ((f"2026-03-02T08:{n // 2:02d}:00Z", f"DUE#{11 - n:02d}") for n in items),
        )
        for limit in (None, 1, 3):
            found = _all(
                dynamodb,
                TableName=filled,
                IndexName="GSI1",
                KeyConditionExpression="GSI1PK = :h",
                ExpressionAttributeValues={":h": S(f"DUEAT#2026-03-02T{hour:02d}")},
                **({"Limit": limit} if limit else {}),
            )
            assert found == [(pk, "DUE") for _, pk in expected]


def test_a_scan_answers_every_item_once_in_key_order_page_by_page(dynamodb: Any, filled: str) -> None:
    found, start = [], None
    while True:
        page = dynamodb.scan(TableName=filled, Limit=7, **({"ExclusiveStartKey": start} if start else {}))
        found += [(item["PK"]["S"], item["SK"]["S"]) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert len(found) == 23 + 9 + 2 + 12
    assert found == sorted(found)
