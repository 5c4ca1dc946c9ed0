"""Sources as code: the JSON file read by `import_sources` and written by `export_sources`.

The file is a list of sources in a stable shape (documented in README.md). Importing goes
through the admin's form, so a file is held to exactly the rules of the admin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db import transaction

from importer import services
from importer.forms import SECRET_FIELDS, ImportSourceForm, ScheduleForm
from importer.models import ImportSource, Schedule


class ConfigFileError(Exception):
    pass


@dataclass
class AppliedSource:
    name: str
    created: bool
    changed_fields: list[str] = field(default_factory=list)
    schedule_note: str = ""

    def __str__(self) -> str:
        if self.created:
            text = f"created {self.name}"
        elif not self.changed_fields:
            text = f"unchanged {self.name}"
        else:
            text = f"updated {self.name}: {', '.join(self.changed_fields)}"
        return text + (f"; {self.schedule_note}" if self.schedule_note else "")


def source_to_config(source: ImportSource, *, with_secrets: bool = False) -> dict:
    pagination = {"style": source.pagination, "page_size": source.page_size}
    if source.pagination == ImportSource.Pagination.OFFSET:
        pagination.update(offset_param=source.offset_param, limit_param=source.limit_param)
    elif source.pagination == ImportSource.Pagination.PAGE:
        pagination.update(
            page_param=source.page_param,
            limit_param=source.limit_param,
            first_page=source.first_page,
        )
    auth = {"kind": source.source_auth}
    assets = {
        "base_url": source.assets_base_url,
        "workspace_id": source.workspace_id,
        "import_source_id": source.import_source_id,
    }
    if with_secrets:
        assets["token"] = source.assets_token
        if source.source_token:
            auth["token"] = source.source_token
    schedule = Schedule.objects.filter(source=source).first()
    return {
        "name": source.name,
        "enabled": source.enabled,
        "assets": assets,
        "source": {
            "kind": "rest",
            "url": source.source_url,
            "records": source.records_path,
            "pagination": pagination,
            "auth": auth,
        },
        "mapping": source.mapping,
        "schedule": schedule_to_config(schedule) if schedule else None,
    }


def schedule_to_config(schedule: Schedule) -> dict:
    local = schedule.start_time.astimezone(ZoneInfo(schedule.timezone))
    return {
        "frequency": schedule.frequency,
        "start_time": local.replace(tzinfo=None).isoformat(),
        "timezone": schedule.timezone,
    }


def _form_data(entry: dict, where: str) -> dict:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ConfigFileError(f"{where}: each source is an object with a 'name'")
    assets = entry.get("assets") or {}
    source = entry.get("source") or {}
    if source.get("kind", "rest") != "rest":
        raise ConfigFileError(f"{where}: source kind '{source.get('kind')}' is not supported")
    pagination = source.get("pagination") or {}
    auth = source.get("auth") or {}
    data = {
        "name": entry["name"],
        "enabled": entry.get("enabled", True),
        "assets_base_url": assets.get(
            "base_url", ImportSource._meta.get_field("assets_base_url").get_default()
        ),
        "workspace_id": assets.get("workspace_id", ""),
        "import_source_id": assets.get("import_source_id", ""),
        "assets_token": assets.get("token", ""),
        "source_url": source.get("url", ""),
        "records_path": source.get("records", ""),
        "pagination": pagination.get("style", ImportSource.Pagination.OFFSET),
        "page_size": pagination.get("page_size", 100),
        "offset_param": pagination.get("offset_param", "offset"),
        "limit_param": pagination.get("limit_param", "limit"),
        "page_param": pagination.get("page_param", "page"),
        "first_page": pagination.get("first_page", 1),
        "source_auth": auth.get("kind", ImportSource.AuthKind.NONE),
        "source_token": auth.get("token", ""),
        "mapping": entry.get("mapping"),
    }
    # A JSON form field takes text; an absent mapping stays empty.
    data["mapping"] = "" if data["mapping"] is None else json.dumps(data["mapping"])
    if not data["enabled"]:
        data.pop("enabled")  # an unchecked checkbox is an absent key
    return data


def apply_config(entries: list, *, dry_run: bool = False) -> list[AppliedSource]:
    """Create or update sources by name, all or nothing; then bring schedules to Assets.

    Schedules are synced after the database commit: a remote call cannot be rolled back.
    """
    results, schedule_changes = _apply_sources(entries, dry_run=dry_run)
    if dry_run:
        return results
    for result, (source_name, wanted) in zip(results, schedule_changes, strict=True):
        result.schedule_note = _apply_schedule(source_name, wanted)
    return results


@transaction.atomic
def _apply_sources(entries: list, *, dry_run: bool):
    if not isinstance(entries, list):
        raise ConfigFileError("the file must hold a JSON list of sources")
    results: list[AppliedSource] = []
    schedule_changes: list[tuple[str, object]] = []
    errors: list[str] = []
    for position, entry in enumerate(entries):
        where = f"source {position + 1}" + (
            f" ({entry.get('name')})" if isinstance(entry, dict) and entry.get("name") else ""
        )
        data = _form_data(entry, where)
        instance = ImportSource.objects.filter(name=data["name"]).first()
        form = ImportSourceForm(data=data, instance=instance)
        if not form.is_valid():
            for field_name, messages in form.errors.items():
                for message in messages:
                    errors.append(f"{where}: {field_name}: {message}")
            continue
        wanted = entry.get("schedule", _KEEP)
        if wanted not in (_KEEP, None):
            errors.extend(f"{where}: schedule: {problem}" for problem in _schedule_problems(wanted))
        schedule_changes.append((data["name"], wanted))
        changed = [
            name if name not in SECRET_FIELDS else f"{name} (secret)"
            for name in form.changed_data
            if name not in SECRET_FIELDS or form.cleaned_data.get(name)
        ]
        if instance is not None and not changed:
            results.append(AppliedSource(name=data["name"], created=False))
            continue
        source = form.save()
        if instance is not None and "enabled" in form.changed_data and not dry_run:
            transaction.on_commit(lambda source=source: _apply_enabled(source))
        results.append(
            AppliedSource(name=data["name"], created=instance is None, changed_fields=changed)
        )
    if errors:
        transaction.set_rollback(True)
        raise ConfigFileError("\n".join(errors))
    if dry_run:
        transaction.set_rollback(True)
    return results, schedule_changes


_KEEP = object()  # no "schedule" key: leave the schedule as it is


def _schedule_form(wanted: dict, schedule: Schedule | None, source_pk: int | None):
    return ScheduleForm(
        data={
            "source": source_pk,
            "frequency": wanted.get("frequency"),
            "start_local": wanted.get("start_time"),
            "timezone": wanted.get("timezone")
            or Schedule._meta.get_field("timezone").get_default(),
        },
        instance=schedule,
    )


def _schedule_problems(wanted) -> list[str]:
    if not isinstance(wanted, dict):
        return ["must be an object with frequency, start_time and timezone, or null"]
    form = _schedule_form(wanted, None, None)
    form.is_valid()
    return [
        f"{'start_time' if name == 'start_local' else name}: {message}"
        for name, messages in form.errors.items()
        if name != "source"
        for message in messages
    ]


def _apply_enabled(source: ImportSource) -> None:
    try:
        services.apply_enabled_state(source=source)
    except services.ScheduleError:
        pass  # recorded on the schedule row, shown in the admin


def _apply_schedule(source_name: str, wanted) -> str:
    if wanted is _KEEP:
        return ""
    source = ImportSource.objects.get(name=source_name)
    schedule = Schedule.objects.filter(source=source).first()
    try:
        if wanted is None:
            if schedule is None:
                return ""
            services.delete_schedule(schedule=schedule)
            return "schedule removed"
        form = _schedule_form(wanted, schedule, source.pk)
        if schedule is not None and not form.has_changed() and schedule.in_sync:
            return ""
        if not form.is_valid():
            return "schedule not changed: " + "; ".join(
                message for messages in form.errors.values() for message in messages
            )
        schedule = form.save()
        services.sync_schedule(schedule=schedule)
    except services.ScheduleError as error:
        return f"schedule OUT OF SYNC with Assets: {error}"
    return "schedule synced to Assets"
