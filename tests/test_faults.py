"""Fault injection with a real qcluster: every record arrives exactly once, or the import fails
with a reported reason. Runs on whatever database and broker the suite runs on (CI runs it on
SQLite + the ORM broker and on PostgreSQL + the Redis broker).
"""

import json
import os
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import F
from django_q.models import Failure
from django_q.tasks import async_task

from importer import services, work_queue
from importer.devtools.demo_source import demo_computer
from importer.logs import redact_task_failure
from importer.models import ChunkJob, Execution, ImportSource
from importer.services import lane_state, lanes
from importer.sources import Page, build_source
from tests.conftest import wait_for, wait_for_execution_to_finish
from tests.fake_source import FakeSource
from tests.test_post_sources import GRAPHQL_SETTINGS

pytestmark = pytest.mark.django_db(transaction=True)

# Short leases, and housekeeping every second, so a killed worker's chunk is taken up within
# seconds.
FAST_RECOVERY = {
    "CHUNK_LEASE_SECONDS": "2",
    "CHUNK_RETRY_INLINE_MAX_SECONDS": "5",
    "QUEUED_CHUNK_REQUEUE_SECONDS": "2",
    "HOUSEKEEPING_SECONDS": "1",
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


def test_a_long_spell_of_rate_limiting_is_waited_out_beyond_the_usual_attempts(
    pushed_source, sandbox, start_cluster
):
    # Assets refuses a page with 429 more times than a failure is usually tried: waiting as
    # asked mends it, so the import goes through.
    start_cluster(**FAST_RECOVERY, CHUNK_MAX_ATTEMPTS="2")
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains="SN-00001",
        status=429,
        retry_after="0",
        times=4,
    )

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert_imported_exactly_once(sandbox, execution)
    first = execution.chunks.get(index=0)
    assert (first.attempts, first.rate_limited_waits) == (1, 4)  # no attempt used up


def test_pages_assets_refuses_for_its_rate_limit_for_ever_give_up_naming_what_gets_through(
    pushed_source, sandbox, start_cluster
):
    # The source's request rate sets nothing of Assets' limit: the advice is Assets' own.
    start_cluster(**FAST_RECOVERY, CHUNK_MAX_ATTEMPTS="1", RATE_LIMITED_MAX_ATTEMPTS="2")
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains='"data"',
        status=429,
        retry_after="0",
        times=-1,
    )

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert execution.state == Execution.State.FAILED
    assert "(gave up after 1 attempts and 2 waits for its rate limit: read fewer pages at " in (
        execution.error
    )
    assert "run the import when Assets is less busy)" in execution.error
    assert "requests per minute" not in execution.error


def data_arrivals(sandbox, monkeypatch, *, faults_lift_after: float | None = None) -> list:
    """When each page (not "completed") reached the sandbox (time.monotonic()); with
    `faults_lift_after`, its faults are cleared that long after the first page (a rate
    limit that lifts)."""
    arrivals: list[float] = []
    logged = sandbox.on_request

    def on_request(request):
        if request.method == "POST" and request.path.endswith("/data"):
            if b'"completed"' not in request.body:
                arrivals.append(time.monotonic())
                if faults_lift_after is not None and arrivals[-1] > arrivals[0] + faults_lift_after:
                    sandbox.faults.clear()
        logged(request)

    monkeypatch.setattr(sandbox, "on_request", on_request)
    return arrivals


def test_lanes_refused_with_429_wait_as_asked_instead_of_sending_their_next_pages(
    make_source, sandbox, inventory, start_cluster, monkeypatch
):
    # Assets refuses every page for 1.5 s, asking for 2 s each time: each lane stops at its
    # first refusal (the pages it already has on their way arrive), rather than sending every
    # page to be refused in turn.
    arrivals = data_arrivals(sandbox, monkeypatch, faults_lift_after=1.5)
    # Retries put off, not waited for in the worker, as the project's settings do.
    start_cluster(**{**FAST_RECOVERY, "CHUNK_RETRY_INLINE_MAX_SECONDS": "1"})
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains='"data"',
        status=429,
        retry_after="2",
        times=-1,
    )

    execution = wait_for_execution_to_finish(start(source))

    assert_imported_exactly_once(sandbox, execution)
    refused = [moment for moment in arrivals if moment <= arrivals[0] + 1.5]
    lane_count, in_flight = 2, lane_state.Lane.SUBMITS_IN_FLIGHT
    assert len(refused) <= lane_count * in_flight, f"{len(refused)} pages sent to be refused"


