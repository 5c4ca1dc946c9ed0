"""The import flow: start an execution, process its chunks, complete, fail or cancel it.

Every state change is a conditional UPDATE (`filter(state=...).update(...)`), so two workers
that race on the same row cannot both win: a chunk task delivered twice, or a completion check
running beside the last chunk, finds the row already moved on and does nothing.
"""

from __future__ import annotations

import calendar
import logging
import os
import random
import re
import socket
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from importer import background, work_queue
from importer.assets import (
    AssetsClient,
    AssetsError,
    AssetsNotFound,
    AssetsRateLimited,
    AssetsServerError,
    schedule_body,
    truncate_reason,
)
from importer.mapping import (
    MissingIdentityError,
    TransformResult,
    diff_documents,
    draft_mapping,
    transform_records,
    validate_document,
)
from importer.models import ChunkJob, Execution, ImportSource, Schedule, new_webtrigger_token
from importer.sources import Page, SourceError, build_source

logger = logging.getLogger(__name__)

State = Execution.State
ChunkState = ChunkJob.State
# A chunk that finds its source at its limit of running chunks asks again after this.
SOURCE_BUSY_RETRY_SECONDS = 1.0
MAX_RETRY_WAIT_SECONDS = 15 * 60
FINAL_STATUSES = {
    "DONE": State.DONE,
    "COMPLETED": State.DONE,
    "FINISHED": State.DONE,
    "SUCCESS": State.DONE,
    "FAILED": State.FAILED,
    "ERROR": State.FAILED,
    "CANCELLED": State.CANCELLED,
    "CANCELED": State.CANCELLED,
}


class ImportRefused(Exception):
    """An import could not start; the message tells the user why and what to do."""


class ImportAlreadyRunning(ImportRefused):
    """The source already has an open execution."""


class MappingInvalid(Exception):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("The mapping is not valid: " + "; ".join(str(p) for p in problems))


