"""Lanes: one chunk task goes on page after page, its HTTP calls overlapping."""

import logging
import re
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from importer import page_sql, services, work_queue
from importer.models import ChunkJob, Execution
from importer.services import chunks, lane_state, lanes, reconnects
from importer.services.chunks import claim_chunk, mark_submitted
from tests.conftest import _database_url_of_test_database, run_retries_now, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def enqueued_chunks(monkeypatch):
    """Chunk ids put on the queue, in order; they still run (tasks are inline in tests)."""
    seen = []
    enqueue = work_queue.enqueue_chunk

    def counting(chunk_id):
        seen.append(chunk_id)
        enqueue(chunk_id)

    monkeypatch.setattr(work_queue, "enqueue_chunk", counting)
    return seen


def rendezvous(*requests):
    """Hold the first request matching each (server, method, path part) until all of them
    have arrived (at most 10 s): they meet only if they are in flight at the same time.
    Returns the list of outcomes, one per request: True if it met the others."""
    arrived = [threading.Event() for _ in requests]
    outcomes = []

    def meeting_point(server, position, method, path_contains):
        on_request = server.on_request

        def meeting(request):
            on_request(request)
            mine = arrived[position]
            if request.method == method and path_contains in request.raw_path:
                if not mine.is_set():
                    mine.set()
                    outcomes.append(all(event.wait(timeout=10) for event in arrived))

        server.on_request = meeting

    for position, (server, method, path_contains) in enumerate(requests):
        meeting_point(server, position, method, path_contains)
    return outcomes


def test_the_next_page_is_fetched_while_this_one_is_submitted(make_source, sandbox, inventory):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2))
    # Page 0's lane goes on with page 2 (offset 50). Fetched one after the other, the first
    # of the two requests would wait for the second in vain.
    met = rendezvous((sandbox, "POST", "/data"), (inventory, "GET", "offset=50"))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert met == [True, True]
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0


def test_a_lane_keeps_its_pages_out_of_the_queue(make_source, sandbox, enqueued_chunks):
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=3))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    # Twelve pages in three lanes: only the lanes' first pages went through the queue.
    assert len(enqueued_chunks) == 3
    assert execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() == 12


def test_a_lane_whose_time_is_up_hands_its_next_page_to_the_queue(
    make_source, sandbox, settings, enqueued_chunks
):
    settings.CHUNK_LANE_SECONDS = 1e-9  # up before the first page is done
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=3))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    # Every page went through the queue, so other imports could take their turn between.
    submitted = execution.chunks.filter(state=ChunkJob.State.SUBMITTED)
    assert set(submitted.values_list("pk", flat=True)) <= set(enqueued_chunks)
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120


def test_an_unexpected_error_fails_its_page_and_gives_the_page_claimed_ahead_back(
    make_source, sandbox, monkeypatch
):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2))
    held_back = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", held_back.append)
    execution = services.start_import(source=source)
    first = execution.chunks.select_related("execution__source").get(index=0)
    transform = lanes.transform_page

    def broken_once(*args, **kwargs):
        monkeypatch.setattr(lanes, "transform_page", transform)
        raise RuntimeError("a bug")

    monkeypatch.setattr(lanes, "transform_page", broken_once)

    services.process_chunk(chunk=first)

    # Page 0 failed with the reason, rather than staying RUNNING until its lease ran out;
    # page 2, which its lane had claimed before the bug hit, is queued again.
    failed = execution.chunks.get(index=0)
    assert failed.state == ChunkJob.State.FAILED
    assert failed.error == "unexpected RuntimeError: a bug"
    assert failed.last_error_kind == "unexpected_error"
    claimed = execution.chunks.get(index=2)
    assert claimed.state == ChunkJob.State.QUEUED and claimed.attempts == 0
    assert claimed.pk in held_back
    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error == "Chunk 1 failed: unexpected RuntimeError: a bug"


