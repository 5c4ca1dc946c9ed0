"""What a person waits for: small imports from start to DONE, and an import whose whole
cluster is killed half-way.

    .venv/bin/python bench/run.py --mode latency              # 10 imports of 300 records
    .venv/bin/python bench/run.py --mode recovery             # SIGKILL mid-import

**latency**: one fresh cluster, one source, then `--imports` imports one after the other,
each started as soon as the previous one is seen DONE (a start refused because the previous
import still looks open is counted in `refused_starts`, and retried). For each import, from the
moment `services.start_import` is called:

* first fetch: the source receives the first request of the import;
* last page submitted: the last chunk is recorded as SUBMITTED (`ChunkJob.submitted_at`);
* completed posted: Assets accepted `{"completed": true}` (`Execution.completed_at`);
* DONE seen: the app recorded the DONE Assets reported (`Execution.finished_at`): the time
  to DONE; the benchmark's own poll of the row (every 10 ms) is kept as `observed_s`.

**recovery**: one import on a fresh cluster; once `--kill-at` of its pages are submitted the
whole cluster (its process group) gets SIGKILL and a new cluster is started at once, on the
same queue and database, as an operator or a process manager would. Measured from the kill:
the first page that moves again (a chunk recorded SUBMITTED after the kill: `recovery_s`),
and DONE. Checked: every record reached Assets, "completed" was posted once, and how many
records were sent twice (the pages in flight at the kill may be).

Both record the cluster's CPU (every process of its session) per 1000 records imported.
"""

from __future__ import annotations

import math
import os
import statistics
import time

from bench.run import (
    TMP,
    Cluster,
    _processes,
    _system_cpu,
    cluster_log_summary,
    cpu_shares,
    expected_object_keys,
    fresh_cluster,
    source_fields,
    verify_sandbox,
)
from bench.servers import start_inventory, start_sandbox


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (with 10 values, p95 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _settings(args) -> dict:
    return {
        "records": args.records,
        "page_size": args.page_size,
        "workers": args.workers,
        "max_chunks_in_flight": args.workers,
        "fetch_latency_s": args.fetch_latency,
        "submit_latency_s": args.submit_latency,
        "processing_s": args.processing_seconds,
        "poll_s": args.poll,
    }


def run(args, env: dict, *, database: str, broker: str, stamp: str, pages: int) -> dict:
    inventory = start_inventory(args.records, args.fetch_latency)
    sandbox = start_sandbox(args.submit_latency, args.processing_seconds)
    try:
        runner = run_latency if args.mode == "latency" else run_recovery
        measured = runner(args, env, sandbox, inventory, pages, stamp)
    finally:
        sandbox.stop()
        inventory.stop()
    return {
        "mode": args.mode,
        **_settings(args),
        "pages": pages,
        "database": database,
        "broker": broker,
        **measured,
    }


def _new_source(sandbox, inventory, args, name: str):
    from importer import services
    from importer.models import ImportSource

    source = ImportSource.objects.create(
        **source_fields(
            sandbox=sandbox,
            inventory=inventory,
            page_size=args.page_size,
            workers=args.workers,
            name=name,
            import_source_id=name,
        )
    )
    return services.push_mapping(source=source)


def _start(source) -> tuple[object, int]:
    """Start an import; (execution, starts refused before it began)."""
    from importer import services

    refused = 0
    while True:
        try:
            return services.start_import(source=source), refused
        except services.ImportRefused:
            refused += 1
            if refused > 600:
                raise
            time.sleep(0.05)


def _wait_done(execution, timeout: float, interval: float = 0.01):
    from importer.models import Execution

    deadline = time.monotonic() + timeout
    while True:
        execution.refresh_from_db()
        if execution.state in Execution.FINISHED_STATES:
            return execution, time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution still {execution.state} after {timeout} s")
        time.sleep(interval)


def _cpu_window(cluster) -> tuple:
    return _system_cpu(), _processes(), cluster.process.pid


def _cpu_used(window, records: int, wall: float) -> dict:
    (cpu_before, processes_before, session) = window
    cpu_after, processes_after = _system_cpu(), _processes()
    shares, _ = cpu_shares(processes_before, processes_after, session)
    busy = (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1])
    return {
        "seconds_by_process_kind": shares,
        "machine_busy_fraction": busy,
        "cluster_cpu_ms_per_1000_records": shares["cluster"] * 1000 / records * 1000,
        "foreign_cpu_share": shares["other"] / (wall * (os.cpu_count() or 1)),
    }


