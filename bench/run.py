"""Benchmark a whole import through a real django-q2 cluster.

    .venv/bin/python bench/run.py --records 10000 --page-size 100 --workers 4 \
        --fetch-latency 0.05 --submit-latency 0.05

One run:

1. a fresh database: a new SQLite file under bench/results/tmp/ by default, or, with
   DATABASE_URL (or --database-url), the database `bench_assets_sync` on that PostgreSQL
   server, dropped and created again; `manage.py migrate` on it;
2. the demo inventory (`records` computers, `fetch_latency` per page) and the Assets sandbox
   (`submit_latency` per data chunk, a delay fault on POST .../data) on loopback, each in a
   process of its own (bench/servers.py);
3. the serial baseline: fetch -> transform -> submit, one page after the other, in this process,
   with the app's own source reader, mapping and Assets client, on a sandbox of its own;
4. the floor (bench/floor.py): the same pages through the app's own source reader, transform
   and Assets client in `workers` bare processes, with no database and no queue, on the same
   servers: what the servers, loopback HTTP and the cores cost with no app around them;
5. the bare task chain of bench/chain.py, once as one chain and once as one chain per worker,
   each on a fresh `manage.py qcluster` with Q_WORKERS=workers (the Redis broker when
   REDIS_URL or --redis-url is given, else the ORM broker);
6. the import, on a fresh cluster of its own: an ImportSource (offset paging, page_size,
   max_chunks_in_flight=workers) with the demo mapping, pushed, started with
   `services.start_import`, waited for until DONE, then checked: the sandbox holds every
   record exactly once and got "completed" once. Meanwhile the memory of every cluster
   process is sampled every 0.5 s.

bench/README.md says what each measure means and how it is computed.

The result goes to bench/results/<timestamp>-<params>.json; bench/results/summary.svg and the
table in bench/README.md are regenerated from every result file (bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TMP = RESULTS / "tmp"
BENCH_DATABASE = "bench_assets_sync"
SECRET_KEY = "bench-secret-key-not-for-production-0123456789-abcdefghijklmnopqrstuvwxyz"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import floor  # noqa: E402
from bench.servers import TOKEN, start_inventory, start_sandbox  # noqa: E402
from importer.devtools.cluster import QCluster  # noqa: E402  (needs ROOT on the path)

# --- configuration ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=["throughput", "latency", "recovery"],
        default="throughput",
        help="throughput: one import against the ideal and the serial loop; latency: many "
        "small imports, time to DONE; recovery: SIGKILL of the cluster mid-import "
        "(bench/latency.py; other defaults apply, see bench/README.md)",
    )
    parser.add_argument("--records", type=int, default=None, help="default 10000")
    parser.add_argument("--page-size", type=int, default=None, help="default 100")
    parser.add_argument("--workers", type=int, default=4, help="Q_WORKERS and chunks in flight")
    parser.add_argument(
        "--fetch-latency", type=float, default=None, help="seconds per page (default 0.05)"
    )
    parser.add_argument(
        "--submit-latency", type=float, default=None, help="seconds per chunk (default 0.05)"
    )
    parser.add_argument(
        "--processing-seconds",
        type=float,
        default=None,
        help="how long Assets stays PROCESSING after completed (default 0; latency mode 0.2)",
    )
    parser.add_argument(
        "--imports", type=int, default=10, help="latency mode: imports, one after the other"
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.3,
        help="recovery mode: SIGKILL the cluster once this share of the pages is submitted",
    )
    parser.add_argument("--poll", type=float, default=0.05, help="Q_POLL (ORM broker)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="a PostgreSQL server (its database name is replaced by --database-name); "
        "default: DATABASE_URL, else a fresh SQLite file",
    )
    parser.add_argument("--database-name", default=BENCH_DATABASE)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="use the Redis broker at this URL (default: REDIS_URL, else the ORM broker)",
    )
    parser.add_argument("--skip-serial", action="store_true", help="no serial baseline")
    parser.add_argument(
        "--serial-max-pages",
        type=int,
        default=0,
        help="time only this many pages of the serial baseline and extrapolate (0: all)",
    )
    parser.add_argument(
        "--chain-links", type=int, default=0, help="links of the bare chain (0: one per chunk)"
    )
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds for the import")
    parser.add_argument("--label", default="", help="a note stored with the result")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    args = parser.parse_args(argv)
    defaults = MODE_DEFAULTS[args.mode]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# What each mode measures by default: a large import for throughput; the small import
# (300 records, no latency, Assets processing 0.2 s) for latency; for recovery an import long
# enough to be killed half-way.
MODE_DEFAULTS = {
    "throughput": {
        "records": 10_000,
        "page_size": 100,
        "fetch_latency": 0.05,
        "submit_latency": 0.05,
        "processing_seconds": 0.0,
    },
    "latency": {
        "records": 300,
        "page_size": 50,
        "fetch_latency": 0.0,
        "submit_latency": 0.0,
        "processing_seconds": 0.2,
    },
    "recovery": {
        "records": 5_000,
        "page_size": 50,
        "fetch_latency": 0.1,
        "submit_latency": 0.1,
        "processing_seconds": 0.2,
    },
}


def prepare_database(args: argparse.Namespace, stamp: str) -> tuple[str, str]:
    """(DATABASE_URL, kind) of a fresh, empty database for this run."""
    if not args.database_url or args.database_url.startswith("sqlite"):
        TMP.mkdir(parents=True, exist_ok=True)
        path = TMP / f"{stamp}.sqlite3"
        for leftover in TMP.glob(f"{stamp}.sqlite3*"):
            leftover.unlink()
        return f"sqlite:///{path}", "sqlite"
    import psycopg

    parts = urlsplit(args.database_url)
    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    name = args.database_name
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), "postgresql"


def bench_environment(args: argparse.Namespace, database_url: str, pages: int) -> dict[str, str]:
    """The settings (environment) shared by this process, migrate and the qcluster."""
    env = {
        "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        # An empty value keeps a REDIS_URL in .env from switching the broker behind our back.
        "REDIS_URL": args.redis_url,
        "Q_WORKERS": str(args.workers),
        "Q_POLL": str(args.poll),
        "PYTHONUNBUFFERED": "1",
    }
    # The fan-out may look a few pages past the end; keep the endless-source guard out of it.
    default_max_pages = 10_000
    if pages + args.workers + 2 >= default_max_pages:
        env["IMPORT_MAX_PAGES"] = str(pages + args.workers + 10)
    return env


# --- the import's source, and the check of what reached the sandbox ----------------------------


def demo_mapping() -> dict:
    return json.loads((ROOT / "importer" / "devtools" / "demo_mapping.json").read_text())


def source_fields(
    *, sandbox, inventory, page_size: int, workers: int, name: str, import_source_id: str
) -> dict:
    from importer.models import ImportSource

    return {
        "name": name,
        "assets_base_url": sandbox.base_url,
        "workspace_id": "ws-bench",
        "import_source_id": import_source_id,
        "assets_token": TOKEN,
        "source_url": f"{inventory.base_url}/api/computers",
        "records_path": "items",
        "pagination": ImportSource.Pagination.OFFSET,
        "page_size": page_size,
        "max_chunks_in_flight": workers,
        "mapping": demo_mapping(),
    }


def expected_object_keys(records: int) -> set[str]:
    from importer.devtools.demo_source import demo_computer

    return {f"demo-computer:{demo_computer(i)['serial']}" for i in range(1, records + 1)}


def verify_sandbox(sandbox, execution_id: str, records: int, pages: int) -> dict:
    """Whether the sandbox holds every record exactly once and was told "completed" once."""
    state = sandbox.execution(execution_id)
    objects = state["objects"]
    times = list(objects.values())
    exact = set(objects) == expected_object_keys(records)
    checks = {
        "sandbox_state": state["state"],
        "records_received": state["records_received"],
        "chunks_received": state["chunks_received"],
        "object_count": state["object_count"],
        "objects_received_more_than_once": sum(1 for n in times if n > 1),
        "completed_posts": state["completed_posts"],
        "failure_reasons": state["failure_reasons"],
        "every_expected_object_present": exact,
    }
    checks["ok"] = (
        state["state"] == "DONE"
        and state["records_received"] == records
        and state["object_count"] == records
        and checks["objects_received_more_than_once"] == 0
        and exact
        and state["completed_posts"] == 1
        and state["chunks_received"] == pages
        and not state["failure_reasons"]
    )
    return checks


# --- the serial baseline ---------------------------------------------------------------------


def run_serial(args: argparse.Namespace, inventory, pages: int) -> dict:
    """fetch -> transform -> submit, page after page, in this process (no queue, no database)."""
    from importer.assets import AssetsClient
    from importer.mapping import transform_records
    from importer.models import ImportSource
    from importer.sources import build_source

    sandbox = start_sandbox(args.submit_latency)
    try:
        source = ImportSource(
            **source_fields(
                sandbox=sandbox,
                inventory=inventory,
                page_size=args.page_size,
                workers=1,
                name="bench-serial",
                import_source_id="bench-serial",
            )
        )
        mapping = source.mapping
        client = AssetsClient.for_source(source)
        client.put_mapping(mapping)
        reader = build_source(source)
        limit = args.serial_max_pages
        start = time.perf_counter()
        execution_id = client.start_execution().execution_id
        cursor: str | None = ""
        fetched = 0
        while cursor is not None:
            page = reader.fetch_page(cursor)
            result = transform_records(page.records, mapping, missing_identity="skip")
            if result.record_count:
                client.submit_chunk(execution_id, result.data)
            cursor = page.next_cursor
            fetched += 1
            if limit and fetched >= limit and cursor is not None:
                break
        extrapolated = cursor is not None
        if not extrapolated:
            client.mark_completed(execution_id)
        seconds = time.perf_counter() - start
        # The full run fetches one page past the end when the last page is full.
        total_fetches = pages + (1 if args.records % args.page_size == 0 else 0)
        if extrapolated:
            seconds = seconds / fetched * total_fetches
        verified = (
            verify_sandbox(sandbox, execution_id, args.records, pages)
            if not extrapolated
            else {"ok": None, "note": f"timed {fetched} pages, extrapolated"}
        )
        return {
            "seconds": seconds,
            "pages_timed": fetched,
            "extrapolated": extrapolated,
            "records_per_s": args.records / seconds,
            "verified": verified,
        }
    finally:
        sandbox.stop()


# --- the cluster and its memory --------------------------------------------------------------


def Cluster(env: dict[str, str], log_path: Path) -> QCluster:
    """`manage.py qcluster` in a session of its own, stopped as a process manager would."""
    return QCluster(env=env, log_path=log_path)


def _processes() -> dict[int, tuple[str, int, int, int]]:
    """pid -> (command name, parent pid, session, CPU ticks) of every process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        found[int(entry.name)] = (
            head.partition("(")[2],
            int(fields[1]),
            int(fields[3]),
            int(fields[11]) + int(fields[12]),
        )
    return found