def test_an_unexpected_error_quoting_a_secret_at_its_cut_keeps_none_of_the_secret(
    make_source, sandbox, monkeypatch
):
    # The message keeps 200 characters of the error: a token the cut would halve must be
    # recognised whole first, or its first characters stay on the page and in the alert.
    token = "tok-5f3c9a1e7b2d4c6e8a0f"
    source = services.push_mapping(
        source=make_source(source_auth="bearer", source_token=token, max_chunks_in_flight=1)
    )
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    execution = services.start_import(source=source)
    first = execution.chunks.select_related("execution__source").get(index=0)
    said = "x" * 188 + f" {token} was refused by the gateway"  # 11 of its characters kept
    monkeypatch.setattr(
        lanes, "transform_page", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(said))
    )

    services.process_chunk(chunk=first)

    failed = execution.chunks.get(index=0)
    assert failed.state == ChunkJob.State.FAILED
    assert failed.error.startswith("unexpected RuntimeError: xxx")
    assert token[:11] not in failed.error


def test_a_page_another_worker_holds_is_not_sent_by_a_second_delivery_of_its_task(
    make_source, sandbox, inventory, monkeypatch
):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2))
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    execution = services.start_import(source=source)
    # Page 0 is being worked on elsewhere, under a live lease, when its task arrives again.
    execution.chunks.filter(index=0).update(
        state=ChunkJob.State.RUNNING,
        attempts=1,
        worker="another-host:1",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    data_posts = []
    on_request_to(sandbox, "POST", "/data", lambda: data_posts.append(1))
    page_0_asked = threading.Event()
    on_request_to(inventory, "GET", "offset=0", page_0_asked.set)

    services.process_chunk(chunk=execution.chunks.select_related("execution__source").get(index=0))

    # The lane asked for the page while it tried to claim it (that request may still be on
    # its way), lost the claim, and dropped the page: nothing sent, nothing recorded.
    assert page_0_asked.wait(timeout=10)
    assert data_posts == []
    page_0 = execution.chunks.get(index=0)
    assert (page_0.state, page_0.attempts, page_0.worker) == (
        ChunkJob.State.RUNNING,
        1,
        "another-host:1",
    )
    assert not execution.chunks.filter(index__gt=1).exists()
    execution.refresh_from_db()
    assert (execution.state, execution.pages_submitted) == (Execution.State.INGESTING, 0)


def test_a_page_assets_refuses_is_retried_while_the_lane_goes_on(
    make_source, sandbox, settings, monkeypatch
):
    settings.CHUNK_RETRY_INLINE_MAX_SECONDS = 0
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2))
    sandbox.faults.add(method="POST", path_contains="/data", status=503, times=1)
    execution = services.start_import(source=source)

    # The refused page waits for its retry (which of the two pages in flight Assets refused
    # depends on which arrived first); the rest of the lanes went on without it.
    retrying = execution.chunks.get(state=ChunkJob.State.QUEUED)
    assert retrying.last_error_kind
    assert execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count() == 4

    ChunkJob.objects.filter(pk=retrying.pk).update(next_attempt_at=None)
    services.process_chunk(chunk=ChunkJob.objects.get(pk=retrying.pk))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120 and remote["duplicate_objects"] == 0
    # The page read twice is counted once (the alert says "120 fetched, 120 submitted").
    assert (execution.records_fetched, execution.records_submitted) == (120, 120)


def test_an_assets_slower_than_http_timeout_on_every_page_still_gets_every_record(
    make_source, sandbox, settings
):
    settings.HTTP_TIMEOUT = 0.5
    settings.CHUNK_RETRY_INLINE_MAX_SECONDS = 0
    source = services.push_mapping(source=make_source(page_size=40, max_chunks_in_flight=1))
    # Assets takes every page, but answers each 0.7 s later, past HTTP_TIMEOUT.
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"data"', status=0, delay=0.7, times=-1
    )
    execution = services.start_import(source=source)

    run_retries_now(execution)  # without waiting for their time

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    # Only the pages whose answer came too late were sent again, each once.
    assert max(execution.chunks.values_list("attempts", flat=True)) == 2
    assert remote["records_received"] < 2 * 120
    assert (
        "Assets answered pages later than HTTP_TIMEOUT (0.5 s), so this import waits longer "
        "for its answers"
    ) in execution.notice


