"""The source's mapping and Assets: push, pull, replace, and dry runs against the source."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from importer.assets import AssetsClient, AssetsError, AssetsNotFound
from importer.mapping import (
    ITEMS_THAT_TELL_A_RENAME,
    RecordsRefused,
    TransformResult,
    diff_documents,
    draft_mapping,
    fields_in_no_record,
    first_left_out,
    split_newer_rules,
    transform_records,
    validate_document,
)
from importer.models import Execution, ImportSource
from importer.services.editing import refuse_while_importing
from importer.services.errors import (
    HOW_TO_ADD_A_MAPPING,
    HOW_TO_MEND_A_SELECTORS_LOCATORS,
    DraftImpossible,
    MappingChangedMeanwhile,
    MappingInvalid,
    NoMapping,
    SourceBusy,
    scrub_secrets,
)
from importer.services.retries import call_with_retries
from importer.sources import SourceError, build_source

logger = logging.getLogger(__name__)


# Differences between the mappings named in a notice, at most.
MAPPING_CHANGES_NAMED = 5
# Problems of a stored mapping named in a notice, at most: each takes a few lines, and a
# notice keeps NOTICE_MAX_LENGTH characters.
PROBLEMS_NAMED = 2


def push_mapping(*, source: ImportSource) -> ImportSource:
    """Validate the mapping locally, then send it to Assets (PUT replaces it whole); not
    while the source imports (SourceBusy): its pages still to come would change shape."""
    refuse_while_importing(source=source, what="pushing the mapping")
    return send_mapping(source=source)


def try_push_mapping(*, source: ImportSource) -> str:
    """Push the mapping and say why it was not taken ("" once Assets has it): the admin
    action, the command and a config file's apply tell the operator the same words."""
    try:
        push_mapping(source=source)
    except (MappingInvalid, MappingChangedMeanwhile, SourceBusy) as refused:
        return str(refused)
    except AssetsError as error:
        return scrub_secrets(error.message, source)
    return ""


def send_mapping(*, source: ImportSource, newer_rules: bool = True) -> ImportSource:
    """`push_mapping` for the import being started, which is open already
    (`newer_rules=False`: the mapping stored is pushed though it breaks rules newer than it,
    as the import goes on with it, `stored_mapping_warning`)."""
    if not source.mapping:
        raise NoMapping()
    problems = validate_document(source.mapping)
    if not newer_rules:
        problems, _ = split_newer_rules(problems)
    if problems:
        raise MappingInvalid(problems)
    sent = source.mapping
    client = AssetsClient.for_source(source)
    # A PUT of the whole document: repeated, it does the same.
    call_with_retries(lambda: client.put_mapping(sent))
    digest = _digest_in_assets(client, source)
    pushed_at = timezone.now()
    with transaction.atomic():
        # Saved anew meanwhile (an operator's form, a config file), the mapping Assets
        # holds is not the source's: it is not marked pushed, or no import would push it.
        saved = ImportSource.objects.select_for_update().only("mapping").get(pk=source.pk)
        if saved.mapping != sent:
            raise MappingChangedMeanwhile()
        ImportSource.objects.filter(pk=source.pk).update(
            mapping_pushed_at=pushed_at, mapping_digest_in_assets=digest, updated_at=pushed_at
        )
    source.mapping_pushed_at = source.updated_at = pushed_at
    source.mapping_digest_in_assets = digest
    return source


