"""An execution: one import run in Assets, its counters, and its guarded state transitions."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Max, Min, Q, Value, When
from django.db.models.functions import Concat, Length
from django.utils import timezone

from importer.models.expressions import SecondsBetween
from importer.models.sources import ImportSource

# What an import's page and alerts keep of its notices, at most.
NOTICE_MAX_LENGTH = 2000


class ExecutionQuerySet(models.QuerySet):
    """Guarded state transitions: each moves only the rows still in the state it starts from,
    stamps `updated_at`, and says whether it won, so of two workers racing only one goes on.
    The moves every page makes (fetched, submitted) are in importer/page_sql.py."""

    def of(self, execution: "Execution") -> "ExecutionQuerySet":
        return self.filter(pk=execution.pk)

    def open(self) -> "ExecutionQuerySet":
        return self.filter(state__in=OPEN_STATES)

    def ingesting(self) -> "ExecutionQuerySet":
        return self.filter(state=ExecutionState.INGESTING)

    def stamp(self, **fields) -> bool:
        """Update the rows and their `updated_at` (progress, or a transition's fields)."""
        return bool(self.update(updated_at=timezone.now(), **fields))

    def add_notice(self, notice: str) -> bool:
        """Add a line to the notice in one statement: notes made at once (the start's, the
        first page's) are all kept, and a note made again (a page read again) once. Lines are
        kept whole: a note that no longer fits is left to the page's other messages."""
        notice = notice[:NOTICE_MAX_LENGTH]
        if not notice:
            return False
        held = (
            Q(notice=notice)
            | Q(notice__startswith=f"{notice}\n")
            | Q(notice__endswith=f"\n{notice}")
            | Q(notice__contains=f"\n{notice}\n")
        )
        room = NOTICE_MAX_LENGTH - len(notice) - 1
        joined = Case(
            When(notice="", then=Value(notice)),
            When(Q(notice_length__gt=room), then=F("notice")),
            default=Concat(F("notice"), Value("\n" + notice)),
            output_field=models.TextField(),
        )
        return bool(
            self.exclude(held).annotate(notice_length=Length("notice")).update(notice=joined)
        )

    def refuse(
        self, *, reason: str, alert_wanted: bool = True, another_import_running: bool = False
    ) -> bool:
        return self.filter(state=ExecutionState.PENDING).stamp(
            state=ExecutionState.REFUSED,
            error=reason,
            finished_at=timezone.now(),
            alert_wanted=alert_wanted,
            another_import_running=another_import_running,
        )

    def begin_ingesting(self) -> bool:
        return self.filter(state=ExecutionState.PENDING).stamp(
            state=ExecutionState.INGESTING, started_at=timezone.now()
        )

    def hold_submits_until(self, until) -> bool:
        """Assets refused a page with 429: every lane holds its pages back until `until`
        (a later pause asked for wins)."""
        return bool(
            self.filter(
                Q(assets_paused_until__isnull=True) | Q(assets_paused_until__lt=until)
            ).update(assets_paused_until=until)
        )

    def wait_longer_for_assets(self, seconds: float) -> bool:
        """Assets answered a page too late: the import's pages wait up to `seconds` for its
        answers (a longer wait asked for meanwhile wins)."""
        return bool(
            self.filter(
                Q(assets_answer_timeout__isnull=True) | Q(assets_answer_timeout__lt=seconds)
            ).update(assets_answer_timeout=seconds)
        )

    def record_last_page(self, index: int) -> bool:
        """The source ends at page `index` (an earlier end found by another page wins)."""
        return bool(
            self.filter(Q(last_chunk_index__isnull=True) | Q(last_chunk_index__gt=index)).update(
                last_chunk_index=index
            )
        )

    def processing(self) -> "ExecutionQuerySet":
        return self.filter(state=ExecutionState.PROCESSING)

    def claim_completion(self) -> bool:
        """INGESTING -> COMPLETING: the one worker that wins posts {"completed": true}."""
        return self.ingesting().stamp(state=ExecutionState.COMPLETING)

    def hand_back_completion(self, *, error: str | None = None, maybe_taken: bool = False) -> bool:
        """COMPLETING -> INGESTING: Assets took nothing (or may have, `maybe_taken`: the post
        went unanswered), a later check posts again."""
        fields = {} if error is None else {"error": error}
        if maybe_taken:
            fields["completed_maybe_taken"] = True
        return self.filter(state=ExecutionState.COMPLETING).stamp(
            state=ExecutionState.INGESTING,
            completion_attempts=F("completion_attempts") + 1,
            **fields,
        )

    def mark_processing(self, *, unconfirmed: bool = False) -> bool:
        """Every page is in: a stall of its pages is over (Assets' processing may stall on
        its own, `processing._flag_unreadable`). `unconfirmed`: no answer said Assets took
        "completed" (one went unanswered); else that doubt is over."""
        return self.filter(state=ExecutionState.COMPLETING).stamp(
            state=ExecutionState.PROCESSING,
            completed_at=timezone.now(),
            error="",
            stalled_since=None,
            completed_maybe_taken=unconfirmed,
        )

    def finish(self, *, state: str, error: str = "") -> bool:
        """PROCESSING -> the final state Assets reported; a DONE keeps its duration."""
        now = timezone.now()
        took = SecondsBetween(F("started_at"), Value(now)) if state == ExecutionState.DONE else None
        return self.filter(state=ExecutionState.PROCESSING).stamp(
            state=state, finished_at=now, took_seconds=took, error=error
        )

    def fail(self, *, reason: str) -> bool:
        return self.filter(state__in=FAILABLE_STATES).stamp(
            state=ExecutionState.FAILED, error=reason, finished_at=timezone.now()
        )

    def abandon(self, *, reason: str) -> bool:
        """Any open state -> FAILED, for an import whose Assets side is gone with the server
        that held it (the demo's sandbox keeps nothing): no one is left to tell or wait for."""
        return self.open().stamp(
            state=ExecutionState.FAILED,
            error=reason,
            finished_at=timezone.now(),
            failure_report_pending=False,
        )

    def cancel(self, *, reason: str) -> bool:
        return self.filter(state__in=CANCELLABLE_STATES).stamp(
            state=ExecutionState.CANCELLED, finished_at=timezone.now(), error=reason
        )

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        """The admin's date hierarchy, without scanning the whole history.

        Django truncates every row's date and keeps the distinct values, a full scan that
        takes seconds on 10^5 executions under SQLite. Here the years, months or days are
        those between the first and the last execution (two index lookups); a period without
        executions may be offered, and shows an empty list.
        """
        if field_name != "created_at" or kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        bounds = self.aggregate(first=Min("created_at"), last=Max("created_at"))
        if not bounds["first"]:
            return []
        first, last = (timezone.localtime(bounds[key]) for key in ("first", "last"))
        periods = []
        moment = first.replace(hour=0, minute=0, second=0, microsecond=0)
        if kind in ("year", "month"):
            moment = moment.replace(day=1)
        if kind == "year":
            moment = moment.replace(month=1)
        while moment <= last:
            periods.append(moment)
            if kind == "year":
                moment = moment.replace(year=moment.year + 1)
            elif kind == "month":
                moment = moment.replace(
                    year=moment.year + moment.month // 12, month=moment.month % 12 + 1
                )
            else:
                moment = timezone.localtime(moment + timedelta(days=1)).replace(hour=0)
        return periods if order == "ASC" else periods[::-1]


class ExecutionState(models.TextChoices):
    PENDING = "PENDING", "Pending"  # row exists, Assets execution not created yet
    INGESTING = "INGESTING", "Ingesting"  # chunks are being fetched and submitted
    COMPLETING = "COMPLETING", "Completing"  # one worker is posting {"completed": true}
    PROCESSING = "PROCESSING", "Processing"  # Assets writes the objects
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    REFUSED = "REFUSED", "Refused"  # could not start (e.g. another import was running)


OPEN_STATES = (
    ExecutionState.PENDING,
    ExecutionState.INGESTING,
    ExecutionState.COMPLETING,
    ExecutionState.PROCESSING,
)
FINISHED_STATES = (
    ExecutionState.DONE,
    ExecutionState.FAILED,
    ExecutionState.CANCELLED,
    ExecutionState.REFUSED,
)
# States from which a failure still counts (PROCESSING belongs to Assets: it decides the end).
FAILABLE_STATES = (ExecutionState.PENDING, ExecutionState.INGESTING, ExecutionState.COMPLETING)
# ... and from which an operator may cancel: once "completed" is on its way (COMPLETING) or
# Assets writes the records (PROCESSING), the outcome is what Assets reports: a cancel then
# may come too late, and Assets says DONE all the same.
CANCELLABLE_STATES = (ExecutionState.PENDING, ExecutionState.INGESTING)


class Execution(models.Model):
    """One import run: an execution in Assets and the chunks that feed it."""

    State = ExecutionState
    OPEN_STATES = OPEN_STATES
    FINISHED_STATES = FINISHED_STATES
    CANCELLABLE_STATES = CANCELLABLE_STATES

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULE = "schedule", "Scheduled"
        COMMAND = "command", "Command line"

    source = models.ForeignKey(ImportSource, on_delete=models.CASCADE, related_name="executions")
    assets_execution_id = models.CharField(max_length=100, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # A default in the database too: processes of the release before it, still running
    # while the migration is applied, create executions without it.
    accepts_fewer_records = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Started accepting a drop in records past the source's 'largest drop in "
        "records': the source was known to hold fewer now.",
    )

    last_chunk_index = models.IntegerField(
        null=True, blank=True, help_text="Index of the source's last page, once it is known."
    )
    pages_fetched = models.PositiveIntegerField(default=0)
    records_fetched = models.PositiveIntegerField(default=0)
    records_total = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The number of records the source says it holds, if it does.",
    )
    records_total_largest = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The largest total the source told while it was read: a source that grows "
        "meanwhile (devices enrolled mid-import) tells more on its later pages.",
    )
    pages_submitted = models.PositiveIntegerField(default=0)
    records_submitted = models.PositiveIntegerField(default=0)
    records_skipped = models.PositiveIntegerField(
        "records left out",
        default=0,
        help_text="Records not sent to Assets (no identity, or a value that does not convert).",
    )
    items_skipped = models.PositiveIntegerField(
        "nested items left out",
        default=0,
        db_default=0,
        help_text="Nested items (a computer's disks) not sent to Assets while their records "
        "were (no identity, or a value that does not convert).",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(
        "all pages sent at",
        null=True,
        blank=True,
        help_text="When Assets took the word that every page was sent, and began to process "
        "the records into objects.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    completion_attempts = models.PositiveIntegerField(
        default=0,
        help_text='Posts of {"completed": true} Assets could not take (each is tried again, '
        "later and later, up to COMPLETION_MAX_ATTEMPTS).",
    )
    completed_maybe_taken = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text='A post of {"completed": true} went unanswered (a timeout, a dropped '
        "connection, a gateway's 5xx): Assets may have taken it, so the import is not failed "
        "and cancelled for want of an answer.",
    )
    status_missing_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When Assets first answered 404 to a read of this processing import's "
        "status, read after read since (it fails once that lasts minutes).",
    )
    took_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds from the start to DONE, stored when the import ends DONE (the "
        "time-to-DONE histogram reads it); empty for an import that ended otherwise.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    error = models.TextField(blank=True)
    notice = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="Worth a look though the import went on, such as fields the mapping reads "
        "that no record of the first page holds, a total the source never told, a record read "
        "on two pages, or Assets slow to answer.",
    )
    failure_reported_at = models.DateTimeField(null=True, blank=True)
    first_page_digest = models.CharField(
        max_length=16,
        blank=True,
        help_text="Cursor and next-link paging: a digest of the first page's records, to see "
        "a source that leads back to them under another cursor (it would go round for ever).",
    )
    failure_report_pending = models.BooleanField(
        default=False,
        help_text="Assets could not be told of the failure yet (it was unreachable or busy): "
        "housekeeping, and the source's next start, tell it again. Until then Assets may "
        "count the import as running.",
    )
    stalled_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when the execution made no progress for too long."
    )
    assets_paused_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Assets refused a page with 429 and asked to wait until then: every lane "
        "of the import holds its pages back until it, not only the one refused.",
    )
    assets_answer_timeout = models.FloatField(
        null=True,
        blank=True,
        editable=False,
        help_text="Seconds the import's pages wait for Assets' answer, longer than "
        "HTTP_TIMEOUT once Assets answered a page too late (empty: HTTP_TIMEOUT).",
    )
    alert_wanted = models.BooleanField(
        default=True,
        # In the table too: the web processes of the release before still insert runs while
        # `migrate` has added the column, before they are restarted.
        db_default=True,
        editable=False,
        help_text="False when this run's end is told to nobody on purpose: a scheduled run "
        "Assets asked for again, or one refused because its source was disabled.",
    )
    another_import_running = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Refused because another import of the source was running (here, or one "
        "whose end Assets had not been told yet): the source did not fail, so the run "
        "neither counts in nor ends a failure streak.",
    )

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("cancel_execution", "Can cancel an import"),
            ("retry_chunks", "Can retry the failed chunks of an import"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source"],
                condition=Q(state__in=[state.value for state in OPEN_STATES]),
                name="one_open_execution_per_source",
                violation_error_message="This source already has an import running.",
            )
        ]
        indexes = [
            # The history list filters by state and sorts by newest first.
            models.Index(fields=["state", "-created_at"], name="execution_state_created"),
            # The history sorts by newest first; the source list looks up each last import.
            models.Index(fields=["-created_at"], name="execution_created"),
            models.Index(fields=["source", "-created_at"], name="execution_source_created"),
            # Alerts and the dashboard read a source's runs by their end (`runs_by_end`).
            models.Index(
                fields=["source", "-finished_at", "-id"], name="execution_source_finished"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} #{self.pk} ({self.state})"

    @property
    def is_scheduled(self) -> bool:
        return self.trigger == self.Trigger.SCHEDULE

    @property
    def trigger_word(self) -> str:
        """How the import was started, as alerts and the history say it."""
        return {
            self.Trigger.SCHEDULE: "scheduled",
            self.Trigger.COMMAND: "command-line",
        }.get(self.trigger, "manual")

    @property
    def duration(self):
        """From the start to the end, to the submission's end, or, while data still comes in,
        to now: a page waiting for its retry does not stop the clock."""
        if not self.started_at:
            return None
        end = self.finished_at or self.completed_at
        if end is None:
            end = timezone.now() if self.state in OPEN_STATES else self.updated_at
        return end - self.started_at