def test_a_429_to_one_lane_holds_back_the_other_lanes_of_the_import(
    make_source, sandbox, inventory, start_cluster, monkeypatch
):
    # Assets' rate limit is the tenant's: one page refused, asking for 3 s, and every lane
    # waits, rather than each going on until it is refused in its turn.
    arrivals = data_arrivals(sandbox, monkeypatch)
    inventory.latency = 0.3  # 40 pages in 4 lanes: about 3 s of pages without a pause
    start_cluster(**{**FAST_RECOVERY, "CHUNK_RETRY_INLINE_MAX_SECONDS": "1"})
    source = services.push_mapping(source=make_source(page_size=3, max_chunks_in_flight=4))
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains='"data"',
        status=429,
        retry_after="3",
        times=1,
    )

    execution = wait_for_execution_to_finish(start(source), timeout=120)

    assert_imported_exactly_once(sandbox, execution)
    refused_at = arrivals[0]
    # The pages already on their way arrive; then nothing until the 3 s have passed.
    held = [moment - refused_at for moment in arrivals if 1.0 <= moment - refused_at < 2.9]
    assert held == [], f"pages sent while Assets asked to wait: {held}"


def test_a_flaky_source_is_ridden_out(pushed_source, sandbox, inventory, start_cluster):
    start_cluster(**FAST_RECOVERY)
    inventory.faults.add(method="GET", path_contains="offset=25", status=500, times=2)
    inventory.faults.add(method="GET", path_contains="offset=50", drop=True, times=1)
    inventory.faults.add(
        method="GET", path_contains="offset=75", status=429, retry_after="1", times=1
    )

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert_imported_exactly_once(sandbox, execution)


def test_a_graphql_source_throttling_in_its_answers_is_ridden_out(
    make_source, sandbox, inventory, start_cluster
):
    # GraphQL APIs answer their rate limits with 200: each throttled page waits as asked,
    # without using up an attempt, and asks again.
    start_cluster(**FAST_RECOVERY)
    inventory.throttle_graphql(times=2, like="shopify", wait=0.5, at=50)
    inventory.throttle_graphql(times=1, like="github", wait=1, at=100)
    source = make_source(source_url=f"{inventory.base_url}/api/graphql", **GRAPHQL_SETTINGS)

    execution = wait_for_execution_to_finish(start(services.push_mapping(source=source)))

    assert_imported_exactly_once(sandbox, execution)
    waits = dict(execution.chunks.values_list("index", "rate_limited_waits"))
    assert (waits[2], waits[4]) == (2, 1)
    assert set(execution.chunks.values_list("attempts", flat=True)) == {1}


def test_a_page_waiting_for_its_retry_leaves_the_worker_to_other_imports(
    make_source, sandbox, inventory, start_cluster
):
    """With the project's own setting, a retry seconds away is put off, not slept on: the
    cluster's only worker goes on with another import meanwhile."""
    from assets_sync import settings as project_settings

    start_cluster(
        workers=1,
        CHUNK_RETRY_INLINE_MAX_SECONDS=str(project_settings.CHUNK_RETRY_INLINE_MAX_SECONDS),
    )
    failing = services.push_mapping(source=make_source(name="failing", page_size=25))
    other = services.push_mapping(
        source=make_source(name="other", import_source_id="src-2", page_size=30)
    )
    inventory.faults.add(
        method="GET", path_contains="limit=25", status=503, retry_after="4", times=1
    )
    waiting = start(failing)
    retried = wait_for(
        lambda: waiting.chunks.filter(attempts=1, next_attempt_at__isnull=False).first(),
        message="the failing page was not put off",
    )

    finished = wait_for_execution_to_finish(start(other))

    assert finished.state == Execution.State.DONE
    assert finished.finished_at < retried.next_attempt_at
    assert_imported_exactly_once(sandbox, wait_for_execution_to_finish(waiting))


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

    execution = wait_for_execution_to_finish(execution)
    assert_imported_exactly_once(sandbox, execution)
    assert execution.chunks.get(index=2).attempts >= 2


def test_a_page_taken_over_while_its_lane_waited_for_assets_is_not_sent_by_that_lane(
    make_source, sandbox, inventory, start_cluster
):
    # A lane waits for Assets' answer to its oldest page before sending another (a worker
    # frozen there, for a moment or a minute): if the page it was about to send was taken
    # over meanwhile, its new holder sends it, and this lane does not.
    from django.utils import timezone

    start_cluster(**FAST_RECOVERY)
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains="SN-00001", status=0, delay=3, times=1
    )
    execution = start(source)
    # Lane 0 sends pages 0 and 2, and waits for page 0's answer before sending page 4; page
    # 6, its next, exists by then.
    wait_for(lambda: execution.chunks.filter(index=6).exists(), timeout=30)
    taken_over = execution.chunks.filter(index=4, state=ChunkJob.State.RUNNING).update(
        attempts=F("attempts") + 1,
        worker="another-host:1",
        lease_expires_at=timezone.now() - timedelta(seconds=1),  # and its holder died too
    )
    assert taken_over == 1

    execution = wait_for_execution_to_finish(execution)

    assert_imported_exactly_once(sandbox, execution)


