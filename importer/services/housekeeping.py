"""Periodic care: take up work whose worker vanished, flag imports that stall, prune history."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from importer import metrics, notifications, work_queue
from importer.models import ChunkJob, Execution
from importer.services.lifecycle import fail_execution

State = Execution.State
ChunkState = ChunkJob.State


def look_after_imports() -> None:
    """Periodic housekeeping (every minute): recover lost work, flag imports that stall."""
    requeue_stalled_chunks()
    flag_stalled_executions()
    notifications.look_after_notifications()


def requeue_stalled_chunks() -> int:
    """Queue again chunks whose worker vanished (lease expired) or whose task was lost.

    The ORM broker redelivers an unacknowledged task by itself; the Redis broker loses a
    task whose worker died. Either way the chunk's row knows it is not finished.
    """
    now = timezone.now()
    # A queued chunk's task may have died with a stopped cluster (the Redis broker forgets
    # it; the ORM broker hands it out again only after `retry`). Queueing it once more is
    # harmless: only one delivery can claim the chunk.
    stale_queued = now - timedelta(seconds=settings.QUEUED_CHUNK_REQUEUE_SECONDS)
    chunk_ids = list(
        ChunkJob.objects.filter(execution__state=State.INGESTING)
        .filter(
            Q(state=ChunkState.RUNNING, lease_expires_at__lt=now)
            | Q(state=ChunkState.QUEUED, next_attempt_at__lte=now)
            | Q(state=ChunkState.QUEUED, next_attempt_at__isnull=True, updated_at__lt=stale_queued)
        )
        .values_list("pk", flat=True)[:1000]
    )
    for chunk_id in chunk_ids:
        work_queue.enqueue_chunk(chunk_id)
    lease = timedelta(seconds=settings.CHUNK_LEASE_SECONDS)
    for execution_id in Execution.objects.filter(
        state=State.COMPLETING, updated_at__lt=now - lease
    ).values_list("pk", flat=True):
        # The worker posting "completed" vanished; the next check posts it again.
        Execution.objects.filter(pk=execution_id).hand_back_completion()
        work_queue.enqueue_completion_check(execution_id)
    return len(chunk_ids)


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
            minutes = settings.STALLED_AFTER_SECONDS // 60
            fail_execution(
                execution=execution,
                reason=f"The import made no progress for {minutes} minutes and was stopped.",
            )
    return stalled


def prune_history(*, days: int, batch_size: int = 2000) -> int:
    """Delete finished executions (and their chunks) older than `days`; how many went."""
    cutoff = timezone.now() - timedelta(days=days)
    old = Execution.objects.filter(state__in=Execution.FINISHED_STATES, created_at__lt=cutoff)
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
