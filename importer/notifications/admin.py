"""The staff UI for alerts: channels (with whether they work), and the alerts sent."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from importer import notifications
from importer.admin.buttons import PageButtons
from importer.admin.display import (
    ByNameToViewers,
    SourceByNameToViewers,
    masked_fieldsets,
    state_badge,
    stored_choices,
    stored_secret,
)
from importer.forms.meanwhile import RefusesEditsMadeMeanwhile
from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.forms import FIELD_CONDITIONS, NotificationChannelForm
from importer.notifications.senders import where
from importer.redaction import redact


class DeliveryInline(ByNameToViewers, admin.TabularInline):
    model = Delivery
    by_name = {"channel": "importer.view_notificationchannel"}
    fields = [
        "channel",
        "state_label",
        "attempts",
        "sent_at",
        "error",
        "reported_missed_at",
        "summarized_at",
    ]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    @admin.display(description="State")
    def state_label(self, delivery):
        return state_badge(delivery.state)

    @admin.display(description="Channel")
    def channel_name(self, delivery):
        return str(delivery.channel)


# The webhook formats as a narrow list column names them.
SHORT_FORMATS = {
    NotificationChannel.WebhookFormat.GENERIC: "JSON",
    NotificationChannel.WebhookFormat.SLACK: "Slack",
    NotificationChannel.WebhookFormat.TEAMS: "Teams",
}

SOURCES_HELP = (
    "The sources whose alerts this channel receives: move them into the 'Chosen import "
    "sources' box. Ignored when 'every source' is ticked."
)


class NotificationChannelAdminForm(RefusesEditsMadeMeanwhile, NotificationChannelForm):
    remind_typed_secrets_on_errors = True
    guarded_fields = tuple(
        name
        for name in NotificationChannelForm.Meta.fields
        if name not in NotificationChannelForm.secret_fields
    )


@admin.register(NotificationChannel)
class NotificationChannelAdmin(PageButtons, admin.ModelAdmin):
    form = NotificationChannelAdminForm
    # What one scans a list of channels for, in a width that fits a 1280 px screen beside the
    # admin's sidebar and the filters: the rest is on the channel's page.
    list_display = ["name", "sends_to", "scope", "state", "last_sent"]
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
        (None, {"fields": ["name", "kind", "enabled", "loaded_as"]}),
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

    class Media:
        css = {"all": ["importer/admin.css"]}  # the page's buttons
        js = ["importer/form_conditions.js", "importer/page_buttons.js"]

    # Kept apart from the rest: a new channel has posted nowhere and sent nothing yet.
    fields_of_a_saved_channel = {"webhook_target"}
    fieldsets_of_a_saved_channel = {"Status"}

    def get_fieldsets(self, request, obj=None):
        """Whoever may not change the channel sees where it posts, never its URL or secret."""
        if obj is None:
            return [
                (
                    name,
                    {
                        **options,
                        "fields": [
                            f for f in options["fields"] if f not in self.fields_of_a_saved_channel
                        ],
                    },
                )
                for name, options in self.fieldsets
                if name not in self.fieldsets_of_a_saved_channel
            ]
        if self.has_change_permission(request, obj):
            return self.fieldsets
        hidden = {
            "webhook_url": None,
            "secret_header_value": "secret_header_value_masked",
            "loaded_as": None,  # the page's stamp for a save
        }
        return masked_fieldsets(self.fieldsets, hidden)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        """The sources are picked between two lists (filter_horizontal), not in a multiple
        select: the admin's hint to hold down Control does not apply to them."""
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "sources":
            field.help_text = SOURCES_HELP
        return field

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "secret_header_value_masked"]

    @admin.display(description="Secret header value")
    def secret_header_value_masked(self, channel):
        return stored_secret(channel.secret_header_value)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["field_conditions"] = FIELD_CONDITIONS  # the rows the chosen kind uses
        context["field_chosen"] = stored_choices(obj, FIELD_CONDITIONS)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Sends to", ordering="kind")
    def sends_to(self, channel):
        """The kind, and where: a webhook's host alone (its path may hold a secret)."""
        if channel.kind == NotificationChannel.Kind.WEBHOOK:
            kind = f"Webhook ({SHORT_FORMATS.get(channel.webhook_format, channel.webhook_format)})"
            target = where(channel.webhook_url) if channel.webhook_url else "no URL"
        else:
            kind = channel.get_kind_display()
            addresses = channel.recipient_list()
            target = addresses[0] if addresses else "nobody (ALERT_EMAILS is empty)"
            if len(addresses) > 1:
                target += f" and {len(addresses) - 1} more"
            if not channel.recipients.strip() and addresses:
                target += " (ALERT_EMAILS)"
        return format_html('{}<div class="channel-target">{}</div>', kind, target)

    @admin.display(description="Sources")
    def scope(self, channel):
        if channel.all_sources:
            names = "every source"
        else:
            chosen = [source.name for source in channel.sources.all()]
            names = ", ".join(chosen[:2]) or "none"
            if len(chosen) > 2:
                names += f" and {len(chosen) - 2} more"
        if not channel.notify_on_done:
            return names
        return format_html('{}<div class="channel-note">and every successful import</div>', names)

    @admin.display(description="State")
    def state(self, channel):
        """Disabled, failing (since when, with what), OK or not used yet, in one cell."""
        if not channel.enabled:
            badge = format_html('<span class="status-badge status-disabled">{}</span>', "disabled")
        elif channel.is_failing:
            badge = state_badge("FAILING")
        elif channel.last_success_at:
            badge = state_badge("OK")
        else:
            badge = "not used yet"
        if not channel.is_failing:
            return badge
        line = channel.last_error.strip().partition("\n")[0]
        error = Truncator(redact(line, [channel.webhook_url, channel.secret_header_value]))
        return format_html(
            '{}<div class="channel-error">failing since {}: {}</div>',
            badge,
            date_format(localtime(channel.last_error_at), "SHORT_DATETIME_FORMAT"),
            error.chars(120),
        )

    @admin.display(description="Last sent", ordering="last_success_at")
    def last_sent(self, channel):
        if channel.last_success_at is None:
            return "never"
        return date_format(localtime(channel.last_success_at), "SHORT_DATETIME_FORMAT")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("sources")

    @admin.display(description="Status")
    def status(self, channel):
        if channel.is_failing:
            return state_badge("FAILING")
        if channel.last_success_at:
            return state_badge("OK")
        return "not used yet"

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

    def page_buttons(self, request, obj):
        return [("send_check_message", "Send a test message")]

    @admin.action(description="Send a test message", permissions=["change"])
    def send_check_message(self, request, queryset):
        """Only who may change a channel sends through it (a message reaches real people)."""
        channels = list(queryset)
        for channel in channels:
            notifications.send_check_message(channel=channel, user=request.user.get_username())
            self.log_change(request, channel, "Sent a test message.")
        self.message_user(
            request,
            ngettext(
                "A test message is on its way through %d channel: reload the page in a few "
                "seconds to see whether it arrived.",
                "A test message is on its way through %d channels: reload the page in a few "
                "seconds to see whether they arrived.",
                len(channels),
            )
            % len(channels),
            messages.SUCCESS,
        )


@admin.register(Alert)
class AlertAdmin(SourceByNameToViewers, admin.ModelAdmin):
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
        return super().get_queryset(request).prefetch_related("deliveries__channel")

    @admin.display(description="Kind", ordering="kind")
    def kind_label(self, alert):
        return alert.get_kind_display()

    @admin.display(description="Deliveries")
    def delivered(self, alert):
        states = [delivery.state for delivery in alert.deliveries.all()]
        if not states and (alert.details or {}).get("held_back"):
            return "held back: its failure streak was sent already (ALERT_REPEAT_HOURS)"
        if not states:
            return "no channel"
        parts = [
            f"{states.count(state)} {label}"
            for state, label in [
                (Delivery.State.SENT, "sent"),
                (Delivery.State.PENDING, "pending"),
                (Delivery.State.SENDING, "sending"),
                (Delivery.State.FAILED, "failed"),
                (Delivery.State.FOLDED, "folded into a summary"),
            ]
            if states.count(state)
        ]
        if alert.source_id is None:  # a test message, missed alerts, a summary: one channel
            channels = sorted({delivery.channel.name for delivery in alert.deliveries.all()})
            parts.append("to " + ", ".join(channels))
        return ", ".join(parts)
