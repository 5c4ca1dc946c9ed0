"""Claiming a chunk: take it under a lease, within its source's limits, and see, right
before its page goes to Assets, whether it is still this worker's to send.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from importer import clock, page_sql, work_queue
from importer.models import ChunkJob, Execution, ImportSource
from importer.services.chunks.outcomes import failed_for_good

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State
ATTEMPTS_USED_UP = "attempts_used_up"


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
        failed_for_good(chunk, message, kind=ATTEMPTS_USED_UP)


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
