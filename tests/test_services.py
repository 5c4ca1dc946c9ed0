"""The import flow, with django-q2 running tasks inline (sync mode)."""

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from importer import services, work_queue
from importer.assets import AssetsClient
from importer.models import ChunkJob, Execution, ImportSource
from tests.conftest import SANDBOX_TOKEN, computer_with_disks, with_tags_flag_and_disks
from tests.fake_source import FakeSource

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_imports_every_record_exactly_once(pushed_source, sandbox):
    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == 120
    assert remote["duplicate_objects"] == 0
    assert len(remote["objects"]) == 120
    assert remote["completed_posts"] == 1
    assert execution.records_submitted == 120
    assert execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() == 5


def test_it_pages_by_page_number(make_source, sandbox):
    source = services.push_mapping(
        source=make_source(pagination="page", page_size=50, first_page=1)
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    submitted = execution.chunks.filter(state=ChunkJob.State.SUBMITTED)
    assert list(submitted.values_list("cursor", flat=True)) == ["", "2", "3"]
    # Pages fetched ahead of the end (fan-out) send nothing.
    assert not execution.chunks.exclude(
        state__in=[ChunkJob.State.SUBMITTED, ChunkJob.State.SKIPPED]
    ).exists()


@pytest.mark.parametrize("lane_seconds, pages_past_the_end", [(20, 3), (0, 2)])
def test_offset_sources_fan_out_up_to_the_chunks_in_flight(
    make_source, sandbox, settings, lane_seconds, pages_past_the_end
):
    settings.CHUNK_LANE_SECONDS = lane_seconds
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=3))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert execution.last_chunk_index == 11
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    # With lanes, each of the three lanes claims the page three ahead of its own; with one
    # page per task, each fetched page queues the pages up to two ahead of itself.
    assert execution.chunks.count() <= 12 + pages_past_the_end


def test_a_cursor_source_stays_sequential(make_source, sandbox):
    source = make_source(max_chunks_in_flight=8)
    source.pagination = "page"
    assert services.pipeline_parallelism(source) == 8
    source.pagination = "cursor"
    assert services.pipeline_parallelism(source) == 2


def test_a_chunk_delivered_twice_submits_its_page_once(pushed_source, sandbox, inventory):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)
    waiting = list(
        execution.chunks.filter(state=ChunkJob.State.QUEUED).values_list("pk", flat=True)
    )
    inventory.faults.clear()
    ChunkJob.objects.filter(pk__in=waiting).update(next_attempt_at=None)

    for chunk_id in waiting:
        services.process_chunk(chunk=ChunkJob.objects.get(pk=chunk_id))
        services.process_chunk(chunk=ChunkJob.objects.get(pk=chunk_id))

    data_posts = [path for method, path in sandbox.requests_log if path.endswith("/data")]
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["duplicate_objects"] == 0
    assert len(remote["objects"]) == 120
    assert len(data_posts) == 5 + 1  # five pages and one completion


def test_completion_waits_for_a_chunk_still_running(pushed_source, sandbox):
    execution = services.start_import(source=pushed_source)
    assert execution.state == Execution.State.DONE
    # Replay the race: the last chunk is back to RUNNING while a completion check arrives.
    execution = Execution.objects.get(pk=execution.pk)
    Execution.objects.filter(pk=execution.pk).update(state=Execution.State.INGESTING)
    ChunkJob.objects.filter(execution=execution, index=4).update(state=ChunkJob.State.RUNNING)

    services.check_completion(execution=execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 1


def test_a_second_start_while_one_is_open_is_refused(pushed_source):
    Execution.objects.create(source=pushed_source, state=Execution.State.INGESTING)

    with pytest.raises(services.ImportRefused, match="already running"):
        services.start_import(source=pushed_source)

    assert Execution.objects.filter(source=pushed_source).count() == 1


def _edit_mapping_locally(source):
    source.mapping["schema"]["objectSchema"]["objectTypes"][0]["description"] = "Edited here"
    source.mapping_pushed_at = None
    source.save()


def test_a_mapping_saved_since_its_last_push_is_pushed_before_the_import_starts(
    pushed_source, sandbox
):
    # The records are transformed with the mapping saved here: Assets must apply the same.
    _edit_mapping_locally(pushed_source)

    execution = services.start_import(source=pushed_source)

    assert execution.assets_execution_id
    assert sandbox.mapping("ws-1", "src-1") == pushed_source.mapping
    pushed_source.refresh_from_db()
    assert pushed_source.mapping_pushed_at is not None


def test_a_start_refused_while_an_import_runs_leaves_assets_mapping_alone(pushed_source, sandbox):
    Execution.objects.create(source=pushed_source, state=Execution.State.INGESTING)
    in_assets = sandbox.mapping("ws-1", "src-1")
    _edit_mapping_locally(pushed_source)

    with pytest.raises(services.ImportRefused, match="already running"):
        services.start_import(source=pushed_source)

    assert sandbox.mapping("ws-1", "src-1") == in_assets


def test_a_disabled_source_is_refused(make_source):
    source = make_source(enabled=False)

    with pytest.raises(services.ImportRefused, match="disabled"):
        services.start_import(source=source)


def test_a_source_answering_500_fails_the_execution_and_reports_why(
    pushed_source, sandbox, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(
        method="GET",
        path_contains="/api/computers",
        status=500,
        times=-1,
        body="<html>Internal error " + "x" * 3000 + "</html>",
    )

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "answered 500" in execution.error
    reasons = sandbox.execution(execution.assets_execution_id)["failure_reasons"]
    assert len(reasons) == 1
    assert len(reasons[0]) <= 1024
    assert reasons[0].startswith("Chunk 1 failed")


def fail_while_assets_cannot_hear(source, sandbox, inventory) -> Execution:
    """An import whose source fails at once while Assets answers its failure report 503."""
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=1)
    sandbox.faults.add(method="POST", path_contains="/history/failed", status=503, times=-1)
    failed = services.start_import(source=source)
    failed.refresh_from_db()
    return failed


def test_a_failure_assets_could_not_hear_is_told_later_so_the_next_import_may_start(
    pushed_source, sandbox, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    failed = fail_while_assets_cannot_hear(pushed_source, sandbox, inventory)
    assert failed.state == Execution.State.FAILED and failed.failure_report_pending
    # Assets still counts it as running, and would refuse the next one.
    assert sandbox.execution(failed.assets_execution_id)["state"] == "INGESTING"

    sandbox.faults.clear()
    following = services.start_import(source=pushed_source)

    failed.refresh_from_db()
    assert failed.failure_reported_at is not None and not failed.failure_report_pending
    assert sandbox.execution(failed.assets_execution_id)["failure_reasons"][0].startswith(
        "Chunk 1 failed"
    )
    following.refresh_from_db()
    assert following.state == Execution.State.DONE


def test_a_failure_report_assets_refuses_cancels_the_execution_so_the_next_import_may_start(
    pushed_source, sandbox, inventory, settings
):
    # Assets takes no report it finds wrong (a reason too long by its count): it would go on
    # waiting for pages, and refuse the source's next import.
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=1)
    sandbox.faults.add(
        method="POST",
        path_contains="/history/failed",
        status=400,
        times=-1,
        body='{"errors": {"failureReason": "size must be between 0 and 1024"}}',
    )

    failed = services.start_import(source=pushed_source)

    failed.refresh_from_db()
    assert failed.state == Execution.State.FAILED and not failed.failure_report_pending
    assert sandbox.execution(failed.assets_execution_id)["state"] == "CANCELLED"
    following = services.start_import(source=pushed_source)
    following.refresh_from_db()
    assert following.state == Execution.State.DONE, following.error


def test_a_page_assets_answers_404_fails_the_import_saying_to_check_the_import_source_and_its_id(
    pushed_source, sandbox
):
    # The import source was deleted in Jira (and maybe created again, under a new id) while
    # the import ran: Assets no longer knows where its pages go. Its answer echoes the token.
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains='"data"',
        status=404,
        times=-1,
        body=f'{{"errorMessages": ["No import source for token {SANDBOX_TOKEN}"]}}',
    )

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith(
        "Chunk 1 failed: Submitting a chunk: Assets does not know this import's execution or "
        "its import source (404): check in Assets that the import source still exists, and "
        "that the source's import source id is the one Assets shows (an import source deleted "
        "and created again in Jira has a new id, and needs a new token); then run the import "
        "again"
    )
    assert SANDBOX_TOKEN not in execution.error


