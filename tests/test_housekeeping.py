"""Lost work is taken up within seconds: leases renewed by live lanes only, put-off tasks sent
on time, and imports whose next step never came looked at again."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from importer import services, work_queue
from importer.assets import AssetsClient
from importer.models import ChunkJob, Execution, PeriodicJob
from importer.services.chunks import claim_chunk
from importer.services.leases import Leases, renewal_period
from importer.ticker import HOUSEKEEPING, Ticker

pytestmark = pytest.mark.django_db(transaction=True)

State = Execution.State


def an_execution(source, *, state=Execution.State.INGESTING, pages=3, quiet_for=0) -> Execution:
    """An execution Assets knows, with `pages` pages SUBMITTED, quiet for `quiet_for` s."""
    started = AssetsClient.for_source(source).start_execution()
    execution = Execution.objects.create(
        source=source, state=state, assets_execution_id=started.execution_id
    )
    for index in range(pages):
        ChunkJob.objects.create(execution=execution, index=index, state=ChunkJob.State.SUBMITTED)
    Execution.objects.filter(pk=execution.pk).update(
        last_chunk_index=pages - 1, updated_at=timezone.now() - timedelta(seconds=quiet_for)
    )
    return execution


@pytest.fixture
def queued(monkeypatch):
    """Chunk ids queued, instead of running them."""
    ids = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", ids.append)
    return ids


class Clock:
    """A monotonic clock a test moves on by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_worker_per_period_takes_up_lost_work():
    assert PeriodicJob.objects.claim_due(HOUSEKEEPING, every=10)
    assert not PeriodicJob.objects.claim_due(HOUSEKEEPING, every=10)

    PeriodicJob.objects.filter(name=HOUSEKEEPING).update(due_at=timezone.now())

    assert PeriodicJob.objects.claim_due(HOUSEKEEPING, every=10)


def test_of_several_workers_ticking_one_takes_up_lost_work_each_period(monkeypatch):
    runs = []
    monkeypatch.setattr(services, "recover_lost_work", lambda: runs.append(1))
    clock = Clock()
    workers = [Ticker(clock), Ticker(clock)]

    for worker in workers:
        worker.tick()
    assert runs == [1]

    clock.now += 60
    PeriodicJob.objects.filter(name=HOUSEKEEPING).update(due_at=timezone.now())
    for worker in workers:
        worker.tick()
    assert runs == [1, 1]


def test_a_put_off_task_is_sent_once_when_its_time_has_come(monkeypatch):
    sent = []
    monkeypatch.setattr(work_queue, "async_task", lambda func, *args, **kw: sent.append(args))
    work_queue.enqueue_status_refresh_after(7, 0)
    work_queue.enqueue_status_refresh_after(8, 60)

    assert work_queue.send_due_tasks() == 1
    assert work_queue.send_due_tasks() == 0

    assert sent == [(7,)]
    left = Schedule.objects.filter(name__startswith="refresh-status-")
    assert list(left.values_list("name", flat=True)) == ["refresh-status-8"]


def test_a_forked_worker_queues_through_a_broker_of_its_own():
    # A broker holds a connection (Redis): a worker forked from a process that had one must
    # not write to the parent's socket.
    parents = work_queue._process_broker()
    assert work_queue._process_broker() is parents  # made once per process
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        os.write(write_end, b"own" if work_queue._process_broker() is not parents else b"same")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read_end, 8) == b"own"


def test_an_import_whose_completion_check_was_lost_is_completed(pushed_source, sandbox):
    execution = an_execution(pushed_source, quiet_for=60)

    services.recover_lost_work()  # tasks run inline here

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 1


def test_an_import_with_a_page_still_going_is_left_to_that_page(pushed_source, sandbox):
    execution = an_execution(pushed_source, quiet_for=60)
    ChunkJob.objects.filter(execution=execution, index=2).update(
        state=ChunkJob.State.RUNNING, attempts=1, lease_expires_at=timezone.now() + timedelta(60)
    )

    services.recover_lost_work()

    execution.refresh_from_db()
    assert execution.state == Execution.State.INGESTING
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


def test_a_processing_import_nobody_follows_any_more_is_read_again(pushed_source, sandbox):
    execution = an_execution(pushed_source, state=Execution.State.PROCESSING, quiet_for=600)
    AssetsClient.for_source(pushed_source).mark_completed(execution.assets_execution_id)

    services.recover_lost_work()

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE


def test_a_chunk_waiting_its_turn_gets_one_more_task_per_period(pushed_source, sandbox, queued):
    execution = an_execution(pushed_source)
    waiting = ChunkJob.objects.create(execution=execution, index=3)
    ChunkJob.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    services.requeue_stalled_chunks()
    services.requeue_stalled_chunks()

    assert queued == [waiting.pk]


def test_a_lane_renews_the_lease_of_a_chunk_it_holds(pushed_source, sandbox):
    chunk = ChunkJob.objects.create(execution=an_execution(pushed_source), index=3)
    assert claim_chunk(chunk)
    claimed_until = ChunkJob.objects.get(pk=chunk.pk).lease_expires_at
    clock = Clock()
    leases = Leases(clock)
    leases.hold(chunk)

    clock.now += renewal_period()
    assert leases.holds(chunk)
    leases.close()

    assert ChunkJob.objects.get(pk=chunk.pk).lease_expires_at > claimed_until


