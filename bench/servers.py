"""The benchmark's loopback servers: the demo inventory (the source) and the Assets sandbox.

Each runs in a process of its own by default. Served from the benchmark's process, the two
servers and the benchmark's own threads shared one interpreter lock: a page being written
waited for a chunk being read, and the wait counted as source or Assets latency that real
services, on machines of their own, do not add (at 10^6 records the sandbox answered in
60 ms where its latency was 50). The servers still share this machine's cores with the
cluster, and their CPU is counted apart (`bench_process` includes them).

`ServerProcess` is the handle the benchmark keeps: `base_url`, the `timings` and `arrivals`
the server recorded, `execution(id)` of the sandbox, and `stop()`. With `own_process=False`
the server runs in this process's threads (the profiler of bench/profile_lane.py follows it
there).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

TOKEN = "bench-sandbox-token"


def timed_handler_class():
    from importer.devtools.faults import _Handler

    class TimedHandler(_Handler):
        """Records (method, path, body bytes, seconds) of every request the server answers,
        and (method, path, time.time()) of its arrival."""

        def _handle(self) -> None:
            self.app.arrivals.append((self.command, self.path, time.time()))
            start = time.perf_counter()
            try:
                super()._handle()
            finally:
                length = int(self.headers.get("Content-Length") or 0)
                self.app.timings.append(
                    (self.command, self.path, length, time.perf_counter() - start)
                )

    return TimedHandler


def _timed(server):
    server._httpd.RequestHandlerClass = timed_handler_class()
    server.timings = []
    server.arrivals = []
    return server.start()


def _sandbox(submit_latency: float, processing_seconds: float):
    from importer.devtools.assets_sandbox import AssetsSandbox

    # Counting each object, not keeping copies of every record: the sandbox shares the two
    # cores with the cluster it measures. Every chunk is still validated.
    sandbox = AssetsSandbox(token=TOKEN, processing_seconds=processing_seconds, keep_copies=False)
    if submit_latency:
        # status 0: only a delay, then the normal answer (chunks and the completed post).
        sandbox.faults.add(
            method="POST", path_contains="/data", status=0, delay=submit_latency, times=-1
        )
    return _timed(sandbox)


def _inventory(records: int, fetch_latency: float):
    from importer.devtools.demo_source import DemoInventory

    return _timed(DemoInventory(records=records, latency=fetch_latency))


def start_sandbox(submit_latency: float, processing_seconds: float = 0.0, *, own_process=True):
    """The Assets sandbox, `submit_latency` s on every POST .../data (chunks and "completed")."""
    if not own_process:
        return _sandbox(submit_latency, processing_seconds)
    return ServerProcess(_sandbox, submit_latency, processing_seconds)


def start_inventory(records: int, fetch_latency: float, *, own_process=True):
    """The demo inventory: `records` computers, `fetch_latency` s per page."""
    if not own_process:
        return _inventory(records, fetch_latency)
    return ServerProcess(_inventory, records, fetch_latency)


class ServerProcess:
    """A loopback server in a forked child, driven through a pipe."""

    def __init__(self, build, *args) -> None:
        from django.db import connections

        connections.close_all()  # a forked child must not share this process's connections
        context = multiprocessing.get_context("fork")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(build, args, child_end), name=build.__name__, daemon=True
        )
        self._process.start()
        self.pid = self._process.pid
        self.base_url = self._pipe.recv()

    def call(self, method: str, *args) -> Any:
        self._pipe.send((method, args))
        ok, value = self._pipe.recv()
        if not ok:
            raise RuntimeError(f"{method} failed in the server's process: {value}")
        return value

    @property
    def timings(self) -> _Recorded:
        return _Recorded(self, "timings")

    @property
    def arrivals(self) -> _Recorded:
        return _Recorded(self, "arrivals")

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self.call("execution", execution_id)

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self.call("stop")
            except (EOFError, OSError):
                pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


class _Recorded:
    """What the server recorded (a copy, read when iterated); `clear()` empties the record."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self._server, self._name = server, name

    def __iter__(self):
        return iter(self._server.call("recorded", self._name))

    def clear(self) -> None:
        self._server.call("clear", self._name)


def _serve(build, args, pipe) -> None:
    # A thread whose latency has passed takes the interpreter back within 0.5 ms, not the
    # default 5 ms, from a thread reading a chunk: services elsewhere would not make it wait.
    sys.setswitchinterval(0.0005)
    server = build(*args)
    pipe.send(server.base_url)
    while True:
        method, call_args = pipe.recv()
        try:
            if method == "stop":
                server.stop()
                pipe.send((True, None))
                return
            if method == "recorded":
                value = list(getattr(server, call_args[0]))
            elif method == "clear":
                getattr(server, call_args[0]).clear()
                value = None
            else:
                value = getattr(server, method)(*call_args)
            pipe.send((True, value))
        except Exception as error:  # the benchmark reports it; the server serves on
            pipe.send((False, f"{type(error).__name__}: {error}"))
