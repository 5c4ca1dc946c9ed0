"""Notification channels as code: their part of the sources file (see README, "Sources as code").

A channel names its sources by name. Its webhook URL and secret header value are secrets: an
export writes MASK for them unless asked for secrets, and MASK (or no value) in a file keeps the
stored one. Importing goes through the admin's channel form, so a file is held to its rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from importer.config_shape import shape_problems
from importer.models import ImportSource, NotificationChannel
from importer.notifications.forms import SECRET_FIELDS, NotificationChannelForm
from importer.redaction import MASK

# Where each setting of a channel lives in the file: (path of keys, model field).
CHANNEL_PATHS: list[tuple[tuple[str, ...], str]] = [
    (("name",), "name"),
    (("kind",), "kind"),
    (("enabled",), "enabled"),
    (("all_sources",), "all_sources"),
    (("notify_on_done",), "notify_on_done"),
    (("webhook", "format"), "webhook_format"),
    (("webhook", "header_name"), "secret_header_name"),
]
SECRET_PATHS = {
    ("webhook", "url"): "webhook_url",
    ("webhook", "header_value"): "secret_header_value",
}
OTHER_CHANNEL_PATHS = {
    ("sources",): "list of strings",
    ("recipients",): "list of strings",
    **{path: "string" for path in SECRET_PATHS},
}
# The form's field names as the file names them, for its errors.
FILE_NAMES = {
    **{field_name: ".".join(path) for path, field_name in CHANNEL_PATHS},
    **{field_name: ".".join(path) for path, field_name in SECRET_PATHS.items()},
}
CHECKBOXES = ("enabled", "all_sources", "notify_on_done")


@dataclass
class AppliedChannel:
    name: str
    created: bool
    changed_fields: list[str] = field(default_factory=list)
    # A channel lives only here: nothing in Assets can fail to match it.
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.created:
            return f"created channel {self.name}"
        if not self.changed_fields:
            return f"unchanged channel {self.name}"
        return f"updated channel {self.name}: {', '.join(self.changed_fields)}"


def channels_for(source_names: list[str] | None) -> QuerySet[NotificationChannel]:
    """The channels an export of these sources carries: those that alert about any of them,
    and the site-wide ones (all channels when no names are given)."""
    channels = NotificationChannel.objects.prefetch_related("sources").order_by("name")
    if source_names is None:
        return channels
    return channels.filter(Q(all_sources=True) | Q(sources__name__in=source_names)).distinct()


def channel_to_config(channel: NotificationChannel, *, with_secrets: bool = False) -> dict:
    """The channel as the file shape; its sources by name, all of them (see README)."""
    config: dict = {
        "name": channel.name,
        "kind": channel.kind,
        "enabled": channel.enabled,
        "all_sources": channel.all_sources,
        "sources": sorted(source.name for source in channel.sources.all()),
        "notify_on_done": channel.notify_on_done,
        "recipients": _addresses(channel.recipients),
    }
    webhook: dict = {}
    if channel.webhook_url:
        webhook["url"] = channel.webhook_url if with_secrets else MASK
    if channel.kind == NotificationChannel.Kind.WEBHOOK:
        webhook["format"] = channel.webhook_format
    if channel.secret_header_name:
        webhook["header_name"] = channel.secret_header_name
    if channel.secret_header_value:
        webhook["header_value"] = channel.secret_header_value if with_secrets else MASK
    if webhook:
        config["webhook"] = webhook
    return config


def _addresses(recipients: str) -> list[str]:
    given = [part.strip() for part in recipients.replace(",", "\n").splitlines()]
    return [address for address in given if address]


def apply_channels(
    entries: list, *, sources_in_file: frozenset[str] = frozenset()
) -> tuple[list[AppliedChannel], list[str]]:
    """Create or update channels by name through the admin's form; channels absent from the
    file are left alone. Returns the results and the errors; the caller owns the transaction
    (and rolls back on errors), so a channel may name a source created by the same file
    (`sources_in_file`: its names, so that one the file failed to create is not called
    unknown)."""
    results: list[AppliedChannel] = []
    errors: list[str] = []
    for position, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"channel {position + 1}" + (f" ({name})" if isinstance(name, str) else "")
        problems = shape_problems(
            entry, CHANNEL_PATHS, OTHER_CHANNEL_PATHS, model=NotificationChannel, noun="channel"
        )
        if not problems and not name:
            problems = ["each channel is an object with a 'name'"]
        if problems:
            errors.extend(f"{where}: {problem}" for problem in problems)
            continue
        instance = NotificationChannel.objects.filter(name=name).first()
        data, problems = _form_data(entry, instance, sources_in_file)
        form = NotificationChannelForm(data=data, instance=instance) if not problems else None
        if form is not None and not form.is_valid():
            problems = [
                f"{FILE_NAMES.get(field_name, field_name)}: {message}"
                for field_name, messages in form.errors.items()
                for message in messages
            ]
        if problems:
            errors.extend(f"{where}: {problem}" for problem in problems)
            continue
        changed = [
            field_name if field_name not in SECRET_FIELDS else f"{field_name} (secret)"
            for field_name in form.changed_data
            if field_name not in SECRET_FIELDS or form.cleaned_data.get(field_name)
        ]
        if instance is not None and not changed:
            results.append(AppliedChannel(name=name, created=False))
            continue
        form.save()
        results.append(AppliedChannel(name=name, created=instance is None, changed_fields=changed))
    return results, errors


def _form_data(
    entry: dict, instance: NotificationChannel | None, sources_in_file: frozenset[str]
) -> tuple[dict, list[str]]:
    """The entry as the admin's form would receive it, and what keeps it from being one."""
    problems: list[str] = []
    data: dict = {}
    for path, field_name in CHANNEL_PATHS:
        value = _get(entry, path)
        if value is None:
            value = NotificationChannel._meta.get_field(field_name).get_default()
        data[field_name] = value
    for checkbox in CHECKBOXES:
        if not data[checkbox]:
            data.pop(checkbox)  # an unchecked checkbox is an absent key
    names = entry.get("sources") or []
    found = dict(ImportSource.objects.filter(name__in=names).values_list("name", "pk"))
    problems.extend(
        f"sources: the source '{source}' of this file was not applied (see its errors)"
        if source in sources_in_file
        else f"sources: no source named '{source}' (in the file or here)"
        for source in names
        if source not in found
    )
    data["sources"] = [found[source] for source in names if source in found]
    addresses = entry.get("recipients") or []
    kept = instance is not None and _addresses(instance.recipients) == addresses
    data["recipients"] = instance.recipients if kept else "\n".join(addresses)
    for path, field_name in SECRET_PATHS.items():
        value = _get(entry, path)
        if value == MASK:
            if instance is None or not getattr(instance, field_name):
                problems.append(
                    f"{'.'.join(path)}: {MASK} keeps the stored value, but there is none: "
                    "give the value itself"
                )
            value = ""
        data[field_name] = value or ""  # empty keeps the stored secret, as in the admin
    return data, problems


def _get(entry: dict, path: tuple[str, ...]):
    """The value at `path`, or None where the file leaves it out."""
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry
