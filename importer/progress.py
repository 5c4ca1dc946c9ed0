"""How far an execution has come, for the admin, its JSON endpoint and `run_import --wait`.

Progress is only claimed where it is known: records against the total when the source tells
it, else pages against the source's last page once that is known, else no percentage at all
(the admin then shows an indeterminate bar with the counts so far).
"""

from django.db.models import Count

from importer.models import ChunkJob, Execution

State = Execution.State
# An estimate of the time left is given only once this share of the work is done.
MIN_SHARE_FOR_ESTIMATE = 0.05


def told_total(execution: Execution) -> int | None:
    """The largest total the source told: one growing while it is read is not past 100 %."""
    return max(execution.records_total or 0, execution.records_total_largest or 0) or None


def _work(execution: Execution) -> tuple[str, int, int] | None:
    """(basis, done, total) of the work the source has told us about, or None. An import
    that failed or was cancelled counts what arrived: the records left out are not done."""
    total = told_total(execution)
    if total:
        done = execution.records_submitted
        if execution.state not in (State.FAILED, State.CANCELLED):
            done += execution.records_skipped
        return "records", done, total
    if execution.last_chunk_index is not None:
        return "pages", execution.pages_submitted, execution.last_chunk_index + 1
    return None


def percent_done(execution: Execution) -> int | None:
    """Done against the known total, 100 once Assets has everything; None when unknown."""
    if execution.state in (State.PROCESSING, State.DONE):
        return 100
    work = _work(execution)
    if work is None:
        return None
    _, done, total = work
    # 100 % is kept for "Assets has it all": the last page may still be on its way.
    return min(99, int(100 * done / max(total, 1)))


def seconds_left(execution: Execution, elapsed: float) -> int | None:
    """Estimated from the pace so far, once enough is done to tell; never 0 with work left."""
    if execution.state != State.INGESTING or not elapsed:
        return None
    work = _work(execution)
    if work is None:
        return None
    _, done, total = work
    remaining = total - done
    if remaining <= 0 or done < MIN_SHARE_FOR_ESTIMATE * total or not done:
        return None
    return max(1, round(remaining * elapsed / done))


def chunk_counts(execution: Execution) -> dict[str, int]:
    """Chunks of the execution by state (one grouped query on the chunk state index).

    Kept on the instance, so one page asks once however many of its fields show them.
    """
    if getattr(execution, "_chunk_counts", None) is None:
        rows = ChunkJob.objects.filter(execution=execution).values("state").order_by()
        counts = {state: 0 for state in ChunkJob.State.values}
        for row in rows.annotate(n=Count("id")):
            counts[row["state"]] = row["n"]
        execution._chunk_counts = counts
    return execution._chunk_counts


def settled(execution: Execution) -> bool:
    """Finished, with no page still running or queued: a lane sees a cancel only as it takes
    its next page, so an execution's page follows it until its pages have stopped too."""
    if execution.state not in Execution.FINISHED_STATES:
        return False
    counts = chunk_counts(execution)
    return not counts[ChunkJob.State.RUNNING] and not counts[ChunkJob.State.QUEUED]


def retry_text(retry: dict) -> str:
    """ "page 6 waits after attempt 2 (server_error)": a rate limit's wait uses no attempt."""
    if not retry["attempts"]:
        return f"page {retry['page']} waits ({retry['reason']})"
    return f"page {retry['page']} waits after attempt {retry['attempts']} ({retry['reason']})"


def retries_of(execution: Execution) -> list[dict]:
    """Pages waiting for another attempt: which, why, when (the soonest first, at most 5)."""
    waiting = (
        ChunkJob.objects.filter(
            execution=execution, state=ChunkJob.State.QUEUED, next_attempt_at__isnull=False
        )
        .exclude(last_error_kind="")
        .order_by("next_attempt_at")
        .values("index", "attempts", "last_error_kind", "next_attempt_at")[:5]
    )
    return [
        {
            "page": row["index"] + 1,
            "attempts": row["attempts"],
            "reason": row["last_error_kind"],
            "next_attempt_at": row["next_attempt_at"].isoformat(),
        }
        for row in waiting
    ]


def progress_of(execution: Execution) -> dict:
    duration = execution.duration
    seconds = duration.total_seconds() if duration else 0.0
    work = _work(execution)
    progress = {
        "id": execution.pk,
        "state": execution.state,
        "state_label": execution.get_state_display(),
        "finished": execution.state in Execution.FINISHED_STATES,
        "percent": percent_done(execution),
        "basis": work[0] if work else None,
        "pages_fetched": execution.pages_fetched,
        "pages_submitted": execution.pages_submitted,
        "pages_total": (
            execution.last_chunk_index + 1 if execution.last_chunk_index is not None else None
        ),
        "records_fetched": execution.records_fetched,
        "records_total": told_total(execution),
        "records_submitted": execution.records_submitted,
        "records_skipped": execution.records_skipped,
        "items_skipped": execution.items_skipped,
        "records_per_second": round(execution.records_submitted / seconds, 1) if seconds else None,
        "seconds_left": seconds_left(execution, seconds),
        # Stalled once, an import that ended is no longer stalled.
        "stalled": execution.stalled_since is not None
        and execution.state not in Execution.FINISHED_STATES,
        "error": execution.error,
    }
    return progress


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


def nested_items_left_out(count: int) -> str:
    """How the counts of an import name its nested items left out (a computer's disks, sent
    without them): the alerts, the command's summary."""
    return f"{count} nested item{'' if count == 1 else 's'} of records sent"


def describe(progress: dict) -> str:
    """One line for people: the execution page shows it, and its live view sends it to
    static/importer/progress.js while polling."""
    parts = [] if progress["percent"] is None else [f"{progress['percent']}%"]
    parts.append(progress.get("state_label") or progress["state"])
    submitted, total = progress["records_submitted"], progress["records_total"]
    if progress["basis"] == "records" and not progress["finished"]:
        parts.append(f"{submitted} of {_records(total)}")
    elif progress["basis"] == "pages" and not progress["finished"]:
        parts.append(
            f"{_records(submitted)}, page {progress['pages_submitted']} of "
            f"{progress['pages_total']}"
        )
    elif progress["percent"] is None and not progress["finished"]:
        parts.append(f"{_records(submitted)} so far, total not known yet")
    elif submitted:
        parts.append(_records(submitted))
    if progress["records_per_second"]:
        parts.append(f"{progress['records_per_second']} records/s")
    if progress["seconds_left"] is not None:
        parts.append(f"about {_duration(progress['seconds_left'])} left")
    if progress["stalled"]:
        parts.append("STALLED")
    return " · ".join(parts)
