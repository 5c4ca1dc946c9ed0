"""django-q2's `qcluster`, started only once the database holds this release's migrations."""

from django_q.management.commands import qcluster

from importer.management.base import wait_for_migrations


class Command(qcluster.Command):
    help = (
        "Starts a django-q2 task cluster, once the database holds every migration of this "
        "release (until `migrate` has run, it says so and waits)."
    )

    def handle(self, *args, **options):
        try:
            wait_for_migrations()
        except KeyboardInterrupt:  # stopped while waiting: nothing was started
            return
        super().handle(*args, **options)
