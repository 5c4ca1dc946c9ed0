"""The database's clock, which every worker reads alike.

Leases and retry times are written by one worker and read by another, maybe on another host:
a host whose clock is 45 s behind would write leases that look lapsed to the others the
moment they are written, and lose its pages to them while it works. Each process measures
how far its clock is from the database's (one query a minute) and, past `AGREE_WITHIN`, dates
those by the database's clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

# Clocks this close count as agreeing (NTP keeps hosts within milliseconds).
AGREE_WITHIN = timedelta(seconds=2)
MEASURE_EVERY_SECONDS = 60.0

_lock = threading.Lock()
_offset = timedelta(0)
_measured_at: float | None = None


def now() -> datetime:
    """The time by the database's clock (this host's, while the two agree)."""
    return timezone.now() + _offset_from_database()


def forget() -> None:
    """Measure again at the next call (a test that moves the clock)."""
    global _measured_at
    with _lock:
        _measured_at = None


def _offset_from_database() -> timedelta:
    global _offset, _measured_at
    with _lock:
        fresh = _measured_at is not None and time.monotonic() - _measured_at < MEASURE_EVERY_SECONDS
        if fresh:
            return _offset
    before = timezone.now()
    told = _database_time()
    after = timezone.now()
    offset = timedelta(0)
    if told is not None:
        measured = told - (before + (after - before) / 2)
        offset = measured if abs(measured) > AGREE_WITHIN else timedelta(0)
    with _lock:
        _offset, _measured_at = offset, time.monotonic()
    return offset


def _database_time() -> datetime | None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)
    return None