# --- secrets -------------------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def scrub_secrets(text: str, source: ImportSource | None = None) -> str:
    """Remove the source's secrets, credentials in URLs and bearer tokens from a message."""
    if source is not None:
        for secret in (source.assets_token, source.source_token, source.webtrigger_token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub("***@", text)
    return _BEARER.sub(r"\1***", text)


# --- mapping -------------------------------------------------------------------------------


def push_mapping(*, source: ImportSource) -> ImportSource:
    """Validate the mapping locally, then send it to Assets (PUT replaces it whole)."""
    if not source.mapping:
        raise MappingInvalid(["$: the source has no mapping yet"])
    problems = validate_document(source.mapping)
    if problems:
        raise MappingInvalid(problems)
    AssetsClient.for_source(source).put_mapping(source.mapping)
    source.mapping_pushed_at = timezone.now()
    source.save(update_fields=["mapping_pushed_at", "updated_at"])
    return source


@dataclass
class Preview:
    """What an import would send for the first page, without starting one."""

    records_fetched: int = 0
    has_more: bool = False
    data: dict[str, list[dict]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    error: str = ""


def preview_import(*, source: ImportSource, limit: int = 20) -> Preview:
    """Fetch and transform the first page; nothing is sent to Assets."""
    try:
        page = build_source(source).fetch_page("")
    except SourceError as error:
        return Preview(error=scrub_secrets(error.message, source))
    if not source.mapping:
        return Preview(records_fetched=len(page.records), error="The source has no mapping yet.")
    try:
        result = transform_records(page.records, source.mapping)
    except ValueError as error:  # a mapping transform cannot use
        return Preview(records_fetched=len(page.records), error=str(error))
    return Preview(
        records_fetched=len(page.records),
        has_more=page.next_cursor is not None,
        data={selector: rows[:limit] for selector, rows in result.data.items()},
        skipped=result.skipped,
    )


def draft_mapping_from_source(*, source: ImportSource) -> dict:
    """A schema and mapping inferred from the first page, for staff to edit."""
    try:
        page = build_source(source).fetch_page("")
    except SourceError as error:
        raise MappingInvalid([scrub_secrets(error.message, source)]) from None
    if not page.records:
        raise MappingInvalid(["the source's first page has no records to learn from"])
    selector = (source.records_path.rsplit(".", 1)[-1] or "records").replace("-", "_")
    return draft_mapping(
        page.records, name=source.name.replace("-", " ").title(), selector=selector
    )


def pull_mapping(*, source: ImportSource) -> tuple[dict, list[str]]:
    """The document Assets holds, and how the local one differs from it."""
    remote = AssetsClient.for_source(source).get_mapping()
    return remote, diff_documents(source.mapping or {}, remote)


def replace_mapping(*, source: ImportSource, document: dict, pushed: bool) -> ImportSource:
    """Take `document` as the source's mapping (`pushed`: it is what Assets holds)."""
    source.mapping = document
    source.mapping_pushed_at = timezone.now() if pushed else None
    source.save(update_fields=["mapping", "mapping_pushed_at", "updated_at"])
    return source


# --- start ---------------------------------------------------------------------------------


def start_import(
    *, source: ImportSource, user=None, trigger: str = Execution.Trigger.MANUAL
) -> Execution:
    """Create the execution in Assets and queue the first chunk.

    The local row is created first, in PENDING: the one-open-execution-per-source
    constraint then lets only one of two simultaneous starts go on to Assets.
    """
    if not source.enabled:
        raise ImportRefused(f"Source '{source}' is disabled: enable it to import.")
    if not source.mapping:
        raise ImportRefused(f"Source '{source}' has no mapping: add one and push it to Assets.")
    problems = validate_document(source.mapping)
    if problems:
        raise ImportRefused(f"The mapping of '{source}' is not valid: {problems[0]}")
    try:
        with transaction.atomic():
            execution = Execution.objects.create(source=source, trigger=trigger, triggered_by=user)
    except IntegrityError:
        raise ImportAlreadyRunning(
            f"An import of '{source}' is already running: wait for it to finish or cancel it."
        ) from None

    try:
        client = AssetsClient.for_source(source)
        started = call_with_retries(
            lambda: client.start_execution(scheduled=trigger == Execution.Trigger.SCHEDULE)
        )
    except AssetsError as error:
        reason = scrub_secrets(error.message, source)
        Execution.objects.filter(pk=execution.pk).update(
            updated_at=timezone.now(), state=State.REFUSED, error=reason, finished_at=timezone.now()
        )
        raise ImportRefused(reason) from None

    # From here on the execution exists in Assets: any failure is reported to its history.
    Execution.objects.filter(pk=execution.pk).update(assets_execution_id=started.execution_id)
    execution.assets_execution_id = started.execution_id
    try:
        with transaction.atomic():
            Execution.objects.filter(pk=execution.pk).update(
                updated_at=timezone.now(), state=State.INGESTING, started_at=timezone.now()
            )
            for chunk in _first_chunks(execution):
                transaction.on_commit(lambda chunk_id=chunk.pk: work_queue.enqueue_chunk(chunk_id))
    except Exception as error:
        logger.exception("execution %s: could not queue its first chunk", execution.pk)
        fail_execution(execution=execution, reason=f"The import could not start: {error}")
        raise ImportRefused(f"The import could not start: {error}") from None
    execution.refresh_from_db()
    return execution


def _first_chunks(execution: Execution) -> list[ChunkJob]:
    """The first page, or, when the paging style says where pages start, one page per lane."""
    source = execution.source
    one_lane_per_page = runs_lanes(source) and predicted_cursor(source, 1) is not None
    width = min(pipeline_parallelism(source), settings.IMPORT_MAX_PAGES) if one_lane_per_page else 1
    return ChunkJob.objects.bulk_create(
        ChunkJob(execution=execution, index=index, cursor=predicted_cursor(source, index) or "")
        for index in range(width)
    )


# --- chunks --------------------------------------------------------------------------------


def _this_worker() -> str:
    """host:pid, shown on each chunk (and read by the benchmark per worker process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_chunk(chunk: ChunkJob) -> bool:
    """Take the chunk for this worker: QUEUED, or RUNNING under a lease that has expired.

    The UPDATE also requires the attempt count read with the row, so of two workers holding
    the same row only one can move it on; the winner's copy is then brought up to date here.
    """
    now = timezone.now()
    claimable = Q(state=ChunkState.QUEUED) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    claimable |= Q(state=ChunkState.RUNNING, lease_expires_at__lt=now)
    lease_expires_at = now + timedelta(seconds=settings.CHUNK_LEASE_SECONDS)
    claimed = ChunkJob.objects.filter(claimable, pk=chunk.pk, attempts=chunk.attempts).update(
        updated_at=timezone.now(),
        state=ChunkState.RUNNING,
        attempts=F("attempts") + 1,
        lease_expires_at=lease_expires_at,
        next_attempt_at=None,
        started_at=now,
        worker=_this_worker(),
    )
    if claimed:
        chunk.state = ChunkState.RUNNING
        chunk.attempts += 1
        chunk.lease_expires_at = lease_expires_at
        chunk.next_attempt_at = None
        chunk.started_at = now
    return bool(claimed)


def _source_is_full(chunk: ChunkJob) -> bool:
    """Whether the source already has as many chunks running as it allows.

    The source's row is locked while counting (PostgreSQL; SQLite's IMMEDIATE transactions
    serialize writers anyway), so two workers cannot both take the last free place.
    """
    source = chunk.execution.source
    with transaction.atomic():
        ImportSource.objects.select_for_update().filter(pk=source.pk).values_list("pk").first()
        running = ChunkJob.objects.filter(
            execution__source=source,
            state=ChunkState.RUNNING,
            lease_expires_at__gte=timezone.now(),
        ).count()
        if running >= max(1, source.max_chunks_in_flight):
            return True
        return not _claim_chunk(chunk)


def predicted_cursor(source: ImportSource, index: int) -> str | None:
    """Where page `index` starts, when the paging style says so without reading the pages."""
    if source.source_kind != ImportSource.Kind.REST:
        return None
    if source.pagination == ImportSource.Pagination.OFFSET:
        return str(index * source.page_size) if index else ""
    if source.pagination == ImportSource.Pagination.PAGE:
        return str(source.first_page + index) if index else ""
    return None


def pipeline_parallelism(source: ImportSource) -> int:
    """Chunks of one source that can run at once.

    Offset and page-number sources fan out up to the source's limit of chunks in flight;
    sources that learn where the next page starts only from the current one (cursors, next
    links, files) run a pipeline of two: one page submitted while the next is fetched.
    """
    if predicted_cursor(source, 1) is not None:
        return max(1, source.max_chunks_in_flight)
    return 2


def _request_slot_delay(source: ImportSource) -> float:
    """Reserve the next request slot under the source's rate limit; seconds until it comes.

    A slot further away than a worker should sleep is not reserved: the chunk is rescheduled
    to that time and asks again then.
    """
    if not source.max_requests_per_minute:
        return 0.0
    interval = timedelta(seconds=60 / source.max_requests_per_minute)
    with transaction.atomic():
        locked = ImportSource.objects.select_for_update().filter(pk=source.pk)
        next_free = locked.values_list("next_request_at", flat=True).first()
        now = timezone.now()
        slot = max(now, next_free or now)
        delay = (slot - now).total_seconds()
        if delay <= settings.CHUNK_RETRY_INLINE_MAX_SECONDS:
            locked.update(next_request_at=slot + interval)
        return delay


def _may_submit(chunk: ChunkJob) -> str:
    """Why this chunk must not submit now ("" when it may).

    Our lease must hold, the execution must still take data (it may have been cancelled),
    and the page must not lie beyond the source's end, found meanwhile by another chunk.
    """
    found = (
        ChunkJob.objects.filter(pk=chunk.pk)
        .values_list("state", "attempts", "execution__state", "execution__last_chunk_index")
        .first()
    )
    state, attempts, execution_state, last_index = found
    if state != ChunkState.RUNNING or attempts != chunk.attempts:
        return "taken over"
    if execution_state != State.INGESTING:
        return "stopped"
    if last_index is not None and chunk.index > last_index:
        return "beyond the end"
    return ""


def process_chunk(*, chunk: ChunkJob) -> ChunkJob:
    """Run this chunk, then go on along its lane while CHUNK_LANE_SECONDS last.

    A lane is the run of pages one task takes in turn: the next page of a cursor source,
    the page `chunks in flight` further on for an offset source. Its HTTP calls run in the
    worker's background threads: the lane's next page is claimed and fetched as soon as this
    page says where it starts, and each page is submitted while the lane goes on with the
    next, so the source, Assets and this worker's own work overlap and no page waits for the
    queue. A page is marked submitted only once Assets accepted it. A chunk delivered twice is
    claimed only once.
    """
    source = chunk.execution.source
    # The pipeline keeps at most max(2, chunks in flight) chunks going by itself; only a
    # limit of one chunk at a time needs counting.
    if source.max_chunks_in_flight < 2:
        if _source_is_full(chunk):
            work_queue.enqueue_chunk_after(chunk.pk, SOURCE_BUSY_RETRY_SECONDS)
            return chunk
    elif not _claim_chunk(chunk):
        return chunk
    if chunk.execution.state != State.INGESTING:
        _stop_chunk(chunk)
        return chunk

    lane = Lane(source)
    current, page_ahead = chunk, None
    try:
        while current is not None:
            current, page_ahead = _run_claimed_chunk(current, page_ahead, lane)
    finally:
        lane.close()
    return chunk


def runs_lanes(source: ImportSource) -> bool:
    """Whether chunk tasks of this source go on along lanes (see `process_chunk`).

    Not under our own rate limit, which spaces requests out (a lane would only wait for its
    slots), nor with one chunk at a time, which is counted per task.
    """
    return (
        settings.CHUNK_LANE_SECONDS > 0
        and source.max_chunks_in_flight >= 2
        and not source.max_requests_per_minute
    )


@dataclass
class _PageInFlight:
    chunk: ChunkJob
    result: TransformResult
    answer: Future
    client: AssetsClient  # one submit at a time per client: a Session is not shared by threads


class Lane:
    """What one chunk task keeps from page to page: its connections, the page being fetched
    ahead and the pages being submitted."""

    # Pages of one lane in flight to Assets at once. Two let a page go as soon as it is
    # ready rather than when the one before has arrived, so the lane keeps the source's pace.
    SUBMITS_IN_FLIGHT = 2

    def __init__(self, source: ImportSource):
        self.deadline = time.monotonic() + settings.CHUNK_LANE_SECONDS
        self.enabled = runs_lanes(source)
        self.fetcher = build_source(source)
        self.idle_clients = [AssetsClient.for_source(source)]
        self.submitting: deque[_PageInFlight] = deque()
        self.next_chunk: ChunkJob | None = None
        self.next_page: Future | None = None

    def takes_next(self) -> bool:
        return self.enabled and time.monotonic() < self.deadline

    def hold_next(self, chunk: ChunkJob, page: Future | None) -> None:
        self.next_chunk, self.next_page = chunk, page

    def take_next(self) -> tuple[ChunkJob | None, Future | None]:
        taken = (self.next_chunk, self.next_page)
        self.next_chunk = self.next_page = None
        return taken

    def submit_behind(self, chunk: ChunkJob, result: TransformResult) -> None:
        """Send the page to Assets in the background (first waiting for the oldest page in
        flight and recording it, when SUBMITS_IN_FLIGHT are out)."""
        if len(self.submitting) >= self.SUBMITS_IN_FLIGHT:
            self._record_oldest()
        execution = chunk.execution
        if self.idle_clients:
            client = self.idle_clients.pop()
        else:
            client = AssetsClient.for_source(execution.source)
        answer = background.run(client.submit_chunk, execution.assets_execution_id, result.data)
        self.submitting.append(_PageInFlight(chunk, result, answer, client))

    def record_arrived(self) -> None:
        """Record the pages whose submit has arrived, without waiting for the others."""
        while self.submitting and self.submitting[0].answer.done():
            self._record_oldest()

    def _record_oldest(self) -> None:
        page = self.submitting.popleft()
        try:
            _record_submit(page.chunk, page.result, page.answer)
        finally:
            self.idle_clients.append(page.client)

    def close(self) -> None:
        """Record the pages in flight; a page claimed ahead but not started goes back to the
        queue (only an unexpected error leaves one)."""
        try:
            while self.submitting:
                self._record_oldest()
        finally:
            if self.next_chunk is not None:
                _release_chunk(self.next_chunk)
                self.next_chunk = self.next_page = None


def _record_submit(chunk: ChunkJob, result: TransformResult, answer: Future) -> None:
    """Mark the chunk submitted once Assets accepted it; retry it later if Assets refused,
    unless the import was cancelled or failed meanwhile (then Assets had reason to refuse)."""
    try:
        answer.result()
    except AssetsError as error:
        if Execution.objects.filter(pk=chunk.execution_id, state=State.INGESTING).exists():
            _chunk_error(chunk, error)
        else:
            _stop_chunk(chunk)
        return
    _mark_submitted(chunk, result.record_count, result.skipped)


def _run_claimed_chunk(
    chunk: ChunkJob, page_ahead: Future | None, lane: Lane
) -> tuple[ChunkJob | None, Future | None]:
    """Take this page, start fetching the lane's next, then submit this one.

    Returns the lane's next chunk, already claimed, with its page being fetched; or Nones
    when the lane ends here. A failure of this chunk does not end a lane that already holds
    its next page: the chunk is retried on its own.
    """
    try:
        page = page_ahead.result() if page_ahead else _fetch_page(chunk, lane)
    except SourceError as error:
        _chunk_error(chunk, error)
        return None, None
    if page is None:
        return None, None

    # The next page's fetch starts before it is claimed, so the claim's database work does
    # not delay it; if another worker holds that page already, the copy is dropped.
    keep_next = lane.takes_next()
    next_cursor = _lane_next_cursor(chunk, page) if keep_next else None
    next_page = background.run(lane.fetcher.fetch_page, next_cursor) if next_cursor else None
    # Now that the source is busy again, the pages Assets has taken meanwhile are recorded.
    lane.record_arrived()
    problem, lane_next = _queue_next_chunks(
        chunk,
        page.next_cursor,
        len(page.records),
        lanes=lane.enabled,
        keep_next=keep_next,
        records_total=page.total,
    )
    if problem:
        _chunk_failed(chunk, problem, permanent=True, kind="endless_source")
        return None, None
    if lane_next is not None:
        lane.hold_next(lane_next, next_page if lane_next.cursor == next_cursor else None)
    result = _transform(chunk, page)
    if result is not None and not _submit(chunk, result, lane):
        # The execution no longer takes data: neither does the page this lane holds.
        next_chunk, _ = lane.take_next()
        if next_chunk is not None:
            _stop_chunk(next_chunk)
        return None, None
    return lane.take_next()


def _lane_next_cursor(chunk: ChunkJob, page: Page) -> str | None:
    """Where the lane's next page starts (None: the source ends with this page)."""
    if page.next_cursor is None:
        return None
    source = chunk.execution.source
    if predicted_cursor(source, chunk.index + 1) is None:
        return page.next_cursor
    index = chunk.index + pipeline_parallelism(source)
    return predicted_cursor(source, index) if index < settings.IMPORT_MAX_PAGES else None


def _fetch_page(chunk: ChunkJob, lane: Lane) -> Page | None:
    """Fetch the chunk's page now, after our own rate limit; None if it must wait longer."""
    delay = _request_slot_delay(chunk.execution.source)
    if delay > settings.CHUNK_RETRY_INLINE_MAX_SECONDS:
        _chunk_postponed(chunk, delay, reason="rate_limited_by_us")
        return None
    if delay:
        time.sleep(delay)
    return lane.fetcher.fetch_page(chunk.cursor)


def _transform(chunk: ChunkJob, page: Page) -> TransformResult | None:
    """The page as Assets data; None when a record cannot be used (the chunk then failed)."""
    source = chunk.execution.source
    try:
        return transform_records(
            page.records, source.mapping, missing_identity=source.missing_identity
        )
    except MissingIdentityError as error:
        _chunk_failed(chunk, str(error), permanent=True, kind="missing_identity")
        return None


def _submit(chunk: ChunkJob, result: TransformResult, lane: Lane) -> bool:
    """Send the page (or mark it done); False when the execution no longer takes data."""
    refusal = _may_submit(chunk)  # right before the page goes
    if refusal == "beyond the end":
        _mark_submitted(chunk, 0, [], state=ChunkState.SKIPPED)
    elif refusal == "taken over":
        pass  # our lease ran out and another worker has the page now: it is theirs
    elif refusal:
        _stop_chunk(chunk)
        return False
    elif not result.record_count:
        _mark_submitted(chunk, 0, result.skipped)
    else:
        lane.submit_behind(chunk, result)
    return True


def _claimed_fields() -> dict:
    """The fields of a chunk created already claimed by this worker (a lane's next page)."""
    now = timezone.now()
    return {
        "state": ChunkState.RUNNING,
        "attempts": 1,
        "lease_expires_at": now + timedelta(seconds=settings.CHUNK_LEASE_SECONDS),
        "started_at": now,
        "worker": _this_worker(),
    }


def _release_chunk(chunk: ChunkJob) -> None:
    """Give a claimed chunk back to the queue without counting an attempt."""
    released = ChunkJob.objects.filter(
        pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts
    ).update(
        updated_at=timezone.now(),
        state=ChunkState.QUEUED,
        attempts=F("attempts") - 1,
        lease_expires_at=None,
    )
    if released:
        work_queue.enqueue_chunk(chunk.pk)


def _queue_next_chunks(
    chunk: ChunkJob,
    next_cursor: str | None,
    record_count: int,
    *,
    lanes: bool,
    keep_next: bool,
    records_total: int | None = None,
) -> tuple[str, ChunkJob | None]:
    """Record the fetched page and queue what follows.

    Returns what is wrong (or "") and, when `keep_next`, the lane's next chunk: created
    claimed by this worker rather than queued.

    A page without a next one marks the source's end: this page when it held records, the
    one before when it came back empty (a fanned-out chunk may look past the end).
    """
    execution = chunk.execution
    source = execution.source
    with transaction.atomic():
        ingesting = Execution.objects.filter(pk=execution.pk, state=State.INGESTING).update(
            updated_at=timezone.now(),
            pages_fetched=F("pages_fetched") + 1,
            records_fetched=F("records_fetched") + record_count,
            **({"records_total": records_total} if records_total is not None else {}),
        )
        if not ingesting:
            return "", None  # cancelled or failed meanwhile: nothing more to queue
        if next_cursor is None:
            last = chunk.index if record_count or not chunk.index else chunk.index - 1
            Execution.objects.filter(pk=execution.pk).filter(
                Q(last_chunk_index__isnull=True) | Q(last_chunk_index__gt=last)
            ).update(last_chunk_index=last)
            return "", None
        if chunk.index + 1 >= settings.IMPORT_MAX_PAGES:
            return (
                f"the source still had more after {settings.IMPORT_MAX_PAGES} pages "
                "(IMPORT_MAX_PAGES): check its paging settings or raise the limit"
            ), None
        if predicted_cursor(source, chunk.index + 1) is not None:
            return "", _fan_out(chunk, lanes=lanes, keep_next=keep_next)
        seen = dict(
            ChunkJob.objects.filter(execution=execution)
            .filter(Q(cursor=next_cursor) | Q(index=chunk.index + 1))
            .values_list("index", "cursor")
        )
        if chunk.index + 1 in seen:
            return "", None  # this page was fetched before, by an attempt that did not finish
        if seen or next_cursor == chunk.cursor:
            return (
                f"the source pointed back to a page it already gave ({next_cursor[:100]}): "
                "it would never end, so the import stopped"
            ), None
        next_chunk = ChunkJob.objects.create(
            execution=execution,
            index=chunk.index + 1,
            cursor=next_cursor,
            **(_claimed_fields() if keep_next else {}),
        )
        if keep_next:
            return "", next_chunk
        transaction.on_commit(lambda: work_queue.enqueue_chunk(next_chunk.pk))
    return "", None


def _fan_out(chunk: ChunkJob, *, lanes: bool, keep_next: bool) -> ChunkJob | None:
    """Create the pages ahead of this one; return the lane's next if this worker keeps it.

    With lanes, the first chunk opens one lane per chunk in flight (pages 1 to width - 1 are
    queued, page `width` is its own next), and every later chunk adds only its lane's next
    page, `width` ahead. Without, this chunk plus the ones ahead make up the chunks in flight
    (always at least the next).
    """
    source = chunk.execution.source
    width = pipeline_parallelism(source)
    if lanes:
        lane_index = chunk.index + width
        ahead = range(chunk.index + 1, lane_index + 1) if chunk.index == 0 else [lane_index]
    else:
        lane_index = None
        ahead = range(chunk.index + 1, chunk.index + max(1, width - 1) + 1)
    ahead = [index for index in ahead if index < settings.IMPORT_MAX_PAGES]
    existing = set(
        ChunkJob.objects.filter(execution=chunk.execution, index__in=ahead).values_list(
            "index", flat=True
        )
    )
    claimed = _claimed_fields() if keep_next else {}
    created = ChunkJob.objects.bulk_create(
        [
            ChunkJob(
                execution=chunk.execution,
                index=index,
                cursor=predicted_cursor(source, index),
                **(claimed if index == lane_index else {}),
            )
            for index in ahead
            if index not in existing
        ]
    )
    lane_next = None
    for new_chunk in created:
        if keep_next and new_chunk.index == lane_index:
            lane_next = new_chunk
        else:
            transaction.on_commit(lambda chunk_id=new_chunk.pk: work_queue.enqueue_chunk(chunk_id))
    return lane_next


def _mark_submitted(
    chunk: ChunkJob, record_count: int, skipped: list[str], state: str = ChunkState.SUBMITTED
) -> None:
    with transaction.atomic():
        updated = ChunkJob.objects.filter(
            pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts
        ).update(
            updated_at=timezone.now(),
            state=state,
            record_count=record_count,
            skipped_count=len(skipped),
            error="\n".join(skipped[:50]),
            lease_expires_at=None,
            submitted_at=timezone.now(),
        )
        if not updated:
            return
        if state == ChunkState.SUBMITTED:
            Execution.objects.filter(pk=chunk.execution_id).update(
                updated_at=timezone.now(),
                stalled_since=None,
                pages_submitted=F("pages_submitted") + 1,
                records_submitted=F("records_submitted") + record_count,
                records_skipped=F("records_skipped") + len(skipped),
            )
        # Until the source's end is known, a completion check would find nothing to do
        # (unless a page fetched ahead failed: then the last chunk to finish decides).
        if Execution.objects.filter(
            Q(last_chunk_index__isnull=False) | Q(chunks__state=ChunkState.FAILED),
            pk=chunk.execution_id,
        ).exists():
            transaction.on_commit(lambda: work_queue.enqueue_completion_check(chunk.execution_id))


def _stop_chunk(chunk: ChunkJob) -> None:
    """The execution no longer takes data: a page past the source's end was never needed."""
    last = (
        Execution.objects.filter(pk=chunk.execution_id)
        .values_list("last_chunk_index", flat=True)
        .first()
    )
    beyond_the_end = last is not None and chunk.index > last
    ChunkJob.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts).update(
        updated_at=timezone.now(),
        state=ChunkState.SKIPPED if beyond_the_end else ChunkState.CANCELLED,
        lease_expires_at=None,
    )


