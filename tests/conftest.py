"""Shared fixtures: the Assets sandbox and a demo inventory as real servers on loopback."""

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from importer.devtools.assets_sandbox import AssetsSandbox
from importer.devtools.cluster import QCluster
from importer.devtools.demo_source import DemoInventory, demo_computer
from importer.models import Execution, ImportSource
from tests.fake_source import FakeSource

ROOT = Path(__file__).resolve().parent.parent
DEMO_MAPPING = json.loads((ROOT / "importer" / "devtools" / "demo_mapping.json").read_text())
SANDBOX_TOKEN = "sandbox-secret-token"
ARTIFACTS = ROOT / "tests" / "artifacts"


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


def computer_with_disks(i: int) -> dict:
    """A demo computer with tags, a flag, and its disks in a list of their own."""
    return demo_computer(i) | {
        "tags": ["blue", "lab"],
        "managed": False,
        "disks": [{"serial": f"D{i}-1", "size_gb": 256}],
    }


def with_tags_flag_and_disks(mapping: dict) -> dict:
    """The demo mapping, also mapping tags (many), the flag, and disks (a nested selector)."""
    computer = mapping["schema"]["objectSchema"]["objectTypes"][0]
    computer["attributes"] += [
        {"externalId": "tags", "name": "Tags", "type": "text", "maximumCardinality": -1},
        {"externalId": "managed", "name": "Managed", "type": "boolean"},
    ]
    computer["children"] = [
        {
            "externalId": "disk",
            "name": "Disk",
            "attributes": [
                {"externalId": "disk-serial", "name": "Disk serial", "type": "text", "label": True},
                {"externalId": "disk-size", "name": "Size", "type": "integer"},
            ],
        }
    ]
    mappings = mapping["mapping"]["objectTypeMappings"]
    mappings[0]["attributesMapping"] += [
        {"attributeExternalId": "tags", "attributeLocators": ["tags"]},
        {"attributeExternalId": "managed", "attributeLocators": ["managed"]},
    ]
    mappings.append(
        {
            "objectTypeExternalId": "disk",
            "selector": "computers.disks",
            "attributesMapping": [
                {
                    "attributeExternalId": "disk-serial",
                    "attributeLocators": ["serial"],
                    "externalIdPart": True,
                },
                {"attributeExternalId": "disk-size", "attributeLocators": ["size_gb"]},
            ],
        }
    )
    return mapping


@pytest.fixture
def computers_with_disks(make_source, demo_mapping):
    """A source of 30 computers with disks, mapped with `with_tags_flag_and_disks`."""
    server = FakeSource(records=30, record=computer_with_disks).start()

    def build(**overrides) -> ImportSource:
        return make_source(
            source_url=f"{server.base_url}/api/offset",
            records_path="data.items",
            limit_param="limit",
            mapping=with_tags_flag_and_disks(demo_mapping),
            **overrides,
        )

    yield build
    server.stop()


@pytest.fixture
def staff_client(client, django_user_model):
    """A test client signed in as a superuser."""
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


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


def run_retries_now(execution: Execution, rounds: int = 10) -> None:
    """Run the import's pages queued for another attempt here, without waiting for their
    time, until none is left (or `rounds` have run)."""
    from importer import services
    from importer.models import ChunkJob

    for _ in range(rounds):
        retrying = execution.chunks.filter(state=ChunkJob.State.QUEUED)
        if not retrying:
            return
        retrying.update(next_attempt_at=None)
        for chunk in ChunkJob.objects.filter(pk__in=list(retrying.values_list("pk", flat=True))):
            services.process_chunk(chunk=chunk)


def wait_for_execution_to_finish(execution: Execution, timeout: float = 120.0) -> Execution:
    def finished():
        execution.refresh_from_db()
        return execution.state in Execution.FINISHED_STATES

    def chunks() -> str:
        return ", ".join(
            f"{index}:{state}/{attempts}{' next ' + str(next_at) if next_at else ''}"
            for index, state, attempts, next_at in execution.chunks.values_list(
                "index", "state", "attempts", "next_attempt_at"
            )
        )

    deadline = time.monotonic() + timeout
    while not finished():
        if time.monotonic() > deadline:
            pytest.fail(
                f"execution still {execution.state} after {timeout} s "
                f"(last page {execution.last_chunk_index}; chunks {chunks()})"
            )
        time.sleep(0.05)
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


def Cluster(workers: int = 2, **settings_env: str) -> QCluster:
    """A real `manage.py qcluster` on the test database, with the project's broker."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url_of_test_database(),
        "Q_SYNC": "false",
        "Q_WORKERS": str(workers),
        **settings_env,
    }
    return QCluster(env=env, log_path=ARTIFACTS / "qcluster.log")


@pytest.fixture
def async_tasks(transactional_db, settings):
    """Tasks enqueued by the test go to the broker instead of running inline."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    previous_sync = Conf.SYNC
    Conf.SYNC = False
    get_broker().purge_queue()  # nothing left over from an earlier test (Redis keeps it)
    yield
    Conf.SYNC = previous_sync


@pytest.fixture
def hung_broker(async_tasks, settings, monkeypatch):
    """django-q2's Redis broker at a loopback port that takes connections and never answers
    (a hung Redis, its password "broker-secret"): tasks are sent to it, each try failing
    after 0.3 s."""
    from django_q.conf import Conf

    from importer import work_queue

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        url = f"redis://:broker-secret@127.0.0.1:{port}/5?socket_timeout=0.3"
        settings.REDIS_URL = url
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)
        monkeypatch.setattr(work_queue, "_broker", None)
        yield url


@pytest.fixture
def cluster(async_tasks):
    """A running qcluster on the test database."""
    running = Cluster().start()
    yield running
    running.stop()


@pytest.fixture
def start_cluster(async_tasks):
    """Start clusters with settings of their own; all are stopped after the test."""
    started = []

    def start(**settings_env) -> Cluster:
        started.append(Cluster(**settings_env).start())
        return started[-1]

    yield start
    for running in started:
        running.stop()


class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd) that keeps every message it receives."""

    def __init__(self, **options):
        """`options`: aiosmtpd's, as an authenticator asking for a login."""
        self.messages: list = []  # (envelope sender, recipients, parsed message)
        with socket.socket() as probe:  # a free port; aiosmtpd checks it answers on start
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class SlowSmtpServer(SmtpServer):
    """An SMTP server that takes `delay` seconds over each answer to EHLO, MAIL and RCPT:
    each within a socket timeout longer than `delay`, the whole conversation not."""

    def __init__(self, delay: float, **options):
        super().__init__(**options)
        self.delay = delay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        await asyncio.sleep(self.delay)
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await asyncio.sleep(self.delay)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await asyncio.sleep(self.delay)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server, and the app's mail settings pointing at it."""
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.stop()
