"""Putting work on the django-q2 queue, now or later.

django-q2 has no countdown, so work that must wait (a retry after backoff, the next read of
a processing import's status) becomes a one-off django-q2 Schedule whose `next_run` is the
time to run. django-q2's scheduler looks at schedules only every 30 seconds; the cluster's
own ticker (importer/ticker.py) sends these within a second of their time, and django-q2's
scheduler stays behind it in case no ticker runs. Waits of a few seconds happen in the worker.

Chunk and completion tasks are not kept in django-q2's task history when they succeed (their
story is in our own tables, and keeping thousands of them makes django-q2's monitor prune the
history on every task); failures are kept.
"""

import ast
import logging
import os
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django_q.brokers import Broker, get_broker
from django_q.models import Schedule
from django_q.tasks import async_task as _async_task

from importer import clock
from importer.health import broker_error_text
from importer.models import ChunkJob

logger = logging.getLogger(__name__)

# The tasks that are put off as one-off schedules (see `_run_later`).
DELAYED_FUNCS = (
    "importer.tasks.run_chunk",
    "importer.tasks.run_completion_check",
    "importer.tasks.run_status_refresh",
    "importer.tasks.send_delivery",
)


_broker_lock = threading.Lock()
_broker: tuple[int, Broker] | None = None


def _process_broker() -> Broker:
    """This process's broker, made once: django-q2 makes a new one (for Redis, a new
    connection) for every task it is not handed one, which cost the start of an import 1-3 ms
    per lane. A forked worker makes its own."""
    global _broker
    with _broker_lock:
        if _broker is None or _broker[0] != os.getpid():
            _broker = (os.getpid(), get_broker())
        return _broker[1]


def async_task(func: str, *args, **options):
    """django-q2's `async_task` through this process's broker."""
    return _async_task(func, *args, broker=_process_broker(), **options)


_batches = threading.local()


@contextmanager
def batch():
    """Tasks sent together (an import's first pages, housekeeping's round): once the broker
    has failed one, the others are left to housekeeping without asking it again. A broker
    that hangs (it takes the connection and never answers) costs its socket timeout, 5 s,
    per task: a start of 16 lanes would wait for it 16 times."""
    if getattr(_batches, "current", None) is not None:  # within another: one failure for all
        yield
        return
    _batches.current = {"broker_failed": False}
    try:
        yield
    finally:
        _batches.current = None


def _send_or_leave_to_housekeeping(func: str, *args, name: str, save: bool = False) -> bool:
    """Queue a step whose row says it is due (a chunk's, an execution's, a delivery's). A
    broker that cannot take it now (Redis restarting, out of reach) loses nothing:
    housekeeping finds the row waiting and queues it again (`services.housekeeping`), so the
    import goes on once the broker is back, rather than failing on it. `save`: kept in
    django-q2's task history when it succeeds."""
    current = getattr(_batches, "current", None)
    if current is not None and current["broker_failed"]:
        return False
    try:
        async_task(func, *args, task_name=name, save=save)
    except Exception as error:
        if current is not None:
            current["broker_failed"] = True
        logger.warning(
            "%s not queued (%s); housekeeping queues it again", name, _broker_error(error)
        )
        return False
    return True


def enqueue_chunk(chunk_id: int) -> None:
    if not _send_or_leave_to_housekeeping(
        "importer.tasks.run_chunk", chunk_id, name=f"chunk-{chunk_id}"
    ):
        # Due now: housekeeping's next round queues it (not only once it looks stale).
        ChunkJob.objects.filter(
            pk=chunk_id, state=ChunkJob.State.QUEUED, next_attempt_at__isnull=True
        ).update(next_attempt_at=clock.now())


def enqueue_chunks(chunk_ids: list[int]) -> None:
    """Queue these chunks together: a broker that fails one is not asked for the others
    (`batch`)."""
    with batch():
        for chunk_id in chunk_ids:
            enqueue_chunk(chunk_id)


def enqueue_completion_check(execution_id: int) -> None:
    _send_or_leave_to_housekeeping(
        "importer.tasks.run_completion_check", execution_id, name=f"complete-{execution_id}"
    )


