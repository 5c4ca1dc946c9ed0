"""What became of a chunk's page: submitted, stopped, put off, retried or failed, and
the operators' retry of failed pages.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

from importer import clock, metrics, page_sql, work_queue
from importer.models import ChunkJob, Execution
from importer.models.chunks import RATE_LIMITED
from importer.remote import RemoteError
from importer.services.answer_waits import longest_answer_wait, wait_longer
from importer.services.errors import ImportEnded, scrub_secrets
from importer.services.lifecycle import fail_execution
from importer.services.retries import retry_delay
from importer.sources import SourceError, cursor_for

logger = logging.getLogger(__name__)

ChunkState = ChunkJob.State
ENDLESS_SOURCE = "endless_source"
UNEXPECTED_ERROR = "unexpected_error"
DATABASE_REFUSED = "database_refused"
# Attempts at a page past the source's end that the source failed to answer for now.
PAST_THE_END_ATTEMPTS = 2


def mark_submitted(
    chunk: ChunkJob,
    record_count: int,
    skipped: list[str],
    state: str = ChunkState.SUBMITTED,
    identities: bytes = b"",
    items_left_out: Sequence[str] = (),
    nested: dict[str, list[int]] | None = None,
) -> None:
    """Record the page as done (Assets took it, or there was nothing to send); for a page
    past the source's end (`state` SKIPPED), the records it held; `identities`, the digests
    of the records sent, when the source's pages are checked for repeated records;
    `nested`, per nested selector, its items sent and left out (`TransformResult.nested`).

    The lane looks whether the import is complete as it ends, once this has committed
    (`completion.complete_if_due`).
    """
    with transaction.atomic():
        # The execution's row first, then the chunk's: queue_next_chunks writes them in that
        # order too (it counts a fetched page, then adds pages that may exist already), so two
        # lanes never hold one each while waiting for the other (PostgreSQL would abort one).
        if state == ChunkState.SUBMITTED:
            page_sql.record_submitted(
                chunk.execution_id,
                records=record_count,
                skipped=len(skipped),
                items_skipped=len(items_left_out),
            )
        marked = page_sql.mark_submitted(
            chunk,
            records=record_count,
            skipped=skipped,
            state=state,
            identities=identities,
            items_left_out=items_left_out,
            nested=nested,
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


def wait_longer_for_assets(chunk: ChunkJob, waited: float) -> None:
    """Assets did not answer the page within `waited` seconds: the import's pages (this one
    tried again, and those of every lane) wait twice as long for its answers, up to what a
    chunk task has room for (`longest_answer_wait`). An Assets slower than HTTP_TIMEOUT on
    every page would otherwise get each page five times and fail the import; a page whose
    answer came too late may have been taken all the same, and sent again it updates the
    same objects (their externalIdPart attributes name them), adding none."""
    if not wait_longer(chunk.execution_id, waited):
        return
    Execution.objects.filter(pk=chunk.execution_id).add_notice(
        f"Assets answered pages later than HTTP_TIMEOUT ({settings.HTTP_TIMEOUT:g} s), so "
        f"this import waits longer for its answers (up to {longest_answer_wait():g} s, what a "
        "chunk task has room for within Q_TASK_TIMEOUT). A page whose answer came too late "
        "is sent again, and updates the objects Assets may have taken from it. If Assets is "
        "this slow every time, raise HTTP_TIMEOUT."
    )


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
    detail = _scrubbed_detail(error, chunk)
    message = f"unexpected {type(error).__name__}" + (f": {detail}" if detail else "")
    # The frames say where; the error's own text (which may quote a URL) stays out.
    where = "".join(traceback.format_tb(error.__traceback__, limit=-8))
    logger.error("chunk %s: %s\n%s", chunk.pk, message, where)
    if ChunkJob.objects.held_by(chunk).fail(kind=UNEXPECTED_ERROR, error=message):
        failed_for_good(chunk, message, kind=UNEXPECTED_ERROR)
    return chunk


def _scrubbed_detail(error: Exception, chunk: ChunkJob) -> str:
    """An error's words on one line, at most 200 characters: scrubbed whole before the cut,
    so a secret the cut would halve is still recognised."""
    # The first 2000 characters: an error may quote a whole answer, and 200 are kept.
    return scrub_secrets(" ".join(str(error)[:2000].split()), chunk.execution.source)[:200]


def chunk_refused_by_database(chunk: ChunkJob, error: Exception) -> ChunkJob:
    """The database refused a statement on a live connection (its disk full, a statement
    timeout): it may pass, so the page is tried again later, up to CHUNK_MAX_ATTEMPTS. When
    the database takes not even that, the page's lease lapses, and it is taken up then."""
    detail = _scrubbed_detail(error, chunk)
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
    if not permanent and kind == RATE_LIMITED and chunk.rate_limited_waits:
        # Hours may have gone by in waits: say so, and what lets the import through. A page
        # refused once fetched was refused by Assets, whose limit the source's rate does not
        # set.
        mend = (
            "read fewer pages at once (chunks in flight), or run the import when Assets is "
            "less busy"
            if fetched is not None
            else "set the source's limit on requests per minute below the rate it allows, or "
            "read fewer pages at once"
        )
        message = (
            f"{message} (gave up after {chunk.attempts} attempts and "
            f"{chunk.rate_limited_waits} waits for its rate limit: {mend})"
        )
    elif not permanent:
        message = f"{message} (gave up after {chunk.attempts} attempts)"
    if not ChunkJob.objects.held_by(chunk).fail(kind=kind, error=message, records=fetched or 0):
        return chunk  # taken over meanwhile: its new holder decides
    # A page Assets refused held records: it does not lie past the source's end.
    return failed_for_good(chunk, message, kind=kind, held_records=fetched is not None)


def failed_for_good(
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


def retry_failed_chunks(*, execution: Execution) -> int:
    """Queue the failed chunks of an execution that still takes data; how many were queued.
    Raises ImportEnded when it no longer does: the completion check may have failed it a
    moment ago, and its error must then stay."""
    with transaction.atomic():
        if not Execution.objects.of(execution).ingesting().stamp(error=""):
            execution.refresh_from_db(fields=["state"])
            ended = execution.state in Execution.FINISHED_STATES
            raise ImportEnded(
                f"#{execution.pk}: only an import that is still ingesting can retry chunks "
                f"(this one is {execution.get_state_display().lower()})"
                + (": start a new import of the source to bring its records in." if ended else ".")
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
        transaction.on_commit(lambda: work_queue.enqueue_chunks(chunk_ids))
    return len(chunk_ids)
