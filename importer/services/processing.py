"""Following an import Assets is processing: after "completed" was taken, Assets' status is
read until it reports a final state.

Reads are spaced by the time since Assets took "completed", so they double: those that fit in
a few seconds happen in the worker that posted it (`completion.check_completion`), later ones
as a delayed task (`tasks.run_status_refresh`). An execution Assets no longer knows, a status
that cannot be read, or one no outcome ever follows, ends the import or flags it stalled.
Housekeeping looks again at an import whose next read never came
(`housekeeping.follow_up_quiet_executions`).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from importer import notifications, work_queue
from importer.assets import AssetsAuthError, AssetsClient, AssetsError, AssetsNotFound, outcome_of
from importer.models import Execution
from importer.services.answer_waits import answer_wait
from importer.services.errors import scrub_secrets

logger = logging.getLogger(__name__)

State = Execution.State

# Assets may still say INGESTING for a moment after it took "completed"; past this, the page
# says so.
STILL_INGESTING_SHOWN_AFTER_SECONDS = 60


# Reads of a processing import's status are spaced by the time since Assets accepted
# "completed" (0.25 s, 0.5 s, 1 s, 2 s, ...: doubling, up to STATUS_POLL_MAX_SECONDS). Those
# that fit in STATUS_IN_WORKER_SECONDS of sleep happen in the worker that posted "completed";
# later ones are put off as delayed tasks, so no worker sleeps long.
STATUS_POLL_FIRST_SECONDS = 0.25
# An execution Assets answers 404 for, read after read, this long after the first, is gone.
STATUS_MISSING_FAILS_AFTER = 120.0
STATUS_IN_WORKER_SECONDS = 5.0


def assets_call_wait(execution: Execution, started: float) -> float | None:
    """How long a call to Assets, posting "completed" or reading the status after it, waits
    for its answer (None: HTTP_TIMEOUT): as long as the import's pages do, within what the
    task has left, less a status read and the pauses between reads that may follow in the
    same task (`refresh_status`)."""
    return answer_wait(
        execution.assets_answer_timeout,
        task_started=started,
        keep=settings.HTTP_TIMEOUT + STATUS_IN_WORKER_SECONDS,
    )


def refresh_status(
    *,
    execution: Execution,
    client: AssetsClient | None = None,
    task_started: float | None = None,
) -> Execution:
    """Follow an execution Assets is processing until it reports a final state.

    Reads are spaced by the time since "completed" was accepted, so they double: a quick
    Assets is seen DONE within a fraction of a second of finishing, and a long processing
    phase costs a read every STATUS_POLL_MAX_SECONDS. Pauses that fit in
    STATUS_IN_WORKER_SECONDS are slept here; the next longer one becomes a delayed task.
    Each read waits as `check_completion`'s calls do, within the task's room.
    """
    started = time.monotonic() if task_started is None else task_started
    slept = 0.0
    while execution.state == State.PROCESSING:
        client = client or AssetsClient.for_source(execution.source)
        if _read_status(execution, client, assets_call_wait(execution, started)):
            break
        pause = _next_read_in(execution)
        if slept + pause > STATUS_IN_WORKER_SECONDS:
            work_queue.enqueue_status_refresh_after(execution.pk, pause)
            break
        time.sleep(pause)
        slept += pause
        execution.refresh_from_db()  # cancelled meanwhile?
    execution.refresh_from_db()
    return execution


def _read_status(execution: Execution, client: AssetsClient, wait: float | None) -> bool:
    """Read Assets' status once; True when it is final (and recorded).

    An execution Assets no longer knows (404 for STATUS_MISSING_FAILS_AFTER seconds) ends
    FAILED; one whose status cannot be read,
    or reads as a word this app does not know, shows why on its page and is read again, up
    to PROCESSING_TIMEOUT_SECONDS after "completed". `wait`: for Assets' answers (None:
    HTTP_TIMEOUT)."""
    try:
        status = client.get_execution_status(execution.assets_execution_id, timeout=wait)
    except AssetsNotFound as error:
        # Once is a replica or a cache that has not caught up; for minutes, it is gone.
        missing_since = execution.status_missing_since or timezone.now()
        if (timezone.now() - missing_since).total_seconds() > STATUS_MISSING_FAILS_AFTER:
            return _finish(execution, State.FAILED, f"{error.message}: it may have been deleted")
        Execution.objects.of(execution).processing().stamp(
            status_missing_since=missing_since,
            error=f"{error.message}; read again until it answers",
        )
        execution.status_missing_since = missing_since
        return False
    except AssetsError as error:
        logger.warning("execution %s: status not readable: %s", execution.pk, error.message)
        problem = f"Assets' status could not be read: {error.message}"
        answered = False
        token_refused = isinstance(error, AssetsAuthError)
    else:
        answered = True  # Assets knows the execution: a run of 404s is over
        token_refused = False
        final = outcome_of(status.status)
        if final is not None:
            detail = "" if final == State.DONE else _assets_verdict(status)
            return _finish(execution, final, detail)
        problem = (
            f"Assets reports the import '{status.status}', not (yet) DONE or FAILED"
            if status.status not in ("PROCESSING", "INGESTING", "COMPLETING")
            else ""
        )
    since = execution.completed_at or execution.updated_at
    waited = (timezone.now() - since).total_seconds()
    if answered and status.status == "INGESTING" and waited > STILL_INGESTING_SHOWN_AFTER_SECONDS:
        problem = (
            f"Assets still reports the import INGESTING {waited / 60:.0f} min after it took "
            "'completed': it waits for pages, as if it had not heard it"
        )
        if execution.completed_maybe_taken:
            # Followed as taken though no answer ever said so: it was not. Posted again (a
            # refusal now only says it has it meanwhile); reads are spaced, and so are these.
            _post_completed_again(execution, client, wait)
    if waited > settings.PROCESSING_TIMEOUT_SECONDS:
        hours = settings.PROCESSING_TIMEOUT_SECONDS / 3600
        reason = (
            f"Assets reported no outcome within {hours:g} h of 'completed' "
            f"(PROCESSING_TIMEOUT_SECONDS). {problem or 'It still reports it processing.'} "
            "See the import source's history in Assets."
        )
        return _finish(execution, State.FAILED, reason)
    # The stamp says the import is being followed (housekeeping's safety net reads it).
    still_missing = None if answered else execution.status_missing_since
    # Read again: no longer stalled for want of its outcome.
    readable = {"stalled_since": None} if answered and not problem else {}
    Execution.objects.of(execution).processing().stamp(
        error=scrub_secrets(problem, execution.source),
        status_missing_since=still_missing,
        **readable,
    )
    execution.status_missing_since = still_missing
    if token_refused or (problem and waited > settings.STALLED_AFTER_SECONDS):
        # Read again for hours, it would say nothing new until someone gives a new token, or
        # sees why Assets' answer is not one this app reads: told (the reason stamped above),
        # as a stalled import, once.
        _flag_unreadable(execution)
    return False


def _post_completed_again(execution: Execution, client: AssetsClient, wait: float | None) -> None:
    """Post "completed" to an execution Assets still has ingesting."""
    try:
        client.mark_completed(execution.assets_execution_id, timeout=wait)
    except AssetsError as error:
        logger.warning("execution %s: 'completed' posted again: %s", execution.pk, error.message)
        return
    logger.info("execution %s: 'completed' posted again, and taken", execution.pk)
    Execution.objects.of(execution).processing().stamp(completed_maybe_taken=False)


def _flag_unreadable(execution: Execution) -> None:
    if (
        Execution.objects.of(execution)
        .filter(stalled_since__isnull=True)
        .update(stalled_since=timezone.now())
    ):
        notifications.notify_execution_stalled(execution)


def _assets_verdict(status) -> str:
    """ "Assets reports the import FAILED", with the reason Assets gives, if it gives one."""
    verdict = f"Assets reports the import {status.status}"
    for key in ("failureReason", "errorMessage", "message", "reason", "error"):
        reason = status.raw.get(key) if isinstance(status.raw, dict) else None
        if isinstance(reason, str) and reason.strip():
            return f"{verdict}: {' '.join(reason.split())[:500]}"
    return verdict


def _finish(execution: Execution, state: str, error: str) -> bool:
    """The final state Assets reported (or we concluded), told to the channels once."""
    if Execution.objects.of(execution).finish(
        state=state, error=scrub_secrets(error, execution.source)
    ):
        notifications.notify_execution_finished(execution)
    return True


def _next_read_in(execution: Execution) -> float:
    """Seconds until the next read: as long as Assets has been processing, within bounds."""
    since = execution.completed_at or timezone.now()
    elapsed = (timezone.now() - since).total_seconds()
    return min(max(elapsed, STATUS_POLL_FIRST_SECONDS), settings.STATUS_POLL_MAX_SECONDS)
