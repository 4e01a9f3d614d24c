"""Converting an Amazon Pinpoint journey (GetJourney's JSON) to a kindling program and template stubs."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kindling.email.config import EmailTemplates
from kindling.programs.config import Program, parse_duration
from kindling_ops.cli import main
from kindling_ops.config import ConfigError, load
from kindling_ops.importing.pinpoint_journey import (
    JourneyConversion,
    JourneyConversionError,
    convert_journey,
    iso_duration_seconds,
    kindling_duration,
    write_conversion,
)

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = ROOT / "tests" / "fixtures" / "imports" / "pinpoint-journey" / "journey.json"

WELCOME, WAIT_2D, CLICK_SPLIT = "Xk3TqW9dLm", "Rb7pZc2VnQ", "Hs4YjE8uKa"
EMAIL_A, EMAIL_B, HOLDOUT = "Pq6LmN1sTb", "Dv2GhJ5rYw", "Ty5BnM7qOp"
MULTI, RANDOM, WAIT_UNTIL = "Mc9VbX3aRt", "Rs5AqZ9wEo", "Cw8EfT1gHj"
ENTERPRISE, WEBINAR, REMINDER = "En4QwR6tYu", "Wb1NmK8jHg", "Gk2JhB6nVc"
LOGISTICS, VARIANT_B = "Fu7DxS2cLk", "Ob4IuY9tRe"


def journey_document() -> dict[str, Any]:
    return dict(json.loads(JOURNEY.read_text()))


@pytest.fixture(scope="module")
def conversion() -> JourneyConversion:
    return convert_journey(journey_document())


@pytest.fixture(scope="module")
def program(conversion: JourneyConversion) -> Program:
    return Program.model_validate(conversion.program)


def notes_about(conversion: JourneyConversion, activity_id: str) -> list[str]:
    return [note for note in conversion.unmapped if f"activity {activity_id} " in note]


def successor(program: Program, step_id: str) -> str | None:
    step = program.step(step_id)
    return program.next_of(step)


def small_journey(activities: dict[str, Any], start: str) -> dict[str, Any]:
    return {
        "Id": "j-1",
        "Name": "Small",
        "ApplicationId": "app",
        "StartActivity": start,
        "Activities": activities,
    }


def email(template: str, next_activity: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"TemplateName": template}
    if next_activity:
        body["NextActivity"] = next_activity
    return {"EMAIL": body}


# --- the program -----------------------------------------------------------------------------


def test_the_journey_becomes_a_program_kindling_accepts(
    conversion: JourneyConversion, program: Program
) -> None:
    assert program.id == "welcome-journey"
    assert program.name == "Welcome journey"
    assert program.trigger.segment == "8b1f3c5d7e9a4b2c8d6e0f1a3b5c7d9e"
    assert program.reentry.model_dump() == {"after_days": 90}  # type: ignore[union-attr]
    assert conversion.segments == ["8b1f3c5d7e9a4b2c8d6e0f1a3b5c7d9e", "3f6c2a9e1b7d4c8e9a0b5d6e7f8a9b0c"]


def test_the_bare_journey_response_converts_the_same(conversion: JourneyConversion) -> None:
    bare = convert_journey(journey_document()["JourneyResponse"])
    assert bare.program == conversion.program
    assert bare.templates == conversion.templates
    assert bare.unmapped == conversion.unmapped


def test_step_ids_are_slug_safe_descriptions_or_the_activity_ids(program: Program) -> None:
    ids = [step.id for step in program.steps]
    assert ids[:3] == ["xk3tqw9dlm", "wait-2d", "clicked-welcome"]  # "Welcome email" is not an id
    assert "enterprise-demo" in ids
    assert program.step("xk3tqw9dlm").send_email == "welcome-email"


def test_waits_are_converted_exactly(program: Program) -> None:
    waits = {
        step.id: step.wait for step in program.steps if step.wait is not None and step.id != "cw8eft1ghj"
    }
    assert waits == {"wait-2d": "2d", "wz8kcf4eui": "36h", "mc9vbx3art-wait": "12h", "lp3oiu7ytr": "1w"}
    assert parse_duration(program.step("wz8kcf4eui").wait or "") == timedelta(hours=36)


@pytest.mark.parametrize(
    ("iso", "kindling"),
    [
        ("PT1H", "1h"),
        ("P2D", "2d"),
        ("P1W", "1w"),
        ("PT30M", "30m"),
        ("P1DT12H", "36h"),
        ("P14D", "2w"),
        ("PT90M", "90m"),
        ("P7D", "1w"),
    ],
)
def test_iso_durations_become_the_same_kindling_duration(iso: str, kindling: str) -> None:
    seconds, approximate = iso_duration_seconds(iso)
    assert approximate is None
    assert kindling_duration(seconds) == kindling
    assert parse_duration(kindling) == timedelta(seconds=seconds)


def test_a_wait_in_months_or_seconds_says_it_is_rounded() -> None:
    assert iso_duration_seconds("P1M")[1] == "a month is taken as 30 days"
    seconds, approximate = iso_duration_seconds("PT90S")
    assert kindling_duration(seconds) == "2m" and approximate is not None


def test_the_click_split_branches_on_a_click_of_the_first_email(
    program: Program, conversion: JourneyConversion
) -> None:
    split = program.step("clicked-welcome")
    assert split.branch is not None and len(split.branch) == 1
    case = split.branch[0]
    assert case.when.model_dump(exclude_unset=True) == {"clicked_email_of_program": True}
    assert case.then == "pq6lmn1stb"  # email A
    assert split.targets(program.following(split.id))[-1] == "dv2ghj5ryw"  # email B otherwise
    assert program.step("pq6lmn1stb").send_email == "customer-story-logistics"
    assert program.step("dv2ghj5ryw").send_email == "welcome-nudge"
    # Only the first email can have been sent before the split, so the mapping is exact.
    assert notes_about(conversion, CLICK_SPLIT) == []


def test_every_path_goes_where_the_journey_goes(program: Program) -> None:
    assert successor(program, "xk3tqw9dlm") == "wait-2d"
    assert successor(program, "wait-2d") == "clicked-welcome"
    assert successor(program, "pq6lmn1stb") == "wz8kcf4eui"  # back from the end of the list
    assert successor(program, "dv2ghj5ryw") == "wz8kcf4eui"  # the holdout goes straight on
    assert successor(program, "wz8kcf4eui") == "mc9vbx3art-wait"
    assert successor(program, "mc9vbx3art-wait") == "mc9vbx3art"  # the evaluation wait, then the branch
    assert successor(program, "cw8eft1ghj") == "wb1nmk8jhg"
    assert successor(program, "wb1nmk8jhg") == "lp3oiu7ytr"
    assert successor(program, "lp3oiu7ytr") == "gk2jhb6nvc"
    # The end of a Pinpoint path is the end of the program.
    for last in ("gk2jhb6nvc", "enterprise-demo"):
        assert program.step(successor(program, last) or "").exit is True


def test_the_multivariate_split_keeps_the_paths_kindling_can_test(program: Program) -> None:
    split = program.step("mc9vbx3art")
    assert split.branch is not None
    assert [(c.when.model_dump(exclude_unset=True), c.then) for c in split.branch] == [
        ({"in_segment": "3f6c2a9e1b7d4c8e9a0b5d6e7f8a9b0c"}, "enterprise-demo"),
        ({"opened_email_of_program": True}, "wb1nmk8jhg"),
    ]
    # The default path runs through the random split's first path: the wait for a fixed date.
    assert split.targets(program.following(split.id))[-1] == "cw8eft1ghj"


def test_every_lossy_element_is_listed_with_its_activity(conversion: JourneyConversion) -> None:
    expected = {
        HOLDOUT: "no holdout",
        RANDOM: "no random split",
        WAIT_UNTIL: "WaitUntil 2026-03-02T15:00:00Z",
        LOGISTICS: "left out",
        VARIANT_B: "left out",
        WELCOME: "hello@acme.example",
    }
    for activity_id, words in expected.items():
        notes = notes_about(conversion, activity_id)
        assert any(words in note for note in notes), (activity_id, notes)
    multi = " ".join(notes_about(conversion, MULTI))
    assert "path 3 (to Fu7DxS2cLk)" in multi and "segment-dimension" in multi
    assert "also holds for an open of an earlier email" in multi  # kindling's open is of any email
    for field in ("QuietTime", "OpenHours", "Limits", "Schedule", "RefreshFrequency", "StartCondition"):
        assert any(note.startswith(f"journey {field}") for note in conversion.unmapped), field
    # Exact elements are not listed.
    for activity_id in (WAIT_2D, EMAIL_A, EMAIL_B, WEBINAR, REMINDER, ENTERPRISE):
        assert notes_about(conversion, activity_id) == [], activity_id


def test_a_fixed_date_wait_becomes_a_wait_from_the_journeys_start(program: Program) -> None:
    # 2025-11-04T14:00Z (Schedule.StartTime) to 2026-03-02T15:00Z, rounded up to whole days.
    assert program.step("cw8eft1ghj").wait == "119d"


def test_quiet_time_open_hours_and_limits_become_settings_hints(conversion: JourneyConversion) -> None:
    hints = "\n".join(conversion.settings_hints)
    assert "QuietTime 21:00-08:00" in hints and "start: '08:00', end: '21:00'" in hints
    assert "days: [mon, tue, wed, thu, fri], start: '09:00', end: '17:00'" in hints
    assert "frequency_cap: {max_emails: 2, per_days: 1}" in hints
    assert "frequency_cap: {max_emails: 4, per_days: 7}" in hints
    assert "MessagesPerSecond 50" in hints


# --- templates -------------------------------------------------------------------------------


def test_each_email_gets_a_template_stub_that_renders(conversion: JourneyConversion) -> None:
    assert sorted(conversion.templates) == [
        "customer-story-logistics",
        "enterprise-demo-offer",
        "logistics-use-cases",
        "webinar-invite",
        "webinar-invite-variant-b",
        "webinar-reminder",
        "welcome-email",
        "welcome-nudge",
    ]
    EmailTemplates.model_validate({"templates": conversion.templates})  # renders every part
    welcome = conversion.templates["welcome-email"]
    assert welcome["kind"] == "marketing"
    for part in ("subject", "html", "text"):
        assert "TODO: paste the content of Pinpoint template Welcome_Email (version 3)" in welcome[part]
    assert "its active version" in conversion.templates["welcome-nudge"]["subject"]


# --- the written folder ----------------------------------------------------------------------


def config_folder(tmp_path: Path, conversion: JourneyConversion, segments: bool = True) -> Path:
    folder = tmp_path / "config"
    write_conversion(conversion, folder)
    shutil.copy(ROOT / "config" / "email.yaml", folder / "email.yaml")
    shutil.copy(ROOT / "config" / "scoring.yaml", folder / "scoring.yaml")
    stubs = [
        {"id": name, "name": f"Pinpoint segment {name}", "when": {"trait": {"email": {"exists": True}}}}
        for name in (conversion.segments if segments else [])
    ]
    (folder / "segments.yaml").write_text(yaml.safe_dump({"segments": stubs}))
    return folder


def test_the_written_folder_passes_kindling_config_validate(
    tmp_path: Path, conversion: JourneyConversion, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = config_folder(tmp_path, conversion)
    loaded = load(folder)
    assert set(loaded["programs"].programs) == {"welcome-journey"}  # type: ignore[attr-defined]
    assert len(loaded["templates"].templates) == 8  # type: ignore[attr-defined]
    assert main(["config", "validate", "--dir", str(folder)]) == 0
    assert "welcome-journey.yaml: sends email but does not exit" in capsys.readouterr().out  # a warning only


def test_validation_names_the_segments_the_notes_ask_for(
    tmp_path: Path, conversion: JourneyConversion
) -> None:
    folder = config_folder(tmp_path, conversion, segments=False)
    with pytest.raises(ConfigError) as raised:
        load(folder)
    assert any("no segment '8b1f3c5d7e9a4b2c8d6e0f1a3b5c7d9e'" in p for p in raised.value.problems)
    assert any("no segment '3f6c2a9e1b7d4c8e9a0b5d6e7f8a9b0c'" in p for p in raised.value.problems)


def test_written_files_say_where_they_come_from(tmp_path: Path, conversion: JourneyConversion) -> None:
    written = write_conversion(conversion, tmp_path)
    assert tmp_path / "programs" / "welcome-journey.yaml" in written
    assert len(written) == 1 + len(conversion.templates)
    text = (tmp_path / "programs" / "welcome-journey.yaml").read_text()
    assert text.startswith("# Converted from the Amazon Pinpoint journey 'Welcome journey'")
    assert "activity Ty5BnM7qOp (Holdout" in text  # the unmapped list, for review
    assert yaml.safe_load(text) == conversion.program
    stub = (tmp_path / "templates" / "welcome-email.yaml").read_text()
    assert stub.startswith("# Converted from an Amazon Pinpoint journey")
    assert yaml.safe_load(stub) == conversion.templates["welcome-email"]


def test_existing_files_are_never_overwritten(tmp_path: Path, conversion: JourneyConversion) -> None:
    (tmp_path / "templates").mkdir()
    mine = tmp_path / "templates" / "welcome-email.yaml"
    mine.write_text("subject: mine\n")
    with pytest.raises(FileExistsError, match=r"welcome-email\.yaml already exists"):
        write_conversion(conversion, tmp_path)
    assert mine.read_text() == "subject: mine\n"
    assert not (tmp_path / "programs").exists()  # nothing was written


# --- smaller journeys ------------------------------------------------------------------------


def test_a_split_kindling_cannot_test_falls_back_to_its_no_path(tmp_path: Path) -> None:
    document = small_journey(
        {
            "a1": email("Intro", "s1"),
            "s1": {
                "ConditionalSplit": {
                    "Condition": {
                        "Conditions": [
                            {
                                "EventCondition": {
                                    "Dimensions": {"EventType": {"Values": ["PurchaseCompleted"]}}
                                }
                            }
                        ]
                    },
                    "TrueActivity": "yes",
                    "FalseActivity": "no",
                }
            },
            "yes": email("Thanks"),
            "no": email("Reminder"),
        },
        "a1",
    )
    conversion = convert_journey(document)
    program = Program.model_validate(conversion.program)
    assert [s.id for s in program.steps] == ["a1", "no"]
    notes = " ".join(notes_about(conversion, "s1"))
    assert "PurchaseCompleted" in notes and "every lead takes the no path" in notes
    assert any("left out" in n for n in notes_about(conversion, "yes"))
    folder = config_folder(tmp_path, conversion)
    assert main(["config", "validate", "--dir", str(folder)]) == 0


def test_an_any_split_is_a_case_per_condition_and_an_all_split_one_condition() -> None:
    click = {
        "EventCondition": {"Dimensions": {"EventType": {"Values": ["_email.click"]}}, "MessageActivity": "a1"}
    }
    member = {"SegmentCondition": {"SegmentId": "vip"}}
    for operator, expected in (
        ("ANY", [{"clicked_email_of_program": True}, {"in_segment": "vip"}]),
        ("ALL", [{"clicked_email_of_program": True, "in_segment": "vip"}]),
    ):
        document = small_journey(
            {
                "a1": email("Intro", "s1"),
                "s1": {
                    "ConditionalSplit": {
                        "Condition": {"Conditions": [click, member], "Operator": operator},
                        "EvaluationWaitTime": {"WaitFor": "P3D"},
                        "TrueActivity": "yes",
                    }
                },
                "yes": email("Thanks"),
            },
            "a1",
        )
        program = Program.model_validate(convert_journey(document).program)
        assert program.step("s1-wait").wait == "3d"
        split = program.step("s1")
        assert [c.when.model_dump(exclude_unset=True) for c in split.branch or []] == expected
        assert all(c.then == "yes" for c in split.branch or [])
        assert program.step(split.targets(program.following("s1"))[-1] or "").exit is True  # no path: the end


@pytest.mark.parametrize(
    ("limits", "reentry", "noted"),
    [
        ({"EndpointReentryCap": 1}, "never", False),
        ({}, "never", False),
        ({"EndpointReentryCap": 0}, "always", False),
        ({"EndpointReentryCap": 3}, "always", True),
        ({"EndpointReentryInterval": "PT12H"}, {"after_days": 1}, True),
    ],
)
def test_reentry_limits(limits: dict[str, Any], reentry: Any, noted: bool) -> None:
    document = small_journey({"a1": email("Intro")}, "a1")
    document["Limits"] = limits
    conversion = convert_journey(document)
    assert conversion.program["reentry"] == reentry
    assert any("EndpointReentry" in n for n in conversion.unmapped) is noted


def test_an_event_start_condition_is_an_event_trigger() -> None:
    document = small_journey({"a1": email("Intro")}, "a1")
    document["StartCondition"] = {
        "EventStartCondition": {
            "EventFilter": {
                "FilterType": "ENDPOINT",
                "Dimensions": {"EventType": {"Values": ["Trial Started"]}},
            },
            "SegmentId": "all-emailable",
        }
    }
    conversion = convert_journey(document)
    assert conversion.program["trigger"] == {"event": "Trial Started"}
    assert conversion.program["entry_filter"] == {"in_segment": "all-emailable"}
    Program.model_validate(conversion.program)


def test_no_start_condition_starts_for_new_leads() -> None:
    conversion = convert_journey(small_journey({"a1": email("Intro")}, "a1"))
    assert conversion.program["trigger"] == {"new_lead": True}
    assert conversion.program["steps"] == [{"id": "a1", "send_email": "intro"}]


def test_other_channels_are_skipped_and_listed() -> None:
    document = small_journey(
        {"a1": email("Intro", "sms"), "sms": {"SMS": {"NextActivity": "a2"}}, "a2": email("Follow up")}, "a1"
    )
    conversion = convert_journey(document)
    assert [s["id"] for s in conversion.program["steps"]] == ["a1", "a2"]
    assert any("kindling sends email only" in n for n in notes_about(conversion, "sms"))


@pytest.mark.parametrize(
    "document",
    [{}, {"JourneyResponse": {"Name": "x"}}, small_journey({"a1": email("Intro")}, "missing"), []],
)
def test_what_is_not_a_journey_is_refused_clearly(document: Any) -> None:
    with pytest.raises(JourneyConversionError):
        convert_journey(document)


def test_converting_leaves_the_document_alone() -> None:
    document = journey_document()
    before = copy.deepcopy(document)
    convert_journey(document)
    assert document == before


def test_the_cli_writes_the_conversion_and_lists_what_to_review(tmp_path: Path, capsys: Any) -> None:
    from kindling_ops.cli import main as cli

    journey = (
        Path(__file__).resolve().parents[1] / "fixtures" / "imports" / "pinpoint-journey" / "journey.json"
    )
    assert cli(["import", "pinpoint-journey", str(journey), "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "not mapped exactly" in said and "email settings" in said
    assert list((tmp_path / "out" / "programs").glob("*.yaml"))
    assert cli(["import", "pinpoint-journey", str(journey), "--out", str(tmp_path / "out")]) == 2, (
        "never overwrites"
    )
