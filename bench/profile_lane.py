"""Where a worker's CPU goes per chunk: one lane of an import, profiled in this process.

    .venv/bin/python bench/profile_lane.py --records 20000 --page-size 100 [--database-url ...]

The demo inventory and the Assets sandbox run on loopback without latency, the lane's
other lanes are never started (their chunks stay queued), and cProfile follows chunk 0's
lane to the source's end. Prints CPU per chunk and the functions that cost the most.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key")
    args = parser.parse_args()

    import bench.run as bench

    stamp = f"profile-{os.getpid()}"
    database_url, _ = bench.prepare_database(
        argparse.Namespace(database_url=args.database_url, database_name=bench.BENCH_DATABASE),
        stamp,
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

    from importer import services, work_queue
    from importer.models import ChunkJob, ImportSource

    call_command("migrate", verbosity=0)
    sandbox = bench.start_sandbox(0)
    inventory = bench.start_inventory(args.records, 0)
    held_back = []
    work_queue.enqueue_chunk = held_back.append
    work_queue.enqueue_completion_check = held_back.append
    try:
        source = ImportSource.objects.create(
            **bench.source_fields(
                sandbox=sandbox,
                inventory=inventory,
                page_size=args.page_size,
                workers=2,
                name="profile",
                import_source_id="profile",
            )
        )
        services.push_mapping(source=source)
        execution = services.start_import(source=source)
        first = ChunkJob.objects.select_related("execution__source").get(
            execution=execution, index=0
        )
        profile = cProfile.Profile()
        cpu, wall = time.process_time(), time.perf_counter()
        profile.runcall(services.process_chunk, chunk=first)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        chunks = execution.chunks.filter(state=ChunkJob.State.SUBMITTED).count()
        print(
            f"{chunks} chunks of {args.page_size} records in one lane: "
            f"{cpu / chunks * 1000:.1f} ms CPU and {wall / chunks * 1000:.1f} ms wall per chunk "
            "(this process: the worker and both loopback servers)"
        )
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    finally:
        sandbox.stop()
        inventory.stop()
        for leftover in bench.TMP.glob(f"{stamp}.sqlite3*"):
            leftover.unlink()


if __name__ == "__main__":
    main()
