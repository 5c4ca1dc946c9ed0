import json
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError

from importer.config_file import ConfigFileError, apply_config
from importer.config_references import resolve_references
from importer.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Create or update import sources and notification channels by name from a JSON file "
        "(see README), then push the changed mappings and sync the schedules to Assets."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON file as export_sources writes it, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report only.")
        parser.add_argument(
            "--no-push",
            action="store_true",
            help="Do not push mappings to Assets (schedules are still synced where possible).",
        )

    def handle(self, *args, file, dry_run, no_push, **options):
        try:
            if file == "-":
                document = json.load(sys.stdin)
            else:
                with open(file, encoding="utf-8") as handle:
                    document = json.load(handle)
        except OSError as error:
            # strerror alone: the error's own text repeats the path ("[Errno 2] ...: 'x'").
            raise CommandError(f"Cannot read {file}: {error.strerror or error}") from None
        except ValueError as error:
            raise CommandError(f"Cannot read {file}: {error}") from None
        except RecursionError:
            raise CommandError(f"Cannot read {file}: it is nested too deeply to be JSON") from None
        # Secrets named by reference ({"$env": ...}, {"$file": ...}) are read here, by the
        # command that applies the file, from its own environment and host.
        document, unresolved = resolve_references(
            document, environ=os.environ, secret_files_dir=settings.SECRET_FILES_DIR
        )
        if unresolved:
            raise CommandError("Nothing was changed:\n" + "\n".join(unresolved))
        try:
            results = apply_config(document, dry_run=dry_run, push=not no_push)
        except ConfigFileError as error:
            raise CommandError(f"Nothing was changed:\n{error}")
        if not results:
            shown = "The input" if file == "-" else file
            self.stdout.write(
                f"{shown} lists no source and no notification channel: nothing to do."
            )
        for result in results:
            self.stdout.write(("(dry run) " if dry_run else "") + str(result))
        failures = [
            f"{result.name}: {failure}" for result in results for failure in result.failures
        ]
        if failures:
            raise CommandError(
                "The file was applied here, but Assets does not match it yet:\n"
                + "\n".join(failures)
            )
