"""The statements every page of an import runs, written in SQL.

A page is recorded as fetched (learning whether it lies past the source's end) with the
lane's next page added, checked right before it goes to Assets, and marked submitted: six
statements per page, whatever its size; and as a lane ends it asks whether the import is
complete. Django's ORM spends 0.2–0.8 ms of CPU building each of them, far more than the
database takes to run them; with pages of 100 records that was half of a worker's CPU. So
these seven are written here
once, for PostgreSQL and SQLite (3.35 or later, for RETURNING), with the same guards as the
models' transitions: each moves only the rows still in the state it starts from, stamps
`updated_at` and says whether it won. Every other statement stays ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from importer.models import ChunkJob, Execution

CHUNK_RUNNING = ChunkJob.State.RUNNING
CHUNK_QUEUED = ChunkJob.State.QUEUED
CHUNK_FAILED = ChunkJob.State.FAILED
INGESTING = Execution.State.INGESTING


def record_fetched(
    execution: Execution,
    *,
    records: int,
    total: int | None = None,
    first_page: bool = False,
    first_page_digest: str = "",
) -> tuple[bool, int | None]:
    """Count a fetched page (and keep the total the source told: the first page's, read
    before the others, else the first one told, and the largest; and the first page's digest
    when this is the first page).

    Returns whether the execution still takes data (it is INGESTING), and the source's last
    page as known now (None: not found yet). Read on the way, into `execution`:
    `assets_paused_until` (whether Assets asked, by a 429 to any lane, to hold pages back),
    `first_page_digest` (what the first page held, once it is known) and
    `assets_answer_timeout` (how long a page waits for Assets' answer, once it answered one
    too late)."""
    params = [
        _now(),
        records,
        *([total] * 3 if total is not None else []),
        *([first_page_digest] if first_page_digest else []),
        execution.pk,
        INGESTING,
    ]
    told = total is not None
    statement = _sql().record_fetched[told, told and first_page, bool(first_page_digest)]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if not row:
        return False, None
    execution.assets_paused_until = _as_datetime(row[1])
    execution.first_page_digest = row[2]
    execution.assets_answer_timeout = row[3]
    return True, row[0]


def _as_datetime(value) -> datetime | None:
    """A datetime column as read by a raw cursor: PostgreSQL's driver gives a datetime,
    SQLite's the text Django stored (UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def create_missing(chunks: list[ChunkJob]) -> list[ChunkJob]:
    """Insert the chunks whose page the execution does not have yet; the ones inserted.

    One statement (`INSERT ... ON CONFLICT DO NOTHING RETURNING`), where looking first and
    then inserting took two; the ORM cannot say it. A page already there was made by an
    earlier attempt of the chunk before, and stays its holder's.
    """
    if not chunks:
        return []
    fields = _sql().chunk_fields
    params = [
        field.get_db_prep_save(field.pre_save(chunk, add=True), connection)
        for chunk in chunks
        for field in fields
    ]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        cursor.execute(_sql().create_missing.format(rows=", ".join([row] * len(chunks))), params)
        inserted = {index: pk for pk, index in cursor.fetchall()}
    created = []
    for chunk in chunks:
        if chunk.index in inserted:
            chunk.pk = inserted[chunk.index]
            chunk._state.adding = False
            chunk._state.db = connection.alias
            created.append(chunk)
    return created


def submit_state(chunk: ChunkJob) -> tuple[str, int, str, int | None] | None:
    """(the chunk's state, its attempts, its execution's state and last chunk index), now;
    None when the chunk is gone."""
    with connection.cursor() as cursor:
        cursor.execute(_sql().submit_state, [chunk.pk])
        return cursor.fetchone()


def mark_submitted(
    chunk: ChunkJob,
    *,
    records: int,
    skipped: list[str],
    state: str,
    identities: bytes,
    items_left_out: Sequence[str] = (),
    nested: dict[str, list[int | str]] | None = None,
) -> bool:
    """Assets accepted the page (or there was nothing to send: `state` says why), while this
    worker still holds the chunk (RUNNING, same attempt). The reasons of the records and of
    the nested items left out are the chunk's error; each is counted apart, and `nested`
    (per nested selector, its items sent and left out, and the first one's reason) is kept
    for the completion check."""
    now = _now()
    params = [
        now,
        state,
        records,
        len(skipped),
        len(items_left_out),
        "\n".join([*skipped, *items_left_out][:50]),
        identities,
        None if nested is None else _nested_items().get_db_prep_save(nested, connection),
        now,
        chunk.pk,
        CHUNK_RUNNING,
        chunk.attempts,
    ]
    return _rowcount(_sql().mark_submitted, params) > 0


def record_submitted(execution_id: int, *, records: int, skipped: int, items_skipped: int) -> bool:
    """Count a page Assets accepted; the execution is not stalled."""
    params = [_now(), records, skipped, items_skipped, execution_id]
    return _rowcount(_sql().record_submitted, params) > 0


