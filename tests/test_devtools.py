"""The development servers behave like the contract says, so tests built on them mean something."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from importer.devtools.assets_sandbox import AssetsSandbox
from importer.devtools.demo_source import DemoInventory, demo_computer

TOKEN = "sandbox-token"
DEMO_MAPPING = Path(__file__).resolve().parent.parent / "importer/devtools/demo_mapping.json"


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[AssetsSandbox]:
    with AssetsSandbox(token=TOKEN) as server:
        yield server


@pytest.fixture
def sandbox(running_sandbox: AssetsSandbox) -> AssetsSandbox:
    running_sandbox.reset()
    return running_sandbox


class Api:
    """Calls to one import source of the sandbox, with the right token."""

    def __init__(self, base_url: str) -> None:
        self.base = f"{base_url}/jsm/assets/workspace/ws-1/v1/importsource/is-1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=10, **kwargs)


@pytest.fixture
def api(sandbox: AssetsSandbox) -> Iterator[Api]:
    api = Api(sandbox.base_url)
    yield api
    api.session.close()


def start_execution(api: Api) -> str:
    """Put the demo mapping and start an execution; the id of that execution."""
    mapping = json.loads(DEMO_MAPPING.read_text())
    assert api.call("PUT", "/mapping", json=mapping).status_code == 204
    answer = api.call("POST", "/executions")
    assert answer.status_code == 200
    return answer.json()["links"]["submitResults"].split("/")[-2]


def test_sandbox_rejects_a_wrong_token(sandbox: AssetsSandbox, api: Api) -> None:
    answer = requests.get(
        api.base + "/configstatus", headers={"Authorization": "Bearer nope"}, timeout=5
    )

    assert answer.status_code == 401
    assert answer.json()["errorMessages"]


def test_sandbox_accepts_the_demo_mapping_and_counts_its_records(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    computers = [demo_computer(1), demo_computer(2), demo_computer(2)]

    answer = api.call(
        "POST", f"/executions/{execution_id}/data", json={"data": {"computers": computers}}
    )

    assert answer.status_code == 200
    execution = sandbox.execution(execution_id)

    assert execution["records_received"] == 3
    assert execution["objects"] == {"demo-computer:SN-00001": 1, "demo-computer:SN-00002": 2}
    assert execution["duplicate_objects"] == 1


def test_sandbox_answers_a_mapping_as_assets_does_with_ids_and_without_empty_fields(
    api: Api,
) -> None:
    mapping = json.loads(DEMO_MAPPING.read_text())
    mapping["schema"]["objectSchema"]["objectTypes"][0]["attributes"][0]["description"] = ""
    api.call("PUT", "/mapping", json=mapping)
    api.call("PUT", "/mapping", json=mapping)  # pushed again: the same ids

    answer = api.call("GET", "/schema-and-mapping").json()

    [computer] = answer["schema"]["objectSchema"]["objectTypes"]
    assert computer["id"] == 1
    assert [attribute["id"] for attribute in computer["attributes"]] == list(range(2, 10))
    assert "description" not in computer["attributes"][0]
    assert answer["mapping"] == mapping["mapping"]


def test_sandbox_page_says_how_many_objects_it_holds_and_pages_through_them(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    computers = [demo_computer(i) for i in range(1, 121)]
    api.call("POST", f"/executions/{execution_id}/data", json={"data": {"computers": computers}})

    first = requests.get(sandbox.base_url + "/", timeout=5).text
    last = requests.get(sandbox.base_url + "/?objects_page=3", timeout=5).text

    assert "It holds 120 objects; shown 1–50, page 1 of 3." in first
    assert "SN-00050" in first and "SN-00051" not in first
    assert "<a href='/?objects_page=3'>3</a>" in first
    assert "It holds 120 objects; shown 101–120, page 3 of 3." in last
    assert "SN-00120" in last


def test_sandbox_page_lists_objects_in_key_order_whatever_order_pages_arrived_in(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    for first in (51, 1):  # the second page of the source arrives first
        page = [demo_computer(i) for i in range(first, first + 50)]
        api.call("POST", f"/executions/{execution_id}/data", json={"data": {"computers": page}})

    shown = requests.get(sandbox.base_url + "/", timeout=5).text

    assert "SN-00001" in shown and "SN-00050" in shown and "SN-00051" not in shown


def test_sandbox_page_shows_lists_and_booleans_of_objects_as_json(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    computer = demo_computer(1) | {"tags": ["blue", "lab"], "managed": False}
    api.call("POST", f"/executions/{execution_id}/data", json={"data": {"computers": [computer]}})

    shown = requests.get(sandbox.base_url + "/", timeout=5).text

    assert "<td>[&quot;blue&quot;,&quot;lab&quot;]</td>" in shown
    assert "<td>false</td>" in shown
    assert "<td>SN-00001</td>" in shown  # text as it is, not quoted


def test_sandbox_refuses_a_second_open_execution(api: Api) -> None:
    start_execution(api)

    answer = api.call("POST", "/executions", json={"scheduled": True})

    assert answer.status_code == 409
    assert answer.json() == {"errorMessages": ["An import is already running"]}


def test_sandbox_rejects_a_chunk_without_the_external_id_and_stores_none_of_it(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    chunk = {"data": {"computers": [{"serial": "SN-00001"}, {"hostname": "lt-00002"}]}}

    answer = api.call("POST", f"/executions/{execution_id}/data", json=chunk)

    assert answer.status_code == 400
    assert "computers[1]" in answer.text and "'serial'" in answer.text
    execution = sandbox.execution(execution_id)
    assert (execution["chunks_received"], execution["records_received"]) == (0, 0)
    assert execution["objects"] == {}


def test_sandbox_counts_a_second_completed_post_and_rejects_it(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    data_path = f"/executions/{execution_id}/data"

    first = api.call("POST", data_path, json={"completed": True})
    second = api.call("POST", data_path, json={"completed": True})

    assert (first.status_code, second.status_code) == (200, 400)
    assert sandbox.execution(execution_id)["completed_posts"] == 2
    assert sandbox.execution(execution_id)["state"] == "DONE"


def test_sandbox_takes_a_failure_reason_of_at_most_1024_characters(
    sandbox: AssetsSandbox, api: Api
) -> None:
    execution_id = start_execution(api)
    failed_path = f"/executions/{execution_id}/history/failed"

    too_long = api.call("POST", failed_path, json={"failureReason": "é" * 1025})
    just_right = api.call("POST", failed_path, json={"failureReason": "é" * 1024})

    assert (too_long.status_code, just_right.status_code) == (400, 204)
    execution = sandbox.execution(execution_id)
    assert execution["state"] == "FAILED"
    assert execution["failure_reasons"] == ["é" * 1024]


def test_sandbox_fires_a_schedule_at_its_callback_url(sandbox: AssetsSandbox, api: Api) -> None:
    start_execution(api)
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = api.call(
        "POST",
        "/importschedule",
        json={
            "runFrequency": "DAILY",
            "runInterval": "DAILY",
            "startTime": start,
            "timezone": "Europe/Paris",
            "callbackUrl": f"{sandbox.base_url}/nowhere",
        },
    )
    assert created.status_code == 200

    fired = requests.post(
        f"{sandbox.base_url}/_sandbox/schedules/{created.json()['id']}/fire", timeout=10
    )

    assert fired.status_code == 200
    assert fired.json()["callbackStatus"] == 404
    assert ("POST", "/nowhere") in sandbox.requests_log


def test_fault_answers_429_with_retry_after_once_then_lets_requests_through(
    sandbox: AssetsSandbox, api: Api
) -> None:
    added = requests.post(
        f"{sandbox.base_url}/_faults",
        json={"method": "GET", "path_contains": "/configstatus", "status": 429, "retry_after": "7"},
        timeout=5,
    )
    assert added.status_code == 201

    limited = api.call("GET", "/configstatus")
    passed = api.call("GET", "/configstatus")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert passed.status_code == 200
    assert passed.json() == {"status": "MISSING_MAPPING"}


def test_a_dropped_connection_reaches_the_client_as_a_connection_error() -> None:
    with DemoInventory(records=3) as source:
        source.faults.add(method="GET", path_contains="/api/computers", drop=True)

        with pytest.raises(requests.ConnectionError):
            requests.get(f"{source.base_url}/api/computers", timeout=5)
        assert requests.get(f"{source.base_url}/api/computers", timeout=5).json()["total"] == 3


@pytest.mark.parametrize("style", ["offset", "page"])
def test_demo_source_pages_cover_every_record_exactly_once(style: str) -> None:
    with DemoInventory(records=103, token="t") as source:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer t"
        serials: list[str] = []
        for number in range(100):
            params = {"offset": number * 10} if style == "offset" else {"page": number + 1}
            answer = session.get(
                f"{source.base_url}/api/computers", params={**params, "limit": 10}, timeout=5
            )
            answer.raise_for_status()
            page = answer.json()
            serials += [item["serial"] for item in page["items"]]
            if not page["items"]:
                break
        session.close()

    assert page["total"] == 103
    assert serials == [f"SN-{i:05d}" for i in range(1, 104)]


@pytest.mark.parametrize("told", [{}, {"total_header": "X-Total-Count"}], ids=["body", "header"])
def test_demo_source_asked_tells_its_total_on_its_first_page_alone(told: dict) -> None:
    with DemoInventory(records=15) as source:
        url = f"{source.base_url}/api/computers"
        asked = {"total_first_page": "1", "limit": 10, **told}
        first = requests.get(url, params={**asked, "offset": 0}, timeout=5)
        second = requests.get(url, params={**asked, "offset": 10}, timeout=5)

    assert (first.json().get("total"), first.headers.get("X-Total-Count")) == (
        (None, "15") if told else (15, None)
    )
    assert len(second.json()["items"]) == 5
    assert "total" not in second.json()
    assert "X-Total-Count" not in second.headers


def test_the_demo_names_a_port_in_use_and_how_to_choose_another():
    import socket

    from django.core.management import CommandError, call_command

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as refused:
            call_command("demo", "--port", str(port))

    assert f"Port {port} on 127.0.0.1 is in use" in str(refused.value)
    assert "--port" in str(refused.value)


@pytest.mark.django_db
def test_a_restarted_demo_shows_what_its_new_sandbox_lacks(make_source, sandbox):
    from datetime import timedelta

    from django.utils import timezone

    from importer.management.commands.demo import forget_what_an_earlier_sandbox_held
    from importer.models import Schedule

    # Pushed and scheduled in the sandbox of an earlier run, which kept nothing.
    pushed = {"mapping_pushed_at": timezone.now()}
    demo = make_source(name="demo-inventory", **pushed)
    other = make_source(name="added-in-the-demo", import_source_id="src-2", **pushed)
    elsewhere = make_source(
        name="real-assets", assets_base_url="https://api.atlassian.com", **pushed
    )
    schedule = Schedule.objects.create(
        source=other,
        frequency="DAILY",
        start_time=timezone.now() + timedelta(days=1),
        in_sync=True,
    )

    forget_what_an_earlier_sandbox_held(sandbox.base_url)

    for source in (demo, other, elsewhere):
        source.refresh_from_db()
    schedule.refresh_from_db()
    assert demo.mapping_pushed_at is None and other.mapping_pushed_at is None
    assert elsewhere.mapping_pushed_at is not None
    assert not schedule.in_sync and "Re-sync schedule to Assets" in schedule.sync_error


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["INGESTING", "PROCESSING"])
def test_a_demo_started_on_other_ports_ends_the_import_the_last_one_left_running(
    make_source, sandbox, inventory, state
):
    # It refused to start: "An import of 'demo-inventory' is running ... cancel the import
    # first", and the import could not be cancelled: the demo was not running.
    from importer.management.commands.demo import set_up_demo_source
    from importer.models import ChunkJob, Execution, ImportSource

    set_up_demo_source(sandbox_url="http://127.0.0.1:19981", inventory_url="http://127.0.0.1:19982")
    demo = ImportSource.objects.get(name="demo-inventory")
    left_running = Execution.objects.create(source=demo, state=state)
    queued = ChunkJob.objects.create(execution=left_running, index=3)
    users = make_source(name="added-in-the-demo", assets_base_url="http://127.0.0.1:19981")
    users_import = Execution.objects.create(source=users, state="INGESTING")

    told = set_up_demo_source(sandbox_url=sandbox.base_url, inventory_url=inventory.base_url)

    demo.refresh_from_db()
    assert demo.assets_base_url == sandbox.base_url
    assert demo.source_url == f"{inventory.base_url}/api/computers"
    left_running.refresh_from_db()
    assert left_running.state == Execution.State.FAILED
    assert "the Assets sandbox it sent its pages to is gone" in left_running.error
    assert not left_running.failure_report_pending  # no one left to tell
    queued.refresh_from_db()
    assert queued.state == ChunkJob.State.CANCELLED
    assert told[0] == (
        f"Demo source: import #{left_running.pk} of 'demo-inventory', left running when the "
        "last demo stopped, is marked failed: the sandbox it sent its pages to is gone. Start "
        "it again from the admin."
    )
    users_import.refresh_from_db()
    assert users_import.state == Execution.State.INGESTING  # a source of the user's own


def test_the_demo_on_another_port_gives_out_links_and_callbacks_to_that_port():
    from importer.management.commands.demo import demo_public_base_url

    # .env's default names port 8000; the demo runs on 8010.
    assert demo_public_base_url("http://127.0.0.1:8000", 8010) == "http://127.0.0.1:8010"
    assert demo_public_base_url("http://localhost:8000", 8010) == "http://127.0.0.1:8010"
    # An address set on purpose (a tunnel to this machine) is kept.
    assert demo_public_base_url("https://sync.example.com", 8010) == "https://sync.example.com"


def test_the_demo_starts_again_on_ports_its_last_run_just_closed():
    import socket

    from importer.management.commands.demo import _port_is_free

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server's side closes first: its port waits in TIME-WAIT
    client.close()
    listener.close()

    assert _port_is_free(port)


# --- stopping the demo -----------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _still_running(selector: str, number: int) -> bool:
    """Whether a process of a process group (`-g`) or a session (`-s`) has not ended yet (a
    zombie left for its parent to reap has)."""
    states = subprocess.run(["ps", selector, str(number), "-o", "stat="], capture_output=True)
    return any(not state.startswith("Z") for state in states.stdout.decode().split())


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory) -> Path:
    from tests.test_commands import manage

    database = tmp_path_factory.mktemp("demo") / "migrated.sqlite3"
    assert manage("migrate", "-v", "0", database=database).returncode == 0
    return database


@pytest.fixture
def demo_database(migrated_database, tmp_path) -> Path:
    """A migrated database of this test's own: a demo stopped while importing leaves its
    import open in it."""
    return Path(shutil.copy(migrated_database, tmp_path / "demo.sqlite3"))


def _start_demo(environment: dict, log: Path, *extra: str, port: int = 0) -> subprocess.Popen:
    """`manage.py demo` in a session of its own, on free ports (its web server on `port` if
    given), its output in `log`."""
    from tests.conftest import ROOT

    free_port, sandbox_port, inventory_port = _free_ports(3)
    port = port or free_port
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port)]
            + ["--sandbox-port", str(sandbox_port), "--inventory-port", str(inventory_port)]
            + list(extra),
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _demo_environment(database: Path) -> dict:
    return {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "true",
        "SECRET_KEY": "x" * 50,
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",
    }


def _session_of(demo: subprocess.Popen, command: str) -> int:
    """The session of the demo's web server (`runserver`) or cluster (`qcluster`), named
    after the process the demo started."""
    found = subprocess.run(
        ["pgrep", "-P", str(demo.pid), "-f", command], capture_output=True, text=True
    )
    return int(found.stdout.split()[0])


def _start_an_import_of_the_demo_source(environment: dict, log: Path) -> None:
    """`manage.py run_import demo-inventory`, and wait until the demo's cluster reads a page."""
    from tests.conftest import ROOT, wait_for

    started = subprocess.run(
        [sys.executable, "manage.py", "run_import", "demo-inventory"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: "'importer.tasks.run_chunk'" in log.read_text(),
        message="the cluster read no page",
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"], ids=["SIGTERM", "Ctrl-C"])
def test_the_demo_stops_within_seconds_of_a_signal_to_its_process_group_while_importing(
    demo_database, tmp_path, stop
):
    # It took 30 s: its cluster's main process hung once a SIGTERM to the group had killed
    # its sentinel, and, stopped by Ctrl-C, the cluster let a lane run to its end.
    from tests.conftest import wait_for

    environment = _demo_environment(demo_database)
    log = tmp_path / "demo.log"
    demo = _start_demo(environment, log, "--records", "20000")
    web = cluster = None
    try:
        wait_for(lambda: "running." in log.read_text(), message="the cluster did not start")
        web, cluster = _session_of(demo, "runserver"), _session_of(demo, "qcluster")
        _start_an_import_of_the_demo_source(environment, log)

        os.killpg(demo.pid, getattr(signal, stop))

        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo still ran 10 s after the signal")
        wait_for(lambda: not _still_running("-s", web), timeout=2, message="web server left")
        wait_for(lambda: not _still_running("-s", cluster), timeout=2, message="cluster left")
    finally:
        print(log.read_text()[-5000:])  # shown when the test fails
        for group in (demo.pid, web, cluster):
            if group is not None and _still_running("-g", group):
                os.killpg(group, signal.SIGKILL)
        demo.wait()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("killed", ["process", "group"], ids=["its process", "its group"])
def test_the_demos_cluster_and_web_server_stop_when_the_demo_is_killed_outright(
    demo_database, tmp_path, killed
):
    # A `kill -9` left the cluster running on the demo's database, beside the next demo's
    # cluster, and the web server holding its port.
    from importer.management.commands.demo import _port_is_free
    from tests.conftest import wait_for

    log = tmp_path / "demo.log"
    (port,) = _free_ports(1)
    demo = _start_demo(_demo_environment(demo_database), log, port=port)
    web = cluster = None
    try:
        wait_for(lambda: "running." in log.read_text(), message="the cluster did not start")
        wait_for(lambda: not _port_is_free(port), message="the web server did not start")
        web, cluster = _session_of(demo, "runserver"), _session_of(demo, "qcluster")

        if killed == "process":
            os.kill(demo.pid, signal.SIGKILL)
        else:
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()

        wait_for(lambda: not _still_running("-s", cluster), timeout=10, message="cluster left")
        wait_for(lambda: _port_is_free(port), timeout=10, message="web server left")
    finally:
        print(log.read_text()[-5000:])  # shown when the test fails
        for group in (demo.pid, web, cluster):
            if group is not None and _still_running("-g", group):
                os.killpg(group, signal.SIGKILL)
        demo.wait()


@pytest.mark.timeout(180)
def test_a_demo_stopped_while_importing_starts_again_on_other_ports(demo_database, tmp_path):
    # It refused to start: "An import of 'demo-inventory' is running ... cancel the import
    # first", with no demo running to cancel it from.
    from tests.conftest import wait_for

    environment = _demo_environment(demo_database) | {"PYTHONUNBUFFERED": "1"}
    first_log, again_log = tmp_path / "first.log", tmp_path / "again.log"
    first = _start_demo(environment, first_log, "--records", "20000")
    again = None
    try:
        wait_for(lambda: "running." in first_log.read_text(), message="the cluster did not start")
        _start_an_import_of_the_demo_source(environment, first_log)
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=10)

        again = _start_demo(environment, again_log)  # on other ports

        wait_for(
            lambda: "running." in again_log.read_text() or again.poll() is not None,
            message="the demo did not start again",
        )
        told = again_log.read_text()
        assert again.poll() is None, told
        assert (
            "Demo source: import #1 of 'demo-inventory', left running when the last demo "
            "stopped, is marked failed" in told
        )
        assert "Demo source: updated demo-inventory: " in told
    finally:
        print(first_log.read_text()[-3000:], again_log.read_text()[-3000:])
        for demo in (first, again):
            if demo is not None and _still_running("-g", demo.pid):
                os.killpg(demo.pid, signal.SIGTERM)
                demo.wait()
