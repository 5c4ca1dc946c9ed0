"""Scheduled imports: the schedule Assets holds, and the runs its webtrigger starts.

Assets owns the clock: it calls the source's webtrigger at each run. Local and remote never
differ silently: a schedule Assets refused is marked out of sync with the reason.

* sync            create or replace the schedule in Assets, or remove it
* remote          the schedule as Assets holds and runs it, against the one here
* source_changes  a saved, disabled, moved or deleted source, a new webtrigger token
* triggers        the runs the webtrigger starts, a repeated trigger, a refused run
* resyncs         housekeeping: sync again what Assets could not take, re-anchor a run
"""

from importer.schedule_times import next_run
from importer.services.schedules.remote import (
    calls_an_old_address,
    compare_schedule,
    runs_as_last_synced,
    upcoming_run,
)
from importer.services.schedules.resyncs import reanchor_due_schedules, retry_failed_syncs
from importer.services.schedules.source_changes import (
    apply_enabled_state,
    delete_schedule,
    delete_source,
    rotate_webtrigger_token,
    source_saved,
)
from importer.services.schedules.sync import sync_schedule, webtrigger_url
from importer.services.schedules.triggers import start_scheduled_import

__all__ = [
    "apply_enabled_state",
    "calls_an_old_address",
    "compare_schedule",
    "delete_schedule",
    "delete_source",
    "next_run",
    "reanchor_due_schedules",
    "retry_failed_syncs",
    "rotate_webtrigger_token",
    "runs_as_last_synced",
    "source_saved",
    "start_scheduled_import",
    "sync_schedule",
    "upcoming_run",
    "webtrigger_url",
]
