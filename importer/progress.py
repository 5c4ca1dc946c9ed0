"""How far an execution has come, for the admin, its JSON endpoint and `run_import --wait`."""

from importer.models import Execution


def percent_done(execution: Execution) -> int:
    """Submitted pages against the pages known so far (100 once Assets has everything)."""
    if execution.state in (Execution.State.PROCESSING, Execution.State.DONE):
        return 100
    if execution.last_chunk_index is not None:
        total = execution.last_chunk_index + 1
    else:
        # Until the last page is seen, the total is at least one page beyond those fetched.
        total = execution.pages_fetched + 1
    return min(99, int(100 * execution.pages_submitted / max(total, 1)))


def seconds_left(execution: Execution, elapsed: float) -> float | None:
    """Estimated from the pace so far, once the number of pages is known."""
    if execution.last_chunk_index is None or not execution.pages_submitted:
        return None
    if execution.state not in (Execution.State.INGESTING, Execution.State.COMPLETING):
        return None
    remaining = execution.last_chunk_index + 1 - execution.pages_submitted
    return max(0.0, remaining * elapsed / execution.pages_submitted)


def progress_of(execution: Execution) -> dict:
    duration = execution.duration
    seconds = duration.total_seconds() if duration else 0.0
    left = seconds_left(execution, seconds)
    return {
        "id": execution.pk,
        "state": execution.state,
        "finished": execution.state in Execution.FINISHED_STATES,
        "percent": percent_done(execution),
        "pages_fetched": execution.pages_fetched,
        "pages_submitted": execution.pages_submitted,
        "pages_total": (
            execution.last_chunk_index + 1 if execution.last_chunk_index is not None else None
        ),
        "records_submitted": execution.records_submitted,
        "records_skipped": execution.records_skipped,
        "records_per_second": round(execution.records_submitted / seconds, 1) if seconds else None,
        "seconds_left": round(left) if left is not None else None,
        "stalled": execution.stalled_since is not None,
        "error": execution.error,
    }


def describe(progress: dict) -> str:
    """One line for people; static/importer/progress.js writes the same while polling."""
    parts = [f"{progress['percent']}%", progress["state"]]
    if progress["records_submitted"]:
        parts.append(f"{progress['records_submitted']} records")
    if progress["records_per_second"]:
        parts.append(f"{progress['records_per_second']} records/s")
    if progress["seconds_left"] is not None:
        parts.append(f"about {progress['seconds_left']} s left")
    if progress["stalled"]:
        parts.append("STALLED")
    return " · ".join(parts)
