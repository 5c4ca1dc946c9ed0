"""Sources as code: the JSON file read by `import_sources` and written by `export_sources`.

The file is an object holding a list of sources and a list of notification channels, in a
stable shape (documented in README.md); a bare list of sources, the format from before channels
were part of it, still imports. Importing goes through the admin's forms, so a file is held to
exactly the rules of the admin.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db import transaction

from importer import services
from importer.config_channels import AppliedChannel, apply_channels, channel_to_config, channels_for
from importer.config_shape import shape_problems
from importer.fields import holds_json
from importer.forms import (
    MASKED_JSON_FIELDS,
    MASKED_URL_FIELDS,
    SECRET_FIELDS,
    ImportSourceForm,
    ScheduleForm,
)
from importer.json_codec import kind_of
from importer.models import ImportSource, Schedule
from importer.redaction import (
    MASK,
    declared_secret_params,
    mask_setting,
    mask_url,
    username_holds_a_key,
)


class ConfigFileError(Exception):
    pass


@dataclass
class AppliedSource:
    name: str
    created: bool
    changed_fields: list[str] = field(default_factory=list)
    # The model fields saved, and the values they had: Assets follows them after the commit.
    saved_fields: set[str] = field(default_factory=set, repr=False)
    was: dict = field(default_factory=dict, repr=False)
    mapping_note: str = ""
    schedule_note: str = ""
    # What could not be applied in Assets (the local change stays applied).
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.created:
            text = f"created {self.name}"
        elif not self.changed_fields:
            text = f"unchanged {self.name}"
        else:
            text = f"updated {self.name}: {', '.join(self.changed_fields)}"
        notes = [note for note in (self.mapping_note, self.schedule_note) if note]
        return "; ".join([text, *notes])


# Where each setting of a source lives in the file: (path of keys, model field).
FIELD_PATHS: list[tuple[tuple[str, ...], str]] = [
    (("assets", "base_url"), "assets_base_url"),
    (("assets", "workspace_id"), "workspace_id"),
    (("assets", "import_source_id"), "import_source_id"),
    (("source", "kind"), "source_kind"),
    (("source", "url"), "source_url"),
    (("source", "method"), "request_method"),
    (("source", "body"), "request_body"),
    (("source", "records"), "records_path"),
    (("source", "plugin"), "plugin"),
    (("source", "options"), "plugin_options"),
    (("source", "headers"), "extra_headers"),
    (("source", "params"), "extra_params"),
    (("source", "secret_params"), "secret_params"),
    (("source", "timeout"), "request_timeout"),
    (("source", "ca_bundle"), "ca_bundle"),
    (("source", "missing_identity"), "missing_identity"),
    (("source", "invalid_values"), "invalid_values"),
    (("source", "encoding"), "file_encoding"),
    (("source", "pagination", "style"), "pagination"),
    (("source", "pagination", "page_size"), "page_size"),
    (("source", "pagination", "offset_param"), "offset_param"),
    (("source", "pagination", "limit_param"), "limit_param"),
    (("source", "pagination", "page_param"), "page_param"),
    (("source", "pagination", "first_page"), "first_page"),
    (("source", "pagination", "cursor_param"), "cursor_param"),
    (("source", "pagination", "cursor_path"), "cursor_path"),
    (("source", "pagination", "after_first_page"), "after_first_page"),
    (("source", "pagination", "total_path"), "total_path"),
    (("source", "pagination", "repeated_records"), "repeated_records"),
    (("source", "auth", "kind"), "source_auth"),
    (("source", "auth", "username"), "auth_username"),
    (("source", "auth", "key_name"), "auth_key_name"),
    (("source", "auth", "token_url"), "oauth_token_url"),
    (("source", "auth", "scope"), "oauth_scope"),
    (("source", "csv", "delimiter"), "csv_delimiter"),
    (("source", "csv", "quotechar"), "csv_quotechar"),
    (("source", "csv", "header"), "csv_has_header"),
    (("source", "csv", "fieldnames"), "csv_fieldnames"),
    (("source", "limits", "requests_per_minute"), "max_requests_per_minute"),
    (("source", "limits", "chunks_in_flight"), "max_chunks_in_flight"),
    (("source", "limits", "record_drop_percent"), "record_drop_limit"),
]
# The source's secret has the name its authentication kind gives it.
SECRET_NAMES = ("token", "password", "key", "client_secret")
SECRET_NAME_BY_AUTH = {
    "bearer": "token",
    "basic": "password",
    "api_key_header": "key",
    "api_key_query": "key",
    "oauth2_client_credentials": "client_secret",
}
ALIASES = {("source", "auth", "client_id"): ("source", "auth", "username")}
# What else a source in the file may hold, besides FIELD_PATHS (for the shape check).
TOP_FIELD_PATHS = [(("name",), "name"), (("enabled",), "enabled")]
OTHER_PATHS = {
    ("assets", "token"): "string",
    **{("source", "auth", name): "string" for name in SECRET_NAMES},
    **{alias: "string" for alias in ALIASES},
    ("mapping",): "object or null",
    ("schedule",): "object or null",
    ("schedule", "frequency"): "string",
    ("schedule", "start_time"): "string",
    ("schedule", "timezone"): "string or null",
}


def _get(document: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _put(document: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        document = document.setdefault(key, {})
    document[path[-1]] = value


_MISSING = object()


def source_to_config(source: ImportSource, *, with_secrets: bool = False) -> dict:
    """The source as the file shape; settings at their default are left out."""
    config: dict = {"name": source.name, "enabled": source.enabled}
    for path, field_name in FIELD_PATHS:
        field = ImportSource._meta.get_field(field_name)
        value = getattr(source, field_name)
        always = path[:2] in (("assets", "workspace_id"), ("assets", "import_source_id"))
        if always or path == ("source", "kind") or value != field.get_default():
            _put(config, path, value if with_secrets else _masked(source, field_name, value))
    if with_secrets:
        _put(config, ("assets", "token"), source.assets_token)
        if source.source_token:
            name = SECRET_NAME_BY_AUTH.get(source.source_auth, "token")
            _put(config, ("source", "auth", name), source.source_token)
    config["mapping"] = source.mapping
    schedule = Schedule.objects.filter(source=source).first()
    config["schedule"] = schedule_to_config(schedule) if schedule else None
    return config


def _masked(source: ImportSource, field_name: str, value):
    """A setting as written without secrets: MASK where it holds one (import keeps those)."""
    if field_name in MASKED_URL_FIELDS:
        return mask_url(value or "", declared_secret_params(source))
    if field_name in MASKED_JSON_FIELDS:
        return mask_setting(field_name, value, declared_secret_params(source))
    if field_name == "auth_username" and username_holds_a_key(source):
        return MASK
    return value


def schedule_to_config(schedule: Schedule) -> dict:
    local = schedule.start_time.astimezone(ZoneInfo(schedule.timezone))
    return {
        "frequency": schedule.frequency,
        "start_time": local.replace(tzinfo=None).isoformat(),
        "timezone": schedule.timezone,
    }


def _form_value(field_name: str, value):
    """A value as a submitted form would carry it."""
    field = ImportSource._meta.get_field(field_name)
    if holds_json(field):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def _form_data(entry: dict, where: str) -> dict:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ConfigFileError(f"{where}: each source is an object with a 'name'")
    for alias, path in ALIASES.items():
        value = _get(entry, alias)
        if value is not _MISSING and _get(entry, path) is _MISSING:
            _put(entry, path, value)
    data = {"name": entry["name"], "enabled": entry.get("enabled", True)}
    for path, field_name in FIELD_PATHS:
        value = _get(entry, path)
        if value is _MISSING:
            value = ImportSource._meta.get_field(field_name).get_default()
        data[field_name] = _form_value(field_name, value)
    # A secret written as MASK (or left out) keeps the stored one, as the admin's empty field
    # does; with none stored, the form says the secret is missing.
    for name in ("assets_token", "source_token"):
        secret = _secret_written(name, entry)
        data[name] = "" if secret == MASK else secret
    mapping = entry.get("mapping")
    data["mapping"] = "" if mapping is None else json.dumps(mapping)
    for checkbox in ("enabled", "csv_has_header"):
        if not data[checkbox]:
            data.pop(checkbox)  # an unchecked checkbox is an absent key
    return data


FILE_KEYS = ("sources", "notification_channels")


def config_document(source_names: list[str] | None = None, *, with_secrets: bool = False) -> dict:
    """The file for these sources (all when None) and the channels that concern them."""
    sources = ImportSource.objects.all()
    if source_names is not None:
        sources = sources.filter(name__in=source_names)
    return {
        "sources": [source_to_config(source, with_secrets=with_secrets) for source in sources],
        "notification_channels": [
            channel_to_config(channel, with_secrets=with_secrets)
            for channel in channels_for(source_names)
        ],
    }


def read_document(document) -> tuple[list, list]:
    """The sources and the channels of a file. A bare list is a file from before channels were
    part of it: its sources only, and every channel is left as it is."""
    if isinstance(document, list):
        sources, channels = document, []
    elif not isinstance(document, dict):
        raise ConfigFileError(
            'the file must hold an object with "sources" and "notification_channels" '
            f"(or a list of sources), not {kind_of(document)}"
        )
    else:
        errors = [
            f"{key}: unknown key (see the file format in README.md)"
            for key in document
            if key not in FILE_KEYS
        ]
        errors.extend(
            f"{key}: must be a list, not {kind_of(document[key])}"
            for key in FILE_KEYS
            if key in document and not isinstance(document[key], list)
        )
        if errors:
            raise ConfigFileError("\n".join(errors))
        sources = document.get("sources", [])
        channels = document.get("notification_channels", [])
    errors = _named_twice("source", sources) + _named_twice("notification channel", channels)
    if errors:
        raise ConfigFileError("\n".join(errors))
    return sources, channels


def _named_twice(kind: str, entries: list) -> list[str]:
    """A name given to two entries: the second would silently replace the first."""
    names = Counter(
        entry["name"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    )
    return [
        f"{kind} '{name}' is in the file {count} times: keep one"
        for name, count in names.items()
        if count > 1
    ]


def apply_config(
    document: list | dict, *, dry_run: bool = False, push: bool = True
) -> list[AppliedSource | AppliedChannel]:
    """Create or update sources, then channels, by name, all or nothing; then make Assets match.

    With `push`, every mapping that changed or was never pushed goes to Assets, then the
    schedules are synced (Assets takes a schedule only for a source whose mapping it holds).
    Remote calls come after the database commit, as they cannot be rolled back: what Assets
    refused is listed in each result's `failures`, and the local change stays.
    """
    sources, channels = read_document(document)
    results, schedule_changes, channel_results = _apply_local(sources, channels, dry_run=dry_run)
    if dry_run:
        return [*results, *channel_results]
    for result, (source_name, wanted) in zip(results, schedule_changes, strict=True):
        if push:
            _push_mapping(result)
        _bring_assets_along(result)
        result.schedule_note, failed = _apply_schedule(source_name, wanted)
        if failed:
            result.failures.append(result.schedule_note)
    return [*results, *channel_results]


def _bring_assets_along(result: AppliedSource) -> None:
    """The schedule of a source moved to another import source, or disabled or enabled, as
    the admin does when such a source is saved."""
    if result.created or not result.saved_fields:
        return
    source = ImportSource.objects.get(name=result.name)
    try:
        services.source_saved(source=source, changed=result.saved_fields, was=result.was)
    except services.ScheduleError as error:
        result.failures.append(f"schedule OUT OF SYNC with Assets: {error}")


def _push_mapping(result: AppliedSource) -> None:
    source = ImportSource.objects.get(name=result.name)
    if not source.mapping or source.mapping_pushed_at:
        return
    why_not = services.try_push_mapping(source=source)
    if why_not:
        result.mapping_note = f"mapping NOT pushed: {why_not}"
    else:
        result.mapping_note = "mapping pushed to Assets"
        return
    result.failures.append(result.mapping_note)


@transaction.atomic
def _apply_local(sources: list, channels: list, *, dry_run: bool):
    """The file's local changes, in one transaction: the channels come after the sources, so a
    channel may name a source the same file creates."""
    results, schedule_changes, errors = _apply_sources(sources, dry_run=dry_run)
    named = frozenset(
        entry["name"]
        for entry in sources
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    )
    channel_results, channel_errors = apply_channels(channels, sources_in_file=named)
    errors.extend(channel_errors)
    if errors:
        transaction.set_rollback(True)
        raise ConfigFileError("\n".join(errors))
    if dry_run:
        transaction.set_rollback(True)
    return results, schedule_changes, channel_results


def _apply_sources(entries: list, *, dry_run: bool):
    results: list[AppliedSource] = []
    schedule_changes: list[tuple[str, object]] = []
    errors: list[str] = []
    for position, entry in enumerate(entries):
        where = f"source {position + 1}" + (
            f" ({entry.get('name')})"
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
            else ""
        )
        problems = shape_problems(entry, TOP_FIELD_PATHS + FIELD_PATHS, OTHER_PATHS)
        if problems:
            errors.extend(f"{where}: {problem}" for problem in problems)
            continue
        data = _form_data(entry, where)
        instance = ImportSource.objects.filter(name=data["name"]).first()
        form = ImportSourceForm(data=data, instance=instance)
        if not form.is_valid():
            errors.extend(
                f"{where}: {_place_in_file(field_name, entry)}: "
                f"{_explained(form, field_name, message, entry)}"
                for field_name, messages in form.errors.items()
                for message in messages
            )
            continue
        wanted = entry.get("schedule", _KEEP)
        schedule = Schedule.objects.filter(source=instance).first() if instance else None
        if wanted not in (_KEEP, None):
            errors.extend(
                f"{where}: schedule: {problem}" for problem in _schedule_problems(wanted, schedule)
            )
        schedule_changes.append((data["name"], wanted))
        plan = _schedule_plan(wanted, schedule) if dry_run else ""
        changed = [
            name if name not in SECRET_FIELDS else f"{name} (secret)"
            for name in form.changed_data
            if name not in SECRET_FIELDS or form.cleaned_data.get(name)
        ]
        if instance is not None and not changed:
            results.append(AppliedSource(name=data["name"], created=False, schedule_note=plan))
            continue
        form.save()
        results.append(
            AppliedSource(
                name=data["name"],
                created=instance is None,
                changed_fields=changed,
                saved_fields=set(form.changed_data),
                was=form.initial,
                schedule_note=plan,
            )
        )
    return results, schedule_changes, errors


def _place_in_file(field_name: str, entry: dict) -> str:
    """Where a setting is written in the file (`source.pagination.page_size`), not the name
    it has in the database."""
    if field_name in ("assets_token", "source_token"):
        auth = (entry.get("source") or {}).get("auth") or {}
        kind = auth.get("kind") if isinstance(auth, dict) else None
        return (
            "assets.token"
            if field_name == "assets_token"
            else f"source.auth.{SECRET_NAME_BY_AUTH.get(kind, 'token')}"
        )
    for path, name in TOP_FIELD_PATHS + FIELD_PATHS:
        if name == field_name:
            return ".".join(path)
    return field_name


def _secret_written(field_name: str, entry: dict) -> str:
    """The Assets token or the source's secret as the file writes it ("" when it does not)."""
    if field_name == "assets_token":
        assets = entry.get("assets")
        return (assets if isinstance(assets, dict) else {}).get("token", "")
    auth = _get(entry, ("source", "auth"))
    auth = auth if isinstance(auth, dict) else {}
    return next((auth[name] for name in SECRET_NAMES if auth.get(name)), "")


