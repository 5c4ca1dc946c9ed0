"""What a task cluster's worker process does once, as django-q2 spawns it.

The first task a new worker takes is, as often as not, the first page of an import someone
is waiting for. Its first query (connecting, Django's and the driver's lazy set-up), its
first HTTP request (requests loads netrc support on first use, among others) and its first
decryption of a stored secret (the cipher's set-up, ~5 ms) took 20-40 ms on a busy machine:
they are done here, before any task arrives, instead.

A worker's lane runs its fetches and submits in threads of its own while it transforms the
previous page. At Python's default switch interval (5 ms) a thread whose answer had come
waited that long for the interpreter lock, once for each piece of the answer it read: with
pages of 1000 records a lane's page took 67 ms where the source answered in 51. The worker
hands the lock on sooner instead (SWITCH_INTERVAL_S).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

import requests
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005


def in_cluster_worker() -> bool:
    """Whether this process is a worker of a real cluster, not the caller's own process where
    django-q2 runs tasks inline (`sync`)."""
    from django_q.conf import Conf

    return not Conf.SYNC and multiprocessing.parent_process() is not None


def warm_up(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q2's post_spawn receiver: connect, run the query every chunk task starts with,
    prepare a request and set up the secrets' cipher. A database that is not there yet is
    no error here: the first task connects."""
    from importer import fields
    from importer.models import ChunkJob

    if not in_cluster_worker():
        return
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    requests.Session().prepare_request(requests.Request("GET", "http://127.0.0.1/"))
    try:
        fields.decrypt(fields.encrypt("warm-up"))
    except ImproperlyConfigured as error:  # the system checks name it; the task will fail
        logger.warning("worker %s: secrets cannot be decrypted: %s", proc_name, error)
    try:
        ChunkJob.objects.select_related("execution__source").filter(pk=0).first()
    except DatabaseError as error:
        from importer.management.base import migration_state_or

        behind = migration_state_or(default="")  # "" also when the database is unreachable
        if behind:
            logger.warning(
                "worker %s: the database %s: run `manage.py migrate`; imports fail until then",
                proc_name,
                behind,
            )
        else:
            logger.info("worker %s: database not reachable yet (%s)", proc_name, error)
        connection.close()
