"""The dashboard as on-call reads it: what is broken, since when, and where to look."""

import re
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from importer.models import Execution, NotificationChannel, Schedule
from importer.notifications.events import tell_recovered

State = Execution.State
DASHBOARD = "admin:importer_execution_dashboard"


def run(source, state, *, minutes_ago: float, **fields) -> Execution:
    """A run of `source` created, started and (unless open) finished `minutes_ago`."""
    when = timezone.now() - timedelta(minutes=minutes_ago)
    finished = None if state in Execution.OPEN_STATES else when + timedelta(seconds=30)
    execution = Execution.objects.create(
        source=source, state=state, started_at=when, finished_at=finished, **fields
    )
    Execution.objects.filter(pk=execution.pk).update(created_at=when)
    execution.refresh_from_db()
    return execution


def daily_schedule(source, *, first_run_days_ago: int = 5) -> Schedule:
    return Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.DAILY,
        start_time=timezone.now() - timedelta(days=first_run_days_ago),
        timezone="UTC",
    )


def dashboard(client) -> str:
    return client.get(reverse(DASHBOARD)).content.decode()


def status_rows(page: str) -> list[tuple[str, str]]:
    """(source, condition badge) of each row of the sources table, in page order."""
    table = page[page.index('class="dashboard-sources"') :]
    table = table[: table.index("</table>")]
    return re.findall(
        r'<th scope="row"><a [^>]*>([^<]+)</a></th>\s*<td>\s*'
        r'<span class="status-badge [^"]*">([^<]+)</span>',
        table,
    )


def row_of(page: str, name: str) -> str:
    start = page.index(f">{name}</a></th>")
    return page[start : page.index("</tr>", start)]


@pytest.mark.django_db
def test_each_enabled_source_gets_its_condition_worst_first(admin_client, make_source):
    fine = make_source(name="fine")
    run(fine, State.DONE, minutes_ago=60)
    broken = make_source(name="broken")
    run(broken, State.DONE, minutes_ago=300)
    run(broken, State.FAILED, minutes_ago=200, error="source answered 500")
    run(broken, State.FAILED, minutes_ago=100, error="source answered 503")
    overdue = make_source(name="overdue")
    daily_schedule(overdue)
    run(overdue, State.DONE, minutes_ago=3 * 24 * 60)
    busy = make_source(name="busy")
    run(busy, State.DONE, minutes_ago=90)
    run(busy, State.INGESTING, minutes_ago=5)
    stuck = make_source(name="stuck")
    run(stuck, State.INGESTING, minutes_ago=120, stalled_since=timezone.now())
    make_source(name="switched-off", enabled=False)

    page = dashboard(admin_client)

    assert status_rows(page) == [
        ("stuck", "stalled"),
        ("broken", "failing"),
        ("overdue", "stale"),
        ("busy", "running"),
        ("fine", "OK"),
        ("switched-off", "disabled"),
    ]
    assert "(2 in a row)" in row_of(page, "broken")
    assert "its scheduled import was due by" in row_of(page, "overdue")
    assert "makes no progress" in row_of(page, "stuck")
    assert 'scope="rowgroup"' in page and "Disabled (they import nothing until enabled)" in page


@pytest.mark.django_db
def test_a_failing_source_says_since_when_from_the_first_failure_of_its_streak(
    admin_client, make_source, settings
):
    settings.TIME_ZONE = "UTC"
    source = make_source(name="broken")
    run(source, State.FAILED, minutes_ago=500, error="an older streak, ended by a success")
    run(source, State.DONE, minutes_ago=400)
    first = run(source, State.FAILED, minutes_ago=300, error="source answered 500")
    # Cancelled by someone, and a refusal told to nobody: neither ends the streak nor counts.
    run(source, State.CANCELLED, minutes_ago=250)
    run(source, State.REFUSED, minutes_ago=220, alert_wanted=False, error="disabled")
    run(source, State.REFUSED, minutes_ago=200, error="Assets could not be reached")
    latest = run(source, State.FAILED, minutes_ago=100, error="source answered 503\nline two")

    row = row_of(dashboard(admin_client), "broken")

    assert f"since {timezone.localtime(first.finished_at):%Y-%m-%d %H:%M} (3 in a row)" in row
    assert "source answered 503" in row and "line two" not in row
    assert f'href="/admin/importer/execution/{latest.pk}/change/">#{latest.pk}</a>' in row


