"""An alert's first attempt made by the task that raised it (`delivering_here`), within a
budget, rather than queued behind the imports' lanes.

Kept apart from the delivery: this decides which thread sends, and for how long, not how.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings

from importer import work_queue
from importer.models import Delivery
from importer.notifications.delivery import send_delivery
from importer.spawn import in_cluster_worker

logger = logging.getLogger(__name__)

_here = threading.local()


def sends_here() -> bool:
    """Whether this thread may make an alert's first attempt itself: a task on a cluster
    worker's own thread, never a web request, a command (it may exit while sending) or the
    ticker's thread (it only talks to the database and the broker)."""
    return in_cluster_worker() and threading.current_thread() is threading.main_thread()


@contextmanager
def delivering_here():
    """The deliveries recorded within are tried at once by this thread, not queued, when it
    may send (`sends_here`), until the sends have taken `inline_budget` between them."""
    before = getattr(_here, "on", False)
    _here.on = before or sends_here()
    if not before:
        _here.spent = 0.0
    try:
        yield
    finally:
        _here.on = before


def inline_budget() -> float:
    """Seconds a task may spend sending alerts itself: one channel that hangs uses them up,
    and the channels after it are queued, so the task that ended an import (or housekeeping)
    is held for one timeout, not one per channel."""
    return settings.ALERT_TIMEOUT


def deliver_now_or_queue(delivery_id: int) -> None:
    """After the delivery is committed: its first attempt here (`delivering_here`), or its
    task. A failed attempt is retried by a task, as any; an error before the attempt leaves
    it to its task."""
    if not getattr(_here, "on", False) or getattr(_here, "spent", 0.0) >= inline_budget():
        work_queue.enqueue_delivery(delivery_id)
        return
    started = time.monotonic()
    try:
        delivery = Delivery.objects.select_related("alert", "channel").get(pk=delivery_id)
        send_delivery(delivery=delivery)
    except Exception:
        logger.exception("delivery %s: left to its task", delivery_id)
        work_queue.enqueue_delivery(delivery_id)
    finally:
        _here.spent = getattr(_here, "spent", 0.0) + time.monotonic() - started
