"""Form fields of the source form: JSON that says where it is wrong, URLs with their scheme."""

import json

from django import forms
from django.db import models
from django.forms.fields import InvalidJSONInput

from importer.fields import EncryptedURLField, holds_json
from importer.redaction import (
    mask_url,
)


class LocatedJSONField(forms.JSONField):
    """JSON whose syntax errors name the line and column."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip():
            try:
                parsed = json.loads(value)
            except RecursionError:
                parsed = _TOO_DEEP
            except json.JSONDecodeError as error:
                raise forms.ValidationError(
                    "Not valid JSON: %(problem)s at line %(line)d, column %(column)d.",
                    code="invalid",
                    # Some of json's messages end in "at" ("Invalid control character at").
                    params={
                        "problem": error.msg.removesuffix(" at"),
                        "line": error.lineno,
                        "column": error.colno,
                    },
                ) from None
            if parsed is _TOO_DEEP or _nesting(parsed) > MAX_NESTING:
                raise forms.ValidationError(
                    "Nested more than %(levels)d levels deep: no setting needs that many.",
                    code="invalid",
                    params={"levels": MAX_NESTING},
                )
        return super().to_python(value)

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # shown again as it was typed, as JSON with an error is
            return InvalidJSONInput(data)


# How deep a JSON setting may nest: a mapping is a few levels, and Python's own recursion
# (masking, checking) must never meet the limit.
MAX_NESTING = 64
_TOO_DEEP = object()


def _nesting(value) -> int:
    """How many levels of arrays and objects `value` has, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_NESTING:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


class SchemeURLField(forms.URLField):
    """A URL must be typed with its scheme: nothing is added to it silently."""

    def __init__(self, **kwargs):
        kwargs["assume_scheme"] = "https"
        super().__init__(**kwargs)

    def to_python(self, value):
        value = (value or "").strip()
        if value and "://" not in value:
            raise forms.ValidationError(
                "Give the whole URL with its scheme, e.g. https://%(value)s.",
                code="no_scheme",
                # Without the password of a user:password@ typed there too.
                params={"value": mask_url(f"https://{value}").removeprefix("https://")},
            )
        return super().to_python(value)


def strict_formfield(model_field, **kwargs):
    """URLs keep their scheme, JSON errors say where, counts start at 1."""
    if isinstance(model_field, models.URLField | EncryptedURLField):
        kwargs["form_class"] = SchemeURLField
    if holds_json(model_field):
        kwargs["form_class"] = LocatedJSONField
    return model_field.formfield(**kwargs)


class PrettyJSONField(LocatedJSONField):
    """Shows the mapping indented, so staff can read and edit it."""

    def prepare_value(self, value):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        if value is None:
            return ""
        return json.dumps(value, indent=2, ensure_ascii=False)


class RequestBodyField(PrettyJSONField):
    """A POST source's body: JSON, shown indented, whose errors say how a GraphQL query is
    written in it (pasted as it is, its line breaks and braces are no JSON)."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError as error:
            if error.code != "invalid" or "Not valid JSON" not in error.message:
                raise
            raise forms.ValidationError(
                "The request body is not valid JSON (%(problem)s at line %(line)d, column "
                '%(column)d). Write it as a JSON object, e.g. {"query": "query($after: '
                'String) { assets(after: $after) { … } }", "variables": {}}: a GraphQL '
                "query is one JSON string, its line breaks written \\n.",
                code="invalid",
                params=error.params,
            ) from None