def test_a_page_waits_longer_for_a_slow_assets_only_as_long_as_its_task_has_left(
    make_source, settings
):
    # django-q2 kills a task past Q_TASK_TIMEOUT, mid-page: a page sent late in the task
    # waits no longer than the task has left, less a "completed" post and a retry.
    settings.Q_TASK_TIMEOUT = 300
    settings.HTTP_TIMEOUT = 30
    settings.CHUNK_RETRY_INLINE_MAX_SECONDS = 1
    lane = lane_state.Lane(make_source(), execution_id=0)

    assert lane.answer_wait(None) is None  # Assets answers in time: HTTP_TIMEOUT
    assert lane.answer_wait(69) == 69
    lane.started -= 190  # the task has run 190 s: 79 s left after the post and the retry
    assert lane.answer_wait(69) == 69
    lane.started -= 70  # 260 s: 9 s left
    assert lane.answer_wait(69) == 30  # HTTP_TIMEOUT, which a task always has room for


def test_a_lane_longer_than_the_task_timeout_is_refused_at_start(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.Q_TASK_TIMEOUT = 60
    settings.CHUNK_LANE_SECONDS = 20
    settings.HTTP_TIMEOUT = 30

    with pytest.raises(SystemCheckError, match="importer.E001"):
        call_command("check")


def on_request_to(server, method, path_contains, action):
    """Run `action()` when `server` receives a matching request, before it answers."""
    on_request = server.on_request

    def hooked(request):
        on_request(request)
        if request.method == method and path_contains in request.raw_path:
            action()

    server.on_request = hooked


def test_a_cancelled_import_stops_its_lanes_at_the_next_page(
    make_source, sandbox, inventory, monkeypatch
):
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    transform = lanes.transform_page
    transformed = []

    def cancelled_by_an_operator_at_page_2(*args, **kwargs):
        transformed.append(1)
        if len(transformed) == 2:  # page 0, then page 2 of the first lane
            Execution.objects.filter(source=source).update(state=Execution.State.CANCELLED)
        return transform(*args, **kwargs)

    monkeypatch.setattr(lanes, "transform_page", cancelled_by_an_operator_at_page_2)
    page_6_asked = threading.Event()
    on_request_to(inventory, "GET", "offset=60", page_6_asked.set)

    execution = services.start_import(source=source)

    # Page 0 had gone out. The lane had page 4 on its way when it saw the cancel at page 2,
    # and stopped there: page 2 was not sent, no page after 4 was asked for, and nothing is
    # left running. The other lane never started.
    assert not page_6_asked.is_set()
    assert not execution.chunks.filter(state=ChunkJob.State.RUNNING).exists()
    stopped = execution.chunks.filter(index__in=[1, 2, 4]).values_list("state", flat=True)
    assert set(stopped) == {ChunkJob.State.CANCELLED}
    assert not execution.chunks.filter(index__gt=4).exists()
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 10


def test_a_page_taken_over_by_another_worker_is_left_to_it(
    make_source, sandbox, inventory, monkeypatch
):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2))
    # A lane asks for its first page while it claims it, so the request for page 0 may
    # arrive before our claim: the other worker takes over a page we hold, not a queued one.
    page_0_claimed = threading.Event()
    claim = lanes.claim_chunk

    def claim_noted(chunk):
        claimed = claim(chunk)
        if claimed and chunk.index == 0:
            page_0_claimed.set()
        return claimed

    monkeypatch.setattr(lanes, "claim_chunk", claim_noted)

    def another_worker_takes_page_0_over():
        # What a second worker does once our lease has run out: claim it again.
        if not page_0_claimed.wait(timeout=10):
            return
        try:
            ChunkJob.objects.filter(
                execution__source=source, index=0, state=ChunkJob.State.RUNNING, attempts=1
            ).update(attempts=2)
        finally:
            connection.close()  # the server's thread's own, which would outlive the test

    on_request_to(inventory, "GET", "offset=0", another_worker_takes_page_0_over)

    execution = services.start_import(source=source)

    page_0 = execution.chunks.get(index=0)
    assert page_0.state == ChunkJob.State.RUNNING and page_0.attempts == 2
    # We did not send page 0 (the other worker will), and our lane went on with page 2.
    objects = sandbox.execution(execution.assets_execution_id)["objects"]
    assert "demo-computer:SN-00001" not in objects
    assert execution.chunks.get(index=2).state == ChunkJob.State.SUBMITTED