def finish_with_housekeeping(execution, timeout: float = 120.0) -> Execution:
    """Wait for the end, running the every-minute housekeeping task every second meanwhile."""

    def finished() -> bool:
        execution.refresh_from_db()
        return execution.state in Execution.FINISHED_STATES

    finish_with_housekeeping_until(finished, timeout)
    return wait_for_execution_to_finish(execution, timeout=1)


def finish_with_housekeeping_until(condition, timeout: float = 120.0) -> None:
    """Run the every-minute housekeeping task every second until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        async_task("importer.tasks.look_after_imports")
        time.sleep(1)


def start_a_slowed_import(source, inventory, start_cluster):
    """A cluster, and an import of `source` from an inventory that answers in 0.4 s, once two
    of its pages are in."""
    cluster = start_cluster(**FAST_RECOVERY)
    inventory.faults.add(
        method="GET", path_contains="/api/computers", status=0, delay=0.4, times=-1
    )
    execution = start(source)
    wait_for(
        lambda: execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() >= 2,
        message="no progress before the cluster went down",
    )
    return cluster, execution


def test_stopping_and_restarting_the_cluster_mid_import(
    pushed_source, sandbox, inventory, start_cluster
):
    first, execution = start_a_slowed_import(pushed_source, inventory, start_cluster)

    first.stop()
    inventory.faults.clear()
    start_cluster(**FAST_RECOVERY)

    execution = wait_for_execution_to_finish(execution)
    assert_imported_exactly_once(sandbox, execution)


def test_an_import_resumes_within_seconds_after_its_whole_cluster_is_killed(
    pushed_source, sandbox, inventory, start_cluster
):
    first, execution = start_a_slowed_import(pushed_source, inventory, start_cluster)

    first.kill()  # every process, as a lost host would
    killed = time.monotonic()
    start_cluster(**FAST_RECOVERY)

    execution = wait_for_execution_to_finish(execution, timeout=60)
    assert time.monotonic() - killed < 20  # leases of 2 s, housekeeping every second
    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.DONE, execution.error
    assert len(remote["objects"]) == 120
    assert remote["completed_posts"] == 1
    # At most the pages that were on their way when the cluster died went twice.
    assert remote["duplicate_objects"] <= 4 * 25
    # ... and the history counts each record once, though some pages were fetched twice.
    assert (execution.records_fetched, execution.records_submitted) == (120, 120)


def test_a_page_slower_than_its_lease_stays_with_the_worker_on_it(
    make_source, sandbox, inventory, start_cluster
):
    source = services.push_mapping(source=make_source(page_size=40, max_chunks_in_flight=2))
    # Two lanes, and a third worker idle, ready to take over any page whose lease lapses.
    start_cluster(workers=3, **{**FAST_RECOVERY, "CHUNK_LEASE_SECONDS": "3"})
    # Every fetch and every submit takes longer than a lease: only the lanes' heartbeats
    # keep their pages from being taken over.
    inventory.faults.add(method="GET", path_contains="/api/computers", status=0, delay=4, times=-1)
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=4, times=-1)
    execution = start(source)

    def finished_with_housekeeping_all_along():
        services.recover_lost_work()  # what the cluster does every HOUSEKEEPING_SECONDS
        execution.refresh_from_db()
        return execution.state in Execution.FINISHED_STATES

    wait_for(finished_with_housekeeping_all_along, timeout=90, interval=0.2)
    assert_imported_exactly_once(sandbox, execution)
    assert set(execution.chunks.values_list("attempts", flat=True)) == {1}


def test_a_worker_frozen_past_its_lease_leaves_the_page_to_the_one_that_took_it_over(
    make_source, sandbox, inventory, start_cluster
):
    source = services.push_mapping(source=make_source(page_size=10))
    start_cluster(**FAST_RECOVERY)
    # Page 2 answers once it is known who fetches it; the other pages keep the import going.
    inventory.faults.add(method="GET", path_contains="offset=20&", status=0, delay=1.5, times=1)
    inventory.faults.add(
        method="GET", path_contains="/api/computers", status=0, delay=0.3, times=-1
    )
    execution = start(source)

    def page_two_taken():
        return ChunkJob.objects.filter(
            execution=execution, index=2, state=ChunkJob.State.RUNNING
        ).first()

    frozen = int(wait_for(page_two_taken, timeout=30).worker.rsplit(":", 1)[1])
    os.kill(frozen, signal.SIGSTOP)  # its heartbeat stops too: the lease lapses
    try:
        wait_for(
            lambda: ChunkJob.objects.filter(execution=execution, index=2, attempts=2).exists(),
            timeout=30,
            message="page 2 was never taken over",
        )
    finally:
        os.kill(frozen, signal.SIGCONT)  # it wakes up with page 2 fetched, and a lapsed lease

    execution = wait_for_execution_to_finish(execution)
    assert_imported_exactly_once(sandbox, execution)
    page_two = execution.chunks.get(index=2)
    assert page_two.attempts == 2 and not page_two.worker.endswith(f":{frozen}")
    assert execution.records_fetched == 120  # the frozen worker did not count it again


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
    monkeypatch.setattr(lanes, "complete_if_due", lambda execution_id, **lane: None)
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


# --- sources that misbehave ------------------------------------------------------------------


@pytest.fixture
def fake_inventory():
    """The demo inventory's 100 computers behind an API with the habits of real ones."""
    server = FakeSource(records=100, record=demo_computer).start()
    yield server
    server.stop()


