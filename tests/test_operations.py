"""Operations: the health endpoint, structured logs, history retention, admin pages at scale."""

import json
import logging
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_q.models import Task

from importer.logs import JsonFormatter
from importer.models import ChunkJob, Execution
from importer.services.chunks import SubmitVerdict, submit_verdict
from tests.conftest import ROOT, wait_for


def housekeeping_ran(minutes_ago: float) -> None:
    stopped = timezone.now() - timedelta(minutes=minutes_ago)
    Task.objects.create(
        id=f"housekeeping-{minutes_ago}",
        name="housekeeping",
        func="importer.tasks.look_after_imports",
        started=stopped,
        stopped=stopped,
        success=True,
    )


@pytest.mark.django_db
def test_health_is_ok_when_database_broker_and_cluster_are_alive(client):
    housekeeping_ran(minutes_ago=0.5)

    response = client.get(reverse("importer:health"))

    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert "last_successful_import" not in response.json()  # not for anonymous callers


@pytest.mark.django_db
def test_health_of_a_database_never_migrated_says_to_migrate(client, settings, monkeypatch):
    from django.db import connection

    settings.HEALTH_TOKEN = "monitor-token"
    monkeypatch.setattr(connection.introspection, "table_names", lambda *a, **k: [])

    response = client.get(reverse("importer:health"), HTTP_X_HEALTH_TOKEN="monitor-token")

    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database == {
        "ok": False,
        "error": "the database has no tables yet: run `manage.py migrate`",
    }
    # Its sign of life is kept in the database: not said dead for want of it.
    assert response.json()["checks"]["cluster"] == {
        "ok": False,
        "error": "not checked: the database is unavailable",
    }


@pytest.mark.django_db
def test_health_fails_when_no_cluster_has_run_lately(client):
    housekeeping_ran(minutes_ago=30)

    response = client.get(reverse("importer:health"))

    assert response.status_code == 503
    assert "qcluster" in response.json()["checks"]["cluster"]["error"]


def test_health_blames_a_silent_broker_not_the_cluster_and_tells_trusted_callers_where_it_is(
    client, hung_broker, settings
):
    # The cluster's housekeeping stops with the broker: "is qcluster running?" would send the
    # operator to restart workers that are fine.
    settings.HEALTH_TOKEN = "monitor-token"
    housekeeping_ran(minutes_ago=30)

    anonymous = client.get(reverse("importer:health")).json()
    trusted = client.get(reverse("importer:health"), HTTP_X_HEALTH_TOKEN="monitor-token").json()

    cluster = anonymous["checks"]["cluster"]["error"]
    assert "the broker does not answer" in cluster and "qcluster" not in cluster
    assert anonymous["checks"]["broker"]["ok"] is False
    address = hung_broker.replace("redis://:broker-secret@", "").split("?")[0]
    assert address not in json.dumps(anonymous)
    assert f"Redis at {address}, cannot be reached" in trusted["checks"]["broker"]["error"]
    assert "broker-secret" not in json.dumps(trusted)


@pytest.mark.django_db
def test_health_shows_the_last_good_import_per_source_to_trusted_callers(
    client, make_source, settings
):
    settings.HEALTH_TOKEN = "monitoring-token"
    housekeeping_ran(minutes_ago=0.5)
    finished = timezone.now()
    Execution.objects.create(source=make_source(), state="DONE", finished_at=finished)

    report = client.get(reverse("importer:health"), HTTP_X_HEALTH_TOKEN="monitoring-token").json()

    assert report["last_successful_import"] == {"inventory": finished.isoformat()}


def test_json_logs_are_one_object_per_line_with_extra_fields():
    record = logging.makeLogRecord(
        {"name": "importer", "levelname": "WARNING", "msg": "chunk %s failed", "args": (7,)}
    )
    record.execution_id = 42

    line = JsonFormatter().format(record)

    entry = json.loads(line)
    assert entry["message"] == "chunk 7 failed"
    assert entry["level"] == "WARNING"
    assert entry["execution_id"] == 42