def test_a_page_refused_because_the_import_was_cancelled_meanwhile_is_not_a_failure(
    make_source, sandbox, monkeypatch
):
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))
    # Assets refuses page 0, as it would once the execution is cancelled on its side; its
    # answer is held until the cancel, so the lane cannot see the refusal before it.
    sandbox.faults.add(method="POST", path_contains="/data", status=400, times=1)
    cancelled = threading.Event()
    on_request_to(sandbox, "POST", "/data", lambda: cancelled.wait(timeout=10))
    transform = lanes.transform_page
    transformed = []
    cancelled = threading.Event()

    def cancelled_while_page_0_was_in_flight(*args, **kwargs):
        transformed.append(1)
        if len(transformed) == 2:
            Execution.objects.filter(source=source).update(state=Execution.State.CANCELLED)
            cancelled.set()
        return transform(*args, **kwargs)

    submit = lane_state.AssetsClient.submit_chunk

    def answered_once_cancelled(client, *args, **kwargs):
        # Assets' answer to page 0 reaches the lane only after the cancel, however fast it is.
        try:
            return submit(client, *args, **kwargs)
        finally:
            cancelled.wait(10)

    monkeypatch.setattr(lanes, "transform_page", cancelled_while_page_0_was_in_flight)
    monkeypatch.setattr(lane_state.AssetsClient, "submit_chunk", answered_once_cancelled)

    execution = services.start_import(source=source)

    page_0 = execution.chunks.get(index=0)
    assert page_0.state == ChunkJob.State.CANCELLED
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()
    execution.refresh_from_db()
    assert execution.state == Execution.State.CANCELLED and execution.failure_reported_at is None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writer at a time: no deadlock"
)
def test_a_page_recorded_while_another_lane_adds_its_pages_never_deadlocks(
    make_source, sandbox, monkeypatch
):
    # Lane 3 records its page while lane 0, in one transaction, counts its own fetched page on
    # the execution and then adds the pages ahead, page 3 among them (it exists already).
    source = services.push_mapping(source=make_source(max_chunks_in_flight=4, page_size=10))
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    execution = services.start_import(source=source)
    page_3 = execution.chunks.get(index=3)
    assert claim_chunk(page_3)
    lane_3_done, errors = threading.Event(), []

    def lane_3_records_its_page():
        try:
            mark_submitted(page_3, 10, [])
        except Exception as error:  # a deadlock, when the rows are taken in opposite orders
            errors.append(error)
        finally:
            lane_3_done.set()
            connection.close()

    with transaction.atomic():  # lane 0
        page_sql.record_fetched(execution, records=10)
        recorder = threading.Thread(target=lane_3_records_its_page)
        recorder.start()
        wait_for(_waiting_for_a_lock, message="lane 3 never waited for lane 0")
        page_sql.create_missing([ChunkJob(execution=execution, index=i) for i in (3, 4)])
    assert lane_3_done.wait(timeout=30) and errors == []
    recorder.join(timeout=10)

    page_3.refresh_from_db()
    execution.refresh_from_db()
    assert page_3.state == ChunkJob.State.SUBMITTED
    assert (execution.pages_fetched, execution.pages_submitted) == (1, 1)


