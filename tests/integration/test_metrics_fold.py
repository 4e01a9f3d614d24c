"""The metrics consumer logs fresh events and the fold counts them, through the real handlers, against moto:
what each writes, a late event counted once, and a fold that crashes half-way and is retried."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from kindling.adapters.metrics_store import DynamoMetricsStore
from kindling.kernel import clock
from kindling.metrics.counters import FOLD_LAG, Counters, Replay
from kindling.metrics.fold import fold_metrics
from kindling.metrics.rebuild import rebuild_metrics
from tests.integration.conftest import ADMIN
from tests.integration.events import Context, http_event
from tests.integration.test_metrics import LEAD, T0, deliver, email, engagement, report, stage

WINDOW = timedelta(days=14)
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}
WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")


@pytest.fixture
def now() -> Iterator[clock.FixedClock]:
    """The process clock, as the handlers read it: a minute after T0."""
    fixed = clock.FixedClock(T0 + timedelta(minutes=1))
    clock.install(fixed)
    yield fixed
    clock.install(clock.SystemClock())


class CountingClient:
    """A DynamoDB client that counts the writes it is asked for, and fails from the ``fail_at``-th on
    (as a fold's Lambda would stop: a timeout, a crash)."""

    def __init__(self, client: Any, fail_at: int | None = None) -> None:
        self._client = client
        self._fail_at = fail_at
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in WRITES:
            return call

        def counted(**kwargs: Any) -> Any:
            if self._fail_at is not None and len(self.writes) >= self._fail_at:
                raise RuntimeError("the fold stopped here")
            self.writes.append(name)
            return call(**kwargs)

        return counted


def scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    pages = dynamodb.get_paginator("scan").paginate(TableName=table)
    return [item for page in pages for item in page["Items"]]


def stored_counters(dynamodb: Any, table: str, generation: int = 0) -> Counters:
    """Every counter of a generation as it is stored (the fold's guards left out)."""
    counters: Counters = {}
    prefix = f"METRIC#g{generation}#"
    for item in scan(dynamodb, table):
        pk = item["PK"]["S"]
        if not pk.startswith(prefix):
            continue
        kind, _, key_id = pk[len(prefix) :].partition("#")
        name = key_id if kind == "email" else f"funnel|{key_id}"
        fields = {f: int(v["N"]) for f, v in item.items() if "N" in v and not f.startswith("fold.")}
        counters[(name, item["SK"]["S"][4:])] = fields
    return counters


def test_a_fresh_event_is_one_log_item_and_counts_once_a_fold_ran(
    metrics, metrics_fold, leads_api, dynamodb, table, now
) -> None:
    send = f"welcome.{LEAD}.1.intro"
    sent = email("sent", send, T0)
    opened = engagement("Email Opened", "open-1", send, T0 + timedelta(seconds=30), "welcome-1")
    assert deliver(metrics, sent, opened) == {"batchItemFailures": []}

    items = scan(dynamodb, table)
    assert not [i for i in items if i["PK"]["S"].startswith(("METRIC#", "METRICSEEN", "METRICEVT"))]
    assert not [i for i in items if i["SK"]["S"] == "METRICSTATE"]
    log = [i for i in items if i["PK"]["S"].startswith("METRICLOG#")]
    assert len(log) == 2 and all(set(i) == {"PK", "SK", "event"} for i in log)
    assert report(leads_api, **NOVEMBER)[1]["rows"] == [], "nothing counted before a fold"

    # A redelivery is read, and writes nothing.
    counting = CountingClient(dynamodb)
    metrics.recorder._store._client = counting
    assert deliver(metrics, sent, opened) == {"batchItemFailures": []}
    assert counting.writes == []

    # The fold counts nothing younger than its lag...
    metrics_fold.lambda_handler({}, Context())
    assert report(leads_api, **NOVEMBER)[1]["rows"] == []
    # ...and, once past it, counts each event once, however often it runs.
    now.advance(FOLD_LAG + timedelta(minutes=10))
    first = metrics_fold.lambda_handler({}, Context())
    assert (first["events"], first["counted"]) == (2, 2)
    now.advance(timedelta(minutes=10))
    assert metrics_fold.lambda_handler({}, Context())["events"] == 0
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert (row["step"], row["sent"], row["opened_unique"]) == ("intro", 1, 1)


def test_a_late_event_is_counted_at_once_and_never_again_by_the_fold(
    metrics, metrics_fold, leads_api, dynamodb, table, now
) -> None:
    now.set(T0 + timedelta(hours=3))  # a redrive of what happened three hours ago
    send = f"welcome.{LEAD}.1.intro"
    late = email("sent", send, T0)
    assert deliver(metrics, late, late) == {"batchItemFailures": []}
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert row["sent"] == 1
    (entry,) = [i for i in scan(dynamodb, table) if i["PK"]["S"].startswith("METRICLOG#")]
    assert entry["applied"] == {"N": "0"}

    # A fresh open of the same send: folded later, credited to the same email.
    fresh = engagement("Email Opened", "open-9", send, T0 + timedelta(hours=3), "welcome-1")
    assert deliver(metrics, fresh) == {"batchItemFailures": []}
    now.advance(timedelta(minutes=30))
    assert metrics_fold.lambda_handler({}, Context())["events"] == 1
    now.advance(timedelta(days=1))
    metrics_fold.lambda_handler({}, Context())
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert (row["sent"], row["opened_unique"]) == (1, 1)


def get_funnel(leads_api: Any) -> dict[str, Any]:
    event = http_event(
        "GET", "/v1/reports/funnel", headers={"Authorization": f"Bearer {ADMIN}"}, query=dict(NOVEMBER)
    )
    return dict(json.loads(leads_api.lambda_handler(event, Context())["body"]))


def busy_minutes(metrics: Any) -> None:
    """Six leads, each sent an email, delivered, opened twice, clicked, and moved on to mql."""
    for n in range(6):
        lead = f"ld_fold{n}"
        send = f"welcome.{lead}.1.intro"
        at = T0 + timedelta(seconds=10 * n)
        bodies = [
            email("sent", send, at),
            email("delivered", send, at + timedelta(seconds=1)),
            engagement("Email Opened", f"o1-{n}", send, at + timedelta(seconds=2), "welcome-1"),
            engagement("Email Opened", f"o2-{n}", send, at + timedelta(seconds=3), "welcome-1"),
            engagement("Email Clicked", f"c-{n}", send, at + timedelta(seconds=4), "welcome-1"),
            stage(f"m-{n}", at + timedelta(seconds=5), "lead", "mql"),
        ]
        assert deliver(metrics, *[b.replace(LEAD, lead) for b in bodies]) == {"batchItemFailures": []}


@pytest.mark.parametrize("crash_after", [1, 10, 21, 25, 28, 33])
def test_a_fold_retried_after_a_crash_neither_loses_nor_doubles(
    metrics, leads_api, dynamodb, table, now, crash_after
) -> None:
    # The day before, each lead became a lead (a CRM import: late, counted at once).
    for n in range(6):
        became = stage(f"became-{n}", T0 - timedelta(days=1), "subscriber", "lead")
        assert deliver(metrics, became.replace(LEAD, f"ld_fold{n}")) == {"batchItemFailures": []}
    busy_minutes(metrics)
    later = T0 + timedelta(minutes=30)
    store = DynamoMetricsStore(table, dynamodb)
    expected = Replay(WINDOW)
    for day in store.logged_days():
        for entry in store.logged_events(day):
            assert entry.event is not None
            expected.apply(entry.event)
    assert len(expected.applied) == 6 + 36 and len(store.unfolded(None, later - FOLD_LAG)[0]) == 36
    assert sum(f.get("lead:left", 0) for f in expected.counters.values()) == 6 * 6  # six funnels each

    crashing = CountingClient(dynamodb, fail_at=crash_after)
    with pytest.raises(RuntimeError, match="stopped here"):
        fold_metrics(DynamoMetricsStore(table, crashing), later, WINDOW)
    # Claimed, and some writes landed (before the cursor's move, the last, all counters have).
    assert store.fold_cursor().pending is not None and len(crashing.writes) == crash_after
    assert (stored_counters(dynamodb, table) == expected.counters) == (crash_after == 33)

    # The next run (ten minutes on) finishes the stretch the crashed one claimed, then folds on.
    retry = fold_metrics(DynamoMetricsStore(table, dynamodb), later + timedelta(minutes=10), WINDOW)
    assert retry.events == 36 and retry.through == later - FOLD_LAG
    assert stored_counters(dynamodb, table) == expected.counters
    again = fold_metrics(DynamoMetricsStore(table, dynamodb), later + timedelta(minutes=20), WINDOW)
    assert again.events == 0 and stored_counters(dynamodb, table) == expected.counters
    status, body = report(leads_api, **NOVEMBER)
    (row,) = body["rows"] if status == 200 else [None]
    assert (row["sent"], row["delivered"], row["opened_unique"], row["clicked_unique"]) == (6, 6, 6, 6)
    assert row["stage_advances_last_touch"] == 6
    (overall,) = get_funnel(leads_api)["groups"]
    assert {s["stage"]: (s["entered"], s["left"]) for s in overall["stages"]}["lead"] == (6, 6)


def test_an_uncrashed_fold_makes_a_write_per_claim_marker_state_key_list_counter_and_cursor(
    metrics, dynamodb, table, now
) -> None:
    """Counters are written once per (counter, day) per fold, not once per event: what the crash
    points above fall between."""
    busy_minutes(metrics)
    counting = CountingClient(dynamodb)
    summary = fold_metrics(DynamoMetricsStore(table, counting), T0 + timedelta(minutes=30), WINDOW)
    assert summary.events == 36 and summary.counted == 30  # the second opens count nothing
    counters = stored_counters(dynamodb, table)
    # One email counter, and the funnels all, industry, source, program, segment, intent.
    assert len(counters) == 1 + 6
    markers, states = 6 * 3, 6
    assert counting.writes == (
        ["update_item"]
        + ["put_item"] * (markers + states)
        + ["batch_write_item"]
        + ["update_item"] * len(counters)
        + ["transact_write_items"]
    )


def test_a_backlog_is_folded_a_part_at_a_time_and_the_counts_are_the_same(
    metrics, leads_api, dynamodb, table, now
) -> None:
    for n in range(6):  # six entries counted at once, which a fold reads and skips
        became = stage(f"became-{n}", T0 - timedelta(days=1), "subscriber", "lead")
        assert deliver(metrics, became.replace(LEAD, f"ld_fold{n}")) == {"batchItemFailures": []}
    busy_minutes(metrics)
    later = T0 + timedelta(minutes=30)
    folds = [fold_metrics(DynamoMetricsStore(table, dynamodb), later, WINDOW, limit=10) for _ in range(6)]
    assert [f.events for f in folds] == [4, 10, 10, 10, 2, 0]
    assert folds[0].through == T0 + timedelta(seconds=3) and folds[-1].through == later - FOLD_LAG
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert (row["sent"], row["opened_unique"], row["stage_advances_last_touch"]) == (6, 6, 6)
    (overall,) = get_funnel(leads_api)["groups"]
    assert {s["stage"]: (s["entered"], s["left"]) for s in overall["stages"]}["lead"] == (6, 6)


@pytest.mark.parametrize("crash_after", [10, 33])
def test_a_fold_cut_short_by_a_rebuild_counts_its_stretch_once_into_the_new_generation(
    metrics, leads_api, dynamodb, table, now, crash_after
) -> None:
    busy_minutes(metrics)
    later = T0 + timedelta(minutes=30)
    with pytest.raises(RuntimeError, match="stopped here"):
        fold_metrics(DynamoMetricsStore(table, CountingClient(dynamodb, crash_after)), later, WINDOW)

    summary = rebuild_metrics(DynamoMetricsStore(table, dynamodb), WINDOW)
    assert summary.generation == 1 and summary.replayed == 0, "nothing was folded through the cursor"
    assert report(leads_api, **NOVEMBER)[1]["rows"] == [], "the new generation waits for the fold"

    resumed = fold_metrics(DynamoMetricsStore(table, dynamodb), later + timedelta(minutes=10), WINDOW)
    assert resumed.events == 36
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert (row["sent"], row["delivered"], row["opened_unique"], row["clicked_unique"]) == (6, 6, 6, 6)
    assert stored_counters(dynamodb, table, generation=0) == {}, "the old generation is dropped"

    # A second rebuild replays what the fold counted into generation 1, and nothing twice.
    again = rebuild_metrics(DynamoMetricsStore(table, dynamodb), WINDOW)
    assert again.generation == 2 and again.replayed == 36
    (row,) = report(leads_api, **NOVEMBER)[1]["rows"]
    assert (row["sent"], row["delivered"], row["opened_unique"], row["clicked_unique"]) == (6, 6, 6, 6)


class RebuildStartsBeforeTheCursorMoves(CountingClient):
    """A client through which a rebuild points the writers at generation 1 just as the fold's
    cursor is about to move (its counters written into generation 0)."""

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if name != "transact_write_items" or self.writes.count(name):
            return call

        def switched(**kwargs: Any) -> Any:
            DynamoMetricsStore(self.table, self.plain).start_generation(0, 0, 1)
            return call(**kwargs)

        return switched


def test_a_fold_whose_generation_is_switched_under_it_folds_its_stretch_into_the_new_one(
    metrics, dynamodb, table, now
) -> None:
    busy_minutes(metrics)
    client = RebuildStartsBeforeTheCursorMoves(dynamodb)
    client.table, client.plain = table, dynamodb
    summary = fold_metrics(DynamoMetricsStore(table, client), T0 + timedelta(minutes=30), WINDOW)
    assert summary.events == 36 and client.writes.count("transact_write_items") == 2
    store = DynamoMetricsStore(table, dynamodb)
    assert store.generations() == (0, 1) and store.fold_cursor().pending is None
    first = stored_counters(dynamodb, table, generation=0)
    assert first and stored_counters(dynamodb, table, generation=1) == first
    # What a rebuild to generation 1 would now replay: nothing the fold counted into it.
    assert store.folded_through(1) is None
