"""The import driver: batches in order (suppressions first), every outcome written, resumable."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kindling_ops.admin_client import AdminApiError
from kindling_ops.import_command import run_import


class FakeApi:
    """Answers every row as created (contacts) or suppressed; fails the call numbered ``fail_on``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_on = fail_on

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise AdminApiError("cannot reach the API: connection reset")
        outcome = "suppressed" if path.endswith("suppressions") else "created"
        return {"results": [{"row": r["row"], "outcome": outcome, "lead_id": "ld_1"} for r in body["rows"]]}


def parsed(contacts: int, suppressions: int) -> Any:
    return SimpleNamespace(
        contacts=[
            SimpleNamespace(
                source_ref=f"c.csv:{i}",
                email=f"p{i}@acme.io",
                user_id=None,
                traits={},
                stage=None,
                unsubscribed=False,
            )
            for i in range(contacts)
        ],
        suppressions=[
            SimpleNamespace(source_ref=f"s.csv:{i}", email=f"s{i}@acme.io", reason="bounced")
            for i in range(suppressions)
        ],
        rejected=[SimpleNamespace(source_ref="c.csv:99", reason="no email and no user id")],
        skipped={},
    )


def go(api: FakeApi, results: Path, dry_run: bool = False) -> dict[str, dict[str, int]]:
    return run_import(
        api,
        parsed(5, 3),
        source="csv",
        results_path=results,
        identity="same-file",
        dry_run=dry_run,
        enroll=False,
        out=io.StringIO(),
        progress_out=io.StringIO(),
        batch_rows=2,
    )


def rows(results: Path) -> list[dict[str, str]]:
    with results.open() as handle:
        return list(csv.DictReader(handle))


def test_suppressions_go_before_contacts_and_every_row_is_written(tmp_path: Path) -> None:
    api = FakeApi()
    counts = go(api, tmp_path / "r.csv")
    assert [path for path, _ in api.calls] == ["/v1/imports/suppressions"] * 2 + ["/v1/imports/contacts"] * 3
    assert counts == {"contact": {"rejected": 1, "created": 5}, "suppression": {"suppressed": 3}}
    assert len(rows(tmp_path / "r.csv")) == 9
    assert not (tmp_path / "r.csv.checkpoint").exists(), "a finished import leaves no checkpoint"


def test_an_interrupted_import_goes_on_after_the_last_answered_batch(tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    with pytest.raises(AdminApiError):
        go(FakeApi(fail_on=4), results)  # the second contact batch fails
    again = FakeApi()
    go(again, results)
    sent = [r["row"] for _, body in again.calls for r in body["rows"]]
    assert sent == ["c.csv:2", "c.csv:3", "c.csv:4"], "only what was not answered"
    written = [r["row"] for r in rows(results)]
    assert sorted(written) == sorted({*written}) and len(written) == 9, "each row once"


def test_a_dry_run_sends_dry_run_and_leaves_nothing_to_resume(tmp_path: Path) -> None:
    api = FakeApi()
    go(api, tmp_path / "r.csv", dry_run=True)
    assert all(body["dry_run"] for _, body in api.calls)
    assert not (tmp_path / "r.csv.checkpoint").exists()


def test_a_person_named_twice_in_a_file_is_sent_once_with_the_later_values() -> None:
    from kindling_ops.import_command import merge_duplicates

    rows = [
        SimpleNamespace(
            source_ref="c.csv:2",
            email="ada@acme.io",
            user_id=None,
            traits={"title": "CTO", "city": "Paris"},
            stage="lead",
            unsubscribed=False,
        ),
        SimpleNamespace(
            source_ref="c.csv:9",
            email="ADA@acme.io ",
            user_id="u-1",
            traits={"title": "CEO"},
            stage="mql",
            unsubscribed=True,
        ),
    ]
    merged, duplicates = merge_duplicates(rows)
    assert duplicates == [("c.csv:9", "c.csv:2")]
    [ada] = merged
    assert ada["traits"] == {"title": "CEO", "city": "Paris"} and ada["stage"] == "mql"
    assert ada["unsubscribed"] and ada["user_id"] == "u-1" and ada["row"] == "c.csv:2"