def _waiting_for_a_lock() -> bool:
    """Whether a session of the test database waits for a row lock (read afresh: within a
    transaction PostgreSQL would show the first reading again)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def fail_once(monkeypatch, module, name: str, *, on_call: int):
    """The `on_call`-th call of module.name raises OperationalError, as a statement on a
    connection the database dropped (a restart, a failover) does; the others go through."""
    real, calls = getattr(module, name), []

    class AdminShutdown(Exception):  # what the driver raises, with the server's SQLSTATE
        sqlstate = "57P01"

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            connection.close()  # the server's side of it: gone
            message = "terminating connection due to administrator command"
            raise OperationalError(message) from AdminShutdown(message)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("record_submitted", id="recording a page Assets took"),
        pytest.param("record_fetched", id="counting a fetched page"),
    ],
)
def test_a_lost_database_connection_fails_no_page_and_sends_none_twice(
    make_source, sandbox, monkeypatch, statement
):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    calls = fail_once(monkeypatch, page_sql, statement, on_call=3)

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert len(calls) > 3
    assert execution.state == Execution.State.DONE, execution.error
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == len(remote["objects"]) == 120


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL drops a session on demand"
)
def test_sessions_the_database_drops_mid_import_leave_it_done_with_every_record(
    make_source, sandbox, inventory, cluster
):
    # A restart, a failover or a pooler recycling its connections: every worker's session
    # goes at once, between two of their statements.
    from tests.conftest import wait_for_execution_to_finish

    inventory.latency = 0.2
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    execution = services.start_import(source=source)
    wait_for(lambda: Execution.objects.get(pk=execution.pk).pages_submitted >= 3)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] > 0
    execution = wait_for_execution_to_finish(execution, timeout=90)

    assert execution.state == Execution.State.DONE, execution.error
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    assert remote["records_received"] - 120 <= 2 * 2 * 10  # at most the pages in flight


class DatabaseRestart:
    """The test database going away as in a restart (its sessions ended, new ones refused)
    and coming back, told from a connection of its own to the server's maintenance
    database."""

    def __init__(self):
        import psycopg

        self.name = connection.settings_dict["NAME"]
        self.server = psycopg.connect(
            _database_url_of_test_database(), dbname="postgres", autocommit=True
        )

    def down(self) -> None:
        self.server.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.server.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [self.name],
        )

    def up(self) -> None:
        self.server.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


class OnLog(logging.Handler):
    """Runs `action` the first time a message holding `text` is logged."""

    def __init__(self, text: str, action):
        super().__init__(logging.INFO)
        self.text, self.action, self.seen = text, action, False

    def emit(self, record):
        if not self.seen and self.text in record.getMessage():
            self.seen = True
            self.action()


@pytest.fixture
def database_restart():
    restart = DatabaseRestart()
    yield restart
    restart.up()
    restart.server.close()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL refuses connections on demand"
)
def test_a_database_restarting_for_a_moment_holds_the_lane_a_moment_and_sends_no_page_twice(
    make_source, sandbox, monkeypatch, caplog, database_restart
):
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    real_record_submitted, calls = page_sql.record_submitted, []

    def restart_before_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            database_restart.down()
        return real_record_submitted(*args, **kwargs)

    monkeypatch.setattr(page_sql, "record_submitted", restart_before_the_third)
    # Up again by the time the lane first waits for it: well under a second.
    back = OnLog("the database is away", database_restart.up)
    caplog.set_level(logging.INFO, logger=reconnects.logger.name)
    reconnects.logger.addHandler(back)
    try:
        execution = services.start_import(source=source)
    finally:
        reconnects.logger.removeHandler(back)

    execution.refresh_from_db()
    assert back.seen
    assert execution.state == Execution.State.DONE, execution.error
    # No page waited for its lease to lapse and was taken up again.
    assert not execution.chunks.filter(attempts__gt=1).exists()
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == len(remote["objects"]) == 120


def test_a_statement_refused_on_a_live_connection_is_counted_not_retried_for_ever(
    make_source, sandbox, monkeypatch
):
    # "database or disk is full", a statement_timeout (QueryCanceled), SQLite's "disk I/O
    # error": OperationalErrors on a live connection that come back on every try.
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))

    class DiskFull(Exception):  # what the driver raises, with the server's SQLSTATE
        sqlstate = "53100"

    def broken(*args, **kwargs):
        message = "could not extend file: No space left on device"
        raise OperationalError(message) from DiskFull(message)

    monkeypatch.setattr(page_sql, "record_fetched", broken)
    queued = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", queued.append)
    monkeypatch.setattr(
        chunks.outcomes, "retry_delay", lambda attempt, retry_after: 0.0
    )  # no waits
    execution = services.start_import(source=source)

    for _ in range(24):  # well past CHUNK_MAX_ATTEMPTS (5) for each of the two lanes
        if queued:
            lanes.process_chunk(chunk=ChunkJob.objects.get(pk=queued.pop(0)))

    states = list(execution.chunks.values_list("state", "attempts"))
    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED, f"chunks {states}: a hot loop"
    assert "the database refused a statement (OperationalError: could not extend file" in (
        execution.error
    )
    assert "(gave up after 5 attempts)" in execution.error  # tried again: it may have passed


def test_a_database_that_refuses_statements_for_a_moment_does_not_fail_the_import(
    make_source, sandbox, monkeypatch
):
    # Its disk full for a moment: the pages it refused are tried again, and go through.
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    real_record_fetched = page_sql.record_fetched
    refusals = {"left": 3}

    def full_for_a_moment(*args, **kwargs):
        if refusals["left"]:
            refusals["left"] -= 1
            raise OperationalError("could not extend file: No space left on device")
        return real_record_fetched(*args, **kwargs)

    monkeypatch.setattr(page_sql, "record_fetched", full_for_a_moment)
    monkeypatch.setattr(
        chunks.outcomes, "retry_delay", lambda attempt, retry_after: 0.0
    )  # no waits

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == len(remote["objects"]) == 120


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writing transaction at a time"
)
def test_an_import_started_while_its_source_is_saved_waits_and_reads_what_was_saved(
    make_source, sandbox, inventory, cluster
):
    # The admin checked that no import runs, and is saving a new page size, when someone
    # starts an import: the import must not read pages of 10 and then of 25.
    from importer.models import ImportSource
    from importer.services.editing import running_import
    from tests.conftest import wait_for_execution_to_finish

    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    started = {}

    def start() -> None:
        try:
            started["execution"] = services.start_import(
                source=ImportSource.objects.get(pk=source.pk)
            )
        finally:
            connection.close()

    def import_waits() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # read once per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    starter = threading.Thread(target=start)
    with transaction.atomic():
        assert running_import(source) is None  # the form's check
        starter.start()
        wait_for(lambda: import_waits() or started, timeout=30)
        assert not started, started
        ImportSource.objects.filter(pk=source.pk).update(page_size=25)
    starter.join(timeout=60)
    execution = wait_for_execution_to_finish(started["execution"], timeout=90)

    assert execution.state == Execution.State.DONE, execution.error
    assert {int(chunk.cursor or 0) % 25 for chunk in execution.chunks.all()} == {0}
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == len(remote["objects"]) == 120


def test_a_worker_whose_clock_lags_writes_leases_the_others_still_read_as_held(
    make_source, monkeypatch
):
    # A host 45 s behind: by its own clock, the 30 s lease it writes would have lapsed 15 s
    # before it was written, and the others would take its pages while it works on them.
    from importer import clock

    source = make_source()
    execution = Execution.objects.create(source=source, state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=0)
    on_time = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: on_time() - timedelta(seconds=45))
    clock.forget()

    assert claim_chunk(chunk)

    monkeypatch.setattr(timezone, "now", on_time)
    clock.forget()
    chunk.refresh_from_db()
    assert chunk.lease_expires_at > on_time() + timedelta(seconds=20)
    assert not ChunkJob.objects.claimable(now=clock.now()).filter(pk=chunk.pk).exists()


@pytest.mark.parametrize("then", ["a timeout", "our own rate limit"])
def test_waits_a_rate_limit_asked_for_use_up_no_attempt_of_the_page(make_source, then):
    # Refused with 429 more times than a page is tried: a timeout afterwards is retried as
    # any first failure is, and our own rate limit putting it off does not fail it.
    from importer.services.chunks import chunk_failed, postpone_chunk

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=0)
    for _ in range(7):
        ChunkJob.objects.filter(pk=chunk.pk).update(next_attempt_at=None)
        chunk.refresh_from_db()
        assert claim_chunk(chunk)
        chunk_failed(
            chunk, "Assets is rate limiting us (429)", permanent=False, kind="rate_limited"
        )
    ChunkJob.objects.filter(pk=chunk.pk).update(next_attempt_at=None)
    chunk.refresh_from_db()
    assert claim_chunk(chunk)

    if then == "a timeout":
        chunk_failed(chunk, "did not answer within 30 s", permanent=False, kind="timeout")
    else:
        postpone_chunk(chunk, 5, reason="rate_limited_by_us")
    ChunkJob.objects.filter(pk=chunk.pk).update(next_attempt_at=None)
    chunk.refresh_from_db()

    assert chunk.state == ChunkJob.State.QUEUED and chunk.rate_limited_waits == 7
    assert claim_chunk(chunk)


def test_a_cluster_worker_hands_the_interpreter_on_quickly_to_its_lane_threads(cluster):
    """A lane's fetch thread waits for the interpreter lock while the lane transforms a
    page: at Python's default 5 ms a page of 1000 records took a sixth longer to fetch."""
    from django_q.tasks import async_task, result

    from importer.spawn import SWITCH_INTERVAL_S

    task = async_task("sys.getswitchinterval")
    assert result(task, wait=30_000) == pytest.approx(SWITCH_INTERVAL_S)


