"""Finishing an import: tell Assets the submission is complete, then follow its processing.

`{"completed": true}` is posted by the one worker that moves the execution from INGESTING to
COMPLETING, and only when every chunk up to the source's last page is SUBMITTED.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from importer import notifications, work_queue
from importer.assets import AssetsClient, AssetsError
from importer.models import ChunkJob, Execution
from importer.services.errors import scrub_secrets
from importer.services.lifecycle import fail_execution
from importer.services.retries import retry_delay
from importer.services.totals import total_disagreement

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State
FINAL_STATUSES = {
    "DONE": State.DONE,
    "COMPLETED": State.DONE,
    "FINISHED": State.DONE,
    "SUCCESS": State.DONE,
    "FAILED": State.FAILED,
    "ERROR": State.FAILED,
    "CANCELLED": State.CANCELLED,
    "CANCELED": State.CANCELLED,
}


def check_completion(*, execution: Execution) -> Execution:
    """Post {"completed": true} once every chunk is submitted; otherwise look again later."""
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
            work_queue.enqueue_completion_check_after(
                execution.pk, settings.COMPLETION_RECHECK_SECONDS
            )
            return execution
        return _fail_after_grace(execution)
    expected = execution.last_chunk_index + 1
    if counts.get(ChunkState.SUBMITTED, 0) < expected:
        work_queue.enqueue_completion_check_after(execution.pk, settings.COMPLETION_RECHECK_SECONDS)
        return execution
    disagreement = total_disagreement(execution)
    if disagreement:
        return fail_execution(execution=execution, reason=disagreement)

    if not Execution.objects.of(execution).claim_completion():
        return execution
    try:
        AssetsClient.for_source(execution.source).mark_completed(execution.assets_execution_id)
    except AssetsError as error:
        if error.permanent:
            return fail_execution(execution=execution, reason=error.message)
        # Nothing was accepted: hand the execution back so a later check posts again.
        Execution.objects.of(execution).hand_back_completion(
            error=scrub_secrets(error.message, execution.source)
        )
        work_queue.enqueue_completion_check_after(execution.pk, retry_delay(1, error.retry_after))
        return execution
    Execution.objects.of(execution).mark_processing()
    execution.refresh_from_db()
    return refresh_status(execution=execution)


def _fail_after_grace(execution: Execution) -> Execution:
    """A failed chunk fails its execution once the operators' grace period has passed."""
    grace = timedelta(seconds=settings.FAILED_CHUNK_GRACE_SECONDS)
    failed = execution.chunks.filter(state=ChunkState.FAILED).order_by("updated_at").first()
    waited = timezone.now() - failed.updated_at
    if waited < grace:
        work_queue.enqueue_completion_check_after(
            execution.pk, (grace - waited).total_seconds() + 1
        )
        return execution
    return fail_execution(
        execution=execution, reason=f"Chunk {failed.index + 1} failed: {failed.error}"
    )


def refresh_status(*, execution: Execution) -> Execution:
    """Follow an execution Assets is processing until it reports a final state."""
    if execution.state != State.PROCESSING:
        return execution
    try:
        status = AssetsClient.for_source(execution.source).get_execution_status(
            execution.assets_execution_id
        )
    except AssetsError as error:
        logger.warning("execution %s: status not readable: %s", execution.pk, error.message)
        status = None
    final = FINAL_STATUSES.get(status.status) if status else None
    if final is None:
        work_queue.enqueue_status_refresh_after(execution.pk, settings.COMPLETION_RECHECK_SECONDS)
        return execution
    if Execution.objects.of(execution).finish(
        state=final,
        error="" if final == State.DONE else f"Assets reports the import {status.status}",
    ):
        notifications.notify_execution_finished(execution)
    execution.refresh_from_db()
    return execution
