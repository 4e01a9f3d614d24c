"""Email settings and templates: what validates, and problems that name the file, the part and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kindling.email.config import (
    EmailSettings,
    EmailTemplate,
    EmailTemplates,
    TemplateProblem,
    zone,
)
from kindling.email.render import template_problems
from kindling_ops.config import FILES, ConfigError, documents, load
from kindling_ops.email_templates import load_templates

SHIPPED = Path(__file__).resolve().parents[2] / "config"
TEMPLATE_PARTS = {"subject": "Hi", "html": "<p>Hello</p>", "text": "Hello"}


def settings_document() -> dict[str, Any]:
    return yaml.safe_load((SHIPPED / "email.yaml").read_text())


def config_dir(tmp_path: Path, email: dict[str, Any] | None = None) -> Path:
    shutil.copy(SHIPPED / "scoring.yaml", tmp_path / "scoring.yaml")
    (tmp_path / "email.yaml").write_text(yaml.safe_dump(email if email is not None else settings_document()))
    return tmp_path


def settings_problems(tmp_path: Path, **changes: Any) -> str:
    document = settings_document()
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    with pytest.raises(ConfigError) as error:
        load(config_dir(tmp_path, document))
    return "\n".join(error.value.problems)


def write_template(folder: Path, name: str, **parts: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TEMPLATE_PARTS, **parts}, sort_keys=False))
    return path


def template_load_problems(folder: Path) -> str:
    with pytest.raises(ValueError) as error:
        load_templates(folder)
    assert isinstance(error.value, TemplateProblem)
    return "\n".join(error.value.problems)


# --- the shipped config -----------------------------------------------------------------


def test_the_shipped_email_settings_and_templates_validate() -> None:
    loaded = load(SHIPPED)
    settings = loaded["email.yaml"]
    assert isinstance(settings, EmailSettings)
    assert settings.from_address == "marketing@acme.example"
    assert (settings.frequency_cap.max_emails, settings.frequency_cap.per_days) == (3, 7)
    assert settings.send_window.days == ["mon", "tue", "wed", "thu", "fri"]
    assert (settings.send_window.start, settings.send_window.end) == ("08:00", "18:00")
    assert settings.send_window.default_timezone == "America/New_York"
    templates = loaded["templates"]
    assert isinstance(templates, EmailTemplates)
    assert templates.names() == [
        "nurture-case-study",
        "nurture-roi-guide",
        "nurture-technical-guide",
        "nurture-webinar-invite",
        "sales-intro",
        "welcome-1",
        "welcome-2",
    ]
    assert all(templates[name].kind == "marketing" for name in templates.names())


def test_the_shipped_templates_link_where_they_say() -> None:
    templates = load_templates(SHIPPED / "templates")
    case_study = templates["nurture-case-study"].html
    assert "https://acme.example/customers/" in case_study and "https://acme.example/pricing" in case_study
    assert "owner_name | default(" in templates["sales-intro"].subject


def test_stored_documents_are_json_and_validate_back_into_the_same_models() -> None:
    loaded = load(SHIPPED)
    stored = json.loads(json.dumps(documents(loaded)))
    assert set(stored) == {"scoring.yaml", "email.yaml", "templates", "segments.yaml", "programs", "crm.yaml"}
    assert sorted(stored["templates"]["templates"]) == [
        "nurture-case-study",
        "nurture-roi-guide",
        "nurture-technical-guide",
        "nurture-webinar-invite",
        "sales-intro",
        "welcome-1",
        "welcome-2",
    ]
    for name, document in stored.items():
        assert FILES[name].model_validate(document) == loaded[name]


def test_email_settings_and_templates_may_be_left_out_of_a_config_directory(tmp_path: Path) -> None:
    shutil.copy(SHIPPED / "scoring.yaml", tmp_path / "scoring.yaml")
    assert set(load(tmp_path)) == {"scoring.yaml"}


def test_the_sender_header_quotes_the_name_when_it_needs_to() -> None:
    settings = EmailSettings.model_validate({**settings_document(), "from_name": "Acme, Inc."})
    assert settings.from_header == '"Acme, Inc." <marketing@acme.example>'


# --- email.yaml problems ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"from_address": "marketing-at-acme"},
            "from_address: from_address 'marketing-at-acme' is not a valid",
        ),
        ({"reply_to": "nobody@"}, "reply_to: reply_to 'nobody@' is not a valid email address"),
        ({"postal_address": "PO Box 1"}, "postal_address: postal_address is too short"),
        ({"from_name": "Acme\nBcc: everyone@example.com"}, "from_name must be one line"),
        (
            {"frequency_cap__max_emails": 0},
            "frequency_cap.max_emails: Input should be greater than or equal to 1",
        ),
        (
            {"frequency_cap__per_days": 0},
            "frequency_cap.per_days: Input should be greater than or equal to 1",
        ),
        ({"send_window__days": []}, "send_window.days: List should have at least 1 item"),
        ({"send_window__days": ["mon", "tue", "mon"]}, "send_window.days: mon listed more than once"),
        ({"send_window__days": ["monday"]}, "send_window.days.0: Input should be 'mon'"),
        ({"send_window__start": "8:00"}, "send_window.start: String should match pattern"),
        ({"send_window__end": "24:00"}, "send_window.end: String should match pattern"),
        ({"send_window__start": "18:00"}, "start 18:00 is not before end 18:00"),
        ({"send_window__default_timezone": "Eastern"}, "'Eastern' is not an IANA time zone name"),
        ({"send_window__default_timezone": "../../etc/passwd"}, "is not an IANA time zone name"),
        ({"frequency_cap__per_week": 3}, "frequency_cap.per_week: unknown key"),
    ],
)
def test_a_bad_email_setting_is_named_with_the_file_and_the_fix(
    tmp_path: Path, changes: dict[str, Any], says: str
) -> None:
    said = settings_problems(tmp_path, **changes)
    assert f"{tmp_path / 'email.yaml'}: " in said
    assert says in said


def test_an_email_setting_that_is_missing_is_named(tmp_path: Path) -> None:
    document = settings_document()
    del document["postal_address"]
    with pytest.raises(ConfigError) as error:
        load(config_dir(tmp_path, document))
    assert f"{tmp_path / 'email.yaml'}: postal_address: Field required" in error.value.problems


def test_time_zone_names_are_checked_without_touching_the_file_system_outside_the_database() -> None:
    assert zone("Europe/Berlin") is not None and zone(" UTC ") is not None
    for name in ("", "localtime", "/etc/localtime", "../x", "Mars/Olympus", None, 5, "America/New York"):
        assert zone(name) is None, name


# --- templates --------------------------------------------------------------------------


def test_a_trait_without_a_default_is_a_problem_naming_the_file_the_part_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    path = write_template(folder, "welcome-1", html="<p>Hello from {{ company }}</p>")
    said = template_load_problems(folder)
    hint = "give it a default, e.g. {{ company | default('your team') }}"
    assert f"{path}: html: 'company' is undefined — {hint}" in said
    assert "templates/welcome-1.yaml: html:" in said


def test_every_part_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "a", subject="Hi {{ first_name }}", text="Bye {{ last_name }}")
    write_template(folder, "b", html="<p>{{ title }}</p>")
    said = template_load_problems(folder)
    assert "a.yaml: subject: 'first_name' is undefined" in said
    assert "default('there')" in said
    assert "a.yaml: text: 'last_name' is undefined" in said
    assert "b.yaml: html: 'title' is undefined" in said


def test_a_template_that_only_fails_with_a_full_lead_is_caught_too(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "sums", text="{{ employees | default('a few') + ' staff' }}")
    said = template_load_problems(folder)
    assert "sums.yaml: text: TypeError" in said


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self.__init__.__globals__ }}",
        "{{ [].append(1) }}",
    ],
)
def test_a_sandbox_escape_is_reported_as_a_template_problem(tmp_path: Path, escape: str) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "escape", html=f"<p>{escape}</p>")
    said = template_load_problems(folder)
    assert "escape.yaml: html: not allowed in an email template: access to attribute" in said
    assert "is unsafe" in said


@pytest.mark.parametrize(
    "href",
    ["javascript:alert(1)", "JaVa\nScript:alert(1)", "data:text/html,hi", "/relative/page", "//acme.example"],
)
def test_a_link_that_is_not_http_or_mailto_is_refused(tmp_path: Path, href: str) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "links", html=f'<p><a href="{href}">here</a></p>')
    assert "links.yaml: html: the link" in template_load_problems(folder)


def test_http_https_and_mailto_links_are_accepted_also_from_traits_with_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write_template(
        folder,
        "links",
        html=(
            '<a href="https://acme.example">a</a> <a href="http://acme.example/x">b</a> '
            '<a href="mailto:hello@acme.example">c</a> '
            "<a href=\"{{ website | default('https://acme.example') }}\">d</a> "
            '<a href="{{ unsubscribe_url }}">e</a> <a href="{{ preferences_url }}">f</a> <a name="top">g</a>'
        ),
    )
    assert set(load_templates(folder)) == {"links"}


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ({"html": "<p>{% if first_name %}hi</p>"}, "html: line 1: Unexpected end of template"),
        ({"subject": "{{ first_name | default('') }}"}, "subject: renders empty for a lead without traits"),
        ({"text": "{% include 'footer.txt' %}"}, "text: TypeError: no loader for this environment specified"),
        ({"kind": "newsletter"}, "kind: Input should be 'marketing' or 'transactional'"),
        ({"subjcet": "Hi"}, "subjcet: unknown key (check its spelling and indentation)"),
        ({"html": ""}, "html: String should have at least 1 character"),
    ],
)
def test_template_problems_say_what_is_wrong_and_where(
    tmp_path: Path, parts: dict[str, Any], says: str
) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "broken", **parts)
    said = template_load_problems(folder)
    assert f"{folder / 'broken.yaml'}: {says}" in said


def test_file_names_must_be_template_names_and_files_must_be_yaml_mappings(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write_template(folder, "Welcome One")
    write_template(folder, "good")
    (folder / "old.yml").write_text(yaml.safe_dump(TEMPLATE_PARTS))
    (folder / "list.yaml").write_text("- subject\n- html\n")
    (folder / "bad.yaml").write_text("subject: [unclosed\n")
    (folder / "README.md").write_text("Templates live here.")
    said = template_load_problems(folder)
    assert "Welcome One.yaml: the file name is the template's name" in said
    assert "old.yml: name it old.yaml" in said
    assert "list.yaml: expected a mapping" in said
    assert "bad.yaml: not valid YAML" in said
    assert "README" not in said and "good.yaml" not in said


def test_template_problems_reach_config_validate_and_name_the_file(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    shutil.copytree(SHIPPED / "templates", directory / "templates")
    path = directory / "templates" / "welcome-1.yaml"
    path.write_text(path.read_text().replace('{{ company | default("yours") }}', "{{ company }}"))
    with pytest.raises(ConfigError) as error:
        load(directory)
    assert any(p.startswith(f"{path}: html: 'company' is undefined") for p in error.value.problems)
    assert any(p.startswith(f"{path}: text: 'company' is undefined") for p in error.value.problems)


def test_a_templates_file_where_a_folder_belongs_is_a_problem(tmp_path: Path) -> None:
    directory = config_dir(tmp_path)
    (directory / "templates").write_text("welcome: {}")
    with pytest.raises(ConfigError, match="templates: expected a folder"):
        load(directory)


def test_a_stored_templates_document_is_validated_by_rendering_too() -> None:
    good = EmailTemplate.model_validate(TEMPLATE_PARTS)
    assert EmailTemplates.model_validate({"templates": {"welcome": good.model_dump()}})["welcome"] == good
    with pytest.raises(ValidationError, match="template 'welcome': html: 'company' is undefined"):
        EmailTemplates.model_validate({"templates": {"welcome": {**TEMPLATE_PARTS, "html": "{{ company }}"}}})
    with pytest.raises(ValidationError, match="String should match pattern"):
        EmailTemplates.model_validate({"templates": {"Welcome!": TEMPLATE_PARTS}})


def test_a_usable_template_has_no_problems() -> None:
    template = EmailTemplate(
        subject="Hi {{ first_name | default('there') }}",
        html="<p>{{ company | default('your team') }}</p><a href='{{ unsubscribe_url }}'>bye</a>",
        text="{{ email }}",
        kind="transactional",
    )
    assert template_problems(template) == []
