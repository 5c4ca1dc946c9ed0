"""Running chunks: a chunk task takes its page, then goes on along its lane.

A lane is the run of pages one task takes in turn: the next page of a cursor source, the page
`chunks in flight` further on for an offset source. Its HTTP calls run in the worker's
background threads: the lane's next page is claimed and fetched as soon as this page says
where it starts, and each page is submitted while the lane goes on with the next, so the
source, Assets and this worker's own work overlap and no page waits for the queue.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from django.conf import settings
from django.db import InterfaceError, OperationalError

from importer import background, work_queue
from importer.mapping import RecordsRefused, TransformResult, identity_digests
from importer.models import ChunkJob, Execution, ImportSource
from importer.models.chunks import RATE_LIMITED
from importer.remote import RemoteError
from importer.services.chunks import (
    ENDLESS_SOURCE,
    Claim,
    SourceNeverEnds,
    SubmitVerdict,
    chunk_crashed,
    chunk_error,
    chunk_failed,
    chunk_refused_by_database,
    claim_chunk,
    claim_within_source_limit,
    mark_submitted,
    page_digest,
    postpone_chunk,
    queue_next_chunks,
    request_slot_delay,
    stop_chunk,
    submit_verdict,
)
from importer.services.completion import complete_if_due
from importer.services.lane_state import Lane
from importer.services.mappings import note_fields_in_no_record, transform_page
from importer.services.plan import lane_next_cursor
from importer.services.reconnects import connection_lost, database_lost
from importer.sources import Page, SourceError, first_page_again, reads_a_file

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State
# A chunk that finds its source at its limit of running chunks asks again after this.
SOURCE_BUSY_RETRY_SECONDS = 1.0


def process_chunk(*, chunk: ChunkJob) -> ChunkJob:
    """Run this chunk, then go on along its lane while CHUNK_LANE_SECONDS last.

    A page is marked submitted only once Assets accepted it. A chunk delivered twice is
    claimed only once.
    """
    source = chunk.execution.source
    try:
        lane = Lane(source, chunk.execution_id)
    except Exception as error:  # its reader refused a setting, or a plug-in failed to start
        return _failed_to_start(chunk, source, error)
    # A lane asks for its first page while it claims the chunk, so the claim's database work
    # does not delay the import's start; if the chunk is not this worker's, the page is
    # dropped. (Without lanes, the claim comes first: a rate limit or a limit of one chunk at
    # a time decides whether the request may go at all.)
    page_ahead = None
    if lane.enabled and chunk.execution.state == State.INGESTING:
        page_ahead = background.run(lane.fetcher.fetch_page, _cursor_to_read(chunk))
    if not _claimed(chunk, source):
        lane.close()
        return chunk
    if chunk.execution.state != State.INGESTING:
        stop_chunk(chunk)
        lane.close()
        return chunk

    current = chunk
    try:
        while current is not None:
            lane.leases.hold(current)
            taken = current
            try:
                current, page_ahead = _run_claimed_chunk(current, page_ahead, lane)
            except (OperationalError, InterfaceError) as error:
                if connection_lost(error):
                    database_lost(current, error, lane)
                else:  # a full disk, a statement timeout: may pass; counted and retried
                    chunk_refused_by_database(current, error)
                current = None
            except Exception as error:  # the page fails with a reason; the lane ends here
                chunk_crashed(current, error)
                current = None
            lane.done_with(taken)
    finally:
        lane.close()
    # If the lane's pages completed the import (or those of a lane that ended meanwhile),
    # this worker posts "completed" now, over the lane's connection to Assets.
    complete_if_due(chunk.execution_id, client=lane.idle_client(), task_started=lane.started)
    return chunk


def _failed_to_start(chunk: ChunkJob, source: ImportSource, error: Exception) -> ChunkJob:
    """The chunk fails with the reason its lane could not start for, as a page that fails
    does. Raised out of the task, the error would leave the chunk waiting and the import
    INGESTING, and django-q2 would keep it in its own failure record."""
    if chunk.execution.state != State.INGESTING or not _claimed(chunk, source):
        return chunk
    if isinstance(error, RemoteError):
        chunk_error(chunk, error)
    else:
        chunk_crashed(chunk, error)
    complete_if_due(chunk.execution_id)
    return chunk


def _claimed(chunk: ChunkJob, source: ImportSource) -> bool:
    """Take the chunk for this worker, under the source's limit of one chunk at a time if it
    has one (the pipeline keeps at most max(2, chunks in flight) going by itself; only a
    limit of one needs counting)."""
    if source.max_chunks_in_flight >= 2:
        return claim_chunk(chunk)
    claim = claim_within_source_limit(chunk)
    if claim is Claim.SOURCE_FULL:
        work_queue.enqueue_chunk_after(chunk.pk, SOURCE_BUSY_RETRY_SECONDS)
    return claim is Claim.TAKEN


def _run_claimed_chunk(
    chunk: ChunkJob, page_ahead: Future | None, lane: Lane
) -> tuple[ChunkJob | None, Future | None]:
    """Take this page, start fetching the lane's next, then submit this one.

    Returns the lane's next chunk, already claimed, with its page being fetched; or Nones
    when the lane ends here. A failure of this chunk does not end a lane that already holds
    its next page: the chunk is retried on its own.
    """
    try:
        page = page_ahead.result() if page_ahead else _fetch_page(chunk, lane)
    except SourceError as error:
        chunk_error(chunk, error)
        return None, None
    if page is None:
        return None, None
    if not lane.leases.holds(chunk):
        return None, None  # the lease lapsed and another worker took the page over

    # The next page's fetch starts before it is claimed, so the claim's database work does
    # not delay it; if another worker holds that page already, the copy is dropped.
    keep_next = lane.has_time()
    next_cursor = lane_next_cursor(chunk, page) if keep_next else None
    next_page = background.run(lane.fetcher.fetch_page, next_cursor) if next_cursor else None
    # Now that the source is busy again, the pages Assets has taken meanwhile are recorded.
    lane.record_arrived()
    if lane.paused_for:  # Assets refused one with 429: this page waits as asked, uncounted
        postpone_chunk(chunk, lane.paused_for, reason=RATE_LIMITED)
        return None, None
    try:
        lane_next = queue_next_chunks(
            chunk,
            page.next_cursor,
            len(page.records),
            lanes=lane.enabled,
            keep_next=keep_next,
            total=page.total,
            digest=page_digest(page.records) if lane.checks_going_round else "",
        )
    except SourceNeverEnds as problem:
        chunk_failed(chunk, str(problem), permanent=True, kind=ENDLESS_SOURCE)
        return None, None
    if lane_next is not None:
        lane.hold_next_page(lane_next, next_page if lane_next.cursor == next_cursor else None)
    lane.mind_assets_pause(chunk.execution.assets_paused_until)
    result = _transform(chunk, page, lane)
    if result is not None and not _submit(chunk, result, lane):
        # The execution no longer takes data: neither does the page this lane holds.
        next_chunk, _ = lane.pop_next_page()
        if next_chunk is not None:
            stop_chunk(next_chunk)
        return None, None
    return lane.pop_next_page()


def _fetch_page(chunk: ChunkJob, lane: Lane) -> Page | None:
    """Fetch the chunk's page now, after our own rate limit; None if it must wait longer."""
    delay = request_slot_delay(chunk.execution.source)
    if delay > settings.CHUNK_RETRY_INLINE_MAX_SECONDS:
        postpone_chunk(chunk, delay, reason="rate_limited_by_us")
        return None
    if delay:
        time.sleep(delay)
    return lane.fetcher.fetch_page(_cursor_to_read(chunk))


