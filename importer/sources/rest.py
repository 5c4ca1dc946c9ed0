"""REST/JSON sources: a GET per page, in any of the paging styles real APIs use.

The cursor stored with a chunk is what fetches that page again: the offset (offset paging), the
page number (page paging), the source's opaque cursor (cursor paging) or the full URL of the
page (next-URL and Link-header paging). Full URLs carry their own query; `extra_params` and the
page size that a next URL leaves out are added to it (HubSpot's links drop `properties` and
`limit`, which left every later page with empty attributes, ten records at a time), never
replacing what the link asks for. A parameter written into the source URL itself goes with the
first request only, for a source whose links must be followed as they are.
An API key sent as a query parameter is removed from stored URLs and added to each request.

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
  to find. A short page is checked by asking for the next one.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from django.utils.crypto import salted_hmac

from importer.redaction import redact, secret_forms, secrets_of
from importer.sources import limits
from importer.sources.base import Page, SourceError, config_error, number_cursor
from importer.sources.rules import cursor_path_problem
from importer.sources.transport import ACCESS_TOKEN_MARK, SourceHttp
from importer.sources.urls import DEFAULT_PORTS, origin, public_url, with_query

PAGINATIONS = ("offset", "page", "cursor", "next_url", "link_header", "none")
# An error answer to the request after a short page means "nothing here" (the source's end).
PAST_THE_END_STATUSES = frozenset({400, 404, 416, 422})
# ... but these are also how sources refuse to page deeper than a limit of theirs.
DEPTH_LIMIT_STATUSES = frozenset({400, 422})
_MISSING = object()
# How a credential of the source found in a next URL is stored: a keyed digest of it, so the
# stored cursor names the credential without holding it (an OAuth2 access token is stored as
# transport.ACCESS_TOKEN_MARK).
_SECRET_MARK = re.compile(r"__secret-[0-9a-f]{20}__")


def _step(value: Any, key: str) -> Any:
    """One step down a dotted path: a key of an object or an index into a list."""
    if isinstance(value, dict):
        return value.get(key, _MISSING)
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return value[int(key)]
    return _MISSING


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path, or None when the document has nothing there.

    A key may hold dots itself: OData sources (Microsoft Graph, Dynamics, SharePoint) answer
    their next link as "@odata.nextLink", which read as two steps would be missed, ending the
    import after its first page. At each step the longest run of parts that names a key wins."""
    value = _walk(document, [part for part in path.split(".") if part])
    return None if value is _MISSING else value


def _walk(value: Any, parts: list[str]) -> Any:
    if not parts:
        return value
    if isinstance(value, dict):
        for end in range(len(parts), 1, -1):  # "@odata.nextLink" before "@odata" / "nextLink"
            joined = ".".join(parts[:end])
            if joined in value:
                found = _walk(value[joined], parts[end:])
                if found is not _MISSING:
                    return found
    step = _step(value, parts[0])
    return _MISSING if step is _MISSING else _walk(step, parts[1:])


def select_records(document: Any, path: str, source_name: str) -> list[dict]:
    """The list of records at a dotted path (the document itself when the path is empty).

    A path ending in "?" ("items?") says the source leaves the list out when it is empty, as
    protobuf's JSON (Google's APIs) writes one: only the operator can say so, for an answer
    without its list is otherwise an error (a spent quota answering 200 in a shape of its
    own), which taken for an empty page would end the import without the rest."""
    optional = path.endswith("?")
    path = path.removesuffix("?")
    keys = [part for part in path.split(".") if part]
    value = document
    walked: list[str] = []
    for key in keys:
        parent = value
        walked.append(key)
        value = _step(value, key)
        if value is _MISSING:
            erring = next((answer for answer in (parent, document) if _says_error(answer)), None)
            if erring is not None:
                raise SourceError(
                    f"source '{source_name}' answered an error instead of its records "
                    f"('{path}'): {_excerpt(erring)}. Check what it says (its credentials, "
                    "permissions or a quota); the import stops rather than end without the rest",
                    kind="bad_records",
                )
            if optional and len(walked) == len(keys) and isinstance(parent, dict):
                return []  # the list itself left out: no records here
            # Only the list itself may be left out, and only where no other list stands.
            left_out = len(walked) == len(keys) and not (  # no other list of records there
                isinstance(parent, dict)
                and any(
                    isinstance(value, list) and value and isinstance(value[0], dict)
                    for value in parent.values()
                )
            )
            hint = (
                ". If the source leaves the list out when it has no records (protobuf's "
                f"JSON, as Google's APIs write it), end the selector with '?' ('{path}?')"
                if left_out
                else ""
            )
            raise SourceError(
                f"source '{source_name}' answered without '{'.'.join(walked)}': the records "
                f"selector '{path}' matches nothing{_what_is_there(parent, walked[:-1])}{hint}",
                kind="bad_records",
            )
    if value is None:  # the key is there, its list empty: Go writes an empty slice as null
        return []
    if not isinstance(value, list):
        where = f"'{path}'" if path else "the answer"
        raise SourceError(
            f"source '{source_name}': {where} is not a list of records but "
            f"{type(value).__name__}: check the records selector{_what_is_there(value, walked)}",
            kind="bad_records",
        )
    for number, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            raise SourceError(
                f"source '{source_name}': record {number} is a {type(record).__name__}, "
                "not a JSON object",
                kind="bad_records",
            )
    return value


