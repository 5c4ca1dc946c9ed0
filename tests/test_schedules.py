"""Schedules kept in sync with Assets' importschedule API (the sandbox), and run by it."""

import calendar
import io
import json
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test.utils import override_script_prefix
from django.urls import reverse
from django.utils import timezone

from importer import services
from importer.models import Execution, ImportSource, Schedule
from tests.conftest import wait_for_execution_to_finish

pytestmark = pytest.mark.django_db(transaction=True)
BERLIN = ZoneInfo("Europe/Berlin")


def tomorrow_at(hour: int, zone=BERLIN) -> datetime:
    """Tomorrow at `hour` in `zone`: tests take hours no change of the clocks touches (02:00
    does not exist one day a year, and comes twice on another)."""
    day = (timezone.now() + timedelta(days=1)).astimezone(zone)
    return day.replace(hour=hour, minute=0, second=0, microsecond=0)


def make_schedule(source, **fields) -> Schedule:
    values = {"frequency": "DAILY", "start_time": tomorrow_at(12), "timezone": "Europe/Berlin"}
    values.update(fields)
    return Schedule.objects.create(source=source, **values)


def change_in_assets(sandbox, schedule: Schedule, frequency: str, start: datetime) -> None:
    """Change the schedule in Assets behind the app's back, as someone in Assets would."""
    requests.put(
        f"{sandbox.base_url}/jsm/assets/workspace/ws-1/v1/importsource/src-1/importschedule/"
        f"{schedule.assets_schedule_id}",
        json={
            "runInterval": frequency,
            "startTime": start.isoformat(),
            "timezone": "Europe/Berlin",
            "callbackUrl": schedule.callback_url,
        },
        headers={"Authorization": f"Bearer {schedule.source.assets_token}"},
        timeout=5,
    ).raise_for_status()


def test_saving_a_schedule_creates_it_in_assets(pushed_source, sandbox, settings):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    remote = sandbox.schedules("src-1")
    assert len(remote) == 1
    assert remote[0]["id"] == schedule.assets_schedule_id
    assert remote[0]["runFrequency"] == remote[0]["runInterval"] == "DAILY"
    assert remote[0]["timezone"] == "Europe/Berlin"
    assert remote[0]["callbackUrl"] == services.webtrigger_url(pushed_source)
    assert remote[0]["callbackUrl"].startswith(settings.PUBLIC_BASE_URL + "/webtrigger/")
    assert datetime.fromisoformat(remote[0]["startTime"]) == tomorrow_at(12)
    assert schedule.in_sync


