"""Fault injection with a real qcluster: every record arrives exactly once, or the import fails
with a reported reason. Runs on whatever database and broker the suite runs on (CI runs it on
SQLite + the ORM broker and on PostgreSQL + the Redis broker).
"""

import os
import signal
import time

import pytest
from django_q.tasks import async_task

from importer import services, work_queue
from importer.models import ChunkJob, Execution
from tests.conftest import wait_for, wait_for_execution_to_finish

pytestmark = pytest.mark.django_db(transaction=True)

# Short leases so a killed worker's chunk is taken up within seconds.
FAST_RECOVERY = {
    "CHUNK_LEASE_SECONDS": "2",
    "CHUNK_RETRY_INLINE_MAX_SECONDS": "5",
    "QUEUED_CHUNK_REQUEUE_SECONDS": "2",
}


def assert_imported_exactly_once(sandbox, execution, records=120):
    execution.refresh_from_db()
    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.DONE, execution.error
    assert len(remote["objects"]) == records
    assert remote["duplicate_objects"] == 0
    assert remote["completed_posts"] == 1


def start(source) -> Execution:
    return services.start_import(source=source)


def test_assets_throttling_errors_and_dropped_connections_are_ridden_out(
    pushed_source, sandbox, start_cluster
):
    start_cluster(**FAST_RECOVERY)
    sandbox.faults.add(method="POST", path_contains="/data", status=429, retry_after="1", times=2)
    sandbox.faults.add(method="POST", path_contains="/data", status=503, times=2)
    sandbox.faults.add(method="POST", path_contains="/data", drop=True, times=1)
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=0.5, times=2)

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert_imported_exactly_once(sandbox, execution)
    retried = execution.chunks.filter(attempts__gt=1)
    assert retried.exists()


def test_a_flaky_source_is_ridden_out(pushed_source, sandbox, inventory, start_cluster):
    start_cluster(**FAST_RECOVERY)
    inventory.faults.add(method="GET", path_contains="offset=25", status=500, times=2)
    inventory.faults.add(method="GET", path_contains="offset=50", drop=True, times=1)
    inventory.faults.add(
        method="GET", path_contains="offset=75", status=429, retry_after="1", times=1
    )

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert_imported_exactly_once(sandbox, execution)


def test_a_worker_killed_mid_chunk_is_taken_up_again(
    pushed_source, sandbox, inventory, start_cluster
):
    start_cluster(**FAST_RECOVERY)
    # The third page hangs long enough to kill the worker fetching it.
    inventory.faults.add(method="GET", path_contains="offset=50", status=0, delay=30, times=1)
    execution = start(pushed_source)

    def hanging_chunk():
        return ChunkJob.objects.filter(
            execution=execution, index=2, state=ChunkJob.State.RUNNING
        ).first()

    chunk = wait_for(hanging_chunk, timeout=30, message="chunk 2 never started")
    os.kill(int(chunk.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    execution = finish_with_housekeeping(execution)
    assert_imported_exactly_once(sandbox, execution)
    assert execution.chunks.get(index=2).attempts >= 2


def finish_with_housekeeping(execution, timeout: float = 120.0) -> Execution:
    """Wait for the end, running the every-minute housekeeping task every second meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution.refresh_from_db()
        if execution.state in Execution.FINISHED_STATES:
            return execution
        async_task("importer.tasks.look_after_imports")
        time.sleep(1)
    return wait_for_execution_to_finish(execution, timeout=1)


def test_stopping_and_restarting_the_cluster_mid_import(
    pushed_source, sandbox, inventory, start_cluster
):
    first = start_cluster(**FAST_RECOVERY)
    inventory.faults.add(
        method="GET", path_contains="/api/computers", status=0, delay=0.4, times=-1
    )
    execution = start(pushed_source)
    wait_for(
        lambda: execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() >= 2,
        message="no progress before the stop",
    )

    first.stop()
    inventory.faults.clear()
    start_cluster(**FAST_RECOVERY)

    execution = finish_with_housekeeping(execution)
    assert_imported_exactly_once(sandbox, execution)


def test_a_chunk_task_delivered_several_times_submits_its_page_once(
    pushed_source, sandbox, start_cluster
):
    start_cluster(workers=4)
    execution = start(pushed_source)
    first_chunk = execution.chunks.get(index=0)
    for _ in range(3):
        work_queue.enqueue_chunk(first_chunk.pk)

    execution = wait_for_execution_to_finish(execution)

    assert_imported_exactly_once(sandbox, execution)
    data_posts = [path for method, path in sandbox.requests_log if path.endswith("/data")]
    assert len(data_posts) == 5 + 1  # five pages, one completion


def test_racing_completion_checks_post_completed_once(
    pushed_source, sandbox, start_cluster, monkeypatch, settings
):
    # Ingest every chunk inline, without the completion check that normally follows.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    from django_q.conf import Conf

    Conf.SYNC = True
    monkeypatch.setattr(work_queue, "enqueue_completion_check", lambda execution_id: None)
    execution = start(pushed_source)
    Conf.SYNC = False
    monkeypatch.undo()
    assert execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() == 5
    # Slow down the answer to "completed" so the checks overlap.
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=1.0, times=1)

    start_cluster(workers=4)
    for _ in range(8):
        work_queue.enqueue_completion_check(execution.pk)

    execution = wait_for_execution_to_finish(execution)
    assert_imported_exactly_once(sandbox, execution)


def test_a_permanent_assets_error_fails_the_import_with_a_reported_reason(
    pushed_source, sandbox, cluster
):
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        status=400,
        times=-1,
        body='{"errorMessages": ["data does not match the mapping"]}',
    )

    execution = wait_for_execution_to_finish(start(pushed_source))
    # The execution is FAILED here first; the report to Assets follows from the same worker.
    wait_for(lambda: sandbox.execution(execution.assets_execution_id)["failure_reasons"])

    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.FAILED
    assert "data does not match the mapping" in execution.error
    assert len(remote["failure_reasons"]) == 1
    assert remote["completed_posts"] == 0
