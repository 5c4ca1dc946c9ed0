"""A schedule: the recurring import Assets runs by calling our webtrigger."""

from django.conf import settings
from django.db import models

from importer.fields import EncryptedURLField
from importer.models.sources import ImportSource


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
    callback_url = EncryptedURLField(
        max_length=500,
        blank=True,
        help_text="The webtrigger URL last sent to Assets (kept encrypted: it holds the token).",
    )
    assets_schedule_id = models.CharField(max_length=100, blank=True)
    in_sync = models.BooleanField(
        default=False, help_text="Whether Assets holds exactly this schedule."
    )
    sync_error = models.TextField(blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    start_sent = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The first run Assets was told at the last sync: it repeats from it.",
    )
    runs_from = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The first run Assets was told once this timing was set: the source is "
        "overdue only an interval after it (or after its last successful import).",
    )
    reanchor_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The run sent was not on the schedule's own day or at its own time (a "
        "short month's last day, an hour a clock change skips): once it has passed, Assets "
        "is told the next run on its own day and time, to repeat from.",
    )
    sync_retry_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Assets could not take the last sync (busy, a server error, out of reach): "
        "housekeeping syncs the schedule again then, so a change or a new webtrigger token "
        "does not wait for someone to re-sync it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source} {self.get_frequency_display().lower()}"
