"""An import is DONE as soon as Assets is: the last page sets the completion going, and Assets'
processing is followed with reads that start quick and space out."""

import html
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from importer import services, work_queue
from importer.devtools.demo_source import DemoInventory
from importer.models import ChunkJob, Execution
from importer.services import processing
from tests.conftest import run_retries_now, wait_for, wait_for_execution_to_finish

pytestmark = pytest.mark.django_db(transaction=True)

LATER_RUNS = ("check-completion-", "refresh-status-")


@pytest.fixture
def inventory():
    server = DemoInventory(records=300).start()
    yield server
    server.stop()


def later_runs():
    return [
        name
        for name in Schedule.objects.values_list("name", flat=True)
        if name.startswith(LATER_RUNS)
    ]


def test_a_small_import_is_done_within_seconds_of_assets_finishing(make_source, sandbox, cluster):
    sandbox.processing_seconds = 0.2
    source = services.push_mapping(source=make_source(page_size=50))

    started = time.monotonic()
    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)
    took = time.monotonic() - started

    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 300
    # Every page was in within a second or so; no step waited for a schedule.
    assert took < 10, f"DONE after {took:.1f} s"
    assert later_runs() == []


def test_the_next_import_starts_right_after_the_previous_is_done(make_source, sandbox, cluster):
    sandbox.processing_seconds = 0.2
    source = services.push_mapping(source=make_source(page_size=50))
    began = time.monotonic()
    first = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)
    assert first.state == Execution.State.DONE, first.error

    second = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)

    assert second.state == Execution.State.DONE, second.error
    assert [entry["state"] for entry in sandbox.executions("src-1")] == ["DONE", "DONE"]
    assert time.monotonic() - began < 20


def test_the_lane_that_takes_the_last_page_completes_the_import_itself(
    make_source, sandbox, monkeypatch
):
    queued_chunks = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", queued_chunks.append)
    # A completion check queued meanwhile (by a page recorded mid-lane) never runs here.
    monkeypatch.setattr(work_queue, "enqueue_completion_check", lambda execution_id: None)
    source = services.push_mapping(source=make_source(page_size=20, max_chunks_in_flight=2))
    execution = services.start_import(source=source)

    # Two lanes, each taken by a worker of its own: pages 0, 2, 4, ... and 1, 3, 5, ...
    for chunk_id in list(queued_chunks):
        services.process_chunk(
            chunk=ChunkJob.objects.select_related("execution__source").get(pk=chunk_id)
        )

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 1


def test_the_lane_that_records_the_last_page_completes_the_import_without_the_queue(
    make_source, sandbox, monkeypatch
):
    # 300 records in pages of 100 on two lanes: pages 0, 2, 4 and 1, 3. Their tasks are held
    # back and run one after the other, so the second lane records the last page.
    source = services.push_mapping(source=make_source(page_size=100, max_chunks_in_flight=2))
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    checks_queued = []
    monkeypatch.setattr(work_queue, "enqueue_completion_check", checks_queued.append)
    execution = services.start_import(source=source)

    for index in (0, 1):
        chunk = execution.chunks.select_related("execution__source").get(index=index)
        services.process_chunk(chunk=chunk)
        if index == 0:
            execution.refresh_from_db()
            assert execution.state == Execution.State.INGESTING  # page 1 is not in yet

    # The second lane saw that its page completed the import, left the page it held past
    # the end, and posted "completed" itself: no check went through the queue.
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert checks_queued == []
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["completed_posts"] == 1 and len(remote["objects"]) == 300
    states = dict(execution.chunks.values_list("index", "state"))
    assert {index for index, state in states.items() if state == "SUBMITTED"} == {0, 1, 2}
    assert {state for index, state in states.items() if index > 2} == {"SKIPPED"}


def _ingesting_with_pages(source, states, *, last_chunk_index=None):
    execution = Execution.objects.create(
        source=source,
        state=Execution.State.INGESTING,
        assets_execution_id="remote-1",
        last_chunk_index=last_chunk_index,
    )
    ChunkJob.objects.bulk_create(
        ChunkJob(execution=execution, index=index, state=state, cursor=str(index))
        for index, state in enumerate(states)
    )
    return execution


