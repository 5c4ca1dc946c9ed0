"""Whether an import brought what its source said it holds, and where its source ended.

A source whose answers carry a total (the source's `total_path`) is held to it: at the end, the
records received from every page up to the source's last must add up to that total, or the
import fails saying what the source did. A CMDB that looks complete and is not is the outcome
this prevents.
"""

from __future__ import annotations

from django.db.models import F, Q, Sum

from importer.models import ChunkJob, Execution


def records_received(execution: Execution) -> int:
    """Records the source gave for the pages up to its last one (sent or left out)."""
    received = ChunkJob.objects.filter(
        execution=execution,
        index__lte=execution.last_chunk_index,
        state=ChunkJob.State.SUBMITTED,
    ).aggregate(n=Sum(F("record_count") + F("skipped_count")))["n"]
    return received or 0


def records_past_the_end(execution: Execution) -> str:
    """Why the source's end cannot be right: a page after it held records; "" when none did.

    The end is the first page that came back empty (or answered "no such page"); a later page
    with records means the source answered a page it has as if it had none, or its records
    moved while they were read. Pages past the end are fetched while the last ones are sent,
    so most such answers are seen before the import is completed."""
    last = execution.last_chunk_index
    if last is None:
        return ""
    beyond = (
        ChunkJob.objects.filter(execution=execution, index__gt=last)
        .filter(Q(record_count__gt=0) | Q(skipped_count__gt=0))
        .order_by("index")
        .values_list("index", F("record_count") + F("skipped_count"))
        .first()
    )
    if beyond is None:
        return ""
    index, held = beyond
    return (
        f"The source's records ended with page {last + 1} (a request after it came back "
        f"empty, or answered that there is no such page), yet page {index + 1} held {held} "
        "records: the source answered a page it has as if it had none, or its records moved "
        "while they were read. Nothing was marked complete in Assets. Run the import again; "
        "if this comes back, check the source's sort order and paging settings."
    )


def total_disagreement(execution: Execution) -> str:
    """Why the records received do not match the source's total; "" when they do (or the
    source told no total)."""
    total = execution.records_total
    if total is None or execution.last_chunk_index is None:
        return ""
    received = records_received(execution)
    if received == total:
        return ""
    where = execution.source.total_path or "its total path"
    if received < total:
        what = (
            f"The source said it holds {total} records (at '{where}') but served only "
            f"{received}: its answers ended early, or its total counts records it does not list"
        )
    else:
        what = (
            f"The source said it holds {total} records (at '{where}') but served {received}: "
            "its total is not the number of records it lists"
        )
    return (
        f"{what}, or records were added or removed while it was read. Nothing was marked "
        "complete in Assets. Run the import again; if this comes back, check the source's "
        "query parameters, or clear its total path."
    )
