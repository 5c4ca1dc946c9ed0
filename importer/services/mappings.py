"""The source's mapping and Assets: push, pull, replace, and dry runs against the source."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from importer.assets import AssetsClient, AssetsError, AssetsNotFound
from importer.mapping import (
    RecordsRefused,
    TransformResult,
    diff_documents,
    draft_mapping,
    fields_in_no_record,
    transform_records,
    validate_document,
)
from importer.models import Execution, ImportSource
from importer.services.editing import refuse_while_importing
from importer.services.errors import (
    HOW_TO_ADD_A_MAPPING,
    DraftImpossible,
    MappingChangedMeanwhile,
    MappingInvalid,
    NoMapping,
    SourceBusy,
    scrub_secrets,
)
from importer.services.retries import call_with_retries
from importer.sources import SourceError, build_source


def push_mapping(*, source: ImportSource) -> ImportSource:
    """Validate the mapping locally, then send it to Assets (PUT replaces it whole); not
    while the source imports (SourceBusy): its pages still to come would change shape."""
    refuse_while_importing(source=source, what="pushing the mapping")
    return send_mapping(source=source)


def why_mapping_not_pushed(*, source: ImportSource) -> str:
    """Push the mapping and say why it was not taken ("" once Assets has it): the admin
    action, the command and a config file's apply tell the operator the same words."""
    try:
        push_mapping(source=source)
    except (MappingInvalid, MappingChangedMeanwhile, SourceBusy) as refused:
        return str(refused)
    except AssetsError as error:
        return scrub_secrets(error.message, source)
    return ""


def send_mapping(*, source: ImportSource) -> ImportSource:
    """`push_mapping` for the import being started, which is open already."""
    if not source.mapping:
        raise NoMapping()
    problems = validate_document(source.mapping)
    if problems:
        raise MappingInvalid(problems)
    sent = source.mapping
    client = AssetsClient.for_source(source)
    # A PUT of the whole document: repeated, it does the same.
    call_with_retries(lambda: client.put_mapping(sent))
    pushed_at = timezone.now()
    with transaction.atomic():
        # Saved anew meanwhile (an operator's form, a config file), the mapping Assets
        # holds is not the source's: it is not marked pushed, or no import would push it.
        saved = ImportSource.objects.select_for_update().only("mapping").get(pk=source.pk)
        if saved.mapping != sent:
            raise MappingChangedMeanwhile()
        ImportSource.objects.filter(pk=source.pk).update(
            mapping_pushed_at=pushed_at, updated_at=pushed_at
        )
    source.mapping_pushed_at = source.updated_at = pushed_at
    return source


def push_over_changes_in_assets(*, source: ImportSource) -> str:
    """Before an import of a mapping pushed earlier: when the mapping Assets holds is no
    longer that one (edited or removed in Assets since), push the source's own again and say
    what it replaced ("" when nothing did). The import's records follow the source's
    mapping, which its preview shows; sent under a mapping changed behind its back, they
    would arrive without attributes, or not at all, and the import end DONE all the same.
    When Assets cannot be read now, the import goes on with the mapping pushed."""
    try:
        remote = AssetsClient.for_source(source).get_mapping()
    except AssetsNotFound:
        remote = {}  # removed in Assets
    except AssetsError:
        return ""
    changes = diff_documents(source.mapping or {}, remote)
    if not changes:
        return ""
    send_mapping(source=source)
    shown = "; ".join(changes[:MAPPING_CHANGES_NAMED])
    more = len(changes) - MAPPING_CHANGES_NAMED
    return (
        "The mapping in Assets had been changed there since it was pushed from here, so "
        f"this import pushed the source's own over it ({shown}"
        + (f"; and {more} more" if more > 0 else "")
        + "). To keep a change made in Assets, take it on the source's Mapping in Assets page "
        "before the next import."
    )


# Differences between the mappings named in a notice, at most.
MAPPING_CHANGES_NAMED = 5


def add_notice(execution: Execution, notice: str) -> None:
    """Add a line to what the import's page and alerts note of it."""
    if not notice:
        return
    current = Execution.objects.filter(pk=execution.pk).values_list("notice", flat=True).first()
    joined = f"{current}\n{notice}" if current else notice
    Execution.objects.filter(pk=execution.pk).update(notice=joined[:2000])


