"""django-q2 entry points: each loads a row by id and calls one service."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from importer import notifications, services
from importer.models import ChunkJob, Delivery, Execution


def run_chunk(chunk_id: int) -> None:
    try:
        chunk = ChunkJob.objects.select_related("execution__source").filter(pk=chunk_id).first()
    except ImproperlyConfigured as problem:  # this worker cannot read the source's secrets
        services.note_unreadable_source(chunk_id=chunk_id, problem=str(problem))
        raise
    if chunk is not None:
        services.process_chunk(chunk=chunk)


def run_completion_check(execution_id: int) -> None:
    execution = Execution.objects.select_related("source").filter(pk=execution_id).first()
    if execution is not None:
        services.check_completion(execution=execution)


def run_status_refresh(execution_id: int) -> None:
    execution = Execution.objects.select_related("source").filter(pk=execution_id).first()
    if execution is not None:
        services.refresh_status(execution=execution)


def look_after_imports() -> None:
    """Periodic (every minute): take up lost chunks, flag imports that stall."""
    services.look_after_imports()


def prune_history() -> int:
    """Daily: keep HISTORY_RETENTION_DAYS of execution history (and of alerts and of
    django-q2's failed tasks)."""
    notifications.prune_alerts(days=settings.HISTORY_RETENTION_DAYS)
    services.prune_task_failures(days=settings.HISTORY_RETENTION_DAYS)
    return services.prune_history(days=settings.HISTORY_RETENTION_DAYS)


def raise_execution_alert(execution_id: int, event: str) -> None:
    execution = Execution.objects.select_related("source").filter(pk=execution_id).first()
    if execution is not None:
        notifications.raise_execution_alert(execution=execution, event=event)


def send_delivery(delivery_id: int) -> None:
    delivery = Delivery.objects.select_related("alert", "channel").filter(pk=delivery_id).first()
    if delivery is not None:
        notifications.send_delivery(delivery=delivery)