def call_with_retries(call, *, attempts: int = 3, max_wait: float = 5.0):
    """Call Assets, retrying briefly when it answered that it could not do it now.

    Only answers that say nothing was done (429, 5xx) are retried: after a timeout the call
    may have succeeded, and repeating "start an execution" would then conflict with it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (AssetsRateLimited, AssetsServerError) as error:
            if attempt == attempts:
                raise
            time.sleep(min(retry_delay(attempt, error.retry_after), max_wait))


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (base x 2^attempt + jitter); Retry-After wins if given."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_WAIT_SECONDS)
    return min(2.0 * 2 ** (attempt - 1) + random.uniform(0, 1.0), MAX_RETRY_WAIT_SECONDS)


def _chunk_postponed(chunk: ChunkJob, delay: float, *, reason: str) -> ChunkJob:
    """Put the chunk back for later without counting an attempt (our own rate limit)."""
    ChunkJob.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts).update(
        updated_at=timezone.now(),
        state=ChunkState.QUEUED,
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error_kind=reason,
    )
    work_queue.enqueue_chunk_after(chunk.pk, delay)
    return chunk


def _chunk_error(chunk: ChunkJob, error: SourceError | AssetsError) -> ChunkJob:
    """A typed error of the source or of Assets: its type says whether to retry.

    A plain 500 is retried unless RETRY_HTTP_500 is off (some servers answer 500 for bad
    input, which no retry mends); 502/503/504, 429, timeouts and lost connections always are.
    """
    permanent = error.permanent or (error.status == 500 and not settings.RETRY_HTTP_500)
    return _chunk_failed(
        chunk, error.message, permanent=permanent, retry_after=error.retry_after, kind=error.kind
    )


def _chunk_failed(
    chunk: ChunkJob,
    message: str,
    *,
    permanent: bool,
    kind: str,
    retry_after: float | None = None,
) -> ChunkJob:
    """Retry a transient failure later; a permanent one fails the chunk (and the execution)."""
    source = chunk.execution.source
    message = scrub_secrets(message, source)
    now = timezone.now()
    if not permanent and chunk.attempts < settings.CHUNK_MAX_ATTEMPTS:
        delay = retry_delay(chunk.attempts, retry_after)
        ChunkJob.objects.filter(
            pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts
        ).update(
            updated_at=timezone.now(),
            state=ChunkState.QUEUED,
            lease_expires_at=None,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error_kind=kind,
            # The page shows the next attempt's time beside it, and drops it on a cancel.
            error=f"attempt {chunk.attempts} failed: {message}",
        )
        Execution.objects.filter(pk=chunk.execution_id).update(updated_at=now)
        logger.warning("chunk %s: %s; retry in %.1f s", chunk.pk, message, delay)
        work_queue.enqueue_chunk_after(chunk.pk, delay)
        return chunk
    if not permanent:
        message = f"{message} (gave up after {chunk.attempts} attempts)"
    ChunkJob.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING).update(
        updated_at=timezone.now(),
        state=ChunkState.FAILED,
        lease_expires_at=None,
        last_error_kind=kind,
        error=message,
    )
    reason = f"Chunk {chunk.index + 1} failed: {message}"
    if kind != "endless_source" and predicted_cursor(source, chunk.index) and chunk.index > 0:
        # A page fetched ahead may lie past the source's end, and some APIs answer such a
        # page with an error. The completion check decides once the end is known.
        Execution.objects.filter(pk=chunk.execution_id).update(updated_at=now)
        work_queue.enqueue_completion_check(chunk.execution_id)
        return chunk
    grace = settings.FAILED_CHUNK_GRACE_SECONDS
    if grace:
        # Operators may retry the chunk within the grace period; after it the check fails
        # the execution.
        Execution.objects.filter(pk=chunk.execution_id).update(error=reason, updated_at=now)
        work_queue.enqueue_completion_check_after(chunk.execution_id, grace)
        return chunk
    fail_execution(execution=chunk.execution, reason=reason)
    return chunk


def retry_failed_chunks(*, execution: Execution) -> int:
    """Queue the failed chunks of an execution that still takes data; how many were queued."""
    if execution.state != State.INGESTING:
        return 0
    chunk_ids = list(execution.chunks.filter(state=ChunkState.FAILED).values_list("pk", flat=True))
    ChunkJob.objects.filter(pk__in=chunk_ids, state=ChunkState.FAILED).update(
        updated_at=timezone.now(),
        state=ChunkState.QUEUED,
        attempts=0,
        next_attempt_at=None,
        error="retried by an operator",
    )
    Execution.objects.filter(pk=execution.pk).update(error="", updated_at=timezone.now())
    for chunk_id in chunk_ids:
        transaction.on_commit(lambda chunk_id=chunk_id: work_queue.enqueue_chunk(chunk_id))
    return len(chunk_ids)


# --- completion ----------------------------------------------------------------------------


def check_completion(*, execution: Execution) -> Execution:
    """Post {"completed": true} once every chunk is submitted; otherwise look again later."""
    execution.refresh_from_db()
    if execution.state != State.INGESTING:
        return execution
    if execution.last_chunk_index is None:
        # Pages are still being discovered and the last one calls again, unless a failed
        # page left nothing running that could still find the end.
        unfinished = execution.chunks.filter(state__in=[ChunkState.QUEUED, ChunkState.RUNNING])
        if execution.chunks.filter(state=ChunkState.FAILED).exists() and not unfinished.exists():
            return _fail_after_grace(execution)
        return execution
    ChunkJob.objects.filter(
        execution=execution, index__gt=execution.last_chunk_index, state=ChunkState.FAILED
    ).update(updated_at=timezone.now(), state=ChunkState.SKIPPED)
    counts = dict(
        execution.chunks.filter(index__lte=execution.last_chunk_index)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    if counts.get(ChunkState.FAILED):
        if counts.get(ChunkState.QUEUED) or counts.get(ChunkState.RUNNING):
            # A page still going may yet show that the source ends before the failed one
            # (an empty page only says the end lies before it); the last one checks again.
            work_queue.enqueue_completion_check_after(
                execution.pk, settings.COMPLETION_RECHECK_SECONDS
            )
            return execution
        return _fail_after_grace(execution)
    expected = execution.last_chunk_index + 1
    if counts.get(ChunkState.SUBMITTED, 0) < expected:
        work_queue.enqueue_completion_check_after(execution.pk, settings.COMPLETION_RECHECK_SECONDS)
        return execution

    claimed = Execution.objects.filter(pk=execution.pk, state=State.INGESTING).update(
        updated_at=timezone.now(), state=State.COMPLETING
    )
    if not claimed:
        return execution
    try:
        AssetsClient.for_source(execution.source).mark_completed(execution.assets_execution_id)
    except AssetsError as error:
        if error.permanent:
            return fail_execution(execution=execution, reason=error.message)
        # Nothing was accepted: hand the execution back so a later check posts again.
        Execution.objects.filter(pk=execution.pk, state=State.COMPLETING).update(
            updated_at=timezone.now(),
            state=State.INGESTING,
            error=scrub_secrets(error.message, execution.source),
        )
        work_queue.enqueue_completion_check_after(execution.pk, retry_delay(1, error.retry_after))
        return execution
    Execution.objects.filter(pk=execution.pk, state=State.COMPLETING).update(
        updated_at=timezone.now(), state=State.PROCESSING, completed_at=timezone.now(), error=""
    )
    execution.refresh_from_db()
    return refresh_status(execution=execution)


def _fail_after_grace(execution: Execution) -> Execution:
    """A failed chunk fails its execution once the operators' grace period has passed."""
    grace = timedelta(seconds=settings.FAILED_CHUNK_GRACE_SECONDS)
    failed = execution.chunks.filter(state=ChunkState.FAILED).order_by("updated_at").first()
    waited = timezone.now() - failed.updated_at
    if waited < grace:
        work_queue.enqueue_completion_check_after(
            execution.pk, (grace - waited).total_seconds() + 1
        )
        return execution
    return fail_execution(
        execution=execution, reason=f"Chunk {failed.index + 1} failed: {failed.error}"
    )


