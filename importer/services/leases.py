"""A lane's hold on its chunks: leases renewed while it works (a heartbeat).

A chunk RUNNING under a lease belongs to the worker that claimed it. If the lease lapses (the
worker died, or froze), housekeeping queues the chunk again and another worker may claim it;
that claim requires a lapsed lease and moves the attempt count on. So while a lane works, a
background thread renews the leases of the chunks it holds every CHUNK_LEASE_SECONDS / 6, and
a worker that dies leaves its chunks to others within one lease.

A renewal is a guarded UPDATE (`ChunkJob.objects.held_by(chunk)`: still RUNNING, same
attempt). Of a renewal and a claim racing on one row, exactly one wins: a renewal never
extends a chunk another worker took over. A chunk whose renewal fails is lost: the lane
leaves it to the other worker (`holds` says so before the lane does anything more with it).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from importer import clock
from importer.models import ChunkJob

logger = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 6


def renewal_period() -> float:
    """Seconds between two renewals of a chunk's lease."""
    return max(0.05, settings.CHUNK_LEASE_SECONDS / RENEWALS_PER_LEASE)


class Leases:
    """The chunks one lane holds, kept alive by a heartbeat thread until `close`."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[int, ChunkJob] = {}
        self._renewed_at: dict[int, float] = {}  # clock() of the last renewal
        self._lost: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, chunk: ChunkJob) -> None:
        """Keep renewing this chunk, which the lane has just claimed."""
        with self._lock:
            if chunk.pk in self._held or chunk.pk in self._lost:
                return
            self._held[chunk.pk] = chunk
            self._renewed_at[chunk.pk] = self._clock()
        self._start_heartbeat()

    def let_go(self, chunk: ChunkJob) -> None:
        """The lane is done with the chunk (recorded, given back, failed or stopped)."""
        with self._lock:
            self._held.pop(chunk.pk, None)
            self._renewed_at.pop(chunk.pk, None)

    def holds(self, chunk: ChunkJob) -> bool:
        """Whether the lane may go on with the chunk. When the heartbeat has not renewed it
        for a period (the worker was busy, or frozen), it is renewed now: a chunk another
        worker has taken over meanwhile is lost."""
        with self._lock:
            if chunk.pk in self._lost:
                return False
            last = self._renewed_at.get(chunk.pk)
        if last is None or self._clock() - last < renewal_period():
            return True
        return self._renew(chunk)

    def close(self) -> None:
        """Stop the heartbeat (the lane ends; what it still holds it has given back)."""
        self._stop.set()
        with self._lock:
            self._held.clear()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _renew(self, chunk: ChunkJob) -> bool:
        until = clock.now() + timedelta(seconds=settings.CHUNK_LEASE_SECONDS)
        renewed = ChunkJob.objects.held_by(chunk).renew_lease(until=until)
        with self._lock:
            if renewed:
                self._renewed_at[chunk.pk] = self._clock()
            elif chunk.pk in self._held:
                # Done meanwhile, or taken over: either way not ours to touch any more.
                self._held.pop(chunk.pk, None)
                self._renewed_at.pop(chunk.pk, None)
                self._lost.add(chunk.pk)
        if not renewed:
            logger.info("chunk %s: lease not renewed, left to whoever holds it now", chunk.pk)
        return renewed

    def _start_heartbeat(self) -> None:
        # A caller inside a transaction (a test, a shell session) holds rows the heartbeat's
        # own connection could not see or would wait for; there the lane renews in `holds`.
        if self._thread is not None or connection.in_atomic_block:
            return
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(renewal_period() / 2):
                with self._lock:
                    now = self._clock()
                    due = [
                        chunk
                        for pk, chunk in self._held.items()
                        if now - self._renewed_at[pk] >= renewal_period()
                    ]
                for chunk in due:
                    if self._stop.is_set():
                        break
                    try:
                        self._renew(chunk)
                    except (OperationalError, InterfaceError):
                        # The database went away: the next beat renews on a new connection.
                        logger.warning("lease heartbeat: the database connection was lost")
                        connection.close()
                        break
        except Exception:  # the lane goes on; `holds` renews on its own thread
            logger.exception("lease heartbeat stopped")
        finally:
            connection.close()
