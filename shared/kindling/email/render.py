"""Turning a template and a lead into an email: rendering, tracked links, unsubscribe, send rules.

Templates are Jinja2, run in an immutable sandbox with ``StrictUndefined``: a template
reaches no Python internals, changes nothing, and a trait used without
``| default(...)`` is an error instead of a blank. Subject and text are rendered without
escaping, the HTML with autoescaping, so a trait like ``<b>Acme</b>`` shows as text.

What a template sees: the lead's traits at the top level (``first_name``, ``company``,
...), plus ``email``, ``unsubscribe_url`` and ``preferences_url``, which a trait of the
same name never overrides. A trait that is null or blank counts as missing, so its
``default`` applies; a camelCase trait is also visible in snake_case (``firstName`` as
``first_name``) unless the lead has both; a nested object, like the ``company`` a group
call records, prints as its ``name``.

Every ``http(s)`` link of an ``<a>`` in the HTML becomes ``{api}/v1/c/{token}``, where
the token carries the send id and the original URL under an HMAC, so the click handler
needs no lookup to redirect and cannot be used as an open redirect. Marketing email gets
a footer with the postal address and an unsubscribe link, and RFC 8058 one-click
unsubscribe headers. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html as html_lib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kindling.email.config import EmailSettings, EmailTemplate, FrequencyCap, SendWindow, zone
from kindling.kernel.errors import InvalidInput

Part = Literal["subject", "html", "text"]
PARTS: tuple[Part, ...] = ("subject", "html", "text")

#: Names the renderer provides; a trait with one of these names is hidden by it.
PROVIDED = ("email", "unsubscribe_url", "preferences_url")
LINK_SCHEMES = ("http", "https", "mailto")
#: Hosts for which an http:// API base URL is accepted (the local stack).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ONE_CLICK = "List-Unsubscribe=One-Click"

MIN_SECRET_BYTES = 16
MAC_BYTES = 16
MAX_TOKEN_LENGTH = 4096
#: Longer links are left untracked: their tokens would not fit comfortably in a URL.
MAX_TRACKED_URL_BYTES = 2048
_MAC_DOMAIN = b"kindling email link\x00"
_CLICK, _OPEN, _UNSUBSCRIBE = b"click", b"open", b"unsubscribe"
#: Send and lead ids: visible ASCII, so they can never contain the field separator.
_ID = re.compile(r"[!-~]{1,200}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_SEPARATOR = "\n"

#: A lead with every common trait: a template must render for it and for a lead with none.
SAMPLE_TRAITS: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "name": "Ada Lovelace",
    "title": "Head of Revenue Operations",
    "company": "Analytical Engines Ltd",
    "industry": "Software",
    "company_size": "201-500",
    "employees": 250,
    "phone": "+1 212 555 0100",
    "city": "New York",
    "country": "United States",
    "website": "https://analytical-engines.example",
    "timezone": "America/New_York",
    "plan": "trial",
    "owner_name": "Sam Carter",
    "owner_email": "sam.carter@acme.example",
}
SAMPLE_EMAIL = "ada.lovelace@analytical-engines.example"
_SAMPLE_BASE = "https://api.kindling.example"
_SAMPLE_UNSUBSCRIBE = f"{_SAMPLE_BASE}/v1/unsubscribe?token=sample"
_SAMPLE_PREFERENCES = f"{_SAMPLE_BASE}/v1/preferences?token=sample"
#: What the "give it a default" hint suggests for a few common traits.
_SUGGESTED_DEFAULTS = {"first_name": "there", "name": "there", "company": "your team", "title": "your role"}


class RenderFailed(InvalidInput):
    """This template cannot be rendered for this lead; sending it again will not help."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    #: The original URLs of the tracked links, in the order they appear.
    tracked_links: list[str] = field(default_factory=list)


# --- signed link tokens ------------------------------------------------------------------


