"""Scheduled imports: the schedule Assets holds, and the runs its webtrigger starts.

Assets owns the clock: it calls the source's webtrigger at each run. Local and remote never
differ silently: a schedule Assets refused is marked out of sync with the reason.
"""

from __future__ import annotations

import calendar
import copy
import logging
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from importer import notifications
from importer.assets import (
    AssetsAuthError,
    AssetsClient,
    AssetsError,
    AssetsNotFound,
    schedule_body,
)
from importer.models import Execution, ImportSource, Schedule, new_webtrigger_token
from importer.public import public_url
from importer.schedule_times import next_run, start_sent
from importer.services.editing import ASSETS_PLACE
from importer.services.errors import (
    ImportAlreadyRunning,
    ImportRefused,
    ScheduleError,
    scrub_secrets,
)
from importer.services.lifecycle import (
    DUPLICATE_TRIGGER_WINDOW,
    recorded_refusal,
    scheduled_refusal_told,
    start_import,
)
from importer.services.retries import call_with_retries, may_have_been_done

logger = logging.getLogger(__name__)


def webtrigger_url(source: ImportSource) -> str:
    return public_url("importer:webtrigger", source.pk, source.webtrigger_token)


def upcoming_run(schedule: Schedule) -> datetime | None:
    """The next run Assets makes: none before the first one it was sent at the last sync
    (`schedule_times.start_sent`), which it repeats from."""
    after = timezone.now()
    sent = start_sent(schedule)
    if sent is not None and sent > after:
        after = sent
    return next_run(schedule, after=after)


def _first_run_to_send(schedule: Schedule) -> datetime:
    """The next run, which Assets is told as the schedule's start: on a short month's last
    day, or at the hour a clock change makes of a skipped time, too, so no run is lost.
    Assets repeats from the start it holds, so after such a run it is told the next one on
    the schedule's own day and time (`reanchor_due_schedules`)."""
    upcoming = next_run(schedule)
    if upcoming is None:
        raise ScheduleError("The schedule runs once and its time has passed: set a new time.")
    return upcoming


def _remote_body(schedule: Schedule, start: datetime) -> dict:
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


def _mark_out_of_sync(
    schedule: Schedule, message: str, *, retry_at: datetime | None = None
) -> None:
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
        _mark_out_of_sync(schedule, "Assets needs the source's mapping first: push the mapping.")
        raise ScheduleError(schedule.sync_error)
    if not source.enabled:
        delete_remote_schedule(schedule=schedule)
        _mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
        raise ScheduleError(schedule.sync_error)
    client = AssetsClient.for_source(source)
    attempts = SYNC_ATTEMPTS if wait_for_assets else 1
    seen_id = schedule.assets_schedule_id
    creating = False
    try:
        start = _first_run_to_send(schedule)
        body = _remote_body(schedule, start)
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
            _retire_callback(source)
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
        _mark_out_of_sync(schedule, message, retry_at=retry_at)
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
# A schedule whose re-anchoring sync failed (Assets away) is tried again after this.
REANCHOR_RETRY = timedelta(minutes=10)
# A sync Assets could not take (busy, a server error, out of reach) is made again after this.
SYNC_RETRY = timedelta(minutes=10)
# Tries of each call to Assets in a sync that may wait for it (a worker's).
SYNC_ATTEMPTS = 3


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
        schedule = None
        try:
            schedule = Schedule.objects.select_related("source").get(pk=schedule_id)
            sync_schedule(schedule=schedule)
        except ScheduleError as error:
            logger.warning("schedule of %s still not synced: %s", schedule.source, error)
            if error.will_retry:
                break
        except Exception as error:
            _could_not_sync(schedule_id, schedule, error, retry_at=now + SYNC_RETRY)
        else:
            synced += 1
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
        schedule = None
        try:
            schedule = Schedule.objects.select_related("source").get(pk=schedule_id)
            sync_schedule(schedule=schedule)
        except ScheduleError as error:
            logger.warning(
                "schedule of %s not moved to its own day and time: %s", schedule.source, error
            )
        except Exception as error:
            _could_not_sync(schedule_id, schedule, error)
        else:
            told += 1
    return told


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