def enqueue_status_refresh(execution_id: int) -> None:
    _send_or_leave_to_housekeeping(
        "importer.tasks.run_status_refresh", execution_id, name=f"status-{execution_id}"
    )


def _run_later(func: str, arg: int, *, name: str, delay_seconds: float) -> None:
    """One pending run per name: a later request moves the existing one.

    django-q2's Schedule.name is not unique, so two workers asking at once may both insert;
    that only means one extra run, which the services shrug off. update_or_create would
    instead fail for good on the duplicate names.
    """
    fields = {
        "func": func,
        "args": repr((arg,)),
        "schedule_type": Schedule.ONCE,
        "repeats": -1,
        # By the database's clock, as the tickers of every host read it.
        "next_run": clock.now() + timedelta(seconds=delay_seconds),
    }
    if not Schedule.objects.filter(name=name).update(**fields):
        Schedule.objects.create(name=name, **fields)


def enqueue_chunk_after(chunk_id: int, delay_seconds: float) -> None:
    if delay_seconds <= settings.CHUNK_RETRY_INLINE_MAX_SECONDS:
        time.sleep(delay_seconds)
        enqueue_chunk(chunk_id)
    else:
        _run_later(
            "importer.tasks.run_chunk",
            chunk_id,
            name=f"retry-chunk-{chunk_id}",
            delay_seconds=delay_seconds,
        )


def enqueue_completion_check_after(execution_id: int, delay_seconds: float) -> None:
    _run_later(
        "importer.tasks.run_completion_check",
        execution_id,
        name=f"check-completion-{execution_id}",
        delay_seconds=delay_seconds,
    )


def enqueue_status_refresh_after(execution_id: int, delay_seconds: float) -> None:
    _run_later(
        "importer.tasks.run_status_refresh",
        execution_id,
        name=f"refresh-status-{execution_id}",
        delay_seconds=delay_seconds,
    )


def enqueue_execution_alert(execution_id: int, event: str) -> None:
    """Housekeeping raises an alert whose task was lost (`catch_up_execution_alerts`)."""
    _send_or_leave_to_housekeeping(
        "importer.tasks.raise_execution_alert",
        execution_id,
        event,
        name=f"alert-{event}-{execution_id}",
        save=True,
    )


def enqueue_delivery(delivery_id: int) -> None:
    """Housekeeping queues a pending delivery again (`requeue_lost_deliveries`)."""
    _send_or_leave_to_housekeeping(
        "importer.tasks.send_delivery", delivery_id, name=f"delivery-{delivery_id}", save=True
    )


def enqueue_delivery_after(delivery_id: int, delay_seconds: float) -> None:
    _run_later(
        "importer.tasks.send_delivery",
        delivery_id,
        name=f"retry-delivery-{delivery_id}",
        delay_seconds=delay_seconds,
    )


def send_due_tasks() -> int:
    """Queue the put-off tasks whose time has come; how many this caller sent.

    Each is taken by deleting its schedule row: of several tickers, or a ticker and
    django-q2's scheduler (which deletes a one-off schedule in the transaction that queues
    it), only the one whose DELETE removed the row sends the task.
    """
    now = clock.now()
    due = list(
        Schedule.objects.filter(
            func__in=DELAYED_FUNCS, schedule_type=Schedule.ONCE, next_run__lte=now
        )
        .exclude(repeats=0)
        .values_list("pk", "func", "args", "name")[:500]
    )
    sent = 0
    with batch():
        for pk, func, args, name in due:
            taken, _ = Schedule.objects.filter(pk=pk, next_run__lte=now).delete()
            if taken:  # its row (a chunk's, a delivery's) tells housekeeping if the broker is down
                _send_or_leave_to_housekeeping(func, *ast.literal_eval(args or "()"), name=name)
                sent += 1
    return sent


def _broker_error(error: Exception) -> str:
    """What a log may say of a broker's error: redis-py quotes a REDIS_URL it cannot read
    (a '/' in the password ends the host), so such an error is named, never quoted."""
    return broker_error_text(error)
