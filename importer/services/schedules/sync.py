"""Sending a schedule to Assets: create or replace it there, or remove it.

Kept apart so that every way a schedule reaches Assets (a save, housekeeping, a new token)
goes through one sync, and the row always says whether Assets took it and why not.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from importer.assets import (
    AssetsAuthError,
    AssetsClient,
    AssetsError,
    AssetsNotFound,
    schedule_body,
)
from importer.models import ImportSource, Schedule, new_webtrigger_token
from importer.public import public_url
from importer.schedule_times import next_run
from importer.services.errors import ScheduleError, scrub_secrets
from importer.services.retries import call_with_retries, may_have_been_done

logger = logging.getLogger(__name__)


def webtrigger_url(source: ImportSource) -> str:
    return public_url("importer:webtrigger", source.pk, source.webtrigger_token)


def _first_run_to_send(schedule: Schedule) -> datetime:
    """The next run, which Assets is told as the schedule's start: on a short month's last
    day, or at the hour a clock change makes of a skipped time, too, so no run is lost.
    Assets repeats from the start it holds, so after such a run it is told the next one on
    the schedule's own day and time (`reanchor_due_schedules`)."""
    upcoming = next_run(schedule)
    if upcoming is None:
        raise ScheduleError("The schedule runs once and its time has passed: set a new time.")
    return upcoming


def remote_body(schedule: Schedule, start: datetime) -> dict:
    return schedule_body(
        frequency=schedule.frequency,
        start_time=start.isoformat(),
        timezone=schedule.timezone,
        callback_url=webtrigger_url(schedule.source),
    )


def _record_start_sent(schedule: Schedule, start: datetime) -> None:
    """Keep what Assets was told: the run it repeats from; the first run of this timing,
    kept over re-syncs that leave the timing as it was (`runs_from`); and, when the start
    is not on the schedule's own day and time, when to tell it the next one that is."""
    schedule.start_sent = start
    on_its_pattern = schedule.runs_from is not None and (
        next_run(schedule, after=schedule.runs_from) == schedule.runs_from
    )
    if not on_its_pattern:
        schedule.runs_from = start
    own = next_run(schedule, after=start, anchor=True)
    schedule.reanchor_at = start if own != start else None


def mark_out_of_sync(schedule: Schedule, message: str, *, retry_at: datetime | None = None) -> None:
    """`retry_at`: when housekeeping syncs it again (Assets could not take it now); none for
    a cause someone must mend first."""
    schedule.in_sync = False
    schedule.sync_error = message
    schedule.sync_retry_at = retry_at
    schedule.save(update_fields=["in_sync", "sync_error", "sync_retry_at", "updated_at"])


def _sync_retry_time(error: Exception) -> datetime | None:
    """When to sync again after `error`: only Assets busy, failing or out of reach passes by
    itself (then after SYNC_RETRY, or as long as Assets asks to wait)."""
    if not isinstance(error, AssetsError) or error.permanent:
        return None
    wait = max(SYNC_RETRY, timedelta(seconds=error.retry_after or 0))
    return timezone.now() + wait