def calls_an_old_address(schedule: Schedule) -> bool:
    """Whether Assets holds the schedule with a webtrigger address this app no longer has
    (PUBLIC_BASE_URL changed since it was synced: a new host, a proxy in front): Assets would
    go on calling the old one, and the scheduled imports stop without a word."""
    return bool(schedule.in_sync and schedule.callback_url) and (
        schedule.callback_url != webtrigger_url(schedule.source)
    )


def runs_as_last_synced(schedule: Schedule) -> bool:
    """Whether Assets still runs the schedule as it was last synced, though it is out of sync
    here: a change Assets refused or did not get leaves its copy in place, calling a
    webtrigger that still starts imports (unlike a retired token, or one never made)."""
    return (
        not schedule.in_sync
        and bool(schedule.assets_schedule_id and schedule.callback_url)
        and schedule.source.enabled
        and schedule.callback_url == webtrigger_url(schedule.source)
    )


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
        _retire_callback(source)


def _retire_callback(source: ImportSource) -> None:
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
                _mark_out_of_sync(schedule, message)
            refused = isinstance(error, AssetsAuthError)
            raise ScheduleError(message, refused_token=refused) from None
        schedule.assets_schedule_id = ""
        schedule.in_sync = False
        if schedule.pk:
            schedule.save(update_fields=["assets_schedule_id", "in_sync", "updated_at"])
    return schedule


def source_saved(
    *,
    source: ImportSource,
    changed: set[str],
    was: dict[str, str],
    wait_for_assets: bool = True,
) -> None:
    """Make Assets follow a saved source: a schedule follows it into another import source
    (`was`: the Assets place and token it had), and leaves Assets while the source is disabled.
    Raises ScheduleError when Assets could not be brought along. `wait_for_assets`: as
    `sync_schedule`'s."""
    if changed & set(ASSETS_PLACE):
        # Another import source has a token of its own: the old one is left with the old.
        earlier = {name: was[name] for name in (*ASSETS_PLACE, "assets_token") if was.get(name)}
        move_schedule(source=source, was=earlier, wait_for_assets=wait_for_assets)
    elif "enabled" in changed:
        apply_enabled_state(source=source, wait_for_assets=wait_for_assets)


def move_schedule(
    *, source: ImportSource, was: dict[str, str], wait_for_assets: bool = True
) -> None:
    """The source imports into another Assets import source now (`was`: where it did). Its
    schedule leaves the old one, which would go on calling the webtrigger for nothing, and is
    made in the new one. Raises ScheduleError when either cannot be done."""
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is None:
        return
    if schedule.assets_schedule_id:
        earlier = copy.copy(source)
        for name, value in was.items():
            setattr(earlier, name, value)
        schedule.source = earlier
        try:
            delete_remote_schedule(schedule=schedule)
        except ScheduleError as error:
            raise ScheduleError(
                f"the schedule in the earlier import source could not be removed ({error}): "
                "delete it there in Assets"
            ) from None
        finally:
            schedule.source = source
    sync_schedule(schedule=schedule, wait_for_assets=wait_for_assets)


def delete_schedule(*, schedule: Schedule) -> None:
    """Delete the schedule in Assets and here, and retire its callback: a copy Assets may
    still hold (a create whose answer was lost on the way) would call the webtrigger on."""
    delete_remote_schedule(schedule=schedule)
    schedule.delete()
    rotate_webtrigger_token(source=schedule.source)


def delete_source(*, source: ImportSource) -> None:
    """Delete a source, removing its schedule from Assets first."""
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is not None:
        delete_remote_schedule(schedule=schedule)
    source.delete()


def compare_schedule(*, schedule: Schedule) -> list[str]:
    """What differs between the local schedule and the one Assets holds (empty: the same)."""
    if not schedule.assets_schedule_id:
        return [_why_assets_holds_none(schedule)]
    try:
        remote = AssetsClient.for_source(schedule.source).get_schedule(schedule.assets_schedule_id)
    except AssetsNotFound:
        # Nothing in Assets runs it: the next sync makes it again.
        schedule.assets_schedule_id = ""
        schedule.save(update_fields=["assets_schedule_id", "updated_at"])
        _mark_out_of_sync(schedule, "Assets no longer holds this schedule.")
        return [schedule.sync_error]
    differences = []
    upcoming = next_run(schedule)
    expected = _remote_body(schedule, upcoming) if upcoming else {}
    if (remote.frequency or "").upper() != schedule.frequency:
        differences.append(f"frequency: here {schedule.frequency}, in Assets {remote.frequency}")
    if remote.timezone and remote.timezone != schedule.timezone:
        differences.append(f"time zone: here {schedule.timezone}, in Assets {remote.timezone}")
    # What Assets leaves out of its answer (optional fields) is no difference.
    if expected and remote.callback_url and remote.callback_url != expected["callbackUrl"]:
        differences.append("callback URL: Assets calls a different webtrigger URL")
    if remote.start_time and not _same_run_time(remote.start_time, schedule):
        differences.append(
            f"start time: here {schedule.start_time.isoformat()}, in Assets {remote.start_time}"
        )
    if differences:
        _mark_out_of_sync(schedule, "; ".join(differences))
    return differences


