"""Offset and page-number paging: pages whose cursors are numbers computed in advance, and
finding the source's end among them.

Offset and page-number sources are read in parallel from cursors computed in advance, so their
pages must never depend on what the source says about its page size. Many APIs cut `limit` to a
maximum of their own without saying so, some ignore it, and without a limit parameter the
server chooses. Hence:

* A short page (fewer records than asked) is never taken for the end: only an empty answer
  says the source ends, or an error answer to a request past the first page (some APIs answer
  past their end with 404 or 400 rather than an empty list). A 400 or 422 may also be a limit
  on how deep the source can be paged (a search index's result window): it is taken for the
  end only when the record before it is missing too, or ended a short page; right after a
  full page it fails the import, unless a total is known that will tell whether records are
  missing (one told by an answer of this reader, or by the first page, asked again): a total
  path that finds nothing settles nothing.
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
  one at the size served (`paging_checks.py`).

Both readers are parts of a `RestJsonSource` (`rest.py`): they send their requests through
it, and keep what they learn of the source across the pages of one reader.
"""

from __future__ import annotations

from importer.sources.answers import says_page_before
from importer.sources.base import Page, SourceError
from importer.sources.paging_checks import PagingChecks
from importer.sources.totals import told_in
from importer.sources.urls import with_query

# An error answer to the request after a short page means "nothing here" (the source's end).
PAST_THE_END_STATUSES = frozenset({400, 404, 416, 422})
# ... but these are also how sources refuse to page deeper than a limit of theirs.
DEPTH_LIMIT_STATUSES = frozenset({400, 422})


class OffsetPages:
    """Offset paging: each page filled from its offset up to the next page's."""

    def __init__(self, source, checks: PagingChecks) -> None:
        self.source = source
        self.checks = checks
        # The records in this reader's latest answer, and the most any answer before it held
        # (what the source serves at once, when it cuts the limit).
        self._latest_answer = 0
        self._fullest_before = 0

    def page(self, cursor: str) -> Page:
        """The records from this page's offset up to the next page's, however many answers
        the source takes to give them."""
        source = self.source
        start = source._number(cursor, 0)
        end = start + source.page_size
        records: list[dict] = []
        position, total = start, None
        last_answer: int | None = None  # records in this page's answer before
        while True:
            url = source._numbered_url(source.config.offset_param, position)
            try:
                answer = source._read_past_first(url) if position else source._read(url)
            except SourceError as error:
                # Past the first record, an error that means "nothing here" is the end.
                if not position or not self._ends(error, position, last_answer):
                    raise
                # The total that settled the end is checked with the others at the end.
                return Page(
                    records=records,
                    next_cursor=None,
                    total=total if total is not None else source.total_told,
                )
            response, document, got = answer
            self._fullest_before = max(self._fullest_before, self._latest_answer)
            self._latest_answer = last_answer = len(got)
            if position == 0 and len(got) > source.page_size:
                self.checks.offset_followed(got)
            if got:
                self.checks.not_repeated("offset", position, got)
            told = source._total(response, document)
            total = told if told is not None else total
            kept = got[: end - position]
            records += kept
            position += len(kept)
            if not got:
                return Page(records=records, next_cursor=None, total=total)
            if position >= end:
                return Page(records=records, next_cursor=str(end), total=total)
            # A short answer: the source may serve fewer records than asked. Ask on.

    def _ends(self, error: SourceError, position: int, last_answer: int | None) -> bool:
        """Whether an error answer for the records from `position` on means the source ends
        there (`last_answer`: the records in this page's answer before it, if any)."""
        if error.status not in PAST_THE_END_STATUSES:
            return False
        if error.status not in DEPTH_LIMIT_STATUSES:
            return True
        source = self.source
        config = source.config
        where = f"record {position}"
        held, total = self._probe(position)
        if held:  # it has records there, and refused the page: a limit
            return _depth_limit(config, error, where, certain=True)
        if last_answer is not None and last_answer < (self._fullest_before or source.page_size):
            return True  # a short answer before it: the end
        before, told = self._probe(position - 1)
        total = told if total is None else total
        if last_answer is None:  # the page's first answer: is the record before it there?
            if before is None and self._probe(0)[0] is not None:
                before = 0  # refused, though it serves one record at a time: past its end
            if before == 0:
                return True  # past the end: the record before is missing too
        if before and source._limit:
            # A result window counts offset + limit, and so may refuse the last record
            # asked for with one more. A source that ends there serves it alone.
            pair, _ = self._probe(position - 1, 2)
            if pair is not None and pair < 2:
                return True
            return _depth_limit(config, error, where, certain=True)
        if total is not None:  # the source's own count settles it
            return total <= position or _depth_limit(config, error, where, certain=True)
        return _depth_limit(config, error, where, total=known_total(source, config.offset_param))

    def _probe(self, position: int, count: int = 1) -> tuple[int | None, int | None]:
        """How many records the source serves from `position` when asked for `count` (None:
        it refused), and the total it tells with them. A result window counts offset + limit,
        so one record may come where a page may not."""
        source = self.source
        url = with_query(
            source._numbered_url(source.config.offset_param, position),
            {source.config.limit_param: count} if source.config.limit_param else {},
        )
        answer = source._read_after_short(url)
        if answer is None:
            return None, None
        return len(answer[2]), source._total(answer[0], answer[1])