@pytest.mark.parametrize(
    "states, last_chunk_index, due",
    [
        # The end is not known yet: more pages may come, whatever is done.
        (["SUBMITTED", "SUBMITTED"], None, False),
        # The end is known and every page up to it is in.
        (["SUBMITTED", "SUBMITTED", "SKIPPED"], 1, True),
        # A page past the end still going holds the import back: it should come back empty,
        # and if it holds records the end is wrong (the check fails the import).
        (["SUBMITTED", "SUBMITTED", "RUNNING"], 1, False),
        (["SUBMITTED", "SUBMITTED", "QUEUED"], 1, False),
        # So does a page up to the end still queued or running.
        (["SUBMITTED", "QUEUED", "SKIPPED"], 1, False),
        (["RUNNING", "SUBMITTED"], 1, False),
        # A failed page with nothing else going: the check decides (it fails the import).
        (["SUBMITTED", "FAILED"], None, True),
        (["FAILED", "RUNNING"], None, False),
    ],
)
def test_an_import_is_due_for_completion_once_its_end_is_known_and_no_page_is_going(
    make_source, states, last_chunk_index, due
):
    execution = _ingesting_with_pages(make_source(), states, last_chunk_index=last_chunk_index)

    assert services.completion.completion_is_due(execution.pk) is due


def test_an_import_no_longer_ingesting_is_not_due_for_completion(make_source):
    execution = _ingesting_with_pages(make_source(), ["SUBMITTED"], last_chunk_index=0)
    Execution.objects.filter(pk=execution.pk).update(state=Execution.State.CANCELLED)

    assert services.completion.completion_is_due(execution.pk) is False


def test_asking_whether_an_import_is_complete_costs_one_statement_however_many_pages_are_done(
    make_source,
):
    # Every lane asks as it ends, so the question must not cost more as the import grows:
    # one statement, looking only at the pages still going.
    execution = _ingesting_with_pages(make_source(), ["SUBMITTED"] * 2000 + ["RUNNING"])

    with CaptureQueriesContext(connection) as queries:
        assert services.completion.completion_is_due(execution.pk) is False
        Execution.objects.filter(pk=execution.pk).update(last_chunk_index=1999)
        execution.chunks.filter(index=2000).update(state=ChunkJob.State.SKIPPED)
        assert services.completion.completion_is_due(execution.pk) is True

    statements = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(statements) == 2, statements


def test_assets_finishing_quickly_is_seen_within_a_fraction_of_a_second(pushed_source, sandbox):
    sandbox.processing_seconds = 0.3

    execution = services.start_import(source=pushed_source)  # tasks run inline here

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    seen_after = (execution.finished_at - execution.completed_at).total_seconds()
    assert 0.3 <= seen_after < 1.0
    status_reads = [path for method, path in sandbox.requests_log if path.endswith("/status")]
    assert len(status_reads) <= 4


def test_a_long_processing_phase_is_followed_later_without_holding_a_worker(pushed_source, sandbox):
    sandbox.processing_seconds = 600

    began = time.monotonic()
    execution = services.start_import(source=pushed_source)  # tasks run inline here
    held = time.monotonic() - began

    execution.refresh_from_db()
    assert execution.state == Execution.State.PROCESSING
    assert held < 10  # a few short reads in the worker, then it is free again
    status_reads = [path for method, path in sandbox.requests_log if path.endswith("/status")]
    assert 3 <= len(status_reads) <= 7
    follow_up = Schedule.objects.get(name=f"refresh-status-{execution.pk}")
    assert follow_up.next_run - timezone.now() < timedelta(seconds=10)


def test_an_import_assets_is_writing_is_not_cancelled_and_ends_as_assets_reports(
    pushed_source, sandbox
):
    # Cancelled now, Assets may write the records all the same: the history would say
    # CANCELLED of an import whose records all arrived.
    sandbox.processing_seconds = 600
    execution = services.start_import(source=pushed_source)  # tasks run inline here
    execution.refresh_from_db()
    assert execution.state == Execution.State.PROCESSING

    with pytest.raises(services.NotCancellable) as too_late:
        services.cancel_execution(execution=execution)

    assert str(too_late.value).startswith(
        f"Import #{execution.pk} can no longer be cancelled: every page was sent at "
    )
    assert str(too_late.value).endswith(
        "and Assets is writing the records. Its outcome shows here once Assets reports it."
    )
    sent_at = timezone.localtime(execution.completed_at)
    assert f"sent at {sent_at:%H:%M:%S} {sent_at:%Z}, and Assets" in str(too_late.value)
    assert not any(method == "DELETE" for method, _ in sandbox.requests_log)
    sandbox._finish_processing(execution.assets_execution_id)  # Assets has written them
    execution = services.refresh_status(execution=execution)
    assert execution.state == Execution.State.DONE