def test_a_start_a_gateway_answered_504_is_not_posted_again_and_says_it_may_have_started(
    pushed_source, sandbox
):
    # The gateway gave up waiting; Assets started the execution all the same. Posting again
    # would be refused with 409, by the app's own first start.
    sandbox.faults.add(method="POST", path_contains="/executions", status=504, times=1)

    with pytest.raises(services.ImportRefused) as refused:
        services.start_import(source=pushed_source)

    assert "Assets may have started the execution all the same" in str(refused.value)
    assert "409" in str(refused.value) and "cancel that execution in Assets" in str(refused.value)
    starts = [path for method, path in sandbox.requests_log if method == "POST"]
    assert [path.endswith("/executions") for path in starts] == [True]


@pytest.mark.parametrize("status, retry_after", [(503, None), (429, "1")])
def test_a_mapping_push_assets_could_not_take_now_is_retried_and_the_import_starts(
    make_source, sandbox, status, retry_after
):
    sandbox.faults.add(
        method="PUT", path_contains="/mapping", status=status, retry_after=retry_after
    )

    execution = services.start_import(source=make_source())

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert [method for method, path in sandbox.requests_log if path.endswith("/mapping")] == [
        "PUT",
        "PUT",
    ]


def test_a_start_refused_for_want_of_a_mapping_pushes_it_again_next_time(pushed_source, sandbox):
    # The mapping was removed in Assets after it was pushed from here.
    sandbox.faults.add(
        method="POST",
        path_contains="/executions",
        status=400,
        body='{"errorMessages": ["No mapping configured for this import source"]}',
    )

    with pytest.raises(services.ImportRefused) as refused:
        services.start_import(source=pushed_source)
    again = services.start_import(source=ImportSource.objects.get(pk=pushed_source.pk))

    assert "The mapping is pushed again when the import is next started" in str(refused.value)
    again.refresh_from_db()
    assert again.state == Execution.State.DONE, again.error
    puts = [path for method, path in sandbox.requests_log if method == "PUT"]
    assert len(puts) == 2  # pushed first, then again before the second start


def test_a_start_whose_mapping_push_assets_did_not_answer_does_not_say_it_may_have_started(
    make_source, sandbox
):
    # The start was never asked for: nobody should look for an execution in Assets.
    sandbox.faults.add(method="PUT", path_contains="/mapping", status=504, times=-1)
    sandbox.faults.add(method="PATCH", path_contains="/mapping", status=504, times=-1)

    with pytest.raises(services.ImportRefused) as refused:
        services.start_import(source=make_source())

    assert "mapping" in str(refused.value).lower()
    assert "may have started" not in str(refused.value)
    assert not any(path.endswith("/executions") for _, path in sandbox.requests_log)


