from django.core.management.base import BaseCommand, CommandError

from importer import services
from importer.models import Schedule


class Command(BaseCommand):
    help = "Delete import schedules in Assets and here (before uninstalling the app)."

    def add_arguments(self, parser):
        parser.add_argument("--source", help="Only the schedule of this source.")

    def handle(self, *args, source, **options):
        schedules = Schedule.objects.select_related("source")
        if source:
            schedules = schedules.filter(source__name=source)
        removed, failed = 0, 0
        for schedule in schedules:
            try:
                services.delete_schedule(schedule=schedule)
            except services.ScheduleError as error:
                failed += 1
                self.stderr.write(f"{schedule.source}: kept, Assets did not delete it: {error}")
            else:
                removed += 1
                self.stdout.write(f"{schedule.source}: schedule removed")
        self.stdout.write(f"{removed} schedule(s) removed, {failed} failed.")
        if failed:
            raise CommandError("Some schedules are still in Assets; run again when it answers.")