@pytest.mark.django_db
def test_retention_deletes_old_finished_history_only(make_source):
    source = make_source()
    old = Execution.objects.create(source=source, state="DONE")
    Execution.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    ChunkJob.objects.create(execution=old, index=0)
    recent = Execution.objects.create(source=source, state="DONE")
    running = Execution.objects.create(source=source, state="INGESTING")
    Execution.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(days=400))

    call_command("prune_history", "--days", "180", stdout=open("/dev/null", "w"))

    assert set(Execution.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not ChunkJob.objects.filter(execution_id=old.pk).exists()


@pytest.mark.django_db
def test_retention_keeps_an_old_import_that_ended_a_moment_ago(make_source):
    # A long import cancelled just now may still have lanes winding down its pages.
    source = make_source()
    ended_now = Execution.objects.create(
        source=source, state="CANCELLED", finished_at=timezone.now()
    )
    Execution.objects.filter(pk=ended_now.pk).update(
        created_at=timezone.now() - timedelta(days=400)
    )

    call_command("prune_history", "--days", "180", stdout=open("/dev/null", "w"))

    assert Execution.objects.filter(pk=ended_now.pk).exists()


@pytest.mark.django_db
def test_a_page_whose_import_was_deleted_meanwhile_is_not_sent(make_source):
    execution = Execution.objects.create(source=make_source(), state="INGESTING")
    chunk = ChunkJob.objects.create(execution=execution, index=0, state="RUNNING")
    Execution.objects.filter(pk=execution.pk).delete()

    assert submit_verdict(chunk) is SubmitVerdict.STOPPED


@pytest.mark.django_db
def test_retention_and_housekeeping_run_as_django_q_schedules():
    from django_q.models import Schedule

    funcs = set(Schedule.objects.values_list("func", flat=True))

    assert {"importer.tasks.look_after_imports", "importer.tasks.prune_history"} <= funcs


def count_queries(django_assert_max_num_queries, client, url, limit):
    with django_assert_max_num_queries(limit):
        response = client.get(url)
    assert response.status_code == 200
    return response


@pytest.mark.django_db
@pytest.mark.parametrize("executions", [20, 300])
def test_the_history_list_takes_the_same_queries_however_long(
    admin_client, django_assert_max_num_queries, executions
):
    call_command(
        "seed_history", executions=executions, chunks=executions * 3, stdout=open("/dev/null", "w")
    )

    count_queries(
        django_assert_max_num_queries,
        admin_client,
        reverse("admin:importer_execution_changelist"),
        limit=12,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("chunks", [5, 500])
def test_an_execution_page_takes_the_same_queries_however_many_chunks(
    admin_client, django_assert_max_num_queries, chunks
):
    call_command("seed_history", executions=1, chunks=chunks, stdout=open("/dev/null", "w"))
    execution = Execution.objects.get()

    page = count_queries(
        django_assert_max_num_queries,
        admin_client,
        reverse("admin:importer_execution_change", args=[execution.pk]),
        limit=10,
    )

    assert page.content.decode().count('class="chunk-row"') == min(chunks, 100)


@pytest.mark.django_db
def test_the_dashboard_shows_rates_charts_and_failures(admin_client, make_source):
    source = make_source()
    started = timezone.now() - timedelta(minutes=5)
    Execution.objects.create(
        source=source,
        state="DONE",
        records_submitted=10,
        started_at=started,
        finished_at=timezone.now(),
    )
    Execution.objects.create(
        source=source, state="FAILED", error="source answered 500", started_at=started
    )
    # Cancelled by someone: neither a success nor a failure.
    Execution.objects.create(source=source, state="CANCELLED", started_at=started)

    page = admin_client.get(reverse("admin:importer_execution_dashboard")).content.decode()

    assert "50.0 %" in page
    assert page.count('class="dashboard-chart"') == 1
    assert "source answered 500" in page
    # Each chart's numbers, for who reaches no tooltip (a keyboard, a screen reader).
    assert page.count('<details class="chart-figures"><summary>The figures</summary>') == 1
    assert '<th scope="col">done</th>' in page


@pytest.mark.django_db
def test_the_dashboard_stacks_outcomes_per_day_with_axes_and_a_legend(admin_client, make_source):
    source = make_source()
    # Early today: the day the chart puts them on is this one, even when it ends meanwhile.
    started = timezone.localtime().replace(hour=0, minute=0, second=1, microsecond=0)
    for state in ["DONE"] * 3 + ["FAILED"] * 2 + ["CANCELLED"]:
        Execution.objects.create(
            source=source,
            state=state,
            started_at=started,
            finished_at=started + timedelta(minutes=1),
        )

    page = admin_client.get(reverse("admin:importer_execution_dashboard")).content.decode()

    chart = page[page.index('aria-label="Imports per day, by outcome"') :]
    chart = chart[: chart.index("</figure>")]
    today = started.strftime("%d %b")
    assert f"<title>{today}: 3 done</title>" in chart
    assert f"<title>{today}: 2 failed or refused</title>" in chart
    assert f"<title>{today}: 1 cancelled</title>" in chart
    assert ">imports</text>" in chart and ">day (last 30 days)</text>" in chart
    assert [
        label
        for label in ("done", "failed or refused", "cancelled")
        if f"</span>{label}</li>" in chart
    ] == [
        "done",
        "failed or refused",
        "cancelled",
    ]


@pytest.mark.django_db
def test_the_date_hierarchy_offers_years_then_months_without_scanning(admin_client, make_source):
    source = make_source()
    for year in (2024, 2026):
        execution = Execution.objects.create(source=source, state="DONE")
        Execution.objects.filter(pk=execution.pk).update(
            created_at=timezone.now().replace(year=year, month=3, day=10)
        )
    url = reverse("admin:importer_execution_changelist")

    years = admin_client.get(url).content.decode()
    months = admin_client.get(url + "?created_at__year=2026").content.decode()

    assert all(f"created_at__year={year}" in years for year in (2024, 2025, 2026))
    assert "created_at__month=3" in months
    assert "created_at__month=4" not in months


@pytest.mark.django_db
def test_the_admin_home_page_leads_to_the_dashboard(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert reverse("admin:importer_execution_dashboard") in page


def test_the_readme_tells_the_defaults_the_settings_have():
    # Each number and switch in the README's settings table is what a fresh install runs
    # with: the settings read in a process whose environment sets none of them.
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    rows = re.findall(
        r"^\| `([A-Z][A-Z0-9_]+)` \| `(-?[0-9.]+|true|false)` \|",
        (root / "README.md").read_text(),
        re.MULTILINE,
    )
    names = [name for name, _ in rows if name != "DEBUG"]
    script = (
        "import environ, json; environ.Env.read_env = lambda *a, **k: None; "  # no .env
        "import assets_sync.settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {names!r}}}))"
    )
    environment = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "x" * 50}
    answer = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=environment, capture_output=True, text=True
    )

    assert answer.returncode == 0, answer.stderr
    actual = json.loads(answer.stdout)
    told = dict(rows)
    wrong = {
        name: (told[name], value)
        for name, value in actual.items()
        if value is not None
        and (str(value).lower() if isinstance(value, bool) else float(value))
        != (told[name] if told[name] in ("true", "false") else float(told[name]))
    }
    assert wrong == {}, "README default, setting's default"


def test_the_upgrade_notes_name_the_last_migration_and_the_release_before_can_insert():
    # "Upgrading" names the migrations an upgrade applies and promises that processes of the
    # release before go on inserting rows while `migrate` runs and until they are restarted:
    # every column those migrations add may be empty or has a default in the database.
    import re
    from pathlib import Path

    from django.db import migrations
    from django.db.migrations.loader import MigrationLoader
    from django.db.models import NOT_PROVIDED

    root = Path(__file__).resolve().parent.parent
    upgrading = (root / "README.md").read_text().split("### Upgrading", 1)[1]
    first, last = re.search(r"\(migrations (\d{4}) to (\d{4})", upgrading).groups()
    found = MigrationLoader(None).disk_migrations
    ours = sorted(name for app, name in found if app == "importer")
    assert ours[-1].startswith(last), "the README's upgrade notes end before the last migration"

    needs_a_value = [
        f"{name}: {operation.model_name}.{operation.name}"
        for (app, name), migration in found.items()
        if app == "importer" and name[:4] >= first
        for operation in migration.operations
        if isinstance(operation, migrations.AddField)
        and not operation.field.null
        and operation.field.db_default is NOT_PROVIDED
        and not operation.field.many_to_many
    ]
    assert needs_a_value == []


@pytest.mark.django_db
def test_migrate_warns_when_the_static_files_were_collected_by_an_earlier_release(
    settings, tmp_path
):
    # With DEBUG off, every admin page names importer/messages_focus.js: a STATIC_ROOT that an
    # earlier release's collectstatic filled lacks it, and the pages fail with a 500.
    from io import StringIO

    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())
    del manifest["paths"]["importer/messages_focus.js"]
    (tmp_path / "staticfiles.json").write_text(json.dumps(manifest))
    settings.STATIC_ROOT = tmp_path  # the storage reads the manifest again

    told = StringIO()
    call_command("migrate", verbosity=0, skip_checks=False, stdout=StringIO(), stderr=told)

    assert "importer.W002" in told.getvalue()
    assert "importer/messages_focus.js missing" in told.getvalue()
    assert "collectstatic --noinput" in told.getvalue()


