"""Config errors name the file, the rule and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kindling_ops.config import ConfigError, load

SHIPPED = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, mutate) -> Path:
    document = yaml.safe_load((SHIPPED / "scoring.yaml").read_text())
    mutate(document)
    (tmp_path / "scoring.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def problems(tmp_path: Path, mutate) -> str:
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, mutate))
    return "\n".join(error.value.problems)


def test_the_shipped_config_is_valid() -> None:
    assert "scoring.yaml" in load(SHIPPED)


def rule(document: dict, rule_id: str) -> dict:
    return next(r for r in document["engagement"]["rules"] if r["id"] == rule_id)


def test_an_unknown_key_names_the_file_and_the_rule(tmp_path: Path) -> None:
    said = problems(tmp_path, lambda d: rule(d, "pricing-page").update(pointz=3))
    assert "scoring.yaml: engagement rule 'pricing-page'.pointz: unknown key" in said


def test_a_wrong_type_is_named(tmp_path: Path) -> None:
    said = problems(tmp_path, lambda d: rule(d, "demo-request").update(points="lots"))
    assert "engagement rule 'demo-request'.points" in said and "integer" in said


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"match": {"type": "page", "event": "Demo Requested"}}, "only track events have an event name"),
        ({"match": {"type": "identify", "url": "*/pricing*"}}, "carry no page URL"),
        ({"match": {"properties": {"plan": {"in": []}}}}, "'in' is empty"),
        ({"match": {"properties": {"seats": {"gte": 10, "lte": 5}}}}, "can never match"),
        ({"match": {"properties": {"plan": {"matches": "(("}}}}, "not a valid regular expression"),
        ({"points": 0}, "0 points changes nothing"),
    ],
)
def test_a_rule_that_can_never_match_is_an_error(tmp_path: Path, change: dict, says: str) -> None:
    said = problems(tmp_path, lambda d: rule(d, "demo-request").update(change))
    assert "engagement rule 'demo-request'" in said and says in said


def test_fit_rule_problems_name_the_fit_rule(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["fit"]["rules"][0]["when"] = {"contains_any": []}

    assert "fit rule 'senior-title'.when: Value error" not in (said := problems(tmp_path, mutate))
    assert "fit rule 'senior-title'.when" in said and "empty" in said


def test_duplicate_rule_ids_and_unordered_thresholds_are_refused(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["engagement"]["rules"][1]["id"] = "demo-request"
        d["fit"]["grades"] = {"A": 10, "B": 30, "C": 5}

    said = problems(tmp_path, mutate)
    assert "two engagement rules have the id 'demo-request'" in said
    assert "A > B > C" in said


def test_a_missing_file_and_bad_yaml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        load(tmp_path)
    (tmp_path / "scoring.yaml").write_text("engagement: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path)
