"""What the admin pages show beside the fields: state badges, masked secrets, progress bars."""

import json
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.db.models.fields.files import FieldFile
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from importer import services
from importer.models import Execution, ImportSource, Schedule
from importer.progress import describe, progress_of, settled
from importer.redaction import mask_setting


def state_badge(state: str) -> str:
    colours = {
        "DONE": "#2e7d32",
        "FAILED": "#c62828",
        "REFUSED": "#c62828",
        "CANCELLED": "#6d6d6d",
        "INGESTING": "#1565c0",
        "COMPLETING": "#1565c0",
        "PROCESSING": "#6a1b9a",
        "PENDING": "#8d6e00",
        "IN SYNC": "#2e7d32",
        "OUT OF SYNC": "#c62828",
        "OUT OF DATE": "#c62828",
        "QUEUED": "#8d6e00",
        "RUNNING": "#1565c0",
        "SUBMITTED": "#2e7d32",
        "OK": "#2e7d32",
        "FAILING": "#c62828",
        "SENT": "#2e7d32",
        "SENDING": "#1565c0",
        "FOLDED": "#6d6d6d",
    }
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px">{}</span>',
        colours.get(state, "#555"),
        state,
    )


def stalled_note(stalled_since) -> str:
    """ "stalled since 02:14" under a running import's state: housekeeping flagged it, and its
    badge alone would read like an import at work (the day too, when not today)."""
    moment = localtime(stalled_since)
    if moment.date() == localtime().date():
        shown = f"{moment:%H:%M}"
    else:
        shown = date_format(moment, "SHORT_DATETIME_FORMAT")
    return format_html('<div class="stalled-note">stalled since {}</div>', shown)


def when_it_runs(schedule: Schedule) -> str:
    """When the schedule runs next, as every page says it: a time only when Assets holds
    the schedule (a disabled source's was removed, one out of sync may not be there, or be
    there as it was last synced, and run so)."""
    if not schedule.source.enabled:
        return "paused: the source is disabled"
    if services.runs_as_last_synced(schedule):
        return "not in Assets as set here: Assets still runs it as last synced"
    if not schedule.in_sync:
        return "not in Assets as set here: no run until it is synced"
    return f"next {next_run_label(schedule)}"


def next_run_label(schedule: Schedule) -> str:
    """The next run in the schedule's own zone, and in the viewer's when that differs."""
    upcoming = services.upcoming_run(schedule)
    if upcoming is None:
        return "none"
    own = upcoming.astimezone(ZoneInfo(schedule.timezone))
    label = f"{own:%Y-%m-%d %H:%M} {schedule.timezone}"
    site = localtime(upcoming)
    if site.utcoffset() != own.utcoffset():
        label += f" ({site:%Y-%m-%d %H:%M} {site.tzname()})"
    return label


CHUNKS_PER_PAGE = 100
# A user who may only view a source sees these instead of the fields that can hold a secret
# (and of a control they may not use).
MASKED_FOR_VIEWERS = {
    **{
        name: f"{name}_masked"
        for name in (
            *ImportSource.SECRET_FIELDS,
            *ImportSource.MASKED_URL_FIELDS,
            *ImportSource.MASKED_JSON_FIELDS,
        )
    },
    "webtrigger_url": "webtrigger_url_masked",
    "auth_username": "auth_username_masked",
    "schedule_summary": "schedule_summary_viewed",  # no link to add one
    "loaded_as": None,  # the page's stamp for a save (importer/forms/meanwhile.py)
}


def masked_fieldsets(fieldsets, masked: dict[str, str | None]):
    """The fieldsets with each field in `masked` shown as its masked stand-in (None: left out)."""
    return [
        (
            name,
            {
                **options,
                "fields": [
                    masked.get(field, field)
                    for field in options["fields"]
                    if masked.get(field, field) is not None
                ],
            },
        )
        for name, options in fieldsets
    ]


def stored_choices(obj, conditions: dict) -> dict:
    """The stored value of every setting that shows or hides other rows (`conditions`, as
    static/importer/form_conditions.js reads them), for a page that has no inputs for them."""
    if obj is None:
        return {}
    choosers = {
        name for alternatives in conditions.values() for one in alternatives for name in one
    }
    chosen = {name: getattr(obj, name, "") for name in sorted(choosers)}
    for name, value in chosen.items():
        if isinstance(value, FieldFile):  # whether there is a file, as the conditions ask
            chosen[name] = "uploaded" if value else ""
    return chosen


def stored_secret(value: str) -> str:
    return "stored (only Import administrators may replace it)" if value else "—"


