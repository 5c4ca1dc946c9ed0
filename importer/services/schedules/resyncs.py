"""Housekeeping's rounds over schedules: sync again the ones Assets could not take, and tell
Assets the schedule's own day and time again after a run sent on another.

Kept apart: they run unattended, claim each schedule first (two clusters), and a schedule
that fails is recorded and passed over, never stopping the round.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from importer.models import Execution, Schedule
from importer.services.errors import ScheduleError, scrub_secrets
from importer.services.lifecycle import DUPLICATE_TRIGGER_WINDOW
from importer.services.schedules.sync import SYNC_RETRY, sync_schedule
from importer.services.schedules.triggers import TRIGGER_EARLY

logger = logging.getLogger(__name__)


# A schedule whose re-anchoring sync failed (Assets away) is tried again after this.
REANCHOR_RETRY = timedelta(minutes=10)


def retry_failed_syncs() -> int:
    """Sync again the schedules Assets could not take when they were saved, re-synced or
    given a new webtrigger token (`sync_retry_at`): until then Assets runs them as last
    synced, or, after a new token, not at all. How many are in sync now.

    Each is claimed first, so two clusters' housekeeping sync it once. Once Assets could not
    take one, the others wait for a later round: each would cost the round up to HTTP_TIMEOUT
    while Assets does not answer, and the round ran past its task's time."""
    now = timezone.now()
    synced = 0
    due = (
        Schedule.objects.filter(sync_retry_at__lte=now, in_sync=False, source__enabled=True)
        .order_by("sync_retry_at", "pk")
        .values_list("pk", "sync_retry_at")
    )
    for schedule_id, retry_at in list(due[:100]):
        claimed = Schedule.objects.filter(pk=schedule_id, sync_retry_at=retry_at).update(
            sync_retry_at=now + SYNC_RETRY
        )
        if not claimed:
            continue
        outcome = _sync_claimed(schedule_id, "still not synced", retry_at=now + SYNC_RETRY)
        if isinstance(outcome, ScheduleError) and outcome.will_retry:
            break
        synced += outcome is True
    return synced


def reanchor_due_schedules() -> int:
    """Tell Assets the next run on the schedule's own day and time, once a run it was sent
    on another day or at another time (`_first_run_to_send`) has passed: it would repeat
    from that one (a monthly run on the 28th from then on). How many were told.

    Each is claimed first, so two clusters' housekeeping tell Assets once; one that fails
    is out of sync, with the reason, and tried again after REANCHOR_RETRY."""
    now = timezone.now()
    told = 0
    due = Schedule.objects.filter(
        reanchor_at__lte=now, source__enabled=True, assets_schedule_id__gt=""
    ).values_list("pk", "source_id", "reanchor_at")
    for schedule_id, source_id, reanchor_at in list(due[:100]):
        # Not before that run's call has come (Assets' scheduler may be late), or the time
        # to repeat it has passed: told the next run first, Assets would not make this one.
        called = Execution.objects.filter(
            source_id=source_id,
            trigger=Execution.Trigger.SCHEDULE,
            created_at__gte=reanchor_at - TRIGGER_EARLY,
        ).exists()
        if not called and now < reanchor_at + DUPLICATE_TRIGGER_WINDOW:
            continue
        claimed = Schedule.objects.filter(pk=schedule_id, reanchor_at=reanchor_at).update(
            reanchor_at=now + REANCHOR_RETRY
        )
        if not claimed:
            continue
        told += _sync_claimed(schedule_id, "not moved to its own day and time") is True
    return told


def _sync_claimed(
    schedule_id: int, not_done: str, *, retry_at: datetime | None = None
) -> bool | ScheduleError:
    """Sync a schedule housekeeping has claimed: True when Assets took it, the ScheduleError
    when Assets did not (logged; the caller decides whether the round goes on), False when
    it could not be read or synced for another cause (marked, so the round goes on)."""
    schedule = None
    try:
        schedule = Schedule.objects.select_related("source").get(pk=schedule_id)
        sync_schedule(schedule=schedule)
    except ScheduleError as error:
        logger.warning("schedule of %s %s: %s", schedule.source, not_done, error)
        return error
    except Exception as error:
        _could_not_sync(schedule_id, schedule, error, retry_at=retry_at)
        return False
    return True


def _could_not_sync(
    schedule_id: int,
    schedule: Schedule | None,
    error: Exception,
    *,
    retry_at: datetime | None = None,
) -> None:
    """A schedule housekeeping could not read or sync for a cause other than Assets (deleted
    meanwhile, a stored secret FIELD_ENCRYPTION_KEYS no longer decrypts): it is marked out of
    sync with the reason, and the round goes on with the others and its other steps."""
    if isinstance(error, Schedule.DoesNotExist):
        logger.info("schedule %s was deleted before housekeeping synced it", schedule_id)
        return
    source = schedule.source if schedule is not None else None
    reason = scrub_secrets(f"{type(error).__name__}: {error}", source)[:500]
    logger.error("schedule %s could not be synced by housekeeping: %s", schedule_id, reason)
    fields = {"in_sync": False, "sync_error": f"Could not be synced: {reason}"}
    if retry_at is not None:
        fields["sync_retry_at"] = retry_at
    try:
        Schedule.objects.filter(pk=schedule_id).update(**fields, updated_at=timezone.now())
    except Exception:  # the database itself failing: the next round tries again
        logger.exception("schedule %s: its sync error could not be recorded", schedule_id)
