"""What assets-sync stores: sources to import from, executions of an import, and their chunks."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Max, Min, Q
from django.utils import timezone

from importer.fields import EncryptedTextField


def default_assets_base_url() -> str:
    return settings.ASSETS_API_BASE_URL


def new_webtrigger_token() -> str:
    """256 random bits, URL-safe: the secret in a source's webtrigger URL."""
    return secrets.token_urlsafe(32)


class ImportSource(models.Model):
    """One third-party system feeding one Assets import source."""

    class Kind(models.TextChoices):
        REST = "rest", "REST / JSON API"
        CSV = "csv", "CSV file"
        JSON = "json", "JSON file"
        JSONL = "jsonl", "JSON Lines file"
        PLUGIN = "plugin", "Plug-in"

    class Pagination(models.TextChoices):
        OFFSET = "offset", "Offset and limit"
        PAGE = "page", "Page number"
        CURSOR = "cursor", "Cursor in the answer"
        NEXT_URL = "next_url", "Next URL in the answer"
        LINK_HEADER = "link_header", "Link header (RFC 5988)"
        NONE = "none", "No paging (one request)"

    class AuthKind(models.TextChoices):
        NONE = "none", "None"
        BEARER = "bearer", "Bearer token"
        BASIC = "basic", "Basic (user name and password)"
        API_KEY_HEADER = "api_key_header", "API key in a header"
        API_KEY_QUERY = "api_key_query", "API key in a query parameter"
        OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth2 client credentials"

    class MissingIdentity(models.TextChoices):
        SKIP = "skip", "Skip the record and count it"
        FAIL = "fail", "Fail the import"

    class InvalidValues(models.TextChoices):
        SKIP = "skip", "Skip the record and count it"
        FAIL = "fail", "Fail the import"

    name = models.SlugField(
        max_length=100, unique=True, help_text="Short unique name, used on the command line."
    )
    enabled = models.BooleanField(default=True, help_text="A disabled source cannot be imported.")

    assets_base_url = models.URLField(
        "Assets API base URL",
        default=default_assets_base_url,
        help_text="https://api.atlassian.com for Atlassian Cloud.",
    )
    workspace_id = models.CharField(
        "Assets workspace id", max_length=100, help_text="The Assets workspace (a UUID)."
    )
    import_source_id = models.CharField(
        "Assets import source id",
        max_length=100,
        help_text="The id of the external import source created in Assets.",
    )
    assets_token = EncryptedTextField(
        "Assets token", help_text="The import source's API token, generated in Assets."
    )

    source_kind = models.CharField("kind", max_length=20, choices=Kind.choices, default=Kind.REST)
    source_url = models.URLField(
        "source URL",
        max_length=2000,
        blank=True,
        help_text="The REST endpoint that lists the records, or the URL of a file.",
    )
    source_file = models.FileField(
        "uploaded file",
        upload_to="source-files/",
        blank=True,
        help_text="A CSV, JSON or JSON Lines file, instead of a URL.",
    )
    plugin = models.CharField(
        max_length=200,
        blank=True,
        help_text="Plug-in sources: a name from the IMPORT_SOURCE_PLUGINS setting.",
    )
    plugin_options = models.JSONField(
        default=dict, blank=True, help_text="Plug-in sources: options passed to the plug-in."
    )
    records_path = models.CharField(
        "records selector",
        max_length=200,
        blank=True,
        help_text="Dotted path to the list of records in each answer, e.g. 'data.items'. "
        "Empty when the answer itself is the list.",
    )
    pagination = models.CharField(
        max_length=20, choices=Pagination.choices, default=Pagination.OFFSET
    )
    page_size = models.PositiveIntegerField(
        default=100, help_text="Records per page (files: per chunk); one page becomes one chunk."
    )
    offset_param = models.CharField(max_length=50, default="offset", help_text="Offset paging.")
    limit_param = models.CharField(
        max_length=50,
        default="limit",
        blank=True,
        help_text="Query parameter for the page size (empty: not sent).",
    )
    page_param = models.CharField(max_length=50, default="page", help_text="Page-number paging.")
    first_page = models.PositiveIntegerField(
        default=1, help_text="Page-number paging: the number of the first page (0 or 1)."
    )
    cursor_param = models.CharField(
        max_length=50, default="cursor", help_text="Cursor paging: query parameter for the cursor."
    )
    cursor_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Cursor paging: dotted path to the next cursor in the answer, e.g. "
        "'meta.next_cursor'. Next-URL paging: dotted path to the next URL, e.g. 'links.next'.",
    )
    total_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Optional dotted path to the total number of records: paging stops there, "
        "and the import fails if the records received do not add up to it.",
    )
    source_auth = models.CharField(
        "source authentication", max_length=40, choices=AuthKind.choices, default=AuthKind.NONE
    )
    auth_username = models.CharField(
        "user name / client id",
        max_length=200,
        blank=True,
        help_text="Basic: the user name. OAuth2: the client id.",
    )
    auth_key_name = models.CharField(
        "API key name",
        max_length=100,
        blank=True,
        default="X-API-Key",
        help_text="API key: the header or query parameter that carries it.",
    )
    oauth_token_url = models.URLField(
        "OAuth2 token URL", max_length=500, blank=True, help_text="OAuth2: the token endpoint."
    )
    oauth_scope = models.CharField(
        "OAuth2 scope", max_length=500, blank=True, help_text="OAuth2: scopes, space-separated."
    )
    source_token = EncryptedTextField(
        "source secret",
        blank=True,
        help_text="Bearer token, password, API key or OAuth2 client secret.",
    )
    extra_headers = models.JSONField(
        default=dict, blank=True, help_text='Extra request headers, e.g. {"Accept-Language": "en"}.'
    )
    extra_params = models.JSONField(
        default=dict, blank=True, help_text='Extra query parameters, e.g. {"status": "active"}.'
    )
    request_timeout = models.FloatField(
        null=True, blank=True, help_text="Seconds per request (empty: the HTTP_TIMEOUT setting)."
    )
    ca_bundle = models.TextField(
        "trusted CA certificates",
        blank=True,
        help_text="PEM certificates to trust for this source (a private CA). TLS verification "
        "stays on.",
    )
    csv_delimiter = models.CharField(max_length=4, default=",", help_text="CSV: field delimiter.")
    csv_quotechar = models.CharField(max_length=1, default='"', help_text="CSV: quote character.")
    csv_has_header = models.BooleanField(
        default=True, help_text="CSV: the first row names the fields."
    )
    csv_fieldnames = models.CharField(
        max_length=2000, blank=True, help_text="CSV without header: comma-separated field names."
    )
    file_encoding = models.CharField(
        max_length=40, default="utf-8", help_text="Files: text encoding (a BOM is ignored)."
    )
    missing_identity = models.CharField(
        "record without identity",
        max_length=10,
        choices=MissingIdentity.choices,
        default=MissingIdentity.SKIP,
        help_text="What to do with a record that has no value for an externalIdPart attribute.",
    )
    invalid_values = models.CharField(
        "record with a value Assets refuses",
        max_length=10,
        choices=InvalidValues.choices,
        default=InvalidValues.SKIP,
        help_text="What to do with a record holding a value its attribute rules out: not of "
        "its type, a status or select outside typeValues, more values than "
        "maximumCardinality or fewer than minimumCardinality.",
    )
    max_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Limit on requests to the source (empty: no limit)."
    )
    max_chunks_in_flight = models.PositiveIntegerField(
        default=4, help_text="How many chunks of this source may run at once."
    )
    next_request_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Rate limit: the next free slot."
    )

    mapping = models.JSONField(
        null=True,
        blank=True,
        help_text="The schema-and-mapping document sent to Assets.",
    )
    mapping_pushed_at = models.DateTimeField(
        null=True, blank=True, help_text="When Assets last accepted the mapping."
    )
    webtrigger_token = EncryptedTextField(default=new_webtrigger_token)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("start_import", "Can start an import")]

    def __str__(self) -> str:
        return self.name