def _explained(form, field_name: str, message: str, entry: dict) -> str:
    """A form's error as a file's author needs it: the values a choice takes (Django names
    none), and what a `***` for a secret that is not stored means."""
    if field_name in SECRET_FIELDS and _secret_written(field_name, entry) == MASK:
        return (
            f"'{MASK}' stands for a stored secret, and none is stored here (an export made "
            "without --with-secrets leaves secrets out): give the secret itself"
        )
    field = form.fields.get(field_name)
    choices = [str(value) for value, _ in getattr(field, "choices", []) if value not in ("", None)]
    if choices and "valid choice" in message:
        return f"{message} (one of: {', '.join(choices)})"
    return message


_KEEP = object()  # no "schedule" key: leave the schedule as it is


def _schedule_form(wanted: dict, schedule: Schedule | None, source_pk: int | None):
    """The admin's form for the file's schedule, on a copy of `schedule`: validating a model
    form writes the wanted values into its instance."""
    return ScheduleForm(
        data={
            "source": source_pk,
            "frequency": wanted.get("frequency"),
            "start_local": wanted.get("start_time"),
            "timezone": wanted.get("timezone")
            or Schedule._meta.get_field("timezone").get_default(),
        },
        instance=copy.copy(schedule),
    )


def _schedule_problems(wanted, schedule: Schedule | None) -> list[str]:
    """What is wrong with the file's schedule for a source whose schedule now is `schedule`
    (a start already past is fine when it is the one it has)."""
    if not isinstance(wanted, dict):
        return ["must be an object with frequency, start_time and timezone, or null"]
    form = _schedule_form(wanted, schedule, schedule.source_id if schedule else None)
    form.is_valid()
    return [
        f"{'start_time' if name == 'start_local' else name}: {message}"
        for name, messages in form.errors.items()
        if name != "source"
        for message in messages
    ]


