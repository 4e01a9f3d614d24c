"""Programs and segments: the shipped ones validate, and each mistake names the file, program and step."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kindling.email.config import EmailTemplates
from kindling.programs.config import Program, Programs, Segments, check_references, parse_duration
from kindling_ops.cli import main
from kindling_ops.config import FILES, ConfigError, documents, load

SHIPPED = Path(__file__).resolve().parents[2] / "config"
SHIPPED_PROGRAMS = [
    "customer-onboarding",
    "mql-to-sales-bridge",
    "nurture-marketing-leaders",
    "nurture-technical-buyers",
    "reactivation",
    "recycle-nurture",
    "welcome-series",
]


def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(SHIPPED, directory)
    return directory


def program_document(program_id: str) -> dict[str, Any]:
    return yaml.safe_load((SHIPPED / "programs" / f"{program_id}.yaml").read_text())


def step(document: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in document["steps"] if s["id"] == step_id)


def problems_in(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load(directory)
    return error.value.problems


def program_problems(tmp_path: Path, program_id: str, mutate: Callable[[dict[str, Any]], None]) -> str:
    """Every problem, one a line, once the shipped program is changed by ``mutate``."""
    directory = config_dir(tmp_path)
    document = program_document(program_id)
    mutate(document)
    (directory / "programs" / f"{program_id}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return "\n".join(problems_in(directory))


def where(tmp_path: Path, program_id: str) -> str:
    return f"{tmp_path / 'config' / 'programs' / program_id}.yaml: program '{program_id}'"


# --- the shipped config -----------------------------------------------------------------


def test_the_shipped_programs_and_segments_validate() -> None:
    loaded = load(SHIPPED)
    programs, segments, templates = loaded["programs"], loaded["segments.yaml"], loaded["templates"]
    assert isinstance(programs, Programs) and isinstance(segments, Segments)
    assert isinstance(templates, EmailTemplates)
    assert sorted(programs.programs) == SHIPPED_PROGRAMS
    assert all(key == program.id for key, program in programs.programs.items())
    assert [s.id for s in segments.segments] == ["hot-accounts", "enterprise", "saas-industry"]
    names = set(templates.templates)
    assert {"welcome-2", "nurture-roi-guide", "nurture-webinar-invite", "nurture-technical-guide"} <= names
    assert check_references(programs, names, {s.id for s in segments.segments}) == []


def test_the_shipped_programs_do_what_they_say() -> None:
    programs = load(SHIPPED)["programs"]
    assert isinstance(programs, Programs)
    welcome = programs.programs["welcome-series"]
    assert welcome.trigger.new_lead is True
    assert [s.kind for s in welcome.steps][:3] == ["send_email", "wait", "branch"]
    assert [g.stage_at_least for g in welcome.exit_goals] == ["sql"]
    bridge = programs.programs["mql-to-sales-bridge"]
    assert bridge.trigger.stage == "mql"
    assert bridge.steps[0].notify_sales == "New MQL: please reach out within 24h"
    wait = bridge.step("wait-for-sql").wait_until
    assert wait is not None and wait.condition is not None and wait.condition.stage_at_least == "sql"
    stalled = bridge.step(wait.on_timeout or "").update
    assert stalled is not None and stalled.add_tags == ["stalled-mql"]
    for track in ("nurture-marketing-leaders", "nurture-technical-buyers"):
        demo = programs.programs[track].step("wait-for-demo").wait_until
        assert demo is not None and demo.event == "Demo Requested" and parse_duration(demo.timeout).days == 7
        assert programs.programs[track].step(demo.on_event or "").notify_sales


def test_stored_program_and_segment_documents_validate_back_into_the_same_models() -> None:
    loaded = load(SHIPPED)
    stored = json.loads(json.dumps(documents(loaded)))
    for name in ("programs", "segments.yaml"):
        assert FILES[name].model_validate(stored[name]) == loaded[name]
    assert stored["programs"]["programs"]["welcome-series"]["steps"][2]["else"] == "send-nudge"


def test_programs_and_segments_may_be_left_out_of_a_config_directory(tmp_path: Path) -> None:
    shutil.copy(SHIPPED / "scoring.yaml", tmp_path / "scoring.yaml")
    assert set(load(tmp_path)) == {"scoring.yaml"}


def test_config_validate_prints_a_line_for_programs_and_segments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "validate", "--dir", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert f"programs: valid ({len(SHIPPED_PROGRAMS)} programs: {', '.join(SHIPPED_PROGRAMS)})" in out
    assert "segments.yaml: valid (3 segments: hot-accounts, enterprise, saas-industry)" in out


# --- mistakes in a program --------------------------------------------------------------


def test_a_duration_that_does_not_parse_names_file_program_and_step(tmp_path: Path) -> None:
    said = program_problems(tmp_path, "welcome-series", lambda d: step(d, "wait-2d").update(wait="2 dayz"))
    assert (
        f"{where(tmp_path, 'welcome-series')}: step 'wait-2d': '2 dayz' is not a duration: "
        "write e.g. 30m, 6h, 2d or 3w"
    ) in said.splitlines()


def test_a_wait_until_timeout_that_does_not_parse_is_named(tmp_path: Path) -> None:
    said = program_problems(
        tmp_path, "mql-to-sales-bridge", lambda d: step(d, "wait-for-sql")["wait_until"].update(timeout="0d")
    )
    assert "program 'mql-to-sales-bridge': step 'wait-for-sql'.wait_until: '0d'" in said
    assert "must be positive" in said


def test_a_step_pointing_nowhere(tmp_path: Path) -> None:
    said = program_problems(
        tmp_path, "welcome-series", lambda d: step(d, "clicked-welcome").update({"else": "send-nuge"})
    )
    assert (
        f"{where(tmp_path, 'welcome-series')}: step 'clicked-welcome': points to 'send-nuge', "
        "which is not a step of this program"
    ) in said.splitlines()


def test_an_unreachable_step(tmp_path: Path) -> None:
    said = program_problems(
        tmp_path, "mql-to-sales-bridge", lambda d: step(d, "wait-for-sql")["wait_until"].pop("on_timeout")
    )
    lines = said.splitlines()
    assert (
        f"{where(tmp_path, 'mql-to-sales-bridge')}: step 'tag-stalled': unreachable, no step leads to it"
        in lines
    )
    assert (
        f"{where(tmp_path, 'mql-to-sales-bridge')}: step 'notify-stalled': unreachable, no step leads to it"
        in lines
    )


def test_a_loop_with_no_wait(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        step(d, "send-nudge")["next"] = "clicked-welcome"  # the branch and the send point at each other

    said = program_problems(tmp_path, "welcome-series", mutate)
    assert (
        f"{where(tmp_path, 'welcome-series')}: step 'clicked-welcome': loop with no wait in it "
        "(clicked-welcome -> send-nudge -> clicked-welcome)"
    ) in said.splitlines()


def test_a_loop_through_a_wait_is_fine() -> None:
    document = program_document("welcome-series")
    step(document, "wait-3d")["next"] = "clicked-welcome"
    step(document, "done")["id"] = "unused"  # would be unreachable: drop it
    document["steps"] = [s for s in document["steps"] if s["id"] != "unused"]
    assert Program.model_validate(document).step("wait-3d").next == "clicked-welcome"


def test_a_loop_through_a_wait_until_condition_that_may_already_hold(tmp_path: Path) -> None:
    """A wait_until on a condition that holds goes on at once, so it does not break a loop."""

    def mutate(d: dict[str, Any]) -> None:
        step(d, "wait-for-sql")["wait_until"]["on_event"] = "send-intro"

    said = program_problems(tmp_path, "mql-to-sales-bridge", mutate)
    assert "step 'send-intro': loop with no wait in it (send-intro -> wait-for-sql -> send-intro)" in said
    # the same loop through the timeout edge does wait
    document = program_document("mql-to-sales-bridge")
    step(document, "notify-stalled")["next"] = "wait-for-sql"
    assert Program.model_validate(document).id == "mql-to-sales-bridge"


def test_a_template_that_does_not_exist(tmp_path: Path) -> None:
    said = program_problems(
        tmp_path, "welcome-series", lambda d: step(d, "send-welcome").update(send_email="welcome-one")
    )
    assert f"{where(tmp_path, 'welcome-series')}: step 'send-welcome': no template 'welcome-one'" in said


def test_a_segment_that_does_not_exist(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        step(d, "engaged")["branch"][0]["if"] = {"in_segment": "hot-acounts"}
        d["entry_filter"] = {"not_in_segment": "enterprize"}
        d["exit_goals"].append({"in_segment": "customers"})

    lines = program_problems(tmp_path, "nurture-technical-buyers", mutate).splitlines()
    at = where(tmp_path, "nurture-technical-buyers")
    assert f"{at}: step 'engaged': no segment 'hot-acounts'" in lines
    assert f"{at}: entry filter: no segment 'enterprize'" in lines
    assert f"{at}: exit goal: no segment 'customers'" in lines


def test_a_segment_named_by_a_trigger_or_a_wait_until_must_exist(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["trigger"] = {"segment": "warm-accounts"}
        step(d, "wait-for-sql")["wait_until"]["condition"] = {"in_segment": "sales-ready"}

    lines = program_problems(tmp_path, "mql-to-sales-bridge", mutate).splitlines()
    assert f"{where(tmp_path, 'mql-to-sales-bridge')}: trigger: no segment 'warm-accounts'" in lines
    assert f"{where(tmp_path, 'mql-to-sales-bridge')}: step 'wait-for-sql': no segment 'sales-ready'" in lines


def test_programs_need_the_templates_they_send_in_the_same_config_directory(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    shutil.rmtree(directory / "templates")
    said = "\n".join(problems_in(directory))
    assert "program 'welcome-series': step 'send-welcome': no template 'welcome-1'" in said


def test_broken_templates_are_reported_without_a_flood_of_missing_template_problems(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    (directory / "templates" / "welcome-1.yaml").write_text("subject: [unclosed\n")
    said = problems_in(directory)
    assert len(said) == 1 and "welcome-1.yaml: not valid YAML" in said[0]


def test_a_step_doing_two_things(tmp_path: Path) -> None:
    said = program_problems(tmp_path, "welcome-series", lambda d: step(d, "send-welcome").update(wait="1d"))
    assert (
        f"{where(tmp_path, 'welcome-series')}: step 'send-welcome': a step does exactly one thing, "
        "not ['send_email', 'wait']"
    ) in said.splitlines()


def test_duplicate_step_ids(tmp_path: Path) -> None:
    said = program_problems(tmp_path, "welcome-series", lambda d: step(d, "done").update(id="wait-3d"))
    assert f"{where(tmp_path, 'welcome-series')}: step 'wait-3d': two steps have this id" in said


def test_a_file_whose_name_differs_from_the_id(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    (directory / "programs" / "welcome-series.yaml").rename(directory / "programs" / "welcome.yaml")
    said = problems_in(directory)
    assert said == [
        f"{directory / 'programs' / 'welcome.yaml'}: program 'welcome-series': the file name must be "
        "the program's id: name the file welcome-series.yaml or give the program the id 'welcome'"
    ]


def test_an_unknown_key_in_a_step_or_a_program(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        step(d, "send-welcome")["templte"] = "welcome-1"
        d["exit_goal"] = [{"stage_at_least": "sql"}]

    lines = program_problems(tmp_path, "welcome-series", mutate).splitlines()
    at = where(tmp_path, "welcome-series")
    assert f"{at}: step 'send-welcome'.templte: unknown key (check its spelling and indentation)" in lines
    assert f"{at}: exit_goal: unknown key (check its spelling and indentation)" in lines


def test_a_problem_in_a_branch_case_names_the_case(tmp_path: Path) -> None:
    said = program_problems(
        tmp_path,
        "nurture-marketing-leaders",
        lambda d: step(d, "engaged")["branch"][0]["if"].update(grade_at_least="E"),
    )
    assert "program 'nurture-marketing-leaders': step 'engaged'.branch case #1.if.grade_at_least" in said


def test_an_exit_goal_off_the_funnel_is_refused(tmp_path: Path) -> None:
    """``stage_at_least: closed_lost`` would hold for every lead, so every lead would exit at once."""
    said = program_problems(
        tmp_path, "welcome-series", lambda d: d["exit_goals"].append({"stage_at_least": "closed_lost"})
    )
    assert "program 'welcome-series': exit_goals.1: stage_at_least takes a funnel stage" in said


def test_every_broken_program_is_reported_and_the_good_ones_still_checked(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    programs = directory / "programs"
    broken = program_document("welcome-series")
    step(broken, "wait-2d")["wait"] = "soon"
    (programs / "welcome-series.yaml").write_text(yaml.safe_dump(broken))
    typo = program_document("mql-to-sales-bridge")
    step(typo, "send-intro")["send_email"] = "sales-intr"
    (programs / "mql-to-sales-bridge.yaml").write_text(yaml.safe_dump(typo))
    (programs / "old.yml").write_text("id: old\n")
    (programs / "README.md").write_text("One program per file.")
    (programs / "list.yaml").write_text("- id: list\n")
    said = "\n".join(problems_in(directory))
    assert "welcome-series.yaml: program 'welcome-series': step 'wait-2d': 'soon' is not a duration" in said
    assert "mql-to-sales-bridge.yaml: program 'mql-to-sales-bridge': step 'send-intro': no template" in said
    assert "old.yml: name it old.yaml" in said
    assert "list.yaml: expected a mapping at the top" in said
    assert "README" not in said


def test_a_programs_file_where_a_folder_belongs(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    shutil.rmtree(directory / "programs")
    (directory / "programs").write_text("welcome: {}")
    assert problems_in(directory) == [f"{directory / 'programs'}: expected a folder"]


# --- mistakes in segments.yaml ----------------------------------------------------------


def test_segment_problems_name_the_segment(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    document = yaml.safe_load((SHIPPED / "segments.yaml").read_text())
    document["segments"][1]["when"]["trait"]["company_size"] = {"gte": 5000, "lte": 1000}
    document["segments"][2]["whenn"] = {}
    (directory / "segments.yaml").write_text(yaml.safe_dump(document))
    said = "\n".join(problems_in(directory))
    assert "segments.yaml: segment 'enterprise'.when.trait.company_size: gte 5000.0 is above lte" in said
    assert "segments.yaml: segment 'saas-industry'.whenn: unknown key" in said


def test_duplicate_segment_ids_and_empty_conditions_are_refused() -> None:
    with pytest.raises(ValidationError, match="two segments have the id 'hot'"):
        Segments.model_validate(
            {"segments": [{"id": "hot", "name": "Hot", "when": {"engagement_at_least": 30}}] * 2}
        )
    with pytest.raises(ValidationError, match="a condition needs at least one test"):
        Segments.model_validate({"segments": [{"id": "all", "name": "All", "when": {}}]})


def test_every_shipped_program_that_sells_stops_at_the_sale_and_validate_says_so(
    tmp_path: Path, capsys
) -> None:
    assert main(["config", "validate", "--dir", str(SHIPPED)]) == 0
    assert "warning" not in capsys.readouterr().out
    directory = config_dir(tmp_path)
    reactivation = program_document("reactivation")
    reactivation["exit_goals"] = [g for g in reactivation["exit_goals"] if "stage_in" not in g]
    (directory / "programs" / "reactivation.yaml").write_text(yaml.safe_dump(reactivation))
    assert main(["config", "validate", "--dir", str(directory)]) == 0  # a warning, not a problem
    [warning] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning")]
    assert "reactivation.yaml: sends email but does not exit when the lead becomes a customer" in warning


def test_a_program_exits_when_its_lead_enters_a_stage_it_names() -> None:
    from kindling.programs.engine import LeadContext, goal_met

    program = Program.model_validate(
        {**program_document("reactivation"), "exit_goals": [{"stage_in": ["customer", "closed_lost"]}]}
    )

    def lead(stage: str) -> LeadContext:
        return LeadContext(lead_id="ld_1", email="a@b.io", traits={}, stage=stage)

    assert goal_met(program, lead("customer"), None) == "reached stage customer"
    assert goal_met(program, lead("closed_lost"), None) == "reached stage closed_lost"
    assert goal_met(program, lead("opportunity"), None) is None
    with pytest.raises(ValidationError, match="exactly one of"):
        Program.model_validate(
            {**program_document("reactivation"), "exit_goals": [{"stage_in": ["customer"], "event": "x"}]}
        )
