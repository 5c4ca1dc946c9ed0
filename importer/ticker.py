"""The task cluster's own clock, for what must happen within seconds.

django-q2's scheduler looks at its schedules every 30 seconds and repeats them by the minute
at best. Each worker process of a cluster therefore runs a ticker thread (started by
django-q2's `post_spawn` signal, so only in a real cluster) that, every second:

* sends the put-off tasks whose time has come (`work_queue.send_due_tasks`): retries, the
  next reads of a processing import's status;
* every HOUSEKEEPING_SECONDS, takes up lost work (`services.recover_lost_work`): chunks whose
  lease lapsed because their worker died, tasks a dead cluster took with it, imports whose
  next step never came. One worker across every cluster does it each time
  (`PeriodicJob.objects.claim_due`).

The ticker only talks to the database and the broker; it never calls Assets or a source.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from importer.spawn import in_cluster_worker

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
HOUSEKEEPING = "recover lost work"

_started: tuple[int, threading.Thread] | None = None


def start_in_worker(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q2's post_spawn receiver: a ticker for this worker process (one per process).

    Not when django-q2 runs tasks inline (`sync`): its worker then runs in the caller's own
    process, which is no cluster.
    """
    global _started
    if not in_cluster_worker():
        return
    if _started is not None and _started[0] == os.getpid() and _started[1].is_alive():
        return
    thread = threading.Thread(target=run_forever, name="ticker", daemon=True)
    _started = (os.getpid(), thread)
    thread.start()


def run_forever(stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    ticker = Ticker()
    while not stop.wait(TICK_SECONDS):
        ticker.tick()
    connection.close()


class Ticker:
    """One worker process's beat."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.next_claim = clock()

    def tick(self) -> None:
        """Send due tasks; take up lost work when this worker wins the period.

        Each worker asks for the housekeeping period twice per HOUSEKEEPING_SECONDS (once
        could just miss the due time and wait a whole period more), so the claim costs two
        UPDATEs per worker and period, not one per beat.
        """
        from importer import services, work_queue
        from importer.models import PeriodicJob

        close_old_connections()
        try:
            work_queue.send_due_tasks()
            if self.clock() >= self.next_claim:
                every = settings.HOUSEKEEPING_SECONDS
                self.next_claim = self.clock() + every / 2
                if PeriodicJob.objects.claim_due(HOUSEKEEPING, every=every):
                    services.recover_lost_work()
        except Exception:  # a beat that fails must not stop the clock: the next one tries again
            logger.exception("the ticker's beat failed")
            connection.close()
