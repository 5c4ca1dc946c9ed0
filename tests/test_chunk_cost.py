"""A chunk's database cost stays constant, whatever the page size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from importer import services
from importer.models import ChunkJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued_tasks(settings, monkeypatch):
    """Collect enqueued tasks instead of running them, to look at one chunk alone."""
    from importer import work_queue

    queued = []
    monkeypatch.setattr(work_queue, "enqueue_chunk", lambda chunk_id: queued.append(chunk_id))
    monkeypatch.setattr(work_queue, "enqueue_completion_check", lambda eid: queued.append(eid))
    return queued


@pytest.mark.parametrize("page_size", [10, 60])
def test_a_chunk_costs_the_same_few_queries_whatever_its_size(
    make_source, queued_tasks, settings, page_size
):
    settings.CHUNK_LANE_SECONDS = 0  # this chunk alone
    source = services.push_mapping(source=make_source(page_size=page_size))
    execution = services.start_import(source=source)
    chunk = ChunkJob.objects.select_related("execution__source").get(execution=execution, index=0)

    with CaptureQueriesContext(connection) as queries:
        services.process_chunk(chunk=chunk)

    chunk.refresh_from_db()
    assert chunk.state == ChunkJob.State.SUBMITTED
    assert chunk.record_count == page_size
    assert len(queries) <= 12, "\n".join(q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("page_size", [10, 30])
def test_each_page_of_a_lane_costs_the_same_few_queries(make_source, queued_tasks, page_size):
    source = services.push_mapping(source=make_source(page_size=page_size, max_chunks_in_flight=2))
    execution = services.start_import(source=source)
    chunk = ChunkJob.objects.select_related("execution__source").get(execution=execution, index=0)

    with CaptureQueriesContext(connection) as queries:
        services.process_chunk(chunk=chunk)

    # One task went along its lane (pages 0, 2, 4, ...) up to and past the source's end.
    done = execution.chunks.filter(state__in=[ChunkJob.State.SUBMITTED, ChunkJob.State.SKIPPED])
    pages = done.count()
    assert pages >= 120 // page_size // 2
    # Every page also asks whether it was the import's last outstanding one: one statement,
    # within the ten.
    budget = 10 * pages + 1
    assert len(queries) <= budget, "\n".join(q["sql"] for q in queries.captured_queries)
