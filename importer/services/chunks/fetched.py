"""A fetched page: count it, check that the source does not go round or on without end,
and queue the pages that follow it.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from importer import json_codec, page_sql, work_queue
from importer.models import ChunkJob, Execution
from importer.services.chunks.claims import claimed_fields
from importer.services.plan import pages_ahead, reads_in_parallel
from importer.sources import cursor_for

ChunkState = ChunkJob.State


class SourceNeverEnds(Exception):
    """The source would page forever (a page it gave before, or past IMPORT_MAX_PAGES)."""


def queue_next_chunks(
    chunk: ChunkJob,
    next_cursor: str | None,
    record_count: int,
    *,
    lanes: bool,
    keep_next: bool,
    total: int | None = None,
    digest: str = "",
) -> ChunkJob | None:
    """Record the fetched page (and the source's total, if it told one) and queue what
    follows; raises SourceNeverEnds.

    Returns, when `keep_next`, the lane's next chunk: created claimed by this worker rather
    than queued. `digest`: the page's `page_digest`, for sources that may go round.

    A page without a next one marks the source's end: this page when it held records, the
    one before when it came back empty (a fanned-out chunk may look past the end). A page past
    an end found before adds nothing: it should hold no records, and the completion check
    looks whether it did.
    """
    execution = chunk.execution
    with transaction.atomic():
        taken, last = page_sql.record_fetched(
            execution,
            records=record_count,
            total=total,
            first_page=chunk.index == 0,
            first_page_digest=digest if chunk.index == 0 else "",
        )
        if not taken:
            return None  # cancelled or failed meanwhile: nothing more to queue
        if last is not None and chunk.index > last:
            return None  # past the source's end: nothing follows it (its records are kept)
        # The page after the last one allowed is read only to see that the source ends there.
        if chunk.index >= settings.IMPORT_MAX_PAGES and (record_count or next_cursor):
            raise SourceNeverEnds(
                f"the source still had more after {settings.IMPORT_MAX_PAGES} pages "
                "(IMPORT_MAX_PAGES): check its paging settings or raise the limit"
            )
        if digest:
            _check_not_going_round(chunk, digest)
        if next_cursor is None:
            last = chunk.index if record_count or not chunk.index else chunk.index - 1
            Execution.objects.of(execution).record_last_page(last)
            if not record_count and not lanes and reads_in_parallel(execution.source):
                _look_past_the_end(chunk)
            return None
        if reads_in_parallel(execution.source):
            return _fan_out(chunk, lanes=lanes, keep_next=keep_next)
        if not record_count:
            _check_not_empty_without_end(chunk)
        # A page the source gave before: under this cursor, or (a page's digest is kept on
        # the chunk after it) with these records under another.
        again = Q(previous_page_digest=digest, index__lte=chunk.index) if digest else Q()
        seen = {
            index: (cursor, bool(digest) and before == digest and index <= chunk.index)
            for index, cursor, before in ChunkJob.objects.filter(execution=execution)
            .filter(Q(cursor=next_cursor) | Q(index=chunk.index + 1) | again)
            .values_list("index", "cursor", "previous_page_digest")
        }
        if chunk.index + 1 in seen:
            return None  # this page was fetched before, by an attempt that did not finish
        led_back_to = [index - 1 for index, (_, led) in seen.items() if led]
        if led_back_to:
            raise _led_back(chunk, min(led_back_to))
        if seen or next_cursor == chunk.cursor:
            raise SourceNeverEnds(
                f"the source pointed back to a page it already gave ({next_cursor[:100]}): "
                "it would never end, so the import stopped"
            )
        next_chunk = ChunkJob.objects.create(
            execution=execution,
            index=chunk.index + 1,
            cursor=next_cursor,
            previous_page_digest=digest,
            **(claimed_fields() if keep_next else {}),
        )
        if keep_next:
            return next_chunk
        transaction.on_commit(lambda: work_queue.enqueue_chunk(next_chunk.pk))
    return None


def _look_past_the_end(empty: ChunkJob) -> None:
    """Queue the page after an empty one that ended a source read by position, unless it is
    there already. Lanes always read it (the lane after this one had records on its page
    before); one or two pages at a time (a rate limit, one chunk in flight) nothing does. A
    source that answers a page it has as if it had none (a replica that lags, a cache that
    hiccups) must fail the import, not end it early."""
    index = empty.index + 1
    for probe in page_sql.create_missing(
        [
            ChunkJob(
                execution=empty.execution,
                index=index,
                cursor=cursor_for(empty.execution.source, index),
            )
        ]
    ):
        transaction.on_commit(lambda chunk_id=probe.pk: work_queue.enqueue_chunk(chunk_id))


def _fan_out(chunk: ChunkJob, *, lanes: bool, keep_next: bool) -> ChunkJob | None:
    """Create the pages ahead of this one; return the lane's next if this worker keeps it."""
    source = chunk.execution.source
    ahead, lane_index = pages_ahead(chunk, lanes=lanes)
    claimed = claimed_fields() if keep_next else {}
    # Pages already there were fetched before, by an attempt that did not finish.
    created = page_sql.create_missing(
        [
            ChunkJob(
                execution=chunk.execution,
                index=index,
                cursor=cursor_for(source, index),
                **(claimed if index == lane_index else {}),
            )
            for index in ahead
        ]
    )
    lane_next = None
    for new_chunk in created:
        if keep_next and new_chunk.index == lane_index:
            lane_next = new_chunk
        else:
            transaction.on_commit(lambda chunk_id=new_chunk.pk: work_queue.enqueue_chunk(chunk_id))
    return lane_next


def page_digest(records: list[dict]) -> str:
    """What tells a page from another: its first and last records and how many it holds
    ("" for a page of fewer than two: one record may well be listed twice)."""
    if len(records) < 2:
        return ""
    shape = json_codec.encode([records[0], records[-1], len(records)])
    return hashlib.blake2b(shape, digest_size=8).hexdigest()


def _check_not_empty_without_end(chunk: ChunkJob) -> None:
    """An empty page that leads on is followed (a filtered scan answers so), but not without
    end: a next link or cursor that goes on past the last record (an API that always links
    offset + limit) would be read to IMPORT_MAX_PAGES, minutes of requests for nothing."""
    limit = settings.SOURCE_MAX_EMPTY_PAGES_IN_A_ROW
    if chunk.index + 1 < limit:
        return
    empty_before = ChunkJob.objects.filter(
        execution=chunk.execution,
        index__gte=chunk.index - limit + 1,
        index__lt=chunk.index,
        state=ChunkState.SUBMITTED,
        record_count=0,
        skipped_count=0,
    ).count()
    if empty_before >= limit - 1:
        raise SourceNeverEnds(
            f"the source answered {limit} empty pages in a row, each leading on to another "
            "(SOURCE_MAX_EMPTY_PAGES_IN_A_ROW): its next link or cursor seems to go on past its "
            "last record. Check its paging settings; a filtered scan of a large table may "
            "need the limit raised"
        )


def _check_not_going_round(chunk: ChunkJob, digest: str) -> None:
    """A source whose later page holds its first page's records again would be read round
    and round to IMPORT_MAX_PAGES, every record sent each time: read by position, it ignores
    the offset or page parameter (and honours the limit), so every page is its first; read by
    cursor, its last page leads back to its first under a new cursor (`queue_next_chunks`
    finds any earlier page). The first page's digest is kept on the execution by the
    statement that counts that page, and every page reads it back with its own
    (`page_sql.record_fetched`)."""
    execution = chunk.execution
    if not chunk.index or execution.first_page_digest != digest:
        return
    source = execution.source
    if not reads_in_parallel(source):
        raise _led_back(chunk, 0)
    param = source.offset_param if source.pagination == "offset" else source.page_param
    if source.pagination == "page" and chunk.index == 1 and source.first_page == 0:
        # Laravel and others serve page 0 as page 1: its pages start at 1.
        raise SourceNeverEnds(
            "the source answered page 1 with page 0's records again: its pages seem to start "
            "at 1 (it answers page 0 as its first page). Set the first page to 1 (Paging)"
        )
    raise SourceNeverEnds(
        f"the source answered page {chunk.index + 1} with page 1's records again: it "
        f"ignores the '{param}' parameter (or answers its last page again past its end), so "
        "it would never end and the import stopped. Check its paging settings; if it answers "
        "everything at once, choose 'No paging (one request)'"
    )


def _led_back(chunk: ChunkJob, earlier: int) -> SourceNeverEnds:
    """A cursor page that holds the records of an earlier page (`earlier`, its index) again,
    under another cursor (a fresh token, a time stamp): the source goes round."""
    page = earlier + 1
    return SourceNeverEnds(
        f"the source led back to page {page} under another cursor (page {chunk.index + 1} "
        f"holds page {page}'s records again): it would never end, so the import stopped. "
        "Check its paging settings (the cursor path, the next link)"
    )
