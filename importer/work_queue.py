"""Putting work on the django-q2 queue, now or later.

django-q2 has no countdown, so work that must wait (a retry after backoff, the next
completion check) becomes a one-off django-q2 Schedule whose `next_run` is the time to run.
The scheduler looks at schedules every 30 seconds, so short waits happen in the worker.

Chunk and completion tasks are not kept in django-q2's task history when they succeed (their
story is in our own tables, and keeping thousands of them makes django-q2's monitor prune the
history on every task); failures are kept.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task


def enqueue_chunk(chunk_id: int) -> None:
    async_task("importer.tasks.run_chunk", chunk_id, task_name=f"chunk-{chunk_id}", save=False)


def enqueue_completion_check(execution_id: int) -> None:
    async_task(
        "importer.tasks.run_completion_check",
        execution_id,
        task_name=f"complete-{execution_id}",
        save=False,
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
        "next_run": timezone.now() + timedelta(seconds=delay_seconds),
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
    async_task(
        "importer.tasks.raise_execution_alert",
        execution_id,
        event,
        task_name=f"alert-{event}-{execution_id}",
    )


def enqueue_delivery(delivery_id: int) -> None:
    async_task("importer.tasks.send_delivery", delivery_id, task_name=f"delivery-{delivery_id}")


def enqueue_delivery_after(delivery_id: int, delay_seconds: float) -> None:
    _run_later(
        "importer.tasks.send_delivery",
        delivery_id,
        name=f"retry-delivery-{delivery_id}",
        delay_seconds=delay_seconds,
    )
