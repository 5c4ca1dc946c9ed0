"""Forms shared by the admin and the config file importer, so both apply the same rules."""

import json
from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

from importer.fields import EncryptedURLField, holds_json
from importer.mapping import validate_document
from importer.models import ImportSource, Schedule
from importer.redaction import (
    mask_secret_values,
    mask_url,
    restore_masked,
    restore_url,
)
from importer.services.editing import ASSETS_PLACE, FIXED_WHILE_IMPORTING, busy_text, running_import
from importer.sources.rules import ca_bundle_problem, cursor_path_problem, plugin_problem

SECRET_FIELDS = ("assets_token", "source_token")
# Settings that may hold a secret inside them: credentials in a URL, credential-named headers,
# parameters and options. They are shown masked; a masked value saved back keeps the stored one.
MASKED_URL_FIELDS = ("source_url", "oauth_token_url")
MASKED_JSON_FIELDS = ("extra_headers", "extra_params", "plugin_options")
SOURCE_FIELDS = [
    "source_kind",
    "source_url",
    "source_file",
    "plugin",
    "plugin_options",
    "records_path",
    "missing_identity",
    "invalid_values",
]
CONNECTION_FIELDS = ["extra_headers", "extra_params", "request_timeout", "ca_bundle"]
PAGING_FIELDS = [
    "pagination",
    "page_size",
    "offset_param",
    "limit_param",
    "page_param",
    "first_page",
    "cursor_param",
    "cursor_path",
    "total_path",
    "repeated_records",
]
AUTH_FIELDS = [
    "source_auth",
    "auth_username",
    "source_token",
    "auth_key_name",
    "oauth_token_url",
    "oauth_scope",
]
FILE_FIELDS = [
    "csv_delimiter",
    "csv_quotechar",
    "csv_has_header",
    "csv_fieldnames",
    "file_encoding",
]
LIMIT_FIELDS = ["max_requests_per_minute", "max_chunks_in_flight"]


FILE_KINDS = ["csv", "json", "jsonl"]
READ_OVER_HTTP = ["rest", *FILE_KINDS]
# Which settings a source of each kind, paging and authentication uses: field -> alternatives,
# each a set of conditions that must all hold. The admin shows only these rows (see
# static/importer/form_conditions.js); validation ignores the others.
FIELD_CONDITIONS: dict[str, list[dict[str, list[str]]]] = {
    "source_url": [{"source_kind": READ_OVER_HTTP}],
    "source_file": [{"source_kind": FILE_KINDS}],
    "plugin": [{"source_kind": ["plugin"]}],
    "plugin_options": [{"source_kind": ["plugin"]}],
    "records_path": [{"source_kind": ["rest", "json"]}],
    "extra_headers": [{"source_kind": READ_OVER_HTTP}],
    "extra_params": [{"source_kind": READ_OVER_HTTP}],
    "request_timeout": [{"source_kind": READ_OVER_HTTP}],
    "ca_bundle": [{"source_kind": READ_OVER_HTTP}],
    "pagination": [{"source_kind": ["rest"]}],
    "offset_param": [{"source_kind": ["rest"], "pagination": ["offset"]}],
    "limit_param": [
        {
            "source_kind": ["rest"],
            "pagination": ["offset", "page", "cursor", "next_url", "link_header"],
        }
    ],
    "page_param": [{"source_kind": ["rest"], "pagination": ["page"]}],
    "first_page": [{"source_kind": ["rest"], "pagination": ["page"]}],
    "cursor_param": [{"source_kind": ["rest"], "pagination": ["cursor"]}],
    "cursor_path": [{"source_kind": ["rest"], "pagination": ["cursor", "next_url"]}],
    "total_path": [{"source_kind": ["rest"], "pagination": ["offset", "page"]}],
    "source_auth": [{"source_kind": READ_OVER_HTTP}],
    "auth_username": [
        {"source_kind": READ_OVER_HTTP, "source_auth": ["basic", "oauth2_client_credentials"]}
    ],
    "source_token": [
        {
            "source_kind": READ_OVER_HTTP,
            "source_auth": [
                "bearer",
                "basic",
                "api_key_header",
                "api_key_query",
                "oauth2_client_credentials",
            ],
        },
        {"source_kind": ["plugin"]},
    ],
    "auth_key_name": [
        {"source_kind": READ_OVER_HTTP, "source_auth": ["api_key_header", "api_key_query"]}
    ],
    "oauth_token_url": [
        {"source_kind": READ_OVER_HTTP, "source_auth": ["oauth2_client_credentials"]}
    ],
    "oauth_scope": [{"source_kind": READ_OVER_HTTP, "source_auth": ["oauth2_client_credentials"]}],
    "csv_delimiter": [{"source_kind": ["csv"]}],
    "csv_quotechar": [{"source_kind": ["csv"]}],
    "csv_has_header": [{"source_kind": ["csv"]}],
    "csv_fieldnames": [{"source_kind": ["csv"]}],
    "file_encoding": [{"source_kind": FILE_KINDS}],
}
CHOOSERS = ["source_kind", "pagination", "source_auth"]


