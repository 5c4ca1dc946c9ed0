"""How much work one answer of a source may cause: records, JSON values, time.

Bytes alone do not bound a worker's memory: 49 MB of `[{},{},...]` are 17 million dicts, over a
gigabyte once parsed. So a JSON answer is measured before it is parsed (its number of values,
which is what costs memory), a page may hold at most SOURCE_MAX_RECORDS_PER_PAGE records, and a
page must arrive within SOURCE_REQUEST_BUDGET_SECONDS however slowly its bytes trickle in.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings

from importer import json_codec
from importer.sources.base import SourceError

# A record of a real API is an object of a few dozen values at most; a page whose answer holds
# more JSON values than this many per allowed record is refused before it is parsed.
VALUES_PER_RECORD = 50
# A JSON string, escapes included: what may hide commas and brackets that are not values.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')


def max_records_per_page() -> int:
    return max(1, settings.SOURCE_MAX_RECORDS_PER_PAGE)


def max_json_values() -> int:
    return max_records_per_page() * VALUES_PER_RECORD


def json_value_count(body: bytes | bytearray) -> int:
    """About how many values (objects, arrays and scalars) a JSON text holds.

    Counted on the bytes, in linear time, strings left out: every object or array opens with a
    bracket, and every value after the first in one follows a comma.
    """
    without_strings = _JSON_STRING.sub(b'""', body)
    return without_strings.count(b",") + without_strings.count(b"{") + without_strings.count(b"[")


def check_json_values(
    raw: bytes | bytearray,
    *,
    refuse: Callable[..., SourceError],
    what: str,
    hint: str = "lower the page size",
) -> None:
    """Refuse a JSON text that would cost far more memory than its bytes once parsed.

    `refuse(message, **error_fields)` builds the SourceError (it names the source).
    """
    limit = max_json_values()
    # The counts of commas and brackets bound the values from above, strings included; only
    # a text over the limit by that bound is counted exactly (strings left out).
    rough = raw.count(b",") + raw.count(b"{") + raw.count(b"[")
    if rough > limit and json_value_count(raw) > limit:
        raise refuse(
            f"sent {what} of more than {limit} JSON values ({VALUES_PER_RECORD} per record of "
            f"SOURCE_MAX_RECORDS_PER_PAGE = {max_records_per_page()}), too many to read: {hint}",
            kind="too_large",
        )


def loads(body: bytes | bytearray | str, *, refuse: Callable[..., SourceError], what: str) -> Any:
    """Parse a JSON text, refusing one too big to hold (bytes are measured first) or nested
    too deeply for the parser. Raises ValueError when the text is not JSON, as json.loads."""
    if isinstance(body, bytes | bytearray):
        check_json_values(body, refuse=refuse, what=what)
    try:
        if isinstance(body, str):  # a file, decoded from its own encoding
            return json.loads(body)
        return json_codec.decode(body)
    except RecursionError:
        raise refuse(
            f"sent {what} whose JSON is nested too deeply to read (more than "
            f"{sys.getrecursionlimit()} levels)",
            kind="bad_json",
        ) from None


def check_record_count(count: int, *, refuse: Callable[..., SourceError]) -> None:
    """A page holds at most SOURCE_MAX_RECORDS_PER_PAGE records."""
    cap = max_records_per_page()
    if count > cap:
        raise refuse(
            f"sent {count} records in one page, more than SOURCE_MAX_RECORDS_PER_PAGE = {cap}: "
            "lower the page size (or, for a source that always answers everything at once, "
            "raise the setting)",
            kind="too_large",
        )


def page_budget(source) -> float:
    """Seconds one page of the source may take, every request and byte of it included.

    Never less than twice the source's own request timeout, so a source given a long timeout
    keeps it.
    """
    timeout = source.request_timeout if source.request_timeout is not None else 0.0
    return max(settings.SOURCE_REQUEST_BUDGET_SECONDS, 2 * timeout)


def longest_request_timeout() -> float:
    """The longest request timeout a source may be given: a page may take twice it, plus one
    read begun as that ran out, and with the lane's time, a submit and a retry waited for, the
    chunk task must end before django-q2 stops it (Q_TASK_TIMEOUT), mid-page."""
    spare = (
        settings.Q_TASK_TIMEOUT
        - settings.CHUNK_LANE_SECONDS
        - settings.HTTP_TIMEOUT
        - settings.CHUNK_RETRY_INLINE_MAX_SECONDS
    )
    return max(1.0, spare // 3)


def download_budget() -> float:
    """Seconds the download of a source file may take."""
    return settings.SOURCE_DOWNLOAD_BUDGET_SECONDS