class ExecutionQuerySet(models.QuerySet):
    """Guarded state transitions: each moves only the rows still in the state it starts from,
    stamps `updated_at`, and says whether it won, so of two workers racing only one goes on.
    The moves every page makes (fetched, submitted) are in importer/page_sql.py."""

    def of(self, execution: "Execution") -> "ExecutionQuerySet":
        return self.filter(pk=execution.pk)

    def ingesting(self) -> "ExecutionQuerySet":
        return self.filter(state=ExecutionState.INGESTING)

    def stamp(self, **fields) -> bool:
        """Update the rows and their `updated_at` (progress, or a transition's fields)."""
        return bool(self.update(updated_at=timezone.now(), **fields))

    def refuse(self, *, reason: str) -> bool:
        return self.filter(state=ExecutionState.PENDING).stamp(
            state=ExecutionState.REFUSED, error=reason, finished_at=timezone.now()
        )

    def begin_ingesting(self) -> bool:
        return self.filter(state=ExecutionState.PENDING).stamp(
            state=ExecutionState.INGESTING, started_at=timezone.now()
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

    def hand_back_completion(self, *, error: str | None = None) -> bool:
        """COMPLETING -> INGESTING: Assets took nothing, a later check posts again."""
        fields = {} if error is None else {"error": error}
        return self.filter(state=ExecutionState.COMPLETING).stamp(
            state=ExecutionState.INGESTING, **fields
        )

    def mark_processing(self) -> bool:
        return self.filter(state=ExecutionState.COMPLETING).stamp(
            state=ExecutionState.PROCESSING, completed_at=timezone.now(), error=""
        )

    def finish(self, *, state: str, error: str = "") -> bool:
        """PROCESSING -> the final state Assets reported."""
        return self.filter(state=ExecutionState.PROCESSING).stamp(
            state=state, finished_at=timezone.now(), error=error
        )

    def fail(self, *, reason: str) -> bool:
        return self.filter(state__in=FAILABLE_STATES).stamp(
            state=ExecutionState.FAILED, error=reason, finished_at=timezone.now()
        )

    def cancel(self, *, reason: str) -> bool:
        return self.filter(state__in=OPEN_STATES).stamp(
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


class Execution(models.Model):
    """One import run: an execution in Assets and the chunks that feed it."""

    State = ExecutionState
    OPEN_STATES = OPEN_STATES
    FINISHED_STATES = FINISHED_STATES

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULE = "schedule", "Schedule"

    source = models.ForeignKey(ImportSource, on_delete=models.CASCADE, related_name="executions")
    assets_execution_id = models.CharField(max_length=100, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)

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
    pages_submitted = models.PositiveIntegerField(default=0)
    records_submitted = models.PositiveIntegerField(default=0)
    records_skipped = models.PositiveIntegerField(
        "records left out",
        default=0,
        help_text="Records not sent to Assets (no identity, or a value that does not convert).",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(
        null=True, blank=True, help_text='When {"completed": true} was accepted by Assets.'
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    error = models.TextField(blank=True)
    failure_reported_at = models.DateTimeField(null=True, blank=True)
    stalled_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when the execution made no progress for too long."
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
        ]

    def __str__(self) -> str:
        return f"{self.source} #{self.pk} ({self.state})"

    @property
    def is_scheduled(self) -> bool:
        return self.trigger == self.Trigger.SCHEDULE

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.finished_at or self.completed_at or self.updated_at) - self.started_at


class ChunkJobQuerySet(models.QuerySet):
    """Guarded state transitions of chunks. `held_by(chunk)` narrows to a chunk only while the
    copy in hand still holds it (RUNNING, same attempt): a worker whose lease ran out and whose
    chunk another worker took over then moves nothing. Each transition stamps `updated_at` and
    says whether it won. The moves every page makes (the lane's next page added, the check
    before a page goes, submitted) are in importer/page_sql.py."""

    def held_by(self, chunk: "ChunkJob") -> "ChunkJobQuerySet":
        return self.filter(pk=chunk.pk, state=ChunkJob.State.RUNNING, attempts=chunk.attempts)

    def _waiting(self, *, now) -> "ChunkJobQuerySet":
        """QUEUED and due, or RUNNING under a lease that has expired."""
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        return self.filter(
            (Q(state=ChunkJob.State.QUEUED) & due)
            | Q(state=ChunkJob.State.RUNNING, lease_expires_at__lt=now)
        )

    def claimable(self, *, now) -> "ChunkJobQuerySet":
        """Waiting for a worker (see `_waiting`), with an attempt left under
        CHUNK_MAX_ATTEMPTS: a page whose worker dies each time never loops."""
        return self._waiting(now=now).filter(attempts__lt=settings.CHUNK_MAX_ATTEMPTS)

    def exhausted(self, *, now) -> "ChunkJobQuerySet":
        """Waiting for a worker, but with every attempt used up: only failing it is left."""
        return self._waiting(now=now).filter(attempts__gte=settings.CHUNK_MAX_ATTEMPTS)

    def stamp(self, **fields) -> bool:
        return bool(self.update(updated_at=timezone.now(), **fields))

    def start_attempt(self, *, now, lease_expires_at, worker: str) -> bool:
        return self.stamp(
            state=ChunkJob.State.RUNNING,
            attempts=F("attempts") + 1,
            lease_expires_at=lease_expires_at,
            next_attempt_at=None,
            started_at=now,
            worker=worker,
        )

    def renew_lease(self, *, until) -> bool:
        """Keep a chunk this worker still holds (use with `held_by`): False once it is done,
        or once another worker took it over after the lease lapsed."""
        return self.stamp(lease_expires_at=until)

    def release(self, *, until=None, reason: str = "") -> bool:
        """Back to the queue without counting the attempt (now, or at `until`)."""
        fields = {"next_attempt_at": until, "last_error_kind": reason} if until else {}
        return self.stamp(
            state=ChunkJob.State.QUEUED,
            attempts=F("attempts") - 1,
            lease_expires_at=None,
            **fields,
        )

    def retry_at(self, moment, *, kind: str, error: str) -> bool:
        """Back to the queue for another attempt at `moment`."""
        return self.stamp(
            state=ChunkJob.State.QUEUED,
            lease_expires_at=None,
            next_attempt_at=moment,
            last_error_kind=kind,
            error=error,
        )

    def fail(self, *, kind: str, error: str) -> bool:
        return self.stamp(
            state=ChunkJob.State.FAILED, lease_expires_at=None, last_error_kind=kind, error=error
        )

    def stop(self, *, past_the_end: bool) -> bool:
        """The execution takes no more data: the page was past the end, or is cancelled."""
        return self.stamp(
            state=ChunkJob.State.SKIPPED if past_the_end else ChunkJob.State.CANCELLED,
            lease_expires_at=None,
        )

    def cancel_queued(self) -> bool:
        """Queued chunks will not run (a cancelled chunk has no next attempt)."""
        return self.filter(state=ChunkJob.State.QUEUED).stamp(
            state=ChunkJob.State.CANCELLED, next_attempt_at=None
        )

    def requeue_failed(self, *, note: str) -> bool:
        """Failed chunks start over (an operator's retry)."""
        return self.filter(state=ChunkJob.State.FAILED).stamp(
            state=ChunkJob.State.QUEUED, attempts=0, next_attempt_at=None, error=note
        )


class ChunkJob(models.Model):
    """One page of the source: fetched, transformed and submitted as one data chunk."""

    class State(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        SUBMITTED = "SUBMITTED", "Submitted"
        # Fanned out past the source's end: nothing to send. Stored as SKIPPED.
        SKIPPED = "SKIPPED", "Past the end"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    cursor = models.TextField(
        blank=True, help_text="Where this page starts: an offset, page number, cursor or URL."
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A RUNNING chunk whose lease expired is taken up again."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error_kind = models.CharField(
        "retry reason", max_length=40, blank=True, help_text="Why the last attempt failed."
    )
    worker = models.CharField(
        max_length=100, blank=True, help_text="host:pid of the worker that ran the last attempt."
    )
    record_count = models.PositiveIntegerField("records", default=0)
    skipped_count = models.PositiveIntegerField(
        "records left out", default=0, help_text="Records of this page not sent to Assets."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChunkJobQuerySet.as_manager()

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="unique_chunk_index"),
        ]
        indexes = [
            # The completion check and the reaper count chunks of an execution by state.
            models.Index(fields=["execution", "state"], name="chunk_execution_state"),
            # The reaper looks for RUNNING chunks whose lease has expired.
            models.Index(fields=["state", "lease_expires_at"], name="chunk_state_lease"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of execution {self.execution_id}"


def default_timezone() -> str:
    return settings.TIME_ZONE


class Schedule(models.Model):
    """A recurring import. Assets owns the clock: it calls our webtrigger at each run."""

    class Frequency(models.TextChoices):
        ONCE = "ONCE", "Once"
        DAILY = "DAILY", "Daily"
        WEEKLY = "WEEKLY", "Weekly"
        MONTHLY = "MONTHLY", "Monthly"

    source = models.OneToOneField(ImportSource, on_delete=models.CASCADE, related_name="schedule")
    frequency = models.CharField(max_length=10, choices=Frequency.choices)
    start_time = models.DateTimeField(help_text="The first run, in the schedule's time zone.")
    timezone = models.CharField(
        max_length=64, default=default_timezone, help_text="IANA time zone, e.g. Europe/Berlin."
    )
    callback_url = models.URLField(
        max_length=500, blank=True, help_text="The webtrigger URL last sent to Assets."
    )
    assets_schedule_id = models.CharField(max_length=100, blank=True)
    in_sync = models.BooleanField(
        default=False, help_text="Whether Assets holds exactly this schedule."
    )
    sync_error = models.TextField(blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source} {self.get_frequency_display().lower()}"


# --- alerts ----------------------------------------------------------------------------------


class NotificationChannel(models.Model):
    """Where alerts go: a list of e-mail recipients, or a webhook (Slack, Teams, any JSON)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    name = models.CharField(max_length=100, unique=True, help_text="For staff, e.g. 'IT on call'.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EMAIL)
    enabled = models.BooleanField(default=True, help_text="A disabled channel receives nothing.")
    all_sources = models.BooleanField(
        "every source",
        default=False,
        help_text="Site-wide: alerts of every source. Otherwise only those of the sources "
        "chosen below.",
    )
    sources = models.ManyToManyField(
        ImportSource,
        blank=True,
        related_name="notification_channels",
        help_text="The sources whose alerts this channel receives (unless 'every source').",
    )
    notify_on_done = models.BooleanField(
        "every successful import",
        default=False,
        help_text="Also send a message for each import that ends DONE (failures, refusals, "
        "stalled and stale sources are always sent).",
    )
    recipients = models.TextField(
        blank=True,
        help_text="E-mail: addresses, one per line or comma-separated. Empty: the site-wide "
        "list in the ALERT_EMAILS setting.",
    )
    webhook_url = EncryptedTextField(
        "webhook URL",
        blank=True,
        help_text="Webhook: the URL that receives a JSON POST; Slack and Microsoft Teams "
        "incoming-webhook URLs work as they are. Kept encrypted (such URLs are secrets).",
    )
    secret_header_name = models.CharField(
        max_length=100,
        blank=True,
        help_text="Webhook: a header sent with every call, e.g. Authorization or X-Webhook-Token.",
    )
    secret_header_value = EncryptedTextField(blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_failing(self) -> bool:
        """Whether the last attempt to send through this channel failed."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at > self.last_success_at

    def recipient_list(self) -> list[str]:
        given = [part.strip() for part in self.recipients.replace(",", "\n").splitlines()]
        return [address for address in given if address] or list(settings.ALERT_EMAILS)


class Alert(models.Model):
    """Something people are told about, once: its key is unique per event."""

    class Kind(models.TextChoices):
        FAILED = "failed", "Import failed"
        REFUSED = "refused", "Import refused"
        STALLED = "stalled", "Import stalled"
        DONE = "done", "Import done"
        STALE = "stale", "Source stale"
        RECOVERED = "recovered", "Source recovered"
        TEST = "test", "Test message"

    key = models.CharField(max_length=200, unique=True, help_text="One alert per event.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.ForeignKey(
        ImportSource, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    subject = models.CharField(max_length=300)
    text = models.TextField(help_text="The message, as e-mails and chat webhooks show it.")
    details = models.JSONField(default=dict, help_text="The structured fields sent to webhooks.")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="Stale sources: when the source imported again."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Housekeeping looks for the open stale alert of each source.
            models.Index(fields=["kind", "resolved_at"], name="alert_kind_resolved"),
        ]

    def __str__(self) -> str:
        return self.subject


class Delivery(models.Model):
    """One alert sent through one channel, with its attempts."""

    class State(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENDING = "SENDING", "Sending"
        SENT = "SENT", "Sent"
        FAILED = "FAILED", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="one_delivery_per_channel"),
        ]
        indexes = [
            # Housekeeping looks for deliveries whose task was lost.
            models.Index(fields=["state", "updated_at"], name="delivery_state_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.alert} → {self.channel}"


class RunningTotal(models.Model):
    """A count that outlives the rows it counts: retries as they happen, and the totals of
    executions removed by the retention task, so the metrics' counters never go down."""

    source = models.ForeignKey(ImportSource, on_delete=models.CASCADE, related_name="totals")
    name = models.CharField(max_length=50)
    label = models.CharField(max_length=50, blank=True)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "name", "label"], name="one_running_total_per_label"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.name}{{{self.label}}} = {self.value:g}"


class PeriodicJobQuerySet(models.QuerySet):
    def claim_due(self, name: str, *, every: float) -> bool:
        """Whether this caller runs job `name` now: True for the one caller that moves its
        due time on by `every` seconds, False for the others and until then."""
        now = timezone.now()
        due_next = now + timedelta(seconds=every)
        if self.filter(name=name, due_at__lte=now).update(due_at=due_next):
            return True
        _, created = self.get_or_create(name=name, defaults={"due_at": due_next})
        return created


class PeriodicJob(models.Model):
    """A job the task cluster's workers run every few seconds (django-q2's schedules count in
    minutes). Every worker process asks in turn; `claim_due` lets one through per period,
    across every worker and cluster."""

    name = models.CharField(max_length=100, unique=True)
    due_at = models.DateTimeField(help_text="The job runs again once this time has passed.")

    objects = PeriodicJobQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name
