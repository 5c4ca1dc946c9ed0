"""A bare django-q2 task chain: the floor under any design where a task queues the next one.

`link` does nothing but enqueue the next link, so a chain of N links run by a real cluster
costs N times what one hop through the broker costs (enqueue, the pusher's dequeue and poll,
hand-over to a worker), with no application work at all. The import flow's chunks hop through
the same broker, so this is what their queue overhead is compared with.

The times come from the workers themselves: the last link of a chain writes `time.time()` to
a small file (not its task result, so the measure does not depend on `save_limit` nor wait for
the monitor), and the caller compares that with the moment it enqueued the first link.
"""

from __future__ import annotations

import time
from pathlib import Path

from django_q.tasks import async_task

FUNC = "bench.chain.link"
MARKS = Path(__file__).resolve().parent / "results" / "tmp" / "chain-marks"


def link(remaining: int, run: str) -> None:
    """Queue the next link while any remain; the last one writes when it ran."""
    if remaining > 0:
        async_task(FUNC, remaining - 1, run, task_name=f"{run}-{remaining - 1}")
    else:
        (MARKS / run).write_text(repr(time.time()))


def wait_for_marks(runs: list[str], *, timeout: float, interval: float = 0.05) -> list[float]:
    """When the last link of each run ran (time.time() in the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        paths = [MARKS / run for run in runs]
        if all(path.exists() for path in paths):
            times = []
            for path in paths:
                times.append(float(path.read_text()))
                path.unlink()
            return times
        if time.monotonic() > deadline:
            done = sum(1 for path in paths if path.exists())
            raise TimeoutError(f"only {done} of {len(runs)} chains ended after {timeout} s")
        time.sleep(interval)


def wait_until_cluster_takes_work(timeout: float = 60.0) -> float:
    """Seconds until a one-link chain has run: the cluster is up and takes tasks."""
    MARKS.mkdir(parents=True, exist_ok=True)
    start = time.time()
    run = f"bench-ready-{start:.6f}"
    async_task(FUNC, 0, run, task_name=run)
    wait_for_marks([run], timeout=timeout)
    return time.time() - start


def run_chain(links: int, *, chains: int = 1, timeout: float = 900.0) -> dict:
    """Run `chains` chains side by side, `links` links in all; the cost of one link.

    With one chain, every hop waits for the previous one: `ms_per_link` is the latency of a
    hop. With one chain per worker (as the import fans out to its chunks in flight),
    `ms_per_link_slot` is the time one worker slot spends per link, comparable with the time
    a worker spends per chunk.
    """
    MARKS.mkdir(parents=True, exist_ok=True)
    links = max(links, chains)
    run = f"bench-chain-{time.time():.6f}"
    per_chain = [links // chains + (1 if k < links % chains else 0) for k in range(chains)]
    start = time.time()
    for k, length in enumerate(per_chain):
        async_task(FUNC, length - 1, f"{run}-c{k}", task_name=f"{run}-c{k}-{length - 1}")
    ends = wait_for_marks([f"{run}-c{k}" for k in range(chains)], timeout=timeout)
    elapsed = max(ends) - start
    return {
        "links": links,
        "chains": chains,
        "seconds": elapsed,
        "ms_per_link": elapsed * 1000 / links,
        "ms_per_link_slot": elapsed * 1000 * chains / links,
    }
