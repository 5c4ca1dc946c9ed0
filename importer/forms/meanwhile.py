"""Two people editing one row: the second save must not put back what the first changed.

A change form posts every field, the ones its user left alone too, with the values the page
was shown with. So of two people who opened a source's page, the one who saves second put
back, without a word, what the first had changed: a mapping, a page size, a source the first
had disabled (and whose schedule went with it) enabled again.

The page carries a signed stamp of what its fields held when it was shown (a keyed digest of
each, so no value, and no secret, leaves the server). The save compares it with the row as it
is now, locked: a field changed meanwhile refuses the save, naming the field and who changed
it, and the person reloads to see the change before making theirs.
"""

from __future__ import annotations

import json
from datetime import datetime

from django import forms
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db.models import Manager
from django.db.models.fields.files import FieldFile
from django.utils import timezone
from django.utils.crypto import salted_hmac

SALT = "importer.forms.meanwhile"


class _Stamp(forms.CharField):
    """The page's stamp: never a change of the row (nor one the history names)."""

    widget = forms.HiddenInput

    def has_changed(self, initial, data) -> bool:
        return False


class RefusesEditsMadeMeanwhile(forms.ModelForm):
    """A ModelForm mixin: `guarded_fields` changed by someone else since the page was shown
    refuse the save. A form posted without the stamp (a config file) is not checked."""

    guarded_fields: tuple[str, ...] = ()
    # A guarded model field the form edits under another name (the schedule's start time).
    form_field_of: dict[str, str] = {}

    loaded_as = _Stamp(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["loaded_as"] = stamp(self.instance, self.guarded_fields)

    def clean(self):
        cleaned = super().clean()
        posted = self.data.get(self.add_prefix("loaded_as")) if self.is_bound else None
        if posted and self.instance.pk is not None:
            self._refuse_edits_made_meanwhile(posted)
        return cleaned

    def _refuse_edits_made_meanwhile(self, posted: str) -> None:
        model = type(self.instance)
        # Locked until the save (the admin's change view is one transaction).
        current = model._default_manager.select_for_update().get(pk=self.instance.pk)
        found = changes_since(posted, current, self.guarded_fields)
        if found is None:
            self.add_error(None, OUT_OF_DATE)
            return
        changed, by = found
        if not changed:
            return
        shown_as = [self.form_field_of.get(name, name) for name in changed]
        labels = [
            str(self.fields[name].label or name) if name in self.fields else name
            for name in shown_as
        ]
        self.add_error(
            None,
            f"Since you opened this page, {by} changed {_listed(labels)}. Saving would put "
            "back what you were shown: reload the page to see the change, then make yours "
            "again.",
        )
        for name in shown_as:
            if name in self.fields:
                self.add_error(name, "Changed by someone else since you opened this page.")


OUT_OF_DATE = "This page is out of date: reload it, then make your change."


def changes_since(posted: str, current, names, shown=None) -> tuple[list[str], str] | None:
    """Which of `names` (and "shown": what else the page showed, when given) differ from the
    page's stamp `posted`, and who changed the row since; None when the stamp cannot be read
    (a page of before SECRET_KEY was rotated, or none at all)."""
    try:
        stamped = signing.loads(posted, salt=SALT) if posted else None
    except signing.BadSignature:
        stamped = None
    if not stamped or stamped.get("key") != _digest(b"key"):  # SECRET_KEY rotated since
        return None
    digests = _digests(current, names)
    if shown is not None:
        digests["shown"] = _digest(_as_text(shown))
    # A setting the stamp does not name did not exist when the page was shown (added by a
    # later release): the page posted none, so it puts nothing back.
    changed = [
        name
        for name in digests
        if name in stamped["fields"] and stamped["fields"][name] != digests[name]
    ]
    if not changed:
        return [], ""
    return changed, _changed_by(current, datetime.fromisoformat(stamped["at"]))


def stamp(instance, names, shown=None) -> str:
    """What `names` hold now (and `shown`: what else the page shows, a document fetched from
    elsewhere), as a signed stamp for the page (digests, not values)."""
    fields = _digests(instance, names)
    if shown is not None:
        fields["shown"] = _digest(_as_text(shown))
    return signing.dumps(
        {"at": timezone.now().isoformat(), "key": _digest(b"key"), "fields": fields},
        salt=SALT,
        compress=True,
    )


def _digests(instance, names) -> dict[str, str]:
    return {name: _digest(_as_text(getattr(instance, name))) for name in names}


def _digest(value: bytes) -> str:
    """Keyed by SECRET_KEY for this use alone: a digest tells nothing of the value."""
    return salted_hmac(SALT, value, algorithm="sha256").hexdigest()[:16]


def _as_text(value) -> bytes:
    if isinstance(value, FieldFile):
        value = value.name
    elif isinstance(value, Manager):  # many-to-many: which rows it links
        value = sorted(value.values_list("pk", flat=True))
    return json.dumps(value, sort_keys=True, default=str).encode()


def _changed_by(instance, since: datetime) -> str:
    """Who, by the admin's history, changed the row since; 'someone' when it does not say (a
    config file, a command)."""
    names = list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(instance),
            object_id=str(instance.pk),
            action_time__gte=since,
        )
        .order_by("action_time")
        .values_list("user__username", flat=True)
    )
    return _listed(list(dict.fromkeys(names))) if names else "someone"


def _listed(words: list[str]) -> str:
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
