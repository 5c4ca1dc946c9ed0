"""What an alert says: a subject, a text for people (e-mail body, chat message) and the
structured fields webhooks receive beside the text (formats.py shapes them per receiver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from importer.models import Alert, ChunkJob, Execution, ImportSource, Schedule
from importer.notifications.streaks import FailureStreak
from importer.progress import nested_items_left_out
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


def duration_text(seconds: float) -> str:
    """ "45 seconds", "1 minute", "31 minutes", "2 h 05 min"."""
    seconds = max(int(seconds), 0)
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


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


def _no_progress(execution: Execution) -> str:
    """Why an ingesting import is told stalled: since when no page went in (its last stamp:
    the stall's flag does not move it), and what the pages wait for."""
    since = execution.updated_at
    return (
        f"No page has made progress since {when_text(since)} "
        f"({duration_text((timezone.now() - since).total_seconds())} ago)." + _waiting_on(execution)
    )


STALL_ADVICE = (
    "What to do: check that the source and Assets answer and that the task cluster runs "
    "(/health/). The import goes on by itself once its pages move again (you will be told); "
    "to give it up, cancel it on its page and run it again later."
)


def _streak_line(streak: FailureStreak) -> str:
    last = when_text(streak.last_success)
    if streak.runs == 1:
        return f"Last successful import: {last}."
    return (
        f"Failing since {when_text(streak.since)}: {streak.runs} failed runs in a row; "
        f"last success: {last}."
    )


def execution_content(
    execution: Execution,
    kind: str,
    *,
    told_stalled_at: datetime | None = None,
    streak: FailureStreak | None = None,
    held_back_after: datetime | None = None,
) -> Content:
    """The message for an execution that failed, was refused, stalled or is done
    (`told_stalled_at`: when its stall was told, for one done since; `streak`: the source's
    failures it belongs to; `held_back_after`: a failure not sent, its streak told then)."""
    source = execution.source
    trigger = execution.trigger_word
    link = admin_url("execution", execution.pk)
    reason = redact_for(source, execution.error or "")
    pages_stalled = kind == Kind.STALLED and not reason
    if pages_stalled:
        reason = _no_progress(execution)
    subject = f"assets-sync: the {trigger} import of {source.name} {HEADLINES[kind]}"
    if streak is not None and streak.runs > 1:
        subject += f" ({ordinal(streak.runs)} failure in a row)"
    # The state is named where the headline does not say it already (a stalled import).
    state = f" ({execution.state})" if kind == Kind.STALLED else ""
    lines = [f"The {trigger} import of '{source.name}' {HEADLINES[kind]}{state}."]
    if reason:
        lines.append(f"Reason: {reason}")
    if pages_stalled:
        lines.append(STALL_ADVICE)
    if streak is not None:
        lines.append(_streak_line(streak))
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
        lines.append(_records_line(execution))
        lines.append(
            f"Started {when_text(execution.started_at or execution.created_at)}, "
            + (
                f"finished {when_text(execution.finished_at)}."
                if execution.finished_at
                else "still running."
            )
        )
    lines.append(f"Details: {link}")
    if held_back_after is not None:
        lines.append(
            f"Not sent: this streak of failures was sent {when_text(held_back_after)}; it "
            f"is sent again once {settings.ALERT_REPEAT_HOURS:g} h have passed "
            "(ALERT_REPEAT_HOURS), or when the source recovers."
        )
    details = {
        "event": f"execution.{kind}",
        "source": _source_fields(source),
        "execution": _execution_fields(execution, reason=reason),
    }
    if streak is not None:
        details.update(
            failing_since=iso_time(streak.since),
            failed_runs=streak.runs,
            last_success_at=iso_time(streak.last_success),
        )
    if held_back_after is not None:
        details["held_back"] = True
    return Content(subject, "\n".join(lines), details)


def _records_line(execution: Execution) -> str:
    """The counts of an import; its nested items left out (a computer's disks, sent without
    them) when there are some."""
    items = execution.items_skipped
    nested = f" (and {nested_items_left_out(items)})"
    return (
        f"Records: {execution.records_fetched} fetched, {execution.records_submitted} "
        f"submitted, {execution.records_skipped} left out{nested if items else ''}; "
        f"{execution.pages_submitted} pages submitted."
    )


def _execution_fields(execution: Execution, *, reason: str) -> dict:
    return {
        "id": execution.pk,
        "state": execution.state,
        "trigger": execution.trigger_word,
        "reason": reason,
        "records_fetched": execution.records_fetched,
        "records_submitted": execution.records_submitted,
        "records_left_out": execution.records_skipped,
        "items_left_out": execution.items_skipped,
        "pages_submitted": execution.pages_submitted,
        "created_at": iso_time(execution.created_at),
        "started_at": iso_time(execution.started_at),
        "finished_at": iso_time(execution.finished_at),
        "stalled_since": iso_time(execution.stalled_since),
        "url": admin_url("execution", execution.pk),
    }


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


def recovered_content(
    execution: Execution,
    *,
    streak: FailureStreak | None,
    stale: Alert | None,
    told_stalled_at: datetime | None = None,
) -> Content:
    """A source imported successfully again: what the success ended (its failure streak,
    its stale spell: when an import was due) and its last success before."""
    source = execution.source
    link = admin_url("execution", execution.pk)
    subject = f"assets-sync: {source.name} has recovered"
    lines = [
        f"'{source.name}' imported successfully again at {when_text(execution.finished_at)} "
        f"(a {execution.trigger_word} import)."
    ]
    details = {
        "event": "source.recovered",
        "source": _source_fields(source),
        "execution": _execution_fields(execution, reason=""),
        "failing_since": None,
        "failed_runs": 0,
        "due_at": None,
    }
    previous = None
    if streak is not None:
        lines.append(
            f"It had been failing since {when_text(streak.since)}: {streak.runs} failed "
            f"run{'s' if streak.runs != 1 else ''} in a row."
        )
        details.update(failing_since=iso_time(streak.since), failed_runs=streak.runs)
        previous = streak.last_success
    if stale is not None:
        due = parse_datetime(stale.details.get("due_at") or "")
        lines.append(f"It was stale: an import was due by {when_text(due)}.")
        details.update(due_at=iso_time(due), stale_since=iso_time(stale.created_at))
        if streak is None:
            previous = parse_datetime(stale.details.get("last_success_at") or "")
    lines.append(
        f"The success before was at {when_text(previous)}."
        if previous
        else "It had never imported successfully before."
    )
    details["previous_success_at"] = iso_time(previous)
    if told_stalled_at is not None:
        lines.append(f"It was told stalled {when_text(told_stalled_at)}; it went on to the end.")
    lines.append(_records_line(execution))
    lines.append(f"Details: {link}")
    return Content(subject, "\n".join(lines), details)


# A digest of missed alerts lists this many of them; the Alerts page has the rest.
MISSED_LISTED = 20


def missed_content(
    missed: list[Alert], *, channel: str, total: int, first: datetime, last: datetime
) -> Content:
    """What a channel working again is told of the alerts given up on it (`missed`: the first
    few, oldest first, of `total`, raised from `first` to `last`); named, as one person may
    read several channels' mail."""
    alerts = f"{total} alert{'s' if total != 1 else ''}"
    subject = f"assets-sync: {alerts} could not be delivered to the channel '{channel}'"
    lines = [
        f"{alerts} could not be delivered to the channel '{channel}' between "
        f"{when_text(first)} and {when_text(last)} (time zone "
        f"{timezone.get_current_timezone_name()}); each delivery's error is on the Alerts "
        "page. They were:"
    ]
    return _listing(subject, lines, missed, total=total, first=first, last=last, event="missed")


# A summary of alerts folded in a burst lists this many of them; the Alerts page has the rest.
SUMMARY_LISTED = 20
# What a summary's subject counts, by kind.
SUMMED_UP_AS = {
    Kind.FAILED: "failed imports",
    Kind.REFUSED: "refused imports",
    Kind.STALLED: "stalled imports",
    Kind.RESUMED: "imports moving again",
    Kind.DONE: "imports done",
    Kind.STALE: "stale sources",
    Kind.RECOVERED: "recovered sources",
}


def summary_content(
    listed: list[Alert], *, kinds: list[str], first: datetime, last: datetime, window: timedelta
) -> Content:
    """What a channel is told of the alerts folded while it had its fill of them
    (`listed`: the first few, oldest first; `kinds`: the kind of each folded alert; `window`:
    the time in which a channel is sent ALERT_BURST_LIMIT one by one)."""
    total = len(kinds)
    alerts = f"{total} more alert{'s' if total != 1 else ''}"
    counts = ", ".join(
        f"{kinds.count(kind)} {words}" for kind, words in SUMMED_UP_AS.items() if kind in kinds
    )
    subject = f"assets-sync: {alerts}: {counts}"
    minutes = int(window.total_seconds() // 60)
    span = (
        f"at {when_text(first)}"
        if when_text(first) == when_text(last)
        else f"between {when_text(first)} and {when_text(last)}"
    )
    lines = [
        f"{alerts} came {span} (time zone "
        f"{timezone.get_current_timezone_name()}), too many at once to send one by one "
        f"(this channel is sent {settings.ALERT_BURST_LIMIT} in {minutes} minutes, "
        "ALERT_BURST_LIMIT); each is on the Alerts page. They were:"
    ]
    return _listing(subject, lines, listed, total=total, first=first, last=last, event="summary")


def _listing(
    subject: str,
    lines: list[str],
    listed: list[Alert],
    *,
    total: int,
    first: datetime,
    last: datetime,
    event: str,
) -> Content:
    """A message about alerts (missed, or summed up): `lines` then a line per alert listed,
    how many more, and the link to every alert; its details name them (`event`: the key)."""
    link = public_url("admin:importer_alert_changelist")
    summary = event == "summary"  # a summary says what each was about, and where it is
    for alert in listed:
        source = alert.source.name if alert.source else "no source"
        what = _what_happened(alert) if summary else ""
        lines.append(
            f"- {alert.subject.removeprefix('assets-sync: ')} ({source}, "
            f"{when_text(alert.created_at)}){': ' + what if what else ''}"
        )
    if total > len(listed):
        lines.append(f"and {total - len(listed)} more.")
    lines.append(f"Every alert: {link}")
    named = [
        {
            "id": alert.pk,
            "kind": alert.kind,
            "subject": alert.subject,
            "source": alert.source.name if alert.source else None,
            "occurred_at": iso_time(alert.created_at),
            **({"url": _alert_url(alert)} if summary else {}),
        }
        for alert in listed
    ]
    details = {
        "event": f"channel.{event}",
        event: {
            "count": total,
            "first_at": iso_time(first),
            "last_at": iso_time(last),
            "alerts": named,
            "url": link,
        },
    }
    return Content(subject, "\n".join(lines), details)


def _what_happened(alert: Alert) -> str:
    """The first words of an alert's reason (secrets removed when it was raised): alerts
    with one cause show it at a glance."""
    reason = ((alert.details or {}).get("execution") or {}).get("reason") or ""
    reason = " ".join(reason.split())
    return reason if len(reason) <= 160 else reason[:159] + "…"


def _alert_url(alert: Alert) -> str | None:
    details = alert.details or {}
    for part in ("execution", "source"):
        url = (details.get(part) or {}).get("url")
        if url:
            return url
    return None


def channel_check_content(user: str) -> Content:
    text = (
        f"A test message from assets-sync, sent by {user or 'staff'} from the admin: "
        "this channel works."
    )
    return Content("assets-sync: test message", text, {"event": "test"})