def refresh_status(*, execution: Execution) -> Execution:
    """Follow an execution Assets is processing until it reports a final state."""
    if execution.state != State.PROCESSING:
        return execution
    try:
        status = AssetsClient.for_source(execution.source).get_execution_status(
            execution.assets_execution_id
        )
    except AssetsError as error:
        logger.warning("execution %s: status not readable: %s", execution.pk, error.message)
        status = None
    final = FINAL_STATUSES.get(status.status) if status else None
    if final is None:
        work_queue.enqueue_status_refresh_after(execution.pk, settings.COMPLETION_RECHECK_SECONDS)
        return execution
    Execution.objects.filter(pk=execution.pk, state=State.PROCESSING).update(
        updated_at=timezone.now(),
        state=final,
        finished_at=timezone.now(),
        error="" if final == State.DONE else f"Assets reports the import {status.status}",
    )
    execution.refresh_from_db()
    return execution


# --- failure and cancel --------------------------------------------------------------------


def fail_execution(*, execution: Execution, reason: str) -> Execution:
    """Fail an open execution once, stop its chunks, and report the reason to Assets."""
    source = execution.source
    reason = scrub_secrets(reason, source)
    failed = Execution.objects.filter(
        pk=execution.pk, state__in=[State.PENDING, State.INGESTING, State.COMPLETING]
    ).update(state=State.FAILED, error=reason, finished_at=timezone.now())
    if failed:
        ChunkJob.objects.filter(execution=execution, state=ChunkState.QUEUED).update(
            updated_at=timezone.now(), state=ChunkState.CANCELLED, next_attempt_at=None
        )
        execution.refresh_from_db()
        if execution.assets_execution_id:
            _report_failure(execution, reason)
    execution.refresh_from_db()
    return execution


