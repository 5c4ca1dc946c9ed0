"""What a lane keeps from page to page: its connections to the source and to Assets, the
page fetched ahead, the pages being submitted and their answers recorded, and the leases of
the chunks it holds (`lanes.process_chunk` takes it along its pages)."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from importer import background, clock
from importer.assets import AssetsClient, AssetsError, AssetsRateLimited, AssetsTimedOut
from importer.mapping import TransformResult
from importer.models import ChunkJob, Execution, ImportSource
from importer.services.answer_waits import answer_wait
from importer.services.chunks import (
    chunk_crashed,
    chunk_error,
    mark_submitted,
    release_chunk,
    stop_chunk,
    wait_longer_for_assets,
)
from importer.services.leases import Leases
from importer.services.lifecycle import ended_in_assets
from importer.services.plan import goes_round_by_records, runs_lanes
from importer.services.reconnects import Reconnects, again_on_a_new_connection
from importer.services.retries import retry_delay
from importer.services.totals import checks_repeated_records
from importer.sources import build_source


@dataclass
class _PageInFlight:
    chunk: ChunkJob
    result: TransformResult
    answer: Future
    client: AssetsClient  # one submit at a time per client: a Session is not shared by threads


class Lane:
    """What one chunk task keeps from page to page: its connections, the page being fetched
    ahead, the pages being submitted, and the leases of the chunks it holds."""

    # Pages of one lane in flight to Assets at once. Two let a page go as soon as it is
    # ready rather than when the one before has arrived, so the lane keeps the source's pace.
    SUBMITS_IN_FLIGHT = 2

    def __init__(self, source: ImportSource, execution_id: int):
        self.started = time.monotonic()
        self.deadline = self.started + settings.CHUNK_LANE_SECONDS
        self.enabled = runs_lanes(source)
        self.fetcher = build_source(source, execution_id=execution_id)
        self.idle_clients = [AssetsClient.for_source(source)]
        self.submitting: deque[_PageInFlight] = deque()
        self.next_chunk: ChunkJob | None = None
        self.next_page: Future | None = None
        self.leases = Leases()
        self.reconnects = Reconnects()
        # Seconds Assets asked to wait after refusing a page (429): the lane ends, and its
        # pages wait as long, rather than each being refused in turn.
        self.paused_for = 0.0
        # Pages read by position show a source whose order moved by a record on two of them.
        self.checks_repeats = checks_repeated_records(source)
        # A REST source going round (a cursor back to the start, an offset ignored) shows
        # it by the first page's records.
        self.checks_going_round = goes_round_by_records(source)

    def has_time(self) -> bool:
        """Whether this task goes on to the lane's next page (else the queue takes it)."""
        return self.enabled and not self.paused_for and time.monotonic() < self.deadline

    def mind_assets_pause(self, until) -> None:
        """Another lane of the import was refused with 429 (`Execution.assets_paused_until`):
        this one holds its pages back as long, rather than be refused in its turn."""
        if until is not None:
            left = (until - clock.now()).total_seconds()
            if left > 0:
                self.paused_for = max(self.paused_for, left)

    def hold_next_page(self, chunk: ChunkJob, page: Future | None) -> None:
        self.leases.hold(chunk)
        self.next_chunk, self.next_page = chunk, page

    def done_with(self, chunk: ChunkJob) -> None:
        """The lane has taken the chunk as far as it goes, unless it is still being sent."""
        if all(page.chunk is not chunk for page in self.submitting):
            self.leases.let_go(chunk)

    def idle_client(self) -> AssetsClient | None:
        """A connection to Assets no page is being sent over (once closed, any of them)."""
        return self.idle_clients[0] if self.idle_clients else None

    def pop_next_page(self) -> tuple[ChunkJob | None, Future | None]:
        taken = (self.next_chunk, self.next_page)
        self.next_chunk = self.next_page = None
        return taken

    def make_room(self) -> None:
        """Wait for the oldest page in flight and record it, when SUBMITS_IN_FLIGHT are out."""
        if len(self.submitting) >= self.SUBMITS_IN_FLIGHT:
            self._record_oldest()

    def submit_behind(self, chunk: ChunkJob, result: TransformResult) -> None:
        """Send the page to Assets in the background (`make_room` first)."""
        execution = chunk.execution
        if self.idle_clients:
            client = self.idle_clients.pop()
        else:
            client = AssetsClient.for_source(execution.source)
        answer = background.run(
            partial(client.submit_chunk, timeout=self.answer_wait(execution.assets_answer_timeout)),
            execution.assets_execution_id,
            result.data,
            chunk.parts_taken,
        )
        self.submitting.append(_PageInFlight(chunk, result, answer, client))

    def answer_wait(self, asked: float | None) -> float | None:
        """How long a page sent now may wait for Assets' answer: as long as the import asks
        (Assets answered a page late), but not past what the task has left, less a
        "completed" post and a retry waited for in the worker (django-q2 kills a task past
        Q_TASK_TIMEOUT, mid-page)."""
        return answer_wait(
            asked,
            task_started=self.started,
            keep=settings.HTTP_TIMEOUT + settings.CHUNK_RETRY_INLINE_MAX_SECONDS,
        )

    def record_arrived(self) -> None:
        """Record the pages whose submit has arrived, without waiting for the others."""
        while self.submitting and self.submitting[0].answer.done():
            self._record_oldest()

    def _record_oldest(self) -> None:
        page = self.submitting.popleft()
        try:
            # Assets took the page: recording it is worth a new connection, for a page not
            # recorded is sent again once its lease lapses.
            again_on_a_new_connection(
                self.reconnects, _record_submit, page.chunk, page.result, page.answer
            )
            refused = page.answer.exception()
            if isinstance(refused, AssetsRateLimited):
                self.paused_for = max(self.paused_for, retry_delay(1, refused.retry_after))
                # A limit of the Assets tenant, not of this lane: the others hold back too.
                Execution.objects.filter(pk=page.chunk.execution_id).hold_submits_until(
                    clock.now() + timedelta(seconds=self.paused_for)
                )
        finally:
            self.idle_clients.append(page.client)
            self.leases.let_go(page.chunk)

    def give_back(self, chunk: ChunkJob) -> None:
        """Put a page the lane holds back on the queue, on a new connection if need be; if
        the database is still away, its lease lapses instead (housekeeping takes it up)."""
        try:
            again_on_a_new_connection(self.reconnects, release_chunk, chunk)
        except (OperationalError, InterfaceError):
            connection.close()

    def close(self) -> None:
        """Record the pages in flight (the lane's end looks at completion, see
        `lanes.process_chunk`); a page claimed ahead but not started goes back to the queue
        (only an unexpected error leaves one). The heartbeat stops whatever fails: a lease it
        went on renewing would keep its page from housekeeping, and the import from ending."""
        try:
            while self.submitting:
                self._record_oldest()
        finally:
            try:
                if self.next_chunk is not None:
                    self.give_back(self.next_chunk)
            finally:
                self.next_chunk = self.next_page = None
                self.leases.close()


def _record_submit(chunk: ChunkJob, result: TransformResult, answer: Future) -> None:
    """Mark the chunk submitted once Assets accepted it; retry it later if Assets refused,
    unless the import was cancelled or failed meanwhile (then Assets had reason to refuse)."""
    try:
        answer.result()
    except AssetsError as error:
        if error.items_taken:  # a page sent in parts: those Assets took are not sent again
            ChunkJob.objects.held_by(chunk).update(parts_taken=error.items_taken)
        if isinstance(error, AssetsTimedOut):  # slow, not away: its next answers are waited for
            wait_longer_for_assets(chunk, error.waited)
        ingesting = Execution.objects.filter(pk=chunk.execution_id).ingesting().exists()
        if ingesting and not ended_in_assets(chunk.execution, error):
            chunk_error(chunk, error, fetched=result.record_count + len(result.skipped))
        else:
            stop_chunk(chunk)
        return
    except Exception as error:
        chunk_crashed(chunk, error)
        return
    mark_submitted(
        chunk,
        result.record_count,
        result.skipped,
        identities=result.identities,
        items_left_out=result.items_left_out,
        nested=result.nested,
    )