def _cursor_to_read(chunk: ChunkJob) -> str:
    """Where the chunk's page is read from: its cursor, but for a first page read again,
    what the page after it was read from (`sources.first_page_again`)."""
    if chunk.index or not reads_a_file(chunk.execution.source):
        return chunk.cursor  # a query saved on every other page
    following = (
        ChunkJob.objects.filter(execution_id=chunk.execution_id, index=1)
        .values_list("cursor", flat=True)
        .first()
    )
    return first_page_again(chunk.execution.source, following or "") or chunk.cursor


def _transform(chunk: ChunkJob, page: Page, lane: Lane) -> TransformResult | None:
    """The page as Assets data; None when a record cannot be used (the chunk then failed)."""
    source = chunk.execution.source
    for note in page.notes:
        Execution.objects.of(chunk.execution).add_notice(note)
    try:
        result = transform_page(source, page.records)
    except RecordsRefused as error:  # the source's policy: such records fail the import
        chunk_failed(chunk, str(error), permanent=True, kind=error.kind)
        return None
    if lane.checks_repeats:
        result.identities = identity_digests(result, source.mapping)
    if chunk.index == 0 and page.records:
        note_fields_in_no_record(execution=chunk.execution, records=page.records)
    return result


def _submit(chunk: ChunkJob, result: TransformResult, lane: Lane) -> bool:
    """Send the page (or mark it done); False when the execution no longer takes data."""
    if result.record_count:
        # This may wait for an answer: a worker frozen meanwhile may have lost the page, and
        # Assets may have asked to wait. Both are looked at after it.
        lane.make_room()
        if lane.paused_for:  # a page before it was refused with 429: this one waits too
            fetched = result.record_count + len(result.skipped)
            postpone_chunk(chunk, lane.paused_for, reason=RATE_LIMITED, fetched=fetched)
            return True
    verdict = submit_verdict(chunk)  # right before the page goes
    if verdict is SubmitVerdict.PAST_THE_END:
        # Kept for the completion check: a page past the end should hold no records.
        mark_submitted(chunk, result.record_count, result.skipped, state=ChunkState.SKIPPED)
    elif verdict is SubmitVerdict.TAKEN_OVER:
        pass  # the page is the other worker's now
    elif verdict is SubmitVerdict.STOPPED:
        stop_chunk(chunk)
        return False
    elif not result.record_count:
        mark_submitted(chunk, 0, result.skipped, nested=result.nested)
    else:
        lane.submit_behind(chunk, result)
    return True
