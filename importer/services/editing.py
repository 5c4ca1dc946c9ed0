"""Changing a source: what must wait while it imports.

A running import reads its source's settings page after page: a lane works out where page k
starts from the page size and paging style, and transforms each page with the mapping. A
setting changed half-way would apply to the pages still to come only: a larger page size
skips the records between the old and the new offsets, another mapping sends half the pages
in another shape, another number of lanes leaves pages out. So these settings wait until the
import has ended; credentials, timeouts and the request rate may change at any time (a token
rotated during a long import must be usable).
"""

from __future__ import annotations

from django.db import transaction

from importer.models import Execution, ImportSource
from importer.services.errors import SourceBusy

# Where a source's records go in Assets.
ASSETS_PLACE = ("assets_base_url", "workspace_id", "import_source_id")
# What a running import reads to know which records a page holds, how they become objects,
# and where they go.
FIXED_WHILE_IMPORTING = (
    *ASSETS_PLACE,
    *ImportSource.SOURCE_FIELDS,
    "extra_params",
    *ImportSource.PAGING_FIELDS,
    *ImportSource.FILE_FIELDS,
    "mapping",
    # A lane steps over as many pages as there are lanes: another width leaves pages out.
    "max_chunks_in_flight",
)


def running_import(source: ImportSource) -> Execution | None:
    """The source's open execution, if it has one. Inside a transaction, the source's row
    stays locked until it ends: an import cannot start between this check and the change it
    allows (`lock_for_start` waits for it)."""
    if source.pk is None:
        return None
    if transaction.get_connection().in_atomic_block:
        lock_source(source)
    return Execution.objects.open().filter(source=source).first()


def busy_text(source: ImportSource, running: Execution, what: str) -> str:
    ways = (
        "Change it once the import has ended, or cancel the import first."
        if running.state in Execution.CANCELLABLE_STATES
        else "Change it once the import has ended: Assets is finishing it."
    )
    return (
        f"An import of '{source}' is running (execution #{running.pk}): {what} would apply to "
        f"the pages it has still to read. {ways}"
    )


def refuse_while_importing(*, source: ImportSource, what: str) -> None:
    """Raise SourceBusy when the source is importing; `what` names the change refused."""
    running = running_import(source)
    if running is not None:
        raise SourceBusy(busy_text(source, running, what))


def lock_for_start(source: ImportSource) -> None:
    """Inside the transaction that opens an execution: wait for a change of the source being
    saved, and read the settings it saved (the import reads them page after page)."""
    lock_source(source)
    source.refresh_from_db()


def lock_source(source: ImportSource) -> None:
    """Inside a transaction: the source's row, until it ends."""
    list(ImportSource.objects.select_for_update().filter(pk=source.pk).values_list("pk"))