def field_is_used(name: str, chosen: dict[str, str]) -> bool:
    """Whether a source with these kind, paging and authentication uses the setting."""
    alternatives = FIELD_CONDITIONS.get(name)
    if alternatives is None:
        return True
    return any(
        all(chosen.get(chooser) in values for chooser, values in conditions.items())
        for conditions in alternatives
    )


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


class LocatedJSONField(forms.JSONField):
    """JSON whose syntax errors name the line and column."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip():
            try:
                json.loads(value)
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
        return super().to_python(value)


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


# Counts that must be at least 1 (0 would be refused by the source or stop all work).
AT_LEAST_ONE = ("page_size", "max_chunks_in_flight")


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


class ImportSourceForm(WriteOnlySecretsForm):
    """Tokens are write-only: the stored secret is never sent back to the browser."""

    secret_fields = SECRET_FIELDS
    masked_fields = (*MASKED_URL_FIELDS, *MASKED_JSON_FIELDS)

    assets_token = forms.CharField(
        label="Assets token",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The import source's API token. Leave empty to keep the stored token.",
    )
    source_token = forms.CharField(
        label="Source secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Bearer token, password, API key or OAuth2 client secret. Leave empty to "
        "keep the stored one.",
    )
    mapping = PrettyJSONField(
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 30,
                "cols": 100,
                "class": "vLargeTextField",
                "style": "font-family: monospace",
            }
        ),
        help_text="The schema-and-mapping document (JSON) that Assets uses to turn records "
        "into objects. Checked when you save; pushed with the 'Push mapping' action.",
    )

    class Meta:
        model = ImportSource
        formfield_callback = strict_formfield
        fields = [
            "name",
            "enabled",
            "assets_base_url",
            "workspace_id",
            "import_source_id",
            "assets_token",
            *SOURCE_FIELDS,
            *CONNECTION_FIELDS,
            *PAGING_FIELDS,
            *AUTH_FIELDS,
            *FILE_FIELDS,
            *LIMIT_FIELDS,
            "mapping",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Callable defaults (settings, empty dicts) make Django compare against a hidden
        # initial value that the config file importer does not send.
        for field in self.fields.values():
            field.show_hidden_initial = False
        if self.instance.pk is None:  # a new source has no stored secret to keep
            for name in SECRET_FIELDS:
                if name in self.fields:
                    field = self.fields[name]
                    field.help_text = field.help_text.partition(" Leave empty")[0]
        for name in MASKED_URL_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_url(getattr(self.instance, name) or "")
        for name in MASKED_JSON_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_secret_values(getattr(self.instance, name))
        for name in AT_LEAST_ONE:
            if name in self.fields:
                field = self.fields[name]
                field.min_value = 1
                field.validators.append(MinValueValidator(1))
                field.widget.attrs["min"] = 1

    def _unmasked(self, name: str):
        """The submitted value, with masked secrets put back from the stored source."""
        value = self.cleaned_data.get(name)
        stored = getattr(self.instance, name)
        try:
            if name in MASKED_URL_FIELDS:
                return restore_url(value or "", stored or "")
            return restore_masked(value, stored, name)
        except ValueError as error:
            raise forms.ValidationError(f"{error}: give the value itself.") from None

    def clean_source_url(self):
        return self._unmasked("source_url")

    def clean_oauth_token_url(self):
        return self._unmasked("oauth_token_url")

    def clean_extra_headers(self):
        return self._unmasked("extra_headers")

    def clean_extra_params(self):
        return self._unmasked("extra_params")

    def clean_plugin_options(self):
        return self._unmasked("plugin_options")

    def clean_assets_token(self):
        token = self.cleaned_data.get("assets_token", "").strip()
        if not token and not (self.instance.pk and self.instance.assets_token):
            raise forms.ValidationError(
                self.secret_missing("Paste the import source's API token from Assets")
            )
        return token

    def clean_mapping(self):
        document = self.cleaned_data.get("mapping")
        if document in (None, ""):
            return None
        problems = validate_document(document)
        if problems:
            raise forms.ValidationError([str(problem) for problem in problems])
        return document

    def chosen(self) -> dict[str, str]:
        """The kind, paging and authentication chosen on the form (or stored)."""
        return {
            name: self.cleaned_data.get(name) or getattr(self.instance, name) for name in CHOOSERS
        }

    def clean(self):
        cleaned = super().clean()
        chosen = self.chosen()
        # Settings the chosen kind does not use are hidden: their errors would be invisible,
        # and they change nothing, so they are not held against the form.
        for name in list(self.errors):
            if name in self.fields and not field_is_used(name, chosen):
                del self.errors[name]
        kind = cleaned.get("source_kind")
        Kind, Auth = ImportSource.Kind, ImportSource.AuthKind
        if kind == Kind.REST and not cleaned.get("source_url") and "source_url" not in self.errors:
            self.add_error("source_url", "A REST source needs the URL that lists its records.")
        if kind in (Kind.CSV, Kind.JSON, Kind.JSONL) and not (
            cleaned.get("source_url") or cleaned.get("source_file")
        ):
            self.add_error("source_file", "Upload the file or give its URL.")
        if kind == Kind.PLUGIN:
            self._add_problem("plugin", plugin_problem(cleaned.get("plugin") or ""))
        if kind == Kind.REST:
            self._add_problem(
                "cursor_path",
                cursor_path_problem(cleaned.get("pagination"), cleaned.get("cursor_path") or ""),
            )
        auth = cleaned.get("source_auth") if kind in READ_OVER_HTTP else Auth.NONE
        has_secret = bool(cleaned.get("source_token") or self.instance.source_token)
        if auth != Auth.NONE and not has_secret:
            self.add_error(
                "source_token", self.secret_missing("This authentication needs a secret")
            )
        if auth in (Auth.BASIC, Auth.OAUTH2_CLIENT_CREDENTIALS) and not cleaned.get(
            "auth_username"
        ):
            self.add_error("auth_username", "Give the user name or client id.")
        if auth in (Auth.API_KEY_HEADER, Auth.API_KEY_QUERY) and not cleaned.get("auth_key_name"):
            self.add_error("auth_key_name", "Name the header or query parameter for the key.")
        if auth == Auth.OAUTH2_CLIENT_CREDENTIALS and not cleaned.get("oauth_token_url"):
            self.add_error("oauth_token_url", "Give the OAuth2 token endpoint.")
        for name in ("extra_headers", "extra_params", "plugin_options"):
            value = cleaned.get(name)
            if value not in (None, "") and not isinstance(value, dict):
                self.add_error(name, 'Give a JSON object, e.g. {"name": "value"}.')
        self._add_problem("ca_bundle", ca_bundle_problem(cleaned.get("ca_bundle") or ""))
        self._refuse_a_shared_import_source(cleaned)
        self._refuse_changes_while_importing()
        return cleaned

    def _refuse_changes_while_importing(self) -> None:
        """A running import reads these settings page after page (services/editing.py)."""
        changed = [name for name in self.changed_data if name in FIXED_WHILE_IMPORTING]
        running = running_import(self.instance) if changed else None
        if running is None:
            return
        for name in changed:
            if not self.has_error(name):
                label = self.fields[name].label or name
                self.add_error(name, busy_text(self.instance, running, f"a new {label.lower()}"))

    def _refuse_a_shared_import_source(self, cleaned: dict) -> None:
        """Assets keeps one mapping and one running import per import source: two sources
        sharing one would push their mappings over each other and refuse each other's
        imports ("another import is running")."""
        where = {name: cleaned.get(name) for name in ASSETS_PLACE}
        if not all(where.values()):
            return
        base = where.pop("assets_base_url").rstrip("/")
        other = (
            ImportSource.objects.filter(assets_base_url__in=[base, f"{base}/"], **where)
            .exclude(pk=self.instance.pk)
            .first()
        )
        if other is not None:
            self.add_error(
                "import_source_id",
                f"The source '{other.name}' imports into this Assets import source already. "
                "Assets keeps one mapping and runs one import at a time per import source: "
                "create another external import source in Assets (Settings → Import) and give "
                "its id here.",
            )

    def _add_problem(self, field: str, problem: str) -> None:
        """A rule the source readers apply too (importer/sources/rules.py), shown at its field."""
        if problem:
            self.add_error(field, problem[0].upper() + problem[1:] + ".")

    def save(self, commit=True):
        source = super().save(commit=False)
        keep_stored_secrets(source, self.cleaned_data, SECRET_FIELDS)
        # Another mapping, or another import source in Assets: not pushed there yet.
        if {"mapping", *ASSETS_PLACE} & set(self.changed_data):
            source.mapping_pushed_at = None
        if commit:
            source.save()
        return source


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise forms.ValidationError(
            f"'{name}' is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)."
        )
    return name


class ScheduleForm(forms.ModelForm):
    """The start time is typed as wall-clock time in the schedule's own time zone."""

    start_local = forms.DateTimeField(
        label="Start time",
        widget=forms.DateTimeInput(
            format="%Y-%m-%d %H:%M", attrs={"placeholder": "2026-12-01 02:00"}
        ),
        help_text="The first run (YYYY-MM-DD HH:MM), as wall-clock time in the schedule's "
        "time zone (the Timezone field).",
        error_messages={
            "invalid": "Give a date and a time, as YYYY-MM-DD HH:MM (e.g. 2026-12-01 02:00)."
        },
    )

    class Meta:
        model = Schedule
        fields = ["source", "frequency", "timezone"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            local = self.instance.start_time.astimezone(ZoneInfo(self.instance.timezone))
            # As the field shows it: to the minute.
            self.initial["start_local"] = local.replace(tzinfo=None, second=0, microsecond=0)
            # Its remote schedule and webtrigger are the source's: another source gets a
            # schedule of its own.
            if "source" in self.fields:
                self.fields["source"].disabled = True
                self.fields["source"].help_text = (
                    "A schedule stays with its source: to schedule another source, add a "
                    "schedule to it."
                )
        stored = self.instance
        self._stored_run = (stored.frequency, stored.start_time, stored.timezone)

    def clean_timezone(self):
        return validate_timezone(self.cleaned_data["timezone"])

    def clean(self):
        cleaned = super().clean()
        local, zone = cleaned.get("start_local"), cleaned.get("timezone")
        if local is None or not zone:
            return cleaned
        wall = local.replace(tzinfo=None)
        start = wall.replace(tzinfo=ZoneInfo(zone))
        if start.astimezone(UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) != wall:
            self.add_error(
                "start_local",
                f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: the clocks skip that hour "
                "that day. Choose a time after the change.",
            )
            return cleaned
        kept = self._start_kept(start, zone)
        if not kept and start <= timezone.now():
            self.add_error("start_local", "The start time must be in the future.")
        # An unchanged start keeps its stored value, however long ago its first run was.
        cleaned["start_time"] = self.instance.start_time if kept else start
        return cleaned

    def _start_kept(self, start, zone: str) -> bool:
        """Whether the form gives the schedule's stored start again (to the minute)."""
        if not self.instance.pk or zone != self.instance.timezone:
            return False
        return start == self.instance.start_time.replace(second=0, microsecond=0)

    def changes_schedule(self) -> bool:
        """Whether the (valid) form sets another frequency, start or zone than stored."""
        cleaned = self.cleaned_data
        wanted = (cleaned["frequency"], cleaned["start_time"], cleaned["timezone"])
        return not self.instance.pk or wanted != self._stored_run

    def save(self, commit=True):
        schedule = super().save(commit=False)
        schedule.start_time = self.cleaned_data["start_time"]
        if commit:
            schedule.save()
        return schedule
