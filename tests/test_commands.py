"""Command-line interfaces: sources as code and starting an import from a terminal."""

import io
import json
import logging
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Task

from importer.config_file import source_to_config
from importer.management.commands.demo import demo_source_config
from importer.models import Execution, ImportSource, NotificationChannel
from tests.conftest import SANDBOX_TOKEN


@pytest.fixture(autouse=True)
def site_wide_alert_emails(settings):
    """The e-mail channels of these files name no recipients: they write to the site's list."""
    settings.ALERT_EMAILS = ["cmdb-team@example.com"]


def source_entry(sandbox, inventory, mapping, **overrides) -> dict:
    entry = {
        "name": "laptops",
        "enabled": True,
        "assets": {
            "base_url": sandbox.base_url,
            "workspace_id": "ws-1",
            "import_source_id": "src-1",
            "token": SANDBOX_TOKEN,
        },
        "source": {
            "kind": "rest",
            "url": f"{inventory.base_url}/api/computers",
            "records": "items",
            "pagination": {"style": "page", "page_size": 40},
            "auth": {"kind": "bearer", "token": "inventory-token"},
        },
        "mapping": mapping,
    }
    entry.update(overrides)
    return entry


def write(tmp_path, entries) -> str:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(entries))
    return str(path)


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_import_sources_creates_a_source_and_says_so(tmp_path, sandbox, inventory, demo_mapping):
    path = write(tmp_path, [source_entry(sandbox, inventory, demo_mapping)])

    output = run("import_sources", path)

    source = ImportSource.objects.get(name="laptops")
    assert output.strip() == "created laptops; mapping pushed to Assets"
    assert source.pagination == "page"
    assert source.page_size == 40
    assert source.source_auth == "bearer"
    assert source.source_token == "inventory-token"
    assert source.mapping == demo_mapping


@pytest.mark.django_db
def test_import_sources_reports_only_what_changed(tmp_path, sandbox, inventory, demo_mapping):
    entry = source_entry(sandbox, inventory, demo_mapping)
    run("import_sources", write(tmp_path, [entry]))
    entry["source"]["pagination"]["page_size"] = 10
    del entry["assets"]["token"]  # absent secrets keep their stored value

    output = run("import_sources", write(tmp_path, [entry]))

    assert output.strip() == "updated laptops: page_size"
    assert ImportSource.objects.get(name="laptops").assets_token == SANDBOX_TOKEN
    assert run("import_sources", write(tmp_path, [entry])).strip() == "unchanged laptops"


@pytest.mark.django_db
def test_import_sources_sees_no_change_in_secrets_it_was_given_before(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["url"] = (
        inventory.base_url.replace("http://", "http://reader:url-pass-1@") + "/api/computers"
    )
    entry["source"]["auth"] = {"kind": "api_key_header", "key_name": "X-Api-Key", "key": "k-1"}
    run("import_sources", write(tmp_path, [entry]))

    # The same URL with its credentials, the same tokens: nothing to report.
    assert run("import_sources", write(tmp_path, [entry])).strip() == "unchanged laptops"
    entry["assets"]["token"] = "a-new-token-1"
    assert run("import_sources", write(tmp_path, [entry])).strip() == (
        "updated laptops: assets_token (secret)"
    )


@pytest.mark.django_db
def test_import_sources_reads_secrets_a_file_names_from_the_environment_and_from_files(
    tmp_path, sandbox, inventory, demo_mapping, monkeypatch, settings
):
    # A file kept in version control names its secrets; the host that applies it holds them.
    settings.SECRET_FILES_DIR = tmp_path
    monkeypatch.setenv("ASSETS_SYNC_LAPTOPS_TOKEN", SANDBOX_TOKEN)
    (tmp_path / "inventory_token").write_text("inventory-token-from-file\n")
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["assets"]["token"] = {"$env": "ASSETS_SYNC_LAPTOPS_TOKEN"}
    entry["source"]["auth"]["token"] = {"$file": "inventory_token"}
    entry["source"]["headers"] = {"X-Tenant-Key": {"$env": "ASSETS_SYNC_LAPTOPS_TOKEN"}}
    entry["source"]["secret_params"] = "appid"
    entry["source"]["params"] = {"appid": {"$file": str(tmp_path / "inventory_token")}}

    output = run("import_sources", write(tmp_path, [entry]))

    source = ImportSource.objects.get(name="laptops")
    assert output.strip() == "created laptops; mapping pushed to Assets"  # Assets took the token
    assert source.assets_token == SANDBOX_TOKEN
    assert source.source_token == "inventory-token-from-file"
    assert source.extra_headers == {"X-Tenant-Key": SANDBOX_TOKEN}
    assert source.extra_params == {"appid": "inventory-token-from-file"}
    assert run("import_sources", write(tmp_path, [entry])).strip() == "unchanged laptops"
    exported = run("export_sources")
    assert SANDBOX_TOKEN not in exported and "inventory-token-from-file" not in exported


@pytest.mark.django_db
def test_a_secret_reference_that_gives_no_value_changes_nothing_and_names_its_place(
    tmp_path, sandbox, inventory, demo_mapping, monkeypatch, settings
):
    settings.SECRET_FILES_DIR = tmp_path / "secrets"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "elsewhere").write_text("not for this file\n")
    monkeypatch.delenv("ASSETS_SYNC_LAPTOPS_TOKEN", raising=False)
    monkeypatch.setenv("ASSETS_SYNC_EMPTY", "")
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["assets"]["token"] = {"$env": "ASSETS_SYNC_LAPTOPS_TOKEN"}
    entry["source"]["auth"]["token"] = {"$file": "missing"}
    entry["source"]["headers"] = {
        "X-Api-Key": {"$env": "SECRET_KEY"},  # the app's own: never reachable from a file
        "X-Tenant": {"$file": "../elsewhere"},
        "X-Empty": {"$env": "ASSETS_SYNC_EMPTY"},
    }
    entry["source"]["params"] = {"status": {"$env": "ASSETS_SYNC_EMPTY"}}  # shown as it is

    with pytest.raises(CommandError) as refused:
        run("import_sources", write(tmp_path, [entry]))

    folder = (tmp_path / "secrets").resolve()
    assert str(refused.value).splitlines() == [
        "Nothing was changed:",
        "source 1 (laptops): assets.token: the environment variable ASSETS_SYNC_LAPTOPS_TOKEN "
        "is not set",
        f"source 1 (laptops): source.auth.token: no file missing in {folder}",
        'source 1 (laptops): source.headers.X-Api-Key: "$env" must name an environment '
        "variable that starts with ASSETS_SYNC_ (letters, digits, _)",
        f"source 1 (laptops): source.headers.X-Tenant: ../elsewhere is not in "
        f"SECRET_FILES_DIR ({folder}): secret files are read there only",
        "source 1 (laptops): source.headers.X-Empty: the environment variable "
        "ASSETS_SYNC_EMPTY is empty",
        "source 1 (laptops): source.params.status: a value given by reference must be a "
        "secret, and this one would be shown and exported as it is: give it here, or name it "
        "secret (a parameter in source.secret_params)",
    ]
    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_a_mapping_is_kept_as_the_file_writes_it_objects_shaped_as_references_and_all(
    tmp_path, sandbox, inventory, demo_mapping, monkeypatch
):
    # The Assets document is Assets' own: an object shaped as a reference is no secret there.
    monkeypatch.delenv("ASSETS_SYNC_NOT_A_SECRET", raising=False)
    mapping = json.loads(json.dumps(demo_mapping))
    mapping["schema"]["objectSchema"]["description"] = {"$env": "ASSETS_SYNC_NOT_A_SECRET"}

    run("import_sources", write(tmp_path, [source_entry(sandbox, inventory, mapping)]), "--no-push")

    stored = ImportSource.objects.get(name="laptops").mapping
    assert stored["schema"]["objectSchema"]["description"] == {"$env": "ASSETS_SYNC_NOT_A_SECRET"}