def test_housekeeping_tells_assets_a_failure_it_could_not_hear_then(
    pushed_source, sandbox, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    failed = fail_while_assets_cannot_hear(pushed_source, sandbox, inventory)
    sandbox.faults.clear()

    services.look_after_imports()

    failed.refresh_from_db()
    assert failed.failure_reported_at is not None and not failed.failure_report_pending
    assert sandbox.execution(failed.assets_execution_id)["state"] == "FAILED"


def run_due_retries(execution: Execution) -> Execution:
    """What the delayed retries do, one by one, at once: tests do not wait for backoff."""
    while queued := execution.chunks.filter(state=ChunkJob.State.QUEUED).first():
        ChunkJob.objects.filter(pk=queued.pk).update(next_attempt_at=None)
        services.process_chunk(chunk=ChunkJob.objects.get(pk=queued.pk))
    execution.refresh_from_db()
    return execution


def test_a_page_larger_than_assets_takes_is_sent_in_parts_each_once(
    pushed_source, sandbox, settings
):
    settings.ASSETS_MAX_SUBMIT_BYTES = 1000  # a page of 25 computers is about 2.5 KB
    # Assets fails a part in the middle of the first page: it is sent again from that part.
    sandbox.faults.add(method="POST", path_contains="/data", body_contains="SN-00015")

    execution = run_due_retries(services.start_import(source=pushed_source))

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert (remote["object_count"], remote["duplicate_objects"]) == (120, 0)
    pages = execution.chunks.filter(record_count__gt=0).count()
    assert remote["chunks_received"] >= 3 * pages


def test_a_page_sent_in_parts_that_reads_otherwise_when_sent_again_loses_no_record(
    pushed_source, sandbox, inventory, settings
):
    settings.ASSETS_MAX_SUBMIT_BYTES = 1000
    sandbox.faults.add(method="POST", path_contains="/data", body_contains="SN-00015")
    execution = services.start_import(source=pushed_source)
    assert execution.chunks.get(index=0).parts_taken  # its first parts were taken
    # Read again, the page holds its records in another order (an API without a stable
    # sort): skipping as many records as were taken would leave some out.
    inventory._computers[:25] = inventory._computers[:25][::-1]

    execution = run_due_retries(execution)

    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["object_count"] == 120


def test_a_page_assets_refuses_as_too_large_is_halved_until_it_goes(pushed_source, sandbox):
    sandbox.max_submit_bytes = 1200  # a gateway in front of Assets: 413 above it

    execution = run_due_retries(services.start_import(source=pushed_source))

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert (remote["object_count"], remote["duplicate_objects"]) == (120, 0)


def test_a_source_answering_html_every_time_gives_a_clear_error(pushed_source, inventory, sandbox):
    inventory.faults.add(
        method="GET",
        path_contains="/api/computers",
        status=200,
        times=-1,
        body="<html>Please log in</html>",
    )

    execution = run_due_retries(services.start_import(source=pushed_source))

    assert execution.state == Execution.State.FAILED
    assert "did not answer JSON" in execution.error
    assert "(gave up after 3 attempts)" in execution.error


def test_a_jsonp_answer_fails_its_chunk_at_the_first_attempt(pushed_source, inventory):
    # Asked again, the source wraps its JSON in the callback again: no attempt mends it.
    inventory.faults.add(
        method="GET",
        path_contains="/api/computers",
        status=200,
        times=-1,
        body='handleComputers({"items": []});',
    )

    execution = run_due_retries(services.start_import(source=pushed_source))

    assert execution.state == Execution.State.FAILED
    assert "answered JSONP" in execution.error and "gave up after" not in execution.error
    assert execution.chunks.get(index=0).attempts == 1


def test_an_answer_that_does_not_parse_once_does_not_fail_the_import(
    pushed_source, inventory, sandbox
):
    # A proxy's HTML page in front of the JSON, once.
    inventory.faults.add(
        method="GET", path_contains="offset=50", status=200, body="<html>Bad gateway</html>"
    )

    execution = run_due_retries(services.start_import(source=pushed_source))

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120 and remote["duplicate_objects"] == 0
    assert execution.chunks.get(index=2).attempts == 2


def test_a_wrong_assets_token_refuses_the_start_with_a_clear_message(make_source):
    source = make_source(assets_token="wrong-token-value")

    with pytest.raises(services.ImportRefused, match="401") as refused:
        services.start_import(source=source)

    assert "wrong-token-value" not in str(refused.value)
    assert Execution.objects.get(source=source).state == Execution.State.REFUSED


def test_an_unreachable_assets_refuses_the_start(make_source):
    source = make_source(assets_base_url="http://127.0.0.1:9")

    with pytest.raises(services.ImportRefused, match="could not reach Assets"):
        services.start_import(source=source)


def test_a_mapping_assets_rejects_is_reported_by_push(make_source, demo_mapping):
    demo_mapping["mapping"]["objectTypeMappings"][0]["objectTypeExternalId"] = "ghost"
    source = make_source(mapping=demo_mapping)

    with pytest.raises(services.MappingInvalid, match="ghost"):
        services.push_mapping(source=source)


def test_a_mapping_saved_while_it_is_pushed_is_not_taken_for_pushed(
    make_source, sandbox, demo_mapping
):
    # The list said "pushed" and no import pushed again: Assets took records shaped by a
    # mapping it never had.
    import copy
    import threading

    from django.db import connection

    from importer.models import ImportSource
    from tests.conftest import wait_for

    source = make_source(mapping=demo_mapping)
    sandbox.faults.add(method="PUT", path_contains="/mapping", status=0, delay=1.5)
    told = {}

    def push() -> None:
        try:
            services.push_mapping(source=ImportSource.objects.get(pk=source.pk))
        except services.MappingChangedMeanwhile as error:
            told["error"] = str(error)
        finally:
            connection.close()

    pusher = threading.Thread(target=push)
    pusher.start()
    wait_for(lambda: not sandbox.faults.rules(), timeout=10)  # the PUT is on its way
    edited = ImportSource.objects.get(pk=source.pk)
    edited.mapping = copy.deepcopy(demo_mapping)
    edited.mapping["mapping"]["objectTypeMappings"][0]["description"] = "edited meanwhile"
    edited.mapping_pushed_at = None  # what the source's form does with a new mapping
    edited.save()
    pusher.join(timeout=30)

    assert told["error"].startswith("the mapping was changed while it was being pushed")
    edited.refresh_from_db()
    assert edited.mapping_pushed_at is None  # so the next import pushes it first
    execution = services.start_import(source=edited)
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.mapping(source.workspace_id, source.import_source_id) == edited.mapping


def test_records_without_identity_are_skipped_and_counted(pushed_source, sandbox, settings):
    pushed_source.mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][0][
        "attributeLocators"
    ] = ["missing_field"]
    pushed_source.save()

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.records_skipped == 120
    assert execution.records_submitted == 0
    assert "no value for 'missing_field'" in execution.chunks.first().error


def only_laptops(mapping: dict) -> dict:
    """The demo mapping with Kind a select that takes 'laptop' only: servers are ruled out."""
    kind = mapping["schema"]["objectSchema"]["objectTypes"][0]["attributes"][2]
    kind.update(type="select", typeValues=["laptop"])
    return mapping


def test_records_with_values_the_schema_rules_out_are_left_out_with_reasons(
    make_source, demo_mapping, sandbox
):
    source = services.push_mapping(source=make_source(mapping=only_laptops(demo_mapping)))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert execution.records_submitted == 96
    assert execution.records_skipped == 24  # every fifth computer is a server
    objects = sandbox.execution(execution.assets_execution_id)["objects"]
    assert len(objects) == 96
    assert not [key for key in objects if "SN-00005" in key]
    assert (
        "record 5 (serial=SN-00005): field 'kind' is 'server', expected one of 'laptop' "
        "(typeValues) for attribute 'Kind'" in execution.chunks.get(index=0).error
    )