def run_latency(args, env, sandbox, inventory, pages: int, stamp: str) -> dict:
    from importer.models import ChunkJob

    log_path = TMP / f"{stamp}-latency-qcluster.log"
    cluster, ready_s = fresh_cluster(env, log_path)
    try:
        source = _new_source(sandbox, inventory, args, "bench-latency")
        window = _cpu_window(cluster)
        began = time.time()
        imports = []
        for number in range(args.imports):
            inventory.arrivals.clear()
            t0 = time.time()
            execution, refused = _start(source)
            execution, seen = _wait_done(execution, args.timeout)
            if execution.state != "DONE":
                raise RuntimeError(f"import {number} ended {execution.state}: {execution.error}")
            fetches = [at for method, _, at in inventory.arrivals if method == "GET"]
            submitted = (
                ChunkJob.objects.filter(execution=execution, state=ChunkJob.State.SUBMITTED)
                .order_by("-submitted_at")
                .values_list("submitted_at", flat=True)
                .first()
            )
            verified = verify_sandbox(sandbox, execution.assets_execution_id, args.records, pages)
            imports.append(
                {
                    "first_fetch_s": min(fetches) - t0 if fetches else None,
                    "last_page_submitted_s": submitted.timestamp() - t0,
                    "completed_posted_s": execution.completed_at.timestamp() - t0,
                    "done_seen_s": execution.finished_at.timestamp() - t0,
                    "observed_s": seen - t0,
                    "refused_starts": refused,
                    "verified": verified["ok"],
                }
            )
            print(
                f"[bench] import {number + 1}/{args.imports}: DONE after "
                f"{imports[-1]['done_seen_s']:.2f} s",
                flush=True,
            )
        wall = time.time() - began
        cpu = _cpu_used(window, args.records * args.imports, wall)
    finally:
        cluster.stop()
    done = [entry["done_seen_s"] for entry in imports]

    def median(key: str) -> float:
        return statistics.median(entry[key] for entry in imports if entry[key] is not None)

    return {
        "time_to_done_p50_s": statistics.median(done),
        "time_to_done_p95_s": percentile(done, 0.95),
        "recovery_s": None,
        "cpu_ms_per_1000_records": cpu["cluster_cpu_ms_per_1000_records"],
        "verified": all(entry["verified"] for entry in imports),
        "refused_starts": sum(entry["refused_starts"] for entry in imports),
        "foreign_cpu_share": cpu["foreign_cpu_share"],
        "phases_median_s": {
            key: median(key)
            for key in (
                "first_fetch_s",
                "last_page_submitted_s",
                "completed_posted_s",
                "done_seen_s",
                "observed_s",
            )
        },
        "time_to_done_max_s": max(done),
        "imports": imports,
        "cpu": cpu,
        "cluster_ready_s": ready_s,
        "qcluster_log": str(log_path.name),
        "cluster_log": cluster_log_summary(log_path),
    }


def run_recovery(args, env, sandbox, inventory, pages: int, stamp: str) -> dict:
    from importer.models import ChunkJob

    first_log = TMP / f"{stamp}-recovery-qcluster-killed.log"
    cluster, ready_s = fresh_cluster(env, first_log)
    second = None
    try:
        source = _new_source(sandbox, inventory, args, "bench-recovery")
        t0 = time.time()
        execution, _ = _start(source)
        chunks = ChunkJob.objects.filter(execution=execution)
        kill_after = max(1, math.floor(args.kill_at * pages))
        deadline = time.monotonic() + args.timeout
        while chunks.filter(state=ChunkJob.State.SUBMITTED).count() < kill_after:
            if time.monotonic() > deadline:
                raise TimeoutError("the import never got far enough to be killed")
            time.sleep(0.01)
        cluster.kill()
        killed_at = time.time()
        at_kill = dict(
            (state, chunks.filter(state=state).count())
            for state in (ChunkJob.State.SUBMITTED, ChunkJob.State.RUNNING, ChunkJob.State.QUEUED)
        )
        print(f"[bench] killed the cluster with {at_kill} chunks", flush=True)
        # A new cluster at once, on the same queue and database: no purge, no fresh history.
        second = Cluster(env, TMP / f"{stamp}-recovery-qcluster.log").start()
        moved_at = None
        while True:
            if moved_at is None:
                first = (
                    chunks.filter(submitted_at__gt=_aware(killed_at))
                    .order_by("submitted_at")
                    .values_list("submitted_at", flat=True)
                    .first()
                )
                if first is not None:
                    moved_at = first.timestamp()
                    print(f"[bench] moving again after {moved_at - killed_at:.1f} s", flush=True)
            execution.refresh_from_db()
            if execution.state in ("DONE", "FAILED", "CANCELLED"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still {execution.state} after the kill")
            time.sleep(0.05)
    finally:
        cluster.stop()
        if second is not None:
            second.stop()
    state = sandbox.execution(execution.assets_execution_id)
    objects = state["objects"]
    verified = {
        "sandbox_state": state["state"],
        "every_expected_object_present": set(objects) == expected_object_keys(args.records),
        "records_received": state["records_received"],
        "objects_received_more_than_once": sum(1 for n in objects.values() if n > 1),
        "completed_posts": state["completed_posts"],
    }
    verified["ok"] = (
        execution.state == "DONE"
        and state["state"] == "DONE"
        and verified["every_expected_object_present"]
        and state["completed_posts"] == 1
    )
    resent_pages = math.ceil(verified["objects_received_more_than_once"] / args.page_size)
    return {
        "time_to_done_p50_s": None,
        "time_to_done_p95_s": None,
        "recovery_s": moved_at - killed_at if moved_at else None,
        "cpu_ms_per_1000_records": None,
        "verified": verified["ok"],
        "recovery_done_s": execution.finished_at.timestamp() - killed_at,
        "killed_after_s": killed_at - t0,
        "chunks_at_kill": at_kill,
        "pages_resent_at_most": resent_pages,
        "time_to_done_s": execution.finished_at.timestamp() - t0,
        "checks": verified,
        "cluster_ready_s": ready_s,
    }


def _aware(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)
