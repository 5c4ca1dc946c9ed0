"""Deciding what people are told: one alert per event, delivered to the channels that want it.

The import flow only queues a task (after commit) when an execution ends or stalls; the task
records the alert under a unique key, so a task delivered twice, or housekeeping catching up
on a lost one, raises nothing new. Stale sources are found by housekeeping, every minute.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from importer import work_queue
from importer.models import (
    Alert,
    Delivery,
    Execution,
    ImportSource,
    NotificationChannel,
    Schedule,
)
from importer.notifications.bursts import folds, tell_folded_alerts
from importer.notifications.delivery import requeue_lost_deliveries
from importer.notifications.inline import deliver_now_or_queue, delivering_here, sends_here
from importer.notifications.messages import (
    Content,
    channel_check_content,
    execution_content,
    recovered_content,
    stale_content,
)
from importer.notifications.staleness import SCHEDULE_INTERVALS, overdue_sources
from importer.notifications.streaks import (
    TOLD_FAILURES,
    failure_streak,
    last_told,
    runs_by_end,
)

logger = logging.getLogger(__name__)

Kind = Alert.Kind
State = Execution.State
DState = Delivery.State
EXECUTION_ALERTS = {State.FAILED: Kind.FAILED, State.REFUSED: Kind.REFUSED, State.DONE: Kind.DONE}
# How long housekeeping looks back for a finished execution whose alert task was lost.
CATCH_UP_WINDOW = timedelta(hours=1)


# --- called by the import flow ------------------------------------------------------------


def notify_execution_finished(execution: Execution) -> None:
    """The execution reached a final state: its alert is decided by a task, after commit."""
    _queue_after_commit(execution.pk, "finished")


def notify_execution_stalled(execution: Execution) -> None:
    """The execution was just flagged stalled."""
    _queue_after_commit(execution.pk, "stalled")


def _queue_after_commit(execution_id: int, event: str) -> None:
    transaction.on_commit(lambda: _tell_here_or_queue(execution_id, event))


def _tell_here_or_queue(execution_id: int, event: str) -> None:
    """A task of the cluster that ended or stalled the import raises its alert and makes each
    delivery's first attempt itself (`delivering_here`): queued, they would wait behind every
    lane of the imports running then, a minute or more while a big import runs. A web
    request, a command or the ticker's thread queues the task instead, as does a raise that
    fails here (a broker that cannot take it fails no import: housekeeping catches it up)."""
    if not sends_here():
        work_queue.enqueue_execution_alert(execution_id, event)
        return
    try:
        execution = Execution.objects.select_related("source").filter(pk=execution_id).first()
        if execution is not None:
            raise_execution_alert(execution=execution, event=event)
    except Exception:
        logger.exception("execution %s: its alert is left to a task", execution_id)
        work_queue.enqueue_execution_alert(execution_id, event)


# --- alerts -------------------------------------------------------------------------------


def channels_for(source: ImportSource | None, kind: str):
    channels = NotificationChannel.objects.filter(enabled=True)
    if source is not None:
        channels = channels.filter(Q(all_sources=True) | Q(sources=source))
    if kind == Kind.DONE:
        channels = channels.filter(notify_on_done=True)
    return channels.distinct()


def raise_alert(
    *,
    key: str,
    kind: str,
    content: Content,
    source: ImportSource | None = None,
    execution: Execution | None = None,
    channels=None,
) -> Alert | None:
    """Record the alert and queue one delivery per channel (or fold it into the channel's
    next summary, bursts.py); None if it was raised before."""
    channels = list(channels_for(source, kind) if channels is None else channels)
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                key=key,
                kind=kind,
                source=source,
                execution=execution,
                subject=content.subject[:300],
                text=content.text,
                details=content.details,
            )
            for channel in channels:
                if folds(channel, kind):
                    Delivery.objects.create(alert=alert, channel=channel, state=DState.FOLDED)
                    continue
                delivery = Delivery.objects.create(alert=alert, channel=channel)
                transaction.on_commit(partial(deliver_now_or_queue, delivery.pk))
    except IntegrityError:
        return None  # the same event, told already
    return alert


def raise_execution_alert(*, execution: Execution, event: str) -> Alert | None:
    """The alert for an execution that ended (FAILED, REFUSED, DONE) or was flagged stalled.
    A cluster's task makes the first attempts itself (`delivering_here`): an alert task that
    waited its turn behind the imports' lanes does not queue its deliveries behind them."""
    with delivering_here():
        return _raise_execution_alert(execution, event)


