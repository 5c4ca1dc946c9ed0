"""The benchmark's floor: the import's own HTTP calls and transform, and nothing else.

`workers` processes each read one lane of pages (k, k + workers, ...) with the app's source
reader, transform and Assets client, the way a lane does: the next page is asked for as soon
as this one is in, and each page is submitted while the lane goes on, two at a time. There
is no database, no queue, no claim, no lease and no bookkeeping; the processes are started
before the clock starts, as the cluster's workers are. Once every lane has ended, this
process posts "completed" and reads the status until Assets says DONE.

What this takes is what the loopback servers, HTTP over loopback (requests on our side,
http.server on theirs) and the two cores cost on their own: the ideal pipeline counts only
the servers' latency. So `ratio_to_floor` (floor seconds / app seconds) says how much of the
distance to the ideal is the app's own work, and `floor.ratio_to_ideal` how much no app
using these libraries could make up on this machine.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

SUBMITS_IN_FLIGHT = 2  # as a lane (importer/services/lane_state.py)


def run(args, sandbox, inventory, pages: int, source_fields, verify) -> dict:
    """Time the bare pipeline once; `source_fields` and `verify` are bench/run.py's."""
    from importer.assets import AssetsClient
    from importer.models import ImportSource

    source = ImportSource(
        **source_fields(
            sandbox=sandbox,
            inventory=inventory,
            page_size=args.page_size,
            workers=args.workers,
            name="bench-floor",
            import_source_id="bench-floor",
        )
    )
    client = AssetsClient.for_source(source)
    client.put_mapping(source.mapping)
    context = multiprocessing.get_context("fork")
    go = context.Event()
    execution_ids = context.Queue()
    ended = context.Queue()
    lanes = [
        context.Process(target=_lane, args=(source, lane, args.workers, go, execution_ids, ended))
        for lane in range(args.workers)
    ]
    for process in lanes:
        process.start()
    try:
        start = time.perf_counter()
        execution_id = client.start_execution().execution_id
        for _ in lanes:
            execution_ids.put(execution_id)
        go.set()
        lane_seconds = sorted(ended.get(timeout=args.timeout) - start for _ in lanes)
        client.mark_completed(execution_id)
        while client.get_execution_status(execution_id).status != "DONE":
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    finally:
        for process in lanes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    ideal_s = pages * max(args.fetch_latency, args.submit_latency) / args.workers
    return {
        "seconds": seconds,
        "ratio_to_ideal": ideal_s / seconds,
        "lanes_ended_s": lane_seconds,
        "verified": verify(sandbox, execution_id, args.records, pages),
    }


def _lane(source, lane: int, lanes: int, go, execution_ids, ended) -> None:
    """One lane, to the source's end (a short or empty page), in a process of its own."""
    from importer.assets import AssetsClient
    from importer.mapping import transform_records
    from importer.sources import build_source, cursor_for
    from importer.spawn import SWITCH_INTERVAL_S

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as a cluster's worker (importer/spawn.py)

    reader = build_source(source)
    clients = [AssetsClient.for_source(source) for _ in range(SUBMITS_IN_FLIGHT)]
    threads = ThreadPoolExecutor(max_workers=1 + SUBMITS_IN_FLIGHT)
    execution_id = execution_ids.get()
    go.wait()
    index = lane
    next_page = threads.submit(reader.fetch_page, cursor_for(source, index))
    submitting: deque = deque()
    while next_page is not None:
        page = next_page.result()
        index += lanes
        next_page = None
        if page.next_cursor is not None:
            next_page = threads.submit(reader.fetch_page, cursor_for(source, index))
        if not page.records:
            continue
        result = transform_records(page.records, source.mapping, missing_identity="skip")
        if len(submitting) >= SUBMITS_IN_FLIGHT:
            submitting.popleft()[0].result()
        client = next(c for c in clients if all(c is not s[1] for s in submitting))
        submitting.append((threads.submit(client.submit_chunk, execution_id, result.data), client))
    for answer, _ in submitting:
        answer.result()
    ended.put(time.perf_counter())
