"""Finishing an import: tell Assets the submission is complete, then hand it to `processing`.

Every lane runs the check itself as it ends (`complete_if_due`), once its pages are
committed, so of two lanes ending at once at least the one committed last sees the other's
pages: the lane that ends last completes the import, with no trip through the queue. The
import is due once its end is known and no page is queued or running, the pages fetched past
the end included: they should come back empty, and one that holds records shows the end is
wrong (a source answering a page it has as if it had none), which fails the import instead of
leaving it DONE with records missing (`totals.records_past_the_end`). Lanes fetch those pages
while the last ones are being sent, so waiting for them costs next to nothing.
`{"completed": true}` is posted by the one worker that moves the execution from INGESTING to
COMPLETING, and only when every chunk up to the source's last page is SUBMITTED. Then the
same worker reads Assets' status with a short backoff until it reports a final state
(`processing.refresh_status`).
Housekeeping looks again at an import whose next step never came
(`housekeeping.follow_up_quiet_executions`); no healthy import waits for it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from importer import page_sql, work_queue
from importer.assets import (
    AssetsAuthError,
    AssetsClient,
    AssetsError,
    AssetsNotFound,
    AssetsRateLimited,
    AssetsTimedOut,
    outcome_of,
)
from importer.models import ChunkJob, Execution
from importer.services.answer_waits import (
    note_completed_answered_late,
    note_completed_taken_unanswered,
    wait_longer_after_completed,
)
from importer.services.errors import scrub_secrets
from importer.services.lifecycle import fail_execution
from importer.services.processing import assets_call_wait, refresh_status
from importer.services.retries import may_have_been_done, retry_delay
from importer.services.totals import (
    cursor_pages_overlap,
    every_nested_item_left_out,
    every_record_left_out,
    records_on_two_pages,
    records_past_the_end,
    recount_records_fetched,
    steep_drop_in_records,
    total_disagreement,
    total_never_told,
)

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State


def complete_if_due(
    execution_id: int, client: AssetsClient | None = None, task_started: float | None = None
) -> None:
    """Run the completion check here and now if nothing is left to wait for.

    A lane calls it as it ends: the import that ends with it is completed by the worker that
    holds it, with no trip through the queue between the last page and "completed", over
    the lane's own connection to Assets (`client`) when it has one, and within what the
    lane's task has left (`task_started`).
    """
    if completion_is_due(execution_id):
        execution = Execution.objects.select_related("source").filter(pk=execution_id).first()
        if execution is not None:
            check_completion(execution=execution, client=client, task_started=task_started)


def completion_is_due(execution_id: int) -> bool:
    """Whether an ingesting execution has no page left queued or running up to its end
    (the end known, or a page failed: then the check decides)."""
    # One hand-written statement: this runs after every page (`page_sql`).
    return page_sql.completion_due(execution_id)


def check_completion(
    *,
    execution: Execution,
    client: AssetsClient | None = None,
    task_started: float | None = None,
) -> Execution:
    """Post {"completed": true} once every chunk is submitted, then follow the processing
    (both through `client`, if given, else a new one). Assets' answers are waited for as
    long as the import's pages' (`answer_waits`), within what the task that started at
    `task_started` (time.monotonic; None: now) has left.

    A check that finds pages still going does nothing: the lane that records the last of
    them runs another.
    """
    started = time.monotonic() if task_started is None else task_started
    execution.refresh_from_db()
    if execution.state != State.INGESTING:
        return execution
    if execution.last_chunk_index is None:
        # Pages are still being discovered and the last one calls again, unless a failed
        # page left nothing running that could still find the end.
        unfinished = execution.chunks.filter(state__in=[ChunkState.QUEUED, ChunkState.RUNNING])
        if execution.chunks.filter(state=ChunkState.FAILED).exists() and not unfinished.exists():
            return _fail_after_grace(execution)
        return execution
    # Pages fetched past the end that failed (some APIs answer those with an error) count
    # for nothing.
    ChunkJob.objects.filter(
        execution=execution, index__gt=execution.last_chunk_index, state=ChunkState.FAILED
    ).stamp(state=ChunkState.SKIPPED)
    counts = dict(
        execution.chunks.filter(index__lte=execution.last_chunk_index)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    if counts.get(ChunkState.FAILED):
        if counts.get(ChunkState.QUEUED) or counts.get(ChunkState.RUNNING):
            # A page still going may yet show that the source ends before the failed one
            # (an empty page only says the end lies before it); the last one checks again.
            return execution
        return _fail_after_grace(execution)
    expected = execution.last_chunk_index + 1
    if counts.get(ChunkState.SUBMITTED, 0) < expected:
        return execution
    if not Execution.objects.of(execution).claim_completion():
        return execution
    recount_records_fetched(execution)
    # Once, by the worker that claimed it: looking for a record on two pages reads every
    # page's digests (half a second at 10^6 records).
    disagreement = (
        records_past_the_end(execution)
        or total_disagreement(execution)
        or every_record_left_out(execution)
        or every_nested_item_left_out(execution)
        or records_on_two_pages(execution)
        or steep_drop_in_records(execution)
    )
    if disagreement:
        return fail_execution(execution=execution, reason=disagreement)
    overlap = cursor_pages_overlap(execution)
    if overlap:
        Execution.objects.of(execution).add_notice(overlap)
    unchecked = total_never_told(execution)
    if unchecked:
        logger.warning("execution %s: %s", execution.pk, unchecked)
        Execution.objects.of(execution).add_notice(unchecked)
    client = client or AssetsClient.for_source(execution.source)
    if execution.completed_maybe_taken and _took_it_meanwhile(execution, client, started):
        # An earlier post went unanswered, and Assets took it: posted again, it would be
        # refused (the execution no longer takes data).
        logger.info("execution %s: Assets had taken the unanswered 'completed'", execution.pk)
        note_completed_taken_unanswered(execution)
        return _follow_processing(execution, client, started)
    unconfirmed = False
    posted = time.monotonic()
    try:
        client.mark_completed(
            execution.assets_execution_id, timeout=assets_call_wait(execution, started)
        )
    except AssetsError as error:
        if isinstance(error, AssetsTimedOut):  # slow, not away: its next answers are waited for
            wait_longer_after_completed(execution, error.waited)
        # Refused: an earlier "completed" may have been taken, its answer lost on the way.
        # Not answered (a timeout, a dropped connection, a 5xx): this one may have been.
        # Assets' status tells, before the import goes back to a state that can be cancelled.
        maybe_taken = execution.completed_maybe_taken or may_have_been_done(error)
        taken = _past_ingesting_in_assets(execution, client, error, started)
        if taken is False and execution.completed_maybe_taken:
            # Refused, though an earlier post went unanswered: Assets has it most likely,
            # and its status has not caught up (it says INGESTING a while after). A refused
            # token tells nothing new until someone gives another.
            taken = False if isinstance(error, AssetsAuthError) else None
        if taken is False and error.permanent:
            return fail_execution(execution=execution, reason=error.message)
        attempts = execution.completion_attempts + 1
        used_up = attempts >= _attempts_allowed(error)
        if used_up and taken is None and maybe_taken:
            # A "completed" went unanswered and may have been taken, and Assets cannot say
            # now: failed (and cancelled) here, the records it may be writing would be
            # thrown away. It is followed as processing; its status tells how it ends, and
            # if Assets still says INGESTING, "completed" is posted again then.
            logger.warning(
                "execution %s: 'completed' not confirmed (%s); following Assets' status",
                execution.pk,
                error.message,
            )
            taken = unconfirmed = True
        elif used_up and not taken:
            unsaid = "" if taken is False else ", and Assets could not say whether it had it"
            reason = (
                f"Assets did not take 'completed' in {attempts} attempts{unsaid}: "
                f"{error.message}. Every page had been sent; run the import again once Assets "
                "answers."
            )
            return fail_execution(execution=execution, reason=reason)
        if not taken:
            # Assets did not take it, or cannot say now: hand the execution back so a later
            # check posts again, later each time.
            Execution.objects.of(execution).hand_back_completion(
                error=scrub_secrets(error.message, execution.source),
                maybe_taken=maybe_taken,
            )
            work_queue.enqueue_completion_check_after(
                execution.pk, retry_delay(attempts, error.retry_after)
            )
            return execution
        if not unconfirmed:
            logger.info("execution %s: Assets had taken 'completed' already", execution.pk)
    else:
        took = time.monotonic() - posted
        if took > settings.HTTP_TIMEOUT:
            note_completed_answered_late(execution, took)
    return _follow_processing(execution, client, started, unconfirmed=unconfirmed)


def _follow_processing(
    execution: Execution, client: AssetsClient, started: float, *, unconfirmed: bool = False
) -> Execution:
    Execution.objects.of(execution).mark_processing(unconfirmed=unconfirmed)
    execution.refresh_from_db()
    return refresh_status(execution=execution, client=client, task_started=started)


def _took_it_meanwhile(execution: Execution, client: AssetsClient, started: float) -> bool:
    """Whether Assets took a "completed" whose answer did not come, read before posting it
    again: a slow Assets may have taken it after its answer was given up on. Unreadable now,
    it is posted again (a refusal then says it has it)."""
    try:
        status = client.get_execution_status(
            execution.assets_execution_id, timeout=assets_call_wait(execution, started)
        ).status
    except AssetsError:
        return False
    return status in PAST_INGESTING_STATUSES or outcome_of(status) is not None


def _attempts_allowed(error: AssetsError) -> int:
    """Posts of "completed" before giving up: a rate limit asks for a wait, which mends it,
    so its refusals are allowed as many waits as a page's (RATE_LIMITED_MAX_ATTEMPTS)."""
    if isinstance(error, AssetsRateLimited):
        return max(settings.COMPLETION_MAX_ATTEMPTS, settings.RATE_LIMITED_MAX_ATTEMPTS)
    return settings.COMPLETION_MAX_ATTEMPTS