def test_updating_a_schedule_replaces_it_in_assets(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    schedule.frequency = "WEEKLY"
    schedule.save()

    services.sync_schedule(schedule=schedule)

    remote = sandbox.schedules("src-1")
    assert [s["runFrequency"] for s in remote] == ["WEEKLY"]


def test_deleting_a_schedule_deletes_it_in_assets(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    services.delete_schedule(schedule=schedule)

    assert sandbox.schedules("src-1") == []
    assert not Schedule.objects.exists()


def test_deleting_a_source_removes_its_remote_schedule(pushed_source, sandbox):
    services.sync_schedule(schedule=make_schedule(pushed_source))

    services.delete_source(source=pushed_source)

    assert sandbox.schedules("src-1") == []
    assert not ImportSource.objects.exists()


def test_a_schedule_needs_the_mapping_in_assets_first(make_source, sandbox):
    schedule = make_schedule(make_source())

    with pytest.raises(services.ScheduleError, match="push the mapping"):
        services.sync_schedule(schedule=schedule)

    schedule.refresh_from_db()
    assert not schedule.in_sync
    assert "push the mapping" in schedule.sync_error
    assert sandbox.schedules() == []


def test_assets_being_down_leaves_the_schedule_marked_out_of_sync(pushed_source, sandbox):
    token = pushed_source.webtrigger_token
    sandbox.faults.add(method="POST", path_contains="/importschedule", status=503, times=-1)

    with pytest.raises(services.ScheduleError):
        services.sync_schedule(schedule=make_schedule(pushed_source))

    schedule = Schedule.objects.get()
    assert not schedule.in_sync
    assert "503" in schedule.sync_error
    # A 503 says nothing was made: no copy in Assets to warn of, no token to retire.
    assert "may have made" not in schedule.sync_error
    assert ImportSource.objects.get(pk=pushed_source.pk).webtrigger_token == token


def test_a_schedule_assets_is_too_busy_to_take_at_once_is_made_on_a_second_try(
    pushed_source, sandbox
):
    sandbox.faults.add(
        method="POST", path_contains="/importschedule", status=429, retry_after="0", times=1
    )

    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    assert schedule.in_sync
    [remote] = sandbox.schedules("src-1")
    assert remote["callbackUrl"] == services.webtrigger_url(pushed_source)


def test_pull_takes_what_assets_leaves_out_or_writes_in_lower_case_for_no_difference(
    pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.edit_schedule(
        schedule.assets_schedule_id, runInterval="daily", runFrequency="daily", callbackUrl=None
    )

    assert services.compare_schedule(schedule=schedule) == []


def test_pull_shows_what_differs_in_assets(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    change_in_assets(sandbox, schedule, "MONTHLY", tomorrow_at(12))

    differences = services.compare_schedule(schedule=schedule)

    assert differences == ["frequency: here DAILY, in Assets MONTHLY"]
    schedule.refresh_from_db()
    assert not schedule.in_sync


def test_pull_of_an_unchanged_schedule_finds_no_difference(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    assert services.compare_schedule(schedule=schedule) == []


def test_disabling_a_source_removes_its_schedule_from_assets(pushed_source, sandbox):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    pushed_source.enabled = False
    pushed_source.save()

    services.apply_enabled_state(source=pushed_source)

    assert sandbox.schedules("src-1") == []
    assert "disabled" in Schedule.objects.get().sync_error


def test_a_disabled_source_retires_its_callback_and_enabling_it_gives_assets_the_new_one(
    pushed_source, sandbox, client
):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    old_url = services.webtrigger_url(pushed_source)
    pushed_source.enabled = False
    pushed_source.save()

    services.apply_enabled_state(source=pushed_source)

    # A copy of the schedule Assets may still hold calls a URL that no longer starts anything.
    old_path = old_url.removeprefix("http://127.0.0.1:8000")
    body = json.dumps({"workspaceId": "ws-1", "importsourceId": "src-1"})
    assert client.post(old_path, data=body, content_type="application/json").status_code == 404
    assert not Execution.objects.exists()
    pushed_source.enabled = True
    pushed_source.save()
    services.apply_enabled_state(source=pushed_source)
    new_url = services.webtrigger_url(pushed_source)
    assert new_url != old_url
    assert [s["callbackUrl"] for s in sandbox.schedules("src-1")] == [new_url]


def test_rotating_the_token_updates_the_callback_in_assets(pushed_source, sandbox, client):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    old_url = services.webtrigger_url(pushed_source)

    services.rotate_webtrigger_token(source=pushed_source)

    new_url = services.webtrigger_url(pushed_source)
    assert new_url != old_url
    assert sandbox.schedules("src-1")[0]["callbackUrl"] == new_url
    old_path = old_url.removeprefix("http://127.0.0.1:8000")
    assert client.post(old_path, data="{}", content_type="application/json").status_code == 404


def test_rotating_the_token_of_a_one_off_that_has_run_says_nothing_is_wrong(
    pushed_source, sandbox, monkeypatch
):
    schedule = services.sync_schedule(
        schedule=make_schedule(pushed_source, frequency="ONCE", start_time=tomorrow_at(12))
    )
    later = schedule.start_time + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    services.rotate_webtrigger_token(source=pushed_source)  # raises nothing

    assert Schedule.objects.get().in_sync


def test_disabling_a_source_while_assets_cannot_delete_its_schedule_says_what_follows(
    pushed_source, sandbox
):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="DELETE", path_contains="/importschedule", status=503, times=-1)
    pushed_source.enabled = False
    pushed_source.save()

    with pytest.raises(services.ScheduleError) as told:
        services.apply_enabled_state(source=pushed_source)

    assert str(told.value).endswith(
        "Assets still holds the schedule: its next call is refused, since the source is "
        "disabled, and the schedule is removed then; 'Re-sync schedule to Assets' removes it now"
    )


@pytest.mark.parametrize(
    "frequency, start, now, expected",
    [
        ("DAILY", "2026-03-01T02:00", "2026-03-10T03:00", "2026-03-11T02:00"),
        # Across the change to summer time (29 March) the run stays at 09:00 wall-clock.
        ("DAILY", "2026-03-20T09:00", "2026-03-29T12:00", "2026-03-30T09:00"),
        ("WEEKLY", "2026-01-05T06:00", "2026-01-20T00:00", "2026-01-26T06:00"),
        ("MONTHLY", "2026-01-31T06:00", "2026-02-10T00:00", "2026-02-28T06:00"),
        ("ONCE", "2026-05-01T06:00", "2026-04-01T00:00", "2026-05-01T06:00"),
    ],
)
def test_the_next_run_follows_the_schedules_wall_clock(frequency, start, now, expected):
    schedule = Schedule(
        frequency=frequency,
        start_time=datetime.fromisoformat(start).replace(tzinfo=BERLIN),
        timezone="Europe/Berlin",
    )

    upcoming = services.next_run(schedule, after=datetime.fromisoformat(now).replace(tzinfo=BERLIN))

    assert upcoming == datetime.fromisoformat(expected).replace(tzinfo=BERLIN)


@pytest.mark.parametrize(
    "frequency, start, now, shown, told",
    [
        # 02:30 does not exist on 28 March 2027 in Berlin: that run is at 03:30; Assets is
        # told a 02:30 it can repeat from, the day after, not a time it would repeat at 03:30.
        (
            "DAILY",
            "2027-03-20T02:30",
            "2027-03-27T12:00",
            "2027-03-28T03:30:00+02:00",
            "2027-03-29T02:30:00+02:00",
        ),
        # A monthly run on the 31st: February's runs on its last day, and Assets is told the
        # next 31st, not the 28th it would go on repeating from.
        (
            "MONTHLY",
            "2027-01-31T06:00",
            "2027-02-01T00:00",
            "2027-02-28T06:00:00+01:00",
            "2027-03-31T06:00:00+02:00",
        ),
    ],
)
def test_the_next_run_and_the_one_on_the_schedules_own_day_and_time(
    frequency, start, now, shown, told
):
    schedule = Schedule(
        frequency=frequency,
        start_time=datetime.fromisoformat(start).replace(tzinfo=BERLIN),
        timezone="Europe/Berlin",
    )
    after = datetime.fromisoformat(now).replace(tzinfo=BERLIN)

    assert services.next_run(schedule, after=after).isoformat() == shown
    assert services.next_run(schedule, after=after, anchor=True).isoformat() == told


def test_the_sandbox_firing_the_schedule_runs_a_scheduled_import(
    pushed_source, sandbox, live_server, settings
):
    settings.PUBLIC_BASE_URL = live_server.url
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    fired = requests.post(
        f"{sandbox.base_url}/_sandbox/schedules/{schedule.assets_schedule_id}/fire", timeout=60
    ).json()

    assert fired["callbackStatus"] == 200, fired
    execution = wait_for_execution_to_finish(Execution.objects.get(source=pushed_source))
    assert execution.state == Execution.State.DONE
    assert execution.trigger == Execution.Trigger.SCHEDULE
    remote = sandbox.execution(fired["callbackBody"]["executionId"])
    assert remote["scheduled"] is True
    assert len(remote["objects"]) == 120


def test_a_second_schedule_for_a_source_is_refused_saying_where_the_first_is(
    admin_client, pushed_source
):
    make_schedule(pushed_source)

    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": pushed_source.pk,
            "frequency": "DAILY",
            "start_local": "2030-01-01 02:00",
            "timezone": "UTC",
        },
    )

    assert response.context["adminform"].form.errors["source"] == [
        "This source has a schedule already (a source has one): change that one, under "
        "Schedules or from the source's page."
    ]


def test_the_admin_saves_a_schedule_to_assets(admin_client, pushed_source, sandbox):
    start = tomorrow_at(13)

    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": pushed_source.pk,
            "frequency": "DAILY",
            "start_local": start.strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message == (
        "The schedule of inventory is saved, and Assets holds it: next "
        f"{start:%Y-%m-%d %H:%M} Europe/Berlin."
    ) or message.startswith(  # shown in the site's zone too when it differs
        "The schedule of inventory is saved, and Assets holds it: next "
        f"{start:%Y-%m-%d %H:%M} Europe/Berlin ("
    )
    assert datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"]) == start


def test_an_app_served_under_a_path_prefix_gives_assets_one_callback_url(
    admin_client, pushed_source, sandbox, settings
):
    # Behind a proxy at https://host/sync/: PUBLIC_BASE_URL names the prefix, and requests
    # come with it (SCRIPT_NAME, which the WSGI handler makes the script prefix).
    settings.PUBLIC_BASE_URL = "https://cmdb.example/sync"

    add = reverse("admin:importer_schedule_add")
    with override_script_prefix("/sync/"):
        admin_client.post(
            add,
            {
                "source": pushed_source.pk,
                "frequency": "DAILY",
                "start_local": tomorrow_at(13).strftime("%Y-%m-%d %H:%M"),
                "timezone": "Europe/Berlin",
            },
        )

    [remote] = sandbox.schedules("src-1")
    token = ImportSource.objects.get(pk=pushed_source.pk).webtrigger_token
    expected = f"https://cmdb.example/sync/webtrigger/{pushed_source.pk}/{token}/"
    assert remote["callbackUrl"] == expected
    assert services.webtrigger_url(pushed_source) == expected  # as a worker makes it


def test_schedules_synced_with_another_public_base_url_are_shown_out_of_date(
    admin_client, pushed_source, sandbox, settings
):
    # The app moved behind a new proxy: Assets still calls the old address, and the
    # operator is told so, to re-sync (a worker with another setting changes nothing).
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    old = sandbox.schedules("src-1")[0]["callbackUrl"]
    settings.PUBLIC_BASE_URL = "https://cmdb.example/sync"

    services.look_after_imports()
    page = admin_client.get(reverse("admin:importer_schedule_changelist"))

    assert sandbox.schedules("src-1")[0]["callbackUrl"] == old
    shown = " ".join(str(message) for message in page.context["messages"])
    assert "The schedule of inventory: Assets holds it with a webtrigger address" in shown
    assert "OUT OF DATE" in page.content.decode()

    admin_client.post(
        reverse("admin:importer_schedule_changelist"),
        {"action": "resync", "_selected_action": [schedule.pk]},
    )

    [remote] = sandbox.schedules("src-1")
    assert remote["callbackUrl"].startswith("https://cmdb.example/sync/webtrigger/")
    page = admin_client.get(reverse("admin:importer_schedule_changelist"))
    assert "OUT OF DATE" not in page.content.decode()


def test_a_pull_and_a_resync_from_the_admin_are_in_the_schedules_history(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    change_in_assets(sandbox, schedule, "MONTHLY", tomorrow_at(12))
    changelist = reverse("admin:importer_schedule_changelist")

    admin_client.post(changelist, {"action": "pull_from_assets", "_selected_action": [schedule.pk]})
    admin_client.post(changelist, {"action": "resync", "_selected_action": [schedule.pk]})

    history = admin_client.get(
        reverse("admin:importer_schedule_history", args=[schedule.pk])
    ).content.decode()
    assert "Pulled the schedule from Assets: frequency: here DAILY, in Assets MONTHLY." in history
    assert "Re-synced the schedule to Assets." in history


def pulled(admin_client, schedule: Schedule) -> str:
    """What the admin says after *Pull schedule from Assets* on `schedule`."""
    response = admin_client.post(
        reverse("admin:importer_schedule_changelist"),
        {"action": "pull_from_assets", "_selected_action": [schedule.pk]},
        follow=True,
    )
    return " ".join(str(message) for message in response.context["messages"])


def test_a_pull_of_a_disabled_sources_schedule_says_it_is_removed_while_disabled(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    pushed_source.enabled = False
    pushed_source.save()
    services.apply_enabled_state(source=pushed_source)

    said = pulled(admin_client, schedule)

    assert "Assets holds no schedule for this source while it is disabled" in said
    assert "enabling the source makes it there again" in said
    assert "yet" not in said


def test_a_pull_of_a_schedule_assets_lost_says_it_no_longer_holds_it(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.reset()
    pulled(admin_client, schedule)  # finds it gone

    said = pulled(admin_client, schedule)

    assert "Assets no longer holds this schedule ('Re-sync schedule to Assets' makes it" in said
    assert "yet" not in said


def test_a_pull_of_a_schedule_never_synced_says_it_is_not_there_yet_and_why(
    admin_client, make_source
):
    schedule = make_schedule(make_source())  # its mapping was never pushed
    with pytest.raises(services.ScheduleError):
        services.sync_schedule(schedule=schedule)

    said = pulled(admin_client, schedule)

    assert (
        "Assets holds no schedule for this source yet: Assets needs the source's mapping "
        "first: push the mapping." in said
    )


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("http://127.0.0.1:8000", "names this machine"),
        ("https://10.2.0.7", "is on a private network"),
        ("http://cmdb.example", "is plain http"),
        ("cmdb.example", "is not an http(s) address"),
        ("https://cmdb.example/sync", None),
    ],
)
def test_check_deploy_warns_of_a_public_base_url_assets_cannot_use(settings, address, said):
    settings.PUBLIC_BASE_URL = address
    out = io.StringIO()

    try:
        call_command("check", "--deploy", stdout=out, stderr=out)
    except SystemCheckError as error:
        out.write(str(error))

    if said is None:
        assert "importer.W001" not in out.getvalue()
    else:
        assert f"(importer.W001) PUBLIC_BASE_URL ({address}) {said}" in out.getvalue()


def test_a_schedule_assets_refuses_gets_one_warning_that_says_both(admin_client, make_source):
    source = make_source()  # its mapping was never pushed, so Assets refuses a schedule

    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": source.pk,
            "frequency": "DAILY",
            "start_local": tomorrow_at(13).strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert len(shown) == 1, shown
    assert shown[0][0] == "warning"
    assert shown[0][1].startswith("The schedule of inventory is saved here, but not in Assets: ")
    assert "push the mapping" in shown[0][1]


def test_a_blank_schedule_form_shows_no_sync_state(admin_client, pushed_source):
    page = admin_client.get(reverse("admin:importer_schedule_add")).content.decode()

    assert "OUT OF SYNC" not in page
    assert "IN SYNC" not in page
    assert "time zone below" not in page


def test_the_admin_refuses_a_single_run_in_the_past_and_an_unknown_zone(
    admin_client, pushed_source
):
    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": pushed_source.pk,
            "frequency": "ONCE",
            "start_local": "2020-01-01 02:00",
            "timezone": "Mars/Olympus",
        },
    )

    errors = response.context["adminform"].form.errors
    assert "not an IANA time zone" in str(errors["timezone"])
    assert not Schedule.objects.exists()
    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": pushed_source.pk,
            "frequency": "ONCE",
            "start_local": "2020-01-01 02:00",
            "timezone": "Europe/Berlin",
        },
    )
    errors = response.context["adminform"].form.errors
    assert errors["start_local"] == ["The start time of a run once must be in the future."]