class LinkSigner:
    """Mints and reads the tokens in click, open-pixel and unsubscribe URLs.

    A token is base64url (no padding) of a 16-byte HMAC-SHA256 followed by its fields.
    The MAC covers a purpose, so a click token never passes as an unsubscribe token.
    Tokens do not expire: an unsubscribe link must keep working for as long as the
    email exists. ``retired`` secrets are still accepted when reading, so the signing
    secret can be rotated without breaking links already sent.
    """

    __slots__ = ("_keys",)

    def __init__(self, secret: bytes, *, retired: Sequence[bytes] = ()) -> None:
        keys = [secret, *retired]
        for key in keys:
            if not isinstance(key, bytes | bytearray):
                raise ValueError("a link signing secret must be bytes")
            if len(key) < MIN_SECRET_BYTES:
                raise ValueError(f"a link signing secret must be at least {MIN_SECRET_BYTES} bytes")
        self._keys = tuple(bytes(key) for key in keys)

    def __repr__(self) -> str:
        return "LinkSigner(<redacted>)"

    def click_token(self, send_id: str, url: str) -> str:
        _check_id(send_id, "send id")
        if _link_kind(url) not in ("http", "https") or url != _clean_url(url):
            raise ValueError("only an absolute http(s) URL without surrounding whitespace is tracked")
        if len(url.encode()) > MAX_TRACKED_URL_BYTES:
            raise ValueError(f"a URL over {MAX_TRACKED_URL_BYTES} bytes is too long to track")
        return self._mint(_CLICK, send_id, url)

    def open_token(self, send_id: str) -> str:
        _check_id(send_id, "send id")
        return self._mint(_OPEN, send_id)

    def unsubscribe_token(self, lead_id: str, send_id: str) -> str:
        _check_id(lead_id, "lead id")
        _check_id(send_id, "send id")
        return self._mint(_UNSUBSCRIBE, lead_id, send_id)

    def read_click(self, token: str) -> tuple[str, str]:
        """(send id, original URL)."""
        send_id, url = self._read(_CLICK, token, "click", 2)
        if _link_kind(url) not in ("http", "https"):
            raise InvalidInput("the click token is not valid")
        return send_id, url

    def read_open(self, token: str) -> str:
        """The send id."""
        (send_id,) = self._read(_OPEN, token, "open", 1)
        return send_id

    def read_unsubscribe(self, token: str) -> tuple[str, str]:
        """(lead id, send id)."""
        lead_id, send_id = self._read(_UNSUBSCRIBE, token, "unsubscribe", 2)
        return lead_id, send_id

    def _mint(self, purpose: bytes, *fields: str) -> str:
        payload = _SEPARATOR.join(fields).encode()
        return _b64(_mac(self._keys[0], purpose, payload) + payload)

    def _read(self, purpose: bytes, token: object, what: str, count: int) -> list[str]:
        invalid = InvalidInput(f"the {what} token is not valid")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        # One token, one spelling: trailing bits that decoding ignores must not be changeable.
        if len(raw) <= MAC_BYTES or _b64(raw) != token:
            raise invalid
        given, payload = raw[:MAC_BYTES], raw[MAC_BYTES:]
        matched = False
        for key in self._keys:
            # No early exit: every key costs the same, whichever one matches.
            matched |= hmac.compare_digest(given, _mac(key, purpose, payload))
        if not matched:
            raise invalid
        try:
            fields = payload.decode().split(_SEPARATOR)
        except UnicodeDecodeError:
            raise invalid from None
        if len(fields) != count or not all(fields):
            raise invalid
        return fields


def _mac(key: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _MAC_DOMAIN + purpose + b"\x00" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"a {what} must be 1-200 visible ASCII characters without spaces")


# --- the sandbox -------------------------------------------------------------------------


def _finalize(value: Any) -> Any:
    return "" if value is None else value


@functools.cache
def _environment(html: bool) -> ImmutableSandboxedEnvironment:
    """One environment per escaping mode, built on first use."""
    return ImmutableSandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, finalize=_finalize, extensions=()
    )


@functools.lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    return _environment(html).from_string(source)


class _Record(dict[str, Any]):
    """A nested trait object: reads like a dict, prints as its ``name`` (or nothing)."""

    def __str__(self) -> str:
        name = self.get("name")
        return name if isinstance(name, str) else ""