@pytest.mark.django_db
def test_import_sources_applies_the_admin_rules_and_changes_nothing_on_error(
    tmp_path, sandbox, inventory, demo_mapping
):
    good = source_entry(sandbox, inventory, demo_mapping, name="good")
    bad_mapping = json.loads(json.dumps(demo_mapping))
    bad_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][0]["externalIdPart"] = (
        False
    )
    bad = source_entry(sandbox, inventory, bad_mapping, name="bad")

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, [good, bad]))

    assert "source 2 (bad): mapping: mapping.objectTypeMappings[0].attributesMapping" in str(
        error.value
    )
    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_export_leaves_secrets_out_unless_asked(tmp_path, sandbox, inventory, demo_mapping):
    run("import_sources", write(tmp_path, [source_entry(sandbox, inventory, demo_mapping)]))

    plain = run("export_sources")
    with_secrets = json.loads(run("export_sources", "--with-secrets"))

    assert SANDBOX_TOKEN not in plain
    assert "inventory-token" not in plain
    assert with_secrets["sources"][0]["assets"]["token"] == SANDBOX_TOKEN
    assert with_secrets["sources"][0]["source"]["auth"]["token"] == "inventory-token"


@pytest.mark.django_db
def test_an_exported_file_imports_back_unchanged(tmp_path, sandbox, inventory, demo_mapping):
    run("import_sources", write(tmp_path, [source_entry(sandbox, inventory, demo_mapping)]))
    exported = json.loads(run("export_sources", "--with-secrets"))

    assert run("import_sources", write(tmp_path, exported), "--no-push").strip() == (
        "unchanged laptops"
    )


@pytest.mark.django_db(transaction=True)
def test_run_import_pushes_the_mapping_and_waits_for_done(make_source, sandbox):
    make_source(name="inventory")

    output = run("run_import", "inventory", "--wait", "--poll", "0.01")

    execution = Execution.objects.get()
    assert "Assets accepted the mapping" in output
    assert output.strip().endswith("Done: 120 records in 5 pages.")
    # Not a terminal: a line per state of the import, no carriage returns.
    assert "\r" not in output
    assert execution.state == Execution.State.DONE
    assert sandbox.mapping("ws-1", "src-1") is not None


@pytest.mark.django_db(transaction=True)
def test_run_import_wait_says_when_no_answer_told_a_total_at_the_total_path(make_source, sandbox):
    make_source(name="inventory", total_path="meta.totl")

    output = run("run_import", "inventory", "--wait", "--poll", "0.01")

    assert "Done: 120 records in 5 pages." in output
    assert output.strip().endswith(
        "Note: Total not checked: no answer of the source told a total at 'meta.totl' (its "
        "total path), so the records received (120) were not checked against one. Set the "
        "total path to where the answers tell their total, or clear it."
    )


@pytest.mark.django_db(transaction=True)
def test_run_import_wait_has_no_note_when_the_total_was_checked(make_source, sandbox):
    make_source(name="inventory", total_path="total")

    output = run("run_import", "inventory", "--wait", "--poll", "0.01")

    assert output.strip().endswith("Done: 120 records in 5 pages.")
    assert "Note:" not in output


@pytest.mark.django_db(transaction=True)
def test_an_import_run_from_the_command_line_says_so_and_names_who_ran_it(
    make_source, sandbox, django_user_model, admin_client, caplog
):
    make_source(name="inventory")
    django_user_model.objects.create_user("ops-robot")

    with caplog.at_level(logging.INFO):
        run("run_import", "inventory", "--user", "ops-robot", "--wait", "--poll", "0.01")

    # Its progress is not broken up by a log line for every task it queued.
    assert not [record for record in caplog.records if record.name == "django-q"]

    execution = Execution.objects.get()
    assert execution.trigger == Execution.Trigger.COMMAND
    assert execution.triggered_by.username == "ops-robot"
    listing = admin_client.get("/admin/importer/execution/").content.decode()
    assert "command line<br><small>ops-robot</small>" in listing
    # The source's history tells it as the admin's start does, the push first.
    history = LogEntry.objects.filter(user__username="ops-robot").order_by("pk")
    assert [entry.change_message for entry in history] == [
        "Pushed the mapping to Assets.",
        f"Started import (execution #{execution.pk}) from the command line.",
    ]
    assert {entry.object_repr for entry in history} == {"inventory"}


