"""What the app's own commands share."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


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