# Keys and values of an answer that reports an error rather than a page (a 200 that is no
# page, in the shapes APIs write them).
# ("message" and "detail" are left out: many answers carry one, "success" and all.)
_ERROR_KEYS = frozenset(
    {
        "error",
        "errors",
        "errormessages",
        "errcode",
        "error_code",
        "fault",
        "faultstring",
        "error_message",
        "error_description",
    }
)


# An answer of these keys alone, with a message, is a message: an error unless it says
# success (`{"code": 0, "message": "success"}`).
_MESSAGE_KEYS = frozenset({"message", "detail", "code", "status", "success"})


def _says_error(answer: Any) -> bool:
    """Whether an answer reports an error: an error-named key with a value that says one
    (`"errors": []`, `"errcode": 0` and `"error": null` say none), an error status,
    `"success": false`, or nothing but a message."""
    if not isinstance(answer, dict):
        return False
    if str(answer.get("status", "")).lower() in ("error", "fail", "failed"):
        return True
    if answer.get("success") is False or answer.get("ok") is False:  # Slack's "ok": false
        return True
    if any(
        str(key).lower() in _ERROR_KEYS and value not in (None, "", 0, "0", False, [], {})
        for key, value in answer.items()
    ):
        return True
    keys = {str(key).lower() for key in answer}
    said_success = answer.get("code") in (0, "0") or answer.get("success") is True
    return bool(keys & {"message", "detail"}) and keys <= _MESSAGE_KEYS and not said_success


def _excerpt(answer: dict, limit: int = 300) -> str:
    """An error answer as the source wrote it, credentials masked, cut to `limit` characters."""
    text = redact(json.dumps(answer, ensure_ascii=False, default=str))
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _what_is_there(value: Any, walked: list[str]) -> str:
    """What an object on the way to the records holds, to choose the selector from: its keys,
    those that hold lists first (names only: no value of the source's is shown)."""
    if not isinstance(value, dict) or not value:
        return ""
    where = f"'{'.'.join(walked)}'" if walked else "the answer"
    keys = sorted(value, key=lambda key: not isinstance(value[key], list))
    shown = ", ".join(
        f"{key} (a list)" if isinstance(value[key], list) else str(key) for key in keys[:12]
    )
    more = f" and {len(keys) - 12} more" if len(keys) > 12 else ""
    return f" ({where} holds {shown[:400]}{more})"


def cursor_for(config, index: int) -> str | None:
    """Where page `index` starts, when the paging style says so without reading the pages.

    Offset and page-number paging do; the other styles learn it only from the page before.
    """
    if config.pagination == "offset":
        return str(index * config.page_size) if index else ""
    if config.pagination == "page":
        return str(config.first_page + index) if index else ""
    return None