@pytest.mark.django_db(transaction=True)
def test_run_import_says_how_many_records_were_left_out_and_where_to_see_why(
    make_source, sandbox, inventory, demo_mapping
):
    inventory.faults.add(
        method="GET",
        path_contains="offset=0",
        status=200,
        times=1,
        body='{"items": [{"hostname": "no-serial"}, {"serial": "SN-1", "hostname": "a"}]}',
    )
    make_source(name="inventory", mapping=demo_mapping)

    output = run("run_import", "inventory", "--wait", "--poll", "0.01")

    execution = Execution.objects.get()
    assert "1 left out (without an identity, or with a value that does not convert)" in output
    assert f"/admin/importer/execution/{execution.pk}/change/" in output


@pytest.mark.django_db
def test_stopping_run_import_wait_leaves_the_import_running_and_says_where_to_follow_it(
    make_source, inventory, monkeypatch
):
    from importer.management.commands import run_import

    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    make_source(name="inventory")

    def ctrl_c(execution):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_import, "progress_of", ctrl_c)
    with pytest.raises(CommandError) as stopped:
        run("run_import", "inventory", "--wait")

    execution = Execution.objects.get()
    assert execution.state == Execution.State.INGESTING
    assert stopped.value.returncode == 130
    assert str(stopped.value).startswith(
        f"Stopped following execution #{execution.pk}; the import goes on."
    )
    assert f"/admin/importer/execution/{execution.pk}/change/" in str(stopped.value)


@pytest.mark.django_db
def test_run_import_refuses_a_user_that_does_not_exist(make_source):
    make_source(name="inventory")

    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("run_import", "inventory", "--user", "nobody")
    assert not Execution.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_run_import_exits_non_zero_when_the_import_fails(make_source, inventory, settings):
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=-1)
    make_source(name="inventory")

    with pytest.raises(CommandError, match="FAILED"):
        run("run_import", "inventory", "--wait", "--poll", "0.01")


@pytest.mark.django_db(transaction=True)
def test_a_failed_import_run_from_the_command_line_says_where_to_see_it(
    make_source, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=-1)
    make_source(name="inventory")

    with pytest.raises(CommandError) as failed:
        run("run_import", "inventory", "--wait", "--poll", "0.01")

    execution = Execution.objects.get()
    assert failed.value.returncode == 1
    assert f"/admin/importer/execution/{execution.pk}/change/" in str(failed.value)


@pytest.mark.django_db(transaction=True)
def test_run_import_counts_a_single_page_as_one_page(make_source, inventory):
    inventory.resize(10)
    make_source(name="inventory")

    output = run("run_import", "inventory", "--wait", "--poll", "0.01")

    assert output.strip().endswith("Done: 10 records in 1 page.")


@pytest.mark.django_db(transaction=True)
def test_run_import_wait_follows_on_when_the_database_drops_its_session(
    make_source, sandbox, monkeypatch
):
    # A database restart or failover while following: the import goes on in the workers,
    # and so does the following, on a new connection.
    from django.db import OperationalError

    from importer.management.commands import run_import

    make_source(name="inventory")
    real_progress_of = run_import.progress_of
    drops = iter([True])

    def progress_of(execution):
        if next(drops, False):
            raise OperationalError("terminating connection due to administrator command")
        return real_progress_of(execution)

    monkeypatch.setattr(run_import, "progress_of", progress_of)
    errors = io.StringIO()

    output = io.StringIO()
    call_command(
        "run_import", "inventory", "--wait", "--poll", "0.01", stdout=output, stderr=errors
    )

    assert "Done: 120 records" in output.getvalue()
    assert "The database connection was lost; following on a new one." in errors.getvalue()


@pytest.mark.django_db
def test_run_import_refused_while_another_import_runs_exits_75_for_try_later(make_source):
    source = make_source(name="inventory")
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)

    with pytest.raises(CommandError, match=f"execution #{running.pk}") as refused:
        run("run_import", "inventory")

    assert refused.value.returncode == 75


@pytest.mark.django_db
def test_a_start_refused_while_assets_writes_the_last_import_does_not_advise_cancelling(
    make_source,
):
    source = make_source(name="inventory")
    Execution.objects.create(source=source, state=Execution.State.PROCESSING)

    with pytest.raises(CommandError) as refused:
        run("run_import", "inventory")

    assert "start again once it has ended (Assets is writing its records)" in str(refused.value)
    assert "cancel" not in str(refused.value)


@pytest.mark.django_db
def test_a_start_assets_refuses_because_its_last_end_is_untold_says_so_and_exits_75(
    pushed_source, sandbox
):
    # The last import failed, and Assets was not told yet (its report answered 503): Assets
    # counts it as running and refuses the next start with 409.
    untold = Execution.objects.create(
        source=pushed_source,
        state=Execution.State.FAILED,
        assets_execution_id="exec-old",
        failure_report_pending=True,
    )
    sandbox.faults.add(method="POST", path_contains="/history/failed", status=503, times=-1)
    sandbox.faults.add(method="POST", path_contains="/executions", status=409, times=1)

    with pytest.raises(CommandError) as refused:
        run("run_import", pushed_source.name)

    assert refused.value.returncode == 75
    assert f"Assets has not yet been told that import #{untold.pk} ended" in str(refused.value)
    assert "start again in a minute" in str(refused.value)


@pytest.mark.django_db
def test_the_demo_source_configuration_is_valid(tmp_path, sandbox, inventory):
    entry = demo_source_config(sandbox_url=sandbox.base_url, inventory_url=inventory.base_url)

    output = run("import_sources", write(tmp_path, [entry]), "--no-push")

    assert output.strip() == "created demo-inventory"