RECONNECT_WAIT_IN_TESTS = 1.0


@pytest.fixture
def database_away_for_good(make_source, sandbox, monkeypatch, settings):
    """An import whose database goes away (for longer than a lane waits for it) while lane 0
    works on page 2, page 4 claimed ahead: the lane can neither go on with page 2 nor give
    either page back until the test brings the database back (`back()`). Tasks are held
    back; returns (execution, back)."""
    settings.CHUNK_LEASE_SECONDS = 1
    monkeypatch.setattr(reconnects, "RECONNECT_WAIT_SECONDS", RECONNECT_WAIT_IN_TESTS)
    source = services.push_mapping(source=make_source(max_chunks_in_flight=2, page_size=10))
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: None)
    execution = services.start_import(source=source)
    away = {"now": False}

    class AdminShutdown(Exception):  # what the driver raises, with the server's SQLSTATE
        sqlstate = "57P01"

    def lost(*args, **kwargs):
        connection.close()
        message = "terminating connection due to administrator command"
        raise OperationalError(message) from AdminShutdown(message)

    def while_away(real):
        return lambda *args, **kwargs: (lost if away["now"] else real)(*args, **kwargs)

    transform, transformed = lanes.transform_page, []

    def away_at_page_2(*args, **kwargs):
        transformed.append(1)
        if len(transformed) == 2:
            away["now"] = True
        return while_away(transform)(*args, **kwargs)

    monkeypatch.setattr(lanes, "transform_page", away_at_page_2)
    monkeypatch.setattr(lane_state, "release_chunk", while_away(lane_state.release_chunk))

    def back():
        away["now"] = False
        monkeypatch.undo()  # tasks run again as they are queued

    return execution, back


