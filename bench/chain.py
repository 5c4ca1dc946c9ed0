"""A bare django-q2 task chain: the floor under any design where a task queues the next one.

`link` does nothing but enqueue the next link, so a chain of N links run by a real cluster
costs N times what one hop through the broker costs (enqueue, the pusher's dequeue and poll,
hand-over to a worker, the result saved by the monitor), with no application work at all.
The import flow's chunks hop through the same broker, so this is what their queue overhead
is compared with.

The times come from the workers themselves: the last link returns `time.time()` when it ran,
and the caller compares that with the moment it enqueued the first link.
"""

from __future__ import annotations

import time

from django_q.models import Task
from django_q.tasks import async_task

FUNC = "bench.chain.link"


def noop() -> float:
    """A task that only says when it ran (used to wait until the cluster takes work)."""
    return time.time()


def link(remaining: int, run: str) -> float:
    """Queue the next link while any remain; return when this one ran."""
    if remaining > 0:
        async_task(FUNC, remaining - 1, run, task_name=f"{run}-{remaining - 1}")
    return time.time()


def wait_for_results(names: list[str], *, timeout: float, interval: float = 0.2) -> dict:
    """name -> result of the named tasks, once every one of them has succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        done = dict(Task.objects.filter(name__in=names, success=True).values_list("name", "result"))
        if len(done) == len(names):
            return done
        failed = list(
            Task.objects.filter(name__in=names, success=False).values_list("name", flat=True)
        )
        if failed:
            raise RuntimeError(f"chain tasks failed: {failed}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(done)} of {len(names)} chain ends after {timeout} s")
        time.sleep(interval)


def wait_until_cluster_takes_work(timeout: float = 60.0) -> float:
    """Seconds until a no-op task has run: the cluster is up and its workers take tasks."""
    start = time.time()
    name = f"bench-ready-{start:.6f}"
    async_task("bench.chain.noop", task_name=name)
    wait_for_results([name], timeout=timeout, interval=0.05)
    return time.time() - start


def run_chain(links: int, *, chains: int = 1, timeout: float = 600.0) -> dict:
    """Run `chains` chains side by side, `links` links in all; the cost of one link.

    With one chain, every hop waits for the previous one: `ms_per_link` is the latency of a
    hop. With one chain per worker (as the import fans out to its chunks in flight),
    `ms_per_link_slot` is the time one worker slot spends per link, comparable with the time
    a worker spends per chunk.
    """
    links = max(links, chains)
    run = f"bench-chain-{time.time():.6f}"
    per_chain = [links // chains + (1 if k < links % chains else 0) for k in range(chains)]
    ends = [f"{run}-c{k}-0" for k in range(chains)]
    start = time.time()
    for k, length in enumerate(per_chain):
        async_task(FUNC, length - 1, f"{run}-c{k}", task_name=f"{run}-c{k}-{length - 1}")
    finished = wait_for_results(ends, timeout=timeout)
    elapsed = max(finished.values()) - start
    return {
        "links": links,
        "chains": chains,
        "seconds": elapsed,
        "ms_per_link": elapsed * 1000 / links,
        "ms_per_link_slot": elapsed * 1000 * chains / links,
    }
