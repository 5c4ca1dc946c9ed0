"""JSON on the import's hot path means what the standard library's JSON meant."""

import json
import math

import pytest

from importer import json_codec

# Bodies a source may send, including what only the standard library reads.
BODIES = [
    b'{"items": [{"id": 1, "name": "asset-001", "ram": 16.5, "ok": true, "owner": null}]}',
    b'{"iccid": 89014103211118510720, "imsi": 310150123456789}',
    b"[18446744073709551615, -9223372036854775808, 9223372036854775807]",
    b'{"id": -123456789012345678901234567890}',
    b'{"score": NaN, "max": Infinity, "min": -Infinity}',
    b'\xef\xbb\xbf{"with": "a byte order mark"}',
    '{"city": "Z\u00fcrich"}'.encode("utf-16"),
    b'{"broken": "\\ud800"}',
    b'{"big": 1E400, "tiny": 1e-400}',
    b'{"a": 1, "a": 2}',
    b'{"text": "caf\xc3\xa9 \\u00e9 \\n"}',
    b"  [1.5, 1e16, 0.1, -0.0, 123456789.123456789]  ",
]
# Bodies neither reads.
NOT_JSON = [b"", b"<html>", b"[1, 2,]", b'{"a": 1} trailing', b'"\xff"', b"{'a': 1}", b"nan"]


def same(a, b) -> bool:
    """Equal, NaN included, and the same types (an int stays an int)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_it_reads_a_page_exactly_as_the_standard_library_does(body):
    assert same(json_codec.decode(body), json.loads(body))
    assert same(json_codec.decode(bytearray(body)), json.loads(body))


def test_it_reads_deep_nesting_as_the_standard_library_does():
    body = b"[" * 600 + b"]" * 600

    assert json_codec.decode(body) == json.loads(body)


def test_a_20_digit_number_keeps_every_digit():
    document = json_codec.decode(b'{"iccid": 89014103211118510720}')

    assert document["iccid"] == 89014103211118510720
    assert type(document["iccid"]) is int


@pytest.mark.parametrize("body", NOT_JSON)
def test_what_is_not_json_stays_refused(body):
    with pytest.raises(ValueError):
        json_codec.decode(body)


VALUES = [
    {"data": {"laptops": [{"serial": "SN-1", "ram": 16, "price": 1299.5, "on": True}]}},
    {"data": {"people": [{"name": "Zo\u00eb", "city": "\u6771\u4eac", "emoji": "\U0001f600"}]}},
    {"data": {"sims": [{"iccid": 89014103211118510720, "n": -(2**70)}]}},
    {"completed": True},
    {"failureReason": 'quote " and backslash \\ and newline \n and tab \t'},
    {"data": {"x": [{"keys": {1: "not a string key"}}]}},
    {"data": {"x": [{"broken": "\ud800"}]}},
    {"data": {"x": [{"nothing": None, "floats": [0.1, 1e16, 1e-7, -0.0]}]}},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_a_data_chunk_means_what_the_standard_library_wrote(value):
    body = json_codec.encode(value)

    assert isinstance(body, bytes)
    assert same(json.loads(body), json.loads(json.dumps(value)))


def test_text_goes_as_utf8():
    body = json_codec.encode({"city": "Z\u00fcrich"})

    assert body.decode("utf-8") == '{"city":"Z\u00fcrich"}'


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_number_json_cannot_hold_is_sent_as_the_standard_library_sent_it_not_as_null(number):
    # orjson would write null, which Assets would take as "no value": the chunk would carry a
    # different record without anyone noticing.
    value = {"data": {"x": [{"score": number}]}}

    assert json_codec.encode(value) == json.dumps(value).encode()