def test_a_database_away_for_good_holds_a_lane_its_reconnect_wait_once_in_all(
    database_away_for_good, caplog
):
    execution, back = database_away_for_good
    caplog.set_level(logging.INFO, logger=reconnects.logger.name)

    lanes.process_chunk(chunk=execution.chunks.select_related("execution__source").get(index=0))
    back()

    # The page it was on and the page claimed ahead each found the database away: together
    # they waited the lane's one allowance, not one each.
    waits = [
        float(re.search(r"trying again in ([0-9.]+) s", record.getMessage())[1])
        for record in caplog.records
        if record.getMessage().startswith("the database is away")
    ]
    shown_to_a_tenth = 0.05 * len(waits)
    assert waits and sum(waits) <= RECONNECT_WAIT_IN_TESTS + shown_to_a_tenth


def test_pages_a_lane_could_not_give_back_are_taken_up_once_their_leases_lapse(
    database_away_for_good, sandbox, settings
):
    execution, back = database_away_for_good

    lanes.process_chunk(chunk=execution.chunks.select_related("execution__source").get(index=0))
    back()

    # The lane's heartbeat stopped with it: once the database is back it renews nothing, and
    # the pages it held (page 2, page 4 claimed ahead) lapse for housekeeping to take up.
    assert not [t for t in threading.enumerate() if t.name == "lease-heartbeat" and t.is_alive()]
    held = execution.chunks.filter(index__in=[2, 4], state=ChunkJob.State.RUNNING)
    assert held.count() == 2
    wait_for(
        lambda: not held.filter(lease_expires_at__gt=timezone.now()).exists(),
        timeout=10,
        message="a lease is still renewed",
    )
    settings.QUEUED_CHUNK_REQUEUE_SECONDS = 0  # the lost tasks of the first pages too

    services.look_after_imports()

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120


def test_a_lane_back_on_its_connection_has_its_whole_wait_again_for_a_later_loss(monkeypatch):
    # A pooler recycling the connection early in a lane, the database restarting later in it:
    # the second loss gets its new connection too, or the pages Assets took go unrecorded.
    now = [1000.0]
    monkeypatch.setattr(reconnects.time, "monotonic", lambda: now[0])
    lane_reconnects, tries = reconnects.Reconnects(), []

    class AdminShutdown(Exception):
        sqlstate = "57P01"

    def lost_on_its_first_try(step: str) -> None:
        tries.append(step)
        if tries.count(step) == 1:
            message = "terminating connection due to administrator command"
            raise OperationalError(message) from AdminShutdown(message)

    reconnects.again_on_a_new_connection(lane_reconnects, lost_on_its_first_try, "early")
    now[0] += 2 * reconnects.RECONNECT_WAIT_SECONDS
    reconnects.again_on_a_new_connection(lane_reconnects, lost_on_its_first_try, "late")

    assert tries == ["early", "early", "late", "late"]