def _why_assets_holds_none(schedule: Schedule) -> str:
    """Why Assets holds no schedule for the source: a disabled source's is removed on purpose,
    one synced before is gone from Assets since, and one never synced is not there yet."""
    if not schedule.source.enabled:
        return (
            "Assets holds no schedule for this source while it is disabled (enabling the "
            "source makes it there again)."
        )
    if schedule.synced_at is not None:
        then = (
            "synced again by itself, or at once by 'Re-sync schedule to Assets'"
            if schedule.sync_retry_at
            else "'Re-sync schedule to Assets' makes it again"
        )
        return f"Assets no longer holds this schedule ({then})."
    why = schedule.sync_error.rstrip(".")
    return f"Assets holds no schedule for this source yet{f': {why}' if why else ''}."


def _same_run_time(remote_start: str, schedule: Schedule) -> bool:
    """Whether Assets' start time runs the schedule when ours does: the same time of day, and
    for a weekly one the same weekday, for a monthly one the same day of the month (Assets
    holds the next run, not the first). A one-off runs at that very moment. The start sent
    last is the same run, though not on the schedule's own day or time."""
    try:
        remote = datetime.fromisoformat(remote_start.replace("Z", "+00:00"))
    except ValueError:
        return False
    if remote.tzinfo and remote == schedule.start_sent:
        return True
    zone = ZoneInfo(schedule.timezone)
    local = schedule.start_time.astimezone(zone)
    remote = remote.astimezone(zone) if remote.tzinfo else remote.replace(tzinfo=zone)
    Frequency = Schedule.Frequency
    if schedule.frequency == Frequency.ONCE:
        return remote == local
    if (remote.hour, remote.minute) != (local.hour, local.minute):
        return False
    if schedule.frequency == Frequency.WEEKLY:
        return remote.weekday() == local.weekday()
    if schedule.frequency == Frequency.MONTHLY:
        # A month shorter than the day runs on its last day.
        last = calendar.monthrange(remote.year, remote.month)[1]
        return remote.day == min(local.day, last)
    return True


def rotate_webtrigger_token(*, source: ImportSource, wait_for_assets: bool = True) -> ImportSource:
    """Give the source a new webtrigger secret and tell Assets the new callback URL
    (`wait_for_assets`: as `sync_schedule`'s)."""
    _retire_callback(source)
    schedule = Schedule.objects.filter(source=source).first()
    # Assets holds no schedule of a disabled source, nor one that ran once and is over:
    # there is no old address to replace.
    if schedule is not None and source.enabled and next_run(schedule) is not None:
        sync_schedule(schedule=schedule, wait_for_assets=wait_for_assets)
    return source


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


def apply_enabled_state(*, source: ImportSource, wait_for_assets: bool = True) -> None:
    """A disabled source keeps no schedule in Assets; enabling it again restores the schedule
    (`wait_for_assets`: as `sync_schedule`'s)."""
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is None:
        return
    if source.enabled:
        if not schedule.in_sync:
            sync_schedule(schedule=schedule, wait_for_assets=wait_for_assets)
        return
    try:
        delete_remote_schedule(schedule=schedule)
    except ScheduleError as error:
        raise ScheduleError(
            f"{str(error).rstrip('.')}. Assets still holds the schedule: its next call is "
            "refused, since the source is disabled, and the schedule is removed then; "
            "'Re-sync schedule to Assets' removes it now",
            refused_token=error.refused_token,
        ) from None
    # Retire the callback too: a copy Assets may hold beside it (a create whose answer was
    # lost) would start imports again once the source is enabled.
    _retire_callback(source)
    _mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
