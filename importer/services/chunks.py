"""A chunk's moves: claim it, give it back, record its page, retry or fail it.

Every move is a guarded transition on the model (`ChunkJob.objects.held_by(chunk)...`), so a
worker whose copy is out of date (its lease ran out and another worker took the page over)
moves nothing.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import socket
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from importer import clock, json_codec, metrics, page_sql, work_queue
from importer.models import ChunkJob, Execution, ImportSource
from importer.models.chunks import RATE_LIMITED
from importer.remote import RemoteError
from importer.services.errors import ImportEnded, scrub_secrets
from importer.services.lifecycle import fail_execution
from importer.services.plan import pages_ahead, reads_in_parallel
from importer.services.retries import retry_delay
from importer.sources import SourceError, cursor_for

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State
ENDLESS_SOURCE = "endless_source"
UNEXPECTED_ERROR = "unexpected_error"
DATABASE_REFUSED = "database_refused"
ATTEMPTS_USED_UP = "attempts_used_up"
# Attempts at a page past the source's end that the source failed to answer for now.
PAST_THE_END_ATTEMPTS = 2


class SourceNeverEnds(Exception):
    """The source would page forever (a page it gave before, or past IMPORT_MAX_PAGES)."""


class Claim(enum.Enum):
    TAKEN = "taken"  # this worker runs the chunk now
    MISSED = "missed"  # not claimable: another worker has it, or it is done or not due
    SOURCE_FULL = "source full"  # the source has as many chunks running as it allows


class SubmitVerdict(enum.Enum):
    """What a chunk may do with its page right before it goes to Assets."""

    GO = "go"
    TAKEN_OVER = "taken over"  # our lease ran out and another worker has the page now
    STOPPED = "stopped"  # the execution no longer takes data (cancelled, failed)
    PAST_THE_END = "past the end"  # another chunk found the source ends before this page


def this_worker() -> str:
    """host:pid, shown on each chunk (and read by the benchmark per worker process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def note_unreadable_source(*, chunk_id: int, problem: str) -> None:
    """A worker set up unlike the others (another FIELD_ENCRYPTION_KEYS) cannot read the
    source: the chunk waits for another worker, and its row says why, where staff look."""
    message = f"worker {this_worker()} could not take this page: {problem}"
    logger.error("chunk %s: %s", chunk_id, message)
    ChunkJob.objects.filter(pk=chunk_id, state=ChunkState.QUEUED).stamp(error=message[:2000])


def claim_chunk(chunk: ChunkJob) -> bool:
    """Take the chunk for this worker: QUEUED, or RUNNING under a lease that has expired.

    The UPDATE also requires the attempt count read with the row, so of two workers holding
    the same row only one can move it on; the winner's copy is then brought up to date here.
    """
    now = clock.now()
    lease_expires_at = now + timedelta(seconds=settings.CHUNK_LEASE_SECONDS)
    claimed = (
        ChunkJob.objects.claimable(now=now)
        .filter(pk=chunk.pk, attempts=chunk.attempts)
        .start_attempt(now=now, lease_expires_at=lease_expires_at, worker=this_worker())
    )
    if claimed:
        chunk.state = ChunkState.RUNNING
        chunk.attempts += 1
        chunk.lease_expires_at = lease_expires_at
        chunk.next_attempt_at = None
        chunk.started_at = now
    elif chunk.attempts >= settings.CHUNK_MAX_ATTEMPTS:  # the query tells 429's longer wait
        _give_up_if_attempts_used_up(chunk, now=now)
    return claimed


def _give_up_if_attempts_used_up(chunk: ChunkJob, *, now) -> None:
    """A chunk left waiting with no attempt left (its worker died in each, so no failure was
    ever recorded) fails now, with a reason, rather than being taken up again and again."""
    cap = settings.CHUNK_MAX_ATTEMPTS
    message = (
        f"its worker stopped without finishing it in each of its {cap} attempts "
        "(CHUNK_MAX_ATTEMPTS): killed, out of memory, or over the task timeout; a page this "
        "costly may need a smaller page size"
    )
    failed = (
        ChunkJob.objects.exhausted(now=now)
        .filter(pk=chunk.pk)
        .fail(kind=ATTEMPTS_USED_UP, error=message)
    )
    if failed:
        logger.error("chunk %s: %s", chunk.pk, message)
        _failed_for_good(chunk, message, kind=ATTEMPTS_USED_UP)


def claim_within_source_limit(chunk: ChunkJob) -> Claim:
    """Claim the chunk unless its source already runs as many chunks as it allows.

    The source's row is locked while counting (PostgreSQL; SQLite's IMMEDIATE transactions
    serialize writers anyway), so two workers cannot both take the last free place.
    """
    source = chunk.execution.source
    with transaction.atomic():
        ImportSource.objects.select_for_update().filter(pk=source.pk).values_list("pk").first()
        running = ChunkJob.objects.filter(
            execution__source=source,
            state=ChunkState.RUNNING,
            lease_expires_at__gte=clock.now(),
        ).count()
        if running >= max(1, source.max_chunks_in_flight):
            return Claim.SOURCE_FULL
        return Claim.TAKEN if claim_chunk(chunk) else Claim.MISSED


def claimed_fields() -> dict:
    """The fields of a chunk created already claimed by this worker (a lane's next page)."""
    now = clock.now()
    return {
        "state": ChunkState.RUNNING,
        "attempts": 1,
        "lease_expires_at": now + timedelta(seconds=settings.CHUNK_LEASE_SECONDS),
        "started_at": now,
        "worker": this_worker(),
    }


def request_slot_delay(source: ImportSource) -> float:
    """Reserve the next request slot under the source's rate limit; seconds until it comes.

    A slot further away than a worker should sleep is not reserved: the chunk is rescheduled
    to that time and asks again then.
    """
    if not source.max_requests_per_minute:
        return 0.0
    interval = timedelta(seconds=60 / source.max_requests_per_minute)
    with transaction.atomic():
        locked = ImportSource.objects.select_for_update().filter(pk=source.pk)
        next_free = locked.values_list("next_request_at", flat=True).first()
        now = clock.now()
        slot = max(now, next_free or now)
        delay = (slot - now).total_seconds()
        if delay <= settings.CHUNK_RETRY_INLINE_MAX_SECONDS:
            locked.update(next_request_at=slot + interval)
        return delay


def submit_verdict(chunk: ChunkJob) -> SubmitVerdict:
    """Whether the page may go now: our lease must hold, the execution must still take data,
    and the page must not lie beyond the source's end, found meanwhile by another chunk."""
    found = page_sql.submit_state(chunk)
    if found is None:  # the import was deleted meanwhile (its history pruned)
        return SubmitVerdict.STOPPED
    state, attempts, execution_state, last_index = found
    if state != ChunkState.RUNNING or attempts != chunk.attempts:
        return SubmitVerdict.TAKEN_OVER
    if execution_state != State.INGESTING:
        return SubmitVerdict.STOPPED
    if last_index is not None and chunk.index > last_index:
        return SubmitVerdict.PAST_THE_END
    return SubmitVerdict.GO


def release_chunk(chunk: ChunkJob) -> None:
    """Give a claimed chunk back to the queue without counting an attempt."""
    if ChunkJob.objects.held_by(chunk).release():
        work_queue.enqueue_chunk(chunk.pk)


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


def mark_submitted(
    chunk: ChunkJob,
    record_count: int,
    skipped: list[str],
    state: str = ChunkState.SUBMITTED,
    identities: bytes = b"",
) -> None:
    """Record the page as done (Assets took it, or there was nothing to send); for a page
    past the source's end (`state` SKIPPED), the records it held; `identities`, the digests
    of the records sent, when the source's pages are checked for repeated records.

    The lane looks whether the import is complete as it ends, once this has committed
    (`completion.complete_if_due`).
    """
    with transaction.atomic():
        # The execution's row first, then the chunk's: queue_next_chunks writes them in that
        # order too (it counts a fetched page, then adds pages that may exist already), so two
        # lanes never hold one each while waiting for the other (PostgreSQL would abort one).
        if state == ChunkState.SUBMITTED:
            page_sql.record_submitted(
                chunk.execution_id, records=record_count, skipped=len(skipped)
            )
        marked = page_sql.mark_submitted(
            chunk, records=record_count, skipped=skipped, state=state, identities=identities
        )
        if not marked:
            transaction.set_rollback(True)  # not ours any more: the page is not counted


def stop_chunk(chunk: ChunkJob) -> None:
    """The execution no longer takes data, or the page lies past the source's end."""
    ChunkJob.objects.held_by(chunk).stop(past_the_end=_past_the_end(chunk))


def _past_the_end(chunk: ChunkJob) -> bool:
    """Whether the page lies past the source's end, as known now."""
    last = (
        Execution.objects.filter(pk=chunk.execution_id)
        .values_list("last_chunk_index", flat=True)
        .first()
    )
    return last is not None and chunk.index > last


def postpone_chunk(
    chunk: ChunkJob, delay: float, *, reason: str, fetched: int | None = None
) -> ChunkJob:
    """Put the chunk back for later without counting an attempt (our own rate limit, or
    Assets' asked for before the page went). `fetched`: the records of the page, fetched and
    counted already (it is read again, and counted then)."""
    if ChunkJob.objects.held_by(chunk).release(
        until=clock.now() + timedelta(seconds=delay), reason=reason
    ):
        if fetched is not None:
            Execution.objects.filter(pk=chunk.execution_id).stamp(**_uncounted(fetched))
        work_queue.enqueue_chunk_after(chunk.pk, delay)
    return chunk


def _uncounted(fetched: int | None, pages: int = 1) -> dict:
    """The counts of fetched pages (`fetched` records in all) taken back: a retry reads them
    again, and counts them then."""
    if fetched is None:
        return {}
    return {
        "pages_fetched": F("pages_fetched") - pages,
        "records_fetched": F("records_fetched") - fetched,
    }


def chunk_error(chunk: ChunkJob, error: RemoteError, *, fetched: int | None = None) -> ChunkJob:
    """A typed error of the source or of Assets: its type says whether to retry.

    `fetched`: the records of the page, when it was fetched (and counted) before the error.
    """
    if error.kind == "depth_limit" and _served_after(chunk):
        # Taken for a limit on how deep the source pages, though it served pages after this
        # one: a passing error of this page, tried again as any other.
        error = SourceError(
            f"{getattr(error, 'answer', error.message)}, though it served pages after this one",
            status=error.status,
            permanent=False,
            kind="source_error",
        )
    return chunk_failed(
        chunk,
        error.message,
        permanent=error.permanent,
        retry_after=error.retry_after,
        kind=error.kind,
        max_attempts=getattr(error, "max_attempts", None),
        fetched=fetched,
    )


def _served_after(chunk: ChunkJob) -> bool:
    """Whether the source gave records for a page after this one, in this import."""
    return ChunkJob.objects.filter(
        execution_id=chunk.execution_id, index__gt=chunk.index, record_count__gt=0
    ).exists()


def chunk_crashed(chunk: ChunkJob, error: Exception) -> ChunkJob:
    """An error nobody expected (a bug, a page no code was ready for): the chunk fails with
    the error's type and a short message, never left RUNNING for its lease to run out."""
    detail = " ".join(str(error).split())[:200]
    message = f"unexpected {type(error).__name__}" + (f": {detail}" if detail else "")
    message = scrub_secrets(message, chunk.execution.source)
    # The frames say where; the error's own text (which may quote a URL) stays out.
    where = "".join(traceback.format_tb(error.__traceback__, limit=-8))
    logger.error("chunk %s: %s\n%s", chunk.pk, message, where)
    if ChunkJob.objects.held_by(chunk).fail(kind=UNEXPECTED_ERROR, error=message):
        _failed_for_good(chunk, message, kind=UNEXPECTED_ERROR)
    return chunk


def chunk_refused_by_database(chunk: ChunkJob, error: Exception) -> ChunkJob:
    """The database refused a statement on a live connection (its disk full, a statement
    timeout): it may pass, so the page is tried again later, up to CHUNK_MAX_ATTEMPTS. When
    the database takes not even that, the page's lease lapses, and it is taken up then."""
    detail = " ".join(str(error).split())[:200]
    message = f"the database refused a statement ({type(error).__name__}: {detail})"
    try:
        return chunk_failed(chunk, message, permanent=False, kind=DATABASE_REFUSED)
    except Exception:
        logger.exception("chunk %s: %s, and its retry could not be recorded", chunk.pk, message)
        return chunk


def chunk_failed(
    chunk: ChunkJob,
    message: str,
    *,
    permanent: bool,
    kind: str,
    retry_after: float | None = None,
    max_attempts: int | None = None,
    fetched: int | None = None,
) -> ChunkJob:
    """Retry a transient failure later (up to CHUNK_MAX_ATTEMPTS, or the fewer attempts the
    failure is worth); a permanent one fails the chunk (and the execution).

    A page past the source's end was never needed, if the end is right: one that was
    fetched (Assets refused it) is set aside with the records it held, which fail the import
    if any (the end was wrong, `totals.records_past_the_end`); one the source refused for
    good is set aside; one the source failed to answer for now is tried once more
    (PAST_THE_END_ATTEMPTS), for only its answer tells whether the end is right.

    `fetched`: the records of a page already fetched and counted. A retry reads the page
    again and counts it then, so it is taken off the counts now: "fetched" stays the records
    the source gave, not the reads."""
    past_the_end = _past_the_end(chunk)
    if past_the_end and (fetched is not None or permanent):
        ChunkJob.objects.held_by(chunk).stop(past_the_end=True, records=fetched or 0)
        return chunk
    source = chunk.execution.source
    message = scrub_secrets(message, source)
    now = clock.now()
    attempts = min(settings.CHUNK_MAX_ATTEMPTS, max_attempts or settings.CHUNK_MAX_ATTEMPTS)
    if past_the_end:
        # One answer more tells whether the end is right; a source that errs past its end
        # every time would otherwise hold each import's completion through every retry.
        attempts = min(attempts, PAST_THE_END_ATTEMPTS)
    waits = settings.RATE_LIMITED_MAX_ATTEMPTS
    if (
        kind == RATE_LIMITED
        and not permanent
        and not past_the_end
        and chunk.rate_limited_waits < waits
    ):
        # Waiting as asked mends it: no attempt is used up, and the waits are counted apart.
        delay = retry_delay(chunk.rate_limited_waits + 1, retry_after)
        held = ChunkJob.objects.held_by(chunk).wait_as_asked(
            now + timedelta(seconds=delay),
            error=f"rate limited, wait {chunk.rate_limited_waits + 1} of {waits}: {message}",
        )
    elif not permanent and chunk.attempts < attempts:
        delay = retry_delay(chunk.attempts, retry_after)
        held = ChunkJob.objects.held_by(chunk).retry_at(
            now + timedelta(seconds=delay),
            kind=kind,
            # The page shows the next attempt's time beside it, and drops it on a cancel.
            error=f"attempt {chunk.attempts} of {attempts} failed: {message}",
        )
    else:
        return _give_up(chunk, message, permanent=permanent, kind=kind, fetched=fetched)
    if not held:  # taken over meanwhile (this worker was frozen past its lease): not ours
        return chunk
    Execution.objects.filter(pk=chunk.execution_id).stamp(**_uncounted(fetched))
    metrics.count_chunk_retry(source=source, reason=kind)
    logger.warning("chunk %s: %s; retry in %.1f s", chunk.pk, message, delay)
    work_queue.enqueue_chunk_after(chunk.pk, delay)
    return chunk


def _give_up(
    chunk: ChunkJob, message: str, *, permanent: bool, kind: str, fetched: int | None
) -> ChunkJob:
    if not permanent:
        message = f"{message} (gave up after {chunk.attempts} attempts)"
    if not ChunkJob.objects.held_by(chunk).fail(kind=kind, error=message, records=fetched or 0):
        return chunk  # taken over meanwhile: its new holder decides
    # A page Assets refused held records: it does not lie past the source's end.
    return _failed_for_good(chunk, message, kind=kind, held_records=fetched is not None)


def _failed_for_good(
    chunk: ChunkJob, message: str, *, kind: str, held_records: bool = False
) -> ChunkJob:
    """The chunk is FAILED: fail its execution, now or after the grace period, or let the
    completion check decide when the page may lie past the source's end."""
    source = chunk.execution.source
    reason = f"Chunk {chunk.index + 1} failed: {message}"
    may_lie_past_the_end = not held_records and chunk.index > 0
    if kind != ENDLESS_SOURCE and cursor_for(source, chunk.index) and may_lie_past_the_end:
        # A page fetched ahead may lie past the source's end, and some APIs answer such a
        # page with an error. The completion check decides once the end is known.
        Execution.objects.filter(pk=chunk.execution_id).stamp()
        work_queue.enqueue_completion_check(chunk.execution_id)
        return chunk
    grace = settings.FAILED_CHUNK_GRACE_SECONDS
    if grace:
        # Operators may retry the chunk within the grace period; after it the check fails
        # the execution.
        Execution.objects.filter(pk=chunk.execution_id).stamp(error=reason)
        work_queue.enqueue_completion_check_after(chunk.execution_id, grace)
        return chunk
    fail_execution(execution=chunk.execution, reason=reason)
    return chunk


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


def retry_failed_chunks(*, execution: Execution) -> int:
    """Queue the failed chunks of an execution that still takes data; how many were queued.
    Raises ImportEnded when it no longer does: the completion check may have failed it a
    moment ago, and its error must then stay."""
    with transaction.atomic():
        if not Execution.objects.of(execution).ingesting().stamp(error=""):
            execution.refresh_from_db(fields=["state"])
            raise ImportEnded(
                f"#{execution.pk}: only an import that is still ingesting can retry chunks "
                f"(this one is {execution.state})."
            )
        failed = list(
            execution.chunks.filter(state=ChunkState.FAILED).values_list("pk", "record_count")
        )
        chunk_ids = [chunk_id for chunk_id, _ in failed]
        ChunkJob.objects.filter(pk__in=chunk_ids).requeue_failed(note="retried by an operator")
        # The pages Assets refused were counted as fetched; they count again as read anew.
        refused = [records for _, records in failed if records]
        if refused:
            Execution.objects.of(execution).stamp(**_uncounted(sum(refused), len(refused)))
        for chunk_id in chunk_ids:
            transaction.on_commit(lambda chunk_id=chunk_id: work_queue.enqueue_chunk(chunk_id))
    return len(chunk_ids)
