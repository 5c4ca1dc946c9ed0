"""Forms whose secrets are write-only, and whose settings that may hold one are masked."""

from django import forms
from django.utils.functional import cached_property


def keep_stored_secrets(instance, cleaned_data: dict, fields) -> None:
    """Write-only secrets: a form never shows a stored secret, so a field left empty keeps it."""
    for field in fields:
        new_value = cleaned_data.get(field)
        if new_value:
            setattr(instance, field, new_value)
        elif instance.pk:
            stored = type(instance).objects.filter(pk=instance.pk).values_list(field, flat=True)
            setattr(instance, field, stored.first() or "")


class WriteOnlySecretsForm(forms.ModelForm):
    """A form whose secrets are write-only and whose settings that may hold one are masked.

    Django compares what the browser sent with the stored value: an empty secret field (it
    is never filled in) or a masked URL would count as changed, and the admin's history and
    `import_sources` would say a token changed when nobody touched it. Here a secret counts
    as changed only when a new one is given, and a masked setting when its value, masked
    parts put back, differs from the stored one.
    """

    secret_fields: tuple[str, ...] = ()
    masked_fields: tuple[str, ...] = ()
    # Forms shown in a browser say at a typed secret that it was not saved (see below).
    remind_typed_secrets_on_errors = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:  # nothing stored yet to keep
            for name in self.secret_fields:
                if name in self.fields:
                    field = self.fields[name]
                    field.help_text = field.help_text.partition(" Leave empty")[0]
        self._stored = {
            name: getattr(self.instance, name)
            for name in (*self.secret_fields, *self.masked_fields)
            if name in self.fields
        }

    @cached_property
    def changed_data(self) -> list[str]:
        by_django = set(super().changed_data)
        cleaned = getattr(self, "cleaned_data", {})
        changed = []
        for name in self.fields:
            if name not in self._stored or name not in cleaned:
                if name in by_django:
                    changed.append(name)
                continue
            new, stored = cleaned[name], self._stored[name]
            if name in self.secret_fields:
                if new and new != stored:
                    changed.append(name)
            elif (new or None) != (stored or None):
                changed.append(name)
        return changed

    def full_clean(self):
        super().full_clean()
        if self.remind_typed_secrets_on_errors:
            self._remind_typed_secrets()
            self._mask_typed_settings()

    def shown_masked(self, name: str, typed: str) -> str:
        """What a browser gets back of a masked setting typed on a form shown again with
        errors: `typed` with its secrets masked (a form with masked settings says how)."""
        return typed

    def _mask_typed_settings(self) -> None:
        """On a form shown again with errors, a setting typed with a secret in it (a new key
        in a header, a password in a URL) comes back masked, as a stored one is shown, and
        says at its field that its secrets are to be typed again: the page's HTML would
        otherwise hold them (a browser's cache, a screenshot, a proxy)."""
        if not self.is_bound or not self._errors:
            return
        data = self.data.copy()
        for name in self.masked_fields:
            key = self.add_prefix(name)
            typed = data.get(key)
            if name not in self.fields or not isinstance(typed, str) or not typed:
                continue
            shown = self.shown_masked(name, typed)
            if shown == typed:
                continue
            data[key] = shown
            what = (
                "what was typed here is not shown again, as it may hold secrets; type it"
                if not shown
                else "the secrets typed here are shown as *** now; type them"
            )
            self.add_error(
                name,
                f"Not saved yet, because of the errors on this form: {what} again before "
                "saving (secrets are never sent back to the browser).",
            )
        self.data = data

    def secret_missing(self, message: str) -> str:
        """The error for a secret that is needed and not given; in a browser, with why it may
        have to be pasted again."""
        if self.remind_typed_secrets_on_errors:
            return (
                f"{message} (after an error on this form, paste it again: secrets are never "
                "sent back to the browser)."
            )
        return f"{message}."

    def _remind_typed_secrets(self) -> None:
        """On a form shown again with errors: a secret typed in it was not saved, and the
        browser does not get it back, so say so at the field rather than drop it silently."""
        if not self.is_bound or not self._errors:
            return
        for name in self.secret_fields:
            typed = name in self.fields and self.data.get(self.add_prefix(name))
            if typed and not self.has_error(name):
                self.add_error(
                    name,
                    "Not saved yet, because of the errors on this form: paste it again before "
                    "saving (secrets are never sent back to the browser).",
                )
