"""A lane's way back to a database that went away (a restart, a failover, a pooler recycling
its connections): which errors are the connection lost, a step tried again on a new
connection while the lane's time for it lasts, and the page it was on given back
(`services.lanes`, `services.lane_state`)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.db import InterfaceError, OperationalError, connection

if TYPE_CHECKING:
    from importer.models import ChunkJob
    from importer.services.lane_state import Lane

logger = logging.getLogger(__name__)

# A database that restarts or fails over refuses connections for a moment: a lane that lost
# its connection waits this long in all for a new one (however many of its steps find the
# database away) before it leaves its pages to their leases (CHUNK_LEASE_SECONDS, and the
# pages in flight sent again).
RECONNECT_FIRST_WAIT_SECONDS = 0.2
RECONNECT_WAIT_SECONDS = 10.0


def again_on_a_new_connection(reconnects: Reconnects, step, *args) -> None:
    """Run a step; if the database connection was lost under it (outside a transaction,
    where nothing was half done), again on a new one while the database refuses connections
    and the lane's `reconnects` allow."""
    reconnected = False
    while True:
        try:
            step(*args)
            if reconnected:  # the database is back: a later loss has its own time
                reconnects.reset()
            return
        except (OperationalError, InterfaceError) as error:
            if connection.in_atomic_block or not connection_lost(error):
                raise
            connection.close()
            reconnected = True
            wait = reconnects.next_wait()
            if wait is None:
                raise
            if wait:
                logger.info("the database is away; trying again in %.1f s", wait)
                time.sleep(wait)


class Reconnects:
    """One lane's time for new connections to a database that is away: a new try at once,
    then after 0.2 s, 0.4 s ... until RECONNECT_WAIT_SECONDS after the first loss. Every step
    of the lane that finds the database away (the page it is on, the pages it records at its
    end, the page it gives back) draws on it, so a database that stays away holds the lane
    10 s, not 10 s a step; past it, a step is tried once. A step that got its new
    connection gives the lane its whole time again for a later loss."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._wait = 0.0

    def reset(self) -> None:
        self._deadline = None
        self._wait = 0.0

    def next_wait(self) -> float | None:
        """The pause before the next try; None when the lane's time is up."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + RECONNECT_WAIT_SECONDS
        left = self._deadline - now
        if left <= 0:
            return None
        wait = min(self._wait, left)
        self._wait = max(2 * self._wait, RECONNECT_FIRST_WAIT_SECONDS)
        return wait


# SQLSTATEs of a server that dropped the session (admin or crash shutdown, cannot connect
# now); class 08 is any connection exception.
SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


def connection_lost(error: Exception) -> bool:
    """Whether the error is the database connection lost (a restart, a failover, a pooler),
    not a statement refused on a live connection (a full disk, a timeout), which would fail
    again on a new connection too and is counted as any error is. Django may have opened a
    new connection already (leaving a transaction does), so the error itself tells."""
    state = getattr(error.__cause__, "sqlstate", None)
    if state:
        return state.startswith("08") or state in SESSION_ENDED
    if connection.vendor == "sqlite":  # a file: its errors are never a lost connection
        return False
    return True  # a client-side error of a server connection (no SQLSTATE): the link


def database_lost(chunk: ChunkJob, error: Exception, lane: Lane) -> None:
    """The database went away under the lane (a restart, a failover, a pooler recycling its
    connections): nothing is wrong with the page, and no page is failed for it. The lane
    ends on a new connection, waiting a few seconds for one (`again_on_a_new_connection`):
    it records the pages Assets took meanwhile and gives this one back to the queue; if the
    database is still away after that, their leases lapse and housekeeping takes them up
    again (only pages in flight are sent twice)."""
    logger.warning(
        "chunk %s: the database connection was lost (%s); the page is taken up again",
        chunk.pk,
        type(error).__name__,
    )
    connection.close()  # the next statement opens a new one
    lane.give_back(chunk)
