import time

from django.core.management.base import BaseCommand, CommandError

from importer import services
from importer.assets import AssetsError
from importer.models import Execution, ImportSource
from importer.progress import describe, progress_of


class Command(BaseCommand):
    help = "Start an import of a source (pushing its mapping first if Assets lacks it)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The source's name.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Show progress until the import ends; exit 0 only when DONE.",
        )
        parser.add_argument("--poll", type=float, default=0.25, help="Seconds between updates.")

    def handle(self, *args, name, wait, poll, **options):
        source = ImportSource.objects.filter(name=name).first()
        if source is None:
            raise CommandError(f"No source named '{name}'.")
        pushed_before = source.mapping_pushed_at
        try:
            execution = services.start_import(source=source)
        except services.ImportRefused as error:
            raise CommandError(str(error))
        except AssetsError as error:
            raise CommandError(services.scrub_secrets(error.message, source))
        if source.mapping_pushed_at != pushed_before:
            self.stdout.write("Assets accepted the mapping (saved since its last push).")
        self.stdout.write(f"Started execution #{execution.pk} ({execution.assets_execution_id}).")
        if not wait:
            return
        while True:
            execution.refresh_from_db()
            progress = progress_of(execution)
            percent = progress["percent"]
            bar = "?" * 25 if percent is None else "#" * (percent // 4)
            self.stdout.write(f"\r[{bar:<25}] {describe(progress):<70}", ending="")
            self.stdout.flush()
            if progress["finished"]:
                break
            time.sleep(poll)
        self.stdout.write("")
        if execution.state != Execution.State.DONE:
            raise CommandError(f"Import ended {execution.state}: {execution.error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {execution.records_submitted} records, {execution.pages_submitted} chunks."
            )
        )