def transform_page(source: ImportSource, records: list[dict]) -> TransformResult:
    """A page's records as Assets data, under the source's rules for records it cannot use
    (RecordsRefused when they say fail): the same for an import and its preview."""
    return transform_records(
        records,
        source.mapping,
        missing_identity=source.missing_identity,
        invalid_values=source.invalid_values,
    )


# Records of a first page (or items of a nested selector on it) that all lack a field before
# that is worth a notice.
NOTICE_AFTER_RECORDS = 10


def note_fields_in_no_record(*, execution: Execution, records: list[dict]) -> None:
    """Note on the import the fields the mapping reads that no record of its first page
    holds: a misspelled locator imports every object without that attribute, and ends
    DONE. (A CSV file's header stops the import before a page goes, `sources.csv_file`.)
    A first page of few records says little: an optional field may well be missing from
    all of them; so do few items of a nested selector's lists."""
    missing = fields_in_no_record(records, execution.source.mapping, minimum=NOTICE_AFTER_RECORDS)
    if not missing:
        return
    notice = (
        f"No record of the first page holds {', '.join(missing)}: if "
        f"{'it is' if len(missing) == 1 else 'they are'} misspelled in the mapping's "
        "attribute locators, the objects arrive without "
        f"{'that attribute' if len(missing) == 1 else 'those attributes'}. Preview the "
        "source to see its records' fields."
    )
    add_notice(execution, notice)


@dataclass
class Preview:
    """What an import would send for the first page, without starting one."""

    records_fetched: int = 0
    has_more: bool = False
    total: int | None = None  # what the source says it holds, when it says
    data: dict[str, list[dict]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    items_left_out: list[str] = field(default_factory=list)  # nested items, records sent
    # Fields the mapping reads that no record of the page holds: misspelled, most likely.
    fields_missing: list[str] = field(default_factory=list)
    error: str = ""


def preview_import(*, source: ImportSource, limit: int = 20) -> Preview:
    """Fetch and transform the first page; nothing is sent to Assets."""
    try:
        page = build_source(source).fetch_page("")
    except SourceError as error:
        return Preview(error=scrub_secrets(error.message, source))
    if not source.mapping:
        return Preview(
            records_fetched=len(page.records),
            error=f"The source has no mapping yet: {HOW_TO_ADD_A_MAPPING}.",
        )
    try:
        result = transform_page(source, page.records)
    except RecordsRefused as error:  # the source's policy: such records fail the import
        return Preview(
            records_fetched=len(page.records),
            error=f"The import would fail on this page: {error}. Mend these records at the "
            "source, or have the source's settings leave such records out.",
        )
    except ValueError as error:  # a mapping transform cannot use
        return Preview(records_fetched=len(page.records), error=str(error))
    return Preview(
        records_fetched=len(page.records),
        has_more=page.next_cursor is not None,
        total=page.total,
        data={selector: rows[:limit] for selector, rows in result.data.items()},
        skipped=result.skipped,
        items_left_out=result.items_left_out,
        fields_missing=fields_in_no_record(page.records, source.mapping),
    )


def draft_mapping_from_source(*, source: ImportSource) -> dict:
    """A schema and mapping inferred from the first page, for staff to edit."""
    try:
        page = build_source(source).fetch_page("")
    except SourceError as error:
        raise DraftImpossible(scrub_secrets(error.message, source)) from None
    if not page.records:
        raise DraftImpossible("the source's first page has no records to learn from")
    path = source.records_path.removesuffix("?")
    selector = (path.rsplit(".", 1)[-1] or "records").replace("-", "_")
    return draft_mapping(
        page.records, name=source.name.replace("-", " ").title(), selector=selector
    )


def pull_mapping(*, source: ImportSource) -> tuple[dict, list[str]]:
    """The document Assets holds, and how the local one differs from it."""
    remote = AssetsClient.for_source(source).get_mapping()
    return remote, diff_documents(source.mapping or {}, remote)


def replace_mapping(*, source: ImportSource, document: dict, pushed: bool) -> ImportSource:
    """Take `document` as the source's mapping (`pushed`: it is what Assets holds); not
    while the source imports (SourceBusy)."""
    refuse_while_importing(source=source, what="another mapping")
    source.mapping = document
    source.mapping_pushed_at = timezone.now() if pushed else None
    source.save(update_fields=["mapping", "mapping_pushed_at", "updated_at"])
    return source
