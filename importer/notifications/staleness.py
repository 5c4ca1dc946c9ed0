"""When a scheduled source is stale: no successful import for its schedule's interval plus
STALE_GRACE_SECONDS. Alerts, /health and the metrics read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from importer.models import Execution, Schedule
from importer.schedule_times import start_sent

SCHEDULE_INTERVALS = {
    Schedule.Frequency.DAILY: timedelta(days=1),
    Schedule.Frequency.WEEKLY: timedelta(days=7),
    Schedule.Frequency.MONTHLY: timedelta(days=31),
}


@dataclass
class Overdue:
    schedule: Schedule
    last_success: datetime | None
    due: datetime
    interval: timedelta


def last_successes(source_ids=None) -> dict[int, datetime]:
    done = Execution.objects.filter(state=Execution.State.DONE, finished_at__isnull=False)
    if source_ids is not None:
        done = done.filter(source_id__in=source_ids)
    return dict(
        done.values("source").annotate(last=Max("finished_at")).values_list("source", "last")
    )


def due_by(schedule: Schedule, last_success: datetime | None) -> datetime:
    """When a source with this schedule must have imported again, grace included.

    The next import is due one interval after the last successful one, or after the first
    run Assets was told of this timing when that came later (a new or moved schedule gets a
    whole interval: its first import may still be running). A start time in the past is not
    that run: Assets was told the next one after the sync.
    """
    # Synced by an earlier release (no `runs_from` kept): the run sent at that sync.
    first = schedule.runs_from or start_sent(schedule) or schedule.start_time
    since = first if last_success is None else max(first, last_success)
    interval = SCHEDULE_INTERVALS[schedule.frequency]
    return since + interval + timedelta(seconds=settings.STALE_GRACE_SECONDS)


def scheduled_sources() -> list[Schedule]:
    """Schedules that repeat, of enabled sources: those whose sources can go stale."""
    return list(
        Schedule.objects.select_related("source").filter(
            source__enabled=True, frequency__in=list(SCHEDULE_INTERVALS)
        )
    )


def overdue_sources(now: datetime | None = None) -> list[Overdue]:
    now = now or timezone.now()
    schedules = scheduled_sources()
    last = last_successes([schedule.source_id for schedule in schedules])
    found = []
    for schedule in schedules:
        last_success = last.get(schedule.source_id)
        due = due_by(schedule, last_success)
        if now > due:
            interval = SCHEDULE_INTERVALS[schedule.frequency]
            found.append(Overdue(schedule, last_success, due, interval))
    return found
