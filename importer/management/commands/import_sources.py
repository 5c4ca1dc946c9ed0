import json

from django.core.management.base import BaseCommand, CommandError

from importer.config_file import ConfigFileError, apply_config


class Command(BaseCommand):
    help = "Create or update import sources by name from a JSON file (see README)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON file with a list of sources, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report only.")

    def handle(self, *args, file, dry_run, **options):
        try:
            if file == "-":
                import sys

                entries = json.load(sys.stdin)
            else:
                with open(file, encoding="utf-8") as handle:
                    entries = json.load(handle)
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read {file}: {error}") from None
        except RecursionError:
            raise CommandError(f"Cannot read {file}: it is nested too deeply to be JSON") from None
        try:
            results = apply_config(entries, dry_run=dry_run)
        except ConfigFileError as error:
            raise CommandError(f"Nothing was changed:\n{error}")
        for result in results:
            self.stdout.write(("(dry run) " if dry_run else "") + str(result))