class NumberedPages:
    """Page-number paging: the source's own pages, and the end to find."""

    def __init__(self, source, checks: PagingChecks) -> None:
        self.source = source
        self.checks = checks
        # How many records a page held that turned out not to be the last (the source's real
        # page size, when it cuts the limit), once this reader saw one.
        self.full_page_records: int | None = None

    def page(self, cursor: str) -> Page:
        """One of the source's own pages; the end is an empty page, or a short page whose
        next page holds nothing."""
        source = self.source
        config = source.config
        page = source._number(cursor, config.first_page)
        url = source._numbered_url(config.page_param, page)
        try:
            answer = source._read_past_first(url) if page > config.first_page else source._read(url)
        except SourceError as error:
            # Past the first page, an error that means "nothing here" is the source's end.
            if page <= config.first_page or not self._ends(error, page):
                raise
            # The total that settled the end is checked with the others at the end.
            return Page(records=[], next_cursor=None, total=source.total_told)
        response, document, records = answer
        total = source._total(response, document)
        if page == config.first_page > 0:  # an empty one too: a source of one page from 0
            sign = says_page_before(response, document, config.page_param, page)
            self.checks.no_page_before(page, sign, records)
        if not records:
            return Page(records=records, next_cursor=None, total=total)
        self.checks.not_repeated("page", page, records)
        following = str(page + 1)
        if self._looks_short(len(records)):
            answer = source._read_after_short(source._numbered_url(config.page_param, page + 1))
            if answer is None or not answer[2]:
                return Page(records=records, next_cursor=None, total=total)
            self.checks.not_repeated("page", page + 1, answer[2])
            if self.full_page_records is None:
                self.checks.pages_counted_as_served(page, records, answer[2])
            self.full_page_records = len(records)
        return Page(records=records, next_cursor=following, total=total)

    def _ends(self, error: SourceError, page: int) -> bool:
        """Whether an error answer for page `page` means the source ends before it."""
        if error.status not in PAST_THE_END_STATUSES:
            return False
        if error.status not in DEPTH_LIMIT_STATUSES:
            return True
        source = self.source
        before = self._records(page - 1)
        if not before or self._looks_short(len(before)):
            return True
        if not source._limit and page - 1 > source.config.first_page:
            # No limit asked: a page is short next to the one before it.
            earlier = self.full_page_records or len(self._records(page - 2))
            if len(before) < earlier:
                return True
        elif not source._limit:
            return True  # one page, and no size to hold it to: no limit is that shallow
        total = known_total(source, source.config.page_param, source.config.first_page)
        return _depth_limit(source.config, error, f"page {page}", total=total)

    def _records(self, page: int) -> list[dict]:
        source = self.source
        answer = source._read_after_short(source._numbered_url(source.config.page_param, page))
        return answer[2] if answer else []

    def _looks_short(self, count: int) -> bool:
        """Whether a page may be the last: it holds fewer records than asked, and fewer than
        a page this reader already saw followed by another (the size the source really
        serves when it cuts the limit)."""
        if not self.source._limit or count >= self.source.page_size:
            return False
        return self.full_page_records is None or count < self.full_page_records


def known_total(source, param: str, first: int = 0) -> int | None:
    """The source's total as this reader knows it: the latest an answer of it told, else the
    first page's, asked again (some APIs tell it there alone, and a lane other than the
    first never reads that page). None when the source has no total path, or it finds none."""
    if not source.config.total_path:
        return None
    if source.total_told is None:
        answer = source._read_after_short(source._numbered_url(param, first))
        if answer is not None:
            source._total(answer[0], answer[1])  # kept as total_told when it tells one
    return source.total_told


def _depth_limit(
    config, error: SourceError, where: str, *, certain: bool = False, total: int | None = None
) -> bool:
    """An error right after a full page: the source's end, or a limit on how deep it
    can be paged with the records after it left out (`certain`: it served a record
    there when asked for it alone). A `total` known settles an uncertain case once every
    page is in (`services.totals`); without one (none told, or a total path that finds
    nothing), the import must not end DONE on a guess."""
    if total is not None and not certain:
        return True
    cause = (
        "the source refuses to be paged that deep (it serves the record there, or the one "
        "before it, when asked for it alone, or counts more records than that)"
        if certain
        else "the source may refuse to be paged that deep (a search index's result "
        "window, an API's cap on results)"
    )
    if certain:
        advice = ""
    elif config.total_path:
        advice = (
            f" If it rather ends there and answers {error.status} past its end, its total "
            f"path cannot tell: no total was found {told_in(config.total_path)} in the "
            "answers before this one, nor on the first page asked again. Set the total path "
            "to where the answers tell their total (a total the source caps as well, as a "
            "search index does at 10000, cannot tell)."
        )
    else:
        advice = (
            f" If it rather ends there and answers {error.status} past its end, set its "
            "total path, so that the records received can be checked against it (a total "
            "the source caps as well, as a search index does at 10000, cannot tell)."
        )
    limit = SourceError(
        f"{error.message}. This came for {where}, right after a full page: {cause}, and "
        "the records after it would be missing. Narrow what it lists (extra parameters), "
        "or page it in a style it allows further: keyset paging, after the last record "
        "read (a search index's search_after, an API's since=<id>), cursor or next URL."
        f"{advice}",
        status=error.status,
        kind="depth_limit",
    )
    # Pages after it that the source served show it a passing error of this page, not a
    # limit (`chunks.chunk_error`): its own answer is what is told then.
    limit.answer = error.message
    raise limit