DOCUMENTED_SOURCES = {
    "page": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "pagination": {
            "style": "page",
            "page_size": 50,
            "page_param": "page",
            "limit_param": "per_page",
            "first_page": 1,
        },
    },
    "cursor": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "pagination": {
            "style": "cursor",
            "cursor_param": "cursor",
            "cursor_path": "meta.next_cursor",
        },
    },
    "next_url": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "pagination": {"style": "next_url", "cursor_path": "links.next"},
    },
    "link_header": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "pagination": {"style": "link_header"},
    },
    "total_in_a_header": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "records": "",
        "pagination": {
            "style": "offset",
            "offset_param": "_start",
            "limit_param": "_limit",
            "total_path": "header:X-Total-Count",
        },
    },
    "basic": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "auth": {"kind": "basic", "username": "svc-cmdb", "password": "pw"},
    },
    "api_key_header": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "auth": {"kind": "api_key_header", "key_name": "X-API-Key", "key": "k"},
    },
    "api_key_query": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "auth": {"kind": "api_key_query", "key_name": "api_key", "key": "k"},
    },
    "oauth2": {
        "kind": "rest",
        "url": "https://inventory.example/api",
        "auth": {
            "kind": "oauth2_client_credentials",
            "token_url": "https://idp.example/oauth/token",
            "client_id": "id",
            "client_secret": "secret",
            "scope": "inventory.read",
        },
    },
    "csv": {
        "kind": "csv",
        "url": "https://files.example/laptops.csv",
        "encoding": "latin-1",
        "csv": {"delimiter": ";", "quotechar": '"', "header": True},
        "pagination": {"page_size": 500},
    },
    "csv_no_header": {
        "kind": "csv",
        "url": "https://files.example/laptops.csv",
        "csv": {"header": False, "fieldnames": "serial,hostname,ram"},
    },
    "json": {"kind": "json", "url": "https://files.example/export.json", "records": "data.items"},
    "jsonl": {
        "kind": "jsonl",
        "url": "https://files.example/export.jsonl",
        "pagination": {"page_size": 1000},
    },
    "plugin": {"kind": "plugin", "plugin": "static-list", "options": {"records": []}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(DOCUMENTED_SOURCES))
def test_every_documented_source_kind_imports_and_exports_back(
    tmp_path, sandbox, inventory, demo_mapping, kind
):
    entry = source_entry(sandbox, inventory, demo_mapping, source=DOCUMENTED_SOURCES[kind])

    assert run("import_sources", write(tmp_path, [entry]), "--no-push").strip() == (
        "created laptops"
    )
    exported = json.loads(run("export_sources", "--with-secrets"))
    assert run("import_sources", write(tmp_path, exported), "--no-push").strip() == (
        "unchanged laptops"
    )


@pytest.mark.django_db
def test_a_tab_delimiter_in_the_file_is_kept(tmp_path, sandbox, inventory, demo_mapping):
    tab_separated = {
        "kind": "csv",
        "url": "https://files.example/laptops.tsv",
        "csv": {"delimiter": "\t", "header": True},
    }
    entry = source_entry(sandbox, inventory, demo_mapping, source=tab_separated)

    assert run("import_sources", write(tmp_path, [entry]), "--no-push").strip() == (
        "created laptops"
    )
    assert ImportSource.objects.get().csv_delimiter == "\t"
    assert run("import_sources", write(tmp_path, [entry]), "--no-push").strip() == (
        "unchanged laptops"
    )


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: e.update(assets="x"), "assets: must be an object, not a string"),
        (lambda e: e["source"].update(url=["a"]), "source.url: must be a string, not a list"),
        (
            lambda e: e["source"]["pagination"].update(page_size="40"),
            "source.pagination.page_size: must be a whole number, not a string",
        ),
        (lambda e: e["source"].update(auth=None), "source.auth: must be an object, not null"),
        (
            lambda e: e["source"].update(headers={"X-Tenant": {"id": 1}}),
            "source.headers: the value of 'X-Tenant' must be a string",
        ),
        (lambda e: e.update(enabled="yes"), "enabled: must be true or false, not a string"),
        (lambda e: e.update(schedule=[]), "schedule: must be an object or null, not a list"),
        (
            lambda e: e["source"].update(pagnation={"style": "page"}),
            "source.pagnation: unknown setting",
        ),
    ],
)
def test_import_sources_names_the_place_of_a_wrong_type(
    tmp_path, sandbox, inventory, demo_mapping, change, message
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    change(entry)

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, [entry]))

    assert f"source 1 (laptops): {message}" in str(error.value)
    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_import_sources_names_where_a_document_is_nested_too_deeply(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["mapping"]["deep"] = nested(100)

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, [entry]))

    assert "source 1 (laptops): mapping.deep.a.a.a" in str(error.value)
    assert "nested more than 64 levels deep" in str(error.value)


@pytest.mark.django_db
def test_import_sources_refuses_a_file_nested_beyond_reason(tmp_path):
    path = tmp_path / "sources.json"
    path.write_text("[" * 100_000 + "]" * 100_000)

    with pytest.raises(CommandError) as error:
        run("import_sources", str(path))

    assert "nested too deeply" in str(error.value)


