"""Hostile request bodies every edge must answer with a 4xx, and the values it accepts but must keep safe.

Shared by the unit tests (the parsers) and the integration tests (the real handlers). Each body
is a Segment ``track`` message unless it is not JSON at all, so a case that passed the parser
would reach validation and the bus: the parser is the only thing that can stop it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from kindling.kernel.json_input import MAX_JSON_DEPTH


def track(**fields: Any) -> dict[str, Any]:
    return {"userId": "u-hostile", "event": "Probe", **fields}


def raw_track(fragment: bytes) -> bytes:
    """A track message whose ``properties.x`` is ``fragment`` as written (which may not be JSON)."""
    return b'{"userId":"u-hostile","event":"Probe","properties":{"x":' + fragment + b"}}"


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """``depth`` levels of arrays around ``leaf``."""
    return b"[" * depth + leaf + b"]" * depth


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    #: Refused as too large (``PayloadTooLarge``; answered 400 like every refusal), and words its problem has.
    too_large: bool
    problem: str
    content_encoding: str | None = None


#: Bodies refused whole (a 400), each with the problem the answer names.
REFUSED: list[Hostile] = [
    Hostile("arrays nested 5000 deep", raw_track(nested(5000)), False, "nested deeper than 32 levels"),
    Hostile("objects nested 2000 deep", b'{"a":' * 2000 + b"1" + b"}" * 2000, False, "nested deeper"),
    Hostile("4 KB of opening brackets", b"[" * 4096, False, "nested deeper"),
    Hostile("one level too deep", raw_track(nested(MAX_JSON_DEPTH - 1)), False, "nested deeper"),
    Hostile("unclosed nesting", b"{" + b'"a":{' * 500, False, "nested deeper"),
    Hostile("an integer of 5000 digits", raw_track(b"7" * 5000), False, "properties.x: a whole number"),
    Hostile("an integer of 50 digits", raw_track(b"1" * 50), False, "properties.x: a whole number"),
    Hostile("a negative integer of 39 digits", raw_track(b"-" + b"9" * 39), False, "properties.x"),
    Hostile("1e400 (a float's infinity)", raw_track(b"1e400"), False, "properties.x: a number must be"),
    Hostile("1e200 (beyond DynamoDB)", raw_track(b"1e200"), False, "properties.x: a number must be"),
    Hostile("1e-200 (below DynamoDB)", raw_track(b"-1e-200"), False, "properties.x: a number must be"),
    Hostile("1e-400 (a float's zero)", raw_track(b"1e-400"), False, "properties.x: a number must be"),
    Hostile("a huge exponent", raw_track(b"1e99999999999999999999"), False, "properties.x"),
    Hostile("NaN", raw_track(b"NaN"), False, "properties.x: NaN is not a number JSON allows"),
    Hostile("Infinity", raw_track(b"Infinity"), False, "properties.x: Infinity"),
    Hostile("-Infinity", raw_track(b"-Infinity"), False, "properties.x: -Infinity"),
    Hostile(
        "a number in a batch", b'{"batch":[{"type":"track","userId":"u","n":1e999}]}', False, "batch[0].n"
    ),
    Hostile("an empty field name", json.dumps(track(properties={"": 1})).encode(), False, "empty name"),
    Hostile(
        "a deep empty field name", json.dumps(track(traits={"a": [{"": 1}]})).encode(), False, "traits.a[0]"
    ),
    Hostile("an invalid UTF-8 byte", b'{"userId":"u","event":"caf\xe9"}', False, "not UTF-8: byte 0xe9"),
    Hostile("a surrogate encoded in UTF-8", b'{"userId":"u","event":"\xed\xa0\x80"}', False, "not UTF-8"),
    Hostile("an overlong encoding", b'{"userId":"u","event":"\xc0\xaf"}', False, "not UTF-8"),
    Hostile("a truncated UTF-8 sequence", b'{"userId":"u","event":"\xe2\x82"}', False, "not UTF-8"),
    Hostile("a NUL byte in a string", b'{"userId":"u","event":"e\x00"}', False, "not valid JSON"),
    Hostile("a NUL byte between fields", b'{"userId":"u",\x00"event":"e"}', False, "not valid JSON"),
    Hostile("a body of NUL bytes", b"\x00" * 64, False, "not valid JSON"),
    Hostile("UTF-16", json.dumps(track()).encode("utf-16"), False, "not UTF-8"),
    Hostile("truncated JSON", json.dumps(track()).encode()[:-5], False, "not valid JSON"),
    Hostile("trailing garbage", json.dumps(track()).encode() + b"}}", False, "not valid JSON"),
    Hostile("an empty body", b"", False, "empty"),
    Hostile("whitespace only", b" \r\n\t ", False, "empty"),
    Hostile("null", b"null", False, "must be a JSON object"),
    Hostile("a bare string", b'"track"', False, "must be a JSON object"),
    Hostile("a bare huge integer", b"9" * 100, False, "the request body: a whole number"),
    Hostile(
        "a gzip bomb",
        gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}"),
        True,
        "once decompressed",
        content_encoding="gzip",
    ),
    Hostile("gzipped deep nesting", gzip.compress(b"[" * 100_000), False, "nested", content_encoding="gzip"),
    Hostile("gzip that is not gzip", b"\x1f\x8bnot really", False, "not valid gzip", content_encoding="gzip"),
    Hostile("a body over 500 KB", raw_track(b'"' + b"x" * 600_000 + b'"'), True, "over 500 KB"),
    Hostile("an unknown Content-Encoding", json.dumps(track()).encode(), False, "Content-Encoding", "br"),
    Hostile("a Content-Encoding of NULs", json.dumps(track()).encode(), False, "Content-Encoding", "\x00"),
]

#: When the client gave it, a time of these is replaced by the time of receipt.
REPLACED_TIMES = [
    {"timestamp": "0001-01-01T00:00:00Z"},
    {"timestamp": "0001-01-01T00:00:00+01:00"},  # before year 1 once in UTC
    {"timestamp": "9999-12-31T23:59:59-01:00"},  # after year 9999 once in UTC
    {"timestamp": "1970-01-01T00:00:00Z"},
    {"timestamp": "1999-12-31T23:59:59Z"},
    {"timestamp": "2999-01-01T00:00:00Z"},
    {"timestamp": 0},  # 1970, as Unix seconds
    {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
    {"originalTimestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
    {"originalTimestamp": "1985-06-01T00:00:00Z"},
]


@dataclass(frozen=True)
class Kept:
    """A hostile value that is accepted, and what the event carries instead of it."""

    name: str
    message: dict[str, Any]
    #: Checks the accepted event's detail (as published).
    expect: Any


KEPT: list[Kept] = [
    Kept(
        "a lone high surrogate",
        track(properties={"title": "cut \ud83d", "\udc00key": ["\ud800"]}),
        lambda d: d["properties"] == {"title": "cut \ufffd", "\ufffdkey": ["\ufffd"]},
    ),
    Kept(
        "a surrogate pair (one emoji)",
        track(properties={"e": "\ud83d\ude00"}),
        lambda d: d["properties"] == {"e": "\U0001f600"},
    ),
    Kept("an escaped NUL", track(properties={"n": "a\u0000b"}), lambda d: d["properties"] == {"n": "a\x00b"}),
    Kept(
        "38-digit integers",
        track(properties={"max": 10**38 - 1, "min": -(10**38 - 1)}),
        lambda d: d["properties"] == {"max": 10**38 - 1, "min": -(10**38 - 1)},
    ),
    Kept(
        "DynamoDB's extreme magnitudes",
        track(properties={"big": 9.99e125, "small": 1e-130, "zero": -0.0}),
        lambda d: d["properties"] == {"big": 9.99e125, "small": 1e-130, "zero": 0.0},
    ),
    Kept(
        "32 levels of nesting",
        track(properties={"x": json.loads(nested(MAX_JSON_DEPTH - 2))}),
        lambda d: d["properties"]["x"] == json.loads(nested(MAX_JSON_DEPTH - 2)),
    ),
    Kept(
        "brackets inside strings",
        track(properties={"x": "[" * 5000 + "{" * 5000}),
        lambda d: len(d["properties"]["x"]) == 10000,
    ),
    *[
        Kept(
            f"the time {next(iter(t.values()))!r}",
            track(**t),
            lambda d: d["timestamp"] == d["received_at"] and d["timestamp_replaced"] is True,
        )
        for t in REPLACED_TIMES
    ],
]


# --- arbitrary input, for the property tests ----------------------------------------------------------

#: Any character, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
#: Field names: plain ones mostly (so a message is not refused for an empty one every time), and any.
names = st.one_of(st.text("abcxyz_", min_size=1, max_size=6), any_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(),  # NaN, infinities and subnormals too
    st.floats(min_value=-1e300, max_value=1e300).map(lambda f: f * 1e8),
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(names, children, max_size=4)),
    max_leaves=24,
)
objects = st.dictionaries(names, json_values, max_size=5)
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda t: t.isoformat() + "Z"
    ),
    st.integers(min_value=-(10**12), max_value=10**12),
    any_text,
)
#: A Segment message with arbitrary values where clients put free-form data.
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "page", "group", "alias"]),
        "userId": st.one_of(st.just("u-1"), any_text, st.integers(), st.floats()),
        "anonymousId": st.one_of(st.just("a-1"), any_text),
        "event": st.one_of(st.just("Probe"), any_text),
        "groupId": st.just("g-1"),
        "previousId": st.just("a-0"),
    },
    optional={
        "properties": st.one_of(objects, json_values),
        "traits": st.one_of(objects, json_values),
        "context": st.one_of(objects, json_values),
        "timestamp": times,
        "originalTimestamp": times,
        "sentAt": times,
        "messageId": any_text,
    },
)
#: Any JSON value or message, spelled as a client may: NaN and Infinity, escaped or raw Unicode
#: (where a lone surrogate becomes bytes that are not UTF-8).
documents = st.one_of(json_values, messages, st.fixed_dictionaries({"batch": st.lists(messages, max_size=3)}))


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    document = draw(documents)
    ascii_only = draw(st.booleans())
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


#: Request bodies: arbitrary JSON documents, arbitrary bytes, and deep nesting around either.
bodies = st.one_of(
    json_bodies(),
    messages.map(lambda m: json.dumps(m).encode()),
    st.binary(max_size=300),
    st.builds(lambda depth, body: b"[" * depth + body + b"]" * depth, st.integers(0, 200), json_bodies()),
)