def mapping_digest(answer: dict) -> str:
    """A mapping as Assets answered it, in short: the same answer, the same digest."""
    text = json.dumps(answer, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest_in_assets(client: AssetsClient, source: ImportSource) -> str:
    """The digest of the mapping Assets holds now ("" when it cannot be read now: the next
    import takes it as it finds it, `push_over_changes_in_assets`)."""
    try:
        return mapping_digest(call_with_retries(client.get_mapping))
    except AssetsError as error:
        _log_unread_mapping(source, error)
        return ""


def _log_unread_mapping(source: ImportSource, error: AssetsError) -> None:
    logger.warning(
        "source %s: the mapping in Assets could not be read to check it for changes: %s",
        source.pk,
        scrub_secrets(error.message, source),
    )


def push_over_changes_in_assets(*, source: ImportSource) -> str:
    """Before an import of a mapping pushed earlier: when the mapping Assets holds is no
    longer that one (edited or removed in Assets since), push the source's own again and say
    what it replaced ("" when nothing did). The import's records follow the source's
    mapping, which its preview shows; sent under a mapping changed behind its back, they
    would arrive without attributes, or not at all, and the import end DONE all the same.

    Assets answers with its own rewriting of what was pushed (ids added, defaults filled,
    empty fields left out), so its answer is compared with the one it gave after the push
    (`mapping_digest_in_assets`), not with the source's mapping. A source pushed before that
    answer was kept takes the answer now as the one to compare with. When Assets cannot be
    read now, the import goes on with the mapping pushed (logged)."""
    client = AssetsClient.for_source(source)
    try:
        remote = client.get_mapping()
    except AssetsNotFound:
        remote = None  # removed in Assets
    except AssetsError as error:
        _log_unread_mapping(source, error)
        return ""
    if remote is not None:
        digest = mapping_digest(remote)
        if digest == source.mapping_digest_in_assets:
            return ""
        if not source.mapping_digest_in_assets:  # pushed by an earlier release
            ImportSource.objects.filter(pk=source.pk).update(mapping_digest_in_assets=digest)
            source.mapping_digest_in_assets = digest
            return ""
    send_mapping(source=source, newer_rules=False)
    changes = diff_documents(source.mapping or {}, remote or {})
    shown = "; ".join(changes[:MAPPING_CHANGES_NAMED]) or "a change in fields not compared here"
    more = len(changes) - MAPPING_CHANGES_NAMED
    return (
        "The mapping in Assets had been changed there since it was pushed from here, so "
        f"this import pushed the source's own over it ({shown}"
        + (f"; and {more} more" if more > 0 else "")
        + "). To keep a change made in Assets, take it on the source's Mapping in Assets page "
        "before the next import."
    )


def stored_mapping_warning(source: ImportSource) -> str:
    """What the source's mapping, stored before rules newer than it, breaks of them ("" when
    nothing): it still imports, noted on each import and on the source's page, while saving
    or pushing it anew is refused until it is mended."""
    if not source.mapping:
        return ""
    _, broken = split_newer_rules(validate_document(source.mapping))
    if not broken:
        return ""
    shown = "; ".join(str(problem) for problem in broken[:PROBLEMS_NAMED])
    more = len(broken) - PROBLEMS_NAMED
    return (
        "The mapping breaks rules newer than it, which refuse it when it is next saved or "
        f"pushed: {shown}" + (f"; and {more} more" if more > 0 else "") + ". It imports as "
        "before until then: mend it on the source's page."
    )


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
    Execution.objects.of(execution).add_notice(notice)


@dataclass
class Preview:
    """What an import would send for the first page, without starting one."""

    records_fetched: int = 0
    has_more: bool = False
    total: int | None = None  # what the source says it holds, when it says
    data: dict[str, list[dict]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    items_left_out: list[str] = field(default_factory=list)  # nested items, records sent
    # Nested selectors none of whose items on the page would be sent, in words.
    selectors_left_out: list[str] = field(default_factory=list)
    # Fields the mapping reads that no record of the page holds: misspelled, most likely.
    fields_missing: list[str] = field(default_factory=list)
    # What the import would note of the page (a CSV row that may be broken).
    notes: tuple[str, ...] = ()
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
        selectors_left_out=selectors_left_out(result),
        fields_missing=fields_in_no_record(page.records, source.mapping),
        notes=page.notes,
    )


def selectors_left_out(result: TransformResult) -> list[str]:
    """A warning per nested selector every item of which the page leaves out: a field
    renamed at the source would leave out every one on every page, and the import then fails
    at its end (`totals.every_nested_item_left_out`); a page alone cannot tell that from a
    few bad items, which the next pages' good ones outweigh."""
    warnings = []
    for selector, entry in (result.nested or {}).items():
        sent, left_out = entry[:2]
        if sent or not left_out:
            continue
        items = f"Every one of the {left_out} items" if left_out > 1 else "The one item"
        warnings.append(
            f"{items} of selector '{selector}' on this page would be left out of its record "
            f"(the first: {first_left_out(entry)}). An import that sends none of this "
            f"selector's items, leaving out {ITEMS_THAT_TELL_A_RENAME} or more, fails at its "
            f"end. {HOW_TO_MEND_A_SELECTORS_LOCATORS}."
        )
    return warnings


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
    # The document pulled is Assets' own answer: what the next import compares with.
    source.mapping_digest_in_assets = mapping_digest(document) if pushed else ""
    source.save(
        update_fields=["mapping", "mapping_pushed_at", "mapping_digest_in_assets", "updated_at"]
    )
    return source
