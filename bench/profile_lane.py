"""Where a worker's CPU goes per chunk: one lane of an import, in this process.

    .venv/bin/python bench/profile_lane.py --records 20000 --page-size 100 [--database-url ...]
    .venv/bin/python bench/profile_lane.py --cpu --records 100000 --page-size 1000 --repeat 7

The demo inventory and the Assets sandbox run on loopback without latency, the lane's
other lanes are never started (their chunks stay queued), and the lane of chunk 0 is
followed to the source's end.

By default cProfile follows the lane (and the loopback servers, which run in this process's
threads) and the functions that cost the most are printed. With --cpu the servers run in
processes of their own and no profiler is attached: the CPU time of this process
(time.process_time, every thread: the lane's own and its fetch and submit threads) is the
worker's alone. Each
stage is timed with the CPU clock of the thread it runs in (time.thread_time):

  decode     JSON of the source's pages into Python
  transform  records into Assets' data chunk (transform_records)
  identities the digests of the records' identities, for the check of a record on two pages
             (identity_digests; offset and page-number sources)
  encode     the data chunk into the JSON body sent to Assets
  http       the rest of fetching and submitting (requests, sockets, headers, paging)
  db         the chunk's moves in the database (services.chunks called by the lane, and the
             question after each page whether it was the import's last: building the
             statements, the driver running them, transactions)
  other      the rest: the lane's bookkeeping, handing work to its threads

The figures are CPU milliseconds per 1000 records, the median over --repeat imports (after
one warm-up import), so other work on the machine changes them little.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402  (needs ROOT on the path)

STAGES = ("decode", "transform", "identities", "encode", "http", "db", "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key")
    parser.add_argument("--dump", default="", help="save the profile there (pstats format)")
    parser.add_argument(
        "--cpu", action="store_true", help="plain CPU time by stage, servers in a child process"
    )
    parser.add_argument("--repeat", type=int, default=5, help="imports measured with --cpu")
    parser.add_argument("--json", dest="json_path", default="", help="write the --cpu figures")
    args = parser.parse_args()

    import bench.run as bench

    stamp = f"profile-{os.getpid()}"
    # A database of its own: the cluster benchmark's may be in use.
    database_name = f"bench_profile_lane_{os.getpid()}"
    database_url, kind = bench.prepare_database(
        argparse.Namespace(database_url=args.database_url, database_name=database_name), stamp
    )
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
            "SECRET_KEY": bench.SECRET_KEY,
            "DEBUG": "false",
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    from importer import work_queue

    call_command("migrate", verbosity=0)
    held_back = []
    work_queue.enqueue_chunk = held_back.append
    work_queue.enqueue_completion_check = held_back.append
    loopback = Servers(args.records, own_process=args.cpu)
    try:
        if args.cpu:
            measure_cpu(args, loopback)
        else:
            profile(args, loopback)
    finally:
        loopback.stop()
        for leftover in bench.TMP.glob(f"{stamp}.sqlite3*"):
            leftover.unlink()
        if kind == "postgresql":
            drop_database(args.database_url, database_name)


def drop_database(server_url: str, name: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from django.db import connections

    connections.close_all()
    parts = urlsplit(server_url)
    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the loopback servers ----------------------------------------------------------------------


class Servers:
    """The sandbox and the inventory: in this process's threads (the profiler follows them),
    or each in a process of its own (`--cpu`: their CPU is not ours)."""

    def __init__(self, records: int, *, own_process: bool) -> None:
        self.sandbox = servers.start_sandbox(0, own_process=own_process)
        self.inventory = servers.start_inventory(records, 0, own_process=own_process)

    def stop(self) -> None:
        self.sandbox.stop()
        self.inventory.stop()


# --- one lane ----------------------------------------------------------------------------------


def run_lane(
    args, servers, name: str, runner=None, clock: StageClock | None = None
) -> tuple[int, int, float, float]:
    """Start an import and follow chunk 0's lane: (chunks, records, CPU s, wall s)."""
    import bench.run as bench
    from importer import services
    from importer.models import ChunkJob, ImportSource

    source = ImportSource.objects.create(
        **bench.source_fields(
            sandbox=servers.sandbox,
            inventory=servers.inventory,
            page_size=args.page_size,
            workers=2,
            name=name,
            import_source_id=name,
        )
    )
    services.push_mapping(source=source)
    execution = services.start_import(source=source)
    first = ChunkJob.objects.select_related("execution__source").get(execution=execution, index=0)
    if clock is not None:
        clock.reset()
    cpu, wall = time.process_time(), time.perf_counter()
    (runner or (lambda function, **kw: function(**kw)))(services.process_chunk, chunk=first)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if clock is not None:
        clock.stop()
    done = execution.chunks.filter(state=ChunkJob.State.SUBMITTED)
    chunks = done.count()
    records = sum(done.values_list("record_count", flat=True))
    return chunks, records, cpu, wall


