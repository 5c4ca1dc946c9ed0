"""Keyset paging ("after the last record"): each page after the first is asked for with a
field of the last record read, as GitHub's `/users?since=<id>`, SQL-backed APIs'
`?after_id=` and Elasticsearch's `search_after` (the last hit's `sort` array) are.

The value is stored as the page's cursor as JSON text, so its type survives: a GET sends a
number as written and a string as it is, while a POST's body gets the JSON value itself (an
integer stays one, `search_after` gets its array). A list or an object cannot be a query
parameter, and fails the page naming the field.

The end is an empty page, never a short one: sources cap their page sizes, and asking on
after the last record read skips nothing whatever size they serve. Each page needs the one
before, so the pages are read one after another, as cursor pages are. What would lose
records or never end fails the import, naming what to set:

* a last record without the field (the path names no field the records hold);
* a page whose last record's value is the one just sent (the source ignores the parameter,
  and would answer that page for ever). A page that holds only records of that value is the
  end of a source whose parameter counts the record it names in (`since` as >=): it
  answers the last record read again, and nothing after it (unless one record a page is
  asked for: then either source answers so for ever);
* two records of a page holding one value: the field does not tell records apart, and
  those of a page's last value that the page left out are skipped;
* a page that runs away from the value sent against its own order (a descending sort with
  a parameter asking for the values above): the next pages come back towards it, and the
  records past this one's end are never asked for;
* records out of the field's order within a page: a source that does not sort by the field
  skips the records past a page's last value that the page did not hold. Values are compared
  when they can be (numbers, strings, lists of those position by position, each position in
  one direction throughout: an Elasticsearch sort on several fields may mix them); strings
  may be collated by the source ignoring case and accents, or be numbers written as text
  ("9" before "10"), so they fail only when no such order holds.
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

from importer.sources.answers import MISSING, walk
from importer.sources.base import Page, SourceError
from importer.sources.urls import with_query


class KeysetPages:
    """The pages of a keyset source, read through its `RestJsonSource` (`rest.py`)."""

    def __init__(self, source) -> None:
        self.source = source

    def page(self, cursor: str) -> Page:
        """The records after the value `cursor` holds (JSON text; "" for the first page)."""
        source = self.source
        config = source.config
        sent = self._sent(cursor)
        url = self.url(cursor)
        try:
            response, document, records = source._read(url)
        except SourceError as error:
            raise self._explained_refusal(error, cursor) from None
        total = source._total(response, document)
        if not records:
            return Page(records=records, next_cursor=None, total=total)
        path = [part for part in config.cursor_path.split(".") if part]
        values = [walk(record, path) for record in records]
        last = values[-1]
        if last is MISSING or last is None:
            raise source.http.error(
                f"has no '{config.cursor_path}' in the last record of a page, the field whose "
                f"value the next page is asked for after ('{config.cursor_param}'): set the "
                "next-page path (Paging) to a field every record holds and the source sorts "
                "by, e.g. 'id' ('sort' for Elasticsearch's hits)",
                kind="config",
            )
        if not source.posts and isinstance(last, (dict, list)):
            shape = "an object" if isinstance(last, dict) else "a list"
            raise source.http.error(
                f"holds {shape} at '{config.cursor_path}' in its records, which a query "
                f"parameter ('{config.cursor_param}') cannot carry: read such a source with "
                "POST, the value written into the request body (Elasticsearch's search_after), "
                "or set the next-page path to a field that holds a number or text",
                kind="config",
            )
        present = [value for value in values if value is not MISSING and value is not None]
        self._check_order(present)
        self._check_unique(present)
        if sent is not MISSING and last == sent:
            if all(value == sent for value in values):
                if not self._one_a_page:
                    # An inclusive `since` (>=) answering only the record it names: the last
                    # record of the page before, read there already.
                    return Page(records=[], next_cursor=None, total=total)
                raise source.http.error(
                    f"answered again the record whose '{config.cursor_path}' is the value "
                    f"just sent as '{config.cursor_param}' ({_shown(sent)}), asked for one "
                    "record a page: a source that ignores the parameter answers so, as does "
                    "one that counts the record it names in (since as >=), for ever either "
                    "way, so the import stopped. Set a larger page size",
                    kind="endless_source",
                )
            raise source.http.error(
                f"answered a page whose last record's '{config.cursor_path}' is the value just "
                f"sent as '{config.cursor_param}' ({_shown(sent)}): it seems to ignore "
                f"'{config.cursor_param}', and would answer this page for ever, so the import "
                "stopped. Check the parameter the source takes the last record's value in",
                kind="endless_source",
            )
        if sent is not MISSING:
            self._check_moved_on(sent, present)
        return Page(records=records, next_cursor=_stored(last), total=total)

    @property
    def _one_a_page(self) -> bool:
        """Whether one record a page is asked for: then the page of the record just named
        alone tells nothing of the end."""
        return bool(self.source.config.limit_param) and self.source.page_size == 1

    def url(self, cursor: str) -> str:
        """The request for the page after `cursor`'s value; with POST the value goes on as
        JSON text, which the body gets as the value it writes (`request_body.JSON_VALUE`)."""
        source = self.source
        config = source.config
        position = {}
        if cursor:
            value = cursor if source.posts else _query_text(self._sent(cursor))
            position = {config.cursor_param: value}
        extra = dict(config.extra_params or {})
        return with_query(config.source_url, {**extra, **source._limit, **position})

    def _sent(self, cursor: str) -> Any:
        """The value a stored cursor holds; MISSING for the first page."""
        if not cursor:
            return MISSING
        try:
            return json.loads(cursor)
        except ValueError:
            raise SourceError(
                f"source '{self.source.name}': cursor '{cursor[:50]}' is not the JSON value "
                "of a record's field, as keyset paging stores it",
                kind="bad_cursor",
            ) from None

    def _check_order(self, present: list[Any]) -> None:
        """Fails the page when its records are out of the field's order (module doc)."""
        at = _out_of_order(present, EXACT)
        if at is None or _in_some_order(present):
            return
        config = self.source.config
        raise self.source.http.error(
            f"served its records out of the order of '{config.cursor_path}' ("
            f"{_shown(present[at])} came after {_shown(present[at - 1])}, against the order of "
            "the records before): keyset paging asks for the records after the last one's "
            "value, so records that a page leaves out before it would never be read. Have the "
            f"source sort by '{config.cursor_path}' (e.g. sort={config.cursor_path} among the "
            "extra parameters, or the request body's sort), or choose another paging style",
            kind="unsorted_source",
        )

    def _check_unique(self, present: list[Any]) -> None:
        """Fails the page when two of its records hold one value: the field does not tell
        records apart, and those of a page's last value that the page left out are never
        read (after it means past it), or, where the parameter counts that value in, a page
        full of them would be answered for ever."""
        seen = set()
        for value in present:
            key = json.dumps(value, sort_keys=True)
            if key in seen:
                config = self.source.config
                raise self.source.http.error(
                    f"answered a page where more than one record holds {_shown(value)} at "
                    f"'{config.cursor_path}': keyset paging asks for the records after the "
                    "last one's value, so records sharing it that a page leaves out would "
                    "never be read. It needs a field unique to each record: sort by one "
                    "(e.g. 'id'), or add one last to the sort as a tiebreaker (Elasticsearch: "
                    "a field unique to each document, last in the body's sort)",
                    kind="config",
                )
            seen.add(key)

    def _check_moved_on(self, sent: Any, present: list[Any]) -> None:
        """Fails a page whose records run away from the value sent, against their own order:
        a descending sort with a parameter that asks for the values above it. Its next pages
        would come back towards the value sent, and never reach the records past this page
        (DONE with the first pages only)."""
        if not present or _in_some_order([sent, *present]):
            return
        config = self.source.config
        raise self.source.http.error(
            f"served its records against the order of '{config.cursor_path}' that "
            f"'{config.cursor_param}' asks in: after '{config.cursor_param}' {_shown(sent)} "
            f"it answered {_shown(present[0])}, and then {_shown(present[-1])} last. Each "
            "next page would come back towards the value sent, and the records past this "
            "page's end would never be read. Sort the source the way its parameter asks for "
            "the next records (ascending for a since=<id>), or choose another paging style",
            kind="unsorted_source",
        )

    def _explained_refusal(self, error: SourceError, cursor: str) -> SourceError:
        """A request after the first refused as a bad one: most likely the value is not one
        the source takes in that parameter (a string where it wants a number)."""
        if error.status not in (400, 422) or not cursor:
            return error
        config = self.source.config
        why = (
            f"It came for the records after {_shown(self._sent(cursor))} "
            f"('{config.cursor_param}', the last record's '{config.cursor_path}'): check that "
            "the source takes that field's value in that parameter"
        )
        return error.explained(self.source.http.scrub(why))


