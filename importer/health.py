"""Health of the whole: database, broker, a live task cluster, and the last good import."""

import logging
from datetime import timedelta
from functools import partial

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Task

from importer.models import Execution, ImportSource
from importer.redaction import redact

# The housekeeping task runs every minute: its last run tells whether a cluster is alive.
HOUSEKEEPING_TASK = "importer.tasks.look_after_imports"
CLUSTER_SILENT_AFTER = timedelta(minutes=3)


class HealthProblem(Exception):
    """A failed check, in our own words: fit to show to anyone."""


# Raw errors (a database driver's message names hosts, users, paths) are for trusted callers.
UNTOLD = "the check failed; Import viewers (and up) and callers with X-Health-Token see why"
logger = logging.getLogger(__name__)


def error_text(error: Exception) -> str:
    """An error's type and words, without credentials."""
    return redact(f"{type(error).__name__}: {error}")


# redis-py quotes a REDIS_URL it cannot read (a '/', '#' or '?' in the password ends the
# host, and the password is read as the port): such an error is named, never quoted.
UNREADABLE_REDIS_URL = "REDIS_URL cannot be read as a Redis address"
HOW_TO_WRITE_REDIS_URL = "a '/', '#' or '?' in its password must be written %2F, %23, %3F"


def broker_error_text(error: Exception) -> str:
    """What a page or a log may say of the broker's error (`error_text`), its password never."""
    if isinstance(error, ValueError):
        return f"{type(error).__name__}: {UNREADABLE_REDIS_URL} ({HOW_TO_WRITE_REDIS_URL})"
    return error_text(error)


def _check(name: str, probe, *, detailed: bool, describe=error_text) -> dict:
    try:
        detail = probe()
    except HealthProblem as problem:
        return {"ok": False, "error": str(problem)}
    except Exception as error:  # a health check reports every failure, it does not raise
        raw = describe(error)[:300]
        logger.warning("health check %s failed: %s", name, raw)
        return {"ok": False, "error": raw if detailed else UNTOLD}
    return {"ok": True, **(detail or {})}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    if ImportSource._meta.db_table not in connection.introspection.table_names():
        raise HealthProblem("the database has no tables yet: run `manage.py migrate`")


class BrokerUnreachable(Exception):
    """The broker's own account of why it does not answer: where it is, for trusted callers."""


def _broker() -> dict:
    # Redis is asked with a short timeout of our own: django-q2's client has none, so a
    # blackholed host would hold the health check for minutes.
    problem = broker_problem()
    if problem:
        raise BrokerUnreachable(problem)
    broker = get_broker()
    if not broker.ping():  # the broker the cluster uses (Redis answered ours in time)
        raise HealthProblem("the broker does not answer")
    return {"kind": type(broker).__name__}


# The execution page asks the broker whether it answers: a hung one holds the page this long.
BROKER_PING_SECONDS = 1.0


def broker_problem() -> str | None:
    """Why no task can be queued now, naming the broker (where it is, never its password)
    and what to do; None when it answers. Queued pages then wait for the broker, not for a
    worker. The ORM broker is the database, which answered the caller already."""
    if not settings.REDIS_URL:
        return None
    try:
        client = redis.from_url(
            settings.REDIS_URL,
            socket_timeout=BROKER_PING_SECONDS,
            socket_connect_timeout=BROKER_PING_SECONDS,
        )
    except ValueError:  # its words may quote the password: a '/' in it ends the host
        return (
            f"The task broker cannot be reached: {UNREADABLE_REDIS_URL} "
            f"({HOW_TO_WRITE_REDIS_URL}). Nothing is "
            "lost: the pages wait in the database, and are queued once the broker answers."
        )
    try:
        client.ping()
    except Exception as error:  # refused, timed out, a password refused: the reason says
        reason = broker_error_text(error)[:200]
        return (
            f"The task broker, Redis at {_where(client)}, cannot be reached ({reason}): no "
            "page can be handed to a worker, however many run. Nothing is lost: the pages "
            "wait in the database, and are queued again once the broker answers. Check that "
            "Redis runs and that the app's hosts reach it (REDIS_URL); /health/ tells when "
            "it answers."
        )
    finally:
        client.close()
    return None


def _where(client: redis.Redis) -> str:
    """Where a Redis client connects, as redis-py read its URL: host, port and database."""
    place = client.connection_pool.connection_kwargs
    if place.get("path"):
        return f"{place['path']} (database {place.get('db', 0)})"
    return f"{place.get('host')}:{place.get('port')}/{place.get('db', 0)}"


def last_housekeeping_at():
    """When a task cluster last finished the housekeeping task (None: never)."""
    return (
        Task.objects.filter(func=HOUSEKEEPING_TASK)
        .order_by("-stopped")
        .values_list("stopped", flat=True)
        .first()
    )


def _cluster(*, broker_ok: bool) -> dict:
    last = last_housekeeping_at()
    if last is None or timezone.now() - last > CLUSTER_SILENT_AFTER:
        since = last.isoformat() if last else "ever"
        if not broker_ok:  # a running cluster gets no task from a broker that does not answer
            raise HealthProblem(
                f"no task cluster ran housekeeping since {since}: the broker does not answer, "
                "so no cluster can take a task; bring the broker back first (see its check)"
            )
        raise HealthProblem(
            f"no task cluster ran housekeeping since {since}: is `manage.py qcluster` running?"
        )
    return {"last_housekeeping": last.isoformat()}


def last_successful_imports() -> dict[str, str | None]:
    done = dict(
        Execution.objects.filter(state=Execution.State.DONE)
        .values("source__name")
        .annotate(last=Max("finished_at"))
        .values_list("source__name", "last")
    )
    return {
        name: (done[name].isoformat() if done.get(name) else None)
        for name in ImportSource.objects.filter(enabled=True).values_list("name", flat=True)
    }


def health_report(*, with_sources: bool) -> dict:
    """The checks; `with_sources` (a trusted caller) adds each source and the raw errors."""
    checks = {
        "database": _check("database", _database, detailed=with_sources),
        "broker": _check("broker", _broker, detailed=with_sources, describe=broker_error_text),
    }
    checks["cluster"] = (
        _check(
            "cluster",
            partial(_cluster, broker_ok=checks["broker"]["ok"]),
            detailed=with_sources,
        )
        if checks["database"]["ok"]
        # The cluster's sign of life is kept in the database.
        else {"ok": False, "error": "not checked: the database is unavailable"}
    )
    report = {"ok": all(check["ok"] for check in checks.values()), "checks": checks}
    if with_sources and checks["database"]["ok"]:
        report["last_successful_import"] = last_successful_imports()
    return report
