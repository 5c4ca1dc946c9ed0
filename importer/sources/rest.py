"""REST/JSON sources: a GET per page, in any of the paging styles real APIs use, or a POST
with a JSON body (a GraphQL query, a search API's query) paged by offset, page or cursor.

The cursor stored with a chunk is what fetches that page again: the offset (offset paging), the
page number (page paging), the source's opaque cursor (cursor paging) or the full URL of the
page (next-URL and Link-header paging). Full URLs carry their own query; `extra_params` and the
page size that a next URL leaves out are added to it (HubSpot's links drop `properties` and
`limit`, which left every later page with empty attributes, ten records at a time), never
replacing what the link asks for. A parameter written into the source URL itself goes with the
first request only, for a source whose links must be followed as they are.
An API key sent as a query parameter is removed from stored URLs and added to each request.
With POST the paging values go into the body instead of the query (`request_body.py`), a
GraphQL answer's `errors` fail the page (or, when they say it is throttled, make it wait as a
429 does: `graphql.py`), and a cursor whose `pageInfo` says there is no next page is the end.

Offset and page-number sources are read in parallel from cursors computed in advance, so their
pages must never depend on what the source says about its page size. Many APIs cut `limit` to a
maximum of their own without saying so, some ignore it, and without a limit parameter the
server chooses. Hence:

* A short page (fewer records than asked) is never taken for the end: only an empty answer
  says the source ends, or an error answer to a request past the first page (some APIs answer
  past their end with 404 or 400 rather than an empty list). A 400 or 422 may also be a limit
  on how deep the source can be paged (a search index's result window): it is taken for the
  end only when the record before it is missing too, or ended a short page; right after a
  full page it fails the import, unless a total will tell whether records are missing.
* Nor is the source's total: it is checked against the records received once the end is
  found (`services/totals.py`). A total lower than what the source holds would otherwise end
  the import early, DONE with records missing.
* An offset page owns the records from its offset up to the next page's offset: when the
  source answers with fewer, the same page asks on from where the answer stopped until it has
  them all or the source ends; records beyond the page's share (a source that ignores the
  limit) are left to the page they belong to. Every record arrives exactly once whatever page
  size the source really serves.
* Page numbers are the source's own pages, whatever their size: nothing to fill, only the end
  to find. A short page is checked by asking for the next one, and once by asking for that
  one at the size served: a source that counts its pages by the size asked for, though it
  serves fewer, skips records between them.
* Next links (next-URL and Link-header paging) are followed as the source wrote them. A short
  page whose link moves an offset by the size asked for rather than by the records served is
  checked once, the same way (and so is a cursor that is such an offset): a source that
  counts its offsets before cutting the size skips the records it left out of every page.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

from django.utils.crypto import salted_hmac

from importer.redaction import secret_forms, secrets_of
from importer.sources import graphql, limits, next_page, request_body
from importer.sources.answers import link_to_next, lookup, says_page_before, select_records
from importer.sources.base import Page, SourceError, config_error, number_cursor
from importer.sources.rules import (
    cursor_path_problem,
    paging_params,
    post_paging_problem,
    request_body_problem,
)
from importer.sources.transport import ACCESS_TOKEN_MARK, SourceHttp
from importer.sources.urls import (
    DEFAULT_PORTS,
    moved_by,
    origin,
    params_left_out,
    public_url,
    with_missing_params,
    with_query,
)

PAGINATIONS = ("offset", "page", "cursor", "next_url", "link_header", "none")
# An error answer to the request after a short page means "nothing here" (the source's end).
PAST_THE_END_STATUSES = frozenset({400, 404, 416, 422})
# ... but these are also how sources refuse to page deeper than a limit of theirs.
DEPTH_LIMIT_STATUSES = frozenset({400, 422})
# How a credential of the source found in a next URL is stored: a keyed digest of it, so the
# stored cursor names the credential without holding it (an OAuth2 access token is stored as
# transport.ACCESS_TOKEN_MARK).
_SECRET_MARK = re.compile(r"__secret-[0-9a-f]{20}__")


def cursor_for(config, index: int) -> str | None:
    """Where page `index` starts, when the paging style says so without reading the pages.

    Offset and page-number paging do; the other styles learn it only from the page before.
    """
    if config.pagination == "offset":
        return str(index * config.page_size) if index else ""
    if config.pagination == "page":
        return str(config.first_page + index) if index else ""
    return None


class RestJsonSource:
    """A JSON API read page by page; one page becomes one chunk."""

    def __init__(self, import_source) -> None:
        source = import_source
        self.name = source.name
        self.config = source
        # The credentials sent to the source (never the Assets token or the webtrigger's).
        sent = set(secrets_of(source)) - {source.assets_token, source.webtrigger_token}
        self._secret_forms = secret_forms(sorted(sent))
        if not source.source_url:
            raise config_error(source, "it has no source URL")
        if source.pagination not in PAGINATIONS:
            raise config_error(source, f"unknown pagination '{source.pagination}'")
        if cursor_path_problem(source.pagination, source.cursor_path):
            raise config_error(source, cursor_path_problem(source.pagination, source.cursor_path))
        if not isinstance(source.extra_params or {}, dict):
            raise config_error(source, "extra parameters must be a JSON object")
        self.posts = source.request_method == "POST"
        if self.posts:
            settings = {name: getattr(source, name) for name in _POST_SETTINGS}
            problem = post_paging_problem("POST", source.pagination)
            problem = problem or request_body_problem(settings)
            if problem:
                raise config_error(source, problem)
            # Where each paging value goes in the body, and whether it is a number.
            self._body_paths = {
                path: what != "the cursor" for what, path in paging_params(settings).items()
            }
            # Where every request goes: the paging leaves the query as written.
            self._post_url = with_query(source.source_url, dict(source.extra_params or {}))
        self.page_size = max(1, source.page_size)
        self.http = SourceHttp(source)
        # Page-number paging: how many records a page held that turned out not to be the last
        # (the source's real page size, when it cuts the limit), once this reader saw one.
        self.full_page_records: int | None = None
        # Offset paging: the records in this reader's latest answer, and the most any answer
        # before it held (what the source serves at once, when it cuts the limit).
        self._latest_answer = 0
        self._fullest_before = 0
        # The last page-number page this reader read: (number, first record, last, count).
        self._last_numbered_page: tuple[int, dict, dict, int] | None = None
        # Next-link paging: whether this reader asked if a short page's link skips records.
        self._links_checked = False

    def fetch_page(self, cursor: str) -> Page:
        self.http.begin()  # every request of this page shares one time budget
        if self.config.pagination == "offset":
            return self._offset_page(cursor)
        if self.config.pagination == "page":
            return self._numbered_page(cursor)
        url = self._url(cursor)
        try:
            response, document, records = self._read(url)
        except SourceError as error:
            raise self._explained_refusal(error, cursor) from None
        next_cursor = self._next_cursor(cursor, url, response, document, records)
        if next_cursor and not self._links_checked:
            self._check_links_moved_as_served(url, next_cursor, records)
        return Page(records=records, next_cursor=next_cursor, total=self._total(document))

    def _explained_refusal(self, error: SourceError, cursor: str) -> SourceError:
        """A next page the source pointed to itself, refused as a bad request or as not
        there: the usual hint ("check the query parameters") would mislead. Either we added
        parameters its link left out (a link that carries its own state), or the cursor or
        link expired (Salesforce's query locator, a scroll id) while its pages were read."""
        if error.status not in (400, 404, 410, 422) or not cursor:
            return error
        added = {}
        if self.config.pagination in ("next_url", "link_header"):
            added = params_left_out(self._on_the_source(cursor), self._params_for_next_links)
        if added and error.status in (400, 422):
            why = (
                f"The request added {', '.join(added)}, which the source's next link left "
                "out: if the source refuses them there, write them into the source URL "
                "instead (sent with the first request only)"
            )
        else:
            why = (
                "The source refused a next page it pointed to itself: such a cursor or link "
                "may expire while the pages are read (a query locator, a scroll id). Run "
                "the import again; if it fails here again, check the paging settings"
            )
        return SourceError(
            f"{error.message}. {why}",
            status=error.status,
            permanent=error.permanent,
            retry_after=error.retry_after,
            kind=error.kind,
        )

    @property
    def _params_for_next_links(self) -> dict[str, Any]:
        return {**(self.config.extra_params or {}), **self._limit}

    def _read(self, url: str) -> tuple[Any, Any, list[dict]]:
        """One answer: the response, its JSON document and its records."""
        response = self._send(url)
        if response.status_code == 204:  # No Content: nothing here
            return response, None, []
        document = self.http.read_json(response)
        if self.posts:
            self._refuse_graphql_errors(document, response)
        records = select_records(
            document, self.config.records_path, self.name, scrub=self.http.scrub
        )
        limits.check_record_count(len(records), refuse=self.http.error)
        return response, document, records

    def _send(self, url: str) -> Any:
        """The request for `url`: a GET, or a POST of the body with the paging values that
        `url`'s query holds moved into it, to the source URL and its extra parameters."""
        if not self.posts:
            return self.http.get(url)
        body = request_body.paging_moved_into_body(url, self.config.request_body, self._body_paths)
        return self.http.post(self._post_url, body)

    def _refuse_graphql_errors(self, document: Any, response: Any) -> None:
        graphql.check_errors(
            document, response.headers, refuse=self.http.error, scrub=self.http.scrub
        )

    def _read_past_first(self, url: str) -> tuple[Any, Any, list[dict]]:
        """An answer past the source's first page. A 404 there is taken for the end only
        when asked twice: a load balancer's passing 404 would end the import early, DONE
        without the records of that page and those after it."""
        try:
            return self._read(url)
        except SourceError as error:
            if error.status not in PAST_THE_END_STATUSES - DEPTH_LIMIT_STATUSES:
                raise
        return self._read(url)

    def _read_after_short(self, url: str) -> tuple[Any, Any, list[dict]] | None:
        """The answer to a request that follows a short page; None when the source answers it
        with an error that means there is nothing there."""
        try:
            return self._read(url)
        except SourceError as error:
            if error.status in PAST_THE_END_STATUSES:
                return None
            raise

    # --- offset and page-number paging -----------------------------------------------------

    @property
    def _limit(self) -> dict[str, int]:
        return {self.config.limit_param: self.page_size} if self.config.limit_param else {}

    def _numbered_url(self, param: str, number: int) -> str:
        extra = dict(self.config.extra_params or {})
        return with_query(self.config.source_url, {**extra, param: number, **self._limit})

    def _offset_page(self, cursor: str) -> Page:
        """The records from this page's offset up to the next page's, however many answers
        the source takes to give them."""
        start = self._number(cursor, 0)
        end = start + self.page_size
        records: list[dict] = []
        position, total = start, None
        last_answer: int | None = None  # records in this page's answer before
        while True:
            url = self._numbered_url(self.config.offset_param, position)
            try:
                answer = self._read_past_first(url) if position else self._read(url)
            except SourceError as error:
                # Past the first record, an error that means "nothing here" is the end.
                if not position or not self._ends_offsets(error, position, last_answer):
                    raise
                return Page(records=records, next_cursor=None, total=total)
            _, document, got = answer
            self._fullest_before = max(self._fullest_before, self._latest_answer)
            self._latest_answer = last_answer = len(got)
            if position == 0 and len(got) > self.page_size:
                self._check_offset_followed(got)
            if got:
                self._check_not_repeated("offset", position, got)
            told = self._total(document)
            total = told if told is not None else total
            kept = got[: end - position]
            records += kept
            position += len(kept)
            if not got:
                return Page(records=records, next_cursor=None, total=total)
            if position >= end:
                return Page(records=records, next_cursor=str(end), total=total)
            # A short answer: the source may serve fewer records than asked. Ask on.

    def _ends_offsets(self, error: SourceError, position: int, last_answer: int | None) -> bool:
        """Whether an error answer for the records from `position` on means the source ends
        there (`last_answer`: the records in this page's answer before it, if any)."""
        if error.status not in PAST_THE_END_STATUSES:
            return False
        if error.status not in DEPTH_LIMIT_STATUSES:
            return True
        where = f"record {position}"
        held, total = self._probe(position)
        if held:  # it has records there, and refused the page: a limit
            return self._depth_limit(error, where, certain=True)
        if last_answer is not None and last_answer < (self._fullest_before or self.page_size):
            return True  # a short answer before it: the end
        before, told = self._probe(position - 1)
        total = told if total is None else total
        if last_answer is None:  # the page's first answer: is the record before it there?
            if before is None and self._probe(0)[0] is not None:
                before = 0  # refused, though it serves one record at a time: past its end
            if before == 0:
                return True  # past the end: the record before is missing too
        if before and self._limit:
            # A result window counts offset + limit, and so may refuse the last record
            # asked for with one more. A source that ends there serves it alone.
            pair, _ = self._probe(position - 1, 2)
            if pair is not None and pair < 2:
                return True
            return self._depth_limit(error, where, certain=True)
        if total is not None:  # the source's own count settles it
            return total <= position or self._depth_limit(error, where, certain=True)
        return self._depth_limit(error, where)

    def _probe(self, position: int, count: int = 1) -> tuple[int | None, int | None]:
        """How many records the source serves from `position` when asked for `count` (None:
        it refused), and the total it tells with them. A result window counts offset + limit,
        so one record may come where a page may not."""
        url = with_query(
            self._numbered_url(self.config.offset_param, position),
            {self.config.limit_param: count} if self.config.limit_param else {},
        )
        answer = self._read_after_short(url)
        if answer is None:
            return None, None
        return len(answer[2]), self._total(answer[1])

    def _ends_numbers(self, error: SourceError, page: int) -> bool:
        """Whether an error answer for page `page` means the source ends before it."""
        if error.status not in PAST_THE_END_STATUSES:
            return False
        if error.status not in DEPTH_LIMIT_STATUSES:
            return True
        before = self._numbered_records(page - 1)
        if not before or self._looks_short(len(before)):
            return True
        if not self._limit and page - 1 > self.config.first_page:
            # No limit asked: a page is short next to the one before it.
            earlier = self.full_page_records or len(self._numbered_records(page - 2))
            if len(before) < earlier:
                return True
        elif not self._limit:
            return True  # one page, and no size to hold it to: no limit is that shallow
        return self._depth_limit(error, f"page {page}")

    def _numbered_records(self, page: int) -> list[dict]:
        answer = self._read_after_short(self._numbered_url(self.config.page_param, page))
        return answer[2] if answer else []

    def _depth_limit(self, error: SourceError, where: str, *, certain: bool = False) -> bool:
        """An error right after a full page: the source's end, or a limit on how deep it
        can be paged with the records after it left out (`certain`: it served a record
        there when asked for it alone). A total settles an uncertain case once every page is
        in (`services.totals`); without one, the import must not end DONE on a guess."""
        if self.config.total_path and not certain:
            return True
        cause = (
            "the source refuses to be paged that deep (it serves the record there, or the one "
            "before it, when asked for it alone, or counts more records than that)"
            if certain
            else "the source may refuse to be paged that deep (a search index's result "
            "window, an API's cap on results)"
        )
        advice = (
            ""
            if certain
            else f" If it rather ends there and answers {error.status} past its end, set its "
            "total path, so that the records received can be checked against it (a total "
            "the source caps as well, as a search index does at 10000, cannot tell)."
        )
        limit = SourceError(
            f"{error.message}. This came for {where}, right after a full page: {cause}, and "
            "the records after it would be missing. Narrow what it lists (extra parameters), "
            f"or page it in a style it allows further (cursor or next URL).{advice}",
            status=error.status,
            kind="depth_limit",
        )
        # Pages after it that the source served show it a passing error of this page, not a
        # limit (`chunks.chunk_error`): its own answer is what is told then.
        limit.answer = error.message
        raise limit

    def _check_offset_followed(self, first: list[dict]) -> None:
        """A source that answered more than a page may ignore the offset too, and then serve
        its first records as every page (each page would repeat them). One request tells."""
        answer = self._read_after_short(
            self._numbered_url(self.config.offset_param, self.page_size)
        )
        if answer and answer[2] and answer[2][0] == first[0] != first[self.page_size]:
            raise self.http.error(
                f"ignores the '{self.config.offset_param}' parameter: asked for the records "
                f"from {self.page_size} on, it answered the ones from 0 again. If it answers "
                "everything at once, choose 'No paging (one request)'; else check the paging "
                "settings",
                kind="ignores_offset",
            )

    def _numbered_page(self, cursor: str) -> Page:
        """One of the source's own pages; the end is an empty page, or a short page whose
        next page holds nothing."""
        config = self.config
        page = self._number(cursor, config.first_page)
        url = self._numbered_url(config.page_param, page)
        try:
            answer = self._read_past_first(url) if page > config.first_page else self._read(url)
        except SourceError as error:
            # Past the first page, an error that means "nothing here" is the source's end.
            if page <= config.first_page or not self._ends_numbers(error, page):
                raise
            return Page(records=[], next_cursor=None, total=None)
        response, document, records = answer
        total = self._total(document)
        if page == config.first_page > 0:  # an empty one too: a source of one page from 0
            sign = says_page_before(response, document, config.page_param, page)
            self._check_no_page_before(page, sign, records)
        if not records:
            return Page(records=records, next_cursor=None, total=total)
        self._check_not_repeated("page", page, records)
        following = str(page + 1)
        if self._looks_short(len(records)):
            answer = self._read_after_short(self._numbered_url(config.page_param, page + 1))
            if answer is None or not answer[2]:
                return Page(records=records, next_cursor=None, total=total)
            self._check_not_repeated("page", page + 1, answer[2])
            if self.full_page_records is None:
                self._check_pages_counted_as_served(page, records, answer[2])
            self.full_page_records = len(records)
        return Page(records=records, next_cursor=following, total=total)

    def _check_pages_counted_as_served(
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
        served = len(records)
        url = with_query(
            self._numbered_url(self.config.page_param, page + 1),
            {self.config.limit_param: served},
        )
        try:
            answer = self._read_after_short(url)
        except SourceError:
            return
        if answer is None:
            return
        name = _unread_record_named_by([*records, *following], answer[2])
        if name is None:
            return
        raise self.http.error(
            f"serves at most {served} records a page when asked for {self.page_size} "
            f"('{self.config.limit_param}'), yet counts its pages by {self.page_size}: page "
            f"{page + 1} starts past records that page {page} left out (by their '{name}'), "
            f"and no page would hold them. Set the page size to {served} (or less), or use "
            "offset paging",
            kind="pages_skip_records",
        )

    def _check_links_moved_as_served(self, url: str, next_cursor: str, records: list[dict]) -> None:
        """A short page whose next link moves an offset (any whole-number parameter) by the
        size asked for: the source may cut the size yet count its offsets by the size asked
        for, and then the next page starts past the records this one left out, which no page
        holds. Asked for the link with that offset moved by the records served instead, such
        a source answers a record neither page holds; one that filters its pages after
        reading them (served fewer, yet skipped nothing) answers records the pages hold.
        A link moved by the records served, a page number and a cursor token that is no
        such number are not asked about. Two requests, once per reader, and only for a
        source that serves short pages.

        Records are told apart as for page numbers (`_check_pages_counted_as_served`); when
        nothing can be told, nothing is failed."""
        limit = self.config.limit_param
        asked = dict(parse_qsl(urlsplit(url).query)).get(limit, "") if limit else ""
        if not (asked.isascii() and asked.isdigit()) or not 0 < len(records) < int(asked):
            return
        served = len(records)
        try:
            link = self._url(next_cursor)
            moved = moved_by(url, link, int(asked), ignore=limit)
            if moved is None:
                return
            self._links_checked = True
            name, start = moved
            following = self._read_after_short(link)
            answer = self._read_after_short(with_query(link, {name: start + served}))
        except SourceError:
            return
        if following is None or not following[2] or answer is None:
            return
        name_field = _unread_record_named_by([*records, *following[2]], answer[2])
        if name_field is None:
            return
        raise self.http.error(
            f"serves at most {served} records a page when asked for {asked} ('{limit}'), yet "
            f"its next link moves '{name}' by {asked}: the next page starts past records this "
            f"page left out (by their '{name_field}'), and no page would hold them. Set the "
            f"page size to {served} (or less)",
            kind="pages_skip_records",
        )

    def _check_no_page_before(self, page: int, sign: str, records: list[dict]) -> None:
        """The first page whose answer says a page comes before it: many APIs number their
        pages from 0 (Spring), and read from 1 the import would end DONE without page 0. The
        page before is asked for, to be sure: answered empty, with an error, or with the
        first page again, it stops nothing. Without such a sign it is not asked for: some
        1-based APIs answer page 0 with their last page, others with their first."""
        if not sign:
            return
        try:
            answer = self._read(self._numbered_url(self.config.page_param, page - 1))
        except SourceError:
            return
        earlier = answer[2]
        if not earlier or (records and (earlier[0], earlier[-1]) == (records[0], records[-1])):
            return
        raise self.http.error(
            f"seems to number its pages from {page - 1}: asked for page {page}, the first "
            f"page set, {sign}, and page {page - 1} holds other records. Set the first page "
            f"to {page - 1} (Paging), or page {page - 1}'s records would be left out",
            kind="pages_start_earlier",
        )

    def _check_not_repeated(self, unit: str, number: int, records: list[dict]) -> None:
        """Pages past the end of a source that answers its last page for any page number or
        offset after it (Django's `Paginator.get_page` does; some APIs clamp the offset)
        repeat one another: with no empty page to end on, paging would go on to
        IMPORT_MAX_PAGES, sending that page every time. `unit`: "page" or "offset"."""
        seen = self._last_numbered_page
        self._last_numbered_page = (number, records[0], records[-1], len(records))
        if seen is None or seen[0] == number or seen[1:] != self._last_numbered_page[1:]:
            return
        other = "Use cursor paging" if unit == "offset" else "Use offset or cursor paging"
        raise self.http.error(
            f"answered {unit} {number} with the same records as {unit} {seen[0]}: it seems "
            f"to answer its last page again for any {unit} past its end (or to ignore the "
            f"{unit}), so its end cannot be found. {other} if the source offers it, or have "
            "it answer an empty list (or 404) past its last page",
            kind="repeats_pages",
        )

    def _looks_short(self, count: int) -> bool:
        """Whether a page may be the last: it holds fewer records than asked, and fewer than
        a page this reader already saw followed by another (the size the source really
        serves when it cuts the limit)."""
        if not self._limit or count >= self.page_size:
            return False
        return self.full_page_records is None or count < self.full_page_records

    # --- other paging styles ---------------------------------------------------------------

    def _url(self, cursor: str) -> str:
        config = self.config
        base = config.source_url
        extra = dict(config.extra_params or {})
        if config.pagination == "cursor":
            position = {config.cursor_param: cursor} if cursor else {}
            return with_query(base, {**extra, **self._limit, **position})
        if config.pagination in ("next_url", "link_header"):
            if cursor:
                return with_missing_params(
                    self._usable(self._on_the_source(cursor)), self._params_for_next_links
                )
            return with_query(base, {**extra, **self._limit})
        return with_query(base, extra)

    def _number(self, cursor: str, default: int) -> int:
        meaning = f"a number, as {self.config.pagination} paging needs"
        return number_cursor(cursor, default=default, source_name=self.name, meaning=meaning)

    def _on_the_source(self, url: str, answered_at: str = "") -> str:
        """A next URL from the source, if it points to the source's own origin (host and
        port, whatever their case or a default port written out): never send the source's
        credentials elsewhere. A link to plain http from a source read over https (a service
        behind a TLS proxy builds its links from its own side of it) is followed over https,
        on the same host: the credentials never travel unencrypted. `answered_at`: the URL
        that gave the link, which a redirect may have taken elsewhere."""
        first, other = origin(self.config.source_url), origin(url)
        if other[0] == "http" and first[0] == "https" and other[1] == first[1]:
            parts = urlsplit(url)
            host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
            port = "" if other[2] == DEFAULT_PORTS["http"] else f":{other[2]}"
            url = urlunsplit(parts._replace(scheme="https", netloc=f"{host}{port}"))
            other = origin(url)
        upgrade = first[0] == "http" and other[0] == "https" and other[1] == first[1]
        if other == first or (upgrade and other[2] in (first[2], DEFAULT_PORTS["https"])):
            return url
        if answered_at and origin(answered_at) == other != first:
            raise SourceError(
                f"source '{self.name}' redirected to {public_url(answered_at)}, and its next "
                "links point there, another host than the source URL "
                f"({public_url(self.config.source_url)}): set the source URL to the address "
                "it redirects to (its next pages are not read elsewhere, where the source's "
                "credentials would not go)",
                kind="bad_cursor",
            )
        raise SourceError(
            f"source '{self.name}' pointed to its next page at {public_url(url)}, another "
            f"host than the source URL ({public_url(self.config.source_url)}): refusing to "
            "send the source's credentials there. If that is another name of the same "
            "service (its canonical host name), set the source URL to that host",
            kind="bad_cursor",
        )

    # --- where the next page starts --------------------------------------------------------

    def _next_cursor(
        self, cursor: str, url: str, response: Any, document: Any, records: list[dict]
    ) -> str | None:
        """Where the next page starts; None at the source's end.

        For these styles the end is a missing next, not an empty page: a filtered scan may
        answer an empty page that leads on to more. An empty page that points to itself is
        the end too; a page with records that does would never end."""
        config = self.config
        if config.pagination == "none":
            return None
        if config.pagination == "cursor":
            value = self._at_next_page_path(document, records, cursor)
            if value is None or value == "" or value is False:
                return None
            if self.posts and next_page.says_last_beside(document, config.cursor_path):
                return None  # GraphQL's last page: an endCursor, and hasNextPage false
            if str(value) == cursor:
                if not records:
                    return None
                raise self._endless(f"'{config.cursor_path}'")
            return str(value)
        if config.pagination == "next_url":
            value = self._at_next_page_path(document, records, cursor)
            where = f"'{config.cursor_path}'"
        else:
            value = link_to_next(response)
            where = 'its Link header (rel="next")'
        if not value:
            return None
        next_url = self._on_the_source(
            self._storable(urljoin(response.url, str(value))), answered_at=response.url
        )
        if next_url in (self._storable(url), cursor):
            if not records:
                return None
            raise self._endless(where)
        return next_url

    def _storable(self, url: str) -> str:
        """A URL fit to store as a cursor, and to show: no API key in its query, no
        user:password@, and a credential of the source that its path or a query value repeats
        (a next link signed with the key under a name of its own) replaced by a mark."""
        parts = urlsplit(self.http.without_key(url))
        pairs = parts.query.split("&") if parts.query else []
        for at, pair in enumerate(pairs):
            name, equals, value = pair.partition("=")
            pairs[at] = f"{name}{equals}{self._marked(value)}"
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(
            parts._replace(netloc=netloc, path=self._marked(parts.path), query="&".join(pairs))
        )

    def _marked(self, text: str) -> str:
        """`text` with each credential of the source replaced by a mark naming it, and the
        OAuth2 access token by a mark that stands for whichever token is current when the
        link is followed (the one issued now has expired by then, or another process reads
        the page)."""
        for form in self._secret_forms:
            text = text.replace(form, _secret_mark(form))
        if self.http.access_token:
            for form in secret_forms([self.http.access_token]):
                text = text.replace(form, ACCESS_TOKEN_MARK)
        return text

    def _usable(self, url: str) -> str:
        """A stored URL with the source's credentials and user:password@ put back. A mark
        whose credential the source no longer holds (changed during the import) stops the
        page: another secret is never put in its place."""
        forms = {_secret_mark(form): form for form in self._secret_forms}
        try:
            url = _SECRET_MARK.sub(lambda mark: forms[mark.group(0)], url)
        except KeyError:
            raise self.http.error(
                "its credentials changed during the import (a next link named one that is "
                "no longer set): start the import again",
                kind="credentials_changed",
            ) from None
        userinfo, at, _ = urlsplit(self.config.source_url).netloc.rpartition("@")
        if not at:
            return url
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    def _total(self, document: Any) -> int | None:
        if not self.config.total_path:
            return None
        value = lookup(document, self.config.total_path)
        if value is None:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SourceError(
                f"source '{self.name}': the total at '{self.config.total_path}' is not a "
                f"number ({str(value)[:50]!r})",
                kind="bad_records",
            ) from None

    def _at_next_page_path(self, document: Any, records: list[dict], cursor: str) -> Any:
        return next_page.value_at(
            document, records, config=self.config, cursor_sent=cursor, source_name=self.name
        )

    def _endless(self, where: str) -> SourceError:
        return SourceError(
            f"source '{self.name}' gave the page it answered as the next one ({where}): it "
            "would never end, so the import stopped",
            kind="endless_source",
        )


# The settings that say what a POST's body holds: the template, and the paging values.
_POST_SETTINGS = (
    "request_method",
    "request_body",
    "pagination",
    "limit_param",
    "offset_param",
    "page_param",
    "cursor_param",
)
# Fields that most often name a record, looked for in this order.
NAMING_FIELDS = ("id", "uuid", "guid", "key", "sys_id", "serial", "serial_number", "serialNumber")


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


def _secret_mark(form: str) -> str:
    digest = salted_hmac("assets-sync.cursor-credential", form, algorithm="sha256").hexdigest()
    return f"__secret-{digest[:20]}__"
