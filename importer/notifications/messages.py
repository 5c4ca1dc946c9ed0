"""What an alert says: a subject, a text for people (e-mail body, chat message) and the
structured fields webhooks receive beside the text (formats.py shapes them per receiver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from importer.models import Alert, ChunkJob, Execution, ImportSource, Schedule
from importer.public import public_url
from importer.redaction import redact_for

Kind = Alert.Kind
State = Execution.State

HEADLINES = {
    Kind.FAILED: "failed",
    Kind.REFUSED: "was refused",
    Kind.STALLED: "is stalled",
    Kind.RESUMED: "is moving again",
    Kind.DONE: "is done",
}


@dataclass
class Content:
    subject: str
    text: str
    details: dict = field(default_factory=dict)


def admin_url(name: str, pk: int) -> str:
    return public_url(f"admin:importer_{name}_change", pk)


def when_text(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


def iso_time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _source_fields(source: ImportSource) -> dict:
    return {"id": source.pk, "name": source.name, "url": admin_url("importsource", source.pk)}


def _waiting_on(execution: Execution) -> str:
    """What the import's pages wait for, as the one waiting longest says it (a rate limit, a
    source that keeps failing): "" when none says."""
    waiting = (
        execution.chunks.filter(state=ChunkJob.State.QUEUED, next_attempt_at__isnull=False)
        .exclude(error="")
        .order_by("next_attempt_at")
    )
    count = waiting.count()
    first = waiting.first()
    if first is None:
        return ""
    error = redact_for(execution.source, first.error)[:300]
    return (
        f" {count} page{'s' if count != 1 else ''} wait{'s' if count == 1 else ''} to be "
        f"tried again; page {first.index + 1}: {error}"
    )


def execution_content(
    execution: Execution, kind: str, *, told_stalled_at: datetime | None = None
) -> Content:
    """The message for an execution that failed, was refused, stalled or is done
    (`told_stalled_at`: when its stall was told, for one done since)."""
    source = execution.source
    trigger = execution.trigger_word
    link = admin_url("execution", execution.pk)
    reason = redact_for(source, execution.error or "")
    if kind == Kind.STALLED and not reason:
        minutes = settings.STALLED_AFTER_SECONDS // 60
        reason = f"No chunk made progress for {minutes} minutes." + _waiting_on(execution)
    subject = f"assets-sync: the {trigger} import of {source.name} {HEADLINES[kind]}"
    # The state is named where the headline does not say it already (a stalled import).
    state = f" ({execution.state})" if kind == Kind.STALLED else ""
    lines = [f"The {trigger} import of '{source.name}' {HEADLINES[kind]}{state}."]
    if reason:
        lines.append(f"Reason: {reason}")
    if execution.notice and kind != Kind.REFUSED:
        lines.append(f"Note: {redact_for(source, execution.notice)}")
    if told_stalled_at is not None and kind == Kind.RESUMED:
        lines.append(f"It was told stalled {when_text(told_stalled_at)}; its pages move again.")
    elif told_stalled_at is not None:
        lines.append(f"It was told stalled {when_text(told_stalled_at)}; it went on to the end.")
    if kind == Kind.REFUSED:  # it never started: there is nothing to count
        lines.append(
            f"Asked for {when_text(execution.created_at)}, refused "
            f"{when_text(execution.finished_at or execution.created_at)}. Nothing was imported."
        )
    else:
        lines.append(
            f"Records: {execution.records_fetched} fetched, {execution.records_submitted} "
            f"submitted, {execution.records_skipped} left out; {execution.pages_submitted} "
            "pages submitted."
        )
        lines.append(
            f"Started {when_text(execution.started_at or execution.created_at)}, "
            f"finished {when_text(execution.finished_at) if execution.finished_at else '-'}."
        )
    lines.append(f"Details: {link}")
    details = {
        "event": f"execution.{kind}",
        "source": _source_fields(source),
        "execution": {
            "id": execution.pk,
            "state": execution.state,
            "trigger": trigger,
            "reason": reason,
            "records_fetched": execution.records_fetched,
            "records_submitted": execution.records_submitted,
            "records_left_out": execution.records_skipped,
            "pages_submitted": execution.pages_submitted,
            "created_at": iso_time(execution.created_at),
            "started_at": iso_time(execution.started_at),
            "finished_at": iso_time(execution.finished_at),
            "stalled_since": iso_time(execution.stalled_since),
            "url": link,
        },
    }
    return Content(subject, "\n".join(lines), details)


def stale_content(
    schedule: Schedule, *, last_success: datetime | None, due: datetime, interval: timedelta
) -> Content:
    source = schedule.source
    frequency = schedule.get_frequency_display().lower()
    subject = f"assets-sync: {source.name} is stale"
    text = "\n".join(
        [
            f"'{source.name}' has a {frequency} schedule, but its last successful import was "
            f"{'at ' + when_text(last_success) if last_success else 'never'}: one was due by "
            f"{when_text(due)} (the interval plus {settings.STALE_GRACE_SECONDS // 60} minutes).",
            "Check the schedule in Assets, the source's token and the webtrigger's reachability.",
            f"Source: {admin_url('importsource', source.pk)}",
        ]
    )
    details = {
        "event": "source.stale",
        "source": _source_fields(source),
        "schedule": {
            "frequency": schedule.frequency,
            "interval_seconds": int(interval.total_seconds()),
            "grace_seconds": settings.STALE_GRACE_SECONDS,
            "in_sync": schedule.in_sync,
        },
        "last_success_at": iso_time(last_success),
        "due_at": iso_time(due),
    }
    return Content(subject, text, details)


def recovered_content(source: ImportSource, execution: Execution, stale_since: datetime) -> Content:
    link = admin_url("execution", execution.pk)
    subject = f"assets-sync: {source.name} has recovered"
    text = "\n".join(
        [
            f"'{source.name}' imported successfully again at {when_text(execution.finished_at)} "
            f"(stale since {when_text(stale_since)}).",
            f"Records: {execution.records_submitted} submitted, {execution.records_skipped} "
            "left out.",
            f"Details: {link}",
        ]
    )
    details = {
        "event": "source.recovered",
        "source": _source_fields(source),
        "execution": {
            "id": execution.pk,
            "state": execution.state,
            "trigger": execution.trigger_word,
            "finished_at": iso_time(execution.finished_at),
            "url": link,
        },
        "stale_since": iso_time(stale_since),
    }
    return Content(subject, text, details)


def channel_check_content(user: str) -> Content:
    text = (
        f"A test message from assets-sync, sent by {user or 'staff'} from the admin: "
        "this channel works."
    )
    return Content("assets-sync: test message", text, {"event": "test"})