def test_a_source_set_to_fail_on_ruled_out_values_fails_the_import_naming_them(
    make_source, demo_mapping, sandbox
):
    source = services.push_mapping(
        source=make_source(mapping=only_laptops(demo_mapping), invalid_values="fail")
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "5 records with values Assets' schema rules out: record 5 (serial=SN-00005): " in (
        execution.error
    )
    failed = execution.chunks.get(index=0)
    assert failed.state == ChunkJob.State.FAILED
    assert failed.last_error_kind == "invalid_values"
    assert sandbox.execution(execution.assets_execution_id)["failure_reasons"]


def test_an_endless_source_is_stopped(pushed_source, inventory, settings):
    settings.IMPORT_MAX_PAGES = 3

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "IMPORT_MAX_PAGES" in execution.error


def test_a_401_from_the_source_names_it_and_hides_its_token(make_source, sandbox, inventory):
    inventory.token = "inventory-secret-1"
    source = services.push_mapping(
        source=make_source(source_auth="bearer", source_token="wrong-secret-2")
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    reasons = sandbox.execution(execution.assets_execution_id)["failure_reasons"]
    assert execution.state == Execution.State.FAILED
    assert "source 'inventory' answered 401" in execution.error
    assert "wrong-secret-2" not in execution.error
    assert reasons and all("wrong-secret-2" not in reason for reason in reasons)


def test_scrubbing_removes_tokens_url_credentials_and_bearer_values(make_source):
    source = make_source(source_token="s3cr3t-token")

    scrubbed = services.scrub_secrets(
        "GET https://bob:hunter2@host/x failed; token s3cr3t-token; "
        "Authorization: Bearer abcdefghijklmnop",
        source,
    )

    assert "hunter2" not in scrubbed
    assert "s3cr3t-token" not in scrubbed
    assert "abcdefghijklmnop" not in scrubbed
    assert SANDBOX_TOKEN not in services.scrub_secrets(f"echo {SANDBOX_TOKEN}", source)


def test_cancel_stops_the_execution_in_assets_too(pushed_source, sandbox, inventory):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)

    services.cancel_execution(execution=execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.CANCELLED
    assert sandbox.execution(execution.assets_execution_id)["state"] == "CANCELLED"
    assert execution.failure_reported_at is not None  # the page says Assets heard it
    assert not execution.chunks.filter(state=ChunkJob.State.QUEUED).exists()


def test_a_cancel_assets_could_not_hear_is_told_again_and_frees_the_source(
    pushed_source, sandbox, inventory
):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)
    sandbox.faults.add(method="DELETE", path_contains="/executions", status=503, times=-1)

    services.cancel_execution(execution=execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.CANCELLED
    assert execution.failure_report_pending  # Assets still counts it as running
    sandbox.faults.clear()
    inventory.faults.clear()
    # The source's next start tells Assets first, and so is not refused.
    second = services.start_import(source=pushed_source)
    assert sandbox.execution(execution.assets_execution_id)["state"] == "CANCELLED"
    second.refresh_from_db()
    assert second.state == Execution.State.DONE, second.error


def test_a_plain_500_from_assets_is_not_asked_again_when_so_configured(
    pushed_source, sandbox, settings
):
    settings.RETRY_HTTP_500 = False
    sandbox.faults.add(method="POST", path_contains="/executions", status=500, times=-1)

    with pytest.raises(services.ImportRefused, match="500"):
        services.start_import(source=pushed_source)

    starts = [path for method, path in sandbox.requests_log if path.endswith("/executions")]
    assert len(starts) == 1


def test_a_plugins_500_is_not_retried_either_when_so_configured(settings):
    from importer.sources import SourceError

    settings.RETRY_HTTP_500 = False

    assert SourceError("the CMDB answered 500", status=500, permanent=False).permanent


def test_a_plain_500_fails_at_once_when_so_configured(pushed_source, inventory, settings):
    settings.RETRY_HTTP_500 = False
    inventory.faults.add(method="GET", path_contains="/api/computers", status=500, times=1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.chunks.get(index=0).attempts == 1


def test_a_503_is_retried_later_with_its_reason_kept(pushed_source, inventory):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=1)

    execution = services.start_import(source=pushed_source)

    chunk = execution.chunks.get(index=0)
    assert chunk.state == ChunkJob.State.QUEUED
    assert chunk.last_error_kind
    assert chunk.next_attempt_at is not None
    # How many attempts the page gets in all, so a reader knows how long it may go on.
    assert chunk.error.startswith("attempt 1 of 5 failed: ")


def test_retry_failed_chunks_takes_up_a_failed_chunk_within_the_grace(
    pushed_source, sandbox, inventory, settings
):
    settings.FAILED_CHUNK_GRACE_SECONDS = 600
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=1)
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING
    assert execution.chunks.get(index=0).state == ChunkJob.State.FAILED

    assert services.retry_failed_chunks(execution=execution) == 1

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120


def test_a_page_assets_refused_and_an_operator_retried_counts_once_as_fetched(
    pushed_source, sandbox, settings
):
    settings.FAILED_CHUNK_GRACE_SECONDS = 600
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"data"', status=400, times=1
    )
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    refused = execution.chunks.get(state=ChunkJob.State.FAILED)  # whichever page came first
    held = min(pushed_source.page_size, 120 - refused.index * pushed_source.page_size)
    assert refused.record_count == held  # what it held, shown beside it

    assert services.retry_failed_chunks(execution=execution) == 1

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    pages = execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count()
    past_the_end = execution.chunks.filter(state=ChunkJob.State.SKIPPED).count()
    assert execution.pages_fetched == pages + past_the_end
    assert execution.records_fetched == 120


def test_retrying_the_chunks_of_an_import_failed_a_moment_ago_keeps_its_error(
    pushed_source, sandbox, inventory, settings
):
    settings.FAILED_CHUNK_GRACE_SECONDS = 600
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=1)
    execution = services.start_import(source=pushed_source)  # as the admin's list loaded it
    services.fail_execution(
        execution=Execution.objects.get(pk=execution.pk), reason="Chunk 1 failed: answered 404"
    )

    with pytest.raises(services.ImportEnded, match="still ingesting"):
        services.retry_failed_chunks(execution=execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error == "Chunk 1 failed: answered 404"
    assert execution.chunks.get(index=0).state == ChunkJob.State.FAILED


def test_a_stalled_import_is_flagged_and_failed_when_so_configured(
    pushed_source, sandbox, inventory, settings
):
    from datetime import timedelta

    from django.utils import timezone

    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    settings.FAIL_STALLED_EXECUTIONS = True

    services.flag_stalled_executions()

    execution.refresh_from_db()
    assert execution.stalled_since is not None
    assert execution.state == Execution.State.FAILED
    assert "no progress" in sandbox.execution(execution.assets_execution_id)["failure_reasons"][0]


def test_a_rate_limited_source_waits_for_its_slot(make_source, sandbox, settings):
    settings.CHUNK_RETRY_INLINE_MAX_SECONDS = 0
    source = services.push_mapping(source=make_source(max_requests_per_minute=1))

    execution = services.start_import(source=source)

    # One request per minute: the first page went at once, the next waits for its slot.
    waiting = execution.chunks.exclude(index=0).filter(state=ChunkJob.State.QUEUED).first()
    assert execution.chunks.get(index=0).state == ChunkJob.State.SUBMITTED
    assert waiting.last_error_kind == "rate_limited_by_us"
    assert waiting.next_attempt_at is not None


def test_a_source_limited_to_one_chunk_in_flight_runs_one_at_a_time(make_source, sandbox):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=1))

    execution = services.start_import(source=source)

    # Chunk 0 queued chunk 1 while it still ran: chunk 1 found the source busy and waits.
    second = execution.chunks.get(index=1)
    assert execution.chunks.get(index=0).state == ChunkJob.State.SUBMITTED
    assert second.state == ChunkJob.State.QUEUED and second.attempts == 0
    while queued := execution.chunks.filter(state=ChunkJob.State.QUEUED).first():
        services.process_chunk(chunk=queued)  # what the delayed retries do, one by one
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120