# What Assets reports of an execution that took "completed": it writes, or has written, the
# records.
PAST_INGESTING_STATUSES = frozenset({"PROCESSING", "COMPLETING"})


def _past_ingesting_in_assets(
    execution: Execution, client: AssetsClient, posting: AssetsError, started: float
) -> bool | None:
    """Whether Assets says the execution no longer takes data (it was completed); None when
    it cannot say now (ask again later). A word this app does not know says so only beside a
    refusal of "completed" (`posting` permanent): an execution that no longer ingests refuses
    it; after a post that went unanswered, it is posted again."""
    try:
        status = client.get_execution_status(
            execution.assets_execution_id, timeout=assets_call_wait(execution, started)
        ).status
    except AssetsAuthError:
        return False  # the token is refused: nothing will tell until someone gives a new one
    except AssetsNotFound:
        # Refused as unknown, and read as unknown: the execution is gone. One 404 alone may
        # be a replica that lags behind.
        return False if isinstance(posting, AssetsNotFound) else None
    except AssetsError:
        return None  # a 5xx, a proxy's page: it cannot say now
    if status == "INGESTING":
        return False
    if status in PAST_INGESTING_STATUSES or outcome_of(status):
        return True
    return True if posting.permanent and status else None


def _fail_after_grace(execution: Execution) -> Execution:
    """A failed chunk fails its execution once the operators' grace period has passed."""
    grace = timedelta(seconds=settings.FAILED_CHUNK_GRACE_SECONDS)
    failed = execution.chunks.filter(state=ChunkState.FAILED).order_by("updated_at").first()
    if failed is None:  # retried by an operator a moment ago
        return execution
    waited = timezone.now() - failed.updated_at
    if waited < grace:
        work_queue.enqueue_completion_check_after(
            execution.pk, (grace - waited).total_seconds() + 1
        )
        return execution
    return fail_execution(
        execution=execution, reason=f"Chunk {failed.index + 1} failed: {failed.error}"
    )
