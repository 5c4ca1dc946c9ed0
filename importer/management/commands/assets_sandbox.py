"""Run the in-memory Assets sandbox so the app can import without a real Atlassian site."""

from django.core.management.base import BaseCommand

from importer.devtools.assets_sandbox import AssetsSandbox
from importer.management.base import cannot_listen


class Command(BaseCommand):
    help = "Serve a fake Assets Imports API on 127.0.0.1 until Ctrl-C (state is in memory)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, default=8081, help="Port on 127.0.0.1 (default: %(default)s)."
        )
        parser.add_argument(
            "--token",
            default="sandbox-token",
            help="Bearer token API calls need (default: %(default)s).",
        )
        parser.add_argument(
            "--processing-seconds",
            type=float,
            default=0.0,
            help="Seconds an execution stays PROCESSING after 'completed' before it is DONE "
            "(default: %(default)s).",
        )

    def handle(self, *args, **options):
        try:
            sandbox = AssetsSandbox(
                port=options["port"],
                token=options["token"],
                processing_seconds=options["processing_seconds"],
            )
        except OSError as error:
            raise cannot_listen(options["port"], error) from None
        sandbox.log_requests = options["verbosity"] >= 2
        self.stdout.write(f"Assets sandbox on {sandbox.base_url} (state page: {sandbox.base_url}/)")
        self.stdout.write(f"Point the app's Assets base URL there; token: {options['token']}")
        try:
            sandbox.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