def _report_failure(execution: Execution, reason: str) -> None:
    # Assets takes a failure report only while the execution is INGESTING; once it is
    # PROCESSING it answers 400. Either way the local failure stands and is not hidden.
    try:
        client = AssetsClient.for_source(execution.source)
        call_with_retries(
            lambda: client.report_failure(execution.assets_execution_id, truncate_reason(reason))
        )
    except AssetsError as error:
        logger.warning(
            "execution %s: failure not recorded in Assets history: %s",
            execution.pk,
            scrub_secrets(error.message, execution.source),
        )
        return
    Execution.objects.filter(pk=execution.pk).update(failure_reported_at=timezone.now())


def cancel_execution(*, execution: Execution) -> Execution:
    """Stop an open execution: no further chunks run, and Assets cancels its side."""
    cancelled = Execution.objects.filter(pk=execution.pk, state__in=Execution.OPEN_STATES).update(
        updated_at=timezone.now(),
        state=State.CANCELLED,
        finished_at=timezone.now(),
        error="Cancelled by an operator.",
    )
    if cancelled:
        ChunkJob.objects.filter(execution=execution, state=ChunkState.QUEUED).update(
            updated_at=timezone.now(), state=ChunkState.CANCELLED, next_attempt_at=None
        )
        if execution.assets_execution_id:
            try:
                AssetsClient.for_source(execution.source).cancel_execution(
                    execution.assets_execution_id
                )
            except AssetsError as error:
                logger.warning("execution %s: cancel in Assets failed: %s", execution.pk, error)
    execution.refresh_from_db()
    return execution