# Where an answer says where its pages start: Spring's `first`, `hasPrevious` (and GraphQL's
# pageInfo), and a link to the first page (JSON:API, HAL, Laravel, Link headers). A link to
# the page before is no sign: some 1-based APIs link page 0 from page 1 without checking.
_PAGING_HOLDERS = ("links", "_links", "paging", "pagination", "meta", "page", "pageInfo")
_HAS_PREVIOUS_KEYS = ("hasPrevious", "hasPreviousPage", "has_previous", "has_previous_page")
_FIRST_LINK_KEYS = ("first", "first_page_url", "firstPage", "first_url")


def says_page_before(response: Any, document: Any, page_param: str, page: int) -> str:
    """What in the answer to page `page` says a page comes before it ("" when nothing does):
    it says it is not the first (`"first": false`, `"hasPrevious": true`), or its link to the
    first page asks for an earlier page number."""

    def earlier_page(link: Any) -> bool:
        link = link.get("href") if isinstance(link, dict) else link
        if not isinstance(link, str):
            return False
        asked = parse_qs(urlsplit(link).query).get(page_param, [""])[0]
        return asked.isdigit() and int(asked) < page

    for link in response.links.values():
        if "first" in str(link.get("rel", "")).lower().split() and earlier_page(link.get("url")):
            return "its Link header's first page has an earlier number"
    if not isinstance(document, dict):
        return ""
    holders = [document, *(document.get(key) for key in _PAGING_HOLDERS)]
    for holder in filter(lambda value: isinstance(value, dict), holders):
        if holder.get("first") is False:
            return 'its answer says "first": false'
        if any(holder.get(key) is True for key in _HAS_PREVIOUS_KEYS):
            return "its answer says it has a previous page"
        if any(earlier_page(holder.get(key)) for key in _FIRST_LINK_KEYS):
            return "its link to the first page has an earlier number"
    return ""


