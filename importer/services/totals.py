"""Whether an import brought what its source said it holds, and where its source ended.

A source whose answers carry a total (the source's `total_path`, in their body or a header)
is held to it: at the end, the records received from every page up to the source's last must
add up to that total, or the import fails saying what the source did. Pages read by position
(offset and page-number paging, and next links, which mostly carry an offset) are also checked
for a record read on two of them: the source's order moved while it was read, and other
records may never have been read, which no total shows (or the source lists some objects
twice: its `repeated_records` setting then lets them through). Pages reached by a cursor are
looked at too, and a record on two of them is noted on the import, not failed: most cursors
name the last record read, and bring again only a record that changed meanwhile. A CMDB
that looks complete and is not is the outcome this prevents.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from importer.mapping import ITEMS_THAT_TELL_A_RENAME, first_left_out
from importer.models import ChunkJob, Execution, ImportSource
from importer.services.errors import HOW_TO_MEND_A_SELECTORS_LOCATORS
from importer.services.plan import reads_in_parallel
from importer.sources.totals import told_in

# Digests held in a set at once when looking for a record on two pages (about 70 bytes each,
# so under 20 MB): a bigger import is looked at in as many passes, each over a share of the
# digests (at 10^6 records, four passes of a slice of every page).
DIGESTS_PER_PASS = 250_000


def records_received(execution: Execution) -> int:
    """Records the source gave for the pages up to its last one (sent or left out)."""
    received = ChunkJob.objects.filter(
        execution=execution,
        index__lte=execution.last_chunk_index,
        state=ChunkJob.State.SUBMITTED,
    ).aggregate(n=Sum(F("record_count") + F("skipped_count")))["n"]
    return received or 0


def recount_records_fetched(execution: Execution) -> None:
    """Count the records fetched again from the pages, once every page is in: a page whose
    worker died after fetching it was counted by that worker and again by the one that took
    it over (each page counts as it is fetched, so that progress moves; a worker killed
    has no chance to take its count back)."""
    held = (
        ChunkJob.objects.filter(
            execution=OuterRef("pk"), state__in=[ChunkJob.State.SUBMITTED, ChunkJob.State.SKIPPED]
        )
        .values("execution")
        .annotate(n=Sum(F("record_count") + F("skipped_count")))
        .values("n")
    )
    Execution.objects.filter(pk=execution.pk).update(records_fetched=Coalesce(Subquery(held), 0))


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
    largest = max(total, execution.records_total_largest or total)
    if total <= received <= largest:
        return ""  # all it told at first, and what it grew by while it was read
    total_path = execution.source.total_path
    where = told_in(total_path) if total_path else "at its total path"
    if largest > total:
        where += f", growing to {largest} while it was read"
    if received < total:
        what = (
            f"The source said it holds {total} records ({where}) but served only "
            f"{received}: its answers ended early, or its total counts records it does not list"
        )
    else:
        what = (
            f"The source said it holds {total} records ({where}) but served {received}: "
            "its total is not the number of records it lists"
        )
    return (
        f"{what}, or records were added or removed while it was read. Nothing was marked "
        "complete in Assets. Run the import again; if this comes back, check the source's "
        "query parameters, or clear its total path."
    )


def total_never_told(execution: Execution) -> str:
    """The notice of an import whose source has a total path that no answer told a total at;
    "" when one did, or the source has none.

    Such an import cannot be checked against the source's total, and ends DONE unchecked:
    a misspelled path (`meta.totl`) or a source that stopped telling it would turn the
    check off without a word. It is no failure, as a source may leave the total out of
    some answers (GitLab past 10,000 records, some APIs after the first page), and one
    answer telling it is enough to check."""
    source = execution.source
    if (
        source.source_kind != ImportSource.Kind.REST
        or not source.total_path
        or execution.records_total is not None
        or execution.last_chunk_index is None
    ):
        return ""
    received = records_received(execution)
    return (
        f"Total not checked: no answer of the source told a total {told_in(source.total_path)} "
        f"(its total path), so the records received ({received}) were not checked against "
        "one. Set the total path to where the answers tell their total, or clear it."
    )


def every_record_left_out(execution: Execution) -> str:
    """Why an import that would send Assets none of the records its source gave is no
    success; "" when some were sent, or the source held none.

    A file read with the wrong delimiter, or a mapping whose key names no field of the
    source, leaves every record out: DONE would tell the user all is well with nothing
    imported (and an import source that removes what an import does not name would empty
    the object type)."""
    if execution.last_chunk_index is None:
        return ""
    pages = ChunkJob.objects.filter(
        execution=execution,
        index__lte=execution.last_chunk_index,
        state=ChunkJob.State.SUBMITTED,
    )
    counts = pages.aggregate(sent=Sum("record_count"), left_out=Sum("skipped_count"))
    if counts["sent"] or not counts["left_out"]:
        return ""
    reasons = (
        pages.filter(skipped_count__gt=0).order_by("index").values_list("error", flat=True).first()
    )
    first = (reasons or "").split("\n")[0].strip()
    return (
        f"Every one of the {counts['left_out']} records the source gave was left out, so "
        f"Assets would have received none{f' (the first: {first})' if first else ''}. Nothing "
        "was marked complete in Assets. Check that the mapping's fields are the source's "
        "(for a CSV file: its delimiter and header) and that its values fit the attributes' "
        "types, preview the source, then run the import again."
    )


def every_nested_item_left_out(execution: Execution) -> str:
    """Why an import that sent Assets none of a nested selector's items, leaving out
    ITEMS_THAT_TELL_A_RENAME or more of them, is no success; "" when it sent some of each.

    A disk's serial renamed at the source leaves every disk out while each computer is sent:
    DONE would come with not one disk in Assets. Judged over the whole import, so a page
    holding a few bad items and no good one (the next page has them) fails nothing, whatever
    the page size. Few items left out in all are a bad item or two, left out and counted."""
    if execution.items_skipped < ITEMS_THAT_TELL_A_RENAME or execution.last_chunk_index is None:
        return ""
    pages = ChunkJob.objects.filter(
        execution=execution,
        index__lte=execution.last_chunk_index,
        state=ChunkJob.State.SUBMITTED,
    ).order_by("index")
    if pages.filter(nested_items__isnull=True).exists():
        return ""  # pages recorded by the release before, which did not count them
    left_out: dict[str, int] = defaultdict(int)
    first: dict[str, str] = {}  # per selector, its first item left out, pages in order
    for nested in pages.filter(items_skipped_count__gt=0).values_list("nested_items", flat=True):
        for selector, entry in nested.items():
            if entry[1]:
                left_out[selector] += entry[1]
                if not first.get(selector):
                    first[selector] = first_left_out(entry)
    unsent = {selector for selector, count in left_out.items() if count >= ITEMS_THAT_TELL_A_RENAME}
    if not unsent:
        return ""
    # Most imports send an item of each selector on their first pages: few are read.
    for (nested,) in pages.values_list("nested_items").iterator(chunk_size=100):
        unsent -= {selector for selector, entry in nested.items() if entry[0]}
        if not unsent:
            return ""
    reasons = [
        f"Every one of the {left_out[selector]} items of selector '{selector}' the source "
        f"gave was left out of its record, so Assets would have received none"
        f"{f' (the first: {first[selector]})' if first[selector] else ''}"
        for selector in first
        if selector in unsent
    ]
    return (
        "; ".join(reasons) + ". Nothing was marked complete in Assets. "
        f"{HOW_TO_MEND_A_SELECTORS_LOCATORS} (preview the source to check them); if the "
        "source holds these items so, mend them there. Then run the import again."
    )


def steep_drop_in_records(execution: Execution) -> str:
    """Why the records received look like part of the source's data: far fewer than its last
    successful import brought (more than its `record_drop_limit` fewer); "" when not, or
    when the import was started accepting fewer records.

    What no paging check can see (a source answering part of its data with every sign of
    a whole: an outage answered 200 with an empty list, a cap, a filter changed) shows as
    a drop; Assets would take every object not named for missing."""
    limit = execution.source.record_drop_limit
    if limit is None or execution.accepts_fewer_records or execution.last_chunk_index is None:
        return ""
    last = (
        Execution.objects.filter(source_id=execution.source_id, state=Execution.State.DONE)
        .exclude(pk=execution.pk)
        .order_by("-finished_at", "-pk")
        .only("pk", "records_fetched")
        .first()
    )
    if last is None or not last.records_fetched:
        return ""
    before, now = last.records_fetched, records_received(execution)
    if now * 100 >= before * (100 - limit):
        return ""
    fewer = -(-(before - now) * 100 // before)  # rounded up: never shown at the limit
    return (
        f"The source gave {now} records, {fewer} % fewer than the {before} of its last "
        f"successful import (#{last.pk}), past its limit of {limit} %. Nothing was marked "
        "complete in Assets, so it changed no object. The source may have answered part "
        "of its data (an outage, a cap on its pages, a filter changed): check it, and run "
        "the import again. If it really holds fewer records now, start the import accepting "
        "fewer records (the sources list's action 'Start import, accepting fewer records', "
        "or run_import --accept-fewer-records), or change the source's 'largest drop in "
        "records'."
    )


def checks_repeated_records(source: ImportSource) -> bool:
    """Whether the pages' identities are kept to look for a record on two of them, unless the
    source is said to list some objects more than once: pages read by position, pages reached
    by next links, which most APIs build from an offset or a page number too (Django REST
    framework, Jira's startAt, GitHub's page), and pages reached by a cursor or after the last
    record read (keyset: noted, not failed: see `cursor_pages_overlap`)."""
    if source.repeated_records != ImportSource.RepeatedRecords.FAIL:
        return False
    return (
        reads_in_parallel(source)
        or source.pagination in ("next_url", "link_header")
        or _by_cursor(source)
    )


def _by_cursor(source: ImportSource) -> bool:
    return source.source_kind == ImportSource.Kind.REST and source.pagination in (
        "cursor",
        "keyset",
    )


def records_on_two_pages(execution: Execution) -> str:
    """Why the pages cannot hold every record: some were read on two pages; "" when none were
    (or the pages were reached by a cursor: see `cursor_pages_overlap`).

    A record repeated within one answer is the source's own listing, not a moved order, and is
    not counted."""
    if _by_cursor(execution.source):
        return ""
    found = _read_on_two_pages(execution)
    if found is None:
        return ""
    records, first, second = found
    return (
        f"{records} read on two pages (the first on pages {first} and {second}), by "
        "identity (the externalIdPart values). Either the source's order moved while it was "
        "read, and as many other records may never have been read: make the source sort by "
        "a field that is unique and does not change (many APIs take a query parameter such "
        "as sort=id), then run the import again. Or the source does list some objects more "
        "than once, or its next links overlap by design (a since= or updated_after= that "
        "takes the last record read again): then set the source's 'record on two pages' to "
        "send them. Nothing was marked complete in Assets."
    )


def cursor_pages_overlap(execution: Execution) -> str:
    """The notice of an import read by a cursor that read a record on two pages; "" when it
    read none. Most cursors name the last record read, and then only a record changed while
    the source was read comes again, harmlessly: no failure. Some stand for a position (an
    offset in disguise), and then as many records as came twice were never read."""
    if not _by_cursor(execution.source):
        return ""
    found = _read_on_two_pages(execution)
    if found is None:
        return ""
    records, first, second = found
    return (
        f"Paging: {records} read on two pages (the first on pages {first} and {second}), by "
        "identity. A cursor that names the last record read brings a record changed while "
        "the source was read again, and nothing is missing. A cursor that stands for a "
        "position (an offset in disguise) skips as many records when the source's order "
        "moves: if the source's cursor is such, make it sort by a field that is unique and "
        "does not change, and run the import again. A source that lists some objects more "
        "than once is told so by its 'record on two pages' set to send them."
    )


def _read_on_two_pages(execution: Execution) -> tuple[str, int, int] | None:
    """How many records were read on two pages ("3 records were"), and the first two pages
    of the first of them; None when none were."""
    if not checks_repeated_records(execution.source) or execution.last_chunk_index is None:
        return None
    pages = [
        (index, memoryview(digests).cast("B").cast("Q"))
        for index, digests in ChunkJob.objects.filter(
            execution=execution,
            index__lte=execution.last_chunk_index,
            state=ChunkJob.State.SUBMITTED,
            record_count__gt=0,
        )
        .order_by("index")
        .values_list("index", "identity_digests")
        .iterator(chunk_size=100)  # 100 pages' digests on their way at a time
    ]
    repeated = _on_two_pages([digests for _, digests in pages], execution.records_submitted)
    if not repeated:
        return None
    pages_of: dict[int, list[int]] = defaultdict(list)
    for index, digests in pages:
        for digest in repeated.intersection(digests):
            pages_of[digest].append(index + 1)
    first, second = min(pages_of.values())[:2]
    count = len(repeated)
    return f"{count} record{'s were' if count != 1 else ' was'}", first, second


def _on_two_pages(pages: list[memoryview], records: int) -> set[int]:
    """The digests found on two or more pages (each page's digests in ascending order).

    The digests are looked at a share at a time (the share of the 64-bit range a slice of
    every page holds, found by bisection), so at most DIGESTS_PER_PASS are held in a set:
    8 bytes a record stay in memory, not 70."""
    passes = max(1, -(-records // DIGESTS_PER_PASS))
    bounds = [share * 2**64 // passes for share in range(passes)] + [2**64]
    repeated: set[int] = set()
    for low, high in zip(bounds, bounds[1:], strict=False):
        seen: set[int] = set()
        for digests in pages:
            share = set(digests[bisect_left(digests, low) : bisect_left(digests, high)])
            repeated |= share & seen
            seen |= share
    return repeated