def _stored(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _query_text(value: Any) -> str:
    """A value as a query parameter writes it: text as it is, a number as the source reads
    one: a float that is a whole number as the integer's digits (JSON writes 1e16 as
    `1e+16`, which a source reading integers refuses), any other number as Python writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return _stored(value)


def _shown(value: Any) -> str:
    text = _stored(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# How text may be ordered by the source: as it is, as a collation that ignores case and
# accents orders it, or, for numbers written as text ("id": "10"), as those numbers.
EXACT, FOLDED, NUMERIC = "exact", "folded", "numeric"
_NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _in_some_order(values: list[Any]) -> bool:
    return any(_out_of_order(values, mode) is None for mode in (EXACT, FOLDED, NUMERIC))


def _out_of_order(values: list[Any], mode: str) -> int | None:
    """The index of the first value that moves against the direction the values before it
    took (per position, for lists); None when they keep to one. Values that cannot be
    compared with the one before are passed over."""
    directions: dict[int, int] = {}
    for at in range(1, len(values)):
        step = _step(values[at - 1], values[at], mode)
        if step is None or not step[1]:
            continue
        position, sign = step
        if directions.setdefault(position, sign) != sign:
            return at
    return None


def _step(before: Any, after: Any, mode: str) -> tuple[int, int] | None:
    """Where and which way `after` moves from `before`: (position, 1 up, -1 down or 0 the
    same); None when they cannot be compared."""
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return None
        for position, pair in enumerate(zip(before, after, strict=True)):
            sign = _scalar_step(*pair, mode)
            if sign is None:
                return None
            if sign:
                return position, sign
        return 0, 0
    sign = _scalar_step(before, after, mode)
    return None if sign is None else (0, sign)


def _scalar_step(before: Any, after: Any, mode: str) -> int | None:
    if _is_number(before) and _is_number(after):
        return (after > before) - (after < before)
    if isinstance(before, str) and isinstance(after, str):
        if mode == FOLDED:
            before, after = _folded(before), _folded(after)
        elif mode == NUMERIC and _NUMBER_TEXT.fullmatch(before) and _NUMBER_TEXT.fullmatch(after):
            before, after = Decimal(before), Decimal(after)
        return (after > before) - (after < before)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _folded(text: str) -> str:
    """Text as a collation that ignores case and accents orders it."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
