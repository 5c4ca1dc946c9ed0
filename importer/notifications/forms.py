"""The channel form: the admin's rules for a notification channel, which `import_sources` applies
to channels in a file too."""

from django import forms
from django.conf import settings
from django.core.validators import URLValidator, validate_email

from importer.forms import WriteOnlySecretsForm, keep_stored_secrets
from importer.models import NotificationChannel

SECRET_FIELDS = ("webhook_url", "secret_header_value")
# The rows a channel of each kind uses: the admin shows only these (see
# static/importer/form_conditions.js); validation ignores the others.
_WEBHOOK = [{"kind": [NotificationChannel.Kind.WEBHOOK.value]}]
FIELD_CONDITIONS = {
    "recipients": [{"kind": [NotificationChannel.Kind.EMAIL.value]}],
    "webhook_target": _WEBHOOK,
    "webhook_url": _WEBHOOK,
    "webhook_format": _WEBHOOK,
    "secret_header_name": _WEBHOOK,
    "secret_header_value": _WEBHOOK,
}


def _write_only(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class NotificationChannelForm(WriteOnlySecretsForm):
    """The webhook URL and the secret header's value are write-only, like every secret."""

    secret_fields = SECRET_FIELDS

    webhook_url = _write_only(
        "Webhook URL",
        "Webhook: the URL that receives a JSON POST: a Slack incoming webhook, a Microsoft "
        "Teams Workflows webhook (choose the format below), or any receiver of JSON. Stored "
        "encrypted and never shown again (such URLs are secrets). Leave empty to keep the "
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
        if (
            kind == NotificationChannel.Kind.WEBHOOK
            and "webhook_url" not in self.errors  # a URL given but refused says so already
            and not (cleaned.get("webhook_url") or (stored and stored.webhook_url))
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
        if (
            kind == NotificationChannel.Kind.EMAIL
            and "recipients" not in self.errors
            and not (cleaned.get("recipients") or "").strip()
            and not settings.ALERT_EMAILS
        ):
            self.add_error(
                "recipients",
                "List the addresses to send to: the ALERT_EMAILS setting, which a channel "
                "without its own list uses, is empty.",
            )
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
