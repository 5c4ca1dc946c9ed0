"""Alerts: the channels people are told through, what they were told, and running totals."""

from django.conf import settings
from django.db import models

from importer.fields import EncryptedTextField
from importer.models.executions import Execution
from importer.models.sources import ImportSource


class NotificationChannel(models.Model):
    """Where alerts go: a list of e-mail recipients, or a webhook (Slack, Teams, any JSON)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class WebhookFormat(models.TextChoices):
        GENERIC = "generic", "Generic JSON"
        SLACK = "slack", "Slack"
        TEAMS = "teams", "Microsoft Teams (Workflows)"

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
        help_text="Webhook: the URL that receives a JSON POST: a Slack incoming webhook, a "
        "Microsoft Teams Workflows webhook, or any receiver of JSON. Kept encrypted (such URLs "
        "are secrets).",
    )
    webhook_format = models.CharField(
        max_length=10,
        choices=WebhookFormat.choices,
        default=WebhookFormat.GENERIC,
        help_text="Webhook: the body sent. Generic JSON: the text and the alert's fields; Slack: "
        "a message for an incoming webhook; Microsoft Teams (Workflows): an Adaptive Card for a "
        "'When a Teams webhook request is received' flow.",
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
    # While failing, the one alert that tries the channel holds it until then.
    probing_until = models.DateTimeField(null=True, blank=True, editable=False)
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
        RESUMED = "resumed", "Import moving again"
        DONE = "done", "Import done"
        STALE = "stale", "Source stale"
        RECOVERED = "recovered", "Source recovered"
        MISSED = "missed", "Alerts not delivered"
        SUMMARY = "summary", "Alerts summed up"
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
        # Not sent on its own: its channel had its fill of alerts (ALERT_BURST_LIMIT); the
        # channel's next summary names it.
        FOLDED = "FOLDED", "Folded into a summary"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A delivery given up: when its channel, working again, was told the alert did not arrive.
    reported_missed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A delivery folded: when the summary naming it was raised.
    summarized_at = models.DateTimeField(null=True, blank=True, editable=False)
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