def test_a_processing_phase_of_seconds_is_seen_done_seconds_later(make_source, sandbox, cluster):
    # Longer than the reads a worker makes itself: the next ones are delayed tasks, which the
    # cluster sends on time (django-q2's own scheduler looks only every 30 s).
    sandbox.processing_seconds = 6
    source = services.push_mapping(source=make_source())

    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=90)

    assert execution.state == Execution.State.DONE, execution.error
    seen_after = (execution.finished_at - execution.completed_at).total_seconds()
    assert 6 <= seen_after < 14, f"DONE seen {seen_after:.1f} s after completed"


def test_a_completed_post_whose_answer_was_lost_is_not_taken_for_a_refusal(
    make_source, sandbox, cluster
):
    # Assets took "completed" but a proxy dropped the answer; the post sent again is refused
    # (the execution is no longer ingesting), which must not fail an import Assets has done.
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    source = services.push_mapping(source=make_source(page_size=50))

    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["state"] == "DONE" and len(remote["objects"]) == 300
    assert remote["failure_reasons"] == []


def test_a_lost_completed_answer_then_a_passing_status_error_is_asked_again(
    make_source, sandbox, cluster
):
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    # The read that tells whether the refused second post had been taken fails once.
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=1)
    source = services.push_mapping(source=make_source(page_size=50))

    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)

    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["failure_reasons"] == []


def test_a_refused_completed_post_is_sent_again_when_assets_reports_a_word_it_does_not_know(
    make_source, sandbox, cluster
):
    # "completed" answered 503; Assets' status says RUNNING, which does not tell whether it
    # took it: it is posted again, not taken for accepted (the import would wait a day).
    sandbox.status_words = {"INGESTING": "RUNNING"}
    sandbox.faults.add(method="POST", path_contains="/data", body_contains='"completed"')
    source = services.push_mapping(source=make_source(page_size=50))

    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["completed_posts"] == 1 and len(remote["objects"]) == 300


def test_completed_taken_though_its_answer_was_lost_is_followed_whatever_word_assets_uses(
    make_source, sandbox, cluster
):
    # Posted again, "completed" is refused: Assets no longer ingests, whatever it calls that,
    # and the import follows its processing (not post again until it gives up).
    sandbox.status_words = {"PROCESSING": "IN_PROGRESS"}
    sandbox.processing_seconds = 600
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    source = services.push_mapping(source=make_source(page_size=50))
    execution = services.start_import(source=source)

    wait_for(
        lambda: Execution.objects.get(pk=execution.pk).state == Execution.State.PROCESSING,
        timeout=30,
        message="still posting 'completed' to an execution Assets is processing",
    )
    assert sandbox.execution(execution.assets_execution_id)["state"] == "PROCESSING"


def test_a_completed_post_left_unanswered_is_followed_at_once_when_assets_took_it(
    pushed_source, sandbox
):
    # A proxy timed out on the way back: Assets' status tells it took "completed", so the
    # import follows the processing instead of going back to ingesting for a later post.
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )

    execution = services.start_import(source=pushed_source)  # tasks run inline here

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert execution.completion_attempts == 0
    assert later_runs() == []


def lose_the_answer_to_completed_and_one_status_read(sandbox):
    """ "completed" taken but its answer lost, and the read that would tell so failing: the
    import goes back to ingesting, "completed" to be posted again later."""
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=1)


def test_an_import_assets_took_completed_for_is_not_cancelled_though_its_answer_was_lost(
    pushed_source, sandbox
):
    sandbox.processing_seconds = 600
    lose_the_answer_to_completed_and_one_status_read(sandbox)
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING  # handed back: cancellable, so far

    with pytest.raises(services.NotCancellable) as too_late:
        services.cancel_execution(execution=execution)

    assert str(too_late.value) == (
        f"Import #{execution.pk} can no longer be cancelled: every page was sent, and Assets "
        "took 'completed' (it reports PROCESSING). Its outcome shows here once Assets "
        "reports it."
    )
    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING
    assert not any(method == "DELETE" for method, _ in sandbox.requests_log)
    assert sandbox.execution(execution.assets_execution_id)["state"] == "PROCESSING"


