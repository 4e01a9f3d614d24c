"""JSON from outside, parsed once and safely: every HTTP edge parses request bodies here.

``parse_json`` never raises anything but ``InvalidInput`` (a 400 naming the problem), whatever
the bytes: invalid UTF-8, NUL bytes, nesting thousands deep, numbers of ten thousand digits.
And what it accepts, every consumer downstream can keep, so an event answered 200 is never
lost on its way to DynamoDB. The rules, each applied to the whole document:

* **UTF-8 only** (RFC 8259), a leading byte-order mark allowed. Bytes that are not UTF-8 are
  refused, with the offset of the first bad one.
* **At most** ``MAX_JSON_DEPTH`` **levels of nesting** (objects and arrays), checked before the
  parser runs; also DynamoDB's limit for nested attributes.
* **Numbers DynamoDB stores exactly, or refused** with the field named: an integer of at most
  38 digits; any other number finite and, unless zero, from 1E-130 to 9.99E+125 in magnitude
  (DynamoDB's range). ``NaN`` and ``Infinity`` are not JSON and are refused. A number is never
  turned into a string or rounded to fit: a client that needs more sends the value as a string.
* **Every object key non-empty** (DynamoDB refuses an empty attribute name at any depth), or
  the document is refused, naming where.
* **Strings are made well-formed Unicode**: JSON may spell a lone UTF-16 surrogate
  (``"\\ud800"``, what a browser's ``JSON.stringify`` makes of a string cut in the middle of an
  emoji), which is not a character and which neither the bus's parsers nor DynamoDB accept.
  Each one, in a value or a key, is replaced by U+FFFD (the replacement character), as a
  browser's UTF-8 encoder does; two keys that then read the same are one key, the later kept,
  as for a repeated key. The rest of the string, NUL included, is kept as sent. Replaced, not
  refused: unlike a number, a string has a faithful well-formed form, and refusing would lose
  a page view whose title a tag truncated.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from itertools import accumulate
from typing import Any

from kindling.kernel.errors import InvalidInput

#: How deeply objects and arrays may nest (DynamoDB's limit for nested attributes too).
MAX_JSON_DEPTH = 32
#: DynamoDB keeps 38 significant digits; an integer keeps every digit it is written with.
MAX_INTEGER_DIGITS = 38
_SMALLEST = Decimal("1E-130")
_LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
#: How many problems one refusal lists.
_MAX_PROBLEMS = 10
#: A JSON string, or an unterminated one running to the end: one linear pass, never a re-scan.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NONZERO_DIGIT = re.compile(r"[1-9]")
_MAX_NAME_IN_PROBLEM = 60


class _Unstorable:
    """A number the parser met that no store can keep; the walk names the field it is in."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _integer(token: str) -> int | _Unstorable:
    if len(token.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _Unstorable(
            f"a whole number of more than {MAX_INTEGER_DIGITS} digits cannot be stored exactly: "
            "send it as a string"
        )
    return int(token)


def is_storable_number(number: float) -> bool:
    """Whether DynamoDB keeps ``number`` as JSON spells it: an integer of at most 38 digits;
    a float that is 0, or finite and from 1E-130 to 9.99E+125 in magnitude as ``repr`` writes it."""
    if isinstance(number, int):
        return abs(number) < 10**MAX_INTEGER_DIGITS
    if number == 0:
        return True
    return math.isfinite(number) and _SMALLEST <= abs(Decimal(repr(number))) <= _LARGEST


def _real(token: str) -> float | _Unstorable:
    number = float(token)  # inf when the exponent is beyond a float's, never an error
    if number == 0 and _NONZERO_DIGIT.search(re.split("[eE]", token, maxsplit=1)[0]):
        return _out_of_range()  # a float's zero, not the number sent
    return number if is_storable_number(number) else _out_of_range()


def _out_of_range() -> _Unstorable:
    return _Unstorable("a number must be 0 or from 1E-130 to 9.99E+125 in magnitude: send it as a string")


def _constant(name: str) -> _Unstorable:
    return _Unstorable(f"{name} is not a number JSON allows")


def _check_depth(text: str, what: str) -> None:
    """Count the brackets outside strings, before the (recursive) parser ever sees them."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise InvalidInput(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")


def _name(key: str) -> str:
    shown = key if len(key) <= _MAX_NAME_IN_PROBLEM else key[:_MAX_NAME_IN_PROBLEM] + "..."
    return repr(shown)[1:-1]


def _well_formed(text: str) -> str:
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _clean(value: Any, where: str, problems: list[tuple[str, str]]) -> Any:
    """The value with its strings well-formed; a (where, problem) for each unstorable number or empty key."""
    if isinstance(value, str):
        return _well_formed(value)
    if isinstance(value, dict):
        cleaned = {}
        for raw_key, item in value.items():
            key = _well_formed(raw_key)
            if not key:
                problems.append((where, "a field has an empty name"))
            inner = f"{where}.{_name(key)}" if where else _name(key)
            cleaned[key] = _clean(item, inner, problems)
        return cleaned
    if isinstance(value, list):
        return [_clean(item, f"{where}[{index}]", problems) for index, item in enumerate(value)]
    if isinstance(value, _Unstorable):
        problems.append((where, value.reason))
        return None
    return value


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """One JSON document from outside, by the rules above; ``InvalidInput`` for anything else.

    ``what`` names the document in problems (``"the request body"``, ``"data"``); problems
    inside it name the field (``properties.price: ...``, ``batch[2].traits: ...``).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{what} is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
            ) from None
    else:
        text = raw
    text = text.removeprefix("\ufeff")
    _check_depth(text, what)
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_real, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; and RecursionError, were the check wrong
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    found: list[tuple[str, str]] = []
    cleaned = _clean(value, "", found)
    if found:
        problems = [f"{where or what}: {problem}" for where, problem in found[:_MAX_PROBLEMS]]
        if len(found) > _MAX_PROBLEMS:
            problems.append(f"... and {len(found) - _MAX_PROBLEMS} more")
        raise InvalidInput(problems)
    return cleaned


def parse_json_object(raw: bytes | str, what: str = "the request body") -> dict[str, Any]:
    """``parse_json`` for a body that must be one JSON object (whatever its Content-Type)."""
    if not raw.strip():
        raise InvalidInput(f"{what} is empty: send a JSON object")
    value = parse_json(raw, what)
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value
