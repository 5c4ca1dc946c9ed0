"""Each source's condition now, as on-call reads it first: stalled, failing, stale, running, OK.

Three queries whatever the history: the enabled sources, each with indexed look-ups of the
runs that ended last (execution_source_finished), read as alerts read them
(`notifications.streaks`); those runs by primary key; the open runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from importer.models import Execution, ImportSource, Schedule
from importer.notifications.staleness import SCHEDULE_INTERVALS, due_by
from importer.notifications.streaks import failures_after, runs_by_end
from importer.services import scrub_secrets

State = Execution.State
BEFORE_ANY_RUN = datetime(1970, 1, 1, tzinfo=UTC)
ERROR_LINE_CHARACTERS = 160


class Condition:
    """The conditions, worst first: the table is sorted by this order."""

    STALLED = "stalled"
    FAILING = "failing"
    STALE = "stale"
    RUNNING = "running"
    NEVER_RUN = "no import yet"
    OK = "OK"
    ORDER = (STALLED, FAILING, STALE, RUNNING, NEVER_RUN, OK)


@dataclass
class SourceStatus:
    source: ImportSource
    condition: str
    latest: Execution | None = None
    running: Execution | None = None
    last_success: Execution | None = None
    # Stalled: since the stall; failing: since the first failure of the current streak.
    since: datetime | None = None
    failures_in_row: int = 0
    # Stale: when the schedule's run was due, grace included.
    due: datetime | None = None
    error_line: str = ""

    @property
    def css_class(self) -> str:
        return "status-" + self.condition.replace(" ", "-").lower()

    @property
    def latest_figures(self) -> str:
        """What the latest run sent and how long it took (or has taken so far)."""
        run = self.latest
        if run is None:
            return ""
        sent = f"{run.records_submitted:,} record{'' if run.records_submitted == 1 else 's'} sent"
        if run.duration is None:
            return sent
        return f"{sent} in {took(run.duration.total_seconds())}"


def source_statuses(now: datetime | None = None) -> list[SourceStatus]:
    """The enabled sources' statuses, worst first."""
    now = now or timezone.now()
    sources = list(_enabled_sources_with_their_runs())
    wanted = {
        pk
        for source in sources
        for pk in (source.latest_id, source.last_done_id, source.latest_failure_id)
        if pk is not None
    }
    runs = Execution.objects.in_bulk(wanted)
    # Open runs are few (one per source at most) and found by the state index; looked up
    # per source, a source with none would read its whole history.
    running = {run.source_id: run for run in Execution.objects.open().order_by()}
    statuses = [_status_of(source, runs, running.get(source.pk), now) for source in sources]
    statuses.sort(key=lambda status: (Condition.ORDER.index(status.condition), status.source.name))
    return statuses


def disabled_sources() -> list[ImportSource]:
    return list(ImportSource.objects.filter(enabled=False).only("pk", "name").order_by("name"))


def _enabled_sources_with_their_runs():
    # By their ends, as alerts read them: the dashboard and the alerts agree on the last run.
    runs = runs_by_end(OuterRef("pk"))
    done = runs.filter(state=State.DONE)
    # The failures since the source's last DONE: its current streak.
    streak = failures_after(runs, Coalesce(OuterRef("last_done_at"), Value(BEFORE_ANY_RUN)))
    streak_length = streak.order_by().values("source").annotate(n=Count("pk")).values("n")
    return (
        ImportSource.objects.filter(enabled=True)
        .select_related("schedule")
        .annotate(
            latest_id=Subquery(runs.values("pk")[:1]),
            last_done_id=Subquery(done.values("pk")[:1]),
            last_done_at=Subquery(done.values("finished_at")[:1]),
        )
        .annotate(
            latest_failure_id=Subquery(streak.values("pk")[:1]),
            failing_since=Subquery(streak.reverse().values("finished_at")[:1]),
            failures_in_row=Coalesce(Subquery(streak_length), 0),
        )
        .order_by("name")
    )


def _status_of(
    source: ImportSource, runs: dict[int, Execution], running: Execution | None, now: datetime
) -> SourceStatus:
    status = SourceStatus(
        source=source,
        condition=Condition.OK,
        # An open run is the latest; else the one that ended last.
        latest=running or runs.get(source.latest_id),
        running=running,
        last_success=runs.get(source.last_done_id),
        failures_in_row=source.failures_in_row,
    )
    due = _stale_due(source, status.last_success, now)
    if status.running is not None and status.running.stalled_since is not None:
        status.condition, status.since = Condition.STALLED, status.running.stalled_since
    elif source.failures_in_row:
        status.condition, status.since = Condition.FAILING, source.failing_since
    elif due is not None:
        status.condition = Condition.STALE
    elif status.running is not None:
        status.condition = Condition.RUNNING
    elif status.latest is None:
        status.condition = Condition.NEVER_RUN
    status.due = due
    failure = runs.get(source.latest_failure_id)
    if failure is not None:
        status.error_line = first_line(failure.error, source)
    return status


def _stale_due(source: ImportSource, last_success: Execution | None, now: datetime):
    """When the source's scheduled run was due, if it is overdue: the rule alerts and the
    metrics apply (`notifications.events.due_by`), fed with the last success read here."""
    try:
        schedule = source.schedule
    except Schedule.DoesNotExist:
        return None
    if schedule.frequency not in SCHEDULE_INTERVALS:
        return None
    due = due_by(schedule, last_success.finished_at if last_success else None)
    return due if now > due else None


def took(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    seconds = int(seconds)
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def first_line(error: str, source: ImportSource) -> str:
    """An error's first line, short, without the source's secrets (as the admin shows errors)."""
    line = scrub_secrets(error.strip().partition("\n")[0], source)
    if len(line) > ERROR_LINE_CHARACTERS:
        line = line[: ERROR_LINE_CHARACTERS - 1].rsplit(" ", 1)[0] + " …"
    return line
