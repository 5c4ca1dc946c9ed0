"""JSON on the import's hot path: source pages in, data chunks out.

orjson does the work where its answer means exactly what the standard library's would; the
standard library does it otherwise, so what a source may send and what Assets receives stay
as they were:

* decode: orjson reads a document the way `json.loads` does, except that it turns an integer
  beyond 64 bits into a float (a 20-digit serial number would lose its last digits) and
  refuses what `json.loads` takes: NaN and Infinity, a byte order mark, UTF-16 or UTF-32,
  escaped lone surrogates, nesting deeper than 1024, numbers beyond a double. A body with a
  run of 20 digits or more, or one orjson refuses, is read by `json.loads`.
* encode: orjson writes compact UTF-8 where `json.dumps` wrote ASCII with escapes and spaces,
  the same JSON. It writes NaN and infinities as `null`, where `json.dumps` wrote `NaN`,
  which Assets refuses like any JSON parser: a body with `null` in it, and a value orjson
  cannot write (an integer beyond 64 bits, a key that is not a string, a lone surrogate), is
  written by `json.dumps`, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Every digit becomes "0", every other byte a blank: a run of digits becomes a run of "0".
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
# The shortest integer that may not fit in 64 bits has 20 digits.
_TWENTY_DIGITS = b"0" * 20


def decode(body: bytes | bytearray) -> Any:
    """The JSON document in `body`, as `json.loads(body)` reads it; ValueError if none."""
    if _TWENTY_DIGITS in body.translate(_DIGITS_AS_ZEROS):
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def encode(value: Any) -> bytes:
    """`value` as a JSON body, meaning what `json.dumps(value)` means."""
    try:
        body = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()
    if b"null" in body:  # None, or a NaN or infinity that orjson wrote as null
        return json.dumps(value).encode()
    return body


def kind_of(value: Any) -> str:
    """How an error names the JSON type of a decoded `value` (a plug-in's value may be of
    any Python type: "an ObjectId")."""
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value)) or _with_article(type(value).__name__)


def as_cell(value: Any) -> str:
    """A value as a page shows what a chunk carries: text as it is, anything else as compact
    JSON (`false`, `["blue","lab"]`), not as Python writes it (`False`, `['blue', 'lab']`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _with_article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
