"""The staff UI for alerts: channels (with whether they work), and the alerts sent."""

from django import forms
from django.contrib import admin, messages
from django.core.validators import URLValidator, validate_email
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from importer import notifications
from importer.admin.display import state_badge
from importer.forms import keep_stored_secrets
from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.delivery import where

SECRET_FIELDS = ("webhook_url", "secret_header_value")


def _write_only(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class NotificationChannelForm(forms.ModelForm):
    """The webhook URL and the secret header's value are write-only, like every secret."""

    webhook_url = _write_only(
        "Webhook URL",
        "Webhook: the URL that receives a JSON POST: a Slack incoming webhook, a Microsoft "
        "Teams Workflows webhook (choose the format below), or any receiver of JSON. Stored "
        "encrypted and never shown again (such URLs are secrets): leave empty to keep the "
        "stored one.",
    )
    secret_header_value = _write_only(
        "Secret header value",
        "Webhook: the value of the header above, e.g. 'Bearer …'. Leave empty to keep the "
        "stored one.",
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "enabled",
            "all_sources",
            "sources",
            "notify_on_done",
            "recipients",
            "webhook_url",
            "webhook_format",
            "secret_header_name",
            "secret_header_value",
        ]

    def clean_webhook_url(self):
        url = self.cleaned_data.get("webhook_url", "").strip()
        if url:
            URLValidator(schemes=["http", "https"])(url)
        return url

    def clean_recipients(self):
        recipients = self.cleaned_data.get("recipients", "")
        for address in recipients.replace(",", "\n").splitlines():
            if address.strip():
                try:
                    validate_email(address.strip())
                except forms.ValidationError:
                    raise forms.ValidationError(f"'{address.strip()}' is not an e-mail address.")
        return recipients

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        stored = self.instance if self.instance.pk else None
        if kind == NotificationChannel.Kind.WEBHOOK and not (
            cleaned.get("webhook_url") or (stored and stored.webhook_url)
        ):
            self.add_error(
                "webhook_url",
                "A webhook needs its URL (after an error on this form, paste it again: secrets "
                "are never sent back to the browser).",
            )
        has_value = bool(
            cleaned.get("secret_header_value") or (stored and stored.secret_header_value)
        )
        if cleaned.get("secret_header_name") and not has_value:
            self.add_error("secret_header_value", "Give the header's value.")
        if not cleaned.get("all_sources") and not cleaned.get("sources"):
            self.add_error("sources", "Choose the sources, or tick 'every source'.")
        return cleaned

    def save(self, commit=True):
        channel = super().save(commit=False)
        keep_stored_secrets(channel, self.cleaned_data, SECRET_FIELDS)
        if commit:
            channel.save()
            self.save_m2m()
        return channel


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["channel", "state_label", "attempts", "sent_at", "error"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    @admin.display(description="State")
    def state_label(self, delivery):
        return state_badge(delivery.state)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = [
        "name",
        "kind",
        "enabled",
        "scope",
        "notify_on_done",
        "status",
        "last_success_at",
        "last_error_at",
        "last_error_short",
    ]
    list_filter = ["kind", "webhook_format", "enabled"]
    search_fields = ["name"]
    filter_horizontal = ["sources"]
    actions = ["send_check_message"]
    readonly_fields = [
        "webhook_target",
        "status",
        "last_success_at",
        "last_error_at",
        "last_error",
        "recent_deliveries",
    ]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        ("What is sent", {"fields": ["all_sources", "sources", "notify_on_done"]}),
        ("E-mail", {"fields": ["recipients"]}),
        (
            "Webhook",
            {
                "fields": [
                    "webhook_target",
                    "webhook_url",
                    "webhook_format",
                    "secret_header_name",
                    "secret_header_value",
                ]
            },
        ),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "last_success_at",
                    "last_error_at",
                    "last_error",
                    "recent_deliveries",
                ]
            },
        ),
    ]

    @admin.display(description="Sources")
    def scope(self, channel):
        if channel.all_sources:
            return "every source"
        return ", ".join(source.name for source in channel.sources.all()) or "none"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("sources")

    @admin.display(description="Status")
    def status(self, channel):
        if channel.is_failing:
            return state_badge("FAILING")
        if channel.last_success_at:
            return state_badge("OK")
        return "not used yet"

    @admin.display(description="Last error")
    def last_error_short(self, channel):
        if not channel.is_failing:
            return ""
        return channel.last_error[:120]

    @admin.display(description="Webhook posts to")
    def webhook_target(self, channel):
        return where(channel.webhook_url) if channel.webhook_url else "—"

    @admin.display(description="Recent deliveries")
    def recent_deliveries(self, channel):
        """The last 20 (a long-lived channel has thousands)."""
        recent = channel.deliveries.select_related("alert").order_by("-created_at")[:20]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:importer_alert_change", args=[delivery.alert_id]),
                    delivery.alert.subject,
                    state_badge(delivery.state),
                    delivery.attempts,
                    date_format(localtime(delivery.updated_at), "DATETIME_FORMAT"),
                    delivery.error[:200],
                )
                for delivery in recent
            ),
        )
        if not rows:
            return "none yet"
        return format_html(
            "<table><tr><th>Alert</th><th>State</th><th>Attempts</th><th>Last change</th>"
            "<th>Error</th></tr>{}</table>",
            rows,
        )

    @admin.action(description="Send a test message")
    def send_check_message(self, request, queryset):
        channels = list(queryset)
        for channel in channels:
            notifications.send_check_message(channel=channel, user=request.user.get_username())
        self.message_user(
            request,
            ngettext(
                "A test message is on its way through %d channel; its status shows here.",
                "A test message is on its way through %d channels; their status shows here.",
                len(channels),
            )
            % len(channels),
            messages.SUCCESS,
        )


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind_label", "source", "subject", "delivered", "resolved_at"]
    list_filter = ["kind", "source"]
    list_select_related = ["source"]
    search_fields = ["subject", "source__name"]
    date_hierarchy = "created_at"
    list_per_page = 50
    fields = ["kind", "source", "execution", "subject", "text", "details", "created_at"]
    readonly_fields = [*fields, "resolved_at"]
    inlines = [DeliveryInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="Kind", ordering="kind")
    def kind_label(self, alert):
        return alert.get_kind_display()

    @admin.display(description="Deliveries")
    def delivered(self, alert):
        states = [delivery.state for delivery in alert.deliveries.all()]
        if not states:
            return "no channel"
        parts = [
            f"{states.count(state)} {label}"
            for state, label in [
                (Delivery.State.SENT, "sent"),
                (Delivery.State.PENDING, "pending"),
                (Delivery.State.SENDING, "sending"),
                (Delivery.State.FAILED, "failed"),
            ]
            if states.count(state)
        ]
        return ", ".join(parts)
