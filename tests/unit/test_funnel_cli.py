"""``kindling report``: the API's report JSON as an aligned text table (no network)."""

from __future__ import annotations

from kindling_ops.cli import build_parser, format_report

FUNNEL = {
    "from": "2026-11-01",
    "to": "2026-11-30",
    "by": "industry",
    "groups": [
        {
            "value": "Software",
            "stages": [
                {"stage": "lead", "entered": 120, "next": "mql", "conversion_to_next": 0.25}
                | {"left": 40, "median_days_in_stage": 3.5},
                {"stage": "mql", "entered": 30, "next": "sql", "conversion_to_next": 0.0}
                | {"left": 0, "median_days_in_stage": None},
                {"stage": "customer", "entered": 2, "next": None, "conversion_to_next": None}
                | {"left": 0, "median_days_in_stage": None},
                {"stage": "closed_lost", "entered": 1, "next": None, "conversion_to_next": None}
                | {"left": 0, "median_days_in_stage": None},
            ],
            "closed": {
                "won": {"count": 2, "with_amount": 2, "amount": 2400.5},
                "lost": {"count": 1, "with_amount": 0, "amount": 0.0},
            },
        }
    ],
}


def test_the_funnel_report_prints_as_an_aligned_table() -> None:
    lines = format_report("funnel", FUNNEL).splitlines()
    assert lines[0].split() == [
        *("industry", "stage", "entered", "to_next", "left", "median_days", "closed", "amount")
    ]
    assert lines[2].split() == ["Software", "lead", "120", "25.0%", "40", "3.5", "-", "-"]
    assert lines[4].split() == ["Software", "customer", "2", "-", "0", "-", "2", "2400.5"]
    assert lines[5].split() == ["Software", "closed_lost", "1", "-", "0", "-", "1", "0.0"]
    # Numbers line up on the right, under their header.
    column = lines[0].index("entered") + len("entered")
    assert all(line[:column].endswith(("entered", "-------", "120", "30", "2", "1")) for line in lines)


def test_the_emails_report_prints_a_row_per_program_step_and_template() -> None:
    row = {
        "program": "welcome",
        "step": "intro",
        "template": "welcome-1",
        "sent": 10,
        "delivered": 9,
        "bounced": {"total": 1, "permanent": 1},
        "skipped": {"total": 2, "by_reason": {"quiet_period": 2}},
        "deferred": 1,
        "opened_unique": 5,
        "clicked_unique": 2,
        "unsubscribed": 0,
        "stage_advances_last_touch": 1,
        "stage_advances_any_touch": 3,
    }
    lines = format_report("emails", {"rows": [row, dict(row, program=None, step=None)]}).splitlines()
    assert lines[2].split() == [
        *("welcome", "intro", "welcome-1", "10", "9", "1", "2", "1", "5", "2", "0", "1", "3")
    ]
    assert lines[3].split()[:3] == ["-", "-", "welcome-1"]
    assert len({len(line) for line in lines}) == 1


def test_the_report_command_takes_a_range_a_breakdown_and_a_target() -> None:
    args = build_parser().parse_args(
        ["report", "funnel", "--from", "2026-11-01", "--to", "2026-11-30", "--by", "source", "--local"]
    )
    assert (args.kind, args.start, args.end, args.by, args.local) == (
        "funnel",
        "2026-11-01",
        "2026-11-30",
        "source",
        True,
    )


def test_the_program_report_prints_its_emails_and_the_funnel_it_touched() -> None:
    email = {
        "program": "welcome",
        "step": "intro",
        "template": "welcome-1",
        "sent": 10,
        "delivered": 10,
        "bounced": {"total": 0, "permanent": 0},
        "skipped": {"total": 0, "by_reason": {}},
        "deferred": 0,
        "opened_unique": 5,
        "clicked_unique": 2,
        "unsubscribed": 0,
        "stage_advances_last_touch": 1,
        "stage_advances_any_touch": 1,
    }
    report = {
        "program": "welcome",
        "from": "2026-11-01",
        "to": "2026-11-30",
        "emails": [email],
        "funnel": dict(FUNNEL["groups"][0], value="welcome"),  # type: ignore[call-overload]
    }
    text = format_report("program", report)
    assert text.splitlines()[0] == "program welcome, 2026-11-01 to 2026-11-30"
    assert "welcome-1" in text and any(
        line.split()[:3] == ["welcome", "lead", "120"] for line in text.splitlines()
    )
    args = build_parser().parse_args(
        ["report", "program", "--program", "welcome", "--from", "2026-11-01", "--to", "2026-11-30", "--local"]
    )
    assert (args.kind, args.program) == ("program", "welcome")
