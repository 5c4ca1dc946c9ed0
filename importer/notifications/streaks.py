"""A source's failure streak: its failed and refused runs since its last successful import.

Alerts read it to say how long a source has been failing, to hold back the repeats of a
streak already told (ALERT_REPEAT_HOURS), and to tell its end ("recovered"); the dashboard
reads it with the same queries (`runs_by_end`, `failures_after`), so both agree on which run
came last. It is read from the history, so it needs no state of its own: a run told to
nobody on purpose (a scheduled run Assets asked for again), or refused because another
import of the source was running, does not count, and a cancelled one neither breaks nor
extends a streak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from importer.models import Alert, Delivery, Execution

State = Execution.State
FAILURE_KINDS = [Alert.Kind.FAILED, Alert.Kind.REFUSED]
# The runs whose end is told as a failure of the source (REFUSED runs told to nobody stay
# out, and so do runs refused because another import was running: the source did not fail).
TOLD_FAILURES = Q(
    state__in=[State.FAILED, State.REFUSED], alert_wanted=True, another_import_running=False
)


@dataclass(frozen=True)
class FailureStreak:
    since: datetime  # when the first failure of the streak ended
    runs: int
    last_success: datetime | None
    executions: QuerySet  # the failed runs


def runs_by_end(source) -> QuerySet:
    """The source's ended runs (`source`: an id, or an OuterRef to one), the latest end
    first. A run refused while another was open ends before it though it began after it:
    by their ends, the last run is the one whose outcome was told last."""
    return Execution.objects.filter(source=source, finished_at__isnull=False).order_by(
        "-finished_at", "-pk"
    )


def failures_after(runs: QuerySet, last_success) -> QuerySet:
    """The failures among `runs` that ended after `last_success` (a time, an expression of
    one, or None: never): the streak that followed that success."""
    failures = runs.filter(TOLD_FAILURES)
    return failures if last_success is None else failures.filter(finished_at__gt=last_success)


def failure_streak(execution: Execution) -> FailureStreak | None:
    """The failures of the execution's source since the success before it, up to its end
    (itself included when it failed); None when there are none."""
    end = execution.finished_at or timezone.now()
    runs_so_far = runs_by_end(execution.source_id).filter(finished_at__lte=end)
    last_success = (
        runs_so_far.filter(state=State.DONE)
        .exclude(pk=execution.pk)
        .values_list("finished_at", flat=True)
        .first()
    )
    failures = failures_after(runs_so_far, last_success)
    found = failures.aggregate(runs=Count("pk"), since=Min("finished_at"))
    if not found["runs"]:
        return None
    return FailureStreak(found["since"], found["runs"], last_success, failures)


def last_told(streak: FailureStreak, *, besides: Execution) -> datetime | None:
    """When a failure of the streak, other than `besides`, was last sent to a channel. A
    delivery that failed for good told nobody: it does not hold the next failure back."""
    sent_somewhere = Exists(
        Delivery.objects.filter(alert=OuterRef("pk")).exclude(state=Delivery.State.FAILED)
    )
    return (
        Alert.objects.filter(kind__in=FAILURE_KINDS, execution__in=streak.executions)
        .exclude(execution=besides)
        .filter(sent_somewhere)
        .aggregate(last=Max("created_at"))["last"]
    )
