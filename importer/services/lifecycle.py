"""An execution's life: start it in Assets, fail it once, cancel it."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from importer import notifications, work_queue
from importer.assets import AssetsAuthError, AssetsClient, AssetsError, outcome_of
from importer.mapping import split_newer_rules, validate_document
from importer.models import ChunkJob, Execution, ImportSource
from importer.services.editing import lock_for_start, lock_source
from importer.services.errors import (
    HOW_TO_ADD_A_MAPPING,
    ImportAlreadyRunning,
    ImportRefused,
    MappingChangedMeanwhile,
    NotCancellable,
    scrub_secrets,
)
from importer.services.mappings import (
    push_over_changes_in_assets,
    send_mapping,
    stored_mapping_warning,
)
from importer.services.plan import first_chunks
from importer.services.retries import call_with_retries, may_have_been_done

logger = logging.getLogger(__name__)
# A failure Assets could not be told of is told again until this long after it.
REPORT_GIVE_UP_AFTER = timedelta(days=1)
# A start still pending after this many HTTP_TIMEOUTs has stopped (`give_up_stopped_starts`).
STARTS_GIVEN_UP_AFTER_TIMEOUTS = 8


def _one_open_import_refused(error: IntegrityError) -> bool:
    """Whether the one-open-execution-per-source constraint refused the row: PostgreSQL
    names the constraint, SQLite the column of its unique index."""
    text = str(error)
    return "one_open_execution_per_source" in text or "importer_execution.source_id" in text


def start_import(
    *,
    source: ImportSource,
    user=None,
    trigger: str = Execution.Trigger.MANUAL,
    accept_fewer_records: bool = False,
) -> Execution:
    """Create the execution in Assets and queue the first chunk (`accept_fewer_records`: a
    drop in records past the source's limit is known to be real, and ends DONE).

    The local row is created first, in PENDING: the one-open-execution-per-source
    constraint then lets only one of two simultaneous starts go on to Assets. The records
    are transformed with the mapping saved here, so a mapping saved since its last push is
    pushed first: only then, while no other import of the source can see it change.
    """
    try:
        with transaction.atomic():
            lock_for_start(source)  # the settings as saved: they are checked, then read
            _check_startable(source)
            execution = Execution.objects.create(
                source=source,
                trigger=trigger,
                triggered_by=user,
                accepts_fewer_records=accept_fewer_records,
            )
    except IntegrityError as error:
        if not _one_open_import_refused(error):
            raise
        running = Execution.objects.open().filter(source=source).first()
        which = f" (execution #{running.pk})" if running else ""
        # Past its last page it can no longer be cancelled (`cancel_execution`).
        writing = running is not None and running.state not in Execution.CANCELLABLE_STATES
        raise ImportAlreadyRunning(
            f"An import of '{source}' is already running{which}: start again once it has "
            + ("ended (Assets is writing its records)." if writing else "ended, or cancel it.")
        ) from None

    starting = False  # the start itself was asked for (not the mapping's push before it)
    try:
        # Assets refuses a new execution while it counts an earlier one as running.
        report_pending_failures(source=source)
        Execution.objects.of(execution).stamp()  # still starting (`give_up_stopped_starts`)
        Execution.objects.of(execution).add_notice(stored_mapping_warning(source))
        if not source.mapping_pushed_at:
            send_mapping(source=source, newer_rules=False)
        else:
            Execution.objects.of(execution).add_notice(push_over_changes_in_assets(source=source))
        Execution.objects.of(execution).stamp()
        client = AssetsClient.for_source(source)
        starting = True
        started = call_with_retries(
            lambda: client.start_execution(scheduled=trigger == Execution.Trigger.SCHEDULE),
            repeatable=False,
        )
    except MappingChangedMeanwhile as changed:  # saved as the import opened: a narrow race
        reason = f"The import did not start: {changed}"
        _refuse(execution, reason)
        raise recorded_refusal(reason) from None
    except AssetsError as error:
        reason = scrub_secrets(error.message, source)
        if starting and may_have_been_done(error):
            reason += (
                ". Assets may have started the execution all the same: if the next start is "
                "refused with 409, cancel that execution in Assets (or wait until it times out "
                "there)"
            )
        if starting and error.status == 400 and "mapping" in error.message.lower():
            # Assets no longer holds the mapping pushed (removed there): pushed next time.
            ImportSource.objects.filter(pk=source.pk).update(mapping_pushed_at=None)
            reason += ". The mapping is pushed again when the import is next started"
        conflict = starting and error.status == 409  # Assets counts an import as running
        untold = _untold_end(source, execution) if conflict else None
        if untold is not None:
            reason += (
                f". Assets has not yet been told that import #{untold.pk} ended (it is told "
                "again shortly) and counts it as running until then: start again in a minute"
            )
        # Its own import, still running in Assets' eyes: no failure of the source.
        _refuse(execution, reason, another_import_running=untold is not None)
        # A conflict is an import running in Assets: a later start may go through.
        raise recorded_refusal(reason, running=conflict) from None

    # From here on the execution exists in Assets: any failure is reported to its history.
    Execution.objects.of(execution).stamp(assets_execution_id=started.execution_id)
    execution.assets_execution_id = started.execution_id
    try:
        with transaction.atomic():
            began = Execution.objects.of(execution).begin_ingesting()
            if began:
                chunk_ids = [chunk.pk for chunk in first_chunks(execution)]
                transaction.on_commit(lambda: work_queue.enqueue_chunks(chunk_ids))
    except Exception as error:
        logger.exception("execution %s: could not queue its first chunk", execution.pk)
        reason = scrub_secrets(f"The import could not start: {error}", source)
        fail_execution(execution=execution, reason=reason)
        raise recorded_refusal(reason) from None
    execution.refresh_from_db()
    if not began:
        _ended_while_starting(execution)
    return execution


def _ended_while_starting(execution: Execution) -> None:
    """An operator cancelled the start, or housekeeping gave it up, while Assets answered:
    what Assets started is cancelled there too (told later if it cannot be now), or it would
    refuse the source's next import."""
    _cancel_in_assets(execution)
    raise recorded_refusal(
        f"The import was {execution.get_state_display().lower()} while it started "
        f"({execution.error}); the execution Assets had created meanwhile is cancelled."
    )


def give_up_stopped_starts() -> int:
    """End the starts whose process stopped half-way (a web request or command killed or
    timed out while Assets took long): left PENDING, each would refuse every later import of
    its source as "already running". How many were ended.

    A start takes at most a few Assets calls (report, push, start with retries), each within
    HTTP_TIMEOUT: one pending for STARTS_GIVEN_UP_AFTER_TIMEOUTS of them has stopped.
    """
    since = timezone.now() - timedelta(
        seconds=STARTS_GIVEN_UP_AFTER_TIMEOUTS * settings.HTTP_TIMEOUT
    )
    stopped = Execution.objects.select_related("source").filter(
        state=Execution.State.PENDING, updated_at__lt=since
    )
    ended = 0
    for execution in stopped[:100]:
        if execution.assets_execution_id:
            # Assets has it: failing it tells Assets too, which frees the import source.
            fail_execution(
                execution=execution,
                reason="The import did not start: the process starting it stopped after Assets "
                "had created the execution. Start the import again.",
            )
        elif Execution.objects.of(execution).refuse(reason=STOPPED_START):
            notifications.notify_execution_finished(execution)
        ended += 1
    return ended


STOPPED_START = (
    "The import did not start: the process starting it stopped before Assets answered (a web "
    "request or command killed or timed out while Assets took long). Start the import "
    "again. If Assets created the execution all the same, it refuses the next start (409) "
    "until that execution times out there, or is cancelled in Assets."
)


def _check_startable(source: ImportSource) -> None:
    """Raise ImportRefused when the source cannot import: disabled, or without a valid mapping
    (one that breaks only rules newer than it imports, noted: `stored_mapping_warning`)."""
    if not source.enabled:
        raise ImportRefused(f"Source '{source}' is disabled: enable it to import.")
    if not source.mapping:
        raise ImportRefused(
            f"Source '{source}' has no mapping: {HOW_TO_ADD_A_MAPPING}, then push it to Assets."
        )
    problems, _ = split_newer_rules(validate_document(source.mapping))
    if problems:
        raise ImportRefused(f"The mapping of '{source}' is not valid: {problems[0]}")


# A trigger repeated within this window (Assets retrying, or two calls at once) is the same run.
DUPLICATE_TRIGGER_WINDOW = timedelta(minutes=10)


def scheduled_refusal_told(source: ImportSource) -> bool:
    """Inside a transaction: whether a scheduled run of the source refused now is told to
    the channels: once for a run Assets asks for again and again, not again within the
    trigger window (decided under the source's lock: two calls at once would each find no
    refusal before)."""
    lock_source(source)
    return not Execution.objects.filter(
        source=source,
        trigger=Execution.Trigger.SCHEDULE,
        state=Execution.State.REFUSED,
        created_at__gte=timezone.now() - DUPLICATE_TRIGGER_WINDOW,
    ).exists()


def _refuse(execution: Execution, reason: str, *, another_import_running: bool = False) -> None:
    """The start refused, in the history, and told to the channels (a scheduled run once);
    `another_import_running`: refused for that, it is no failure in a streak."""
    with transaction.atomic():
        scheduled = execution.trigger == Execution.Trigger.SCHEDULE
        told = not scheduled or scheduled_refusal_told(execution.source)
        refused = Execution.objects.of(execution).refuse(
            reason=reason, alert_wanted=told, another_import_running=another_import_running
        )
    if refused and told:
        notifications.notify_execution_finished(execution)


def recorded_refusal(reason: str, *, running: bool = False) -> ImportRefused:
    """A refusal whose execution row already tells the story (REFUSED or FAILED);
    `running`: because Assets counts another import of the source as running."""
    refusal = ImportAlreadyRunning(reason) if running else ImportRefused(reason)
    refusal.recorded = True
    return refusal


def _untold_end(source: ImportSource, starting: Execution) -> Execution | None:
    """The latest import of the source whose end Assets could not be told yet: Assets
    refuses a new execution while it counts that one as running."""
    return (
        Execution.objects.filter(source=source, failure_report_pending=True)
        .exclude(pk=starting.pk)
        .order_by("-pk")
        .first()
    )


def fail_execution(*, execution: Execution, reason: str) -> Execution:
    """Fail an open execution once, stop its chunks, and report the reason to Assets."""
    reason = scrub_secrets(reason, execution.source)
    if Execution.objects.of(execution).fail(reason=reason):
        ChunkJob.objects.filter(execution=execution).cancel_queued()
        execution.refresh_from_db()
        if execution.assets_execution_id:
            _report_failure(execution, reason)
        # Last: a cluster's task sends the alert itself, and a channel slow to answer would
        # hold back the stop of the import's pages and the report Assets waits for.
        notifications.notify_execution_finished(execution)
    execution.refresh_from_db()
    return execution


def ended_in_assets(execution: Execution, refusal: AssetsError) -> bool:
    """Whether a page refused for good (400, 404, 409, 410) was refused because the
    execution is over in Assets (cancelled there, or timed out): then the import fails
    saying so, and Assets, which ended it, is told nothing more. Any other refusal (or a
    status that cannot be read) is the page's own, and False."""
    if not refusal.permanent or refusal.status not in (400, 404, 409, 410):
        return False
    try:
        status = AssetsClient.for_source(execution.source).get_execution_status(
            execution.assets_execution_id
        )
    except AssetsError:
        return False
    word = (status.status or "").upper()
    if outcome_of(word) is None:  # it takes data still, or says nothing this app knows
        return False
    reason = (
        f"Assets ended the import itself while its pages were still being sent (it reports "
        f"it {word}: cancelled or timed out in Assets) and refused its pages from then on. "
        "Run the import again; if it happens again, look at the import source's history in "
        "Assets."
    )
    if Execution.objects.of(execution).fail(reason=reason):
        # Ended there: a failure report would be refused, and a cancel is not needed.
        Execution.objects.filter(pk=execution.pk).update(failure_reported_at=timezone.now())
        ChunkJob.objects.filter(execution=execution).cancel_queued()
        notifications.notify_execution_finished(execution)
    return True


def _report_failure(execution: Execution, reason: str) -> bool:
    """Tell Assets (True once it heard); when it cannot be reached or is busy, tell it later
    (`report_pending_failures`): until it hears, it counts the import as running and refuses
    the source's next one.

    Assets takes a failure report only while the execution is INGESTING; once it is
    PROCESSING it answers 400. Either way the local failure stands and is not hidden.
    """
    client = AssetsClient.for_source(execution.source)
    if _tell_assets(
        execution,
        lambda: client.report_failure(execution.assets_execution_id, reason),
        what="failure not recorded in Assets history",
    ):
        return True
    execution.refresh_from_db(
        fields=["failure_report_pending", "completed_at", "completion_attempts"]
    )
    if execution.failure_report_pending or execution.completed_at is not None:
        return False  # told again later; or Assets has all the pages, and processes them
    if execution.completion_attempts and _completed_maybe_taken(execution):
        # "Completed" went unanswered and Assets may have taken it: a cancel now would
        # throw away the records it is writing. It refuses the report, so it is not waiting.
        logger.warning(
            "execution %s: not cancelled in Assets, which may be writing its records",
            execution.pk,
        )
        return False
    # Refused for good (a reason it does not take): Assets would go on waiting for pages,
    # and refuse the source's next import as long. The execution is cancelled there instead.
    return _cancel_in_assets(execution)


def _cancel_in_assets(execution: Execution) -> bool:
    """Cancel the execution in Assets too (True once it did); else tell it later, as a
    failure: until then Assets counts the import as running and refuses the next one."""
    client = AssetsClient.for_source(execution.source)
    return _tell_assets(
        execution,
        lambda: client.cancel_execution(execution.assets_execution_id),
        what="cancel in Assets failed",
    )


def _tell_assets(execution: Execution, call, *, what: str) -> bool:
    """Tell Assets how an execution ended (True once it heard, and when is recorded). When
    it cannot be reached, is busy, or refuses the token (which an operator may replace), it
    is told again later."""
    try:
        call_with_retries(call)
    except AssetsError as error:
        again = not error.permanent or isinstance(error, AssetsAuthError)
        logger.warning(
            "execution %s: %s%s: %s",
            execution.pk,
            what,
            " (told again later)" if again else "",
            scrub_secrets(error.message, execution.source),
        )
        Execution.objects.filter(pk=execution.pk).update(failure_report_pending=again)
        return False
    Execution.objects.filter(pk=execution.pk).update(
        failure_report_pending=False, failure_reported_at=timezone.now()
    )
    return True


def report_pending_failures(*, source: ImportSource | None = None) -> int:
    """Tell Assets of the failures and cancels it could not be told of when they happened (of
    one source, or of all); given up a day after. How many were told."""
    told_ends = [Execution.State.FAILED, Execution.State.CANCELLED, Execution.State.REFUSED]
    pending = Execution.objects.filter(
        state__in=told_ends, failure_report_pending=True
    ).select_related("source")
    if source is not None:
        pending = pending.filter(source=source)
    told = 0
    for execution in pending:
        if execution.finished_at and timezone.now() - execution.finished_at > REPORT_GIVE_UP_AFTER:
            Execution.objects.filter(pk=execution.pk).update(failure_report_pending=False)
            continue
        if execution.state != Execution.State.FAILED:  # cancelled, or refused while starting
            told += _cancel_in_assets(execution)
        else:
            told += _report_failure(execution, execution.error or "The import failed.")
    return told


def cancel_execution(*, execution: Execution, by: str = "") -> Execution:
    """Stop an import: no further chunks run, and Assets cancels its side. `by`: who
    cancelled it, for the import's history.

    NotCancellable once it has ended, or once Assets writes its records: Assets may finish
    them all the same, and the history would say CANCELLED of records that arrived.
    """
    execution.refresh_from_db()
    if execution.completion_attempts and execution.state in Execution.CANCELLABLE_STATES:
        # "Completed" was posted and handed back: Assets may have taken it all the same.
        refusal = _completed_maybe_taken(execution)
        if refusal:
            raise NotCancellable(refusal)
    # Only as the status was read: not if "completed" was posted again meanwhile.
    unchanged = Execution.objects.of(execution).filter(
        completion_attempts=execution.completion_attempts
    )
    if not unchanged.cancel(reason=f"Cancelled by {by or 'an operator'}."):
        execution.refresh_from_db()
        raise NotCancellable(why_not_cancellable(execution))
    ChunkJob.objects.filter(execution=execution).cancel_queued()
    if execution.assets_execution_id:
        _cancel_in_assets(execution)
    execution.refresh_from_db()
    return execution


def why_not_cancellable(execution: Execution) -> str:
    """What an operator is told of an import that can no longer be cancelled."""
    if execution.state in Execution.OPEN_STATES:
        return f"Import #{execution.pk} can no longer be cancelled: " + _assets_finishing(execution)
    return f"Import #{execution.pk} had already ended ({execution.get_state_display()})."


def _completed_maybe_taken(execution: Execution) -> str:
    """Why an import whose "completed" went unanswered is not cancelled ("" if Assets says
    it still takes data): cancelled now, Assets may write its records all the same."""
    client = AssetsClient.for_source(execution.source)
    try:
        status = client.get_execution_status(execution.assets_execution_id).status
    except AssetsError as error:
        return (
            f"Import #{execution.pk} was not cancelled: every page was sent and 'completed' "
            "posted, but Assets' answer did not arrive, and Assets cannot say now whether it "
            f"took it ({scrub_secrets(error.message, execution.source)}). The import goes on; "
            "try again in a minute if it has not ended."
        )
    if status == "INGESTING":
        return ""
    return (
        f"Import #{execution.pk} can no longer be cancelled: every page was sent, and Assets "
        f"took 'completed' (it reports {status[:40]}). Its outcome shows here once Assets "
        "reports it."
    )


def _assets_finishing(execution: Execution) -> str:
    """Why an import past its last page is left to end: Assets is told, or writing."""
    if execution.state == Execution.State.COMPLETING:
        return (
            "every page was sent, and Assets is being told so. Its outcome shows here once "
            "Assets reports it."
        )
    sent = execution.completed_at
    when = f" at {timezone.localtime(sent):%H:%M:%S %Z}" if sent else ""
    return (
        f"every page was sent{when}, and Assets is writing the records. Its outcome shows here "
        "once Assets reports it."
    )