def _raise_execution_alert(execution: Execution, event: str) -> Alert | None:
    if event == "stalled":
        return _raise_stall_alert(execution)
    kind = EXECUTION_ALERTS.get(execution.state)
    if kind is None:
        return None  # cancelled: someone did it on purpose
    if kind == Kind.DONE:
        return _raise_done_alert(execution)
    return _raise_failure_alert(execution, kind)


def _raise_stall_alert(execution: Execution) -> Alert | None:
    # With FAIL_STALLED_EXECUTIONS the stall of pages becomes a failure, and that is what
    # is told; a processing import whose outcome cannot be read is not failed for it.
    pages_stalled = execution.state == State.INGESTING and not settings.FAIL_STALLED_EXECUTIONS
    if not pages_stalled and execution.state != State.PROCESSING:
        return None
    if execution.stalled_since is None:
        return None
    key = f"execution-{execution.pk}-{Kind.STALLED}"
    if execution.state == State.PROCESSING:
        # A processing import's outcome that cannot be read is a stall of its own, told
        # though the import was told stalled while its pages went.
        key += "-processing"
    else:
        key += _cycle(execution)  # stalled again after it was told moving again
    return raise_alert(
        key=key,
        kind=Kind.STALLED,
        source=execution.source,
        execution=execution,
        content=execution_content(execution, Kind.STALLED),
    )


def _raise_failure_alert(execution: Execution, kind: str) -> Alert | None:
    """A failed or refused run, with the streak it belongs to. The first failure after a
    success is sent; the next ones only once ALERT_REPEAT_HOURS have passed since the streak
    was last sent (each says how many runs failed in a row). One held back is kept, sent to
    no channel, so the Alerts list shows it and housekeeping does not take it for lost.
    A run refused because another import of the source was running is no failure of the
    source: it is told on its own, in no streak."""
    with transaction.atomic():
        _lock(execution.source)  # two failures of one source at once: one is the first
        streak = None if execution.another_import_running else failure_streak(execution)
        told_at = last_told(streak, besides=execution) if streak else None
        repeat = timedelta(hours=settings.ALERT_REPEAT_HOURS)
        held_back = told_at is not None and timezone.now() - told_at < repeat
        return raise_alert(
            key=f"execution-{execution.pk}-{kind}",
            kind=kind,
            source=execution.source,
            execution=execution,
            content=execution_content(
                execution, kind, streak=streak, held_back_after=told_at if held_back else None
            ),
            channels=[] if held_back else None,
        )


def _raise_done_alert(execution: Execution) -> Alert | None:
    """A DONE that ends a failure streak or a stale spell is told as "recovered" to every
    channel of the source; else channels that ask for every success hear it is done, and
    after a stall was told, every channel that heard of it ("it went on to the end")."""
    # The latest stall: the one its channels last heard of.
    stalled = (
        Alert.objects.filter(execution=execution, kind=Kind.STALLED).order_by("-created_at").first()
    )
    told_stalled_at = stalled.created_at if stalled else None
    recovered = tell_recovered(
        source=execution.source, done=execution, told_stalled_at=told_stalled_at
    )
    if (
        recovered is not None
        or Alert.objects.filter(execution=execution, kind=Kind.RECOVERED).exists()
    ):
        return recovered
    channels = channels_for(execution.source, Kind.STALLED if stalled else Kind.DONE)
    if not channels.exists():
        return None
    return raise_alert(
        key=f"execution-{execution.pk}-{Kind.DONE}",
        kind=Kind.DONE,
        source=execution.source,
        execution=execution,
        content=execution_content(execution, Kind.DONE, told_stalled_at=told_stalled_at),
        channels=channels,
    )


def _lock(source: ImportSource) -> None:
    """Inside a transaction: alerts about one source are decided one at a time."""
    list(ImportSource.objects.select_for_update().filter(pk=source.pk).values_list("pk"))


def _pages_stalls():
    """The alerts that told an import's pages stalled (not its outcome unread)."""
    return Alert.objects.filter(kind=Kind.STALLED).exclude(key__endswith="-processing")


