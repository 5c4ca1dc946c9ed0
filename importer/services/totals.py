"""Whether an import brought what its source said it holds.

A source whose answers carry a total (the source's `total_path`) is held to it: at the end, the
records received from every page up to the source's last must add up to that total, or the
import fails saying what the source did. A CMDB that looks complete and is not is the outcome
this prevents.
"""

from __future__ import annotations

from django.db.models import F, Sum

from importer.models import ChunkJob, Execution


def records_received(execution: Execution) -> int:
    """Records the source gave for the pages up to its last one (sent or left out)."""
    received = ChunkJob.objects.filter(
        execution=execution,
        index__lte=execution.last_chunk_index,
        state=ChunkJob.State.SUBMITTED,
    ).aggregate(n=Sum(F("record_count") + F("skipped_count")))["n"]
    return received or 0


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
