"""Assets follows the source: a saved, disabled, enabled, moved or deleted source, and a new
webtrigger token, each bring its schedule in Assets along.

Kept apart from the sync: these decide what a change to the source means for Assets' copy.
"""

from __future__ import annotations

import copy

from importer.models import ImportSource, Schedule
from importer.schedule_times import next_run
from importer.services.editing import ASSETS_PLACE
from importer.services.errors import ScheduleError
from importer.services.schedules.sync import (
    delete_remote_schedule,
    mark_out_of_sync,
    retire_callback,
    sync_schedule,
)


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


def rotate_webtrigger_token(*, source: ImportSource, wait_for_assets: bool = True) -> ImportSource:
    """Give the source a new webtrigger secret and tell Assets the new callback URL
    (`wait_for_assets`: as `sync_schedule`'s)."""
    retire_callback(source)
    schedule = Schedule.objects.filter(source=source).first()
    # Assets holds no schedule of a disabled source, nor one that ran once and is over:
    # there is no old address to replace.
    if schedule is not None and source.enabled and next_run(schedule) is not None:
        sync_schedule(schedule=schedule, wait_for_assets=wait_for_assets)
    return source


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
    retire_callback(source)
    mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
