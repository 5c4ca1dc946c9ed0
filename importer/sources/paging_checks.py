"""Checks that a REST source's paging neither skips nor repeats records. Some sources page in
ways that lose records without an error, and the import would end DONE without them, or that
never reach an end:

* A page-number source that serves fewer records than asked may count its pages by the size
  asked for all the same, and so skip records between them: a short page followed by more is
  checked once by asking for the next page at the size served.
* Next links (next-URL and Link-header paging) are followed as the source wrote them. A short
  page whose link moves an offset by the size asked for rather than by the records served is
  checked once, the same way (and so is a cursor that is such an offset): a source that
  counts its offsets before cutting the size skips the records it left out of every page.
* A source read by cursor, by links or in one request whose first page is also its last,
  though the answer says it holds more records (its total path, or a total under a usual
  name: `total`, `totalCount`, `count`; a header only when the total path names it), is not
  paged as configured: its first page alone would end DONE.
* A source that ignores the offset, one whose pages start before the first page set, and one
  that answers its last page again for any page past its end would repeat pages or leave some
  out: each fails the page, naming what to set.

A check asks the source a few requests at most, only where an answer shows the sign, and
fails the page only on what it can tell. The checks of one reader are the `PagingChecks` its
`RestJsonSource` holds (`rest.py`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from importer.sources import next_page
from importer.sources.base import SourceError
from importer.sources.totals import header_named, told_in
from importer.sources.urls import moved_by, moved_number, with_query

# Fields that most often name a record, looked for in this order.
NAMING_FIELDS = ("id", "uuid", "guid", "key", "sys_id", "serial", "serial_number", "serialNumber")


class PagingChecks:
    """The checks of one reader, sent through its `RestJsonSource`."""

    def __init__(self, source) -> None:
        self.source = source
        # The last page-number page this reader read: (number, first record, last, count).
        self._last_numbered_page: tuple[int, dict, dict, int] | None = None
        # Next-link paging: whether this reader asked if a short page's link skips records.
        self._links_checked = False

    def first_page_holds_all(self, response: Any, document: Any, records: list[dict]) -> None:
        """A source read by cursor, by links or in one request whose first page is also its
        last, though the answer says the source holds more records (its total path, or a
        total under a usual name): the paging is not the source's, and the import would end
        DONE with that first page alone. A total path set is the only total looked at: a
        usual name that counts something else (a sum, the records before a filter) is
        then not taken for the records' count."""
        source = self.source
        config = source.config
        told = source._total(response, document)
        where = f"'{config.total_path}'"
        if header_named(config.total_path):
            where = told_in(config.total_path)
        if told is None:
            if config.total_path:
                return
            found = next_page.total_told(document, config.records_path)
            if found is None:
                return
            where, told = f"'{found[0]}'", found[1]
        if told <= len(records):
            return
        if config.pagination == "none":
            held = f"its one answer held {len(records)}"
            what = "choose the paging style the source uses: it pages its answers"
        else:
            at = (
                "in its Link header"
                if config.pagination == "link_header"
                else f"at '{config.cursor_path}'"
            )
            held = f"its first page held {len(records)}, with no next page {at}"
            what = (
                "set the paging to what the source uses (the next-page path to where its "
                "answers keep the next page, or offset or page numbers if it takes them)"
            )
        otherwise = (
            ""
            if config.total_path
            else f". If {where} counts something else, set the total path to where the "
            "answers count their records"
        )
        raise source.http.error(
            f"says it holds {told} records ({where}) but {held}: {what}. The import stops "
            f"rather than end DONE without the other {told - len(records)}{otherwise}",
            kind="config",
        )

    def offset_followed(self, first: list[dict]) -> None:
        """A source that answered more than a page may ignore the offset too, and then serve
        its first records as every page (each page would repeat them). One request tells."""
        source = self.source
        answer = source._read_after_short(
            source._numbered_url(source.config.offset_param, source.page_size)
        )
        if answer and answer[2] and answer[2][0] == first[0] != first[source.page_size]:
            raise source.http.error(
                f"ignores the '{source.config.offset_param}' parameter: asked for the records "
                f"from {source.page_size} on, it answered the ones from 0 again. If it answers "
                "everything at once, choose 'No paging (one request)'; else check the paging "
                "settings",
                kind="ignores_offset",
            )

    def pages_counted_as_served(
        self, page: int, records: list[dict], following: list[dict]
    ) -> None:
        """A short page followed by more: the source cuts the page size it is asked for. Most
        count their pages by the size they serve; one that counts them by the size asked for
        (an offset computed before the cap) starts each page past the records it left out of
        the one before, which no page then holds. Asked for the next page at the size it
        served, such a source answers a record neither page holds. One request, once per
        reader, and only for a source that serves short pages.

        Records are told apart by a field that names each (`_naming_field`): whole, a record
        may differ from one request to the next (a last-seen time, a signed link). When no
        field names them, or the source refuses the request (some take only a few page
        sizes), nothing can be told, and nothing is failed."""
        source = self.source
        served = len(records)
        url = with_query(
            source._numbered_url(source.config.page_param, page + 1),
            {source.config.limit_param: served},
        )
        try:
            answer = source._read_after_short(url)
        except SourceError:
            return
        if answer is None:
            return
        name = _unread_record_named_by([*records, *following], answer[2])
        if name is None:
            return
        raise source.http.error(
            f"serves at most {served} records a page when asked for {source.page_size} "
            f"('{source.config.limit_param}'), yet counts its pages by {source.page_size}: page "
            f"{page + 1} starts past records that page {page} left out (by their '{name}'), "
            f"and no page would hold them. Set the page size to {served} (or less), or use "
            "offset paging",
            kind="pages_skip_records",
        )

    def links_moved_as_served(self, url: str, next_cursor: str, records: list[dict]) -> None:
        """A short page whose next link moves an offset (any whole-number parameter) by the
        size asked for: the source may cut the size yet count its offsets by the size asked
        for, and then the next page starts past the records this one left out, which no page
        holds. Asked for the link with that offset moved by the records served instead, such
        a source answers a record neither page holds; one that filters its pages after
        reading them (served fewer, yet skipped nothing) answers records the pages hold.
        A link that moves more than one parameter so (an offset under two names, `offset`
        and `start`; a page size under the source's own name, `per_page=25` where `limit`
        was sent) is asked about each in turn: which one the source reads, the link does
        not say, and the one it does not read would answer the next page again.
        A link moved by the records served, a page number and a cursor token that is no
        such number are not asked about. A request for the link and one for each such
        parameter, once per reader, and only for a source that serves short pages.

        Records are told apart as for page numbers (`pages_counted_as_served`); when
        nothing can be told, nothing is failed."""
        if self._links_checked:
            return
        source = self.source
        limit = source.config.limit_param
        asked = dict(parse_qsl(urlsplit(url).query)).get(limit, "") if limit else ""
        if not (asked.isascii() and asked.isdigit()) or not 0 < len(records) < int(asked):
            return
        served = len(records)
        try:
            link = source._url(next_cursor)
            moved = moved_by(url, link, int(asked), ignore=limit)
            if not moved:
                return
            self._links_checked = True
            following = source._read_after_short(link, after_first=True)
        except SourceError:
            return
        if following is None or not following[2]:
            return
        for name, start in moved:
            try:
                answer = source._read_after_short(
                    moved_number(link, name, start + served), after_first=True
                )
            except SourceError:
                continue
            if answer is None:
                continue
            name_field = _unread_record_named_by([*records, *following[2]], answer[2])
            if name_field is not None:
                raise source.http.error(
                    f"serves at most {served} records a page when asked for {asked} "
                    f"('{limit}'), yet its next link moves '{name}' by {asked}: the next page "
                    f"starts past records this page left out (by their '{name_field}'), and "
                    f"no page would hold them. Set the page size to {served} (or less)",
                    kind="pages_skip_records",
                )

    def no_page_before(self, page: int, sign: str, records: list[dict]) -> None:
        """The first page whose answer says a page comes before it: many APIs number their
        pages from 0 (Spring), and read from 1 the import would end DONE without page 0. The
        page before is asked for, to be sure: answered empty, with an error, or with the
        first page again, it stops nothing. Without such a sign it is not asked for: some
        1-based APIs answer page 0 with their last page, others with their first."""
        if not sign:
            return
        source = self.source
        try:
            answer = source._read(source._numbered_url(source.config.page_param, page - 1))
        except SourceError:
            return
        earlier = answer[2]
        if not earlier or (records and (earlier[0], earlier[-1]) == (records[0], records[-1])):
            return
        raise source.http.error(
            f"seems to number its pages from {page - 1}: asked for page {page}, the first "
            f"page set, {sign}, and page {page - 1} holds other records. Set the first page "
            f"to {page - 1} (Paging), or page {page - 1}'s records would be left out",
            kind="pages_start_earlier",
        )

    def not_repeated(self, unit: str, number: int, records: list[dict]) -> None:
        """Pages past the end of a source that answers its last page for any page number or
        offset after it (Django's `Paginator.get_page` does; some APIs clamp the offset)
        repeat one another: with no empty page to end on, paging would go on to
        IMPORT_MAX_PAGES, sending that page every time. `unit`: "page" or "offset"."""
        seen = self._last_numbered_page
        self._last_numbered_page = (number, records[0], records[-1], len(records))
        if seen is None or seen[0] == number or seen[1:] != self._last_numbered_page[1:]:
            return
        other = "Use cursor paging" if unit == "offset" else "Use offset or cursor paging"
        raise self.source.http.error(
            f"answered {unit} {number} with the same records as {unit} {seen[0]}: it seems "
            f"to answer its last page again for any {unit} past its end (or to ignore the "
            f"{unit}), so its end cannot be found. {other} if the source offers it, or have "
            "it answer an empty list (or 404) past its last page",
            kind="repeats_pages",
        )


def _naming_field(read: list[dict], answer: list[dict]) -> str | None:
    """A field every record has, as a plain value, that no two records read share: what
    tells the records apart; None when there is none."""
    for name in NAMING_FIELDS:
        values = [record.get(name) for record in (*read, *answer)]
        if not all(isinstance(value, (str, int)) and value != "" for value in values):
            continue
        if len(set(values[: len(read)])) == len(read):
            return name
    return None


def _unread_record_named_by(read: list[dict], answer: list[dict]) -> str | None:
    """The field that names the records, when `answer` holds one `read` does not (a record
    no page read holds); None when it holds none, or when no field tells them apart."""
    name = _naming_field(read, answer)
    if name is None:
        return None
    seen = {record[name] for record in read}
    return None if all(record[name] in seen for record in answer) else name
