"""The schedule as Assets holds and runs it, against the one here: the next run it makes,
an address it calls that is out of date, what differs (`compare_schedule`).

Kept apart from the sync: these read what Assets holds, for staff to see, and change nothing
there.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils import timezone

from importer.assets import AssetsClient, AssetsNotFound
from importer.models import Schedule
from importer.schedule_times import next_run, start_sent
from importer.services.schedules.sync import mark_out_of_sync, remote_body, webtrigger_url


def upcoming_run(schedule: Schedule) -> datetime | None:
    """The next run Assets makes: none before the first one it was sent at the last sync
    (`schedule_times.start_sent`), which it repeats from."""
    after = timezone.now()
    sent = start_sent(schedule)
    if sent is not None and sent > after:
        after = sent
    return next_run(schedule, after=after)


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
        mark_out_of_sync(schedule, "Assets no longer holds this schedule.")
        return [schedule.sync_error]
    differences = []
    upcoming = next_run(schedule)
    expected = remote_body(schedule, upcoming) if upcoming else {}
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
        mark_out_of_sync(schedule, "; ".join(differences))
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