@pytest.mark.django_db
def test_migrate_says_nothing_of_static_files_this_release_collected(settings, tmp_path):
    from io import StringIO

    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)

    told = StringIO()
    call_command("migrate", verbosity=0, skip_checks=False, stdout=StringIO(), stderr=told)

    assert "importer.W002" not in told.getvalue()


def settings_read_in_a_process(*, then: str = "", **environment: str):
    """`assets_sync.settings` imported by a new process with only `environment` (no .env);
    it prints the settings named by PRINT, then runs `then` (Python, Django set up)."""
    import subprocess
    import sys
    from pathlib import Path

    shown = environment.pop("PRINT", "")
    script = (
        "import environ; environ.Env.read_env = lambda *a, **k: None; "  # no .env
        "import assets_sync.settings as s" + (f"; print(s.{shown})" if shown else "")
    )
    if then:
        script += "; import django; django.setup(); " + then
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env={
            "PATH": "/usr/bin:/bin",
            "SECRET_KEY": "x" * 50,
            "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_database_address_that_never_answers_fails_a_connection_in_seconds():
    # A host down behind a firewall that drops packets, or a server that hangs: without a
    # limit, a worker waits on it until its task is killed.
    import socket

    with socket.socket() as silent:  # takes the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        answer = settings_read_in_a_process(
            DATABASE_URL=f"postgres://app@127.0.0.1:{silent.getsockname()[1]}/app",
            DATABASE_CONNECT_TIMEOUT="1",
            then="from django.db import connection; connection.ensure_connection()",
        )

    assert answer.returncode != 0
    assert "timeout expired" in answer.stderr.splitlines()[-1], answer.stderr