def test_an_import_is_not_cancelled_while_assets_cannot_say_whether_it_took_completed(
    pushed_source, sandbox
):
    lose_the_answer_to_completed_and_one_status_read(sandbox)
    execution = services.start_import(source=pushed_source)
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=-1)

    with pytest.raises(services.NotCancellable) as unknown:
        services.cancel_execution(execution=execution)

    assert str(unknown.value).startswith(
        f"Import #{execution.pk} was not cancelled: every page was sent and 'completed' "
        "posted, but Assets' answer did not arrive, and Assets cannot say now whether it "
        "took it ("
    )
    assert str(unknown.value).endswith("try again in a minute if it has not ended.")
    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING
    assert not any(method == "DELETE" for method, _ in sandbox.requests_log)


def test_an_import_whose_completed_assets_did_not_take_can_still_be_cancelled(
    pushed_source, sandbox
):
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', status=503, times=1
    )
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    assert (execution.state, execution.completion_attempts) == (Execution.State.INGESTING, 1)

    execution = services.cancel_execution(execution=execution)

    assert execution.state == Execution.State.CANCELLED
    assert sandbox.execution(execution.assets_execution_id)["state"] == "CANCELLED"


def test_one_status_read_answered_404_is_read_again_and_the_import_ends_done(
    pushed_source, sandbox
):
    # A replica or a cache behind Assets' API that has not caught up with the execution.
    sandbox.faults.add(method="GET", path_contains="/status", status=404, times=1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error


def test_an_execution_assets_no_longer_knows_ends_failed_instead_of_processing_for_ever(
    pushed_source, sandbox, monkeypatch
):
    monkeypatch.setattr(processing, "STATUS_MISSING_FAILS_AFTER", 0.5)  # minutes, really
    sandbox.faults.add(method="GET", path_contains="/status", status=404, times=-1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "Assets does not know this workspace, import source or execution (404)" in (
        execution.error
    )
    # Its source is free again.
    sandbox.faults.clear()
    assert services.start_import(source=pushed_source).pk != execution.pk


def test_a_status_word_assets_never_ends_shows_and_ends_failed_after_the_timeout(
    pushed_source, sandbox, settings
):
    sandbox.faults.add(
        method="GET", path_contains="/status", status=200, body='{"status": "ABORTED"}', times=-1
    )
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    assert execution.state == Execution.State.PROCESSING
    assert "Assets reports the import 'ABORTED', not (yet) DONE or FAILED" in execution.error

    settings.PROCESSING_TIMEOUT_SECONDS = 0
    services.refresh_status(execution=execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "Assets reported no outcome within 0 h of 'completed'" in execution.error


def test_an_import_cancelled_in_assets_ends_failed_and_is_told_to_the_channels(
    pushed_source, sandbox
):
    # Someone cancelled it in Assets' UI, or Assets timed it out: nobody here asked for it.
    from importer.models import Alert, NotificationChannel

    NotificationChannel.objects.create(
        name="chat", kind="webhook", webhook_url="http://127.0.0.1:9/hook", all_sources=True
    )
    sandbox.faults.add(
        method="GET", path_contains="/status", status=200, body='{"status": "CANCELLED"}', times=-1
    )

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error == "Assets reports the import CANCELLED"
    assert Alert.objects.get(execution=execution).kind == Alert.Kind.FAILED


@pytest.mark.parametrize("body", ["<html>maintenance</html>", '{"progress": 50}'])
def test_a_status_answer_without_a_status_shows_why_on_the_import(pushed_source, sandbox, body):
    sandbox.faults.add(method="GET", path_contains="/status", status=200, body=body, times=-1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.PROCESSING
    assert "Assets answered without a status" in execution.error


def test_completed_that_assets_never_takes_ends_the_import_failed_after_its_attempts(
    make_source, sandbox, start_cluster
):
    start_cluster(COMPLETION_MAX_ATTEMPTS="3")
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', status=503, times=-1
    )
    source = services.push_mapping(source=make_source(page_size=50))

    execution = wait_for_execution_to_finish(services.start_import(source=source), timeout=60)

    assert execution.state == Execution.State.FAILED
    assert "Assets did not take 'completed' in 3 attempts" in execution.error
    assert execution.completion_attempts == 2  # handed back twice, given up on the third


def test_an_import_assets_failed_says_the_reason_assets_gives(pushed_source, sandbox):
    sandbox.faults.add(
        method="GET",
        path_contains="/status",
        status=200,
        body='{"status": "FAILED", "failureReason": "Object type Laptop was deleted"}',
        times=-1,
    )

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error == "Assets reports the import FAILED: Object type Laptop was deleted"


def test_a_lost_completed_then_a_status_read_assets_answers_404_once_ends_done_not_cancelled(
    pushed_source, sandbox
):
    # A replica that lags answers the read after the refused second post with 404: that
    # says nothing of "completed", and Assets, which took it, must not be told to cancel.
    lose_the_answer_to_completed_and_one_status_read(sandbox)
    execution = services.start_import(source=pushed_source)
    sandbox.faults.add(method="GET", path_contains="/status", status=404, times=1)
    services.check_completion(execution=execution)  # refused, and the read says nothing

    execution = services.check_completion(execution=execution)  # refused, and read: taken

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["state"] == "DONE" and len(remote["objects"]) == 300
    assert remote["failure_reasons"] == []


def test_completed_unconfirmed_when_its_attempts_run_out_is_followed_not_failed(
    pushed_source, sandbox, settings
):
    # Every read of the status fails while "completed" is posted again and again: Assets may
    # have taken the first, so the import follows its status instead of failing and
    # cancelling an execution that may be writing the records.
    settings.COMPLETION_MAX_ATTEMPTS = 2
    sandbox.processing_seconds = 600
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=-1)
    execution = services.start_import(source=pushed_source)

    execution = services.check_completion(execution=execution)

    assert execution.state == Execution.State.PROCESSING, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["state"] == "PROCESSING" and remote["failure_reasons"] == []


def test_completed_refused_for_a_rate_limit_waits_as_asked_beyond_the_attempts_of_errors(
    pushed_source, sandbox, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 3
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains='"completed"',
        status=429,
        retry_after="1",
        times=4,
    )
    execution = services.start_import(source=pushed_source)
    for _ in range(3):
        execution = services.check_completion(execution=execution)
        assert execution.state == Execution.State.INGESTING, execution.error

    execution = services.check_completion(execution=execution)

    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["failure_reasons"] == []


def test_an_import_assets_reports_completed_with_errors_fails_with_its_word(pushed_source, sandbox):
    sandbox.status_words = {"DONE": "COMPLETED_WITH_ERRORS"}

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Assets reports the import COMPLETED_WITH_ERRORS")


def test_an_import_whose_status_word_is_unknown_is_flagged_stalled_once(
    pushed_source, sandbox, settings, monkeypatch
):
    from importer import notifications

    settings.STALLED_AFTER_SECONDS = 0
    sandbox.status_words = {"PROCESSING": "WEIGHING"}
    sandbox.processing_seconds = 600
    told = []
    monkeypatch.setattr(notifications, "notify_execution_stalled", told.append)
    execution = services.start_import(source=pushed_source)

    for _ in range(2):
        execution = services.refresh_status(execution=Execution.objects.get(pk=execution.pk))

    assert execution.state == Execution.State.PROCESSING
    assert execution.stalled_since is not None
    assert "Assets reports the import 'WEIGHING'" in execution.error
    assert [stalled.pk for stalled in told] == [execution.pk]


def test_completed_refused_by_an_outage_to_the_end_fails_the_import(
    pushed_source, sandbox, settings
):
    # 503 says Assets did nothing: no post may have been taken, so the import fails (and
    # is told), rather than being followed as processing while Assets waits for pages.
    settings.COMPLETION_MAX_ATTEMPTS = 2
    sandbox.faults.add(method="POST", path_contains="/data", body_contains='"completed"', times=2)
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=-1)
    execution = services.start_import(source=pushed_source)

    execution = services.check_completion(execution=execution)

    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Assets did not take 'completed' in 2 attempts")


def test_completed_and_its_status_refused_for_the_token_fails_at_once(pushed_source, sandbox):
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', status=401, times=-1
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=401, times=-1)

    execution = services.start_import(source=pushed_source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "401" in execution.error


def test_completed_followed_as_taken_is_posted_again_when_assets_still_waits_for_pages(
    pushed_source, sandbox, settings
):
    # Every post dropped before Assets saw it, and no status to tell: followed as taken.
    # Once Assets answers again and says INGESTING, "completed" goes again, and is taken.
    settings.COMPLETION_MAX_ATTEMPTS = 2
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', drop=True, times=2
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=2)
    execution = services.start_import(source=pushed_source)
    execution = services.check_completion(execution=execution)
    assert execution.state == Execution.State.PROCESSING
    assert sandbox.execution(execution.assets_execution_id)["state"] == "INGESTING"
    Execution.objects.filter(pk=execution.pk).update(
        completed_at=timezone.now() - timedelta(minutes=2)
    )

    execution = services.refresh_status(execution=Execution.objects.get(pk=execution.pk))

    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 1
    execution = services.refresh_status(execution=Execution.objects.get(pk=execution.pk))
    assert execution.state == Execution.State.DONE, execution.error


