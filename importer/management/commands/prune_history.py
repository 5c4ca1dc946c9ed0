from django.conf import settings
from django.core.management.base import CommandError

from importer import notifications, services
from importer.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Delete finished executions, alerts and django-q2's failed task records older than N "
        "days, but each source's latest successful import (also runs daily as a django-q2 "
        "task)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=settings.HISTORY_RETENTION_DAYS,
            help="Keep this many days (default: HISTORY_RETENTION_DAYS, here %(default)s).",
        )

    def handle(self, *args, days, **options):
        if not 1 <= days <= services.MAX_RETENTION_DAYS:
            raise CommandError(
                f"--days must be from 1 to {services.MAX_RETENTION_DAYS} (given {days}): "
                "nothing deleted."
            )
        deleted = services.prune_history(days=days)
        alerts = notifications.prune_alerts(days=days)
        failures = services.prune_task_failures(days=days)
        self.stdout.write(
            f"Deleted {deleted} execution(s), {alerts} alert(s) and {failures} failed task "
            f"record(s) older than {days} days."
        )
