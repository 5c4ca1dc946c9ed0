"""The wall-clock arithmetic of schedules: their runs in their own time zone, and the run
Assets was told at the last sync, which it repeats from. Plain functions of a Schedule row,
shared by the services that sync schedules and the alerts that find a source overdue.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from importer.models import Schedule


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_run(
    schedule: Schedule, *, after: datetime | None = None, anchor: bool = False
) -> datetime | None:
    """The first run at or after `after` (now), in wall-clock time of the schedule's zone.

    A run whose time the clocks skip that day (02:30 when they go from 02:00 to 03:00) is
    at the time it becomes (03:30). With `anchor`, the first run Assets can repeat from: one
    at the schedule's own time of day, and a monthly one on its own day of the month (the
    31st, not a shorter month's last day): Assets repeats from the start time it holds.
    """
    after = after or timezone.now()
    zone = ZoneInfo(schedule.timezone)
    first = schedule.start_time.astimezone(zone).replace(tzinfo=None)
    if schedule.frequency == Schedule.Frequency.ONCE:
        return schedule.start_time.astimezone(zone) if schedule.start_time >= after else None
    step = 0
    while True:
        if schedule.frequency == Schedule.Frequency.MONTHLY:
            candidate = _add_months(first, step)
        else:
            days = 7 if schedule.frequency == Schedule.Frequency.WEEKLY else 1
            candidate = first + timedelta(days=days * step)
        aware = candidate.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
        own_time = aware.replace(tzinfo=None) == candidate and (
            candidate.day == first.day or schedule.frequency != Schedule.Frequency.MONTHLY
        )
        if aware >= after and (own_time or not anchor):
            return aware
        # Jump close to `after` instead of walking day by day through years of history.
        if step == 0 and schedule.frequency != Schedule.Frequency.MONTHLY:
            days = 7 if schedule.frequency == Schedule.Frequency.WEEKLY else 1
            step = max(1, (after - aware).days // days)
        else:
            step += 1


def start_sent(schedule: Schedule) -> datetime | None:
    """The first run Assets was told at the last sync (None when Assets holds none). Kept
    on the row since migration 0028; for a sync made by an earlier release, or one since
    that changed the timing (an earlier release's process during an upgrade), what that
    release sent: the next run on the schedule's own day and time after the sync."""
    if not (schedule.in_sync and schedule.synced_at):
        return None
    kept = schedule.start_sent
    if kept is not None and next_run(schedule, after=kept) == kept:
        return kept
    return next_run(schedule, after=schedule.synced_at, anchor=True)