def test_a_last_post_of_completed_left_unanswered_is_followed_not_failed(
    pushed_source, sandbox, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 2
    sandbox.processing_seconds = 600
    sandbox.faults.add(method="POST", path_contains="/data", body_contains='"completed"')
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=503, times=-1)
    execution = services.start_import(source=pushed_source)  # 503: Assets took nothing

    execution = services.check_completion(execution=execution)  # taken, its answer lost

    assert execution.state == Execution.State.PROCESSING, execution.error
    assert sandbox.execution(execution.assets_execution_id)["failure_reasons"] == []


def test_completed_refused_while_assets_status_lags_behind_is_not_failed(
    pushed_source, sandbox, settings
):
    # The first post was taken, its answer lost; Assets' status says INGESTING a while
    # after, and refuses the second post: it has it, most likely.
    settings.COMPLETION_MAX_ATTEMPTS = 2
    sandbox.processing_seconds = 600
    sandbox.status_words = {"PROCESSING": "INGESTING"}
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', lose_answer=True
    )
    execution = services.start_import(source=pushed_source)

    execution = services.check_completion(execution=execution)

    assert execution.state == Execution.State.PROCESSING, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["state"] == "PROCESSING" and remote["failure_reasons"] == []


def execution_page(admin_client, execution) -> str:
    url = reverse("admin:importer_execution_change", args=[execution.pk])
    return html.unescape(admin_client.get(url).content.decode())