@pytest.mark.django_db
def test_import_sources_pushes_a_changed_mapping_and_syncs_a_new_schedule_in_one_step(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["schedule"] = {"frequency": "DAILY", "start_time": "2099-01-01T02:00:00"}

    output = run("import_sources", write(tmp_path, [entry]))

    assert output.strip() == (
        "created laptops; mapping pushed to Assets; schedule created and synced to Assets"
    )
    assert sandbox.mapping("ws-1", "src-1") == demo_mapping
    assert sandbox.schedules("src-1")[0]["runFrequency"] == "DAILY"
    entry["mapping"]["schema"]["objectSchema"]["name"] = "Renamed"
    assert "mapping pushed to Assets" in run("import_sources", write(tmp_path, [entry]))
    assert sandbox.mapping("ws-1", "src-1")["schema"]["objectSchema"]["name"] == "Renamed"


@pytest.mark.django_db
def test_import_sources_without_push_leaves_the_mapping_local(
    tmp_path, sandbox, inventory, demo_mapping
):
    output = run(
        "import_sources",
        write(tmp_path, [source_entry(sandbox, inventory, demo_mapping)]),
        "--no-push",
    )

    assert output.strip() == "created laptops"
    assert ImportSource.objects.get(name="laptops").mapping_pushed_at is None
    assert sandbox.mapping("ws-1", "src-1") is None


@pytest.mark.django_db
def test_import_sources_fails_naming_the_source_when_assets_refuses_but_keeps_the_local_change(
    tmp_path, sandbox, inventory, demo_mapping
):
    sandbox.faults.add(method="PUT", path_contains="/mapping", status=400, times=-1)
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["schedule"] = {"frequency": "DAILY", "start_time": "2099-01-01T02:00:00"}
    out = io.StringIO()

    with pytest.raises(CommandError) as error:
        call_command("import_sources", write(tmp_path, [entry]), stdout=out)

    message = str(error.value)
    assert "applied here, but Assets does not match it yet" in message
    assert "laptops: mapping NOT pushed:" in message
    assert "laptops: schedule saved here but OUT OF SYNC with Assets" in message
    assert out.getvalue().startswith("created laptops; mapping NOT pushed")
    assert ImportSource.objects.get(name="laptops").mapping == demo_mapping
    assert SANDBOX_TOKEN not in message


@pytest.mark.django_db
def test_push_mapping_pushes_named_sources_and_fails_for_unknown_ones(make_source, sandbox):
    make_source(name="laptops")

    assert run("push_mapping", "laptops").strip() == "laptops: Assets accepted the mapping"
    assert ImportSource.objects.get(name="laptops").mapping_pushed_at is not None
    with pytest.raises(CommandError, match="servers: no source of that name"):
        run("push_mapping", "laptops", "servers")


# --- notification channels as code ---------------------------------------------------------

HOOK_URL = "https://hooks.example/services/T0/B0/hook-url-secret"
HOOK_SECRET = "header-secret-value"


def channels_fixture(make_source) -> None:
    """Two sources; a webhook for both, an e-mail list for one, a site-wide one."""
    laptops = make_source(name="laptops")
    phones = make_source(name="phones", import_source_id="src-phones")
    webhook = NotificationChannel.objects.create(
        name="chat",
        kind=NotificationChannel.Kind.WEBHOOK,
        webhook_url=HOOK_URL,
        secret_header_name="X-Webhook-Token",
        secret_header_value=HOOK_SECRET,
        notify_on_done=True,
    )
    webhook.sources.set([laptops, phones])
    mail = NotificationChannel.objects.create(
        name="phones team", recipients="a@example.com, b@example.com", enabled=False
    )
    mail.sources.set([phones])
    NotificationChannel.objects.create(name="it on call", all_sources=True)


def channel_entry(**overrides) -> dict:
    entry = {"name": "it on call", "kind": "email", "sources": ["inventory"]}
    entry.update(overrides)
    return entry


@pytest.mark.django_db
def test_an_exported_file_recreates_the_channels_on_a_fresh_database(make_source, tmp_path):
    channels_fixture(make_source)
    exported = json.loads(run("export_sources", "--with-secrets"))
    NotificationChannel.objects.all().delete()
    ImportSource.objects.all().delete()

    output = run("import_sources", write(tmp_path, exported), "--no-push")

    assert output.splitlines() == [
        "created laptops",
        "created phones",
        "created channel chat",
        "created channel it on call",
        "created channel phones team",
    ]
    assert json.loads(run("export_sources", "--with-secrets")) == exported
    chat = NotificationChannel.objects.get(name="chat")
    assert chat.webhook_url == HOOK_URL and chat.secret_header_value == HOOK_SECRET
    assert sorted(chat.sources.values_list("name", flat=True)) == ["laptops", "phones"]
    again = run("import_sources", write(tmp_path, exported), "--no-push")
    assert "unchanged channel chat" in again.splitlines()


@pytest.mark.django_db
def test_a_channel_webhook_format_travels_with_the_file(make_source, tmp_path):
    channels_fixture(make_source)
    NotificationChannel.objects.filter(name="chat").update(webhook_format="teams")
    exported = json.loads(run("export_sources"))
    NotificationChannel.objects.filter(name="chat").update(webhook_format="generic")

    output = run("import_sources", write(tmp_path, exported), "--no-push")

    assert "updated channel chat: webhook_format" in output.splitlines()
    assert NotificationChannel.objects.get(name="chat").webhook_format == "teams"


@pytest.mark.django_db
def test_an_export_masks_channel_secrets_and_importing_it_keeps_them(make_source, tmp_path):
    channels_fixture(make_source)

    plain = run("export_sources")
    output = run("import_sources", write(tmp_path, json.loads(plain)), "--no-push")

    assert HOOK_URL not in plain and HOOK_SECRET not in plain
    [chat] = [c for c in json.loads(plain)["notification_channels"] if c["name"] == "chat"]
    assert chat["webhook"] == {
        "url": "***",
        "format": "generic",
        "header_name": "X-Webhook-Token",
        "header_value": "***",
    }
    assert "unchanged channel chat" in output.splitlines()
    chat = NotificationChannel.objects.get(name="chat")
    assert chat.webhook_url == HOOK_URL and chat.secret_header_value == HOOK_SECRET


@pytest.mark.django_db
def test_import_sources_updates_a_channel_and_names_what_changed(make_source, tmp_path):
    channels_fixture(make_source)
    document = json.loads(run("export_sources"))
    [mail] = [c for c in document["notification_channels"] if c["name"] == "phones team"]
    mail.update(enabled=True, recipients=["ops@example.com"], sources=["laptops", "phones"])

    output = run("import_sources", write(tmp_path, document), "--no-push")

    assert "updated channel phones team: enabled, sources, recipients" in output.splitlines()
    channel = NotificationChannel.objects.get(name="phones team")
    assert channel.enabled and channel.recipient_list() == ["ops@example.com"]


@pytest.mark.django_db
def test_export_of_named_sources_carries_only_the_channels_that_concern_them(make_source, tmp_path):
    channels_fixture(make_source)

    document = json.loads(run("export_sources", "laptops"))

    assert [source["name"] for source in document["sources"]] == ["laptops"]
    assert [channel["name"] for channel in document["notification_channels"]] == [
        "chat",
        "it on call",
    ]


@pytest.mark.django_db
def test_import_sources_dry_run_reports_a_new_channel_and_creates_nothing(make_source, tmp_path):
    make_source()
    document = {"notification_channels": [channel_entry()]}

    output = run("import_sources", write(tmp_path, document), "--dry-run")

    assert output.strip() == "(dry run) created channel it on call"
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_a_channel_webhook_url_may_be_named_by_an_environment_variable(
    make_source, tmp_path, monkeypatch
):
    make_source()
    monkeypatch.setenv("ASSETS_SYNC_CHAT_HOOK", "https://hooks.example/T000/B000/chat-hook-secret")
    webhook = {"url": {"$env": "ASSETS_SYNC_CHAT_HOOK"}, "format": "generic"}
    document = {"notification_channels": [channel_entry(kind="webhook", webhook=webhook)]}

    output = run("import_sources", write(tmp_path, document))

    assert output.strip() == "created channel it on call"
    channel = NotificationChannel.objects.get()
    assert channel.webhook_url == "https://hooks.example/T000/B000/chat-hook-secret"


@pytest.mark.django_db
def test_a_channel_may_name_a_source_created_by_the_same_file(
    tmp_path, sandbox, inventory, demo_mapping
):
    document = {
        "sources": [source_entry(sandbox, inventory, demo_mapping)],
        "notification_channels": [channel_entry(sources=["laptops"])],
    }

    output = run("import_sources", write(tmp_path, document), "--no-push")

    assert output.splitlines() == ["created laptops", "created channel it on call"]
    channel = NotificationChannel.objects.get()
    assert list(channel.sources.values_list("name", flat=True)) == ["laptops"]


@pytest.mark.django_db
def test_import_sources_names_an_unknown_source_of_a_channel_and_changes_nothing(
    tmp_path, sandbox, inventory, demo_mapping
):
    document = {
        "sources": [source_entry(sandbox, inventory, demo_mapping)],
        "notification_channels": [channel_entry(sources=["laptops", "phones"])],
    }

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, document))

    assert "channel 1 (it on call): sources: no source named 'phones'" in str(error.value)
    assert not ImportSource.objects.exists()
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_a_channel_naming_a_source_the_file_failed_to_apply_does_not_call_it_unknown(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["pagination"]["page_size"] = "40"
    document = {
        "sources": [entry],
        "notification_channels": [channel_entry(sources=["laptops"])],
    }

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, document))

    assert (
        "channel 1 (it on call): sources: the source 'laptops' of this file was not applied"
        in str(error.value)
    )
    assert "no source named 'laptops'" not in str(error.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda e: e.update(sources="inventory"),
            "sources: must be a list of strings, not a string",
        ),
        (lambda e: e.update(enabled="yes"), "enabled: must be true or false, not a string"),
        (
            lambda e: e.update(recipients=["a@example.com", 5]),
            "recipients: must hold only strings, not a number",
        ),
        (lambda e: e.update(webhook={"url": 5}), "webhook.url: must be a string, not a number"),
        (lambda e: e.update(webhook="x"), "webhook: must be an object, not a string"),
        (lambda e: e.update(every_source=True), "every_source: unknown setting"),
        (lambda e: e.update(kind="pager"), "kind: Select a valid choice."),
        (
            lambda e: e.update(sources=[]),
            "sources: Choose the sources, or tick 'every source'.",
        ),
    ],
)
def test_import_sources_names_the_place_of_a_wrong_channel_setting(
    make_source, tmp_path, change, message
):
    make_source()
    NotificationChannel.objects.create(name="it on call", recipients="ops@example.com")
    entry = channel_entry()
    change(entry)

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, {"notification_channels": [entry]}))

    assert f"channel 1 (it on call): {message}" in str(error.value)
    channel = NotificationChannel.objects.get()
    assert channel.recipients == "ops@example.com" and not channel.sources.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "document, message",
    [
        ({"source": []}, "source: unknown key"),
        ({"notification_channels": {}}, "notification_channels: must be a list, not an object"),
        ("laptops", 'must hold an object with "sources" and "notification_channels"'),
    ],
)
def test_import_sources_names_a_wrong_file_shape(tmp_path, document, message):
    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, document))

    assert message in str(error.value)