def test_a_repeating_schedule_exported_long_ago_applies_on_a_new_site_from_its_next_run(
    pushed_source, sandbox, tmp_path
):
    # A staging site or a restore: the file holds the first run, long past.
    from importer.config_file import source_to_config

    entry = source_to_config(pushed_source, with_secrets=True)
    entry["schedule"] = {
        "frequency": "DAILY",
        "start_time": "2020-06-01T12:00:00",
        "timezone": "Europe/Berlin",
    }
    path = tmp_path / "sources.json"
    path.write_text(json.dumps([entry]))

    call_command("import_sources", str(path), stdout=io.StringIO())

    remote = sandbox.schedules("src-1")
    assert len(remote) == 1
    told = datetime.fromisoformat(remote[0]["startTime"])
    assert timezone.now() < told <= timezone.now() + timedelta(days=1)
    assert told.astimezone(BERLIN).hour == 12


@pytest.mark.parametrize("name", ["localtime", "Factory", "posixrules", "right/UTC", "posix/UTC"])
def test_a_name_in_the_zone_database_that_is_no_place_is_refused(name):
    from django import forms

    from importer.forms import validate_timezone

    # "localtime" would be the server's own zone, whatever Assets makes of it.
    with pytest.raises(forms.ValidationError):
        validate_timezone(name)


def test_the_source_page_shows_the_webtrigger_url_and_next_run(admin_client, pushed_source):
    services.sync_schedule(schedule=make_schedule(pushed_source))

    page = admin_client.get(
        reverse("admin:importer_importsource_change", args=[pushed_source.pk])
    ).content.decode()

    assert services.webtrigger_url(pushed_source) in page
    assert ", next 20" in page
    assert "in sync with Assets" in page


