"""Run the paginated demo inventory, a third-party source to import from in development."""

from django.core.management.base import BaseCommand

from importer.devtools.demo_source import DemoInventory
from importer.management.base import cannot_listen


class Command(BaseCommand):
    help = (
        "Serve GET /api/computers (offset/limit or page/limit; total_header=X-Total-Count "
        "tells the total in that header), and POST /api/graphql and /api/search, on "
        "127.0.0.1 until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, default=8082, help="Port on 127.0.0.1 (default: %(default)s)."
        )
        parser.add_argument(
            "--records", type=int, default=300, help="Computers served (default: %(default)s)."
        )
        parser.add_argument("--token", default=None, help="Require this bearer token if given.")
        parser.add_argument(
            "--latency",
            type=float,
            default=0.0,
            help="Seconds to wait per page of /api/computers (default: %(default)s).",
        )
        parser.add_argument(
            "--unlisted-records",
            type=int,
            default=0,
            help="Records counted in /api/computers' total but never served, to try the "
            "check of the records received against the total (default: %(default)s).",
        )

    def handle(self, *args, **options):
        try:
            source = DemoInventory(
                port=options["port"],
                records=options["records"],
                token=options["token"],
                latency=options["latency"],
                unlisted_records=options["unlisted_records"],
            )
        except OSError as error:
            raise cannot_listen(options["port"], error) from None
        source.log_requests = options["verbosity"] >= 2
        unlisted = options["unlisted_records"]
        counted = f", its total counting {unlisted} more" if unlisted else ""
        self.stdout.write(
            f"Demo inventory on {source.base_url}/api/computers "
            f"({options['records']} computers{counted})"
        )
        try:
            source.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