def completion_due(execution_id: int) -> bool:
    """Whether the ingesting execution has no page queued or running, once its end is known
    or one of its pages failed (`services.completion` says why).

    One statement whose cost follows the pages in flight, not the pages done: both questions
    about the chunks are index lookups (execution, state).
    """
    params = [CHUNK_QUEUED, CHUNK_RUNNING, execution_id, INGESTING, CHUNK_FAILED]
    with connection.cursor() as cursor:
        cursor.execute(_sql().completion_due, params)
        row = cursor.fetchone()
    return bool(row and row[0])


def _now():
    return ChunkJob._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)


def _rowcount(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


class _Statements:
    """The SQL text, with table and column names from the models."""

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        execution, chunk = Execution._meta, ChunkJob._meta

        def e(name: str) -> str:
            return quote(execution.get_field(name).column)

        def c(name: str) -> str:
            return quote(chunk.get_field(name).column)

        executions, chunks = quote(execution.db_table), quote(chunk.db_table)
        self.chunk_fields = [field for field in chunk.concrete_fields if not field.primary_key]
        self.create_missing = (
            f"INSERT INTO {chunks} ({', '.join(quote(f.column) for f in self.chunk_fields)}) "
            f"VALUES {{rows}} ON CONFLICT DO NOTHING RETURNING {c('id')}, {c('index')}"
        )
        fetched = (
            f"UPDATE {executions} SET {e('updated_at')} = %s, "
            f"{e('pages_fetched')} = {e('pages_fetched')} + 1, "
            f"{e('records_fetched')} = {e('records_fetched')} + %s"
        )
        guard = (
            f" WHERE {e('id')} = %s AND {e('state')} = %s "
            f"RETURNING {e('last_chunk_index')}, {e('assets_paused_until')}, "
            f"{e('first_page_digest')}, {e('assets_answer_timeout')}"
        )
        # The total told before the source could change is kept (the first page's, which
        # is read first, else the first told), and the largest (a source growing while it
        # is read): a total that changes otherwise shows at the end.
        largest = e("records_total_largest")
        grown = (
            f"{largest} = CASE WHEN {largest} IS NULL OR {largest} < %s THEN %s ELSE {largest} END"
        )
        totals = {
            False: f", {e('records_total')} = COALESCE({e('records_total')}, %s), {grown}",
            True: f", {e('records_total')} = %s, {grown}",
        }
        first = f", {e('first_page_digest')} = %s"
        self.record_fetched = {
            (told, of_first_page, with_digest): fetched
            + (totals[of_first_page] if told else "")
            + (first if with_digest else "")
            + guard
            for told in (False, True)
            for of_first_page in (False, True)
            for with_digest in (False, True)
        }
        self.submit_state = (
            f"SELECT c.{c('state')}, c.{c('attempts')}, e.{e('state')}, "
            f"e.{e('last_chunk_index')} FROM {chunks} c "
            f"INNER JOIN {executions} e ON e.{e('id')} = c.{c('execution')} "
            f"WHERE c.{c('id')} = %s"
        )
        self.mark_submitted = (
            f"UPDATE {chunks} SET {c('updated_at')} = %s, {c('state')} = %s, "
            f"{c('record_count')} = %s, {c('skipped_count')} = %s, "
            f"{c('items_skipped_count')} = %s, {c('error')} = %s, "
            f"{c('identity_digests')} = %s, {c('nested_items')} = %s, "
            f"{c('lease_expires_at')} = NULL, {c('submitted_at')} = %s "
            f"WHERE {c('id')} = %s AND {c('state')} = %s AND {c('attempts')} = %s"
        )
        self.record_submitted = (
            f"UPDATE {executions} SET {e('updated_at')} = %s, {e('stalled_since')} = NULL, "
            f"{e('pages_submitted')} = {e('pages_submitted')} + 1, "
            f"{e('records_submitted')} = {e('records_submitted')} + %s, "
            f"{e('records_skipped')} = {e('records_skipped')} + %s, "
            f"{e('items_skipped')} = {e('items_skipped')} + %s "
            f"WHERE {e('id')} = %s"
        )
        self.completion_due = (
            f"SELECT NOT EXISTS (SELECT 1 FROM {chunks} u "
            f"WHERE u.{c('execution')} = x.{e('id')} AND u.{c('state')} IN (%s, %s)) "
            f"FROM {executions} x WHERE x.{e('id')} = %s AND x.{e('state')} = %s "
            f"AND (x.{e('last_chunk_index')} IS NOT NULL OR EXISTS (SELECT 1 FROM {chunks} f "
            f"WHERE f.{c('execution')} = x.{e('id')} AND f.{c('state')} = %s))"
        )


@cache
def _nested_items():
    """The chunk's JSON field, which writes a value as its database takes JSON."""
    return ChunkJob._meta.get_field("nested_items")


@cache
def _sql() -> _Statements:
    return _Statements()
