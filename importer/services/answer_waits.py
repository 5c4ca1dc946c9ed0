"""How long a call to Assets waits for its answer, and what an import says of a slow Assets.

HTTP_TIMEOUT, unless Assets answered this import later than that: then the import's calls
(its pages, its "completed" post and the status reads that follow) wait longer
(`Execution.assets_answer_timeout`), up to what their task has room for within
Q_TASK_TIMEOUT, for django-q2 kills a task past it, mid-call.
"""

from __future__ import annotations

import time

from django.conf import settings

from importer.models import Execution


def longest_answer_wait() -> float:
    """The longest a page may wait for Assets' answer: in place of one of the two
    HTTP_TIMEOUTs a chunk task counts on (`checks.lane_fits_in_the_task_timeout`), what it
    has left within Q_TASK_TIMEOUT."""
    fetch = max(settings.SOURCE_REQUEST_BUDGET_SECONDS, settings.SOURCE_DOWNLOAD_BUDGET_SECONDS)
    spare = (
        settings.Q_TASK_TIMEOUT
        - settings.CHUNK_LANE_SECONDS
        - fetch
        - settings.HTTP_TIMEOUT
        - settings.CHUNK_RETRY_INLINE_MAX_SECONDS
    )
    return max(settings.HTTP_TIMEOUT, spare)


def wait_longer(execution_id: int, waited: float) -> bool:
    """Assets did not answer within `waited` seconds: the import's calls wait twice as long
    from now on, up to `longest_answer_wait` (False: they wait that long already)."""
    longest = longest_answer_wait()
    if waited >= longest:
        return False
    Execution.objects.filter(pk=execution_id).wait_longer_for_assets(min(2 * waited, longest))
    return True


def answer_wait(asked: float | None, *, task_started: float, keep: float) -> float | None:
    """How long a call made now may wait for Assets' answer: as long as the import asks
    (`asked`, None: HTTP_TIMEOUT), but not past what the task that started at `task_started`
    (time.monotonic) has left, less `keep` seconds for what it does after the call.
    HTTP_TIMEOUT always fits (`checks`, importer.E001)."""
    if not asked:
        return None
    left = task_started + settings.Q_TASK_TIMEOUT - time.monotonic() - keep
    return max(settings.HTTP_TIMEOUT, min(asked, left))


def note_completed_answered_late(execution: Execution, took: float) -> None:
    """ "completed" was taken, though its answer came after HTTP_TIMEOUT (waited for because
    Assets answered this import late before)."""
    Execution.objects.of(execution).add_notice(
        f"Assets took 'completed' {took:.1f} s after it was posted, later than HTTP_TIMEOUT "
        f"({settings.HTTP_TIMEOUT:g} s): it was waited for that long, as Assets had answered "
        "this import late before. If Assets is this slow every time, raise HTTP_TIMEOUT."
    )


def wait_longer_after_completed(execution: Execution, waited: float) -> None:
    """The answer to "completed" did not come within `waited` seconds: Assets may have taken
    it (its status is read before it is posted again), and its next answers are waited for
    longer."""
    which = " (HTTP_TIMEOUT)" if waited <= settings.HTTP_TIMEOUT else ""
    if wait_longer(execution.pk, waited):
        then = (
            "this import now waits longer for Assets' answers (up to "
            f"{longest_answer_wait():g} s, what a task has room for within Q_TASK_TIMEOUT). "
            "If Assets is this slow every time, raise HTTP_TIMEOUT."
        )
    else:
        then = (
            "no task has room to wait longer. If Assets is this slow every time, raise "
            "HTTP_TIMEOUT and Q_TASK_TIMEOUT."
        )
    Execution.objects.of(execution).add_notice(
        f"Assets did not answer 'completed' within {waited:g} s{which}: it may have taken it "
        f"all the same, so its status is read before it is posted again, and {then}"
    )


def note_completed_taken_unanswered(execution: Execution) -> None:
    Execution.objects.of(execution).add_notice(
        "Assets took 'completed' though its answer did not come (its status showed it had "
        "taken it), so it was not posted again."
    )
