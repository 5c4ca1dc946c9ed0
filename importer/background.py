"""Background threads of a worker process, for a lane's HTTP calls.

A lane has at most one page being fetched ahead and two pages being submitted to Assets, and
a worker process runs one lane at a time; a fourth thread is for a first page asked for by a
task whose claim then failed (`lanes.process_chunk`), which may still be on its way. The
threads only talk HTTP: they never touch the database, so they need no connection of their
own and cannot leave a transaction open; the lane records every outcome from its own thread.
A worker forked from a parent that had the threads gets its own.
"""

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def run(function, *args) -> Future:
    """Start `function(*args)` in one of this process's threads; the Future gives the result."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="lane"))
        return _pool[1].submit(function, *args)