def test_config_file_creates_updates_and_removes_a_schedule(pushed_source, sandbox, tmp_path):
    from importer.config_file import source_to_config

    entry = source_to_config(pushed_source, with_secrets=True)
    entry["schedule"] = {
        "frequency": "DAILY",
        "start_time": tomorrow_at(12).replace(tzinfo=None).isoformat(),
        "timezone": "Europe/Berlin",
    }
    path = tmp_path / "sources.json"

    def apply(*options: str) -> str:
        path.write_text(json.dumps([entry]))
        out = io.StringIO()
        call_command("import_sources", str(path), *options, stdout=out)
        return out.getvalue()

    assert "schedule would be created" in apply("--dry-run")
    assert sandbox.schedules("src-1") == []
    assert "schedule created and synced to Assets" in apply()
    assert sandbox.schedules("src-1")[0]["runFrequency"] == "DAILY"
    entry["schedule"]["frequency"] = "WEEKLY"
    assert "schedule would change: frequency" in apply("--dry-run")
    assert "schedule changed (frequency) and synced to Assets" in apply()
    assert sandbox.schedules("src-1")[0]["runFrequency"] == "WEEKLY"
    entry["schedule"] = None
    # A file written before the schedule was added in the admin would remove it: a dry run
    # says so before it happens.
    assert "schedule would be removed, here and in Assets" in apply("--dry-run")
    assert len(sandbox.schedules("src-1")) == 1
    assert "schedule removed" in apply()
    assert sandbox.schedules("src-1") == []


def test_remove_schedules_deletes_every_remote_schedule(pushed_source, sandbox):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    out = io.StringIO()

    call_command("remove_schedules", stdout=out)

    assert sandbox.schedules() == []
    assert "1 schedule(s) removed" in out.getvalue()


def test_a_schedule_reads_in_its_own_zone_for_those_who_may_edit_it_and_those_who_may_not(
    client, admin_client, django_user_model, make_source
):
    from django.contrib.auth.models import Group

    schedule = make_schedule(make_source(), start_time=tomorrow_at(9).replace(minute=15))
    operator = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    client.force_login(operator)
    url = reverse("admin:importer_schedule_change", args=[schedule.pk])
    day = tomorrow_at(9).strftime("%Y-%m-%d")

    shown = client.get(url).content.decode()
    edited = admin_client.get(url).content.decode()

    assert f"{day} 09:15 Europe/Berlin" in shown and "None" not in shown
    assert f'value="{day} 09:15"' in edited  # as the help text asks: no seconds


def test_a_start_time_the_clocks_skip_is_refused_in_the_schedules_zone(make_source):
    from importer.forms import ScheduleForm

    source = make_source()
    form = ScheduleForm(
        data={
            "source": source.pk,
            "frequency": "DAILY",
            "timezone": "Europe/Berlin",
            "start_local": "2099-03-29 02:30",  # the clocks go from 02:00 to 03:00
        }
    )

    assert not form.is_valid()
    assert form.errors["start_local"] == [
        "2099-03-29 02:30 does not exist in Europe/Berlin: the clocks skip that hour that "
        "day. Choose a time after the change."
    ]
    later = ScheduleForm(data={**form.data, "start_local": "2099-03-29 03:30"})
    assert later.is_valid(), later.errors


@pytest.mark.parametrize("typed", ["12/04/2099 09:00", "12/04/99 09:00", "12/04/2099"])
def test_a_start_time_written_month_first_is_refused_not_read_as_another_day(make_source, typed):
    # 12/04 is 12 April to most of the world, and was taken as 4 December without a word.
    from importer.forms import ScheduleForm

    source = make_source()
    data = {"source": source.pk, "frequency": "DAILY", "timezone": "Europe/Berlin"}
    form = ScheduleForm(data={**data, "start_local": typed})

    assert not form.is_valid()
    assert form.errors["start_local"] == [
        "Give a date and a time, as YYYY-MM-DD HH:MM (e.g. 2026-12-01 02:00)."
    ]
    for iso in ("2099-04-12 09:00", "2099-04-12T09:00:00"):  # as typed, as a config file has it
        written = ScheduleForm(data={**data, "start_local": iso})
        assert written.is_valid(), written.errors
        assert written.cleaned_data["start_time"].month == 4


def test_a_start_in_the_hour_the_clocks_repeat_is_kept_when_only_the_frequency_changes(
    make_source,
):
    from importer.forms import ScheduleForm

    start = datetime(2099, 10, 25, 2, 30, tzinfo=BERLIN)  # 02:00-03:00 comes twice that day
    schedule = make_schedule(make_source(), start_time=start)
    schedule.refresh_from_db()  # as an edit reads it: in UTC
    data = {
        "source": schedule.source.pk,
        "frequency": "WEEKLY",
        "timezone": "Europe/Berlin",
        "start_local": "2099-10-25 02:30",  # as the form shows it
    }

    form = ScheduleForm(data=data, instance=schedule)

    assert form.is_valid(), form.errors
    assert form.changed_settings() == ["frequency"]  # not the start: no needless sync


def test_a_time_without_its_date_is_refused_saying_what_to_type(make_source):
    from importer.forms import ScheduleForm

    form = ScheduleForm(
        data={
            "source": make_source().pk,
            "frequency": "DAILY",
            "timezone": "Europe/Berlin",
            "start_local": "02:00",
        }
    )

    assert not form.is_valid()
    assert form.errors["start_local"] == [
        "Give a date and a time, as YYYY-MM-DD HH:MM (e.g. 2026-12-01 02:00)."
    ]


@pytest.mark.parametrize("frequency", ["ONCE", "DAILY"])
def test_the_start_time_is_sent_in_the_schedules_zone_on_every_sync(
    pushed_source, sandbox, frequency
):
    # Assets shows the time as sent: 03:00+01:00 on save must not become 02:00+00:00 later.
    schedule = services.sync_schedule(
        schedule=make_schedule(pushed_source, frequency=frequency, start_time=tomorrow_at(13))
    )
    first = sandbox.schedules("src-1")[0]["startTime"]

    services.sync_schedule(schedule=Schedule.objects.get(pk=schedule.pk))  # as stored: UTC

    again = sandbox.schedules("src-1")[0]["startTime"]
    assert again == first == tomorrow_at(13).isoformat()


@pytest.mark.parametrize("how", ["delete page", "bulk action", "source"])
def test_a_delete_assets_refuses_keeps_the_row_and_says_only_so(
    admin_client, pushed_source, sandbox, how
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="DELETE", path_contains="/importschedule", status=503, times=-1)

    if how == "delete page":
        url = reverse("admin:importer_schedule_delete", args=[schedule.pk])
        response = admin_client.post(url, {"post": "yes"}, follow=True)
    elif how == "bulk action":
        response = admin_client.post(
            reverse("admin:importer_schedule_changelist"),
            {"action": "delete_selected", "_selected_action": [schedule.pk], "post": "yes"},
            follow=True,
        )
    else:
        url = reverse("admin:importer_importsource_delete", args=[pushed_source.pk])
        response = admin_client.post(url, {"post": "yes"}, follow=True)

    said = [str(message) for message in response.context["messages"]]
    assert len(said) == 1 and said[0].startswith("Kept "), said
    assert "503" in said[0]
    assert Schedule.objects.filter(pk=schedule.pk).exists()