def test_assets_busy_at_the_start_is_retried_briefly(pushed_source, sandbox):
    sandbox.faults.add(method="POST", path_contains="/executions", status=503, times=1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE


def test_asking_for_a_later_run_again_never_fails_on_duplicate_names():
    from django_q.models import Schedule

    Schedule.objects.create(name="check-completion-7", func="x", schedule_type="O")
    Schedule.objects.create(name="check-completion-7", func="x", schedule_type="O")

    work_queue.enqueue_completion_check_after(7, 30)

    runs = Schedule.objects.filter(name="check-completion-7")
    assert runs.count() == 2
    assert set(runs.values_list("func", flat=True)) == {"importer.tasks.run_completion_check"}


def test_a_page_fetched_past_the_end_may_fail_without_failing_the_import(
    make_source, sandbox, inventory
):
    # Some APIs answer an offset beyond their last record with 404, not an empty page.
    inventory.faults.add(method="GET", path_contains="offset=125", status=404, times=-1)
    source = services.push_mapping(source=make_source(max_chunks_in_flight=4))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert execution.chunks.get(index=5).state == ChunkJob.State.SKIPPED


def test_a_page_inside_the_source_answering_that_it_has_no_such_page_fails_the_import(
    make_source, inventory
):
    # 404 past the first page reads as the source's end; the page after it says otherwise.
    inventory.faults.add(method="GET", path_contains="offset=50", status=404, times=-1)
    source = services.push_mapping(source=make_source(max_chunks_in_flight=4))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "The source's records ended with page 2" in execution.error
    assert "yet page 4 held 25 records" in execution.error


def test_a_page_no_parser_can_read_fails_its_chunk_and_frees_the_source(
    make_source, sandbox, inventory
):
    # JSON nested 100 000 deep: the parser gives up (RecursionError) on every attempt.
    inventory.faults.add(
        method="GET",
        path_contains="offset=50",
        status=200,
        body='{"items": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    )
    source = services.push_mapping(source=make_source(max_chunks_in_flight=4))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 3 failed: source 'inventory' sent a page whose JSON")
    assert "nested too deeply" in execution.error
    assert not execution.chunks.filter(state=ChunkJob.State.RUNNING).exists()
    again = services.start_import(source=source)  # the source is free for the next import
    again.refresh_from_db()
    assert again.state == Execution.State.DONE, again.error


def test_a_chunk_whose_attempts_are_used_up_is_failed_not_taken_up_again(
    pushed_source, sandbox, monkeypatch, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 3
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    execution = services.start_import(source=pushed_source)
    monkeypatch.undo()
    # What a page whose worker dies each time leaves behind: RUNNING, its lease run out, and
    # no attempt left.
    ChunkJob.objects.filter(execution=execution, index=0).update(
        state=ChunkJob.State.RUNNING,
        attempts=3,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    services.requeue_stalled_chunks()  # housekeeping: queues it, and the claim gives up

    chunk = execution.chunks.get(index=0)
    assert chunk.state == ChunkJob.State.FAILED and chunk.attempts == 3
    assert "in each of its 3 attempts (CHUNK_MAX_ATTEMPTS)" in chunk.error
    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 1 failed: its worker stopped without finishing it")
    assert sandbox.execution(execution.assets_execution_id)["failure_reasons"]


def test_an_error_taken_for_a_depth_limit_is_a_passing_one_when_later_pages_were_served(
    make_source,
):
    """The source answered 400 for offset 50 once, and the reader took it for a limit on how
    deep it pages; lanes had served offset 75 meanwhile, so it is this page's passing error:
    tried again, saying so, not "narrow what it lists"."""
    from importer.services.chunks import chunk_error, claim_chunk
    from importer.sources import SourceError

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=2, cursor="50")
    ChunkJob.objects.create(
        execution=execution, index=3, cursor="75", state=ChunkJob.State.SUBMITTED, record_count=25
    )
    assert claim_chunk(chunk)
    limit = SourceError(
        "source 'inventory' answered 400: offset 50 is broken. This came for record 50, right "
        "after a full page: the source refuses to be paged that deep",
        status=400,
        kind="depth_limit",
    )
    limit.answer = "source 'inventory' answered 400: offset 50 is broken"

    chunk_error(chunk, limit)

    chunk.refresh_from_db()
    assert chunk.state == ChunkJob.State.QUEUED  # tried again
    assert chunk.error.endswith(
        "answered 400: offset 50 is broken, though it served pages after this one"
    )


def test_a_page_run_again_leaves_the_page_ahead_it_made_to_its_holder(make_source, settings):
    """A worker died after recording its page; the page runs again and finds its lane's next
    page already made and claimed: that one is neither made twice nor taken over."""
    from importer.services.chunks import claim_chunk, queue_next_chunks

    settings.CHUNK_LANE_SECONDS = 20
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    execution = Execution.objects.create(source=source, state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=3, cursor="30")
    assert claim_chunk(chunk)
    first = queue_next_chunks(chunk, "40", 10, lanes=True, keep_next=True)
    assert first is not None and first.index == 5 and first.state == ChunkJob.State.RUNNING

    ChunkJob.objects.filter(pk=chunk.pk).update(lease_expires_at=None, state="QUEUED")
    assert claim_chunk(chunk)  # the second attempt
    again = queue_next_chunks(chunk, "40", 10, lanes=True, keep_next=True)

    assert again is None
    assert list(execution.chunks.filter(index=5).values_list("pk", "attempts")) == [(first.pk, 1)]


def test_the_first_page_opens_only_the_lanes_not_there_yet(make_source, settings, monkeypatch):
    from importer.services.chunks import claim_chunk, queue_next_chunks

    settings.CHUNK_LANE_SECONDS = 20
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=3))
    execution = Execution.objects.create(source=source, state=Execution.State.INGESTING)
    first_chunks = [
        ChunkJob.objects.create(execution=execution, index=index, cursor=str(index * 10))
        for index in range(3)
    ]
    queued = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", queued.append)
    assert claim_chunk(first_chunks[0])

    lane_next = queue_next_chunks(first_chunks[0], "10", 10, lanes=True, keep_next=True)

    # Pages 1 and 2 were there already (their lanes' tasks are queued); page 3 is this lane's.
    assert lane_next.index == 3 and lane_next.cursor == "30"
    assert ChunkJob.objects.get(pk=lane_next.pk).state == ChunkJob.State.RUNNING
    assert sorted(execution.chunks.values_list("index", flat=True)) == [0, 1, 2, 3]
    assert queued == []


def test_an_import_leaving_every_record_out_fails_and_counts_its_pages_in_time(
    make_source, sandbox, settings
):
    from datetime import timedelta

    from django.utils import timezone

    settings.CHUNK_LANE_SECONDS = 20
    began = timezone.now()
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    source.mapping["schema"]["objectSchema"]["objectTypes"][0]["attributes"][4]["type"] = "email"
    source.save()  # RAM GB now takes email addresses: every record is left out with a reason

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    # Nothing would reach Assets: that is no success, and the first reason says why.
    assert execution.state == Execution.State.FAILED
    assert "Every one of the 120 records the source gave was left out" in execution.error
    assert "expected an email address" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0
    assert (execution.pages_fetched, execution.records_fetched) >= (12, 120)
    assert (execution.pages_submitted, execution.records_submitted) == (12, 0)
    assert execution.records_skipped == 120
    assert execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() == 12
    assert "expected an email address" in execution.chunks.get(index=0).error
    # Times written by the lane read back as the moments they were, on any database.
    assert began <= execution.updated_at <= timezone.now() + timedelta(seconds=1)
    stamped = execution.chunks.filter(submitted_at__gte=began, updated_at__gte=began)
    assert stamped.filter(state=ChunkJob.State.SUBMITTED).count() == 12


def test_a_page_submitted_after_a_stall_was_flagged_clears_the_flag(pushed_source, sandbox):
    from django.utils import timezone

    from importer.services.chunks import claim_chunk, mark_submitted

    execution = Execution.objects.create(source=pushed_source, state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=0)
    Execution.objects.filter(pk=execution.pk).update(stalled_since=timezone.now())
    assert claim_chunk(chunk)

    mark_submitted(chunk, 25, ["record 3 (id=3): no value for 'serial'"])

    execution.refresh_from_db()
    assert execution.stalled_since is None
    assert (execution.pages_submitted, execution.records_submitted) == (1, 25)
    assert execution.records_skipped == 1
    chunk.refresh_from_db()
    assert (chunk.state, chunk.record_count, chunk.skipped_count) == ("SUBMITTED", 25, 1)
    assert chunk.lease_expires_at is None and chunk.submitted_at is not None


def test_a_selector_walking_into_a_list_no_record_has_fails_instead_of_ending_done_empty(
    make_source, sandbox
):
    # The records path copied into the selector: "computers.items" over records that have
    # no "items". Assets would make no object, and the import used to end DONE.
    source = make_source(page_size=50)
    source.mapping["mapping"]["objectTypeMappings"][0]["selector"] = "computers.items"
    source.save()
    source = services.push_mapping(source=source)

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "Every one of the 120 records the source gave was left out" in execution.error
    assert "no 'items' list for selector 'computers.items'" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


def test_an_import_cancelled_in_assets_fails_saying_so_and_tells_assets_nothing_more(
    pushed_source, sandbox, inventory
):
    import requests

    inventory.faults.add(method="GET", path_contains="offset=50", status=503, times=1)
    execution = services.start_import(source=pushed_source)  # page 3 waits for its retry
    cancel = (
        f"{sandbox.base_url}/jsm/assets/workspace/ws-1/v1/importsource/src-1/executions/"
        f"{execution.assets_execution_id}"
    )
    requests.delete(cancel, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}, timeout=5)
    told_before = len(sandbox.requests_log)

    execution = run_due_retries(execution)

    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith(
        "Assets ended the import itself while its pages were still being sent (it reports it "
        "CANCELLED: cancelled or timed out in Assets)"
    )
    told = [(method, path) for method, path in sandbox.requests_log[told_before:]]
    assert not [path for method, path in told if method == "DELETE" or "failed" in path]
    assert execution.failure_reported_at is not None  # nothing left to tell Assets