def _link_to_next(response: Any) -> str | None:
    """The Link header's next page: relation types are case-insensitive and a link may have
    several (`rel="next nofollow"`, RFC 8288), where `requests` keys links by the raw text."""
    for link in response.links.values():
        if "next" in str(link.get("rel", "")).lower().split():
            return link.get("url")
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

    def fetch_page(self, cursor: str) -> Page:
        self.http.begin()  # every request of this page shares one time budget
        if self.config.pagination == "offset":
            return self._offset_page(cursor)
        if self.config.pagination == "page":
            return self._numbered_page(cursor)
        url = self._url(cursor)
        response, document, records = self._read(url)
        next_cursor = self._next_cursor(cursor, url, response, document, records)
        return Page(records=records, next_cursor=next_cursor, total=self._total(document))

    def _read(self, url: str) -> tuple[Any, Any, list[dict]]:
        """One answer: the response, its JSON document and its records."""
        response = self.http.get(url)
        if response.status_code == 204:  # No Content: nothing here
            return response, None, []
        document = self.http.read_json(response)
        records = select_records(document, self.config.records_path, self.name)
        limits.check_record_count(len(records), refuse=self.http.error)
        return response, document, records

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
            self.full_page_records = len(records)
        return Page(records=records, next_cursor=following, total=total)

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
                return _adding_missing(
                    self._usable(self._on_the_source(cursor)), {**extra, **self._limit}
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
            value = self._at_cursor_path(document, records)
            if value is None or value == "" or value is False:
                return None
            if str(value) == cursor:
                if not records:
                    return None
                raise self._endless(f"'{config.cursor_path}'")
            return str(value)
        if config.pagination == "next_url":
            value = self._at_cursor_path(document, records)
            where = f"'{config.cursor_path}'"
        else:
            value = _link_to_next(response)
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

    def _at_cursor_path(self, document: Any, records: list[dict]) -> Any:
        """What the answer holds at the next-page path: None where it holds nothing.

        A path that finds nothing in an answer that still leads on (a next cursor or link
        under another name, a "has more" flag set) is a wrong path, not the source's end:
        ending there would mark the first page DONE as if it were all the source holds. A
        path at an object (HubSpot's `paging.next`) names the object holding the cursor."""
        config = self.config
        value = _walk(document, [part for part in config.cursor_path.split(".") if part])
        if value is _MISSING:
            if records:
                self._refuse_a_missed_next(document)
            return None
        if isinstance(value, dict) and isinstance(value.get("href"), str):
            return value["href"]  # a link object (JSON:API 1.1, HAL)
        if isinstance(value, (dict, list)):
            inside = ", ".join(str(key) for key in value) if isinstance(value, dict) else ""
            example = f" (e.g. '{config.cursor_path}.{next(iter(value))}')" if inside else ""
            raise SourceError(
                f"source '{self.name}' answered {'an object' if inside else 'a list'} at its "
                f"next-page path '{config.cursor_path}'"
                + (f" (holding {inside})" if inside else "")
                + f", not a cursor or link: set the path to the value inside it{example}",
                kind="config",
            )
        return value

    def _refuse_a_missed_next(self, document: Any) -> None:
        more = _find(document, _says_more)
        if more and more[1] is False:
            return  # the answer says it is the last page
        looks_like_next = (
            _looks_like_next_link
            if self.config.pagination == "next_url"
            else (_looks_like_next_cursor)
        )
        found = _find(document, looks_like_next)
        if not (found or more):
            return
        told = (
            f"answered {'a next link' if self.config.pagination == 'next_url' else 'a next cursor'}"
            f" at '{found[0]}'"
            if found
            else f"says it has more records ('{more[0]}' is true)"
        )
        raise SourceError(
            f"source '{self.name}' {told}, but its next-page path is "
            f"'{self.config.cursor_path}', which this answer does not have: set the path to "
            "where the answer keeps its next page, or the import would end after this page",
            kind="config",
        )

    def _endless(self, where: str) -> SourceError:
        return SourceError(
            f"source '{self.name}' gave the page it answered as the next one ({where}): it "
            "would never end, so the import stopped",
            kind="endless_source",
        )


# Keys that say whether more pages follow, and keys that name a next cursor besides those
# holding "next" (Zendesk's `after_cursor`, Elasticsearch's `_scroll_id`, S3's `Marker`).
_MORE_KEYS = frozenset({"hasmore", "more", "hasnext", "hasnextpage", "moreresults"})
_CURSOR_KEYS = frozenset({"after", "aftercursor", "cursor", "continuation", "scrollid", "marker"})


def _bare(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def _says_more(key: str, value: Any) -> bool:
    return _bare(key) in _MORE_KEYS and isinstance(value, bool)


def _looks_like_next_cursor(key: str, value: Any) -> bool:
    """A value under a cursor's name: `next_cursor`, `nextPageToken`, `after_cursor`, not
    `nextSyncToken` (what a last page of Google's gives for later changes)."""
    bare = _bare(key)
    named = ("next" in bare or bare in _CURSOR_KEYS) and "sync" not in bare
    return named and isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


def _looks_like_next_link(key: str, value: Any) -> bool:
    """A URL under a next link's name: `next`, `nextLink`, `next_page_url`."""
    return (
        "next" in key.lower()
        and isinstance(value, str)
        and value.startswith(("http://", "https://", "/", "?"))
    )


def _find(document: Any, wanted, prefix: str = "", depth: int = 3) -> tuple[str, Any] | None:
    """The dotted path and value of the first entry `wanted(key, value)` picks, within a few
    levels of the answer's objects; None when there is none."""
    if not isinstance(document, dict) or depth == 0:
        return None
    nested = []
    for key, value in document.items():
        if wanted(str(key), value):
            return f"{prefix}{key}", value
        if isinstance(value, dict):
            nested.append((key, value))
    for key, value in nested:
        found = _find(value, wanted, f"{prefix}{key}.", depth - 1)
        if found:
            return found
    return None


def _adding_missing(url: str, params: dict[str, Any]) -> str:
    """`url` with the `params` its query leaves out appended; the link's own query, opaque
    tokens and all, is left byte for byte as the source wrote it."""
    query = urlsplit(url).query
    present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    missing = {name: value for name, value in params.items() if name not in present}
    if not missing:
        return url
    head, _, fragment = url.partition("#")
    joiner = "&" if query else ("" if head.endswith("?") else "?")
    added = f"{head}{joiner}{urlencode(missing, doseq=True)}"
    return f"{added}#{fragment}" if fragment else added


def _secret_mark(form: str) -> str:
    digest = salted_hmac("assets-sync.cursor-credential", form, algorithm="sha256").hexdigest()
    return f"__secret-{digest[:20]}__"