# --- housekeeping --------------------------------------------------------------------------


def look_after_imports() -> None:
    """Periodic housekeeping (every minute): recover lost work, flag imports that stall."""
    requeue_stalled_chunks()
    flag_stalled_executions()


def requeue_stalled_chunks() -> int:
    """Queue again chunks whose worker vanished (lease expired) or whose task was lost.

    The ORM broker redelivers an unacknowledged task by itself; the Redis broker loses a
    task whose worker died. Either way the chunk's row knows it is not finished.
    """
    now = timezone.now()
    # A queued chunk's task may have died with a stopped cluster (the Redis broker forgets
    # it; the ORM broker hands it out again only after `retry`). Queueing it once more is
    # harmless: only one delivery can claim the chunk.
    stale_queued = now - timedelta(seconds=settings.QUEUED_CHUNK_REQUEUE_SECONDS)
    chunk_ids = list(
        ChunkJob.objects.filter(execution__state=State.INGESTING)
        .filter(
            Q(state=ChunkState.RUNNING, lease_expires_at__lt=now)
            | Q(state=ChunkState.QUEUED, next_attempt_at__lte=now)
            | Q(state=ChunkState.QUEUED, next_attempt_at__isnull=True, updated_at__lt=stale_queued)
        )
        .values_list("pk", flat=True)[:1000]
    )
    for chunk_id in chunk_ids:
        work_queue.enqueue_chunk(chunk_id)
    lease = timedelta(seconds=settings.CHUNK_LEASE_SECONDS)
    for execution_id in Execution.objects.filter(
        state=State.COMPLETING, updated_at__lt=now - lease
    ).values_list("pk", flat=True):
        # The worker posting "completed" vanished; the next check posts it again.
        Execution.objects.filter(pk=execution_id, state=State.COMPLETING).update(
            state=State.INGESTING, updated_at=now
        )
        work_queue.enqueue_completion_check(execution_id)
    return len(chunk_ids)