def test_a_lease_is_never_renewed_for_a_chunk_another_worker_took_over(pushed_source, sandbox):
    chunk = ChunkJob.objects.create(execution=an_execution(pushed_source), index=3)
    assert claim_chunk(chunk)
    clock = Clock()
    ours = Leases(clock)
    ours.hold(chunk)
    # Our worker froze past its lease; another worker took the chunk over.
    ChunkJob.objects.filter(pk=chunk.pk).update(lease_expires_at=timezone.now())
    theirs = ChunkJob.objects.get(pk=chunk.pk)
    assert claim_chunk(theirs)
    clock.now += 10 * renewal_period()

    assert not ours.holds(chunk)
    assert not ours.holds(chunk)  # lost for good
    ours.close()

    taken = ChunkJob.objects.get(pk=chunk.pk)
    assert taken.attempts == 2
    assert taken.lease_expires_at == theirs.lease_expires_at


@pytest.mark.parametrize("assets_heard", [False, True], ids=["before Assets answered", "after"])
def test_a_start_whose_process_stopped_frees_its_source(pushed_source, sandbox, assets_heard):
    # `run_import` killed, or a web request timed out, while Assets took long to answer.
    stuck = Execution.objects.create(source=pushed_source)
    if assets_heard:
        started = AssetsClient.for_source(pushed_source).start_execution()
        Execution.objects.filter(pk=stuck.pk).update(assets_execution_id=started.execution_id)
    Execution.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    services.look_after_imports()

    stuck.refresh_from_db()
    assert stuck.state == (Execution.State.FAILED if assets_heard else Execution.State.REFUSED)
    assert "the process starting it stopped" in stuck.error
    if assets_heard:  # Assets heard it failed, and takes the next import
        assert sandbox.execution(stuck.assets_execution_id)["state"] == "FAILED"
    later = services.start_import(source=pushed_source)
    assert later.state in (Execution.State.INGESTING, Execution.State.DONE)


def test_a_start_still_under_way_is_left_alone(pushed_source, sandbox):
    starting = Execution.objects.create(source=pushed_source)

    services.look_after_imports()

    starting.refresh_from_db()
    assert starting.state == Execution.State.PENDING


@pytest.mark.parametrize("who", ["housekeeping", "an operator"])
def test_a_start_ended_while_assets_answers_leaves_nothing_running_in_assets(
    pushed_source, sandbox, monkeypatch, who
):
    # Assets answers late (reports owed to it, a slow 5xx, retries), and meanwhile the run is
    # given up by housekeeping, or cancelled from the list.
    real_start = AssetsClient.start_execution

    def slow_start(self, **kwargs):
        pending = Execution.objects.get(source=pushed_source, state=Execution.State.PENDING)
        if who == "housekeeping":
            Execution.objects.filter(pk=pending.pk).update(
                updated_at=timezone.now() - timedelta(hours=1)
            )
            services.look_after_imports()
        else:
            services.cancel_execution(execution=pending)
        return real_start(self, **kwargs)

    monkeypatch.setattr(AssetsClient, "start_execution", slow_start)

    with pytest.raises(services.ImportRefused, match="while it started"):
        services.start_import(source=pushed_source)

    execution = Execution.objects.get(source=pushed_source)
    assert not execution.chunks.exists()
    assert sandbox.execution(execution.assets_execution_id)["state"] == "CANCELLED"
    monkeypatch.undo()
    assert services.start_import(source=pushed_source).pk != execution.pk  # Assets takes it


def test_a_broker_that_cannot_take_tasks_for_a_while_loses_no_page(
    make_source, sandbox, inventory, settings, monkeypatch
):
    # Redis restarting mid-import: the pages the lanes hand on meanwhile cannot be queued.
    # Their rows say they wait, and housekeeping queues them once the broker is back.
    real_async_task = work_queue.async_task
    broker = {"takes": 1, "refused": 0}  # the import's first page goes; then Redis is down

    def async_task(func, *args, **options):
        if func == "importer.tasks.run_chunk":
            if broker["takes"] <= 0:
                broker["refused"] += 1
                raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            broker["takes"] -= 1
        return real_async_task(func, *args, **options)

    monkeypatch.setattr(work_queue, "async_task", async_task)
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=2))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert broker["refused"] and execution.state == Execution.State.INGESTING, execution.error
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()
    broker["takes"] = 10**6  # back

    services.look_after_imports()

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == len(remote["objects"]) == 120


def test_a_hung_broker_holds_a_housekeeping_round_up_for_one_try_not_one_per_import(
    make_source, sandbox, hung_broker, monkeypatch
):
    states = [State.INGESTING, State.INGESTING, State.COMPLETING, State.PROCESSING]
    executions = [
        an_execution(
            services.push_mapping(source=make_source(name=f"s{i}", import_source_id=f"src-{i}")),
            state=state,
            quiet_for=3600,  # each due a completion check or a status read; stalled too
        )
        for i, state in enumerate(states)
    ]
    real_async_task, tries = work_queue.async_task, []

    def counted(func, *args, **options):
        tries.append(func)
        return real_async_task(func, *args, **options)

    monkeypatch.setattr(work_queue, "async_task", counted)

    services.look_after_imports()

    # The broker was asked once; what it was not asked waits in its row for the next round.
    assert len(tries) == 1, tries
    for execution in executions:
        execution.refresh_from_db()
    assert [execution.state for execution in executions] == [
        State.INGESTING,
        State.INGESTING,
        State.INGESTING,  # handed back: the next round checks it again
        State.PROCESSING,
    ]
