"""Run the whole app on this machine: web server, task cluster, Assets sandbox, demo source."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from importer.config_file import apply_config
from importer.devtools.assets_sandbox import AssetsSandbox
from importer.devtools.cluster import QCluster
from importer.devtools.demo_source import DemoInventory
from importer.devtools.tether import start_tethered
from importer.models import ChunkJob, Execution, ImportSource, NotificationChannel, Schedule

DEMO_MAPPING = Path(__file__).resolve().parents[2] / "devtools" / "demo_mapping.json"
SANDBOX_TOKEN = "sandbox-token"
DEMO_SOURCE = "demo-inventory"
# How long the demo's web server and cluster are given to stop before they are killed. A
# cluster in production is given the task timeout, to let its lanes end; a person stopping
# the demo expects it gone at once, and a page cut short is taken up again after its lease,
# by the next demo's cluster.
STOP_GRACE_SECONDS = 1.0

STALE_IMPORT_REASON = (
    "The demo stopped while this import ran, and the Assets sandbox it sent its pages to is "
    "gone with it (a sandbox keeps nothing): the import cannot go on. Start it again."
)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def forget_what_an_earlier_sandbox_held(sandbox_url: str) -> None:
    """The sandbox keeps nothing between runs: what an earlier demo pushed to it is gone. Its
    sources show "not pushed" (and an import pushes the mapping first), and their schedules
    show out of sync, with what to do."""
    sources = ImportSource.objects.filter(assets_base_url__in=[sandbox_url, sandbox_url + "/"])
    sources.update(mapping_pushed_at=None)
    Schedule.objects.filter(source__in=sources).update(
        in_sync=False,
        sync_error="The demo's Assets sandbox started empty: push the mapping, then use "
        "'Re-sync schedule to Assets'.",
    )


def end_the_import_an_earlier_demo_left_open() -> list[Execution]:
    """Fail the demo source's import left open by a demo stopped while it ran (the ones ended,
    so they can be named). Its other side was in that demo's sandbox, gone now: taken up, its
    next page would be refused; and, open, it kept the demo from pointing its source at the
    ports of this run. A source of the user's own, or one sending to Assets, is left alone."""
    left_open = Execution.objects.open().filter(source__name=DEMO_SOURCE).select_related("source")
    ended = []
    for execution in left_open:
        if urlsplit(execution.source.assets_base_url).hostname not in ("127.0.0.1", "localhost"):
            continue
        if Execution.objects.of(execution).abandon(reason=STALE_IMPORT_REASON):
            ChunkJob.objects.filter(execution=execution).cancel_queued()
            ended.append(execution)
    return ended


def set_up_demo_source(*, sandbox_url: str, inventory_url: str) -> list[str]:
    """The demo source, pointed at this run's sandbox and inventory; what to tell the user."""
    told = [
        f"Demo source: import #{execution.pk} of '{DEMO_SOURCE}', left running when the last "
        "demo stopped, is marked failed: the sandbox it sent its pages to is gone. Start it "
        "again from the admin."
        for execution in end_the_import_an_earlier_demo_left_open()
    ]
    config = demo_source_config(sandbox_url=sandbox_url, inventory_url=inventory_url)
    for result in apply_config(
        [config],
        push=False,  # the demo shows the "Push mapping to Assets" action
    ):
        told.append(f"Demo source: {result}")
    forget_what_an_earlier_sandbox_held(sandbox_url)
    return told


