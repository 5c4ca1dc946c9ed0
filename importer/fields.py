"""Secrets encrypted at rest: tokens, and the settings that may hold credentials (a URL's
user:password, a credential-named header, parameter or plug-in option).

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under the first key of the
FIELD_ENCRYPTION_KEYS setting and decrypted with any of them, so keys can be rotated: put the
new key first, run `manage.py rotate_encryption_keys`, then drop the old one.
"""

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.conf import settings
from django.core import validators
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS needs at least one key.")
    # Any passphrase works as a key: it is stretched to Fernet's 32 bytes.
    return MultiFernet(
        [Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())) for key in keys]
    )


def encrypt(value: str) -> str:
    return PREFIX + _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored  # written before encryption was switched on
    try:
        return (
            _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))
            .decrypt(stored[len(PREFIX) :].encode())
            .decode()
        )
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: was a key removed "
            "before `manage.py rotate_encryption_keys` ran?"
        ) from None


def needs_rotation(stored: str) -> bool:
    """Whether a stored value is plain text or not encrypted under the first key."""
    if not stored:
        return False
    if not stored.startswith(PREFIX):
        return True
    current = _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS[:1]))
    try:
        current.decrypt(stored[len(PREFIX) :].encode())
    except InvalidToken:
        return True
    return False


class EncryptedTextField(models.TextField):
    """A TextField whose value is encrypted in the database and plain in Python."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "" or value.startswith(PREFIX):
            return value
        return encrypt(value)


class EncryptedURLField(EncryptedTextField):
    """A URL, encrypted at rest: it may carry credentials (https://user:password@host/)."""

    default_validators = [validators.URLValidator()]

    def formfield(self, **kwargs):
        # A one-line URL input, not the text area of a TextField.
        return models.Field.formfield(
            self, **{"form_class": forms.URLField, "max_length": self.max_length, **kwargs}
        )


class EncryptedJSONField(EncryptedTextField):
    """A JSON object, encrypted at rest: its values may be credentials (an API key header)."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return json.loads(decrypt(value))

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        if value is None and self.null:
            return None
        # Else None is JSON's null, as a JSONField that may not be NULL stores it.
        if isinstance(value, str) and value.startswith(PREFIX):
            return value
        return encrypt(json.dumps(value))

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))

    def formfield(self, **kwargs):
        return models.Field.formfield(self, **{"form_class": forms.JSONField, **kwargs})


def holds_json(field: models.Field) -> bool:
    """Whether a model field stores a JSON value, encrypted or not."""
    return isinstance(field, models.JSONField | EncryptedJSONField)