def _plain(value: Any) -> Any:
    """Null and blank become missing (None); objects become records, recursively."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping):
        record = _Record()
        for key, item in value.items():
            plain = _plain(item)
            if isinstance(key, str) and plain is not None:
                record[key] = plain
        return record
    if isinstance(value, list | tuple):
        return [plain for plain in map(_plain, value) if plain is not None]
    return value


_CAMEL = re.compile(r"[a-z][a-zA-Z0-9]*[A-Z][a-zA-Z0-9]*")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def template_context(
    traits: Mapping[str, Any], *, email: str, unsubscribe_url: str, preferences_url: str
) -> dict[str, Any]:
    """What a template sees (see the module docstring)."""
    context: dict[str, Any] = {}
    for key, value in traits.items():
        plain = _plain(value)
        if isinstance(key, str) and plain is not None:
            context[key] = plain
    for key in [k for k in context if _CAMEL.fullmatch(k)]:
        context.setdefault(_snake(key), context[key])
    context.update(email=email, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
    return context


class _PartFailed(Exception):
    def __init__(self, part: Part, problem: str) -> None:
        self.part = part
        self.problem = problem
        super().__init__(f"{part}: {problem}")


def _render_part(template: EmailTemplate, part: Part, context: dict[str, Any]) -> str:
    try:
        return _compiled(getattr(template, part), part == "html").render(context)
    except Exception as exc:  # a template can fail in any way; each is a problem of that part
        raise _PartFailed(part, describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """A template failure as the person who wrote the template can act on it."""
    if isinstance(exc, SecurityError):
        return f"not allowed in an email template: {exc.message or exc}"
    if isinstance(exc, UndefinedError):
        message = exc.message or str(exc)
        missing = re.fullmatch(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined", message)
        if missing:
            name = missing.group(1)
            example = f"{{{{ {name} | default({_SUGGESTED_DEFAULTS.get(name, '')!r}) }}}}"
            return f"{message} — give it a default, e.g. {example}"
        return message
    if isinstance(exc, TemplateSyntaxError):
        return f"line {exc.lineno}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


# --- links -------------------------------------------------------------------------------

_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def _clean_url(value: str) -> str:
    """The URL a browser would follow for this href: no tabs or newlines, trimmed."""
    return re.sub(r"[\t\n\r]", "", value).strip(_C0_AND_SPACE)


def _link_kind(url: str) -> str | None:
    """``http``, ``https`` or ``mailto``, or None for a link an email must not carry."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
    except ValueError:
        return None
    if scheme in ("http", "https"):
        return scheme if host else None
    return scheme if scheme == "mailto" else None