def _memory_of(pid: int) -> tuple[int, int] | None:
    """(VmRSS kB, VmHWM kB) of a process, None when it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return (values["VmRSS"], values["VmHWM"]) if "VmRSS" in values else None


class MemorySampler(threading.Thread):
    """Every `interval` s: VmRSS and VmHWM (peak RSS) of every process in the cluster's
    session, kept per process (max) and as a series of (t, total RSS, largest RSS)."""

    def __init__(self, session: int, interval: float = 0.5):
        super().__init__(name="memory-sampler", daemon=True)
        self.session = session
        self.interval = interval
        self.per_pid: dict[int, dict[str, int]] = {}
        self.series: list[tuple[float, float, float]] = []
        self._halt = threading.Event()
        self.started_at = time.time()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)
        self.sample()

    def sample(self) -> None:
        total = largest = 0
        for pid, (_, parent, session, ticks) in _processes().items():
            if session != self.session:
                continue
            memory = _memory_of(pid)
            if memory is None:
                continue
            rss, hwm = memory
            seen = self.per_pid.setdefault(
                pid, {"parent": parent, "rss_kb": 0, "hwm_kb": 0, "cpu_ticks": 0}
            )
            seen["rss_kb"] = max(seen["rss_kb"], rss)
            seen["hwm_kb"] = max(seen["hwm_kb"], hwm)
            # Kept per sample, so a worker that is recycled mid-run still counts.
            seen["cpu_ticks"] = max(seen["cpu_ticks"], ticks)
            total += rss
            largest = max(largest, rss)
        self.series.append((time.time() - self.started_at, total / 1024, largest / 1024))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def cpu_ticks(self) -> dict[int, int]:
        """pid -> CPU ticks at the latest sample that saw the process."""
        return {pid: seen["cpu_ticks"] for pid, seen in self.per_pid.items()}

    def roles(self, main_pid: int, workers: int, worker_pids: set[int]) -> dict[int, str]:
        """main (qcluster), sentinel (its child), then the sentinel's children in the order
        django-q2 spawns them: the workers, the monitor, the pusher (later: recycled workers).
        """
        roles = {main_pid: "main"}
        sentinels = [pid for pid, seen in self.per_pid.items() if seen["parent"] == main_pid]
        for sentinel in sentinels:
            roles[sentinel] = "sentinel"
            children = sorted(p for p, seen in self.per_pid.items() if seen["parent"] == sentinel)
            first = children[: workers + 2]
            for pid in first[:workers]:
                roles[pid] = "worker"
            if len(first) > workers:
                roles[first[workers]] = "monitor"
            if len(first) > workers + 1:
                roles[first[workers + 1]] = "pusher"
            for pid in children[workers + 2 :]:
                roles[pid] = "worker" if pid in worker_pids else "other"
        for pid in worker_pids:
            roles[pid] = "worker"
        return roles


def cpu_shares(before: dict, after: dict, cluster_session: int) -> tuple[dict, dict]:
    """CPU seconds used between two `_processes()` snapshots, by kind: the cluster, this
    process and its children (the loopback servers), the database and Redis servers, and
    everything else on the machine (others' work on a shared machine makes timings noisy:
    see `other`); and per cluster process."""
    shares = {"cluster": 0.0, "bench_process": 0.0, "postgres": 0.0, "redis": 0.0, "other": 0.0}
    per_cluster_pid = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid, (name, parent, session, ticks) in after.items():
        earlier = before.get(pid)
        # A pid seen before is the same process (an exec changes only its name); a smaller
        # count than before means the pid was reused.
        used = (ticks - earlier[3] if earlier and ticks >= earlier[3] else ticks) / tick
        if session == cluster_session:
            kind = "cluster"
            per_cluster_pid[pid] = used
        elif pid == os.getpid() or parent == os.getpid():  # the loopback servers' processes
            kind = "bench_process"
        elif name.startswith("postgres"):
            kind = "postgres"
        elif name.startswith("redis"):
            kind = "redis"
        else:
            kind = "other"
        shares[kind] += used
    return shares, per_cluster_pid


def _system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# --- the import ------------------------------------------------------------------------------


def wait_for_execution(execution, timeout: float):
    from importer.models import Execution

    deadline = time.monotonic() + timeout
    while True:
        execution.refresh_from_db()
        if execution.state in Execution.FINISHED_STATES:
            return execution
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution still {execution.state} after {timeout} s")
        time.sleep(0.2)


def chunk_timeline(execution, fetch_seconds: dict[int, float], submit_times: list[float]) -> dict:
    """Where a worker's time per chunk goes, from the chunks' own timestamps.

    A worker runs one lane at a time and overlaps each page's fetch with the previous page's
    submit, so its pace is set by the slower of the two remote calls plus whatever else the
    lane does between them (database work, transforming, thread hand-offs, and the queue hop
    when a lane hands over to the next):

        period per chunk   = per worker process (ChunkJob.worker), the time between two of
                             its chunks being marked submitted (submitted_at), averaged over
                             every chunk
        overhead per chunk = period - max(mean server fetch time, mean server submit time)

    HTTP times are measured by the loopback servers themselves (request received -> answer
    written, injected latency included), so client-side HTTP work counts as overhead. A
    perfect pipeline has an overhead of 0.
    """
    rows = list(
        execution.chunks.values_list(
            "index", "worker", "started_at", "submitted_at", "attempts", "state"
        )
    )
    done = [row for row in rows if row[2] and row[3]]
    service = [(row[3] - row[2]).total_seconds() for row in done]
    fetch_times = [fetch_seconds[row[0]] for row in done if row[0] in fetch_seconds]
    by_worker: dict[str, list] = {}
    for row in done:
        by_worker.setdefault(row[1], []).append(row)
    periods = []
    for chunks in by_worker.values():
        chunks.sort(key=lambda row: row[3])
        periods += [(b[3] - a[3]).total_seconds() for a, b in zip(chunks, chunks[1:], strict=False)]
    fetch_mean = statistics.fmean(fetch_times) if fetch_times else 0.0
    submit_mean = statistics.fmean(submit_times) if submit_times else 0.0
    period = statistics.fmean(periods) if periods else 0.0
    return {
        "chunks": len(rows),
        "chunks_done": len(done),
        "chunks_retried": sum(1 for row in rows if row[4] > 1),
        "states": {s: sum(1 for row in rows if row[5] == s) for s in {row[5] for row in rows}},
        "worker_processes": len(by_worker),
        "worker_pids": sorted(int(name.rpartition(":")[2]) for name in by_worker if name),
        "service_ms_mean": statistics.fmean(service) * 1000,
        "service_ms_median": statistics.median(service) * 1000,
        "server_fetch_ms_mean": fetch_mean * 1000,
        "server_submit_ms_mean": submit_mean * 1000,
        "fetches": len(fetch_times),
        "submits": len(submit_times),
        "period_ms_mean": period * 1000,
        "period_ms_median": statistics.median(periods) * 1000 if periods else 0.0,
        "period_ms_p90": (sorted(periods)[int(0.9 * (len(periods) - 1))] * 1000)
        if periods
        else 0.0,
        "overhead_ms_per_chunk": (period - max(fetch_mean, submit_mean)) * 1000,
        "first_chunk_started_at": min(row[2] for row in done).isoformat(),
        "last_chunk_submitted_at": max(row[3] for row in done).isoformat(),
    }


def _fetch_seconds_by_chunk(timings: list, page_size: int) -> dict[int, float]:
    """chunk index -> seconds the inventory took for its page (from the offset asked for)."""
    found = {}
    for method, raw_path, _, seconds in timings:
        if method != "GET":
            continue
        query = parse_qs(urlsplit(raw_path).query)
        offset = int(query.get("offset", ["0"])[0])
        found[offset // page_size] = found.get(offset // page_size, 0.0) + seconds
    return found


def fresh_cluster(env: dict[str, str], log_path: Path) -> tuple[Cluster, float]:
    """A new cluster on an empty queue and an empty task history, once it takes tasks.

    Every phase (each bare chain, the import) gets its own: django-q2 recycles a worker after
    500 tasks and its monitor's cost grows with the stored results (save_limit), so a phase
    run on a cluster aged by the previous one would pay for that phase's tasks.
    """
    from django_q.brokers import get_broker
    from django_q.models import Task

    from bench import chain

    get_broker().purge_queue()  # a Redis database may hold tasks of an earlier, killed run
    Task.objects.all().delete()
    cluster = Cluster(env, log_path).start()
    try:
        return cluster, chain.wait_until_cluster_takes_work()
    except BaseException:
        cluster.stop()  # left running, it would take the next run's tasks
        raise


def run_chains(args, env, links: int, stamp: str) -> tuple[dict, dict]:
    """(one chain, one chain per worker) of `links` links in all, each on a fresh cluster."""
    from bench import chain

    results = []
    for chains in (1, args.workers):
        cluster, _ = fresh_cluster(env, TMP / f"{stamp}-chain{chains}-qcluster.log")
        try:
            results.append(chain.run_chain(links, chains=chains))
        finally:
            cluster.stop()
    return results[0], results[1]


def cluster_log_summary(log_path: Path) -> dict:
    """Worker recycles and errors the cluster logged (read, not parsed for timing)."""
    text = log_path.read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line]
    return {
        "worker_recycles": text.count("recycled worker"),
        "errors": len(errors),
        "first_errors": [line[:300] for line in errors[:3]],
    }


def run_import(args, env, sandbox, inventory, pages: int, stamp: str) -> dict:
    from django.db import connection
    from django.utils import timezone

    from importer import services
    from importer.models import ImportSource

    single, parallel = run_chains(args, env, args.chain_links or pages, stamp)
    log_path = TMP / f"{stamp}-qcluster.log"
    cluster, ready_s = fresh_cluster(env, log_path)
    sampler = MemorySampler(cluster.process.pid)
    sampler.start()
    try:
        source = ImportSource.objects.create(
            **source_fields(
                sandbox=sandbox,
                inventory=inventory,
                page_size=args.page_size,
                workers=args.workers,
                name="bench",
                import_source_id="bench-app",
            )
        )
        services.push_mapping(source=source)
        inventory.timings.clear()
        sandbox.timings.clear()
        load_before = os.getloadavg()
        cpu_before, processes_before = _system_cpu(), _processes()
        sampler.sample()
        cluster_ticks_before = sampler.cpu_ticks()
        started = timezone.now()
        execution = services.start_import(source=source)
        execution = wait_for_execution(execution, args.timeout)
        observed = timezone.now()
        cpu_after, processes_after = _system_cpu(), _processes()
        shares, _ = cpu_shares(processes_before, processes_after, cluster.process.pid)
        sampler.sample()
        tick = os.sysconf("SC_CLK_TCK")
        cluster_cpu = {
            pid: (ticks - cluster_ticks_before.get(pid, 0)) / tick
            for pid, ticks in sampler.cpu_ticks().items()
        }
        # Workers recycled during the import are gone from the last snapshot, not from the
        # sampler's: count the cluster from the sampler (0.5 s resolution at a process' end).
        shares["cluster"] = sum(cluster_cpu.values())
        if execution.state != "DONE":
            raise RuntimeError(f"the import ended {execution.state}: {execution.error}")
        wall = (execution.finished_at - started).total_seconds()
        fetch_seconds = _fetch_seconds_by_chunk(inventory.timings, args.page_size)
        # The one {"completed": true} post is a few bytes; data chunks are kilobytes.
        submit_times = [
            t
            for method, path, size, t in sandbox.timings
            if method == "POST" and path.split("?")[0].endswith("/data") and size > 64
        ]
        timeline = chunk_timeline(execution, fetch_seconds, submit_times)
        last_submit = datetime.fromisoformat(timeline["last_chunk_submitted_at"])
        verified = verify_sandbox(sandbox, execution.assets_execution_id, args.records, pages)
        busy = (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1])
        worker_pids = set(timeline["worker_pids"])
        roles = sampler.roles(cluster.process.pid, args.workers, worker_pids)
        worker_hwm = [v["hwm_kb"] for pid, v in sampler.per_pid.items() if pid in worker_pids]
        all_hwm = [v["hwm_kb"] for v in sampler.per_pid.values()]
        processes = [
            {
                "pid": pid,
                "role": roles.get(pid, "other"),
                "peak_rss_mb": round(seen["hwm_kb"] / 1024, 1),
                "import_cpu_s": round(cluster_cpu.get(pid, 0.0), 2),
            }
            for pid, seen in sorted(sampler.per_pid.items())
        ]
        cpu_by_role: dict[str, float] = {}
        for process in processes:
            role = process["role"]
            cpu_by_role[role] = cpu_by_role.get(role, 0.0) + process["import_cpu_s"]
        return {
            "wall_s": wall,
            "observed_s": (observed - started).total_seconds(),
            "ingest_s": (last_submit - started).total_seconds(),
            "completion_tail_s": (execution.finished_at - last_submit).total_seconds(),
            "cluster_ready_s": ready_s,
            "chain": single,
            "chain_parallel": parallel,
            "timeline": timeline,
            "verified": verified,
            "execution": {
                "state": execution.state,
                "pages_fetched": execution.pages_fetched,
                "pages_submitted": execution.pages_submitted,
                "records_submitted": execution.records_submitted,
                "records_skipped": execution.records_skipped,
                "last_chunk_index": execution.last_chunk_index,
            },
            "cpu": {
                "machine_busy_fraction": busy,
                "cores": os.cpu_count(),
                "load_average_before": load_before,
                "seconds_by_process_kind": shares,
                "cluster_cpu_ms_per_chunk": shares["cluster"] * 1000 / timeline["chunks_done"],
                "cluster_cpu_ms_per_chunk_by_role": {
                    role: seconds * 1000 / timeline["chunks_done"]
                    for role, seconds in sorted(cpu_by_role.items())
                },
            },
            "memory": {
                "peak_worker_rss_mb": max(worker_hwm) / 1024 if worker_hwm else None,
                "peak_any_cluster_process_rss_mb": max(all_hwm) / 1024 if all_hwm else None,
                "peak_cluster_total_rss_mb": max(s[1] for s in sampler.series),
                "processes": processes,
                "series_every_s": sampler.interval,
                "series_total_and_largest_rss_mb": [
                    [round(t, 1), round(total, 1), round(largest, 1)]
                    for t, total, largest in sampler.series[:: max(1, len(sampler.series) // 400)]
                ],
            },
            "qcluster_log": str(log_path.relative_to(ROOT)),
            "cluster_log": cluster_log_summary(log_path),
            "database_vendor": connection.vendor,
        }
    finally:
        sampler.stop()
        cluster.stop()


def app_fingerprint() -> str:
    """A short digest of the app's code and settings: the code measured (it changes)."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted((ROOT / "importer").rglob("*.py")) + [ROOT / "assets_sync" / "settings.py"]
    for path in files:
        if "migrations" in path.parts:
            continue
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# --- main ------------------------------------------------------------------------------------