def test_an_assets_slower_than_http_timeout_takes_completed_at_the_first_post(
    make_source, sandbox, settings, admin_client
):
    settings.HTTP_TIMEOUT = 0.5
    # Assets takes every page and "completed", but answers each 0.7 s later, past
    # HTTP_TIMEOUT: the pages answered too late teach the import to wait longer.
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=0.7, times=-1)
    source = services.push_mapping(source=make_source(page_size=100, max_chunks_in_flight=1))
    execution = services.start_import(source=source)

    run_retries_now(execution)  # without waiting for their time

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert execution.completion_attempts == 0
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["completed_posts"] == 1 and len(remote["objects"]) == 300
    assert re.search(
        r"Assets took 'completed' [\d.]+ s after it was posted, later than HTTP_TIMEOUT "
        r"\(0\.5 s\): it was waited for that long, as Assets had answered this import late "
        r"before\.",
        execution_page(admin_client, execution),
    )


def test_completed_answered_too_late_is_not_posted_again_once_assets_says_it_took_it(
    pushed_source, sandbox, settings, admin_client
):
    settings.HTTP_TIMEOUT = 0.5
    # The pages are answered in time; "completed" alone 0.7 s late, past HTTP_TIMEOUT.
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"completed"', status=0, delay=0.7
    )
    execution = services.start_import(source=pushed_source)
    execution.refresh_from_db()
    # Assets had not taken it yet when its status was read: a later check looks again.
    assert execution.state == Execution.State.INGESTING
    assert execution.completed_maybe_taken
    wait_for(lambda: sandbox.execution(execution.assets_execution_id)["state"] == "DONE")

    execution = services.check_completion(execution=execution)

    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 1
    page = execution_page(admin_client, execution)
    assert (
        "Assets did not answer 'completed' within 0.5 s (HTTP_TIMEOUT): it may have taken it "
        "all the same, so its status is read before it is posted again, and this import now "
        "waits longer for Assets' answers"
    ) in page
    assert (
        "Assets took 'completed' though its answer did not come (its status showed it had "
        "taken it), so it was not posted again."
    ) in page
