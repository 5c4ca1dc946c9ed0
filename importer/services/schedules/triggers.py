"""The runs Assets' webtrigger starts: a repeated trigger gets the run the first one
started, and one that cannot start an import is refused and kept in the history.

Kept apart: this answers Assets' scheduler as it calls, where the other modules send to it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from importer import notifications
from importer.models import Execution, ImportSource, Schedule
from importer.schedule_times import start_sent
from importer.services.errors import (
    ImportAlreadyRunning,
    ImportRefused,
    ScheduleError,
)
from importer.services.lifecycle import (
    DUPLICATE_TRIGGER_WINDOW,
    recorded_refusal,
    scheduled_refusal_told,
    start_import,
)
from importer.services.schedules.source_changes import apply_enabled_state

logger = logging.getLogger(__name__)


# Assets' clock and ours may differ a little: a trigger this early is the run sent.
TRIGGER_EARLY = timedelta(minutes=1)


def _recent_scheduled_execution(
    source: ImportSource, *, starting: bool = False
) -> Execution | None:
    """The run a trigger within the window belongs to: started by a trigger before it, and
    not refused (a refused run did not happen; a trigger repeated after it may start one).
    Finished runs count too: a small import is DONE before Assets gives up waiting for the
    answer and calls again. `starting`: also a run whose start in Assets is still on its way
    (two triggers at once)."""
    now = timezone.now()
    since = now - DUPLICATE_TRIGGER_WINDOW
    schedule = Schedule.objects.filter(source=source).first()
    synced = schedule.synced_at if schedule is not None else None
    sent = start_sent(schedule) if schedule is not None else None
    sent_run_has_come = sent is None or sent <= now + TRIGGER_EARLY
    if synced is not None and synced > since and sent_run_has_come:
        # Set again since, for a run that has come now (one that failed, put a few minutes
        # ahead): a new run. A sync that sent a later run (a save that changed nothing, a new
        # token) leaves a trigger repeated for the run before it to that run.
        since = synced
    runs = Execution.objects.filter(
        source=source, trigger=Execution.Trigger.SCHEDULE, created_at__gte=since
    ).exclude(state=Execution.State.REFUSED)
    if not starting:
        runs = runs.exclude(assets_execution_id="")
    return runs.order_by("-created_at").first()


def start_scheduled_import(*, source: ImportSource) -> Execution:
    """Start the run Assets' scheduler asked for.

    A repeated trigger (Assets retrying, or two calls at once) gets the execution the first
    one started. A trigger that cannot start an import (another one runs, the source is
    disabled, ...) is refused, and the refusal is kept in the history so staff see the run
    that did not happen.
    """
    recent = _recent_scheduled_execution(source)
    if recent is not None:
        logger.info("scheduled run of %s: trigger repeated, execution #%s", source, recent.pk)
        return _outcome_of_start(recent)
    if not source.enabled:
        # Its schedule should be gone from Assets: it was not (Assets was down when the source
        # was disabled). Removed now; the refusal is kept, and told to nobody: disabling was
        # someone's choice.
        _remove_schedule_of_disabled(source)
        refusal = ImportRefused(f"Source '{source}' is disabled: enable it to import.")
        _record_refused_run(source, refusal, told=False)
        raise refusal
    try:
        return start_import(source=source, trigger=Execution.Trigger.SCHEDULE)
    except ImportRefused as refusal:
        if isinstance(refusal, ImportAlreadyRunning) and not refusal.recorded:
            # Another import of this source is open here (not one Assets counts as running).
            recent = _recent_scheduled_execution(source, starting=True)
            if recent is not None:
                return _outcome_of_start(recent)
        if not refusal.recorded:
            # Assets calling again for the same run: kept in the history, told once.
            with transaction.atomic():
                refused = _record_refused_run(
                    source,
                    refusal,
                    told=scheduled_refusal_told(source),
                    # Another import of this source is open here: it is no failure of it.
                    another_import_running=isinstance(refusal, ImportAlreadyRunning),
                )
            if refused.alert_wanted:
                notifications.notify_execution_finished(refused)
        raise


# How long a repeated webtrigger call waits for the start another call is making: under a
# web server's own timeout (gunicorn's is 30 s).
REPEATED_TRIGGER_WAIT_SECONDS = 20.0


def _outcome_of_start(execution: Execution) -> Execution:
    """A run another trigger is starting: Assets asked again, not having had the first answer
    in time, and this answer is the one it keeps. So it waits for the start's outcome, a
    while: a start Assets refused is refused here too, not told as begun; one still going
    is returned PENDING (the webtrigger asks Assets to ask again)."""
    deadline = time.monotonic() + min(REPEATED_TRIGGER_WAIT_SECONDS, 2 * settings.HTTP_TIMEOUT)
    while execution.state == Execution.State.PENDING and time.monotonic() < deadline:
        time.sleep(0.1)
        execution.refresh_from_db()
    if execution.state == Execution.State.REFUSED:
        raise recorded_refusal(execution.error)
    return execution


def _record_refused_run(
    source: ImportSource,
    refusal: ImportRefused,
    *,
    told: bool,
    another_import_running: bool = False,
) -> Execution:
    """The run Assets' scheduler asked for and that did not happen, in the history; `told`:
    whether its alert is wanted (housekeeping's catch-up raises the lost ones);
    `another_import_running`: refused for that, it is no failure in a streak."""
    return Execution.objects.create(
        source=source,
        trigger=Execution.Trigger.SCHEDULE,
        state=Execution.State.REFUSED,
        error=str(refusal),
        finished_at=timezone.now(),
        alert_wanted=told,
        another_import_running=another_import_running,
    )


def _remove_schedule_of_disabled(source: ImportSource) -> None:
    try:
        apply_enabled_state(source=source)
    except ScheduleError as error:
        logger.warning("schedule of disabled source %s still in Assets: %s", source, error)
