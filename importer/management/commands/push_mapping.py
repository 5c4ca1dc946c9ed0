from django.core.management.base import CommandError

from importer import services
from importer.management.base import DatabaseCommand
from importer.models import ImportSource


class Command(DatabaseCommand):
    help = "Push the mapping of each named source to Assets; exit non-zero if any fails."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="+", metavar="NAME", help="Source names.")

    def handle(self, *args, names, **options):
        sources = {source.name: source for source in ImportSource.objects.filter(name__in=names)}
        failures = []
        for name in names:
            source = sources.get(name)
            if source is None:
                failures.append(f"{name}: no source of that name")
                continue
            why_not = services.try_push_mapping(source=source)
            if why_not:
                failures.append(f"{name}: {why_not}")
            else:
                self.stdout.write(f"{name}: Assets accepted the mapping")
        if failures:
            raise CommandError("Mapping not pushed:\n" + "\n".join(failures))
