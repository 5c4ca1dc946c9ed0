"""Prometheus metrics at /metrics, scraped and parsed with prometheus_client's own parser."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone
from django_q.models import Task
from prometheus_client.parser import text_string_to_metric_families

from importer import services, tasks
from importer.models import ChunkJob, Execution, NotificationChannel, Schedule

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def get() -> dict:
        """{(sample name, frozenset of labels): value} of one scrape."""
        response = client.get(reverse("importer:metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return get


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_there_are_no_metrics_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get(reverse("importer:metrics")).status_code == 404


def test_metrics_need_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = TOKEN

    missing = client.get(reverse("importer:metrics"))
    wrong = client.get(reverse("importer:metrics"), HTTP_AUTHORIZATION="Bearer guess")

    assert missing.status_code == wrong.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"assets_sync" not in wrong.content


def test_metrics_move_as_an_import_runs(pushed_source, sandbox, inventory, scrape):
    inventory.faults.add(method="GET", path_contains="offset=0", status=503, times=1)
    before = scrape()
    assert value(before, "assets_sync_chunks_queued", source="inventory") == 0
    assert value(before, "assets_sync_executions_total", source="inventory", state="DONE") is None

    execution = services.start_import(source=pushed_source)

    # The first page failed once and waits for its retry; the others went through.
    waiting = execution.chunks.get(index=0)
    assert waiting.state == ChunkJob.State.QUEUED
    during = scrape()
    assert value(during, "assets_sync_chunks_queued", source="inventory") == 1
    assert value(during, "assets_sync_chunks_running", source="inventory") == 0
    reason = waiting.last_error_kind
    assert value(during, "assets_sync_chunk_retries_total", source="inventory", reason=reason) == 1
    assert 0 < value(during, "assets_sync_records_submitted_total", source="inventory") < 120
    assert value(during, "assets_sync_executions_total", source="inventory", state="DONE") is None

    ChunkJob.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())  # time passes
    tasks.run_chunk(waiting.pk)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    after = scrape()
    assert value(after, "assets_sync_chunks_queued", source="inventory") == 0
    assert value(after, "assets_sync_executions_total", source="inventory", state="DONE") == 1
    assert value(after, "assets_sync_records_submitted_total", source="inventory") == 120
    assert value(after, "assets_sync_records_left_out_total", source="inventory") == 0
    assert value(after, "assets_sync_time_to_done_seconds_count", source="inventory") == 1
    assert (
        value(after, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="+Inf") == 1
    )
    assert value(
        after, "assets_sync_last_success_timestamp_seconds", source="inventory"
    ) == pytest.approx(execution.finished_at.timestamp())


def test_a_failed_import_is_counted_by_its_final_state(
    pushed_source, sandbox, inventory, scrape, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(method="GET", path_contains="/api/computers", status=500, times=-1)

    services.start_import(source=pushed_source)

    samples = scrape()
    assert value(samples, "assets_sync_executions_total", source="inventory", state="FAILED") == 1


def test_counters_do_not_go_down_when_old_history_is_pruned(make_source, scrape):
    source = make_source()
    long_ago = timezone.now() - timedelta(days=400)
    for state, submitted in [("DONE", 50), ("FAILED", 7), ("DONE", 30)]:
        execution = Execution.objects.create(
            source=source,
            state=state,
            records_submitted=submitted,
            records_skipped=1,
            items_skipped=2,
            started_at=long_ago,
            finished_at=long_ago + timedelta(seconds=90),
        )
        Execution.objects.filter(pk=execution.pk).update(created_at=long_ago)
    before = scrape()

    assert services.prune_history(days=180) == 2  # the latest success is kept

    after = scrape()
    assert Execution.objects.get().records_submitted == 30
    for name, labels in [
        ("assets_sync_executions_total", {"state": "DONE"}),
        ("assets_sync_executions_total", {"state": "FAILED"}),
        ("assets_sync_records_submitted_total", {}),
        ("assets_sync_records_left_out_total", {}),
        ("assets_sync_nested_items_left_out_total", {}),
        ("assets_sync_time_to_done_seconds_count", {}),
        ("assets_sync_time_to_done_seconds_sum", {}),
        ("assets_sync_time_to_done_seconds_bucket", {"le": "120.0"}),
        ("assets_sync_time_to_done_seconds_bucket", {"le": "60.0"}),
        ("assets_sync_last_success_timestamp_seconds", {}),
    ]:
        assert value(after, name, source="inventory", **labels) == value(
            before, name, source="inventory", **labels
        ), name
    assert value(after, "assets_sync_executions_total", source="inventory", state="DONE") == 2
    assert value(after, "assets_sync_records_submitted_total", source="inventory") == 87
    assert value(after, "assets_sync_nested_items_left_out_total", source="inventory") == 6
    assert (
        value(after, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="120.0") == 2
    )
    assert (
        value(after, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="60.0") == 0
    )


def finish_through_the_transitions(source, *, took: timedelta, state: str) -> Execution:
    """PENDING -> ... -> `state` by the guarded transitions the import flow uses."""
    execution = Execution.objects.create(source=source)
    executions = Execution.objects.of(execution)
    assert executions.begin_ingesting()
    executions.update(started_at=timezone.now() - took)  # time passes
    assert executions.claim_completion()
    assert executions.mark_processing()
    assert executions.finish(state=state)
    execution.refresh_from_db()
    return execution


def test_the_time_to_done_is_kept_when_an_import_ends_done(make_source, scrape):
    source = make_source()
    done = finish_through_the_transitions(source, took=timedelta(seconds=45), state="DONE")
    finish_through_the_transitions(source, took=timedelta(seconds=20), state="FAILED")

    samples = scrape()

    took = (done.finished_at - done.started_at).total_seconds()
    assert done.took_seconds == pytest.approx(took, abs=0.001)
    assert value(samples, "assets_sync_time_to_done_seconds_count", source="inventory") == 1
    assert value(
        samples, "assets_sync_time_to_done_seconds_sum", source="inventory"
    ) == pytest.approx(took, abs=0.001)
    assert (
        value(samples, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="30.0")
        == 0
    )
    assert (
        value(samples, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="60.0")
        == 1
    )


def test_the_migration_keeps_the_time_to_done_of_imports_finished_before_it(make_source, scrape):
    source = make_source()
    started = timezone.now() - timedelta(hours=2)
    for state, seconds in [("DONE", 90), ("DONE", 10), ("FAILED", 30)]:
        Execution.objects.create(
            source=source,
            state=state,
            started_at=started,
            finished_at=started + timedelta(seconds=seconds),
        )
    before = scrape()

    importlib.import_module("importer.migrations.0008_took_seconds").fill_took_seconds(apps, None)

    assert sorted(
        Execution.objects.values_list("state", "took_seconds").order_by("state", "took_seconds")
    ) == [("DONE", 10.0), ("DONE", 90.0), ("FAILED", None)]
    after = scrape()
    for name, labels in [
        ("assets_sync_time_to_done_seconds_count", {}),
        ("assets_sync_time_to_done_seconds_sum", {}),
        ("assets_sync_time_to_done_seconds_bucket", {"le": "10.0"}),
        ("assets_sync_time_to_done_seconds_bucket", {"le": "60.0"}),
        ("assets_sync_time_to_done_seconds_bucket", {"le": "120.0"}),
    ]:
        assert value(after, name, source="inventory", **labels) == value(
            before, name, source="inventory", **labels
        ), name
    assert value(after, "assets_sync_time_to_done_seconds_sum", source="inventory") == 100
    assert (
        value(after, "assets_sync_time_to_done_seconds_bucket", source="inventory", le="10.0") == 1
    )


def test_the_housekeeping_heartbeat_age_is_published(scrape):
    never = scrape()
    stopped = timezone.now() - timedelta(seconds=90)
    Task.objects.create(
        id="housekeeping",
        name="housekeeping",
        func="importer.tasks.look_after_imports",
        started=stopped,
        stopped=stopped,
        success=True,
    )

    age = value(scrape(), "assets_sync_housekeeping_age_seconds")

    assert value(never, "assets_sync_housekeeping_age_seconds") == float("inf")
    assert 90 <= age < 150


def test_stale_sources_and_failing_channels_are_published(make_source, scrape):
    source = make_source()
    Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.DAILY,
        start_time=timezone.now() - timedelta(days=3),
        timezone="UTC",
    )
    NotificationChannel.objects.create(
        name="chat",
        kind="webhook",
        webhook_url="https://hooks.example/x",
        all_sources=True,
        last_error="answered 500",
        last_error_at=timezone.now(),
    )

    samples = scrape()

    assert value(samples, "assets_sync_source_stale", source="inventory") == 1
    assert value(samples, "assets_sync_alert_channel_failing", channel="chat", kind="webhook") == 1