@pytest.mark.django_db
def test_a_refused_webhook_url_is_not_repeated_in_the_error(make_source, tmp_path):
    make_source()
    secret_url = "ftp://hooks.example/hook-url-secret"
    entry = channel_entry(kind="webhook", webhook={"url": secret_url})

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, {"notification_channels": [entry]}))

    assert "channel 1 (it on call): webhook.url: Enter a valid URL." in str(error.value)
    assert "hook-url-secret" not in str(error.value)


@pytest.mark.django_db
def test_a_masked_channel_secret_is_refused_for_a_channel_that_has_none(make_source, tmp_path):
    make_source()
    entry = channel_entry(kind="webhook", webhook={"url": "***"})

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, {"notification_channels": [entry]}))

    assert "channel 1 (it on call): webhook.url: *** keeps the stored value, but there is none" in (
        str(error.value)
    )
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_an_old_list_of_sources_still_imports_and_the_next_export_carries_its_channels(
    make_source, tmp_path
):
    channels_fixture(make_source)
    old_file = [source_to_config(ImportSource.objects.get(name="phones"), with_secrets=True)]
    old_file[0]["source"]["timeout"] = 45

    output = run("import_sources", write(tmp_path, old_file), "--no-push")

    assert output.strip() == "updated phones: request_timeout"
    assert NotificationChannel.objects.count() == 3
    document = json.loads(run("export_sources", "phones"))
    assert [channel["name"] for channel in document["notification_channels"]] == [
        "chat",
        "it on call",
        "phones team",
    ]


def test_run_import_shows_no_bar_without_a_total_and_names_the_pages_being_retried():
    from importer.management.commands.run_import import progress_line

    progress = {
        "percent": None,
        "state": "INGESTING",
        "state_label": "Ingesting",
        "records_submitted": 0,
        "records_total": None,
        "basis": "unknown",
        "finished": False,
        "pages_submitted": 0,
        "pages_total": None,
        "records_per_second": None,
        "seconds_left": None,
        "stalled": False,
        "error": "",
    }
    retries = [{"page": 2, "attempts": 1, "reason": "source_unavailable", "next_attempt_at": ""}]

    line = progress_line(progress, retries)

    assert not line.startswith("[")
    assert line.endswith("page 2 waits after attempt 1 (source_unavailable)")