def source_reading(make_source, fake, **fields) -> ImportSource:
    """A source reading `fake` by offset, 25 records a page, four chunks in flight."""
    defaults = {
        "source_url": f"{fake.base_url}/api/offset",
        "records_path": "data.items",
        "page_size": 25,
        "max_chunks_in_flight": 4,
    }
    return services.push_mapping(source=make_source(**{**defaults, **fields}))


def test_a_source_serving_shorter_pages_than_asked_is_read_whole(
    make_source, fake_inventory, sandbox, start_cluster
):
    start_cluster(**FAST_RECOVERY)
    # Without a limit parameter the server pages by 10, while the import plans pages of 25.
    source = source_reading(make_source, fake_inventory, limit_param="")

    execution = wait_for_execution_to_finish(start(source))

    assert_imported_exactly_once(sandbox, execution, records=100)


def test_answers_cut_off_mid_way_are_asked_again(
    make_source, fake_inventory, sandbox, start_cluster
):
    start_cluster(**FAST_RECOVERY)
    fake_inventory.misbehave("cut_off", path_contains="offset=25")
    fake_inventory.misbehave("cut_off", path_contains="offset=75")
    source = source_reading(make_source, fake_inventory)

    execution = wait_for_execution_to_finish(start(source))

    assert_imported_exactly_once(sandbox, execution, records=100)
    assert execution.chunks.get(index=1).attempts == 2
    assert execution.chunks.get(index=3).attempts == 2


def test_a_source_answering_garbage_every_time_fails_clearly(
    pushed_source, inventory, sandbox, start_cluster
):
    start_cluster(**FAST_RECOVERY)
    inventory.faults.add(
        method="GET",
        path_contains="/api/computers",
        status=200,
        times=-1,
        body="<html><body>Bad gateway</body></html>",
    )

    execution = wait_for_execution_to_finish(start(pushed_source))

    assert execution.state == Execution.State.FAILED
    assert "did not answer JSON" in execution.error
    assert "(gave up after 3 attempts)" in execution.error
    assert not execution.chunks.filter(state=ChunkJob.State.RUNNING).exists()


@pytest.mark.parametrize("how", ["deep", "flood"])
def test_a_pathological_page_fails_the_import_with_a_reason_and_frees_the_source(
    make_source, fake_inventory, sandbox, start_cluster, how
):
    start_cluster(**FAST_RECOVERY)
    fake_inventory.misbehave(how, path_contains="offset=50")
    source = source_reading(make_source, fake_inventory)

    execution = wait_for_execution_to_finish(start(source))

    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 3 failed: source 'inventory' sent a page")
    assert not execution.chunks.filter(state=ChunkJob.State.RUNNING).exists()
    assert execution.chunks.get(index=2).attempts == 1
    wait_for(lambda: sandbox.execution(execution.assets_execution_id)["failure_reasons"])
    # The source is free: the next import runs, and brings everything.
    assert_imported_exactly_once(sandbox, wait_for_execution_to_finish(start(source)), records=100)


