"""Secrets on the import source form: stored settings shown masked, masked ones put back.

A URL, a header, a plug-in option or a user name may hold a secret, and the page's HTML must
not: the form shows such settings with their secrets as ***, takes *** back as "keep the
stored secret", and masks what was typed again when the form comes back with errors.
"""

import json
import re

from django import forms

from importer.forms.source_fields import MASKED_JSON_FIELDS, MASKED_URL_FIELDS
from importer.models import ImportSource
from importer.redaction import (
    MASK,
    declared_secret_params,
    mask_setting,
    mask_url,
    redact,
    restore_masked,
    restore_url,
    secret_param_names,
    username_holds_a_key,
)

# A header's value as JSON text writes it (`"X-Key": "value"`), however broken the rest.
_QUOTED_VALUE = re.compile(r'"\s*:\s*"')


class MaskedSourceSettings:
    """Mixed into ImportSourceForm (a WriteOnlySecretsForm of ImportSource)."""

    def _show_stored_settings_masked(self) -> None:
        """The stored settings as the form shows them: their secrets as MASK."""
        declared = declared_secret_params(self.instance)
        for name in MASKED_URL_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_url(getattr(self.instance, name) or "", declared)
        for name in MASKED_JSON_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_setting(name, getattr(self.instance, name), declared)
        if "auth_username" in self.fields and username_holds_a_key(self.instance):
            self.initial["auth_username"] = MASK  # the API key, as Freshservice takes it
            kept = f" It holds the API key here, so it is shown as {MASK}: leave {MASK} to keep it."
            self.fields["auth_username"].help_text += kept

    def _declared_secret_params(self) -> frozenset[str]:
        """Named secret as stored, or on this form: a config file may name it too."""
        return declared_secret_params(self.instance) | secret_param_names(
            self.data.get(self.add_prefix("secret_params"))
        )

    def shown_masked(self, name: str, typed: str) -> str:
        if name == "auth_username":
            # A user name that is the API key (Freshservice's, BambooHR's) is not shown again.
            return "" if typed != MASK and self._typed_username_holds_a_key(typed) else typed
        if name in MASKED_URL_FIELDS or name == "assets_base_url":
            return mask_url(typed, self._declared_secret_params())
        if name in MASKED_JSON_FIELDS:
            try:
                value = json.loads(typed)
            except (ValueError, RecursionError):
                # Which of it is a secret cannot be told (every header may be one): not shown
                # again if it may hold any.
                holds_values = name == "extra_headers" and _QUOTED_VALUE.search(typed)
                return "" if holds_values or redact(typed) != typed else typed
            masked = mask_setting(name, value, self._declared_secret_params())
            return typed if masked == value else json.dumps(masked, ensure_ascii=False)
        return typed

    def _typed_username_holds_a_key(self, typed: str) -> bool:
        """`username_holds_a_key` of the source as typed on this form (the stored secret
        where none was typed)."""
        typed_source = ImportSource(
            auth_username=typed,
            source_auth=self.data.get(self.add_prefix("source_auth"), self.instance.source_auth),
            source_token=(
                self.data.get(self.add_prefix("source_token")) or self._stored.get("source_token")
            ),
        )
        return username_holds_a_key(typed_source)

    def _unmasked(self, name: str):
        """The submitted value, with masked secrets put back from the stored source."""
        value = self.cleaned_data.get(name)
        stored = getattr(self.instance, name)
        try:
            if name in MASKED_URL_FIELDS:
                return restore_url(value or "", stored or "", self._declared_secret_params())
            return restore_masked(value, stored, name)
        except ValueError as error:
            raise forms.ValidationError(f"{error}: give the value itself.") from None

    def clean_auth_username(self):
        return self._unmasked("auth_username")

    def clean_extra_headers(self):
        return self._unmasked("extra_headers")

    def clean_extra_params(self):
        return self._unmasked("extra_params")

    def clean_plugin_options(self):
        return self._unmasked("plugin_options")

    def clean_request_body(self):
        return self._unmasked("request_body")

    def clean_after_first_page(self):
        return self._unmasked("after_first_page")
