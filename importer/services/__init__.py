"""The import flow, one module per concern; callers use the names re-exported here.

* lifecycle     start an execution in Assets, fail it once, cancel it
* plan          how pages are laid out: parallelism, lanes, the first chunks
* chunks        a chunk's moves: claim it (claims), count its page and queue what
                follows (fetched), record it submitted, retried or failed (outcomes)
* lanes         `process_chunk`: a chunk task goes on along its lane
* lane_state    what a lane keeps from page to page: connections, pages in flight, leases
* leases        a lane renews the leases of the chunks it holds while it works
* reconnects    a lane's steps again on a new connection when the database went away
* completion    post {"completed": true} once every page is in
* processing    follow Assets' status after "completed" until it reports an outcome
* totals        whether the records received add up to the total the source told
* housekeeping  recover lost work, flag stalled imports, prune history
* schedules     the schedule Assets holds and the runs its webtrigger starts: send it (sync),
                read it back (remote), follow the source (source_changes), answer the
                webtrigger (triggers), sync again in housekeeping (resyncs)
* mappings      push, pull, draft and preview the mapping
* editing       what may not change on a source while it imports
* errors        what the services raise for people to read
* retries       backoff for calls to Assets and sources

Every state change is a guarded transition on the models (`ChunkJob.objects.held_by(chunk)`,
`Execution.objects.of(execution)`), so two workers that race on the same row cannot both win:
a chunk task delivered twice, or a completion check running beside the last chunk, finds the
row already moved on and does nothing.
"""

from importer.services.chunks import note_unreadable_source, retry_failed_chunks
from importer.services.completion import check_completion
from importer.services.errors import (
    DraftImpossible,
    ImportAlreadyRunning,
    ImportEnded,
    ImportRefused,
    MappingChangedMeanwhile,
    MappingInvalid,
    NotCancellable,
    ScheduleError,
    SourceBusy,
    scrub_secrets,
)
from importer.services.housekeeping import (
    MAX_RETENTION_DAYS,
    flag_stalled_executions,
    look_after_imports,
    prune_history,
    prune_task_failures,
    recover_lost_work,
    requeue_stalled_chunks,
)
from importer.services.lanes import process_chunk
from importer.services.lifecycle import (
    cancel_execution,
    fail_execution,
    start_import,
    why_not_cancellable,
)
from importer.services.mappings import (
    draft_mapping_from_source,
    preview_import,
    pull_mapping,
    push_mapping,
    replace_mapping,
    stored_mapping_warning,
    try_push_mapping,
)
from importer.services.plan import pipeline_parallelism
from importer.services.processing import refresh_status
from importer.services.schedules import (
    apply_enabled_state,
    calls_an_old_address,
    compare_schedule,
    delete_schedule,
    delete_source,
    next_run,
    reanchor_due_schedules,
    retry_failed_syncs,
    rotate_webtrigger_token,
    runs_as_last_synced,
    source_saved,
    start_scheduled_import,
    sync_schedule,
    upcoming_run,
    webtrigger_url,
)

__all__ = [
    "DraftImpossible",
    "calls_an_old_address",
    "ImportAlreadyRunning",
    "ImportEnded",
    "ImportRefused",
    "MappingChangedMeanwhile",
    "MappingInvalid",
    "NotCancellable",
    "ScheduleError",
    "SourceBusy",
    "source_saved",
    "apply_enabled_state",
    "cancel_execution",
    "why_not_cancellable",
    "check_completion",
    "compare_schedule",
    "delete_schedule",
    "delete_source",
    "draft_mapping_from_source",
    "fail_execution",
    "flag_stalled_executions",
    "look_after_imports",
    "next_run",
    "reanchor_due_schedules",
    "retry_failed_syncs",
    "upcoming_run",
    "note_unreadable_source",
    "pipeline_parallelism",
    "preview_import",
    "process_chunk",
    "MAX_RETENTION_DAYS",
    "prune_history",
    "prune_task_failures",
    "pull_mapping",
    "recover_lost_work",
    "push_mapping",
    "try_push_mapping",
    "refresh_status",
    "replace_mapping",
    "requeue_stalled_chunks",
    "retry_failed_chunks",
    "rotate_webtrigger_token",
    "runs_as_last_synced",
    "scrub_secrets",
    "start_import",
    "start_scheduled_import",
    "stored_mapping_warning",
    "sync_schedule",
    "webtrigger_url",
]
