"""How an import is laid out in pages: how many run at once, and which pages a lane takes.

Offset and page-number sources say where any page starts (`sources.cursor_for`), so they are
read in parallel, one lane per chunk in flight. Sources that learn where the next page starts
only from the current one (cursors, next links, files) run one lane, with the next page
fetched while this one is submitted.
"""

from __future__ import annotations

from django.conf import settings

from importer.models import ChunkJob, Execution, ImportSource
from importer.sources import Page, cursor_for


def reads_in_parallel(source: ImportSource) -> bool:
    """Whether the source says where every page starts (then pages fan out)."""
    return cursor_for(source, 1) is not None


def goes_round_by_records(source: ImportSource) -> bool:
    """Whether a REST source's later page may hold its first page's records again: a cursor
    or next link that leads back to the first page, or an offset or page number the source
    ignores. Files are read by byte offsets, which never lead back."""
    return source.source_kind == ImportSource.Kind.REST and source.pagination != "none"


def pipeline_parallelism(source: ImportSource) -> int:
    """Chunks of one source that can run at once.

    Offset and page-number sources fan out up to the source's limit of chunks in flight;
    the others run a pipeline of two: one page submitted while the next is fetched.
    """
    if reads_in_parallel(source):
        return max(1, source.max_chunks_in_flight)
    return 2


def runs_lanes(source: ImportSource) -> bool:
    """Whether chunk tasks of this source go on along lanes (see `lanes.process_chunk`).

    Not under our own rate limit, which spaces requests out (a lane would only wait for its
    slots), nor with one chunk at a time, which is counted per task.
    """
    return (
        settings.CHUNK_LANE_SECONDS > 0
        and source.max_chunks_in_flight >= 2
        and not source.max_requests_per_minute
    )


def first_chunks(execution: Execution) -> list[ChunkJob]:
    """The first page, or, when the paging style says where pages start, one page per lane."""
    source = execution.source
    one_lane_per_page = runs_lanes(source) and reads_in_parallel(source)
    width = min(pipeline_parallelism(source), settings.IMPORT_MAX_PAGES) if one_lane_per_page else 1
    return ChunkJob.objects.bulk_create(
        ChunkJob(execution=execution, index=index, cursor=cursor_for(source, index) or "")
        for index in range(width)
    )


def lane_next_cursor(chunk: ChunkJob, page: Page) -> str | None:
    """Where the lane's next page starts (None: the source ends with this page)."""
    if page.next_cursor is None:
        return None
    source = chunk.execution.source
    if not reads_in_parallel(source):
        return page.next_cursor
    index = chunk.index + pipeline_parallelism(source)
    return cursor_for(source, index) if index <= settings.IMPORT_MAX_PAGES else None


def pages_ahead(chunk: ChunkJob, *, lanes: bool) -> tuple[list[int], int | None]:
    """The pages to create ahead of this one, and which of them is this lane's next.

    With lanes, the first chunk opens one lane per chunk in flight (pages 1 to width - 1 are
    queued, page `width` is its own next), and every later chunk adds only its lane's next
    page, `width` ahead. Without, this chunk plus the ones ahead make up the chunks in flight
    (always at least the next).
    """
    width = pipeline_parallelism(chunk.execution.source)
    if lanes:
        lane_index = chunk.index + width
        ahead = range(chunk.index + 1, lane_index + 1) if chunk.index == 0 else [lane_index]
    else:
        lane_index = None
        ahead = range(chunk.index + 1, chunk.index + max(1, width - 1) + 1)
    # Up to the page after the last one allowed, which only shows whether the source ends.
    return [index for index in ahead if index <= settings.IMPORT_MAX_PAGES], lane_index