@pytest.mark.parametrize("written, level", [("warn", "WARNING"), ("FATAL", "CRITICAL")])
def test_the_older_names_of_log_levels_are_still_taken(written, level):
    # Earlier releases took them: an upgrade must not stop every process on its old .env.
    answer = settings_read_in_a_process(LOG_LEVEL=written, PRINT="LOG_LEVEL")

    assert answer.stdout.strip() == level, answer.stderr


@pytest.mark.parametrize(
    "setting, told",
    [
        ("HTTP_TIMEOUT=5m", "The setting HTTP_TIMEOUT='5m' is not a number"),
        ("CHUNK_MAX_ATTEMPTS=2.5", "The setting CHUNK_MAX_ATTEMPTS='2.5' is not a whole number"),
        ("DEBUG=ture", "The setting DEBUG='ture' is no switch: write true or false"),
        ("LOG_FORMAT=jsn", "The setting LOG_FORMAT='jsn' is neither plain nor json"),
        ("IMPORT_SOURCE_PLUGINS=notjson", "The setting IMPORT_SOURCE_PLUGINS='notjson' cannot"),
        ("DATABASE_URL=nonsense", "The setting DATABASE_URL cannot be read: give postgres://"),
    ],
)
def test_a_setting_written_wrong_stops_the_start_naming_it(setting, told):
    # Not read as something else ("5m" as 5 seconds, "ture" as false): refused, by name.
    name, _, value = setting.partition("=")

    answer = settings_read_in_a_process(**{name: value})

    assert answer.returncode != 0
    assert told in answer.stderr.splitlines()[-1]


def test_how_long_an_admin_sign_in_lasts_is_read_from_the_environment():
    answer = settings_read_in_a_process(
        SESSION_COOKIE_AGE="28800",
        SESSION_EXPIRE_AT_BROWSER_CLOSE="true",
        PRINT="SESSION_COOKIE_AGE, s.SESSION_EXPIRE_AT_BROWSER_CLOSE",
    )

    assert answer.stdout.split() == ["28800", "True"], answer.stderr


def test_a_sign_in_too_short_to_use_the_admin_stops_the_start():
    answer = settings_read_in_a_process(SESSION_COOKIE_AGE="0")

    assert answer.returncode != 0
    assert "SESSION_COOKIE_AGE must be at least 60" in answer.stderr.splitlines()[-1]