@pytest.mark.django_db(transaction=True)
def test_run_import_says_what_an_import_waits_for_and_a_stall_is_over_once_it_ended(
    make_source, sandbox, settings
):
    # Assets did not take "completed" (503): the line says so, not only "Ingesting".
    from importer.management.commands.run_import import progress_line
    from importer.progress import progress_of

    execution = Execution.objects.create(
        source=make_source(),
        state=Execution.State.INGESTING,
        completion_attempts=2,
        error="Assets answered 503, a server error: try again later",
        stalled_since=timezone.now(),
    )
    waiting = progress_line(progress_of(execution), [])
    Execution.objects.filter(pk=execution.pk).update(state=Execution.State.DONE, error="")
    execution.refresh_from_db()
    done = progress_line(progress_of(execution), [])

    assert waiting.endswith(" · Assets answered 503, a server error: try again later")
    assert "STALLED" in waiting and "STALLED" not in done


@pytest.mark.django_db
def test_a_masked_token_in_a_file_keeps_the_stored_one_and_is_refused_where_none_is_stored(
    tmp_path, sandbox, inventory, demo_mapping
):
    run(
        "import_sources",
        write(tmp_path, [source_entry(sandbox, inventory, demo_mapping)]),
        "--no-push",
    )
    masked = source_entry(sandbox, inventory, demo_mapping)
    masked["assets"]["token"] = "***"
    masked["source"]["auth"]["token"] = "***"

    output = run("import_sources", write(tmp_path, [masked]), "--no-push")

    source = ImportSource.objects.get(name="laptops")
    assert output.strip() == "unchanged laptops"
    assert source.assets_token == SANDBOX_TOKEN
    assert source.source_token == "inventory-token"
    new = {**masked, "name": "new"}
    new["assets"] = {**masked["assets"], "import_source_id": "src-2"}
    with pytest.raises(CommandError, match="Nothing was changed") as refused:
        run("import_sources", write(tmp_path, [new]), "--no-push")
    told = str(refused.value)
    assert "assets.token: '***' stands for a stored secret, and none is stored here" in told
    assert "source.auth.token: '***' stands for a stored secret" in told
    assert "without --with-secrets leaves secrets out" in told
    assert "this form" not in told  # a file is no form in a browser
    assert not ImportSource.objects.filter(name="new").exists()


# --- mistakes a script would otherwise not notice ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command",
    [
        ("export_sources", "laptops", "laptopz"),
        ("remove_schedules", "--source", "laptopz"),
    ],
    ids=["export", "remove schedules"],
)
def test_a_source_name_with_a_typo_is_an_error_not_an_empty_success(make_source, command):
    make_source(name="laptops")

    with pytest.raises(CommandError, match="No source named 'laptopz'"):
        run(*command)