def test_a_mapping_changed_in_assets_since_its_push_is_pushed_over_and_the_import_says_so(
    pushed_source, sandbox
):
    edited = copy.deepcopy(pushed_source.mapping)
    edited["mapping"]["objectTypeMappings"][0]["selector"] = "machines"
    AssetsClient.for_source(pushed_source).put_mapping(edited)  # someone edits it in Assets

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert sandbox.mapping("ws-1", "src-1") == pushed_source.mapping
    assert execution.notice.startswith(
        "The mapping in Assets had been changed there since it was pushed from here, so this "
        "import pushed the source's own over it ("
    )
    assert "machines" in execution.notice


def _puts(sandbox) -> list:
    return [call for call in sandbox.requests_log if call[0] == "PUT"]


def test_a_mapping_unchanged_in_assets_is_not_pushed_again_import_after_import(
    make_source, demo_mapping, sandbox
):
    # Assets answers with its own rewriting of a mapping (ids added, an empty description
    # left out): that is no change made there.
    demo_mapping["schema"]["objectSchema"]["objectTypes"][0]["attributes"][0]["description"] = ""
    source = services.push_mapping(source=make_source(mapping=demo_mapping))
    assert sandbox.mapping_answer("ws-1", "src-1") != source.mapping
    pushes = _puts(sandbox)

    for _ in range(3):
        execution = services.start_import(source=source)

        execution.refresh_from_db()
        assert execution.state == Execution.State.DONE
        assert execution.notice == ""
    assert _puts(sandbox) == pushes


def test_a_mapping_changed_in_assets_is_pushed_over_once_with_a_notice(pushed_source, sandbox):
    edited = copy.deepcopy(pushed_source.mapping)
    edited["schema"]["objectSchema"]["objectTypes"][0]["attributes"][2]["name"] = "Sort"
    edited["mapping"]["objectTypeMappings"][0]["attributesMapping"][2]["attributeName"] = "Sort"
    AssetsClient.for_source(pushed_source).put_mapping(edited)  # someone edits it in Assets
    pushes = _puts(sandbox)

    first = services.start_import(source=pushed_source)
    second = services.start_import(source=pushed_source)

    first.refresh_from_db(), second.refresh_from_db()
    assert first.notice.startswith(
        "The mapping in Assets had been changed there since it was pushed from here, so this "
        "import pushed the source's own over it (object type 'Computer': attribute 'Sort' "
        "renamed to 'Kind')"
    )
    assert second.notice == ""
    assert len(_puts(sandbox)) == len(pushes) + 1
    assert sandbox.mapping("ws-1", "src-1") == pushed_source.mapping


def test_a_change_in_assets_the_comparison_does_not_name_is_pushed_over_all_the_same(
    pushed_source, sandbox
):
    edited = copy.deepcopy(pushed_source.mapping)
    edited["mapping"]["objectTypeMappings"][0]["description"] = "Edited in Assets"
    AssetsClient.for_source(pushed_source).put_mapping(edited)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert "pushed the source's own over it (a change in fields not compared here)" in (
        execution.notice
    )
    assert sandbox.mapping("ws-1", "src-1") == pushed_source.mapping


def test_a_mapping_pulled_from_assets_is_not_pushed_back_at_the_next_import(pushed_source, sandbox):
    edited = copy.deepcopy(pushed_source.mapping)
    edited["schema"]["objectSchema"]["description"] = "Edited in Assets"
    AssetsClient.for_source(pushed_source).put_mapping(edited)
    remote, _ = services.pull_mapping(source=pushed_source)
    services.replace_mapping(source=pushed_source, document=remote, pushed=True)
    pushes = _puts(sandbox)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.notice == ""
    assert _puts(sandbox) == pushes


def test_a_source_pushed_before_the_answer_was_kept_takes_assets_answer_without_a_push(
    pushed_source, sandbox
):
    ImportSource.objects.filter(pk=pushed_source.pk).update(mapping_digest_in_assets="")
    pushed_source.refresh_from_db()
    pushes = _puts(sandbox)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.notice == ""
    assert _puts(sandbox) == pushes
    pushed_source.refresh_from_db()
    assert pushed_source.mapping_digest_in_assets == services.mappings.mapping_digest(
        sandbox.mapping_answer("ws-1", "src-1")
    )