def test_a_source_dripping_its_answer_holds_a_worker_no_longer_than_the_budget(
    make_source, fake_inventory, sandbox, start_cluster
):
    start_cluster(SOURCE_REQUEST_BUDGET_SECONDS="3", **FAST_RECOVERY)
    fake_inventory.drip_interval = 0.1  # never silent long enough for the read timeout
    fake_inventory.misbehave("drip", path_contains="offset=25")
    source = source_reading(make_source, fake_inventory)

    execution = wait_for_execution_to_finish(start(source))

    assert_imported_exactly_once(sandbox, execution, records=100)
    assert execution.chunks.get(index=1).attempts >= 2
    wait_for(lambda: fake_inventory.streamed, message="the source never stopped dripping")
    # The worker hung up after about three seconds, long before the page's 5 KB were through.
    assert fake_inventory.streamed[0] < 500


def test_a_page_whose_worker_dies_each_time_fails_at_the_attempt_cap(
    pushed_source, sandbox, inventory, start_cluster
):
    start_cluster(CHUNK_MAX_ATTEMPTS="2", **FAST_RECOVERY)
    # The third page hangs every time, long enough to kill the worker fetching it.
    inventory.faults.add(method="GET", path_contains="offset=50", status=0, delay=30, times=-1)
    execution = start(pushed_source)

    for attempt in (1, 2):
        chunk = wait_for(
            lambda attempt=attempt: ChunkJob.objects.filter(
                execution=execution, index=2, state=ChunkJob.State.RUNNING, attempts=attempt
            ).first(),
            timeout=60,
            message=f"attempt {attempt} of chunk 2 never started",
        )
        os.kill(int(chunk.worker.rsplit(":", 1)[1]), signal.SIGKILL)
        if attempt == 1:
            finish_with_housekeeping_until(
                lambda: execution.chunks.filter(index=2, attempts=2).exists()
            )

    execution = finish_with_housekeeping(execution)
    chunk = execution.chunks.get(index=2)
    assert (chunk.state, chunk.attempts) == (ChunkJob.State.FAILED, 2)
    assert "in each of its 2 attempts (CHUNK_MAX_ATTEMPTS)" in chunk.error
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 3 failed: its worker stopped")


class SignsInOnlyFromTheWebProcess:
    """A plug-in whose login works where the import starts but is refused in the workers,
    its library quoting the secret it was given."""

    def __init__(self, *, import_source, options) -> None:
        if os.getpid() != options["web_pid"]:
            raise RuntimeError(f"login refused for {import_source.source_token}")

    def fetch_page(self, cursor: str):
        return Page(records=[demo_computer(1)], next_cursor=None)


def test_a_plugin_failing_as_it_starts_in_the_workers_fails_the_import_keeping_its_secret_out(
    make_source, sandbox, start_cluster, settings
):
    # The plug-in fails while the chunk task sets up, before a page is read, its library's
    # words quoting the secret. The chunk fails with them scrubbed, as a failing page does;
    # nothing escapes to django-q2's own failure record, and the import does not hang.
    plugins = {"picky": f"{__name__}.SignsInOnlyFromTheWebProcess"}
    settings.IMPORT_SOURCE_PLUGINS = plugins
    source = make_source(
        source_kind="plugin",
        plugin="picky",
        plugin_options={"web_pid": os.getpid()},
        source_token="plugin-s3cret-4471",
    )
    running = start_cluster(IMPORT_SOURCE_PLUGINS=json.dumps(plugins), LOG_LEVEL="DEBUG")
    logged_before = running.log_path.stat().st_size

    execution = wait_for_execution_to_finish(start(services.push_mapping(source=source)))

    assert execution.state == Execution.State.FAILED
    assert "plug-in 'picky' could not start (RuntimeError: login refused for ***)" in (
        execution.error
    )
    logged = running.log_path.read_text()[logged_before:]
    for text in (execution.error, execution.chunks.get().error, logged):
        assert "plugin-s3cret-4471" not in text
    assert not Failure.objects.exists()


def test_a_failed_tasks_record_is_kept_without_the_secrets_its_worker_knows(make_source, sandbox):
    # What django-q2 stores and logs of a task that fails beyond the import's own handlers
    # (the traceback of every chained exception), redacted in the worker before it goes.
    source = make_source(source_token="worker-s3cret-8812")
    build_source(source)  # the worker now knows the source's secrets
    task = {"success": False, "result": "RuntimeError: refused worker-s3cret-8812\nTraceback"}

    redact_task_failure(sender=None, func=None, task=task)

    assert "worker-s3cret-8812" not in task["result"]
    assert "RuntimeError: refused ***" in task["result"]