def _schedule_plan(wanted, schedule: Schedule | None) -> str:
    """What applying the file would do to the source's schedule (a dry run says so)."""
    if wanted is _KEEP or (wanted is None and schedule is None):
        return ""
    if wanted is None:
        return "schedule would be removed, here and in Assets"
    if schedule is None:
        return "schedule would be created"
    form = _schedule_form(wanted, schedule, schedule.source_id)
    if not form.is_valid():
        return ""  # listed among the file's errors
    if form.changes_schedule():
        return f"schedule would change: {', '.join(form.changed_settings())}"
    return "" if schedule.in_sync else "schedule would be synced to Assets"


def _apply_schedule(source_name: str, wanted) -> tuple[str, bool]:
    """What was done with the source's schedule, and whether Assets was left unmatched."""
    if wanted is _KEEP:
        return "", False
    source = ImportSource.objects.get(name=source_name)
    schedule = Schedule.objects.filter(source=source).first()
    try:
        if wanted is None:
            if schedule is None:
                return "", False
            services.delete_schedule(schedule=schedule)
            return "schedule removed", False
        form = _schedule_form(wanted, schedule, source.pk)
        if not form.is_valid():
            return "schedule not changed: " + "; ".join(
                message for messages in form.errors.values() for message in messages
            ), True
        if schedule is not None and not form.changes_schedule() and schedule.in_sync:
            return "", False
        what = (
            "schedule created and"
            if schedule is None
            else f"schedule changed ({', '.join(form.changed_settings())}) and"
            if form.changes_schedule()
            else "schedule"
        )
        schedule = form.save()
        services.sync_schedule(schedule=schedule)
    except services.ScheduleError as error:
        return f"schedule saved here but OUT OF SYNC with Assets: {error}", True
    return f"{what} synced to Assets", False
