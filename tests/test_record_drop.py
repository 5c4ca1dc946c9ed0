"""An import that brings far fewer records than the source's last successful one is taken for
part of the source's data, and fails before Assets writes anything: Assets would otherwise take
every object it did not name for missing."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from importer import services
from importer.models import Execution, ImportSource
from tests.test_commands import run as command
from tests.test_commands import source_entry, write

pytestmark = pytest.mark.django_db(transaction=True)

DONE, FAILED = Execution.State.DONE, Execution.State.FAILED


def run(source, **options) -> Execution:
    execution = services.start_import(source=source, **options)  # tasks run inline here
    execution.refresh_from_db()
    return execution


def test_an_import_bringing_far_fewer_records_than_the_last_fails_before_assets_writes_them(
    pushed_source, inventory, sandbox
):
    assert run(pushed_source).state == DONE  # 120 records
    inventory.resize(30)

    execution = run(pushed_source)

    assert execution.state == FAILED
    assert "The source gave 30 records, 75 % fewer than the 120 of its last successful" in (
        execution.error
    )
    assert "Start import, accepting fewer records" in execution.error
    in_assets = sandbox.execution(execution.assets_execution_id)
    assert in_assets["state"] == "FAILED"  # never completed: Assets wrote none of them
    assert in_assets["failure_reasons"] == [execution.error]


def test_a_source_answering_an_empty_list_after_a_full_one_is_not_done(
    pushed_source, inventory, sandbox
):
    assert run(pushed_source).state == DONE
    inventory.resize(0)  # an outage answered 200 with no records

    execution = run(pushed_source)

    assert execution.state == FAILED
    assert "The source gave 0 records, 100 % fewer than the 120" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["state"] == "FAILED"


def test_a_drop_within_the_sources_limit_ends_done(pushed_source, inventory, sandbox):
    assert run(pushed_source).state == DONE
    inventory.resize(61)  # 49 % fewer; the limit is 50 %

    execution = run(pushed_source)

    assert execution.state == DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 61


def test_the_drop_is_measured_against_the_last_successful_import(pushed_source, inventory):
    assert run(pushed_source).state == DONE
    inventory.resize(30)
    assert run(pushed_source).state == FAILED  # not the measure for the next

    assert run(pushed_source).state == FAILED


def test_a_source_without_a_limit_takes_any_drop(pushed_source, inventory):
    pushed_source.record_drop_limit = None
    pushed_source.save()
    assert run(pushed_source).state == DONE
    inventory.resize(1)

    assert run(pushed_source).state == DONE


def test_an_import_started_accepting_fewer_records_ends_done_and_is_the_next_measure(
    pushed_source, inventory, sandbox
):
    assert run(pushed_source).state == DONE
    inventory.resize(30)
    assert run(pushed_source).state == FAILED

    accepted = run(pushed_source, accept_fewer_records=True)

    assert accepted.state == DONE, accepted.error
    assert len(sandbox.execution(accepted.assets_execution_id)["objects"]) == 30
    inventory.resize(20)  # a third fewer than the 30 now measured against
    assert run(pushed_source).state == DONE


def test_the_admin_starts_an_import_accepting_fewer_records(
    pushed_source, inventory, sandbox, client
):
    assert run(pushed_source).state == DONE
    inventory.resize(10)
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)

    response = client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "start_import_accepting_fewer_records", "_selected_action": [pushed_source.pk]},
        follow=True,
    )

    assert response.status_code == 200
    latest = Execution.objects.latest("pk")
    assert latest.accepts_fewer_records
    assert latest.state == DONE, latest.error
    assert "Import of inventory started" in response.content.decode()
    page = client.get(reverse("admin:importer_execution_change", args=[latest.pk]))
    assert "manual, accepting fewer records" in page.content.decode()


def test_run_import_accepts_fewer_records_when_told(pushed_source, inventory, capsys):
    assert run(pushed_source).state == DONE
    inventory.resize(10)

    with pytest.raises(Exception, match="fewer"):
        call_command("run_import", "inventory", "--wait")
    call_command("run_import", "inventory", "--wait", "--accept-fewer-records")

    assert Execution.objects.latest("pk").state == DONE


def test_the_largest_drop_travels_with_the_config_file_and_empty_means_none(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["limits"] = {"record_drop_percent": None}
    command("import_sources", write(tmp_path, [entry]), "--no-push")
    assert ImportSource.objects.get(name="laptops").record_drop_limit is None

    entry["source"]["limits"] = {"record_drop_percent": 0}
    with pytest.raises(CommandError, match="record_drop_percent"):
        command("import_sources", write(tmp_path, [entry]), "--no-push")

    entry["source"]["limits"] = {"record_drop_percent": 80}
    command("import_sources", write(tmp_path, [entry]), "--no-push")
    exported = json.loads(command("export_sources"))
    assert exported["sources"][0]["source"]["limits"]["record_drop_percent"] == 80


def test_the_release_before_still_creates_sources_and_imports_while_an_upgrade_migrates():
    # Between `migrate` and the restart, processes of the release before insert rows
    # without the new columns: the database gives them their defaults.
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("importer", "0025_chunk_parts_taken")]
    old_apps = MigrationExecutor(connection).loader.project_state(before).apps
    OldSource = old_apps.get_model("importer", "ImportSource")
    OldExecution = old_apps.get_model("importer", "Execution")

    old_source = OldSource.objects.create(
        name="made-before", workspace_id="ws", import_source_id="src", assets_token="t-1"
    )
    old_execution = OldExecution.objects.create(source_id=old_source.pk)

    assert ImportSource.objects.get(pk=old_source.pk).record_drop_limit == 50
    assert Execution.objects.get(pk=old_execution.pk).accepts_fewer_records is False