def sync_schedule(*, schedule: Schedule, wait_for_assets: bool = True) -> Schedule:
    """Create or replace the schedule in Assets; the row says whether that worked, and why not.

    Raises ScheduleError after recording it, so callers can show the reason. `wait_for_assets`:
    Assets busy or failing (429, 5xx) is tried again within the call, a few seconds, as a
    worker may; False where someone waits on the page: one try, told at once (housekeeping
    syncs it again, `retry_failed_syncs`).
    """
    source = schedule.source
    if not source.mapping_pushed_at:
        mark_out_of_sync(schedule, "Assets needs the source's mapping first: push the mapping.")
        raise ScheduleError(schedule.sync_error)
    if not source.enabled:
        delete_remote_schedule(schedule=schedule)
        mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
        raise ScheduleError(schedule.sync_error)
    client = AssetsClient.for_source(source)
    attempts = SYNC_ATTEMPTS if wait_for_assets else 1
    seen_id = schedule.assets_schedule_id
    creating = False
    try:
        start = _first_run_to_send(schedule)
        body = remote_body(schedule, start)
        remote = None
        if seen_id:
            try:
                remote = call_with_retries(
                    lambda: client.update_schedule(seen_id, body), attempts=attempts
                )
            except AssetsNotFound:
                remote = None  # deleted in Assets: create it again below
        if remote is None:
            creating = True
            remote = call_with_retries(
                lambda: client.create_schedule(body), attempts=attempts, repeatable=False
            )
    except (AssetsError, ScheduleError) as error:
        # Assets may have made it all the same (its answer lost or late), and would call the
        # webtrigger at these times beside the one the next sync makes. A 429 or 503 says
        # it did nothing.
        made_maybe = creating and isinstance(error, AssetsError) and may_have_been_done(error)
        if made_maybe:
            retire_callback(source)
        message = scrub_secrets(getattr(error, "message", str(error)), source)
        if made_maybe:
            message += (
                ". Assets may have made the schedule all the same: if it shows two for this "
                "import source once the schedule is synced again, delete the older one there "
                "(its calls are refused: its webtrigger token was retired)"
            )
        # Not a create Assets may have made: each try could leave one more copy there.
        retry_at = None if made_maybe else _sync_retry_time(error)
        if retry_at is not None:
            # Kept as the schedule's sync error, so no "in N minutes" that goes stale.
            message += (
                f". It is synced again by itself every {SYNC_RETRY.seconds // 60} minutes "
                "(or as long after as Assets asks) until Assets takes it"
            )
        mark_out_of_sync(schedule, message, retry_at=retry_at)
        raise ScheduleError(message, will_retry=retry_at is not None) from None
    if creating and schedule.pk and not _first_to_create(schedule, seen_id, remote.schedule_id):
        # Another sync made one meanwhile (two operators, two clicks): this copy goes, and
        # the schedule that stays gets this sync's settings.
        _drop_copy(client, remote.schedule_id, source)
        schedule.refresh_from_db()
        return sync_schedule(schedule=schedule, wait_for_assets=wait_for_assets)
    schedule.assets_schedule_id = remote.schedule_id
    schedule.callback_url = body["callbackUrl"]
    schedule.in_sync = True
    schedule.sync_error = ""
    schedule.synced_at = timezone.now()
    schedule.sync_retry_at = None
    _record_start_sent(schedule, start)
    if schedule.pk is None:
        schedule.save()
        return schedule
    # Only if the timing sent is still the row's: an operator's edit saved meanwhile (while
    # housekeeping re-anchored) is synced now, over what this sync told Assets.
    same_timing = Schedule.objects.filter(
        pk=schedule.pk,
        frequency=schedule.frequency,
        start_time=schedule.start_time,
        timezone=schedule.timezone,
    )
    synced = {name: getattr(schedule, name) for name in SYNCED_FIELDS}
    if not same_timing.update(**synced, updated_at=timezone.now()):
        fresh = Schedule.objects.select_related("source").filter(pk=schedule.pk).first()
        if fresh is None:
            return schedule
        return sync_schedule(schedule=fresh, wait_for_assets=wait_for_assets)
    return schedule


SYNCED_FIELDS = [
    "assets_schedule_id",
    "callback_url",
    "in_sync",
    "sync_error",
    "synced_at",
    "start_sent",
    "runs_from",
    "reanchor_at",
    "sync_retry_at",
]


# A sync Assets could not take (busy, a server error, out of reach) is made again after this.
SYNC_RETRY = timedelta(minutes=10)
# Tries of each call to Assets in a sync that may wait for it (a worker's).
SYNC_ATTEMPTS = 3


def _first_to_create(schedule: Schedule, seen_id: str, created_id: str) -> bool:
    """Record the created schedule's id unless another sync recorded one since `seen_id`."""
    return bool(
        Schedule.objects.filter(pk=schedule.pk, assets_schedule_id=seen_id).update(
            assets_schedule_id=created_id
        )
    )


def _drop_copy(client: AssetsClient, schedule_id: str, source: ImportSource) -> None:
    try:
        client.delete_schedule(schedule_id)
    except AssetsNotFound:
        pass
    except AssetsError as error:
        logger.warning(
            "a second schedule of %s made in Assets could not be removed (%s): its callback "
            "is retired",
            source,
            scrub_secrets(error.message, source),
        )
        retire_callback(source)


def retire_callback(source: ImportSource) -> None:
    """A new webtrigger token: a schedule Assets may hold with the old one calls for nothing."""
    source.webtrigger_token = new_webtrigger_token()
    source.save(update_fields=["webtrigger_token", "updated_at"])


def delete_remote_schedule(*, schedule: Schedule) -> Schedule:
    """Remove the schedule from Assets (gone already counts as removed)."""
    if schedule.assets_schedule_id:
        try:
            AssetsClient.for_source(schedule.source).delete_schedule(schedule.assets_schedule_id)
        except AssetsNotFound:
            pass
        except AssetsError as error:
            message = scrub_secrets(error.message, schedule.source)
            if schedule.pk:
                mark_out_of_sync(schedule, message)
            refused = isinstance(error, AssetsAuthError)
            raise ScheduleError(message, refused_token=refused) from None
        schedule.assets_schedule_id = ""
        schedule.in_sync = False
        if schedule.pk:
            schedule.save(update_fields=["assets_schedule_id", "in_sync", "updated_at"])
    return schedule