def _stall_not_over():
    """An alert that told the import (OuterRef "pk") stalled, with no "moving again" since."""
    moving_again = Alert.objects.filter(
        execution=OuterRef("execution"), kind=Kind.RESUMED, created_at__gte=OuterRef("created_at")
    )
    return _pages_stalls().filter(execution=OuterRef("pk")).filter(~Exists(moving_again))


def _cycle(execution: Execution) -> str:
    """The key suffix of an import's next stall or "moving again": an import may stall again
    after it moved again, and each turn is told (`-2`, `-3`, ...; nothing for the first)."""
    resumed = Alert.objects.filter(execution=execution, kind=Kind.RESUMED).count()
    return f"-{resumed + 1}" if resumed else ""


def tell_resumed_executions() -> int:
    """Imports told stalled whose pages move again: the channels that heard of the stall hear
    it is over, once per stall, rather than wonder until the import ends (past its pages, its
    end is told to them). How many were told."""
    moving = (
        Execution.objects.select_related("source")
        .filter(state=State.INGESTING, stalled_since__isnull=True)
        .filter(Exists(_stall_not_over()))
    )
    told = 0
    for execution in moving[:200]:
        stall = _pages_stalls().filter(execution=execution).latest("created_at")
        told += (
            raise_alert(
                key=f"execution-{execution.pk}-resumed" + _cycle(execution),
                kind=Kind.RESUMED,
                source=execution.source,
                execution=execution,
                content=execution_content(
                    execution, Kind.RESUMED, told_stalled_at=stall.created_at
                ),
                channels=channels_for(execution.source, Kind.STALLED),
            )
            is not None
        )
    return told


def catch_up_execution_alerts() -> int:
    """Raise the alerts of recent executions whose alert task was lost (a dead worker with
    the Redis broker, a broker down at the time); already raised ones are left alone."""
    alerted = Alert.objects.filter(execution=OuterRef("pk"))
    ended = Q(state__in=[State.FAILED, State.REFUSED])
    if NotificationChannel.objects.filter(enabled=True, notify_on_done=True).exists():
        ended |= Q(state=State.DONE)
    else:  # done after it was told stalled: told to the channels that heard of the stall
        ended |= Q(state=State.DONE) & Exists(alerted.filter(kind=Kind.STALLED))
    # Done after failures: told "recovered".
    outcome_before = (
        runs_by_end(OuterRef("source"))
        .filter(finished_at__lt=OuterRef("finished_at"))
        .filter(Q(state=State.DONE) | TOLD_FAILURES)
        .values("state")[:1]
    )
    ended |= Q(state=State.DONE, outcome_before__in=[State.FAILED, State.REFUSED])
    # A stall told before does not count: the end is told too.
    told_the_end = alerted.filter(kind__in=[Kind.FAILED, Kind.REFUSED, Kind.DONE, Kind.RECOVERED])
    missing = list(
        Execution.objects.select_related("source")
        .annotate(outcome_before=Subquery(outcome_before))
        .filter(ended, finished_at__gte=timezone.now() - CATCH_UP_WINDOW)
        .filter(alert_wanted=True)
        .filter(~Exists(told_the_end))[:200]
    )
    if not settings.FAIL_STALLED_EXECUTIONS:
        missing += list(
            Execution.objects.select_related("source")
            .filter(state=State.INGESTING, stalled_since__isnull=False)
            # A stall told before it was told moving again is over: this one is untold.
            .filter(~Exists(_stall_not_over()))[:200]
        )
    # A processing import whose outcome cannot be read is told apart (`-processing`).
    missing += list(
        Execution.objects.select_related("source")
        .filter(state=State.PROCESSING, stalled_since__isnull=False)
        .filter(~Exists(alerted.filter(kind=Kind.STALLED, key__endswith="-processing")))[:200]
    )
    raised = 0
    for execution in missing:
        in_progress = execution.state in (State.INGESTING, State.PROCESSING)
        event = "stalled" if in_progress else "finished"
        raised += raise_execution_alert(execution=execution, event=event) is not None
    return raised


# --- stale sources ------------------------------------------------------------------------


