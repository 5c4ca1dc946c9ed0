"""Sources as code: the JSON file read by `import_sources` and written by `export_sources`.

The file is a list of sources in a stable shape (documented in README.md). Importing goes
through the admin's form, so a file is held to exactly the rules of the admin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import transaction

from importer.forms import SECRET_FIELDS, ImportSourceForm
from importer.models import ImportSource


class ConfigFileError(Exception):
    pass


@dataclass
class AppliedSource:
    name: str
    created: bool
    changed_fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.created:
            return f"created {self.name}"
        if not self.changed_fields:
            return f"unchanged {self.name}"
        return f"updated {self.name}: {', '.join(self.changed_fields)}"


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


@transaction.atomic
def apply_config(entries: list, *, dry_run: bool = False) -> list[AppliedSource]:
    """Create or update sources by name; all or nothing, every error named by source."""
    if not isinstance(entries, list):
        raise ConfigFileError("the file must hold a JSON list of sources")
    results: list[AppliedSource] = []
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
        changed = [
            name if name not in SECRET_FIELDS else f"{name} (secret)"
            for name in form.changed_data
            if name not in SECRET_FIELDS or form.cleaned_data.get(name)
        ]
        if instance is not None and not changed:
            results.append(AppliedSource(name=data["name"], created=False))
            continue
        form.save()
        results.append(
            AppliedSource(name=data["name"], created=instance is None, changed_fields=changed)
        )
    if errors:
        transaction.set_rollback(True)
        raise ConfigFileError("\n".join(errors))
    if dry_run:
        transaction.set_rollback(True)
    return results
