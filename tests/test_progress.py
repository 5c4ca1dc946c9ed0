"""What the progress bar claims: only what is known, and never "0 s left" with work left."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from importer import services
from importer.models import Execution
from importer.progress import describe, progress_of


def running(source, **counts) -> Execution:
    started = timezone.now() - timedelta(seconds=counts.pop("elapsed", 10))
    return Execution.objects.create(
        source=source, state=Execution.State.INGESTING, started_at=started, **counts
    )


@pytest.mark.django_db
def test_it_claims_no_percentage_while_the_total_is_unknown(make_source):
    execution = running(make_source(), pages_fetched=1, pages_submitted=1, records_submitted=10)

    progress = progress_of(execution)

    assert progress["percent"] is None
    assert progress["seconds_left"] is None
    assert describe(progress) == (
        "Ingesting · 10 records so far, total not known yet · 1.0 records/s"
    )


@pytest.mark.django_db
def test_it_counts_records_against_the_total_the_source_tells(make_source, monkeypatch):
    execution = running(
        make_source(), records_total=300, records_submitted=90, pages_submitted=9, elapsed=9
    )
    # Read 9 s after the start to the microsecond, however slowly the test runs.
    monkeypatch.setattr(timezone, "now", lambda: execution.started_at + timedelta(seconds=9))

    progress = progress_of(execution)

    assert progress["percent"] == 30
    assert progress["seconds_left"] == 21
    assert "90 of 300 records" in describe(progress)


@pytest.mark.django_db
def test_a_failed_import_whose_records_were_all_left_out_claims_none_arrived(make_source):
    # Left out by the mapping (a CSV read with the wrong delimiter): not 99 % of anything.
    execution = Execution.objects.create(
        source=make_source(),
        state=Execution.State.FAILED,
        records_total=300,
        records_skipped=300,
        records_submitted=0,
    )

    assert progress_of(execution)["percent"] == 0


@pytest.mark.django_db
def test_it_counts_pages_against_the_last_page_once_known(make_source):
    execution = running(make_source(), last_chunk_index=11, pages_submitted=3)

    assert progress_of(execution)["percent"] == 25


@pytest.mark.django_db
def test_time_left_never_reads_zero_while_work_remains(make_source):
    execution = running(
        make_source(), records_total=1000, records_submitted=999, elapsed=1, pages_submitted=99
    )

    progress = progress_of(execution)

    assert progress["percent"] == 99
    assert progress["seconds_left"] == 1
    assert "about 1 s left" in describe(progress)


@pytest.mark.django_db
def test_time_left_waits_until_enough_is_done_to_tell(make_source):
    execution = running(make_source(), records_total=1000, records_submitted=10, elapsed=1)

    assert progress_of(execution)["seconds_left"] is None


@pytest.mark.django_db(transaction=True)
def test_an_import_learns_the_total_from_the_source(make_source, sandbox):
    source = services.push_mapping(source=make_source(total_path="total"))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.records_total == 120


@pytest.mark.django_db
def test_progress_is_shown_only_to_users_who_may_view_executions(
    client, django_user_model, make_source
):
    execution = running(make_source())
    staff = django_user_model.objects.create_user("sam", password="pw-12345678", is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("importer:progress", args=[execution.pk])).status_code == 403
    assert (
        client.get(reverse("admin:importer_execution_live", args=[execution.pk])).status_code == 403
    )


@pytest.mark.django_db
def test_the_clock_runs_on_while_a_page_waits_for_its_retry(make_source):
    execution = running(make_source(), records_submitted=300, pages_submitted=3, elapsed=30)
    # The last progress came 0.2 s after the start; a page has waited for its retry since.
    Execution.objects.filter(pk=execution.pk).update(
        updated_at=execution.started_at + timedelta(seconds=0.2)
    )
    execution.refresh_from_db()

    progress = progress_of(execution)

    assert execution.duration >= timedelta(seconds=30)
    assert progress["records_per_second"] <= 10.0  # not 1500 records/s


@pytest.mark.django_db
def test_a_cancelled_import_page_is_followed_until_its_last_page_has_stopped(
    admin_client, make_source
):
    from importer.models import ChunkJob

    execution = running(make_source())
    ChunkJob.objects.create(execution=execution, index=0, state=ChunkJob.State.RUNNING)
    Execution.objects.filter(pk=execution.pk).update(state=Execution.State.CANCELLED)
    live = reverse("admin:importer_execution_live", args=[execution.pk])

    # The lane sees the cancel only as it takes its next page: "1 running" is still true.
    assert admin_client.get(live).json()["finished"] is False

    ChunkJob.objects.filter(execution=execution).update(state=ChunkJob.State.CANCELLED)
    assert admin_client.get(live).json()["finished"] is True


@pytest.mark.django_db
def test_the_failure_report_line_speaks_only_of_a_failure(admin_client, make_source):
    done = running(make_source())
    Execution.objects.filter(pk=done.pk).update(state=Execution.State.DONE)
    page = admin_client.get(reverse("admin:importer_execution_change", args=[done.pk]))
    assert "not yet: Assets did not take it" not in page.content.decode()

    Execution.objects.filter(pk=done.pk).update(
        state=Execution.State.FAILED, failure_report_pending=True
    )
    page = admin_client.get(reverse("admin:importer_execution_change", args=[done.pk]))
    assert "not yet: Assets did not take it" in page.content.decode()


@pytest.mark.django_db
def test_the_live_page_sends_its_chunk_rows_again_only_once_they_changed(admin_client, make_source):
    # On a slow link the same 50 KB of rows every second kept the connection busy.
    from importer.models import ChunkJob

    execution = running(make_source())
    chunk = ChunkJob.objects.create(execution=execution, index=0, state=ChunkJob.State.RUNNING)
    live = reverse("admin:importer_execution_live", args=[execution.pk])

    first = admin_client.get(live).json()
    unchanged = admin_client.get(live, {"rows": first["rows_digest"]}).json()
    ChunkJob.objects.filter(pk=chunk.pk).update(state=ChunkJob.State.SUBMITTED, record_count=10)
    changed = admin_client.get(live, {"rows": first["rows_digest"]}).json()

    assert 'data-state="RUNNING"' in first["chunk_rows"]
    assert unchanged["chunk_rows"] is None
    assert 'data-state="SUBMITTED"' in changed["chunk_rows"]