def check_staleness() -> list[Alert]:
    """Alert once for each source that became stale; tell when a stale one recovered."""
    open_alerts = Alert.objects.filter(kind=Kind.STALE, resolved_at__isnull=True)
    for source in ImportSource.objects.filter(pk__in=open_alerts.values("source")):
        tell_recovered(source=source)
    still_open = set(open_alerts.values_list("source_id", flat=True))
    raised = []
    for overdue in overdue_sources():
        source = overdue.schedule.source
        if source.pk in still_open:
            continue
        stamp = int(overdue.last_success.timestamp()) if overdue.last_success else 0
        key = f"source-{source.pk}-stale-{stamp}"
        # An alert closed while the source ran on no schedule (disabled, its schedule deleted)
        # does not silence the next one: stale again since the same success is news again.
        closed = Alert.objects.filter(Q(key=key) | Q(key__startswith=f"{key}-")).count()
        alert = raise_alert(
            key=f"{key}-{closed}" if closed else key,
            kind=Kind.STALE,
            source=source,
            content=stale_content(
                overdue.schedule,
                last_success=overdue.last_success,
                due=overdue.due,
                interval=overdue.interval,
            ),
        )
        if alert is not None:
            raised.append(alert)
    return raised


def tell_recovered(
    *,
    source: ImportSource,
    done: Execution | None = None,
    told_stalled_at=None,
) -> Alert | None:
    """A source imported successfully again: "recovered" is told once, to every channel of
    the source, naming what the success ended (its failure streak, its stale spell).

    `done`: the import that just ended DONE (its alert task); without it (housekeeping, a
    source with an open stale alert) the latest success, told only if it ends a stale
    spell. Its stale alert is closed, silently when the source no longer runs on a
    schedule. Decided under the source's lock: the import's alert task and housekeeping
    may both get here for the same success, and one tells all it ended.
    """
    with transaction.atomic():
        _lock(source)
        success = done or (
            Execution.objects.filter(source=source, state=State.DONE, finished_at__isnull=False)
            .order_by("-finished_at")
            .first()
        )
        stale = _close_stale_alerts(source, success)
        streak = failure_streak(success) if success is not None else None
        if stale is None and (done is None or streak is None):
            return None
        return raise_alert(
            key=f"execution-{success.pk}-recovered",
            kind=Kind.RECOVERED,
            source=source,
            execution=success,
            content=recovered_content(
                success, streak=streak, stale=stale, told_stalled_at=told_stalled_at
            ),
            channels=channels_for(source, Kind.FAILED),
        )


def _close_stale_alerts(source: ImportSource, success: Execution | None) -> Alert | None:
    """Close the source's open stale alerts the success came after (the latest of them is
    returned, to be told recovered), and silently those of a source no longer scheduled."""
    ended = None
    for stale in Alert.objects.filter(
        kind=Kind.STALE, resolved_at__isnull=True, source=source
    ).order_by("created_at"):
        known = parse_datetime(stale.details.get("last_success_at") or "")
        imported_again = success is not None and (known is None or success.finished_at > known)
        scheduled = (
            source.enabled
            and Schedule.objects.filter(
                source=source, frequency__in=list(SCHEDULE_INTERVALS)
            ).exists()
        )
        if not imported_again and scheduled:
            continue
        if not Alert.objects.filter(pk=stale.pk, resolved_at__isnull=True).update(
            resolved_at=timezone.now()
        ):
            continue  # another worker closed it
        if imported_again:
            ended = stale
    return ended


# --- housekeeping and the admin ---------------------------------------------------------


def look_after_notifications() -> None:
    """Housekeeping, every minute: lost alerts, stale sources, lost deliveries. A problem here
    is logged and never stops the rest of housekeeping. Its task makes the alerts' first
    attempts itself (`delivering_here`): queued, they would wait behind the imports' lanes."""
    steps = (
        catch_up_execution_alerts,
        tell_resumed_executions,
        check_staleness,
        requeue_lost_deliveries,
        tell_folded_alerts,
    )
    with delivering_here():  # one budget for the whole round (`inline_budget`)
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("alerts: %s failed", step.__name__)


def send_check_message(*, channel: NotificationChannel, user: str = "") -> Alert:
    """A test message through one channel, so staff see that it works."""
    return raise_alert(
        key=f"test-{channel.pk}-{uuid.uuid4().hex}",
        kind=Kind.TEST,
        content=channel_check_content(user),
        channels=[channel],
    )


def prune_alerts(*, days: int) -> int:
    """Delete alerts older than `days` (and their deliveries); open stale alerts stay."""
    old = Alert.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).exclude(
        kind=Kind.STALE, resolved_at__isnull=True
    )
    _, deleted = old.delete()
    return deleted.get(Alert._meta.label, 0)
