"""The operator console's page: one inline script and one inline style, allowed by hash, and nothing
from other hosts; data from the API is only ever put in as text."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

from kindling.console import page as console_page
from kindling.metrics import report_page


def sha256(block: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"


def blocks(body: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", body, re.DOTALL)


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def script(body: str) -> str:
    [code] = blocks(body, "script")
    return code


def test_the_policy_allows_exactly_the_pages_own_script_and_style_by_hash() -> None:
    served = console_page.served()
    [code], [style] = blocks(served.body, "script"), blocks(served.body, "style")
    policy = directives(served.content_security_policy)
    assert policy["script-src"] == [sha256(code)]
    assert policy["style-src"] == [sha256(style)]
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["form-action"] == ["'none'"]
    assert "unsafe" not in served.content_security_policy
    assert served.content_security_policy == report_page.policy(served.body), "the reports page's policy"


def test_it_is_served_like_the_reports_page_and_read_once() -> None:
    served = console_page.served()
    assert console_page.CONTENT_TYPE == report_page.CONTENT_TYPE == "text/html; charset=utf-8"
    assert console_page.CACHE_CONTROL == report_page.CACHE_CONTROL == "no-cache"
    assert console_page.served() is served
    digest = hashlib.sha256(served.body.encode()).hexdigest()[:32]
    assert served.etag == f'W/"{digest}"'


class Markup(HTMLParser):
    """The page's own elements (the script's text is not markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.labels_open = 0
        self.unlabelled: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "label":
            self.labels_open += 1
        if tag in ("input", "select", "textarea") and not self.labels_open:
            self.unlabelled.append(str(found.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.labels_open -= 1


def test_nothing_comes_from_another_host() -> None:
    body = console_page.served().body
    assert "http" not in body.lower(), "no URL of another site, not even in text"
    assert not re.search(r"//[a-z0-9-]+\.[a-z]", body, re.IGNORECASE), "no protocol-relative URL"
    assert "@import" not in body and "url(" not in body, "the style loads nothing"
    markup = Markup()
    markup.feed(body)
    for tag, attrs in markup.tags:
        assert tag not in ("img", "iframe", "object", "embed", "base"), f"no <{tag}> in the shell"
        assert not any(name.startswith("on") for name in attrs), f"<{tag}> has an inline handler"
        assert "style" not in attrs, f"<{tag}> has an inline style"
        if tag == "script":
            assert "src" not in attrs
        if tag == "link":
            assert attrs == {"rel": "icon", "href": "data:,"}, "only the empty icon, so none is fetched"
        href = attrs.get("href")
        if tag == "a":
            assert href and (href.startswith("#/") or href == "/v1/reports"), href
    names = [tag for tag, _ in markup.tags]
    assert names.count("script") == 1 and names.count("style") == 1
    # Links the script makes are hash routes of the console itself.
    assert all(target.startswith("#/") for target in re.findall(r'link\(\s*"([^"]*)"', script(body)))


def test_data_from_the_api_goes_in_as_text_never_as_markup() -> None:
    code = script(console_page.served().body)
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment")
    for sink in sinks:
        assert sink not in code, sink
    for dynamic in ("eval(", "new Function", 'setTimeout("', "javascript:"):
        assert dynamic not in code, dynamic
    assert 'setAttribute("style"' not in code and "cssText" not in code
    assert "textContent" in code and "createTextNode" in code
    # The only HTML put anywhere is a template's preview, in a frame sandboxed of everything.
    assert code.count(".srcdoc =") == 1, "only the preview's fallback, when no preview link came"
    frame = re.search(r'el\("iframe", \{\s*sandbox: "", csp: "([^"]*)"', code)
    assert frame, "the preview frame is sandboxed"
    assert directives(frame.group(1)) == {
        "default-src": ["'none'"],
        "style-src": ["'unsafe-inline'"],
        "img-src": ["data:"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
    }, "the email's inline styles, its inline images, nothing else"
    assert "allow-" not in code


def test_the_shell_is_labelled_responsive_and_shows_focus() -> None:
    body = console_page.served().body
    markup = Markup()
    markup.feed(body)
    assert markup.unlabelled == [], "every control of the shell sits in its label"
    assert ":focus-visible" in body
    assert '<html lang="en">' in body and 'name="viewport"' in body
    assert re.search(r"@media \(max-width: \d+px\)", body), "a narrow layout for phones"


def test_the_page_reads_only_the_admin_api_routes_it_is_built_on() -> None:
    code = script(console_page.served().body)
    paths = set(re.findall(r'"(/v1/[a-z/]*)', code))
    assert paths == {
        "/v1/console/leads",
        "/v1/leads",
        "/v1/leads/",
        "/v1/programs",
        "/v1/programs/",
        "/v1/templates",
        "/v1/templates/",
    }
    assert {'"/timeline"', '"/score"', '"/enrollments"', '"/emails"', '"/preview"', '"/test"'} <= set(
        re.findall(r'"/[a-z]+"', code)
    )
    for kind in ("unsubscribe", "resubscribe", "suppress", "erase"):
        assert f"{kind}: {{ label:" in code, f"the {kind} action"
    assert "sessionStorage.getItem(KEY)" in code and '"Bearer "' in code
    assert 'var KEY = "kindling_admin_token";' in code, "the reports page's key: one sign-in serves both"
