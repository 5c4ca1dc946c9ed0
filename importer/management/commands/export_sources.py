import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from importer.config_file import config_document
from importer.management.base import DatabaseCommand
from importer.models import ImportSource
from importer.redaction import undeclared_keys_warning


class Command(DatabaseCommand):
    help = (
        "Write the configuration of import sources and their notification channels as JSON "
        "(secrets only with --with-secrets)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "names",
            nargs="*",
            help="Sources to export (default: all), with the channels that alert about them "
            "and the site-wide ones.",
        )
        parser.add_argument(
            "--with-secrets",
            action="store_true",
            help="Include Assets and source tokens, webhook URLs and secret header values.",
        )
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")

    def handle(self, *args, names, with_secrets, output, **options):
        known = set(ImportSource.objects.filter(name__in=names).values_list("name", flat=True))
        unknown = [name for name in names if name not in known]
        if unknown:
            raise CommandError(f"No source named {', '.join(map(repr, unknown))}: nothing written.")
        try:
            config = config_document(names or None, with_secrets=with_secrets)
        except ImproperlyConfigured as problem:  # a secret no listed key decrypts
            raise CommandError(f"Nothing was written: {problem}") from None
        document = json.dumps(config, indent=2, ensure_ascii=False)
        if not with_secrets:
            self._warn_of_undeclared_keys(names)
        if output:
            try:
                with open(output, "w", encoding="utf-8") as file:
                    file.write(document + "\n")
            except OSError as error:
                raise CommandError(
                    f"Cannot write {output}: {error.strerror or error}; nothing written."
                ) from None
            self.stderr.write(
                f"Wrote {len(config['sources'])} source(s) and "
                f"{len(config['notification_channels'])} notification channel(s) to {output}"
            )
        else:
            self.stdout.write(document)

    def _warn_of_undeclared_keys(self, names) -> None:
        """A key under a name that says nothing is written as it is: only the operator can
        say it is a key, not a filter."""
        sources = ImportSource.objects.filter(name__in=names) if names else ImportSource.objects
        for source in sources.order_by("name"):
            warning = undeclared_keys_warning(source)
            if warning:
                self.stderr.write(f"Warning: {source.name}: written as it is, {warning}")
