"""An upgrade from the release before (migrations up to 0025): what it stored is read as it was."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from importer.models import Execution, ImportSource, NotificationChannel, Schedule

RELEASE_BEFORE = [("importer", "0025_chunk_parts_taken")]
# The webtrigger URL (its token in it) is shown to administrators: it is not among these.
SECRETS = ("assets-token-1", "basic-password-2", "header-key-3", "secret-hook-5", "header-value-6")


def migrate_to(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_what_the_release_before_stored_survives_the_upgrade_and_its_pages_open(admin_client):
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("importer")
    old = migrate_to(RELEASE_BEFORE)
    try:
        source = old.get_model("importer", "ImportSource").objects.create(
            name="made-before",
            workspace_id="ws",
            import_source_id="src",
            assets_token="assets-token-1",
            source_url="https://inventory.example/api/items",
            source_auth="basic",
            auth_username="svc-cmdb",
            source_token="basic-password-2",
            extra_headers={"X-API-Key": "header-key-3"},
            page_size=40,
        )
        old.get_model("importer", "Schedule").objects.create(
            source=source,
            frequency="MONTHLY",
            start_time=datetime(2026, 12, 31, 2, 30, tzinfo=UTC),
            timezone="Europe/Berlin",
            callback_url="https://sync.example/webtrigger/1/secret-token-4/",
            in_sync=True,
        )
        channel = old.get_model("importer", "NotificationChannel").objects.create(
            name="chat",
            kind="webhook",
            all_sources=True,
            webhook_url="https://hooks.example/secret-hook-5",
            secret_header_name="X-Token",
            secret_header_value="header-value-6",
        )
        execution = old.get_model("importer", "Execution").objects.create(
            source=source, state="DONE", records_total=120, records_submitted=120
        )
    finally:
        migrate_to(latest)

    source = ImportSource.objects.get(pk=source.pk)
    assert (source.auth_username, source.source_token) == ("svc-cmdb", "basic-password-2")
    assert source.extra_headers == {"X-API-Key": "header-key-3"}
    assert source.assets_token == "assets-token-1"
    assert (source.page_size, source.record_drop_limit) == (40, 50)
    assert (source.request_method, source.after_first_page) == ("GET", None)
    schedule = Schedule.objects.get(source=source)
    assert (schedule.frequency, schedule.timezone, schedule.in_sync) == (
        "MONTHLY",
        "Europe/Berlin",
        True,
    )
    assert schedule.callback_url.endswith("/secret-token-4/")
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert channel.secret_header_value == "header-value-6"
    assert Execution.objects.get(pk=execution.pk).records_total_largest is None

    pages = [
        reverse("admin:importer_importsource_change", args=[source.pk]),
        reverse("admin:importer_importsource_changelist"),
        reverse("admin:importer_execution_change", args=[execution.pk]),
        reverse("admin:importer_execution_changelist"),
        reverse("admin:importer_schedule_change", args=[schedule.pk]),
        reverse("admin:importer_notificationchannel_change", args=[channel.pk]),
    ]
    for page in pages:
        answer = admin_client.get(page)
        assert answer.status_code == 200, page
        for secret in SECRETS:
            assert secret not in answer.content.decode(), (page, secret)