@pytest.mark.django_db
def test_the_dashboard_and_the_alerts_agree_on_which_run_came_last(admin_client, make_source):
    # A manual import began; a scheduled run was refused meanwhile (its mapping found not
    # valid); the manual import then ended DONE. It ended last: alerts told the source
    # recovered, and the dashboard reads it OK with that import as its latest.
    source = make_source(name="overlap")
    run(source, State.DONE, minutes_ago=600)
    manual = run(source, State.DONE, minutes_ago=60)
    Execution.objects.filter(pk=manual.pk).update(
        finished_at=timezone.now() - timedelta(minutes=10)
    )
    manual.refresh_from_db()
    run(
        source,
        State.REFUSED,
        minutes_ago=30,
        trigger=Execution.Trigger.SCHEDULE,
        error="The mapping of 'overlap' is not valid",
    )

    recovered = tell_recovered(source=source, done=manual)
    row = row_of(dashboard(admin_client), "overlap")

    assert recovered is not None and recovered.details["failed_runs"] == 1
    assert '<span class="status-badge status-ok">OK</span>' in row
    assert f'href="/admin/importer/execution/{manual.pk}/change/">#{manual.pk}</a> done' in row


@pytest.mark.django_db
def test_a_failing_sources_error_line_has_no_secret(admin_client, make_source):
    source = make_source(name="broken", source_token="tok-0123456789abcdef-secret")
    run(
        source,
        State.FAILED,
        minutes_ago=10,
        error="source answered 401 to token tok-0123456789abcdef-secret",
    )

    row = row_of(dashboard(admin_client), "broken")

    assert "source answered 401" in row
    assert "tok-0123456789abcdef-secret" not in row


@pytest.mark.django_db
def test_a_source_that_imported_after_failing_reads_ok_with_its_last_success(
    admin_client, make_source
):
    source = make_source(name="healed")
    run(source, State.FAILED, minutes_ago=100, error="source answered 500")
    done = run(source, State.DONE, minutes_ago=50, records_submitted=1200)

    row = row_of(dashboard(admin_client), "healed")

    assert '<span class="status-badge status-ok">OK</span>' in row
    assert f"/admin/importer/execution/{done.pk}/change/" in row
    assert "1,200 records sent in 30 s" in row


@pytest.mark.django_db
def test_latest_failures_say_which_sources_recovered_since(admin_client, make_source):
    healed = make_source(name="healed")
    old = run(healed, State.FAILED, minutes_ago=100, error="source answered 500")
    done = run(healed, State.DONE, minutes_ago=50)
    broken = make_source(name="broken")
    still = run(broken, State.FAILED, minutes_ago=30, error="source answered 503")

    page = dashboard(admin_client)
    failures = page[page.index('class="dashboard-failures"') :]

    recovered = failures[failures.index(f">#{old.pk}</a>") :]
    recovered = recovered[: recovered.index("</tr>")]
    assert ">recovered</span>" in recovered
    assert f'href="/admin/importer/execution/{done.pk}/change/">#{done.pk}</a> done' in recovered
    current = failures[failures.index(f">#{still.pk}</a>") :]
    current = current[: current.index("</tr>")]
    assert ">not recovered</span>" in current


@pytest.mark.django_db
def test_a_failing_alert_channel_gets_a_line_with_a_link_to_it(admin_client):
    hook = "https://chat.example.com/hooks/T0123456789abcdefSECRET"
    failing = NotificationChannel.objects.create(
        name="on-call chat",
        kind=NotificationChannel.Kind.WEBHOOK,
        webhook_url=hook,
        last_success_at=timezone.now() - timedelta(days=1),
        last_error_at=timezone.now(),
        last_error=f"POST {hook} answered 404",
    )
    NotificationChannel.objects.create(
        name="mail",
        last_error_at=timezone.now() - timedelta(days=1),
        last_success_at=timezone.now(),
        last_error="refused, since fixed",
    )

    page = dashboard(admin_client)

    channels = page[page.index("Alert channels failing") :]
    channels = channels[: channels.index("</ul>")]
    assert f'href="/admin/importer/notificationchannel/{failing.pk}/change/">on-call chat</a>' in (
        channels
    )
    assert "answered 404" in channels and "SECRET" not in channels
    assert "mail" not in channels


