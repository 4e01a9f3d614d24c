"""Rendering an email for a lead: the sandbox, tracked links, signed tokens, unsubscribe, send rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from kindling.email.config import EmailSettings, EmailTemplate, FrequencyCap, SendWindow
from kindling.email.render import (
    LinkSigner,
    RenderedEmail,
    RenderFailed,
    anchor_links,
    check_api_base_url,
    frequency_cap_release,
    next_send_time,
    render,
)
from kindling.kernel.errors import InvalidInput
from kindling_ops.email_templates import load_templates

SHIPPED = Path(__file__).resolve().parents[2] / "config"
SETTINGS = EmailSettings.model_validate(yaml.safe_load((SHIPPED / "email.yaml").read_text()))
TEMPLATES = load_templates(SHIPPED / "templates")
SECRET = b"a-link-signing-secret-of-32-bytes"
SIGNER = LinkSigner(SECRET)
API = "https://api.acme.example"
LEAD = {"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines", "title": "CTO"}
WINDOW = SETTINGS.send_window  # mon-fri 08:00-18:00, America/New_York by default
NEW_YORK, BERLIN = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")


def template(html: str = "<p>Hi</p>", **parts: Any) -> EmailTemplate:
    return EmailTemplate(**{"subject": "Hello", "text": "Hello", "html": html, **parts})


def rendered(
    source: EmailTemplate | str = "welcome-1",
    traits: dict[str, Any] | None = None,
    api_base_url: str = API,
    send_id: str = "send-1",
) -> RenderedEmail:
    return render(
        TEMPLATES[source] if isinstance(source, str) else source,
        traits=LEAD if traits is None else traits,
        email="ada@analytical.example",
        lead_id="lead-1",
        links=SIGNER,
        send_id=send_id,
        settings=SETTINGS,
        api_base_url=api_base_url,
    )


def unsubscribe_url(email: RenderedEmail) -> str:
    return email.headers["List-Unsubscribe"].strip("<>")


# --- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_shipped_template_renders_for_a_lead_without_traits(name: str) -> None:
    email = rendered(name, traits={})
    assert email.subject and "{{" not in email.subject + email.html + email.text
    assert "Hi there," in email.html and "Hi there," in email.text


def test_traits_fill_the_template_and_defaults_fill_the_gaps() -> None:
    with_traits = rendered("sales-intro", traits={**LEAD, "owner_name": "Sam Carter"})
    assert with_traits.subject == "Ada, a quick introduction from Sam Carter at Acme"
    assert (
        "I'm Sam Carter at Acme" in with_traits.text
        and "companies like Analytical Engines" in with_traits.html
    )
    without_owner = rendered("sales-intro")
    assert without_owner.subject == "Ada, a quick introduction from our team at Acme"


def test_null_and_blank_traits_count_as_missing_so_the_default_applies() -> None:
    email = rendered("welcome-1", traits={"first_name": None, "company": "   "})
    assert email.subject == "Welcome to Acme, there"
    assert "Teams like yours use Acme" in " ".join(email.text.split())


def test_camel_case_traits_are_visible_in_snake_case_and_a_company_object_prints_its_name() -> None:
    email = rendered(
        "welcome-1", traits={"firstName": "Grace", "company": {"name": "Navy Labs", "id": "g-1"}}
    )
    assert email.subject == "Welcome to Acme, Grace"
    assert "Teams like Navy Labs use" in " ".join(email.text.split())
    by_field = rendered(
        template("<p>{{ company.id }} {{ company.plan | default('free') }}</p>"),
        traits={"company": {"name": "Navy Labs", "id": "g-1"}},
    )
    assert "<p>g-1 free</p>" in by_field.html


def test_html_escapes_traits_while_subject_and_text_show_them_as_written() -> None:
    email = rendered(
        template("<p>{{ company }}</p>", subject="For {{ company }}", text="For {{ company }}"),
        traits={"company": "Smith & Sons <b>"},
    )
    assert "<p>Smith &amp; Sons &lt;b&gt;</p>" in email.html
    assert email.subject == "For Smith & Sons <b>"
    assert email.text.startswith("For Smith & Sons <b>\n")


def test_a_trait_cannot_put_a_new_line_into_the_subject_header() -> None:
    email = rendered(
        template(subject="Hi {{ first_name }}"), traits={"first_name": "Ada\r\nBcc: all@example.com"}
    )
    assert email.subject == "Hi Ada Bcc: all@example.com"


def test_a_trait_cannot_replace_the_unsubscribe_link_or_the_address() -> None:
    email = rendered(
        template('<a href="{{ unsubscribe_url }}">stop</a> {{ email }}'),
        traits={"unsubscribe_url": "https://phish.example", "email": "someone@else.example"},
    )
    assert "phish.example" not in email.html and "someone@else" not in email.html
    assert "ada@analytical.example" in email.html


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
    ],
)
def test_a_sandbox_escape_fails_the_render_instead_of_reaching_python(escape: str) -> None:
    with pytest.raises(
        RenderFailed, match="html: not allowed in an email template: access to attribute"
    ) as error:
        rendered(template(f"<p>{escape}</p>"))
    assert isinstance(error.value, InvalidInput)
    cause = error.value.__cause__
    assert cause is not None and isinstance(cause.__cause__, SecurityError)


def test_a_template_that_cannot_render_for_this_lead_says_which_part() -> None:
    with pytest.raises(RenderFailed, match="text: TypeError"):
        rendered(template(text="{{ employees | default('a few') + ' staff' }}"), traits={"employees": 12})


# --- tracked links ----------------------------------------------------------------------

VARIED_LINKS = """<html><body>
<link rel="stylesheet" href="https://cdn.acme.example/mail.css">
<img src="https://cdn.acme.example/logo.png" alt="">
<a href="https://acme.example/one">one</a>
<A class='button' HREF='https://acme.example/two?x=1&amp;y=2' target=_blank>two</A>
<a
  title="a &quot;quoted&quot; title"
  href = http://acme.example/three >three</a>
