"""A chunk's moves: claim it, give it back, record its page, retry or fail it.

Every move is a guarded transition on the model (`ChunkJob.objects.held_by(chunk)...`), so a
worker whose copy is out of date (its lease ran out and another worker took the page over)
moves nothing.
"""

from importer.services.chunks.claims import (
    Claim,
    SubmitVerdict,
    claim_chunk,
    claim_within_source_limit,
    claimed_fields,
    note_unreadable_source,
    release_chunk,
    request_slot_delay,
    submit_verdict,
    this_worker,
)
from importer.services.chunks.fetched import SourceNeverEnds, page_digest, queue_next_chunks
from importer.services.chunks.outcomes import (
    ENDLESS_SOURCE,
    chunk_crashed,
    chunk_error,
    chunk_failed,
    chunk_refused_by_database,
    mark_submitted,
    postpone_chunk,
    retry_failed_chunks,
    stop_chunk,
    wait_longer_for_assets,
)

__all__ = [
    "ENDLESS_SOURCE",
    "Claim",
    "SourceNeverEnds",
    "SubmitVerdict",
    "chunk_crashed",
    "chunk_error",
    "chunk_failed",
    "chunk_refused_by_database",
    "claim_chunk",
    "claim_within_source_limit",
    "claimed_fields",
    "mark_submitted",
    "note_unreadable_source",
    "page_digest",
    "postpone_chunk",
    "queue_next_chunks",
    "release_chunk",
    "request_slot_delay",
    "retry_failed_chunks",
    "stop_chunk",
    "submit_verdict",
    "this_worker",
    "wait_longer_for_assets",
]