@pytest.mark.django_db
def test_the_dashboard_draws_no_chart_that_mixes_the_runs_of_all_sources(admin_client, make_source):
    source = make_source()
    run(source, State.DONE, minutes_ago=5, records_submitted=200_000)

    page = dashboard(admin_client)

    assert page.count('class="dashboard-chart"') == 1
    assert "Records per run" not in page and "Duration per run" not in page


def history(make_source, *, prefix: str, sources: int, runs_each: int) -> None:
    """Sources in every condition, each with `runs_each` runs behind its latest."""
    conditions = ["ok", "failing", "stale", "running", "stalled"]
    for number in range(sources):
        condition = conditions[number % len(conditions)]
        source = make_source(name=f"{prefix}-{number}")
        rows = [
            Execution(
                source=source,
                state=State.DONE if index % 3 else State.FAILED,
                started_at=timezone.now() - timedelta(days=3, minutes=index),
                finished_at=timezone.now() - timedelta(days=3, minutes=index),
                error="source answered 500",
            )
            for index in range(runs_each)
        ]
        Execution.objects.bulk_create(rows)
        if condition == "failing":
            run(source, State.FAILED, minutes_ago=5, error="source answered 503")
        elif condition == "stale":
            daily_schedule(source)
        elif condition in ("running", "stalled"):
            stalled = timezone.now() if condition == "stalled" else None
            run(source, State.INGESTING, minutes_ago=5, stalled_since=stalled)
        else:
            run(source, State.DONE, minutes_ago=5)
    NotificationChannel.objects.create(
        name=f"{prefix}-chat", last_error_at=timezone.now(), last_error="refused"
    )


def queries_of_the_dashboard(client, *, rows: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(DASHBOARD))
    assert response.content.decode().count('<tr class="source-status ') == rows
    return len(queries)


@pytest.mark.django_db
def test_the_dashboard_takes_the_same_queries_however_long_the_history(admin_client, make_source):
    admin_client.get(reverse(DASHBOARD))  # the session and user, read once
    history(make_source, prefix="short", sources=5, runs_each=2)
    few = queries_of_the_dashboard(admin_client, rows=5)

    history(make_source, prefix="long", sources=25, runs_each=200)
    many = queries_of_the_dashboard(admin_client, rows=30)

    assert many == few
    assert many <= 10


@pytest.fixture
def viewer_client(client, django_user_model):
    """Staff in "Import viewers": the history and the alerts, not the sources or channels."""
    from django.contrib.auth.models import Group

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Import viewers"))
    client.force_login(viewer)
    return client


@pytest.mark.django_db
def test_viewers_see_sources_and_channels_named_without_links_to_a_403(viewer_client, make_source):
    source = make_source()
    run(source, State.FAILED, minutes_ago=5)
    make_source(name="retired", import_source_id="src-2", enabled=False)
    channel = NotificationChannel.objects.create(
        name="on-call chat",
        kind=NotificationChannel.Kind.WEBHOOK,
        webhook_url="https://chat.example.com/hooks/T0123",
        last_error_at=timezone.now(),
        last_error="answered 404",
    )

    page = dashboard(viewer_client)

    assert '<th scope="row">inventory</th>' in page
    assert '<th scope="row">retired</th>' in page and "on-call chat" in page
    assert "/admin/importer/importsource/" not in page
    assert f"/admin/importer/notificationchannel/{channel.pk}/" not in page


@pytest.mark.django_db
def test_viewers_are_not_offered_to_add_a_source(viewer_client):
    page = dashboard(viewer_client)

    assert "No enabled source." in page
    assert reverse("admin:importer_importsource_add") not in page


@pytest.mark.django_db
def test_latest_failures_say_when_as_the_rest_of_the_page_does(admin_client, make_source):
    failed = run(make_source(), State.FAILED, minutes_ago=10, error="source answered 500")
    Execution.objects.filter(pk=failed.pk).update(
        created_at=timezone.make_aware(datetime(2025, 3, 7, 14, 5, 9))
    )

    page = dashboard(admin_client)

    failures = page[page.index('class="dashboard-failures"') :]
    row = failures[failures.index(f">#{failed.pk}</a>") :]
    assert "<td>2025-03-07 14:05</td>" in row[: row.index("</tr>")]