@pytest.mark.parametrize("frequency", ["WEEKLY", "MONTHLY"])
def test_pull_finds_a_schedule_moved_to_another_day_at_the_same_hour(
    pushed_source, sandbox, frequency
):
    schedule = services.sync_schedule(
        schedule=make_schedule(pushed_source, frequency=frequency, start_time=tomorrow_at(12))
    )
    assert services.compare_schedule(schedule=schedule) == []
    moved = tomorrow_at(12) + timedelta(days=3)  # another weekday, another day of the month
    change_in_assets(sandbox, schedule, frequency, moved)

    differences = services.compare_schedule(schedule=schedule)

    assert len(differences) == 1 and differences[0].startswith("start time: here ")


def test_a_disabled_source_whose_schedule_assets_kept_removes_it_when_it_fires(
    pushed_source, sandbox, client, httpserver
):
    from importer.models import Alert

    services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="DELETE", path_contains="/importschedule", status=503, times=-1)
    pushed_source.enabled = False
    pushed_source.save()
    with pytest.raises(services.ScheduleError):
        services.apply_enabled_state(source=pushed_source)  # Assets down: the schedule stays
    sandbox.faults.clear()

    url = reverse("importer:webtrigger", args=[pushed_source.pk, pushed_source.webtrigger_token])
    body = {"workspaceId": "ws-1", "importsourceId": "src-1"}
    response = client.post(url, data=json.dumps(body), content_type="application/json")

    assert response.status_code == 500 and "is disabled" in response.json()["error"]
    assert sandbox.schedules("src-1") == []  # removed now: it will not fire again
    assert Execution.objects.get().state == Execution.State.REFUSED  # kept in the history
    assert not Alert.objects.exists()  # disabling was someone's choice: nobody is paged
    services.look_after_imports()  # nor later, by the catch-up of lost alerts
    assert not Alert.objects.exists()


def test_a_source_moved_to_another_import_source_takes_its_schedule_along(
    admin_client, pushed_source, sandbox
):
    from tests.test_admin import source_form_data

    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))

    response = admin_client.post(
        reverse("admin:importer_importsource_change", args=[pushed_source.pk]),
        source_form_data(pushed_source, import_source_id="src-2"),
        follow=True,
    )

    said = [str(message) for message in response.context["messages"]]
    assert "Schedule: Assets needs the source's mapping first: push the mapping." in said
    assert sandbox.schedules("src-1") == []  # it would have fired for nothing
    moved = services.push_mapping(source=ImportSource.objects.get(pk=pushed_source.pk))
    assert moved.import_source_id == "src-2"
    services.sync_schedule(schedule=Schedule.objects.get(pk=schedule.pk))
    assert len(sandbox.schedules("src-2")) == 1


def test_a_source_moved_to_another_import_source_by_a_config_file_takes_its_schedule_along(
    pushed_source, sandbox, tmp_path
):
    from importer.config_file import config_document

    services.sync_schedule(schedule=make_schedule(pushed_source))
    document = config_document([pushed_source.name], with_secrets=True)
    document["sources"][0]["assets"]["import_source_id"] = "src-2"
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(document))

    call_command("import_sources", str(path), stdout=io.StringIO())

    assert sandbox.schedules("src-1") == []  # it would have fired for nothing
    assert len(sandbox.schedules("src-2")) == 1
    assert Schedule.objects.get().in_sync