def test_a_mapping_removed_in_assets_is_pushed_again_with_a_notice(pushed_source, sandbox):
    sandbox.faults.add(method="GET", path_contains="/schema-and-mapping", status=404)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert "mapping for 'Computer' added" in execution.notice


def test_a_mapping_assets_cannot_show_now_is_logged_without_secrets_and_the_import_goes_on(
    pushed_source, sandbox, caplog
):
    sandbox.faults.add(
        method="GET",
        path_contains="/schema-and-mapping",
        status=403,
        body=f'{{"errorMessages": ["token {SANDBOX_TOKEN} may not read this"]}}',
    )
    pushes = _puts(sandbox)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert _puts(sandbox) == pushes
    [logged] = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert logged.startswith(
        f"source {pushed_source.pk}: the mapping in Assets could not be read to check it for "
        "changes: "
    )
    assert "may not read this" in logged
    assert SANDBOX_TOKEN not in logged


def with_a_placeholder_naming_no_field(mapping: dict) -> dict:
    """The mapping finding its owners by a field no locator reads: refused by a rule newer
    than mappings stored before it."""
    owner = mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][6]
    owner["objectMappingIQL"] = "Email = ${owner_email}"
    return mapping


def test_a_mapping_stored_before_a_newer_rule_still_imports_noting_what_it_breaks(
    pushed_source, sandbox
):
    stored = with_a_placeholder_naming_no_field(pushed_source.mapping)
    ImportSource.objects.filter(pk=pushed_source.pk).update(mapping=stored, mapping_pushed_at=None)
    pushed_source.refresh_from_db()

    first = services.start_import(source=pushed_source)  # pushes it, then imports
    second = services.start_import(source=pushed_source)

    assert sandbox.mapping("ws-1", "src-1") == stored
    for execution in (first, second):
        execution.refresh_from_db()
        assert execution.state == Execution.State.DONE
        assert execution.notice == (
            "The mapping breaks rules newer than it, which refuse it when it is next saved or "
            "pushed: mapping.objectTypeMappings[0].attributesMapping[6].objectMappingIQL: "
            "placeholder '${owner_email}' names no field of the attributeLocators of its "
            "object type mapping ('serial', 'hostname', 'kind', 'model', 'ram_gb', 'os', "
            "'owner', 'purchased'), so Assets would find no object for it and set no "
            "reference: write ${owner} (or another of them), or add 'owner_email' to this "
            "attribute's attributeLocators. It imports as before until then: mend it on the "
            "source's page."
        )


def test_a_mapping_breaking_a_newer_rule_is_not_pushed(make_source, demo_mapping, sandbox):
    source = make_source(mapping=with_a_placeholder_naming_no_field(demo_mapping))

    with pytest.raises(services.MappingInvalid, match=r"placeholder '\$\{owner_email\}'"):
        services.push_mapping(source=source)

    assert sandbox.mapping("ws-1", "src-1") is None


def test_a_stored_mapping_breaking_an_older_rule_still_refuses_the_import(pushed_source):
    mapping = with_a_placeholder_naming_no_field(pushed_source.mapping)
    mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][5]["attributeLocators"] = [
        "os.name"
    ]
    ImportSource.objects.filter(pk=pushed_source.pk).update(mapping=mapping)
    pushed_source.refresh_from_db()

    with pytest.raises(services.ImportRefused, match="'os.name' has a dot"):
        services.start_import(source=pushed_source)


def test_a_misspelled_locator_of_a_nested_selector_is_noted_on_the_import(
    computers_with_disks, sandbox
):
    source = computers_with_disks()
    disk = source.mapping["mapping"]["objectTypeMappings"][1]["attributesMapping"][1]
    disk["attributeLocators"] = ["sizegb"]
    source.save()

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE  # the disks arrive, without a size
    assert execution.notice.startswith(
        "No record of the first page holds 'sizegb' (attribute Size, computers.disks): if it "
        "is misspelled in the mapping's attribute locators"
    )


def test_a_mapping_assets_still_holds_as_pushed_is_not_pushed_again(pushed_source, sandbox):
    pushes_before = [call for call in sandbox.requests_log if call[0] == "PUT"]

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.notice == ""
    assert [call for call in sandbox.requests_log if call[0] == "PUT"] == pushes_before


def import_computers(
    make_source, demo_mapping, computer, *, records: int = 30, page_size: int = 25
) -> Execution:
    """An import of `records` computers with their disks (a nested selector), made by
    `computer`, read in pages of `page_size`."""
    server = FakeSource(records=records, record=computer).start()
    try:
        source = make_source(
            source_url=f"{server.base_url}/api/offset",
            records_path="data.items",
            limit_param="limit",
            page_size=page_size,
            mapping=with_tags_flag_and_disks(demo_mapping),
        )
        execution = services.start_import(source=services.push_mapping(source=source))
    finally:
        server.stop()
    execution.refresh_from_db()
    return execution


def test_a_disk_without_its_serial_is_left_out_alone_and_named_in_its_pages_error(
    make_source, demo_mapping, sandbox
):
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        if i == 3:
            record["disks"].append({"size_gb": 128})  # no serial: no identity
        return record

    execution = import_computers(make_source, demo_mapping, computer)

    assert execution.state == Execution.State.DONE
    assert (execution.records_submitted, execution.records_skipped) == (30, 0)
    objects = sandbox.execution(execution.assets_execution_id)["objects"]
    assert any("SN-00003" in key for key in objects)
    [error] = execution.chunks.exclude(error="").values_list("error", flat=True)
    assert error == (
        "record 3 (serial=SN-00003): left out 'disks[1]': no value for 'disks[1].serial', "
        "which identifies the object in selector 'computers.disks'"
    )


def test_disks_left_out_alone_are_counted_on_the_import_and_its_page(
    make_source, demo_mapping, sandbox
):
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        if i in (3, 7):
            record["disks"].append({"size_gb": 128})  # no serial: no identity
        return record

    execution = import_computers(make_source, demo_mapping, computer)

    assert execution.state == Execution.State.DONE
    assert (execution.records_skipped, execution.items_skipped) == (0, 2)
    [chunk] = execution.chunks.exclude(items_skipped_count=0)
    assert (chunk.index, chunk.skipped_count, chunk.items_skipped_count) == (0, 0, 2)


@pytest.mark.parametrize("page_size", [2, 50])
def test_an_import_whose_every_disk_lost_its_serial_at_the_source_fails_saying_so(
    make_source, demo_mapping, sandbox, page_size
):
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        for disk in record["disks"]:
            disk["serial_number"] = disk.pop("serial")  # renamed at the source
        return record

    execution = import_computers(
        make_source, demo_mapping, computer, records=100, page_size=page_size
    )

    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith(
        "Every one of the 100 items of selector 'computers.disks' the source gave was left "
        "out of its record, so Assets would have received none (the first: record 1 "
        "(serial=SN-00001): left out 'disks[0]': no value for 'disks[0].serial', which "
        "identifies the object in selector 'computers.disks')."
    )
    assert "change the mapping's attribute locators of that selector" in execution.error
    assert (execution.records_submitted, execution.items_skipped) == (100, 100)
    assets_side = sandbox.execution(execution.assets_execution_id)
    assert assets_side["completed_posts"] == 0 and assets_side["state"] == "FAILED"
    assert assets_side["failure_reasons"][0].startswith("Every one of the 100 items")