def profile(args, servers) -> None:
    """cProfile with the CPU clock of each thread, the lane's fetch and submit threads too."""
    import importer.assets as assets
    from importer.sources.rest import RestJsonSource

    profiles = []

    def profiled(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if threading.current_thread() is threading.main_thread():
                return function(*args, **kwargs)  # the lane's own profile sees it
            profile = cProfile.Profile(time.thread_time)
            profiles.append(profile)
            return profile.runcall(function, *args, **kwargs)

        return wrapper

    RestJsonSource.fetch_page = profiled(RestJsonSource.fetch_page)
    assets.AssetsClient.submit_chunk = profiled(assets.AssetsClient.submit_chunk)
    main_thread = cProfile.Profile(time.thread_time)
    chunks, _, cpu, wall = run_lane(args, servers, "profile", runner=main_thread.runcall)
    print(
        f"{chunks} chunks of {args.page_size} records in one lane: "
        f"{cpu / chunks * 1000:.1f} ms CPU and {wall / chunks * 1000:.1f} ms wall per chunk "
        "(this process: the worker and both loopback servers)"
    )
    stats = pstats.Stats(main_thread)
    for profile in profiles:
        stats.add(profile)
    stats.sort_stats(args.sort).print_stats(args.top)
    if args.dump:
        stats.dump_stats(args.dump)


# --- CPU by stage ------------------------------------------------------------------------------


class StageClock:
    """CPU seconds by stage, each stage timed on the thread it runs in; nested stages are
    subtracted from the stage around them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.statements = 0
        self.counting = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def reset(self) -> None:
        """Start counting afresh (the lane is about to start)."""
        self.seconds.clear()
        self.statements = 0
        self.counting = True

    def stop(self) -> None:
        self.counting = False

    def timed(self, stage: str, function):
        clock = self

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            stack = clock._local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - began
                inner = stack.pop()
                if stack:
                    stack[-1] += spent
                with clock._lock:
                    clock.seconds[stage] += spent - inner

        return wrapper

    def sql(self, execute, sql, params, many, context):
        """Count the lane's statements (a connection's execute wrapper)."""
        self.statements += self.counting
        return execute(sql, params, many, context)


# The functions of services.chunks a lane calls to move its chunks.
DB_MOVES = (
    "chunk_error",
    "chunk_failed",
    "claim_chunk",
    "claim_within_source_limit",
    "completion_is_due",
    "mark_submitted",
    "postpone_chunk",
    "queue_next_chunks",
    "release_chunk",
    "request_slot_delay",
    "stop_chunk",
    "submit_verdict",
)


def instrument(clock: StageClock) -> None:
    """Put the stage clocks around the app's functions (at run time, on this process only)."""
    import importer.assets as assets
    import importer.services.lanes as lanes
    import importer.sources.transport as transport
    from importer.sources.rest import RestJsonSource

    RestJsonSource.fetch_page = clock.timed("http", RestJsonSource.fetch_page)
    assets.AssetsClient.submit_chunk = clock.timed("http", assets.AssetsClient.submit_chunk)
    lanes.transform_page = clock.timed("transform", lanes.transform_page)
    lanes.identity_digests = clock.timed("identities", lanes.identity_digests)
    for name in DB_MOVES:
        if hasattr(lanes, name):
            setattr(lanes, name, clock.timed("db", getattr(lanes, name)))
    codec = sys.modules.get("importer.json_codec")
    if codec is not None:  # the app's own JSON codec
        codec.decode = clock.timed("decode", codec.decode)
        codec.encode = clock.timed("encode", codec.encode)
    else:  # versions before importer/json_codec.py: the standard library's, as called there
        transport.json = _TimedJson(json, loads=clock.timed("decode", json.loads))
        assets.json = _TimedJson(json, dumps=clock.timed("encode", json.dumps))


class _TimedJson:
    def __init__(self, module, **timed) -> None:
        self._module = module
        self.__dict__.update(timed)

    def __getattr__(self, name):
        return getattr(self._module, name)


def measure_cpu(args, servers) -> None:
    from django.db import connection

    try:
        import importer.json_codec  # noqa: F401 (when the app has it: its functions are timed)
    except ImportError:
        pass

    clock = StageClock()
    instrument(clock)
    runs = []
    with connection.execute_wrapper(clock.sql):
        for attempt in range(args.repeat + 1):
            chunks, records, cpu, wall = run_lane(args, servers, f"cpu-{attempt}", clock=clock)
            staged = sum(clock.seconds.values())
            per_1000 = 1000 / records * 1000  # seconds -> ms, per 1000 records
            run = {
                "chunks": chunks,
                "records": records,
                "cpu_ms_per_1000_records": cpu * per_1000,
                "wall_ms_per_1000_records": wall * per_1000,
                "statements_per_chunk": clock.statements / chunks,
                **{f"{stage}_ms": clock.seconds.get(stage, 0.0) * per_1000 for stage in STAGES},
            }
            run["other_ms"] = (cpu - staged) * per_1000
            label = "warm-up" if attempt == 0 else f"run {attempt}"
            print(
                f"{label}: {chunks} chunks, {records} records: "
                f"{run['cpu_ms_per_1000_records']:.1f} CPU-ms per 1000 records ("
                + ", ".join(f"{stage} {run[f'{stage}_ms']:.1f}" for stage in STAGES)
                + f"), {run['statements_per_chunk']:.1f} statements per chunk",
                flush=True,
            )
            if attempt:
                runs.append(run)
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        f"median of {len(runs)}, pages of {args.page_size}: "
        f"{median['cpu_ms_per_1000_records']:.1f} CPU-ms per 1000 records "
        "(worker only; ms by stage: "
        + ", ".join(f"{stage} {median[f'{stage}_ms']:.1f}" for stage in STAGES)
        + f"), {median['statements_per_chunk']:.1f} SQL statements per chunk"
    )
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps({"page_size": args.page_size, "median": median, "runs": runs}, indent=1)
        )


if __name__ == "__main__":
    main()