def _shown_path(path: str) -> str:
    """A path as typed in this directory (`.venv/bin/python`), or whole when elsewhere."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def demo_source_config(*, sandbox_url: str, inventory_url: str) -> dict:
    return {
        "name": DEMO_SOURCE,
        "enabled": True,
        "assets": {
            "base_url": sandbox_url,
            "workspace_id": "demo-workspace",
            "import_source_id": "demo-import-source",
            "token": SANDBOX_TOKEN,
        },
        "source": {
            "kind": "rest",
            "url": f"{inventory_url}/api/computers",
            "records": "items",
            "pagination": {"style": "offset", "page_size": 25, "total_path": "total"},
            "auth": {"kind": "none"},
        },
        "mapping": json.loads(DEMO_MAPPING.read_text()),
    }


def demo_alert_channel(*, receiver_url: str) -> NotificationChannel:
    """A webhook channel that posts every alert, successful imports too, to the sandbox."""
    channel, _ = NotificationChannel.objects.update_or_create(
        name="demo alerts",
        defaults={
            "kind": NotificationChannel.Kind.WEBHOOK,
            "enabled": True,
            "all_sources": True,
            "notify_on_done": True,
            "webhook_url": receiver_url,
            "secret_header_name": "X-Demo-Token",
            "secret_header_value": "demo-webhook-secret",
        },
    )
    return channel


def demo_public_base_url(configured: str, port: int) -> str:
    """Where the demo's links and schedule callbacks point: its own web server, on whatever
    port it runs, unless PUBLIC_BASE_URL names another host on purpose (a tunnel, a proxy)."""
    if urlsplit(configured).hostname in ("127.0.0.1", "localhost"):
        return f"http://127.0.0.1:{port}"
    return configured


def _port_is_free(port: int) -> bool:
    """Whether the demo's servers can listen there. They reuse the address, as the probe does,
    so the connections of a demo just stopped (TIME-WAIT) do not count as "in use"."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Start the demo: runserver, qcluster, the Assets sandbox and a demo inventory API."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Web server port.")
        parser.add_argument(
            "--sandbox-port", type=int, default=8081, help="The Assets sandbox's port."
        )
        parser.add_argument(
            "--inventory-port", type=int, default=8082, help="The demo inventory's port."
        )
        parser.add_argument(
            "--records", type=int, default=300, help="Computers in the demo inventory."
        )

    def handle(self, *args, port, sandbox_port, inventory_port, records, **options):
        for flag, taken in (
            ("--port", port),
            ("--sandbox-port", sandbox_port),
            ("--inventory-port", inventory_port),
        ):
            if not _port_is_free(taken):
                raise CommandError(
                    f"Port {taken} on 127.0.0.1 is in use (another demo?): stop it, or choose "
                    f"another port with {flag}, e.g. ./dev demo {flag} {taken + 10}."
                )
        # Alerts, the webtrigger URL and the callbacks given to Assets name this address; the
        # web server and the cluster started below take it from the environment.
        settings.PUBLIC_BASE_URL = demo_public_base_url(settings.PUBLIC_BASE_URL, port)
        os.environ["PUBLIC_BASE_URL"] = settings.PUBLIC_BASE_URL
        sandbox = AssetsSandbox(port=sandbox_port, token=SANDBOX_TOKEN).start()
        inventory = DemoInventory(port=inventory_port, records=records).start()
        for line in set_up_demo_source(
            sandbox_url=sandbox.base_url, inventory_url=inventory.base_url
        ):
            self.stdout.write(line)
        demo_alert_channel(receiver_url=f"{sandbox.base_url}/_sandbox/alerts")
        self._ensure_admin_user()

        manage = [sys.executable, str(Path(sys.argv[0]).resolve())]
        slow_port = next(p for p in range(inventory_port + 11, 65535) if _port_is_free(p))
        slow_inventory = (
            f"{_shown_path(sys.executable)} manage.py demo_source --port {slow_port} "
            "--records 5000 --latency 0.4"
        )
        web = cluster = None
        try:
            # Stopped by Ctrl-C, by a SIGTERM to the demo or its process group, or with its
            # terminal: each reaches the `finally` below, which stops what was started.
            for stop_signal in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(stop_signal, _interrupt)
            # Tethered, as the cluster below: killed outright, the demo left it holding its
            # port. Stopped by the demo, not by a Ctrl-C to the group: it runs in a session
            # of its own.
            web, _web_tether_end = start_tethered(
                [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
                grace=STOP_GRACE_SECONDS,
            )
            # The cluster runs in a session of its own, out of reach of a signal to the demo's
            # process group, and is stopped below. A SIGTERM to the group reached every
            # process of the cluster at once: django-q2's sentinel died while the main process
            # told it to stop, and the main process hung until killed; Ctrl-C let the lanes
            # run to their end. Tethered, it stops too when the demo is killed outright (kill
            # -9, an OOM kill): left running, it would work on the database beside the next
            # demo's cluster.
            cluster = QCluster(env={}, log_path=None, tethered_grace=STOP_GRACE_SECONDS).start()
            self._say_where_everything_is(port, sandbox, inventory, slow_port, slow_inventory)
            # Runs until Ctrl-C, or until the web server or the cluster stops by itself.
            while web.poll() is None and cluster.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                # A second Ctrl-C would leave the cluster running: this stop is short anyway.
                signal.signal(stop_signal, signal.SIG_IGN)
            if web is not None:
                web.terminate()
            if cluster is not None:
                cluster.stop(grace=STOP_GRACE_SECONDS)
            if web is not None:
                try:
                    web.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    os.killpg(web.pid, signal.SIGKILL)  # its tether and the server
                    web.wait()
            sandbox.stop()
            inventory.stop()

    def _say_where_everything_is(self, port, sandbox, inventory, slow_port, slow_inventory):
        self.stdout.write(
            self.style.SUCCESS(
                f"\nAdmin:           http://127.0.0.1:{port}/admin/\n"
                f"Assets sandbox:  {sandbox.base_url}/\n"
                f"Demo inventory:  {inventory.base_url}/api/computers\n"
                f"Alerts received: {sandbox.base_url}/#alerts (the 'demo alerts' channel)\n"
                "In the admin, select 'demo-inventory', run 'Push mapping to Assets', then "
                "'Start import'; its alert arrives on the sandbox's page. Ctrl-C stops "
                "everything.\n"
                f"A source of your own: Assets API base URL {sandbox.base_url}, any "
                "workspace id and import source id (one per source), and the token "
                f"'{SANDBOX_TOKEN}'; a slower inventory to "
                f"read from: `{slow_inventory}` (then its records are at "
                f"http://127.0.0.1:{slow_port}/api/computers, under 'items').\n"
            )
        )

    def _ensure_admin_user(self) -> None:
        users = get_user_model()
        if users.objects.filter(username="admin").exists():
            self.stdout.write(
                "Log in as 'admin' (password printed when it was created; "
                "reset it with `python manage.py changepassword admin`)."
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@example.com", password)
        self.stdout.write(self.style.WARNING(f"Created admin user: admin / {password}"))