class _Anchors(HTMLParser):
    """Every ``<a>`` start tag: its offset in the source, its text and its attributes."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", markup))]
        self.found: list[tuple[int, str, list[tuple[str, str | None]]]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            line, column = self.getpos()
            self.found.append((self._line_starts[line - 1] + column, self.get_starttag_text() or "", attrs))


def anchor_links(markup: str) -> list[str]:
    """The href of every ``<a>`` (the first one, as browsers do), entities decoded."""
    links = []
    for _, _, attrs in _Anchors(markup).found:
        href = next((value for name, value in attrs if name == "href"), None)
        if href is not None:
            links.append(href)
    return links


def _rewrite_anchors(markup: str, rewrite: Callable[[str], str | None]) -> str:
    """``markup`` with each anchor's href replaced by ``rewrite(href)``; None drops the href.

    Only the start tags whose href changes are rewritten (attribute order kept, values
    re-quoted); everything else is left byte for byte.
    """
    pieces: list[str] = []
    cursor = 0
    for offset, raw, attrs in _Anchors(markup).found:
        hrefs = [value for name, value in attrs if name == "href"]
        if not hrefs or hrefs[0] is None:
            continue
        new = rewrite(hrefs[0])
        if new == hrefs[0] and len(hrefs) == 1:
            continue
        if not markup.startswith(raw, offset):
            raise RuntimeError(f"the link at character {offset} could not be located to be rewritten")
        pieces.append(markup[cursor:offset])
        pieces.append(_start_tag(attrs, new))
        cursor = offset + len(raw)
    pieces.append(markup[cursor:])
    return "".join(pieces)


def _start_tag(attrs: Iterable[tuple[str, str | None]], href: str | None) -> str:
    out = ["<a"]
    seen_href = False
    for name, value in attrs:
        if name == "href":
            if seen_href or href is None:
                seen_href = True
                continue
            seen_href = True
            value = href
        out.append(f" {name}" if value is None else f' {name}="{html_lib.escape(value, quote=True)}"')
    return "".join(out) + ">"


def _link_problems(markup: str) -> list[str]:
    problems = []
    for href in anchor_links(markup):
        if _link_kind(_clean_url(href)) is None:
            shown = href if len(href) <= 80 else href[:77] + "..."
            problems.append(f"html: the link {shown!r} is not an http(s) or mailto link")
    try:
        _rewrite_anchors(markup, lambda href: f"{_SAMPLE_BASE}/v1/c/sample")
    except RuntimeError as exc:
        problems.append(f"html: {exc}")
    return problems


def check_api_base_url(url: str) -> str:
    """``url`` without a trailing slash, if public links may point at it; else ValueError.

    RFC 8058 one-click unsubscribe needs an HTTPS URL, so http is only for localhost.
    """
    text = url.strip() if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        host = None
        parts = urlsplit("")
    malformed = parts.query or parts.fragment or "@" in parts.netloc
    if parts.scheme not in ("http", "https") or not host or malformed:
        raise ValueError(
            f"the API base URL must be absolute, like https://api.example.com, without a query, "
            f"fragment or credentials, not {url!r}"
        )
    if parts.scheme != "https" and host not in LOCAL_HOSTS:
        raise ValueError(
            f"the API base URL must use https (one-click unsubscribe needs an HTTPS URL); "
            f"http is only accepted for localhost, not {host}"
        )
    return text.rstrip("/")


# --- rendering ---------------------------------------------------------------------------


def template_problems(template: EmailTemplate) -> list[str]:
    """``part: problem`` for everything that keeps ``template`` from rendering; empty when usable.

    Renders every part for a lead with no traits and for ``SAMPLE_TRAITS``, then checks
    that the subject is not empty and that every HTML link is http(s) or mailto.
    """
    problems: list[str] = []
    for traits in ({}, SAMPLE_TRAITS):
        context = template_context(
            traits,
            email=SAMPLE_EMAIL,
            unsubscribe_url=_SAMPLE_UNSUBSCRIBE,
            preferences_url=_SAMPLE_PREFERENCES,
        )
        for part in PARTS:
            try:
                rendered = _render_part(template, part, context)
            except _PartFailed as failed:
                found = [str(failed)]
            else:
                found = _rendered_problems(part, rendered, bool(traits))
            problems.extend(p for p in found if p not in problems)
    return problems


def _rendered_problems(part: Part, rendered: str, sample: bool) -> list[str]:
    if part == "subject" and not rendered.strip():
        return [f"subject: renders empty for a lead {'like the sample' if sample else 'without traits'}"]
    if part == "html":
        return _link_problems(rendered)
    return []


def render(
    template: EmailTemplate,
    *,
    traits: dict[str, Any],
    email: str,
    lead_id: str,
    links: LinkSigner,
    send_id: str,
    settings: EmailSettings,
    api_base_url: str,
) -> RenderedEmail:
    """The email ``template`` makes for this lead, ready to hand to SES.

    Raises ``RenderFailed`` when the template does not render for this lead's traits
    (and ``ValueError`` for a bad ``api_base_url`` or ids, which are deployment bugs).
    An ``<a>`` whose href is neither http(s) nor mailto (e.g. a trait holding
    ``javascript:...``) loses its href instead of going out.
    """
    base = check_api_base_url(api_base_url)
    unsubscribe_token = links.unsubscribe_token(lead_id, send_id)
    unsubscribe_url = f"{base}/v1/unsubscribe?token={unsubscribe_token}"
    preferences_url = f"{base}/v1/preferences?token={unsubscribe_token}"
    context = template_context(
        traits, email=email, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
    )
    try:
        subject, markup, text = (_render_part(template, part, context) for part in PARTS)
    except _PartFailed as failed:
        raise RenderFailed(f"the template cannot be rendered for this lead: {failed}") from failed
    # One line, whatever a trait holds: a newline in a header would start another header.
    subject = " ".join(subject.split())
    if not subject:
        raise RenderFailed("the template cannot be rendered for this lead: subject: renders empty")

    tracked: list[str] = []

    def track(href: str) -> str | None:
        url = _clean_url(href)
        kind = _link_kind(url)
        if kind is None:
            return None
        if kind == "mailto" or url in (unsubscribe_url, preferences_url) or url.startswith(f"{base}/v1/"):
            return href
        if len(url.encode()) > MAX_TRACKED_URL_BYTES:
            return href
        tracked.append(url)
        return f"{base}/v1/c/{links.click_token(send_id, url)}"

    markup = _rewrite_anchors(markup, track)
    pixel = (
        f'<img src="{base}/v1/o/{links.open_token(send_id)}.gif" width="1" height="1" alt="" '
        'style="display:none">'
    )
    headers: dict[str, str] = {}
    if template.kind == "marketing":
        markup = _before_body_end(markup, _html_footer(settings, unsubscribe_url) + pixel)
        text = f"{text.rstrip()}\n\n--\n{settings.postal_address}\nUnsubscribe: {unsubscribe_url}\n"
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    else:
        markup = _before_body_end(markup, pixel)
    return RenderedEmail(subject=subject, html=markup, text=text, headers=headers, tracked_links=tracked)


def _html_footer(settings: EmailSettings, unsubscribe_url: str) -> str:
    address = "<br>".join(html_lib.escape(line) for line in settings.postal_address.splitlines())
    link = html_lib.escape(unsubscribe_url, quote=True)
    return (
        '<div style="margin-top:32px;padding-top:16px;border-top:1px solid #e5e7eb;'
        'font-family:Arial,Helvetica,sans-serif;font-size:12px;line-height:18px;color:#6b7280">'
        f'<p style="margin:0 0 8px">{address}</p>'
        f'<p style="margin:0">Don\'t want these emails? <a href="{link}" '
        'style="color:#6b7280;text-decoration:underline">Unsubscribe</a>.</p>'
        "</div>"
    )


def _before_body_end(markup: str, addition: str) -> str:
    end = markup.lower().rfind("</body")
    return markup + addition if end < 0 else markup[:end] + addition + markup[end:]


# --- send rules --------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
    return moment


def lead_zone(timezone: str | None, window: SendWindow) -> tzinfo:
    """The lead's time zone, or the window's default when it is unknown or not a real zone."""
    return zone(timezone) or zone(window.default_timezone) or UTC


def next_send_time(now: datetime, window: SendWindow, timezone: str | None) -> datetime:
    """``now`` if it is inside the send window in the lead's time zone, else the next opening (UTC).

    Wall-clock times come from the tz database, so an opening stays at 08:00 local
    across a DST change; an opening inside a DST gap moves on by the gap (02:30 becomes 03:30).
    """
    _aware(now)
    tz = lead_zone(timezone, window)
    local = now.astimezone(tz)
    opens, closes = time(*window.opens), time(*window.closes)
    allowed = window.weekdays
    if local.weekday() in allowed and opens <= local.time() < closes:
        return now.astimezone(UTC)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if day.weekday() not in allowed:
            continue
        opening = datetime.combine(day, opens, tzinfo=tz).astimezone(UTC)
        if opening > now:
            return opening
    raise AssertionError("a send window with at least one day opens within a week")


def frequency_cap_release(sent_times: list[datetime], now: datetime, cap: FrequencyCap) -> datetime | None:
    """None when one more email fits the cap now, else the earliest time it will (UTC).

    A send counts for ``per_days`` whole days (of 24 hours) after it was made, a rolling window, so
    the answer is when enough of the oldest recent sends have aged out.
    """
    _aware(now)
    period = timedelta(days=cap.per_days)
    recent = sorted(_aware(sent).astimezone(UTC) for sent in sent_times if _aware(sent) + period > now)
    if len(recent) < cap.max_emails:
        return None
    return recent[len(recent) - cap.max_emails] + period
