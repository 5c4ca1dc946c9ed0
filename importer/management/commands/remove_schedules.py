from django.core.management.base import CommandError

from importer import services
from importer.management.base import DatabaseCommand
from importer.models import ImportSource, Schedule


class Command(DatabaseCommand):
    help = "Delete import schedules in Assets and here (before uninstalling the app)."

    def add_arguments(self, parser):
        parser.add_argument("--source", help="Only the schedule of this source.")

    def handle(self, *args, source, **options):
        schedules = Schedule.objects.select_related("source")
        if source:
            if not ImportSource.objects.filter(name=source).exists():
                raise CommandError(f"No source named {source!r}.")
            schedules = schedules.filter(source__name=source)
        removed, failed, refused = 0, 0, False
        for schedule in schedules:
            try:
                services.delete_schedule(schedule=schedule)
            except services.ScheduleError as error:
                failed += 1
                refused = refused or error.refused_token
                self.stderr.write(f"{schedule.source}: kept, Assets did not delete it: {error}")
            else:
                removed += 1
                self.stdout.write(f"{schedule.source}: schedule removed")
        self.stdout.write(f"{removed} schedule(s) removed, {failed} failed.")
        if failed:
            raise CommandError(
                "Some schedules are still in Assets: "
                + (
                    "mend the import source's token in Assets or here, then run again."
                    if refused
                    else "run again when it answers."
                )
            )
