"""A chunk: one page of the source, fetched, transformed and submitted; its guarded moves."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from importer.models.executions import Execution

# The kind of failure of a page refused with 429: waited out apart (services.chunks).
RATE_LIMITED = "rate_limited"


def _attempts_left() -> Q:
    return Q(attempts__lt=settings.CHUNK_MAX_ATTEMPTS)


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
        return self._waiting(now=now).filter(_attempts_left())

    def exhausted(self, *, now) -> "ChunkJobQuerySet":
        """Waiting for a worker, but with every attempt used up: only failing it is left."""
        return self._waiting(now=now).exclude(_attempts_left())

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

    def wait_as_asked(self, moment, *, error: str) -> bool:
        """Back to the queue at `moment`, as a rate limit asked (429): the attempt is given
        back, and the wait counted apart (RATE_LIMITED_MAX_ATTEMPTS)."""
        return self.stamp(
            state=ChunkJob.State.QUEUED,
            attempts=F("attempts") - 1,
            rate_limited_waits=F("rate_limited_waits") + 1,
            lease_expires_at=None,
            next_attempt_at=moment,
            last_error_kind=RATE_LIMITED,
            error=error,
        )

    def fail(self, *, kind: str, error: str, records: int = 0) -> bool:
        """`records`: what a page fetched (and counted) held, which Assets refused; an
        operator's retry takes them off the import's counts before the page is read again."""
        held = {"record_count": records} if records else {}
        return self.stamp(
            state=ChunkJob.State.FAILED,
            lease_expires_at=None,
            last_error_kind=kind,
            error=error,
            **held,
        )

    def stop(self, *, past_the_end: bool, records: int = 0) -> bool:
        """The execution takes no more data: the page was past the end, or is cancelled.
        `records`: what a page past the end held (the completion check looks at it)."""
        held = {"record_count": records} if records else {}
        return self.stamp(
            state=ChunkJob.State.SKIPPED if past_the_end else ChunkJob.State.CANCELLED,
            lease_expires_at=None,
            **held,
        )

    def cancel_queued(self) -> bool:
        """Queued chunks will not run (a cancelled chunk has no next attempt)."""
        return self.filter(state=ChunkJob.State.QUEUED).stamp(
            state=ChunkJob.State.CANCELLED, next_attempt_at=None
        )

    def requeue_failed(self, *, note: str) -> bool:
        """Failed chunks start over (an operator's retry)."""
        return self.filter(state=ChunkJob.State.FAILED).stamp(
            state=ChunkJob.State.QUEUED,
            attempts=0,
            next_attempt_at=None,
            error=note,
            record_count=0,
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
    rate_limited_waits = models.PositiveIntegerField(
        default=0, help_text="Times a rate limit (429) asked this page to wait."
    )
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
    items_skipped_count = models.PositiveIntegerField(
        "nested items left out",
        default=0,
        db_default=0,  # web processes of the release before insert chunks without it
        help_text="Nested items (a computer's disks) of this page's records sent without them.",
    )
    nested_items = models.JSONField(
        "nested items sent and left out",
        null=True,  # also what web processes of the release before insert
        blank=True,
        editable=False,
        help_text="Per nested selector with items on the page: [items sent, items left out], "
        "then the first item's reason when some were left out; "
        "empty (NULL) when the mapping has no nested selector. An import that sent none of "
        "a selector's items fails (`services.totals.every_nested_item_left_out`).",
    )
    error = models.TextField(blank=True)
    parts_taken = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",  # web processes of the release before insert chunks without it
        editable=False,
        help_text="A page sent to Assets in parts (ASSETS_MAX_SUBMIT_BYTES): how many of its "
        "first items an attempt that failed got Assets to take, and their digest; the next "
        "attempt sends them again unless the page read again starts with those very items.",
    )
    identity_digests = models.BinaryField(
        default=b"",
        editable=False,
        help_text="Pages read by position: an 8-byte digest of each sent record's identity, "
        "to find a record on two pages (`services.totals.records_on_two_pages`).",
    )
    previous_page_digest = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",  # web processes of the release before insert chunks without it
        editable=False,
        help_text="Pages read by cursor: what told the page before this one from others (its "
        "first and last records and their count), to find a source that leads back to it.",
    )
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