def flag_stalled_executions() -> list[Execution]:
    """Flag executions without progress for STALLED_AFTER_SECONDS; fail them if so configured."""
    now = timezone.now()
    stalled = list(
        Execution.objects.select_related("source").filter(
            state=State.INGESTING,
            updated_at__lt=now - timedelta(seconds=settings.STALLED_AFTER_SECONDS),
        )
    )
    for execution in stalled:
        if execution.stalled_since is None:
            Execution.objects.filter(pk=execution.pk).update(stalled_since=now)
        if settings.FAIL_STALLED_EXECUTIONS:
            minutes = settings.STALLED_AFTER_SECONDS // 60
            fail_execution(
                execution=execution,
                reason=f"The import made no progress for {minutes} minutes and was stopped.",
            )
    return stalled


def prune_history(*, days: int, batch_size: int = 2000) -> int:
    """Delete finished executions (and their chunks) older than `days`; how many went."""
    cutoff = timezone.now() - timedelta(days=days)
    old = Execution.objects.filter(state__in=Execution.FINISHED_STATES, created_at__lt=cutoff)
    deleted = 0
    while True:
        # In batches, so a first run on years of history does not hold one huge transaction.
        batch = list(old.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        with transaction.atomic():
            ChunkJob.objects.filter(execution_id__in=batch).delete()
            Execution.objects.filter(pk__in=batch).delete()
        deleted += len(batch)


# --- schedules -----------------------------------------------------------------------------


class ScheduleError(Exception):
    """A schedule could not be set up; the message says why and what to do."""


def webtrigger_url(source: ImportSource) -> str:
    path = reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_run(schedule: Schedule, *, after: datetime | None = None) -> datetime | None:
    """The first run at or after `after` (now), in wall-clock time of the schedule's zone."""
    after = after or timezone.now()
    zone = ZoneInfo(schedule.timezone)
    first = schedule.start_time.astimezone(zone).replace(tzinfo=None)
    if schedule.frequency == Schedule.Frequency.ONCE:
        return schedule.start_time if schedule.start_time >= after else None
    step = 0
    while True:
        if schedule.frequency == Schedule.Frequency.MONTHLY:
            candidate = _add_months(first, step)
        else:
            days = 7 if schedule.frequency == Schedule.Frequency.WEEKLY else 1
            candidate = first + timedelta(days=days * step)
        aware = candidate.replace(tzinfo=zone)
        if aware >= after:
            return aware
        # Jump close to `after` instead of walking day by day through years of history.
        if step == 0 and schedule.frequency != Schedule.Frequency.MONTHLY:
            days = 7 if schedule.frequency == Schedule.Frequency.WEEKLY else 1
            step = max(1, (after - aware).days // days)
        else:
            step += 1


def _remote_body(schedule: Schedule) -> dict:
    upcoming = next_run(schedule)
    if upcoming is None:
        raise ScheduleError("The schedule runs once and its time has passed: set a new time.")
    return schedule_body(
        frequency=schedule.frequency,
        start_time=upcoming.isoformat(),
        timezone=schedule.timezone,
        callback_url=webtrigger_url(schedule.source),
    )


def _mark_out_of_sync(schedule: Schedule, message: str) -> None:
    schedule.in_sync = False
    schedule.sync_error = message
    schedule.save(update_fields=["in_sync", "sync_error", "updated_at"])


def sync_schedule(*, schedule: Schedule) -> Schedule:
    """Create or replace the schedule in Assets; the row says whether that worked, and why not.

    Raises ScheduleError after recording it, so callers can show the reason.
    """
    source = schedule.source
    if not source.mapping_pushed_at:
        _mark_out_of_sync(schedule, "Assets needs the source's mapping first: push the mapping.")
        raise ScheduleError(schedule.sync_error)
    if not source.enabled:
        delete_remote_schedule(schedule=schedule)
        _mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
        raise ScheduleError(schedule.sync_error)
    client = AssetsClient.for_source(source)
    try:
        body = _remote_body(schedule)
        remote = None
        if schedule.assets_schedule_id:
            try:
                remote = client.update_schedule(schedule.assets_schedule_id, body)
            except AssetsNotFound:
                remote = None  # deleted in Assets: create it again below
        if remote is None:
            remote = client.create_schedule(body)
    except (AssetsError, ScheduleError) as error:
        message = scrub_secrets(getattr(error, "message", str(error)), source)
        _mark_out_of_sync(schedule, message)
        raise ScheduleError(message) from None
    schedule.assets_schedule_id = remote.schedule_id
    schedule.callback_url = body["callbackUrl"]
    schedule.in_sync = True
    schedule.sync_error = ""
    schedule.synced_at = timezone.now()
    schedule.save()
    return schedule


def delete_remote_schedule(*, schedule: Schedule) -> Schedule:
    """Remove the schedule from Assets (gone already counts as removed)."""
    if schedule.assets_schedule_id:
        try:
            AssetsClient.for_source(schedule.source).delete_schedule(schedule.assets_schedule_id)
        except AssetsNotFound:
            pass
        except AssetsError as error:
            message = scrub_secrets(error.message, schedule.source)
            if schedule.pk:
                _mark_out_of_sync(schedule, message)
            raise ScheduleError(message) from None
        schedule.assets_schedule_id = ""
        schedule.in_sync = False
        if schedule.pk:
            schedule.save(update_fields=["assets_schedule_id", "in_sync", "updated_at"])
    return schedule


def delete_schedule(*, schedule: Schedule) -> None:
    delete_remote_schedule(schedule=schedule)
    schedule.delete()


def delete_source(*, source: ImportSource) -> None:
    """Delete a source, removing its schedule from Assets first."""
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is not None:
        delete_remote_schedule(schedule=schedule)
    source.delete()


def compare_schedule(*, schedule: Schedule) -> list[str]:
    """What differs between the local schedule and the one Assets holds (empty: the same)."""
    if not schedule.assets_schedule_id:
        return ["Assets holds no schedule for this source yet."]
    try:
        remote = AssetsClient.for_source(schedule.source).get_schedule(schedule.assets_schedule_id)
    except AssetsNotFound:
        _mark_out_of_sync(schedule, "Assets no longer holds this schedule.")
        return [schedule.sync_error]
    differences = []
    expected = _remote_body(schedule) if next_run(schedule) else {}
    if remote.frequency != schedule.frequency:
        differences.append(f"frequency: here {schedule.frequency}, in Assets {remote.frequency}")
    if remote.timezone and remote.timezone != schedule.timezone:
        differences.append(f"time zone: here {schedule.timezone}, in Assets {remote.timezone}")
    if expected and remote.callback_url != expected["callbackUrl"]:
        differences.append("callback URL: Assets calls a different webtrigger URL")
    if remote.start_time and not _same_time_of_day(remote.start_time, schedule):
        differences.append(
            f"start time: here {schedule.start_time.isoformat()}, in Assets {remote.start_time}"
        )
    if differences:
        _mark_out_of_sync(schedule, "; ".join(differences))
    return differences


def _same_time_of_day(remote_start: str, schedule: Schedule) -> bool:
    try:
        remote = datetime.fromisoformat(remote_start.replace("Z", "+00:00"))
    except ValueError:
        return False
    zone = ZoneInfo(schedule.timezone)
    local = schedule.start_time.astimezone(zone)
    remote = remote.astimezone(zone) if remote.tzinfo else remote
    return (remote.hour, remote.minute) == (local.hour, local.minute)


def rotate_webtrigger_token(*, source: ImportSource) -> ImportSource:
    """Give the source a new webtrigger secret and tell Assets the new callback URL."""
    source.webtrigger_token = new_webtrigger_token()
    source.save(update_fields=["webtrigger_token", "updated_at"])
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is not None:
        sync_schedule(schedule=schedule)
    return source


# --- webtrigger ----------------------------------------------------------------------------

# A trigger repeated within this window (Assets retrying, or two calls at once) is the same run.
DUPLICATE_TRIGGER_WINDOW = timedelta(minutes=10)


def _recent_scheduled_execution(source: ImportSource) -> Execution | None:
    return (
        Execution.objects.filter(
            source=source,
            trigger=Execution.Trigger.SCHEDULE,
            state__in=Execution.OPEN_STATES,
            created_at__gte=timezone.now() - DUPLICATE_TRIGGER_WINDOW,
        )
        .exclude(assets_execution_id="")
        .first()
    )


def start_scheduled_import(*, source: ImportSource) -> Execution:
    """Start the run Assets' scheduler asked for.

    A repeated trigger (Assets retrying, or two calls at once) gets the execution the first
    one started. A trigger while another import runs is refused, and the refusal is kept in
    the history so staff see the run that did not happen.
    """
    recent = _recent_scheduled_execution(source)
    if recent is not None:
        return recent
    try:
        return start_import(source=source, trigger=Execution.Trigger.SCHEDULE)
    except ImportAlreadyRunning as refusal:
        recent = _recent_scheduled_execution(source)
        if recent is not None:
            return recent
        Execution.objects.create(
            source=source,
            trigger=Execution.Trigger.SCHEDULE,
            state=State.REFUSED,
            error=str(refusal),
            finished_at=timezone.now(),
        )
        raise


def apply_enabled_state(*, source: ImportSource) -> None:
    """A disabled source keeps no schedule in Assets; enabling it again restores the schedule."""
    schedule = Schedule.objects.filter(source=source).first()
    if schedule is None:
        return
    if source.enabled:
        if not schedule.in_sync:
            sync_schedule(schedule=schedule)
        return
    delete_remote_schedule(schedule=schedule)
    _mark_out_of_sync(schedule, "The source is disabled, so Assets holds no schedule.")