def test_a_schedule_whose_first_run_has_passed_can_be_edited_keeping_its_start(
    admin_client, pushed_source, sandbox
):
    first_run = tomorrow_at(12) - timedelta(days=4)
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source, start_time=first_run))
    url = reverse("admin:importer_schedule_change", args=[schedule.pk])

    response = admin_client.post(
        url,
        {
            "source": pushed_source.pk,
            "frequency": "WEEKLY",
            "start_local": first_run.strftime("%Y-%m-%d %H:%M"),  # as the form shows it
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("The schedule of inventory is saved, and Assets holds it: next ")
    schedule.refresh_from_db()
    assert (schedule.frequency, schedule.start_time) == ("WEEKLY", first_run)
    assert sandbox.schedules("src-1")[0]["runFrequency"] == "WEEKLY"


def test_a_change_assets_cannot_take_says_assets_still_runs_the_schedule_as_last_synced(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=503, times=-1)

    response = admin_client.post(
        reverse("admin:importer_schedule_change", args=[schedule.pk]),
        {
            "source": pushed_source.pk,
            "frequency": "WEEKLY",
            "start_local": tomorrow_at(15).strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert message.endswith("Until then Assets runs it as last synced.")
    # Its copy in Assets calls a webtrigger that still starts imports, at the old times.
    assert [s["runFrequency"] for s in sandbox.schedules("src-1")] == ["DAILY"]
    listed = admin_client.get(reverse("admin:importer_schedule_changelist")).content.decode()
    assert "Assets still runs it as last synced" in listed
    assert "no run until it is synced" not in listed


def test_a_schedule_whose_webtrigger_token_assets_did_not_get_says_it_runs_no_more(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=503, times=-1)

    with pytest.raises(services.ScheduleError):
        services.rotate_webtrigger_token(source=pushed_source)

    schedule.refresh_from_db()
    assert not services.runs_as_last_synced(schedule)
    listed = admin_client.get(reverse("admin:importer_schedule_changelist")).content.decode()
    assert "no run until it is synced" in listed


def test_a_token_rotation_assets_does_not_get_says_the_runs_stop_and_how_to_resume(
    admin_client, pushed_source, sandbox
):
    services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=503, times=-1)

    response = admin_client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "rotate_webtrigger_token", "_selected_action": [pushed_source.pk]},
        follow=True,
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert "503" in message
    assert "It is synced again by itself every 10 minutes" in message
    assert message.endswith(
        "Its scheduled runs call that URL and start nothing until Assets has the new one: "
        "'Re-sync schedule to Assets' under Schedules tries at once."
    )


def test_a_new_webtrigger_token_assets_could_not_take_reaches_it_by_housekeeping(
    pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=503, times=-1)
    with pytest.raises(services.ScheduleError) as told:
        services.rotate_webtrigger_token(source=pushed_source)
    assert told.value.will_retry
    sandbox.faults.clear()
    assert services.retry_failed_syncs() == 0  # not before its time

    Schedule.objects.filter(pk=schedule.pk).update(sync_retry_at=timezone.now())
    assert services.retry_failed_syncs() == 1

    schedule.refresh_from_db()
    assert schedule.in_sync and schedule.sync_retry_at is None
    new_url = services.webtrigger_url(ImportSource.objects.get(pk=pushed_source.pk))
    assert [s["callbackUrl"] for s in sandbox.schedules("src-1")] == [new_url]


def schedule_calls(sandbox) -> list[str]:
    """The methods of the calls Assets received on its import schedules."""
    return [method for method, path in sandbox.requests_log if "/importschedule" in path]


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"status": 429, "retry_after": "1"}],
    ids=["failing", "busy"],
)
def test_a_schedule_saved_while_assets_is_busy_or_failing_is_told_at_once(
    admin_client, pushed_source, sandbox, fault
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", times=-1, **fault)
    before = len(schedule_calls(sandbox))

    response = admin_client.post(
        reverse("admin:importer_schedule_change", args=[schedule.pk]),
        {
            "source": pushed_source.pk,
            "frequency": "WEEKLY",
            "start_local": tomorrow_at(15).strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    # Asked once, not again within the page's request: housekeeping takes it up.
    assert schedule_calls(sandbox)[before:] == ["PUT"]
    [message] = [str(m) for m in response.context["messages"]]
    assert f"({fault['status']})" in message or f"answered {fault['status']}" in message
    assert "It is synced again by itself every 10 minutes" in message
    assert Schedule.objects.get(pk=schedule.pk).sync_retry_at is not None


def test_a_new_schedule_assets_cannot_take_now_is_asked_once_from_the_admin(
    admin_client, pushed_source, sandbox
):
    sandbox.faults.add(method="POST", path_contains="/importschedule", status=503, times=-1)

    response = admin_client.post(
        reverse("admin:importer_schedule_add"),
        {
            "source": pushed_source.pk,
            "frequency": "DAILY",
            "start_local": tomorrow_at(13).strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
        follow=True,
    )

    assert schedule_calls(sandbox) == ["POST"]
    [message] = [str(m) for m in response.context["messages"]]
    assert "It is synced again by itself every 10 minutes" in message


def test_a_token_rotation_or_resync_while_assets_fails_asks_it_once_from_the_admin(
    admin_client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=503, times=-1)
    before = len(schedule_calls(sandbox))

    admin_client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "rotate_webtrigger_token", "_selected_action": [pushed_source.pk]},
    )
    admin_client.post(
        reverse("admin:importer_schedule_changelist"),
        {"action": "resync", "_selected_action": [schedule.pk]},
    )

    assert schedule_calls(sandbox)[before:] == ["PUT", "PUT"]


def test_a_source_enabled_while_assets_fails_asks_it_once_from_the_admin(
    admin_client, pushed_source, sandbox
):
    from tests.test_admin import source_form_data

    services.sync_schedule(schedule=make_schedule(pushed_source))
    pushed_source.enabled = False
    pushed_source.save()
    services.apply_enabled_state(source=pushed_source)
    sandbox.faults.add(method="POST", path_contains="/importschedule", status=503, times=-1)
    before = len(schedule_calls(sandbox))
    pushed_source.enabled = True

    response = admin_client.post(
        reverse("admin:importer_importsource_change", args=[pushed_source.pk]),
        source_form_data(pushed_source),
        follow=True,
    )

    assert schedule_calls(sandbox)[before:] == ["POST"]
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "It is synced again by itself every 10 minutes" in shown


def test_housekeeping_still_waits_out_a_brief_failure_of_assets(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    Schedule.objects.filter(pk=schedule.pk).update(in_sync=False, sync_retry_at=timezone.now())
    sandbox.faults.add(
        method="PUT", path_contains="/importschedule", status=503, retry_after="0", times=1
    )
    before = len(schedule_calls(sandbox))

    assert services.retry_failed_syncs() == 1

    assert schedule_calls(sandbox)[before:] == ["PUT", "PUT"]
    assert Schedule.objects.get(pk=schedule.pk).in_sync


def test_housekeeping_finding_assets_out_of_reach_leaves_the_other_syncs_to_a_later_round(
    pushed_source, make_source, sandbox
):
    # Each sync costs up to HTTP_TIMEOUT while Assets does not answer: a round trying every
    # schedule waiting for Assets outlasted its task and never reached the alerts.
    other = services.push_mapping(source=make_source(name="other", import_source_id="src-2"))
    for source in (pushed_source, other):
        services.sync_schedule(schedule=make_schedule(source))
    Schedule.objects.update(in_sync=False, sync_retry_at=timezone.now())
    sandbox.faults.add(method="PUT", path_contains="/importschedule", drop=True, times=-1)
    asked_before = len(sandbox.requests_log)

    assert services.retry_failed_syncs() == 0
    assert len(sandbox.requests_log[asked_before:]) == 1
    assert Schedule.objects.filter(sync_retry_at__lte=timezone.now()).count() == 1

    sandbox.faults.clear()
    assert services.retry_failed_syncs() == 1
    assert Schedule.objects.filter(in_sync=True).count() == 1


def break_stored_token(source: ImportSource) -> None:
    """The source's stored Assets token as FIELD_ENCRYPTION_KEYS no longer decrypt it (a key
    removed before the secrets were rotated)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ImportSource._meta.db_table} SET assets_token = %s WHERE id = %s",
            ["fernet:not-a-token-these-keys-made", source.pk],
        )


def test_a_schedule_housekeeping_cannot_read_is_marked_and_the_round_goes_on(
    pushed_source, make_source, sandbox, caplog
):
    # A stored token that FIELD_ENCRYPTION_KEYS no longer decrypts stopped the whole round:
    # the other schedules, and the alerts after them, waited for ever.
    broken = services.push_mapping(source=make_source(name="broken", import_source_id="src-2"))
    for source in (broken, pushed_source):
        services.sync_schedule(schedule=make_schedule(source))
    Schedule.objects.update(in_sync=False, sync_retry_at=timezone.now())
    Schedule.objects.filter(source=broken).update(sync_retry_at=timezone.now() - timedelta(1))
    break_stored_token(broken)

    assert services.retry_failed_syncs() == 1

    assert Schedule.objects.get(source=pushed_source).in_sync
    marked = Schedule.objects.get(source=broken)
    assert not marked.in_sync
    assert "cannot be decrypted with FIELD_ENCRYPTION_KEYS" in marked.sync_error
    assert marked.sync_retry_at > timezone.now()  # tried again in a later round
    assert "cannot be decrypted" in caplog.text


def test_a_create_whose_answer_was_lost_is_not_made_again_by_itself(pushed_source, sandbox):
    sandbox.faults.add(method="POST", path_contains="/importschedule", lose_answer=True)

    with pytest.raises(services.ScheduleError) as told:
        services.sync_schedule(schedule=make_schedule(pushed_source))

    # Assets made it: another try by itself would leave a copy there at each one.
    assert len(sandbox.schedules("src-1")) == 1
    assert not told.value.will_retry
    assert Schedule.objects.get().sync_retry_at is None


@pytest.mark.parametrize("status", [401, 409])
def test_a_sync_assets_refuses_for_a_cause_to_mend_waits_for_a_resync(
    pushed_source, sandbox, status
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.faults.add(method="PUT", path_contains="/importschedule", status=status, times=1)
    schedule.frequency = "WEEKLY"
    schedule.save()

    with pytest.raises(services.ScheduleError) as told:
        services.sync_schedule(schedule=schedule)

    assert not told.value.will_retry
    assert "by itself" not in str(told.value)
    assert Schedule.objects.get(pk=schedule.pk).sync_retry_at is None


def test_a_schedule_assets_no_longer_holds_is_not_said_to_run(pushed_source, sandbox):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    sandbox.reset()

    services.compare_schedule(schedule=schedule)

    schedule.refresh_from_db()
    assert not services.runs_as_last_synced(schedule)


def test_a_schedule_stays_with_its_source(admin_client, pushed_source, make_source, sandbox):
    other = make_source(name="other", import_source_id="src-2")
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    url = reverse("admin:importer_schedule_change", args=[schedule.pk])

    admin_client.post(
        url,
        {
            "source": other.pk,
            "frequency": "DAILY",
            "start_local": tomorrow_at(12).strftime("%Y-%m-%d %H:%M"),
            "timezone": "Europe/Berlin",
        },
    )

    assert Schedule.objects.get().source == pushed_source
    assert len(sandbox.schedules("src-1")) == 1 and sandbox.schedules("src-2") == []


def test_a_config_file_applied_again_after_its_schedules_first_run_changes_nothing(
    pushed_source, sandbox, tmp_path
):
    from importer.config_file import config_document

    first_run = tomorrow_at(12) - timedelta(days=4)
    services.sync_schedule(schedule=make_schedule(pushed_source, start_time=first_run))
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(config_document([pushed_source.name], with_secrets=True)))
    calls_before = len(sandbox.requests_log)

    output = io.StringIO()
    call_command("import_sources", str(path), stdout=output)

    assert output.getvalue().strip() == "unchanged inventory"
    assert sandbox.requests_log[calls_before:] == []  # nothing sent to Assets again


def test_a_source_moved_to_another_assets_site_with_its_token_takes_its_schedule_along(
    admin_client, pushed_source, sandbox
):
    from importer.devtools.assets_sandbox import AssetsSandbox
    from tests.test_admin import source_form_data

    other_site = AssetsSandbox(token="other-site-token").start()
    try:
        services.sync_schedule(schedule=make_schedule(pushed_source))
        moved = {"assets_base_url": other_site.base_url, "assets_token": "other-site-token"}

        response = admin_client.post(
            reverse("admin:importer_importsource_change", args=[pushed_source.pk]),
            source_form_data(pushed_source, **moved),
            follow=True,
        )

        said = [str(message) for message in response.context["messages"]]
        assert not any("refused the token" in text for text in said), said
        assert sandbox.schedules("src-1") == []  # removed with the token it was made with
    finally:
        other_site.stop()


def test_a_copy_of_a_deleted_schedule_left_in_assets_starts_nothing(client, pushed_source, sandbox):
    # Assets made the schedule twice: the answer to the first create was lost on the way.
    sandbox.faults.add(method="POST", path_contains="/importschedule", lose_answer=True)
    schedule = make_schedule(pushed_source)
    with pytest.raises(services.ScheduleError):
        services.sync_schedule(schedule=schedule)
    services.sync_schedule(schedule=schedule)
    assert len(sandbox.schedules("src-1")) == 2
    callback = sandbox.schedules("src-1")[0]["callbackUrl"]

    services.delete_schedule(schedule=Schedule.objects.get())

    left_over = sandbox.schedules("src-1")
    assert len(left_over) == 1 and left_over[0]["callbackUrl"] == callback
    body = {"workspaceId": "ws-1", "importsourceId": "src-1"}
    response = client.post(
        urlsplit(callback).path, data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 404
    assert not Execution.objects.exists()


def test_a_schedule_assets_made_though_its_answer_was_lost_starts_nothing(
    client, pushed_source, sandbox
):
    # Assets made it, the answer never came: the next sync makes another. Were both to call
    # the same webtrigger, the first would go on starting imports at the old times.
    sandbox.faults.add(method="POST", path_contains="/importschedule", lose_answer=True)
    schedule = make_schedule(pushed_source)
    with pytest.raises(services.ScheduleError) as lost:
        services.sync_schedule(schedule=schedule)
    services.sync_schedule(schedule=Schedule.objects.get())

    # The operator hears of the copy, and what to do with it.
    assert "Assets may have made the schedule all the same" in str(lost.value)
    assert "delete the older one there" in str(lost.value)
    copy, kept = sandbox.schedules("src-1")
    body = json.dumps({"workspaceId": "ws-1", "importsourceId": "src-1"})
    response = client.post(
        urlsplit(copy["callbackUrl"]).path, data=body, content_type="application/json"
    )
    assert response.status_code == 404
    assert kept["id"] == Schedule.objects.get().assets_schedule_id
    response = client.post(
        urlsplit(kept["callbackUrl"]).path, data=body, content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_two_syncs_at_once_leave_one_schedule_in_assets_with_the_later_settings(
    pushed_source, sandbox
):
    # Two operators (or two clicks on Re-sync), each with the row as it was read.
    make_schedule(pushed_source)
    first, second = Schedule.objects.get(), Schedule.objects.get()
    services.sync_schedule(schedule=first)
    Schedule.objects.update(frequency="WEEKLY")  # the second operator's edit, saved
    second.frequency = "WEEKLY"

    services.sync_schedule(schedule=second)

    remote = sandbox.schedules("src-1")
    assert len(remote) == 1
    assert remote[0]["id"] == Schedule.objects.get().assets_schedule_id
    assert remote[0]["runFrequency"] == "WEEKLY"


def test_a_run_set_again_after_one_failed_starts_though_the_last_began_minutes_ago(
    client, pushed_source, sandbox, inventory
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    body = json.dumps({"workspaceId": "ws-1", "importsourceId": "src-1"})
    inventory.faults.add(method="GET", path_contains="/api/computers", status=403, times=-1)
    path = urlsplit(schedule.callback_url).path
    client.post(path, data=body, content_type="application/json")
    failed = Execution.objects.get()
    assert failed.state == Execution.State.FAILED
    inventory.faults.clear()
    # Set again to run at once; Assets calls at that time.
    again = Schedule.objects.get()
    again.frequency, again.start_time = "ONCE", timezone.now() + timedelta(seconds=20)
    again.save()
    services.sync_schedule(schedule=again)

    response = client.post(path, data=body, content_type="application/json")

    assert response.status_code == 200
    run = Execution.objects.exclude(pk=failed.pk).get()
    assert response.json()["executionId"] == run.assets_execution_id
    assert run.state == Execution.State.DONE


def test_a_monthly_schedule_synced_before_a_short_month_keeps_that_months_run(
    pushed_source, sandbox, monkeypatch
):
    # Monthly on the 31st, synced on 2 April: Assets is told 30 April, April's last day,
    # not 31 May. (Next year's: the sandbox, on the real clock, takes only a start ahead.)
    year = timezone.now().year + 1
    start = datetime(year, 1, 31, 9, 0, tzinfo=BERLIN)
    schedule = make_schedule(pushed_source, frequency="MONTHLY", start_time=start)
    synced_on = datetime(year, 4, 2, 9, 0, tzinfo=BERLIN)
    monkeypatch.setattr(timezone, "now", lambda: synced_on)
    services.sync_schedule(schedule=schedule)
    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])

    shown = services.upcoming_run(Schedule.objects.get())

    assert told == shown == datetime(year, 4, 30, 9, 0, tzinfo=BERLIN)


def monthly_on_the_31st_synced_on_2_april(source, monkeypatch) -> int:
    """A schedule monthly on the 31st, synced on 2 April of next year (the sandbox, on the
    real clock, takes only a start still ahead); that year."""
    year = timezone.now().year + 1
    start = datetime(year, 1, 31, 9, 0, tzinfo=BERLIN)
    schedule = make_schedule(source, frequency="MONTHLY", start_time=start)
    monkeypatch.setattr(timezone, "now", lambda: datetime(year, 4, 2, 9, 0, tzinfo=BERLIN))
    services.sync_schedule(schedule=schedule)
    return year


def test_after_a_short_months_run_assets_is_told_the_schedules_own_day_again(
    pushed_source, sandbox, monkeypatch
):
    # Assets repeats from the start it holds: left at 30 April, it would run on the 30th
    # from then on. Once that run has passed, housekeeping tells it 31 May.
    year = monthly_on_the_31st_synced_on_2_april(pushed_source, monkeypatch)
    assert services.reanchor_due_schedules() == 0  # 30 April has not come yet

    # Its call may come late: not before it came, or the time to repeat it has passed.
    monkeypatch.setattr(timezone, "now", lambda: datetime(year, 4, 30, 9, 5, tzinfo=BERLIN))
    assert services.reanchor_due_schedules() == 0
    monkeypatch.setattr(timezone, "now", lambda: datetime(year, 4, 30, 9, 11, tzinfo=BERLIN))
    assert services.reanchor_due_schedules() == 1

    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    schedule = Schedule.objects.get()
    assert told == services.upcoming_run(schedule) == datetime(year, 5, 31, 9, 0, tzinfo=BERLIN)
    assert schedule.in_sync and schedule.reanchor_at is None
    assert services.reanchor_due_schedules() == 0


def test_a_schedule_that_cannot_be_read_does_not_stop_the_others_moving_back_to_their_day(
    pushed_source, make_source, sandbox, monkeypatch
):
    broken = services.push_mapping(source=make_source(name="broken", import_source_id="src-2"))
    year = monthly_on_the_31st_synced_on_2_april(pushed_source, monkeypatch)
    start = datetime(year, 1, 31, 9, 0, tzinfo=BERLIN)
    services.sync_schedule(schedule=make_schedule(broken, frequency="MONTHLY", start_time=start))
    break_stored_token(broken)
    monkeypatch.setattr(timezone, "now", lambda: datetime(year, 4, 30, 9, 11, tzinfo=BERLIN))

    assert services.reanchor_due_schedules() == 1

    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    assert told == datetime(year, 5, 31, 9, 0, tzinfo=BERLIN)
    marked = Schedule.objects.get(source=broken)
    assert not marked.in_sync
    assert "cannot be decrypted with FIELD_ENCRYPTION_KEYS" in marked.sync_error


def test_once_the_short_months_run_was_called_assets_is_told_the_own_day_at_once(
    pushed_source, sandbox, monkeypatch
):
    year = monthly_on_the_31st_synced_on_2_april(pushed_source, monkeypatch)
    monkeypatch.setattr(timezone, "now", lambda: datetime(year, 4, 30, 9, 1, tzinfo=BERLIN))
    Execution.objects.create(
        source=pushed_source, trigger=Execution.Trigger.SCHEDULE, state=Execution.State.DONE
    )

    assert services.reanchor_due_schedules() == 1

    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    assert told == datetime(year, 5, 31, 9, 0, tzinfo=BERLIN)


def test_a_daily_schedule_synced_before_a_clock_change_keeps_the_run_of_that_day(
    pushed_source, sandbox, monkeypatch
):
    # 02:30 does not exist in New York on the second Sunday of March: that day's run is at
    # 03:30 (as shown), not dropped for the next day's 02:30; then 02:30 again.
    year = timezone.now().year + 1
    second_sunday = next(
        day for day in range(8, 15) if datetime(year, 3, day).weekday() == calendar.SUNDAY
    )
    york = ZoneInfo("America/New_York")
    schedule = make_schedule(
        pushed_source,
        start_time=datetime(year, 1, 5, 2, 30, tzinfo=york),
        timezone="America/New_York",
    )
    monkeypatch.setattr(
        timezone, "now", lambda: datetime(year, 3, second_sunday - 1, 15, 0, tzinfo=york)
    )
    services.sync_schedule(schedule=schedule)
    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    assert told == datetime(year, 3, second_sunday, 3, 30, tzinfo=york)

    monkeypatch.setattr(
        timezone, "now", lambda: datetime(year, 3, second_sunday, 4, 0, tzinfo=york)
    )
    services.reanchor_due_schedules()

    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    assert told == datetime(year, 3, second_sunday + 1, 2, 30, tzinfo=york)


def test_a_save_that_changes_nothing_does_not_start_a_second_import_on_a_repeated_trigger(
    client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    body = json.dumps({"workspaceId": "ws-1", "importsourceId": "src-1"})
    path = urlsplit(schedule.callback_url).path
    first = client.post(path, data=body, content_type="application/json").json()
    services.sync_schedule(schedule=Schedule.objects.get())  # saved again, nothing changed

    repeated = client.post(path, data=body, content_type="application/json")

    assert repeated.json()["executionId"] == first["executionId"]
    assert Execution.objects.count() == 1


def synced_by_an_earlier_release(schedule: Schedule) -> Schedule:
    """What a sync by the release before migration 0028 leaves: no start sent kept."""
    Schedule.objects.filter(pk=schedule.pk).update(start_sent=None, runs_from=None)
    return Schedule.objects.get(pk=schedule.pk)


def test_a_repeated_trigger_after_an_earlier_releases_unchanged_sync_gets_the_same_run(
    client, pushed_source, sandbox
):
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    body = json.dumps({"workspaceId": "ws-1", "importsourceId": "src-1"})
    path = urlsplit(schedule.callback_url).path
    first = client.post(path, data=body, content_type="application/json").json()
    # An earlier release's process saved the schedule unchanged meanwhile (an upgrade).
    Schedule.objects.filter(pk=schedule.pk).update(synced_at=timezone.now())
    synced_by_an_earlier_release(schedule)

    repeated = client.post(path, data=body, content_type="application/json")

    assert repeated.json()["executionId"] == first["executionId"]
    assert Execution.objects.count() == 1


def test_the_next_run_follows_a_timing_an_earlier_releases_process_synced_last(
    pushed_source, sandbox
):
    # The new code synced 12:00 tomorrow; a process of the release before then moved it to
    # a time today, and synced that (its sync keeps no start sent).
    schedule = services.sync_schedule(schedule=make_schedule(pushed_source))
    soon = timezone.now() + timedelta(hours=1)
    moved = soon.replace(second=0, microsecond=0)
    Schedule.objects.filter(pk=schedule.pk).update(
        start_time=moved, timezone="UTC", synced_at=timezone.now()
    )

    shown = services.upcoming_run(Schedule.objects.get())

    assert shown == moved


def test_a_sync_that_read_the_schedule_before_an_edit_leaves_assets_on_the_edit(
    pushed_source, sandbox
):
    # Housekeeping read the schedule; an operator then moved it (saved, and synced).
    services.sync_schedule(schedule=make_schedule(pushed_source))
    read_before = Schedule.objects.get()
    edited = Schedule.objects.get()
    edited.start_time = tomorrow_at(15)
    edited.save()
    services.sync_schedule(schedule=edited)

    services.sync_schedule(schedule=read_before)

    told = datetime.fromisoformat(sandbox.schedules("src-1")[0]["startTime"])
    assert told == tomorrow_at(15)
    assert Schedule.objects.get().in_sync
