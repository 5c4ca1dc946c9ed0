"""What the app's own commands share."""

from __future__ import annotations

import logging
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)

# How often a cluster started before `migrate` asks again (one look costs a few ms).
MIGRATIONS_POLL_SECONDS = 2.0


class DatabaseCommand(BaseCommand):
    """A command that reads or writes the app's tables.

    On a database never migrated, or one an upgrade left behind, its first query failed with
    Django's traceback ("no such table"); it says what to run instead, before doing anything.
    """

    def execute(self, *args, **options):
        state = migration_state()
        if state:
            raise CommandError(
                f"the database {state}: run `manage.py migrate` first. Nothing was done."
            )
        return super().execute(*args, **options)


def cannot_listen(port: int, error: OSError) -> CommandError:
    """A development server that could not take its port, said without a traceback, with the
    option that chooses another."""
    reason = error.strerror or str(error)
    return CommandError(
        f"Cannot listen on 127.0.0.1:{port}: {reason} (another one running?): stop it, or "
        f"choose another port with --port, e.g. --port {port + 10}."
    )


def migration_state() -> str:
    """ "" when the database holds every migration of this release; else what it lacks, in
    words ("has no tables yet", "is 1 migration behind this release (importer.0021_...)")."""
    missing, applied_any = unapplied_migrations()
    if not missing:
        return ""
    if not applied_any:
        return "has no tables yet"
    plural = "s" if len(missing) != 1 else ""
    more = ", ...)" if len(missing) > 1 else ")"
    return f"is {len(missing)} migration{plural} behind this release ({missing[0]}{more}"


def unapplied_migrations(alias: str = DEFAULT_DB_ALIAS) -> tuple[list[str], bool]:
    """The migrations on disk the database has not applied (as `app.name`), and whether it
    has applied any."""
    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    missing = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    return missing, bool(executor.loader.applied_migrations)


def wait_for_migrations(*, poll_seconds: float = MIGRATIONS_POLL_SECONDS) -> None:
    """Return once the database holds every migration of this release, saying once what it
    lacks while it waits: a cluster of a new release started before `migrate` then takes
    no task its tables cannot hold, and an upgrade may start it before or after `migrate`.

    A database that does not answer at the start is left to the cluster to report, as
    before; one that stops answering while this waits is asked again.
    """
    state = migration_state_or(default="")
    if not state:
        return
    logger.warning(
        "the database %s: run `manage.py migrate`; this cluster takes no task until then "
        "(it looks again every %g s)",
        state,
        poll_seconds,
    )
    while state:
        time.sleep(poll_seconds)
        state = migration_state_or(default=state)
    logger.info("the database holds this release's migrations: the cluster starts")


def migration_state_or(*, default: str) -> str:
    """`migration_state()`, or `default` when the database cannot be read; the connection is
    closed either way (none is held while waiting, nor handed to the cluster's processes)."""
    try:
        return migration_state()
    except DatabaseError:
        return default
    finally:
        connections[DEFAULT_DB_ALIAS].close()