def test_an_import_whose_every_disk_was_left_out_names_the_first_on_a_page_of_many_left_out(
    make_source, demo_mapping, sandbox
):
    # The page's error keeps its first 50 reasons: the 60 records left out fill it.
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        if i <= 60:
            del record["serial"]
        for disk in record["disks"]:
            disk["serial_number"] = disk.pop("serial")
        return record

    execution = import_computers(make_source, demo_mapping, computer, records=100, page_size=100)

    assert execution.state == Execution.State.FAILED
    assert (execution.records_skipped, execution.items_skipped) == (60, 40)
    assert execution.error.startswith(
        "Every one of the 40 items of selector 'computers.disks' the source gave was left "
        "out of its record, so Assets would have received none (the first: record 61 "
        "(serial=SN-00061): left out 'disks[0]': no value for 'disks[0].serial', which "
        "identifies the object in selector 'computers.disks')."
    )


@pytest.mark.parametrize("page_size", [2, 50])
def test_a_page_of_a_few_bad_disks_and_no_good_one_imports_when_other_pages_send_disks(
    make_source, demo_mapping, sandbox, page_size
):
    # In pages of 50, the first page holds three disks without a serial and no other disk;
    # the second page's disks are sent: bad disks, not a field renamed at the source.
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        if i <= 50:
            record["disks"] = [{"size_gb": 128}] if i in (3, 17, 40) else []
        return record

    execution = import_computers(
        make_source, demo_mapping, computer, records=100, page_size=page_size
    )

    assert execution.state == Execution.State.DONE
    assert (execution.records_submitted, execution.records_skipped) == (100, 0)
    assert execution.items_skipped == 3


def test_an_import_leaving_out_its_only_two_disks_imports_counting_them(
    make_source, demo_mapping, sandbox
):
    # Two disks, both bad, in the whole import: too few to tell a field renamed.
    def computer(i: int) -> dict:
        record = computer_with_disks(i)
        record["disks"] = [{"size_gb": 128}] if i in (3, 27) else []
        return record

    execution = import_computers(make_source, demo_mapping, computer)

    assert execution.state == Execution.State.DONE
    assert execution.items_skipped == 2


def test_an_import_under_way_at_the_upgrade_is_not_failed_for_pages_that_did_not_count_items(
    make_source,
):
    from importer.services.totals import every_nested_item_left_out

    execution = Execution.objects.create(source=make_source(), items_skipped=3, last_chunk_index=1)
    submitted = ChunkJob.State.SUBMITTED
    before = ChunkJob.objects.create(execution=execution, index=0, state=submitted)
    ChunkJob.objects.create(
        execution=execution,
        index=1,
        state=submitted,
        items_skipped_count=3,
        nested_items={"computers.disks": [0, 3]},  # as written before reasons were kept
    )

    # The page recorded by the release before may have sent disks: nothing tells.
    assert every_nested_item_left_out(execution) == ""
    ChunkJob.objects.filter(pk=before.pk).update(nested_items={})
    assert every_nested_item_left_out(execution).startswith(
        "Every one of the 3 items of selector 'computers.disks' the source gave was left out"
    )


def test_notes_made_on_an_import_are_all_kept_within_the_length_its_page_keeps(make_source):
    execution = Execution.objects.create(source=make_source())
    imports = Execution.objects.of(execution)

    imports.add_notice("The mapping was changed in Assets: pushed ours over.")
    imports.add_notice("")
    imports.add_notice("No record of the first page holds 'serail'.")
    execution.refresh_from_db()
    assert execution.notice == (
        "The mapping was changed in Assets: pushed ours over.\n"
        "No record of the first page holds 'serail'."
    )

    imports.add_notice("No record of the first page holds 'serail'.")  # a page read again
    imports.add_notice("The mapping was changed in Assets: pushed ours over.")
    execution.refresh_from_db()
    assert execution.notice.count("\n") == 1

    imports.add_notice("x" * 1990)  # no longer fits: the lines held are kept whole
    execution.refresh_from_db()
    assert execution.notice.count("\n") == 1 and "x" not in execution.notice

    execution = Execution.objects.create(source=make_source(name="another"))
    Execution.objects.of(execution).add_notice("y" * 3000)
    execution.refresh_from_db()
    assert execution.notice == "y" * 2000


def test_a_source_whose_reader_refuses_a_stored_setting_fails_the_import_saying_which(
    pushed_source,
):
    # Saved before the form checked it: certificates cut short. The reader refuses them as
    # it is built, before any page is read; that used to leave the import INGESTING.
    ImportSource.objects.filter(pk=pushed_source.pk).update(
        ca_bundle="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    pushed_source.refresh_from_db()

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "misconfigured: the trusted CA certificates do not read as PEM certificates" in (
        execution.error
    )
    assert execution.chunks.get(index=0).state == ChunkJob.State.FAILED


class SignsInOverTheNetwork:
    """A plug-in that signs in as it starts, and finds its API out of reach."""

    def __init__(self, *, import_source, options) -> None:
        raise ConnectionError("the sign-in API is out of reach")

    def fetch_page(self, cursor: str):
        raise AssertionError("never reached")


class ReadsItsTableAsItStarts:
    """A plug-in that reads a table of its own as it starts, while the database restarts."""

    def __init__(self, *, import_source, options) -> None:
        from django.db import OperationalError

        raise OperationalError("server closed the connection unexpectedly")

    def fetch_page(self, cursor: str):
        raise AssertionError("never reached")


@pytest.mark.parametrize(
    "plugin, reason",
    [
        (SignsInOverTheNetwork, "ConnectionError: the sign-in API is out of reach"),
        (ReadsItsTableAsItStarts, "OperationalError: server closed the connection"),
    ],
)
def test_a_plugin_failing_to_start_on_something_that_may_pass_has_its_page_tried_again(
    pushed_source, settings, plugin, reason
):
    # Its API out of reach, its database restarting: the page is tried again later, as one
    # whose request failed so, rather than the import failing for good at once.
    settings.IMPORT_SOURCE_PLUGINS = {"starting": f"{__name__}.{plugin.__name__}"}
    ImportSource.objects.filter(pk=pushed_source.pk).update(source_kind="plugin", plugin="starting")
    pushed_source.refresh_from_db()

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    chunk = execution.chunks.get(index=0)
    assert execution.state == Execution.State.INGESTING
    assert chunk.state == ChunkJob.State.QUEUED
    assert f"could not start ({reason}" in chunk.error
