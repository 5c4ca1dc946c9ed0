"""Periodic care: take up work whose worker vanished, flag imports that stall, prune history."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_q.models import Failure

from importer import clock, metrics, notifications, work_queue
from importer.models import ChunkJob, Execution
from importer.notifications.messages import duration_text
from importer.services.completion import completion_is_due
from importer.services.lifecycle import (
    fail_execution,
    give_up_stopped_starts,
    report_pending_failures,
)
from importer.services.schedules import reanchor_due_schedules, retry_failed_syncs
from importer.sources import files

State = Execution.State
ChunkState = ChunkJob.State


def look_after_imports() -> None:
    """Periodic housekeeping (every minute): recover lost work, flag imports that stall,
    move schedules back to their own day and time, sync again those Assets could not take.
    Its tasks go as one batch: a hung broker costs the round one socket timeout, and what it
    was not asked waits for the next round."""
    with work_queue.batch():
        recover_lost_work()
        flag_stalled_executions()
        give_up_stopped_starts()
        report_pending_failures()
        reanchor_due_schedules()
        retry_failed_syncs()
        drop_unused_file_copies()
        notifications.look_after_notifications()


def drop_unused_file_copies() -> int:
    """Delete the copies of URL files kept for imports that are over (`sources.files`)."""
    running = Execution.objects.open()
    return files.drop_unused_copies(lambda: set(running.values_list("pk", flat=True)))


def recover_lost_work() -> None:
    """Take up what a vanished worker or a lost task left behind.

    The workers' tickers run this every HOUSEKEEPING_SECONDS (see importer/ticker.py), and
    the every-minute housekeeping once more. Its tasks go as one batch (`work_queue.batch`).
    """
    with work_queue.batch():
        requeue_stalled_chunks()
        follow_up_quiet_executions()


def requeue_stalled_chunks() -> int:
    """Queue again chunks whose worker vanished (lease expired) or whose task was lost.

    The ORM broker redelivers an unacknowledged task by itself; the Redis broker loses a
    task whose worker died. Either way the chunk's row knows it is not finished.
    """
    now = clock.now()  # leases and retry times are dated by the database's clock
    local = timezone.now()  # `updated_at` by the clock of the host that wrote it
    # A queued chunk's task may have died with a stopped cluster (the Redis broker forgets
    # it; the ORM broker hands it out again only after `retry`). Queueing it once more is
    # harmless: only one delivery can claim the chunk. Such a chunk is stamped, so a chunk
    # that only waits its turn gets one more task per QUEUED_CHUNK_REQUEUE_SECONDS at most.
    stale_queued = local - timedelta(seconds=settings.QUEUED_CHUNK_REQUEUE_SECONDS)
    waiting_long = Q(
        state=ChunkState.QUEUED, next_attempt_at__isnull=True, updated_at__lt=stale_queued
    )
    stalled = ChunkJob.objects.filter(execution__state=State.INGESTING).filter(
        Q(state=ChunkState.RUNNING, lease_expires_at__lt=now)
        | Q(state=ChunkState.QUEUED, next_attempt_at__lte=now)
        | waiting_long
    )
    chunk_ids = list(stalled.values_list("pk", flat=True)[:1000])
    ChunkJob.objects.filter(waiting_long, pk__in=chunk_ids).stamp()
    work_queue.enqueue_chunks(chunk_ids)
    # Posting "completed" is one request of at most HTTP_TIMEOUT; a worker that has been at
    # it for longer than that plus a lease has vanished, and the next check posts it again.
    posting_since = local - timedelta(seconds=settings.HTTP_TIMEOUT + settings.CHUNK_LEASE_SECONDS)
    for execution_id in Execution.objects.filter(
        state=State.COMPLETING, updated_at__lt=posting_since
    ).values_list("pk", flat=True):
        Execution.objects.filter(pk=execution_id).hand_back_completion()
        work_queue.enqueue_completion_check(execution_id)
    return len(chunk_ids)


def follow_up_quiet_executions() -> int:
    """The safety net under "the last page completes the import" and "a processing import is
    followed": an execution whose next step did not come (its task lost with a killed
    cluster) is looked at again once it has been quiet for COMPLETION_RECHECK_SECONDS.

    An ingesting execution gets a completion check once no page up to its end is queued or
    running; a processing one gets a read of its status (each read stamps it, and reads are
    at most STATUS_POLL_MAX_SECONDS apart). How many were followed up.
    """
    now = timezone.now()
    quiet = timedelta(seconds=settings.COMPLETION_RECHECK_SECONDS)
    followed = 0
    ingesting = Execution.objects.filter(state=State.INGESTING, updated_at__lt=now - quiet)
    for execution_id in ingesting.values_list("pk", flat=True)[:1000]:
        if completion_is_due(execution_id):
            work_queue.enqueue_completion_check(execution_id)
            followed += 1
    processing_since = now - quiet - timedelta(seconds=settings.STATUS_POLL_MAX_SECONDS)
    for execution_id in Execution.objects.filter(
        state=State.PROCESSING, updated_at__lt=processing_since
    ).values_list("pk", flat=True)[:1000]:
        work_queue.enqueue_status_refresh(execution_id)
        followed += 1
    return followed


def flag_stalled_executions() -> list[Execution]:
    """Flag executions without progress for STALLED_AFTER_SECONDS; fail them if so configured."""
    now = timezone.now()
    stalled = list(
        Execution.objects.select_related("source").filter(
            state=State.INGESTING,
            updated_at__lt=now - timedelta(seconds=settings.STALLED_AFTER_SECONDS),
        )
    )
    for execution in stalled:
        if execution.stalled_since is None:
            # Not stamped: the flag is no progress, and must not reset the clock it reads.
            Execution.objects.of(execution).update(stalled_since=now)
            notifications.notify_execution_stalled(execution)
        if settings.FAIL_STALLED_EXECUTIONS:
            quiet = duration_text(settings.STALLED_AFTER_SECONDS)
            fail_execution(
                execution=execution,
                reason=f"The import made no progress for {quiet} and was stopped "
                "(FAIL_STALLED_EXECUTIONS). Its pages' errors say why; run it again once the "
                "source and Assets answer.",
            )
    return stalled


# A hundred years: a date much further back cannot be written (HISTORY_RETENTION_DAYS too).
MAX_RETENTION_DAYS = 36_500


def prune_task_failures(*, days: int, batch_size: int = 2000) -> int:
    """Delete django-q2's records of failed tasks that stopped over `days` ago; how many went.
    django-q2 caps the successes it keeps (Q_SAVE_LIMIT) but keeps every failure, for good."""
    cutoff = timezone.now() - timedelta(days=days)
    old = Failure.objects.filter(stopped__lt=cutoff)
    deleted = 0
    while batch := list(old.values_list("pk", flat=True)[:batch_size]):
        Failure.objects.filter(pk__in=batch).delete()
        deleted += len(batch)
    return deleted


def prune_history(*, days: int, batch_size: int = 2000) -> int:
    """Delete executions (and their chunks) started and ended over `days` ago; how many went.

    Each source's latest successful import is kept, however old: the stale check, /health
    and the metrics read a source's last success from it, and a weekly source pruned after
    three days would look never imported.
    """
    cutoff = timezone.now() - timedelta(days=days)
    # A source runs one import at a time: a later one ended later.
    newer_success = Execution.objects.filter(
        source=OuterRef("source"), state=Execution.State.DONE, pk__gt=OuterRef("pk")
    )
    # Ended before the cutoff too: one cancelled a moment ago may still have lanes winding down.
    old = (
        Execution.objects.filter(state__in=Execution.FINISHED_STATES, created_at__lt=cutoff)
        .exclude(finished_at__gte=cutoff)
        .exclude(Q(state=Execution.State.DONE) & ~Exists(newer_success))
    )
    deleted = 0
    while True:
        # In batches, so a first run on years of history does not hold one huge transaction.
        batch = list(old.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        with transaction.atomic():
            metrics.keep_totals(execution_ids=batch)
            ChunkJob.objects.filter(execution_id__in=batch).delete()
            Execution.objects.filter(pk__in=batch).delete()
        deleted += len(batch)