def test_smtps_in_the_email_url_is_tls_from_the_start_as_on_port_465():
    # Read as STARTTLS, every alert would wait for a greeting such a server never sends.
    answer = settings_read_in_a_process(
        EMAIL_URL="smtps://alerts:secret@smtp.example.com:465",
        PRINT="EMAIL_USE_SSL, s.EMAIL_USE_TLS, s.EMAIL_PORT",
    )

    assert answer.stdout.split() == ["True", "False", "465"], answer.stderr


def test_a_health_probe_over_plain_http_is_answered_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/health/").status_code in (200, 503)
    assert client.get("/admin/").status_code == 301


@pytest.mark.django_db
def test_a_broker_address_that_cannot_be_read_keeps_its_password_off_health_and_its_log(
    client, settings, monkeypatch, caplog
):
    # A '/' in the password ends the host where the URL is read: redis-py's error quotes
    # the password as the port it could not read.
    from django_q.conf import Conf

    url = "redis://:S3cr3tPart/xyz@127.0.0.1:6379/5"
    settings.REDIS_URL = url
    settings.HEALTH_TOKEN = "monitoring-token"
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", url)

    with caplog.at_level(logging.WARNING, logger="importer.health"):
        answer = client.get(reverse("importer:health"), HTTP_X_HEALTH_TOKEN="monitoring-token")

    broker = answer.json()["checks"]["broker"]
    assert broker["ok"] is False
    assert "REDIS_URL cannot be read as a Redis address" in broker["error"]
    assert "S3cr3tPart" not in answer.content.decode()
    assert "REDIS_URL cannot be read" in caplog.text and "S3cr3tPart" not in caplog.text


def test_a_cluster_started_with_a_broker_address_that_cannot_be_read_never_quotes_it():
    # redis-py's error, in the traceback of a cluster that could not start, quoted the
    # password; the start now stops before, saying what to mend.
    answer = settings_read_in_a_process(
        then="from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'qcluster'])",
        REDIS_URL="redis://:S3cr3tPart/xyz@127.0.0.1:6379/5",
    )

    output = answer.stdout + answer.stderr
    assert answer.returncode != 0
    assert "importer.E002" in output and "REDIS_URL cannot be read as a Redis address" in output
    assert "S3cr3tPart" not in output


@pytest.mark.parametrize(
    "setting",
    [
        "DATABASE_URL=postgres://sync:S3cr3tPart/xyz@db.internal:5432/assets",
        "DATABASE_URL=postgres://sync:S3cr3tPart?xyz@db.internal:5432/assets",
        "EMAIL_URL=smtp://alerts:S3cr3tPart/xyz@mail.internal:587",
    ],
)
def test_an_address_that_cannot_be_read_stops_the_start_without_quoting_its_password(setting):
    # A '/' or '?' in the password ends the host: the URL reader's error quoted the
    # password as the port it could not read, in the traceback of every start.
    name, _, value = setting.partition("=")

    answer = settings_read_in_a_process(**{name: value})

    assert answer.returncode != 0
    assert f"The setting {name} cannot be read" in answer.stderr.splitlines()[-1]
    assert "S3cr3tPart" not in answer.stdout + answer.stderr


def test_gunicorns_access_log_keeps_the_webtrigger_token_out(tmp_path):
    # The README's production command, with an access log: Assets calls the webtrigger at
    # the address it was given, the token in its path.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    written = tmp_path / "gunicorn.log"
    with open(written, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "assets_sync.wsgi", "--workers", "1"]
            + ["--bind", f"127.0.0.1:{port}", "--access-logfile", "-"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/webtrigger/3/Trigger-T0ken-6620/?x=1"
    try:
        status = wait_for(lambda: _status_or_none(url), timeout=30, message="gunicorn is silent")
        # Django's own warning about the GET comes before gunicorn's access line.
        logged = wait_for(lambda: 'HTTP/1.1" 405' in written.read_text() and written.read_text())
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert status == 405  # a GET runs nothing, and needs no database
    assert '"GET /webtrigger/3/***/?x=1 HTTP/1.1" 405' in logged
    assert "Trigger-T0ken-6620" not in logged


def _status_or_none(url: str) -> int | None:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.ConnectionError:
        return None
