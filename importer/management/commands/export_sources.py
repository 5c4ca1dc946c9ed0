import json

from django.core.management.base import BaseCommand

from importer.config_file import source_to_config
from importer.models import ImportSource


class Command(BaseCommand):
    help = "Write the configuration of import sources as JSON (secrets only with --with-secrets)."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Sources to export (default: all).")
        parser.add_argument(
            "--with-secrets",
            action="store_true",
            help="Include Assets and source tokens in the output.",
        )
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")

    def handle(self, *args, names, with_secrets, output, **options):
        sources = ImportSource.objects.all()
        if names:
            sources = sources.filter(name__in=names)
        document = json.dumps(
            [source_to_config(source, with_secrets=with_secrets) for source in sources],
            indent=2,
            ensure_ascii=False,
        )
        if output:
            with open(output, "w", encoding="utf-8") as file:
                file.write(document + "\n")
            self.stderr.write(f"Wrote {sources.count()} source(s) to {output}")
        else:
            self.stdout.write(document)