<!-- <a href="https://acme.example/commented-out">no</a> -->
<a href="mailto:sales@acme.example">mail us</a>
<a name="anchor-without-href">x</a>
<a href=" https://acme.example/four ">four</a>
</body></html>"""


def test_every_http_anchor_is_tracked_in_order_and_round_trips_to_its_original_url() -> None:
    email = rendered(template(VARIED_LINKS))
    assert email.tracked_links == [
        "https://acme.example/one",
        "https://acme.example/two?x=1&y=2",
        "http://acme.example/three",
        "https://acme.example/four",
    ]
    clicks = [href for href in anchor_links(email.html) if href.startswith(f"{API}/v1/c/")]
    assert [SIGNER.read_click(href.rsplit("/", 1)[1]) for href in clicks] == [
        ("send-1", url) for url in email.tracked_links
    ]


def test_link_rewriting_changes_only_the_anchors_that_are_tracked() -> None:
    email = rendered(template(VARIED_LINKS))
    assert '<link rel="stylesheet" href="https://cdn.acme.example/mail.css">' in email.html
    assert '<img src="https://cdn.acme.example/logo.png" alt="">' in email.html
    assert '<a href="mailto:sales@acme.example">mail us</a>' in email.html
    assert '<!-- <a href="https://acme.example/commented-out">no</a> -->' in email.html
    assert '<a name="anchor-without-href">x</a>' in email.html
    assert '<a class="button" href="https://api.acme.example/v1/c/' in email.html
    assert 'target="_blank">two</A>' in email.html
    assert '<a title="a &quot;quoted&quot; title" href="https://api.acme.example/v1/c/' in email.html
    assert "acme.example/one" not in email.html.replace("v1/c/", "")


def test_the_unsubscribe_and_preferences_links_in_a_template_are_not_tracked() -> None:
    email = rendered(
        template('<a href="{{ unsubscribe_url }}">stop</a> <a href="{{ preferences_url }}">prefs</a>')
    )
    assert email.tracked_links == []
    assert anchor_links(email.html)[:2] == [
        unsubscribe_url(email),
        unsubscribe_url(email).replace("/v1/unsubscribe?", "/v1/preferences?"),
    ]


def test_a_very_long_link_goes_out_untracked_rather_than_with_an_unusable_token() -> None:
    long_url = "https://acme.example/?" + "q=1&" * 600
    email = rendered(template('<a href="{{ website }}">x</a> <a href="https://acme.example/ok">y</a>'),
                     traits={"website": long_url})  # fmt: skip
    assert email.tracked_links == ["https://acme.example/ok"]
    assert anchor_links(email.html)[0] == long_url


def test_a_dangerous_link_from_a_trait_loses_its_href_instead_of_going_out() -> None:
    email = rendered(
        template('<a href="{{ website }}" class="x">site</a>'), traits={"website": "javascript:alert(1)"}
    )
    assert "javascript" not in email.html and '<a class="x">site</a>' in email.html
    assert email.tracked_links == []


# --- tokens -----------------------------------------------------------------------------


def test_each_kind_of_token_reads_back_what_it_was_made_from() -> None:
    assert SIGNER.read_click(SIGNER.click_token("s-1", "https://acme.example/é?q=1#top")) == (
        "s-1",
        "https://acme.example/é?q=1#top",
    )
    assert SIGNER.read_open(SIGNER.open_token("s-1")) == "s-1"
    assert SIGNER.read_unsubscribe(SIGNER.unsubscribe_token("lead-9", "s-1")) == ("lead-9", "s-1")


def test_tokens_are_url_safe_short_and_differ_per_send() -> None:
    tokens = [SIGNER.open_token("send-1"), SIGNER.unsubscribe_token("lead-1", "send-1")]
    tokens.append(SIGNER.click_token("send-1", "https://acme.example/pricing"))
    for token in tokens:
        assert token.replace("-", "").replace("_", "").isalnum() and "=" not in token
    assert len(tokens[0]) < 40 and len(tokens[1]) < 48
    assert SIGNER.open_token("send-1") != SIGNER.open_token("send-2")


def test_a_token_of_another_kind_is_refused() -> None:
    # "a\nb" is both a valid unsubscribe payload and a valid click payload shape.
    unsubscribe = SIGNER.unsubscribe_token("send-1", "https://acme.example")
    with pytest.raises(InvalidInput, match="the click token is not valid"):
        SIGNER.read_click(unsubscribe)
    with pytest.raises(InvalidInput, match="the unsubscribe token is not valid"):
        SIGNER.read_unsubscribe(SIGNER.click_token("lead-1", "https://acme.example/x"))
    with pytest.raises(InvalidInput, match="the open token is not valid"):
        SIGNER.read_open(SIGNER.unsubscribe_token("lead-1", "send-1")[:-1])
    with pytest.raises(InvalidInput, match="the unsubscribe token is not valid"):
        SIGNER.read_unsubscribe(SIGNER.open_token("send-1"))


def test_a_token_signed_with_another_secret_is_refused() -> None:
    forged = LinkSigner(b"someone-elses-secret-0123456789").unsubscribe_token("lead-1", "send-1")
    with pytest.raises(InvalidInput, match="unsubscribe token is not valid"):
        SIGNER.read_unsubscribe(forged)


def test_a_forged_token_with_a_made_up_mac_is_refused() -> None:
    forged = base64.urlsafe_b64encode(b"\x00" * 16 + b"lead-1\nsend-1").decode().rstrip("=")
    with pytest.raises(InvalidInput):
        SIGNER.read_unsubscribe(forged)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw-_09aZ"))
def test_changing_any_character_of_a_token_makes_it_invalid(position: int, replacement: str) -> None:
    token = SIGNER.unsubscribe_token("lead-1", "send-1")
    index = position % len(token)
    altered = token[:index] + replacement + token[index + 1 :]
    if altered == token:
        return
    with pytest.raises(InvalidInput, match="unsubscribe token is not valid"):
        SIGNER.read_unsubscribe(altered)


def test_a_truncated_extended_or_malformed_token_is_refused() -> None:
    token = SIGNER.click_token("send-1", "https://acme.example/pricing")
    altered = [token[:5] + "+" + token[6:], token[:5] + "/" + token[6:], token + "=", token.lower()]
    for bad in [
        token[:-1],
        token[:-4],
        token[:22],
        token + "A",
        token + "AAAA",
        "",
        "not a token",
        "A" * 9000,
        *altered,
    ]:
        with pytest.raises(InvalidInput, match="the click token is not valid"):
            SIGNER.read_click(bad)
    with pytest.raises(InvalidInput):
        SIGNER.read_click(None)  # type: ignore[arg-type]


def test_a_retired_secret_still_reads_links_already_sent() -> None:
    old = LinkSigner(b"the-previous-secret-0123456789ab")
    rotated = LinkSigner(b"the-current-secret-0123456789abc", retired=[b"the-previous-secret-0123456789ab"])
    token = old.unsubscribe_token("lead-1", "send-1")
    assert rotated.read_unsubscribe(token) == ("lead-1", "send-1")
    assert rotated.unsubscribe_token("lead-1", "send-1") != token


def test_a_short_or_textual_secret_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkSigner(b"too-short")
    with pytest.raises(ValueError, match="must be bytes"):
        LinkSigner("a-string-secret-that-is-long-enough")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkSigner(SECRET, retired=[b"short"])
    assert "secret" not in repr(SIGNER).lower().replace("linksigner", "")


def test_ids_and_urls_that_could_confuse_a_token_are_refused_when_signing() -> None:
    for bad_id in ["", "two words", "line\nbreak", "x" * 201]:
        with pytest.raises(ValueError, match="send id"):
            SIGNER.open_token(bad_id)
    for bad_url in ["javascript:alert(1)", "https://acme.example/\nx", " https://acme.example", "/pricing"]:
        with pytest.raises(ValueError, match="http"):
            SIGNER.click_token("send-1", bad_url)


# --- footer, pixel, headers -------------------------------------------------------------


def test_marketing_email_has_the_footer_the_pixel_and_one_click_unsubscribe_headers() -> None:
    email = rendered("nurture-case-study")
    url = unsubscribe_url(email)
    assert email.headers == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{API}/v1/unsubscribe"
    assert SIGNER.read_unsubscribe(parse_qs(parts.query)["token"][0]) == ("lead-1", "send-1")
    assert f'<a href="{url}" style="color:#6b7280;text-decoration:underline">Unsubscribe</a>' in email.html
    assert "Acme Software, Inc.<br>500 Market Street, Suite 400<br>San Francisco, CA 94105" in email.html
    pixel = f'<img src="{API}/v1/o/{SIGNER.open_token("send-1")}.gif" width="1" height="1" alt="" '
    assert pixel + 'style="display:none">' in email.html
    assert email.html.index("Unsubscribe</a>") < email.html.index(pixel) < email.html.index("</body>")
    assert url not in email.tracked_links


def test_the_text_part_carries_the_postal_address_and_the_unsubscribe_url() -> None:
    email = rendered("welcome-1")
    assert email.text.endswith(f"\n{SETTINGS.postal_address}\nUnsubscribe: {unsubscribe_url(email)}\n")
    assert email.text.startswith("Hi Ada,")


def test_transactional_email_gets_the_pixel_but_no_footer_and_no_unsubscribe_headers() -> None:
    email = rendered(template("<html><body><p>Your invoice</p></body></html>", kind="transactional"))
    assert email.headers == {}
    assert "Unsubscribe" not in email.html and "Market Street" not in email.html
    assert email.text == "Hello"
    assert email.html.endswith('style="display:none"></body></html>')


def test_without_a_body_tag_the_footer_goes_at_the_end() -> None:
    email = rendered(template("<p>Short</p>"))
    assert email.html.startswith("<p>Short</p><div ")
    assert email.html.endswith('style="display:none">')


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://api.acme.example/", "https://api.acme.example"),
        ("https://acme.example/mail-api", "https://acme.example/mail-api"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://localhost:3000/", "http://localhost:3000"),
    ],
)
def test_the_api_base_url_is_https_except_on_localhost(url: str, base: str) -> None:
    assert check_api_base_url(url) == base
    assert unsubscribe_url(rendered(api_base_url=url)).startswith(f"{base}/v1/unsubscribe?token=")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://api.acme.example", "must use https"),
        ("http://10.0.0.5:3000", "must use https"),
        ("api.acme.example", "must be absolute"),
        ("https://api.acme.example/?x=1", "without a query"),
        ("https://user:pw@api.acme.example", "credentials"),
        ("ftp://api.acme.example", "must be absolute"),
    ],
)
def test_an_api_base_url_that_cannot_carry_unsubscribe_links_is_refused(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        rendered(api_base_url=url)


# --- send window ------------------------------------------------------------------------


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def test_inside_the_window_the_answer_is_now_in_utc() -> None:
    now = at(NEW_YORK, 2026, 1, 6, 10, 15)  # a Tuesday
    result = next_send_time(now, WINDOW, "America/New_York")
    assert result == now and result.tzinfo == UTC


def test_before_opening_it_waits_for_the_opening_that_day() -> None:
    assert next_send_time(at(NEW_YORK, 2026, 1, 6, 6, 30), WINDOW, "America/New_York") == at(
        NEW_YORK, 2026, 1, 6, 8, 0
    )


def test_at_or_after_closing_it_waits_for_the_next_day() -> None:
    assert next_send_time(at(NEW_YORK, 2026, 1, 6, 18, 0), WINDOW, None) == at(NEW_YORK, 2026, 1, 7, 8, 0)
    assert next_send_time(at(NEW_YORK, 2026, 1, 6, 23, 59), WINDOW, None) == at(NEW_YORK, 2026, 1, 7, 8, 0)


def test_over_a_weekend_it_waits_for_monday() -> None:
    monday = at(NEW_YORK, 2026, 1, 12, 8, 0)
    for now in (
        at(NEW_YORK, 2026, 1, 9, 18, 30),
        at(NEW_YORK, 2026, 1, 10, 12, 0),
        at(NEW_YORK, 2026, 1, 11, 7),
    ):
        assert next_send_time(now, WINDOW, "America/New_York") == monday


def test_the_window_is_in_the_leads_own_time_zone() -> None:
    now = datetime(2026, 1, 6, 18, 0, tzinfo=UTC)  # 19:00 in Berlin, 13:00 in New York
    assert next_send_time(now, WINDOW, "America/New_York") == now
    assert next_send_time(now, WINDOW, "Europe/Berlin") == at(BERLIN, 2026, 1, 7, 8, 0)
    assert next_send_time(now, WINDOW, "Europe/Berlin") == datetime(2026, 1, 7, 7, 0, tzinfo=UTC)


def test_an_unknown_or_invalid_time_zone_falls_back_to_the_default() -> None:
    now = datetime(2026, 1, 6, 18, 0, tzinfo=UTC)
    for zone in (None, "", "Mars/Olympus", "EST5EDT-ish", "localtime"):
        assert next_send_time(now, WINDOW, zone) == now, zone
    berlin_default = WINDOW.model_copy(update={"default_timezone": "Europe/Berlin"})
    assert next_send_time(now, berlin_default, "Mars/Olympus") == datetime(2026, 1, 7, 7, 0, tzinfo=UTC)


def test_an_opening_stays_at_eight_local_across_a_dst_change() -> None:
    # New York moves to summer time on Sunday 2026-03-08: 08:00 is 13:00 UTC on Friday, 12:00 on Monday.
    friday_evening = at(NEW_YORK, 2026, 3, 6, 19, 0)
    assert next_send_time(friday_evening, WINDOW, None) == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    # Berlin moves on 2026-03-29 and New York is already on summer time: the gap between them shrinks.
    berlin_window = SendWindow(days=["mon"], start="08:00", end="09:00", default_timezone="Europe/Berlin")
    assert next_send_time(datetime(2026, 3, 24, tzinfo=UTC), berlin_window, None) == datetime(
        2026, 3, 30, 6, 0, tzinfo=UTC
    )
    # Back to winter time in New York on 2026-11-01.
    assert next_send_time(at(NEW_YORK, 2026, 10, 30, 20, 0), WINDOW, None) == datetime(
        2026, 11, 2, 13, 0, tzinfo=UTC
    )


def test_an_opening_inside_a_dst_gap_moves_to_just_after_it() -> None:
    small_hours = SendWindow(days=["sun"], start="02:30", end="04:00", default_timezone="America/New_York")
    result = next_send_time(at(NEW_YORK, 2026, 3, 7, 12, 0), small_hours, None)
    assert result.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 30)


def test_a_one_day_window_missed_today_waits_a_week() -> None:
    wednesdays = SendWindow(days=["wed"], start="09:00", end="10:00", default_timezone="UTC")
    assert next_send_time(datetime(2026, 1, 7, 10, 0, tzinfo=UTC), wednesdays, None) == datetime(
        2026, 1, 14, 9, 0, tzinfo=UTC
    )


def test_a_time_without_an_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        next_send_time(datetime(2026, 1, 6, 10, 0), WINDOW, None)


@settings(max_examples=300, deadline=None)
@given(
    minutes=st.integers(min_value=0, max_value=3 * 366 * 24 * 60),
    zone=st.sampled_from(["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", None]),
    days=st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1),
)
def test_the_next_send_time_is_inside_the_window_and_none_is_earlier(
    minutes: int, zone: str | None, days: set[str]
) -> None:
    window = WINDOW.model_copy(update={"days": sorted(days)})
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    result = next_send_time(now, window, zone)
    local = result.astimezone(ZoneInfo(zone or window.default_timezone))
    assert result >= now and result.tzinfo == UTC
    assert local.strftime("%a").lower() in days and "08:00" <= local.strftime("%H:%M") < "18:00"
    assert next_send_time(result, window, zone) == result
    if result > now:
        assert next_send_time(result - timedelta(minutes=1), window, zone) == result


# --- frequency cap ----------------------------------------------------------------------

CAP = FrequencyCap(max_emails=3, per_days=7)
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def days_ago(*days: float) -> list[datetime]:
    return [NOW - timedelta(days=d) for d in days]


def test_under_the_cap_a_send_is_allowed_now() -> None:
    assert frequency_cap_release([], NOW, CAP) is None
    assert frequency_cap_release(days_ago(1, 2), NOW, CAP) is None
    assert frequency_cap_release(days_ago(1, 2, 7, 30), NOW, CAP) is None  # 7 days ago has aged out


def test_at_the_cap_the_oldest_recent_send_decides_when_one_more_fits() -> None:
    sent = days_ago(1, 6, 3)
    release = frequency_cap_release(sent, NOW, CAP)
    assert release == NOW - timedelta(days=6) + timedelta(days=7) == NOW + timedelta(days=1)
    assert frequency_cap_release(sent, release, CAP) is None
    assert frequency_cap_release(sent, release - timedelta(seconds=1), CAP) == release


def test_over_the_cap_enough_sends_must_age_out() -> None:
    sent = days_ago(6, 5, 4, 1)  # four sends, e.g. after the cap was lowered
    release = frequency_cap_release(sent, NOW, CAP)
    assert release == NOW + timedelta(days=2)
    assert frequency_cap_release(sent, release, CAP) is None


def test_sends_in_any_time_zone_count_and_the_answer_is_utc() -> None:
    sent = [t.astimezone(timezone(timedelta(hours=-5))) for t in days_ago(1, 2, 3)]
    release = frequency_cap_release(sent, NOW, CAP)
    assert release == NOW + timedelta(days=4) and release is not None and release.tzinfo == UTC
    with pytest.raises(ValueError, match="offset"):
        frequency_cap_release([datetime(2026, 1, 19)], NOW, CAP)
