"""One background thread per worker process, for fetching a lane's next page.

The thread only talks to the source over HTTP (or reads a file): it never touches the
database, so it needs no connection of its own and cannot leave a transaction open. Each
lane waits for its page before asking for another, so one thread per process is enough.
A worker forked from a parent that had the thread gets one of its own.
"""

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def run(function, *args) -> Future:
    """Start `function(*args)` in this process's fetch thread; its Future gives the result."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch"))
        return _pool[1].submit(function, *args)
