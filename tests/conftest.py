"""Shared fixtures: the Assets sandbox and a demo inventory as real servers on loopback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from importer.devtools.assets_sandbox import AssetsSandbox
from importer.devtools.demo_source import DemoInventory
from importer.models import Execution, ImportSource

ROOT = Path(__file__).resolve().parent.parent
DEMO_MAPPING = json.loads((ROOT / "importer" / "devtools" / "demo_mapping.json").read_text())
SANDBOX_TOKEN = "sandbox-secret-token"


@pytest.fixture
def sandbox():
    server = AssetsSandbox(token=SANDBOX_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def inventory():
    server = DemoInventory(records=120).start()
    yield server
    server.stop()


@pytest.fixture
def demo_mapping():
    return json.loads(json.dumps(DEMO_MAPPING))


@pytest.fixture
def make_source(sandbox, inventory, demo_mapping):
    """Build an ImportSource wired to the sandbox and the demo inventory."""

    def build(**overrides) -> ImportSource:
        fields = {
            "name": "inventory",
            "assets_base_url": sandbox.base_url,
            "workspace_id": "ws-1",
            "import_source_id": "src-1",
            "assets_token": SANDBOX_TOKEN,
            "source_url": f"{inventory.base_url}/api/computers",
            "records_path": "items",
            "pagination": ImportSource.Pagination.OFFSET,
            "page_size": 25,
            "mapping": demo_mapping,
        }
        fields.update(overrides)
        return ImportSource.objects.create(**fields)

    return build


@pytest.fixture
def pushed_source(make_source, sandbox):
    """A source whose mapping Assets (the sandbox) has accepted."""
    from importer import services

    return services.push_mapping(source=make_source())


def wait_for(condition, *, timeout: float = 60.0, interval: float = 0.05, message: str = ""):
    """Poll until `condition()` is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or "condition not met in time")


def wait_for_execution_to_finish(execution: Execution, timeout: float = 120.0) -> Execution:
    def finished():
        execution.refresh_from_db()
        return execution.state in Execution.FINISHED_STATES

    wait_for(
        finished, timeout=timeout, message=f"execution still {execution.state} after {timeout} s"
    )
    return execution


def _database_url_of_test_database() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{settings['NAME']}"


class Cluster:
    """A real `manage.py qcluster` on the test database, with the project's broker."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.process = None

    def start(self) -> "Cluster":
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": _database_url_of_test_database(),
            "Q_SYNC": "false",
            "Q_WORKERS": str(self.workers),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def cluster(transactional_db, settings):
    """A running qcluster; tasks enqueued by the test go to it instead of running inline."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    from django_q.conf import Conf

    previous_sync = Conf.SYNC
    Conf.SYNC = False
    running = Cluster().start()
    yield running
    running.stop()
    Conf.SYNC = previous_sync
