"""A source's failure streak: its failed and refused runs since its last successful import.

Alerts read it to say how long a source has been failing, to hold back the repeats of a
streak already told (ALERT_REPEAT_HOURS), and to tell its end ("recovered"). It is read
from the history, so it needs no state of its own: a run told to nobody on purpose (a
scheduled run Assets asked for again) does not count, and a cancelled one neither breaks
nor extends a streak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from importer.models import Alert, Delivery, Execution

State = Execution.State
FAILURE_KINDS = [Alert.Kind.FAILED, Alert.Kind.REFUSED]
# The runs whose end is told as a failure (REFUSED runs told to nobody stay out).
TOLD_FAILURES = Q(state__in=[State.FAILED, State.REFUSED], alert_wanted=True)


@dataclass(frozen=True)
class FailureStreak:
    since: datetime  # when the first failure of the streak ended
    runs: int
    last_success: datetime | None
    executions: QuerySet  # the failed runs


def failure_streak(execution: Execution) -> FailureStreak | None:
    """The failures of the execution's source since the success before it, up to its end
    (itself included when it failed); None when there are none."""
    end = execution.finished_at or timezone.now()
    runs_so_far = Execution.objects.filter(source_id=execution.source_id, finished_at__lte=end)
    last_success = (
        runs_so_far.filter(state=State.DONE)
        .exclude(pk=execution.pk)
        .aggregate(last=Max("finished_at"))["last"]
    )
    failures = runs_so_far.filter(TOLD_FAILURES)
    if last_success is not None:
        failures = failures.filter(finished_at__gt=last_success)
    found = failures.aggregate(runs=Count("pk"), since=Min("finished_at"))
    if not found["runs"]:
        return None
    return FailureStreak(found["since"], found["runs"], last_success, failures)


def last_told(streak: FailureStreak, *, besides: Execution) -> datetime | None:
    """When a failure of the streak, other than `besides`, was last sent to a channel."""
    sent_somewhere = Exists(Delivery.objects.filter(alert=OuterRef("pk")))
    return (
        Alert.objects.filter(kind__in=FAILURE_KINDS, execution__in=streak.executions)
        .exclude(execution=besides)
        .filter(sent_somewhere)
        .aggregate(last=Max("created_at"))["last"]
    )