def hold_machine_lock():
    """One benchmark at a time on this machine, or fail at once.

    Two runs would share the two cores (each disturbing the other's timings), the Redis
    queue (one cluster taking the other's tasks) and the PostgreSQL database (one run
    dropping the other's). The lock is released when the process ends.
    """
    import fcntl
    import tempfile

    lock = open(Path(tempfile.gettempdir()) / "assets-sync-bench.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise SystemExit(
            f"Another benchmark is running ({lock.read().strip() or 'unknown'}): wait for it; "
            "runs side by side disturb each other's timings and share the queue and database."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, started {datetime.now(UTC).isoformat(timespec='seconds')}")
    lock.flush()
    return lock


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _lock = hold_machine_lock()  # noqa: F841 (held until the process ends)
    pages = math.ceil(args.records / args.page_size)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    TMP.mkdir(parents=True, exist_ok=True)
    database_url, database = prepare_database(args, stamp)
    broker = "redis" if args.redis_url else "orm"
    env = bench_environment(args, database_url, pages)
    os.environ.update(env)

    print(
        f"[bench] {database} + {broker}: {args.records} records, {pages} pages of "
        f"{args.page_size}, {args.workers} workers",
        flush=True,
    )
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
    )
    migrate_s = time.perf_counter() - began

    import django

    django.setup()
    # This process enqueues the chain's first links: its "Enqueued" lines are noise here.
    logging.getLogger("django-q").setLevel(logging.WARNING)
    if args.mode != "throughput":
        from bench import latency

        try:
            result = latency.run(
                args, env, database=database, broker=broker, stamp=stamp, pages=pages
            )
        finally:
            if database == "sqlite":
                for leftover in TMP.glob(f"{stamp}.sqlite3*"):
                    leftover.unlink()
        result.update(
            timestamp=now.isoformat(timespec="seconds"),
            label=args.label,
            migrate_s=migrate_s,
            python=sys.version.split()[0],
            app_fingerprint=app_fingerprint(),
            command=" ".join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])]),
        )
        return write_result(result, args, f"{stamp}-{database}-{broker}-{args.mode}")
    inventory = start_inventory(args.records, args.fetch_latency)
    sandbox = start_sandbox(args.submit_latency)
    try:
        serial = None
        if not args.skip_serial:
            print("[bench] serial baseline ...", flush=True)
            serial = run_serial(args, inventory, pages)
            print(f"[bench] serial: {serial['seconds']:.1f} s", flush=True)
        print("[bench] floor ...", flush=True)
        bare = floor.run(args, sandbox, inventory, pages, source_fields, verify_sandbox)
        print("[bench] cluster, bare chain, import ...", flush=True)
        app = run_import(args, env, sandbox, inventory, pages, stamp)
    finally:
        sandbox.stop()
        inventory.stop()
        if database == "sqlite":
            for leftover in TMP.glob(f"{stamp}.sqlite3*"):
                leftover.unlink()

    ideal_s = pages * max(args.fetch_latency, args.submit_latency) / args.workers
    design_s = pages * (args.fetch_latency + args.submit_latency) / args.workers
    wall = app["wall_s"]
    overhead = app["timeline"]["overhead_ms_per_chunk"]
    chain_ms = app["chain"]["ms_per_link"]
    cluster_cpu_s = app["cpu"]["seconds_by_process_kind"]["cluster"]
    result = {
        "mode": "throughput",
        "timestamp": now.isoformat(timespec="seconds"),
        "label": args.label,
        "records": args.records,
        "page_size": args.page_size,
        "pages": pages,
        "workers": args.workers,
        "fetch_latency_s": args.fetch_latency,
        "submit_latency_s": args.submit_latency,
        "database": database,
        "broker": broker,
        "poll_s": args.poll,
        "max_chunks_in_flight": args.workers,
        "records_per_s": args.records / wall,
        "ratio_to_ideal": ideal_s / wall,
        "ratio_to_serial": (serial["seconds"] / wall) if serial else None,
        # How near the app comes to the floor: the same HTTP calls and transform with no
        # database and no queue (bench/floor.py). 1.0: nothing of the app's own is left.
        "ratio_to_floor": bare["seconds"] / wall,
        "overhead_ms_per_chunk": overhead,
        "bare_chain_ms_per_link": chain_ms,
        "overhead_vs_bare_chain": overhead / chain_ms if chain_ms else None,
        "peak_rss_mb": app["memory"]["peak_worker_rss_mb"],
        "verified": app["verified"]["ok"],
        # The latency and recovery modes fill the first three; here, the cluster's CPU for
        # the whole import (every process of its session) per 1000 records.
        "time_to_done_p50_s": None,
        "time_to_done_p95_s": None,
        "recovery_s": None,
        "cpu_ms_per_1000_records": cluster_cpu_s * 1000 / args.records * 1000,
        # Share of the machine's CPU used by processes that are not part of this benchmark
        # (other people's work on a shared machine) while the import ran: above ~0.1 the
        # timings are disturbed.
        "foreign_cpu_share": app["cpu"]["seconds_by_process_kind"]["other"]
        / (app["observed_s"] * (os.cpu_count() or 1)),
        "timings": {
            "wall_s": wall,
            "ideal_s": ideal_s,
            "design_bound_s": design_s,
            "ratio_to_design_bound": design_s / wall,
            "serial_s": serial["seconds"] if serial else None,
            "migrate_s": migrate_s,
            "ingest_s": app["ingest_s"],
            "completion_tail_s": app["completion_tail_s"],
            "observed_s": app["observed_s"],
            "cluster_ready_s": app["cluster_ready_s"],
            # A worker slot's time per chunk over the whole run (start-up and tail included)
            # minus the slower of the two remote calls, which a lane overlaps.
            "overhead_ms_per_chunk_by_throughput": (
                wall * args.workers / app["timeline"]["chunks_done"] * 1000
                - max(
                    app["timeline"]["server_fetch_ms_mean"],
                    app["timeline"]["server_submit_ms_mean"],
                )
            ),
        },
        "serial": serial,
        "floor": bare,
        "app": app,
        "python": sys.version.split()[0],
        "app_fingerprint": app_fingerprint(),
        "command": " ".join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])]),
    }
    print(
        f"[bench] wall {wall:.2f} s, {result['records_per_s']:.0f} records/s, "
        f"ideal {ideal_s:.2f} s (ratio {result['ratio_to_ideal']:.2f}), "
        f"serial {serial['seconds'] if serial else float('nan'):.2f} s "
        f"(ratio {result['ratio_to_serial'] or float('nan'):.2f}), "
        f"floor {bare['seconds']:.2f} s (ratio to ideal {bare['ratio_to_ideal']:.2f}, "
        f"app/floor {result['ratio_to_floor']:.2f}), "
        f"overhead {overhead:.1f} ms/chunk vs bare chain {chain_ms:.1f} ms/link, "
        f"peak worker RSS {result['peak_rss_mb']:.1f} MB, "
        f"cluster CPU {result['cpu_ms_per_1000_records']:.0f} ms per 1000 records, "
        f"verified {result['verified']}",
        flush=True,
    )
    return write_result(result, args, f"{stamp}-{database}-{broker}")


def write_result(result: dict, args: argparse.Namespace, prefix: str) -> dict:
    """bench/results/<prefix>-r<records>-p<page>-w<workers>-f<ms>-s<ms>.json, then the report."""
    name = (
        f"{prefix}-r{args.records}-p{args.page_size}-w{args.workers}"
        f"-f{round(args.fetch_latency * 1000)}-s{round(args.submit_latency * 1000)}.json"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"[bench] wrote bench/results/{name}")
    if not args.no_report:
        from bench import report

        report.regenerate()
    return result


if __name__ == "__main__":
    main()
