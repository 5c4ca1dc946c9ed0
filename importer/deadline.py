"""A deadline for the whole answer of a request, headers included: a watchdog that cuts it off.

The socket timeout bounds one read, not an answer: a source that sends its status line and
headers a byte every few seconds keeps every read within the timeout and holds the worker as
long as it likes. http.client reads them through `sock.makefile()`, with no hook between reads
short of handing it a stand-in socket, so a per-read deadline would mean wrapping plain, TLS
and proxied sockets alike. A watchdog does not care how the bytes are read: when the deadline
passes it shuts the socket down, which wakes the blocked read at once (the way urllib3's own
`HTTPResponse.shutdown` stops a read from another thread), and the request fails with a read
timeout, so urllib3 closes that connection instead of returning it to its pool. The body that
follows is guarded the same way (`cut_off_at`), so a read waiting at the deadline does not
get to run on for one more read timeout.

One thread per process serves every request; it sleeps until the earliest deadline and is
only woken when a request brings an earlier one, so an answer that arrives in time costs a
lock and a dict entry.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter

# When the answer being awaited must have arrived (time.monotonic()); None: no deadline.
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_deadline", default=None
)


class AnswerTooSlow(TimeoutError):
    """The deadline passed while the answer's headers were still arriving.

    A TimeoutError, so urllib3 treats it as a read timeout: the connection is closed, not reused.
    """


class Watchdog:
    """Calls a request's `cut` (a socket shutdown) once its deadline passes, unless disarmed."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._armed: dict[int, tuple[float, Callable[[], None]]] = {}
        self._handles = itertools.count()
        self._next_check = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, cut: Callable[[], None]) -> int:
        with self._wake:
            handle = next(self._handles)
            self._armed[handle] = (deadline, cut)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="answer-deadline-watchdog", daemon=True
                )
                self._thread.start()
            elif deadline < self._next_check:
                self._wake.notify()
            return handle

    def disarm(self, handle: int) -> bool:
        """Stop watching; True when the deadline had already passed and the request was cut."""
        with self._wake:
            return self._armed.pop(handle, None) is None

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for handle, (deadline, cut) in list(self._armed.items()):
                    if deadline <= now:
                        # Under the lock: once `disarm` has returned, the socket is never cut.
                        del self._armed[handle]
                        try:
                            cut()
                        except Exception:  # a connection already gone: nothing left to wake
                            pass
                self._next_check = min((d for d, _ in self._armed.values()), default=math.inf)
                self._wake.wait(None if self._next_check == math.inf else self._next_check - now)

    def _reset_after_fork(self) -> None:
        # The thread does not survive a fork, and its lock may have been held when it happened.
        self.__init__()  # type: ignore[misc]


_watchdog = Watchdog()
os.register_at_fork(after_in_child=_watchdog._reset_after_fork)


class Watch:
    """What `cut_off_at` did: `cut` once the block has ended, whether the deadline cut it."""

    cut = False


@contextlib.contextmanager
def cut_off_at(deadline: float | None, cut: Callable[[], None] | None) -> Iterator[Watch]:
    """Calls `cut` (e.g. urllib3's `HTTPResponse.shutdown`) if the block is still running when
    `deadline` passes: a body read blocked on a dripping source wakes at the deadline."""
    watch = Watch()
    if deadline is None or cut is None:
        yield watch
        return
    handle = _watchdog.arm(deadline, cut)
    try:
        yield watch
    finally:
        watch.cut = _watchdog.disarm(handle)


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed: nothing left to wake
        pass


class _DeadlineConnection:
    """Mixed into urllib3's connection classes: the wait for the status line and headers
    ends at `request_deadline`."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = request_deadline.get()
        if deadline is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        sock = self.sock  # type: ignore[attr-defined]
        handle = _watchdog.arm(deadline, functools.partial(_shutdown, sock))
        try:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        except Exception:
            if _watchdog.disarm(handle):
                raise AnswerTooSlow("the answer did not arrive before the deadline") from None
            raise
        if _watchdog.disarm(handle):
            # Cut mid-headers, http.client takes the end of the stream for the end of them.
            response.close()
            raise AnswerTooSlow("the answer did not arrive before the deadline")
        return response


@functools.cache
def _with_deadline(connection_class: type) -> type:
    if issubclass(connection_class, _DeadlineConnection):
        return connection_class
    name = f"Deadline{connection_class.__name__}"
    return type(name, (_DeadlineConnection, connection_class), {})


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections, whatever their class (plain, TLS, through a proxy),
    honour `request_deadline`."""

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        pool.ConnectionCls = _with_deadline(pool.ConnectionCls)
        return pool


def mount_deadline_adapter(session: Any) -> Any:
    """`session` with every request through it bounded by `request_deadline`."""
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def until(deadline: float | None, response: requests.Response):
    """A block in which reads of `response` are cut off once `deadline` passes: the socket
    timeout bounds each read, not the answer, and a source may drip its bytes."""
    return cut_off_at(deadline, getattr(response.raw, "shutdown", None))


def discard(response: requests.Response, deadline: float | None, limit: int = 64 * 1024) -> None:
    """Read what is left of a small error body (by `deadline`), then close: the server sees
    a clean close."""
    try:
        with until(deadline, response):
            response.raw.read(limit, decode_content=False)
    except Exception:  # nothing to salvage from a broken error answer
        pass
    response.close()