def masked_json(name: str, value, secret_params: frozenset[str] = frozenset()) -> str:
    masked = mask_setting(name, value, secret_params)
    return format_html("<pre>{}</pre>", json.dumps(masked, indent=2, ensure_ascii=False))


# What a chunk row shows of its error before "more": a line, and not a long one.
ERROR_HEAD_CHARACTERS = 160


def error_head_and_rest(error: str) -> tuple[str, str]:
    """A chunk's error as its row shows it: the first line (cut short), and what a click
    opens (the rest; the whole text when the first line was cut). A page that left out
    records lists a line for each, and a row of every one would make the page metres long."""
    head, _, rest = error.partition("\n")
    if len(head) > ERROR_HEAD_CHARACTERS:
        cut = head[:ERROR_HEAD_CHARACTERS].rsplit(" ", 1)[0]
        return f"{cut} …", error
    more = rest.count("\n") + 1 if rest else 0
    if more:
        head += f" (and {more} more line{'s' if more > 1 else ''})"
    return head, rest


def next_attempt_label(moment: str) -> str:
    """A retry's time in the viewer's zone and how far off it is (it may be due already)."""
    when = parse_datetime(moment)
    return f"{date_format(localtime(when), 'TIME_FORMAT')} ({_due(when)})"


def _due(when) -> str:
    wait = round((when - timezone.now()).total_seconds())
    return f"in {wait} s" if wait > 0 else "due now"


def next_attempt_cell(when) -> str:
    """A retry's time in a chunk row, its countdown kept by static/importer/progress.js
    (so the row itself stays the same from one second to the next)."""
    return format_html(
        '{} (<span data-due-at="{}">{}</span>)',
        date_format(localtime(when), "TIME_FORMAT"),
        round(when.timestamp() * 1000),
        _due(when),
    )


# An execution page's line for screen readers, there before it speaks: a live region added
# with its text is often not announced (the list has one for the page, progress.js).
STATUS_LINE = mark_safe('<span class="import-progress-status" role="status"></span>')


def progress_widget(execution: Execution, *, width: int, detailed: bool) -> str:
    """A bar that static/importer/progress.js keeps up to date while the import runs.

    Without a known total the bar is indeterminate: it moves, but claims no percentage.
    """
    progress = progress_of(execution)
    percent = progress["percent"]
    # An execution's own page follows its chunks too, until they have stopped.
    finished = settled(execution) if detailed else progress["finished"]
    if detailed:
        label = describe(progress)
    elif percent is None:
        label = f"{execution.records_submitted} rec."
    else:
        label = f"{percent}% · {execution.records_submitted} rec."
    return format_html(
        '<div class="import-progress{}" id="import-progress-{}" data-url="{}" '
        'data-percent="{}" data-state="{}" data-finished="{}" {} style="width:{}px" '
        'role="progressbar" aria-label="{}" {} aria-valuetext="{}">'
        '<div class="import-progress-bar" style="width:{}%"></div></div>'
        # Read once, as the bar's value: the label beside it is for the eye.
        '<span class="import-progress-label" aria-hidden="true">{}</span>{}',
        " indeterminate" if percent is None else "",
        execution.pk,
        reverse("importer:progress", args=[execution.pk]),
        "" if percent is None else percent,
        execution.state,
        "true" if finished else "false",
        format_html(
            'data-detailed data-live-url="{}"',
            reverse("admin:importer_execution_live", args=[execution.pk]),
        )
        if detailed
        else "",
        width,
        f"Progress of {execution.source} #{execution.pk}",
        format_html('aria-valuenow="{}"', percent) if percent is not None else "",
        label,
        100 if percent is None else percent,
        label,
        STATUS_LINE if detailed else "",
    )


class ByNameToViewers:
    """Read-only foreign keys as links for those who may open their pages, by name for the
    others: Django links a read-only foreign key whatever one's permissions (a link to a
    403). `by_name` maps each such field to the permission that opens its page; the class
    gives `<field>_name`, shown in its place."""

    by_name: dict[str, str] = {}

    def get_fields(self, request, obj=None):
        return self._by_name(request, super().get_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        return self._by_name(request, super().get_readonly_fields(request, obj))

    def _by_name(self, request, names):
        user = request.user
        unopened = {field for field, opens in self.by_name.items() if not user.has_perm(opens)}
        return [f"{name}_name" if name in unopened else name for name in names]


class SourceByNameToViewers(ByNameToViewers):
    by_name = {"source": "importer.view_importsource"}

    @admin.display(description="Source")
    def source_name(self, obj):
        return str(obj.source)