@pytest.mark.django_db
def test_a_file_naming_a_source_twice_is_refused(tmp_path, sandbox, inventory, demo_mapping):
    first = source_entry(sandbox, inventory, demo_mapping)
    second = source_entry(sandbox, inventory, demo_mapping)
    second["source"]["pagination"]["page_size"] = 10

    with pytest.raises(CommandError, match="source 'laptops' is in the file 2 times: keep one"):
        run("import_sources", write(tmp_path, [first, second]))

    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_a_total_path_naming_no_header_is_refused_at_its_setting(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["pagination"]["total_path"] = "header:"

    with pytest.raises(CommandError, match="Name the header that tells the total after 'header:'"):
        run("import_sources", write(tmp_path, [entry]))

    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_a_timeout_of_no_seconds_is_refused_at_its_setting(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["timeout"] = -5

    with pytest.raises(CommandError, match="Give a number of seconds above 0"):
        run("import_sources", write(tmp_path, [entry]))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command, told",
    [
        (("prune_history", "--days", "-3"), "--days must be from 1 to 36500"),
        (("prune_history", "--days", "99999999999"), "--days must be from 1 to 36500"),
        (("export_sources", "-o", "/nonexistent/dir/sources.json"), "Cannot write /nonexistent"),
        (("run_import", "laptops", "--wait", "--poll", "-1"), "--poll must be a number"),
    ],
)
def test_arguments_that_make_no_sense_are_refused_before_anything_is_done(
    make_source, command, told
):
    make_source(name="laptops")

    with pytest.raises(CommandError, match=told):
        run(*command)

    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_an_empty_file_says_there_is_nothing_to_do(tmp_path):
    assert "lists no source and no notification channel: nothing to do" in run(
        "import_sources", write(tmp_path, {})
    )


@pytest.mark.django_db
def test_a_wrong_choice_in_a_file_is_named_by_its_place_there_with_the_choices(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["pagination"]["style"] = "offest"

    with pytest.raises(CommandError) as refused:
        run("import_sources", write(tmp_path, [entry]))

    told = str(refused.value)
    assert "source 1 (laptops): source.pagination.style: Select a valid choice." in told
    assert "(one of: offset, page, cursor," in told


def manage(*arguments: str, database: str):
    """`manage.py` in a process of its own, on the SQLite file `database`."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "x" * 50,
        "DATABASE_URL": f"sqlite:///{database}",
    }
    return subprocess.run(
        [sys.executable, str(root / "manage.py"), *arguments],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("command", [["run_import", "inventory"], ["export_sources"]])
def test_a_command_on_a_database_never_migrated_says_to_migrate(tmp_path, command):
    # Not Django's traceback from the first query ("no such table").
    answer = manage(*command, database=tmp_path / "new.sqlite3")

    assert answer.returncode == 1
    assert "Traceback" not in answer.stderr
    assert answer.stderr.strip().splitlines()[-1] == (
        "CommandError: the database has no tables yet: run `manage.py migrate` first. "
        "Nothing was done."
    )


def test_a_worker_started_on_a_database_an_upgrade_left_behind_says_to_migrate(tmp_path):
    database = tmp_path / "old.sqlite3"
    assert manage("migrate", "-v", "0", database=database).returncode == 0
    assert manage("migrate", "-v", "0", "importer", "0016", database=database).returncode == 0
    as_a_worker = (
        "import importer.spawn as spawn; spawn.in_cluster_worker = lambda: True; "
        "spawn.warm_up(proc_name='Process-1')"
    )

    answer = manage("shell", "-c", as_a_worker, database=database)

    assert "worker Process-1: the database is " in answer.stderr
    assert "migrations behind this release (importer.0017" in answer.stderr
    assert "run `manage.py migrate`; imports fail until then" in answer.stderr


def test_a_cluster_started_before_migrate_takes_no_task_until_migrate_has_run(tmp_path):
    # It used to take every task and fail it with a traceback (a column missing) until then.
    import sqlite3
    from pathlib import Path

    from importer.devtools.cluster import QCluster
    from tests.conftest import wait_for

    # The database one migration behind this release, whichever is its newest.
    migrations = Path(__file__).resolve().parent.parent / "importer" / "migrations"
    *_, before, newest = sorted(path.stem for path in migrations.glob("0*.py"))
    database = tmp_path / "old.sqlite3"
    assert manage("migrate", "-v", "0", database=database).returncode == 0
    assert manage("migrate", "-v", "0", "importer", before, database=database).returncode == 0
    enqueue = "from django_q.tasks import async_task; async_task('math.floor', 2.5, task_name='t1')"
    assert manage("shell", "-c", enqueue, database=database).returncode == 0
    log = tmp_path / "qcluster.log"
    cluster = QCluster(
        env={
            "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
            "SECRET_KEY": "x" * 50,
            "DATABASE_URL": f"sqlite:///{database}",
            "REDIS_URL": "",  # the ORM broker, in the same file
            "Q_WORKERS": "1",
        },
        log_path=log,
    )

    def results() -> list:
        with sqlite3.connect(database, timeout=10) as db:
            return db.execute(
                "SELECT result, success FROM django_q_task WHERE name = 't1'"
            ).fetchall()

    cluster.start()
    try:
        wait_for(
            lambda: "run `manage.py migrate`; this cluster takes no task" in log.read_text(),
            timeout=30,
            message=f"the cluster did not say it waits for migrate: {log.read_text()[-2000:]}",
        )
        told = log.read_text()
        assert "the database is 1 migration behind this release" in told
        assert f"(importer.{newest})" in told
        assert cluster.worker_pids() == [] and results() == []

        assert manage("migrate", "-v", "0", database=database).returncode == 0

        assert wait_for(results, timeout=60, message=log.read_text()[-2000:])[0][1] == 1
    finally:
        cluster.stop()
    told = log.read_text()
    assert told.count("this cluster takes no task until then") == 1
    assert "Traceback" not in told


def test_a_command_on_a_database_an_upgrade_left_behind_says_to_migrate(tmp_path):
    database = tmp_path / "old.sqlite3"
    # This app's migrations alone, up to an older release's: the tables of the others are
    # made by the full migrate that follows.
    migrated = manage("migrate", "-v", "0", "importer", "0016", database=database)
    assert migrated.returncode == 0, migrated.stderr

    answer = manage("run_import", "inventory", database=database)

    assert answer.returncode == 1
    told = answer.stderr.strip().splitlines()[-1]
    assert told.startswith("CommandError: the database is ")
    assert "migrations behind this release" in told
    assert told.endswith("run `manage.py migrate` first. Nothing was done.")
    assert manage("migrate", "-v", "0", database=database).returncode == 0
    assert (
        "No source named 'inventory'" in manage("run_import", "inventory", database=database).stderr
    )


@pytest.mark.django_db
def test_prune_history_deletes_django_q2s_old_failed_tasks_and_keeps_recent_ones():
    now = timezone.now()
    for task_id, age in (("old-failure", 200), ("new-failure", 1)):
        Task.objects.create(
            id=task_id,
            name=task_id,
            func="importer.tasks.process_chunk",
            started=now - timedelta(days=age),
            stopped=now - timedelta(days=age),
            success=False,
        )

    out = run("prune_history", "--days", "90")

    assert "and 1 failed task record(s) older than 90 days" in out
    assert list(Task.objects.values_list("id", flat=True)) == ["new-failure"]


@pytest.mark.parametrize("command", ["assets_sandbox", "demo_source"])
def test_a_development_server_on_a_port_in_use_says_so_and_how_to_choose_another(command):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as refused:
            call_command(command, "--port", str(port))

    assert f"Cannot listen on 127.0.0.1:{port}" in str(refused.value)
    assert f"--port {port + 10}" in str(refused.value)


@pytest.mark.django_db
def test_import_sources_names_a_missing_file_once_and_plainly(tmp_path):
    missing = tmp_path / "sources.json"

    with pytest.raises(CommandError) as refused:
        run("import_sources", str(missing))

    assert str(refused.value) == f"Cannot read {missing}: No such file or directory"


@pytest.mark.django_db
def test_an_empty_list_on_standard_input_says_there_is_nothing_to_do(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("[]"))

    output = run("import_sources", "-")

    assert output.strip() == "The input lists no source and no notification channel: nothing to do."


def test_every_option_of_the_apps_commands_says_what_it_does():
    from pathlib import Path

    from django.core.management import load_command_class
    from django.core.management.base import BaseCommand

    commands_dir = Path(__file__).resolve().parents[1] / "importer" / "management" / "commands"
    shared = {action.dest for action in BaseCommand().create_parser("manage.py", "x")._actions}
    unexplained = [
        f"{path.stem} {action.dest}"
        for path in sorted(commands_dir.glob("[!_]*.py"))
        for action in load_command_class("importer", path.stem)
        .create_parser("manage.py", path.stem)
        ._actions
        if action.dest not in shared and not action.help
    ]

    assert unexplained == []


@pytest.mark.django_db
def test_a_placeholder_secret_no_http_header_can_carry_is_refused_at_its_place(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["assets"]["token"] = "…"
    entry["source"]["auth"] = {"kind": "basic", "username": "svc-cmdb", "password": "pässwörd…"}

    with pytest.raises(CommandError) as refused:
        run("import_sources", write(tmp_path, [entry]))

    assert "source 1 (laptops): assets.token: Holds '…', as a placeholder does" in str(
        refused.value
    )
    assert "source 1 (laptops): source.auth.password: Holds '…'" in str(refused.value)
    assert "pässwörd" not in str(refused.value)
    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_a_secret_in_latin_1_is_taken(tmp_path, sandbox, inventory, demo_mapping):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["auth"] = {"kind": "basic", "username": "svc-cmdb", "password": "pässwörd"}

    run("import_sources", "--no-push", write(tmp_path, [entry]))

    assert ImportSource.objects.get().source_token == "pässwörd"
