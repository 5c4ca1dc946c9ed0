"""The staff UI: sources with their actions, and the read-only execution history."""

import json
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.contrib.admin.helpers import AdminReadonlyField
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import models
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from importer import services
from importer.assets import AssetsError
from importer.dashboard import dashboard_context
from importer.forms import (
    AUTH_FIELDS,
    CONNECTION_FIELDS,
    FIELD_CONDITIONS,
    FILE_FIELDS,
    LIMIT_FIELDS,
    PAGING_FIELDS,
    SOURCE_FIELDS,
    ImportSourceForm,
    LocatedJSONField,
    ScheduleForm,
    SchemeURLField,
)
from importer.mapping import mapping_table
from importer.models import ChunkJob, Execution, ImportSource, Schedule
from importer.progress import chunk_counts, describe, progress_of, retries_of
from importer.redaction import mask_secret_values, mask_userinfo, redact


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
        "QUEUED": "#8d6e00",
        "RUNNING": "#1565c0",
        "SUBMITTED": "#2e7d32",
        "OK": "#2e7d32",
        "FAILING": "#c62828",
        "SENT": "#2e7d32",
        "SENDING": "#1565c0",
    }
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px">{}</span>',
        colours.get(state, "#555"),
        state,
    )


def next_run_label(schedule: Schedule) -> str:
    """The next run in the schedule's own zone, and in the viewer's when that differs."""
    upcoming = services.next_run(schedule)
    if upcoming is None:
        return "none"
    own = upcoming.astimezone(ZoneInfo(schedule.timezone))
    label = f"{own:%Y-%m-%d %H:%M} {schedule.timezone}"
    site = localtime(upcoming)
    if site.utcoffset() != own.utcoffset():
        label += f" ({site:%Y-%m-%d %H:%M} {site.tzname()})"
    return label


CHUNKS_PER_PAGE = 100
# A user who may only view a source sees these instead of the fields that can hold a secret.
MASKED_FOR_VIEWERS = {
    "assets_token": "assets_token_masked",
    "source_token": "source_token_masked",
    "source_url": "source_url_masked",
    "oauth_token_url": "oauth_token_url_masked",
    "extra_headers": "extra_headers_masked",
    "extra_params": "extra_params_masked",
    "plugin_options": "plugin_options_masked",
    "webtrigger_url": "webtrigger_url_masked",
}


def masked_fieldsets(fieldsets, masked: dict[str, str]):
    return [
        (name, {**options, "fields": [masked.get(field, field) for field in options["fields"]]})
        for name, options in fieldsets
    ]


def stored_secret(value: str) -> str:
    return "stored (only Import administrators may replace it)" if value else "—"


def masked_json(value) -> str:
    return format_html(
        "<pre>{}</pre>", json.dumps(mask_secret_values(value), indent=2, ensure_ascii=False)
    )


def next_attempt_label(moment: str) -> str:
    """A retry's time in the viewer's zone and how far off it is (it may be due already)."""
    when = parse_datetime(moment)
    wait = round((when - timezone.now()).total_seconds())
    due = f"in {wait} s" if wait > 0 else "due now"
    return f"{date_format(localtime(when), 'TIME_FORMAT')} ({due})"


def progress_widget(execution: Execution, *, width: int, detailed: bool) -> str:
    """A bar that static/importer/progress.js keeps up to date while the import runs.

    Without a known total the bar is indeterminate: it moves, but claims no percentage.
    """
    progress = progress_of(execution)
    percent = progress["percent"]
    if detailed:
        label = describe(progress)
    elif percent is None:
        label = f"{execution.records_submitted} rec."
    else:
        label = f"{percent}% · {execution.records_submitted} rec."
    return format_html(
        '<div class="import-progress{}" data-url="{}" data-percent="{}" data-state="{}" '
        'data-finished="{}" {} style="width:{}px" role="progressbar" aria-label="Progress" {}>'
        '<div class="import-progress-bar" style="width:{}%"></div></div>'
        '<span class="import-progress-label">{}</span>',
        " indeterminate" if percent is None else "",
        reverse("importer:progress", args=[execution.pk]),
        "" if percent is None else percent,
        execution.state,
        "true" if progress["finished"] else "false",
        format_html(
            'data-detailed data-live-url="{}"',
            reverse("admin:importer_execution_live", args=[execution.pk]),
        )
        if detailed
        else "",
        width,
        format_html('aria-valuenow="{}"', percent) if percent is not None else "",
        100 if percent is None else percent,
        label,
    )


@admin.register(ImportSource)
class ImportSourceAdmin(admin.ModelAdmin):
    form = ImportSourceForm
    formfield_overrides = {
        models.URLField: {"form_class": SchemeURLField},
        models.JSONField: {"form_class": LocatedJSONField},
    }
    list_display = ["name", "enabled", "kind_label", "last_run", "mapping_status"]
    list_filter = ["enabled"]
    search_fields = ["name", "workspace_id", "import_source_id"]
    actions = [
        "start_import",
        "push_mapping",
        "preview",
        "pull_mapping",
        "draft_mapping",
        "rotate_webtrigger_token",
    ]
    readonly_fields = [
        "mapping_pushed_at",
        "mapping_overview",
        "webtrigger_url",
        "schedule_summary",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "Assets",
            {"fields": ["assets_base_url", "workspace_id", "import_source_id", "assets_token"]},
        ),
        ("Source", {"fields": SOURCE_FIELDS}),
        ("Paging", {"fields": PAGING_FIELDS}),
        ("Source authentication", {"fields": AUTH_FIELDS}),
        ("File format", {"fields": FILE_FIELDS}),
        (
            "Connection",
            {
                "fields": CONNECTION_FIELDS,
                "classes": ["collapse"],
                "description": "Extra headers and query parameters, timeout, private CA.",
            },
        ),
        ("Limits", {"fields": LIMIT_FIELDS, "classes": ["collapse"]}),
        ("Mapping", {"fields": ["mapping", "mapping_overview", "mapping_pushed_at"]}),
        ("Schedule", {"fields": ["schedule_summary", "webtrigger_url"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    # Kept apart from the rest: a new source has no mapping in Assets, schedule or history.
    fields_of_a_saved_source = {"mapping_overview", "mapping_pushed_at"}
    fieldsets_of_a_saved_source = {"Schedule", "History"}

    class Media:
        css = {"all": ["importer/admin.css"]}
        js = ["importer/source_form.js"]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # static/importer/source_form.js shows only the rows the chosen kind uses.
        context["field_conditions"] = FIELD_CONDITIONS
        form = context["adminform"].form
        context["error_summary"] = [
            {"id": form[name].id_for_label, "label": form[name].label, "errors": errors}
            for name, errors in form.errors.items()
            if name in form.fields
        ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            # A source not saved yet has no history, webtrigger or push state to show.
            return [
                (
                    name,
                    {
                        **options,
                        "fields": [
                            f for f in options["fields"] if f not in self.fields_of_a_saved_source
                        ],
                    },
                )
                for name, options in self.fieldsets
                if name not in self.fieldsets_of_a_saved_source
            ]
        if not self.has_change_permission(request, obj):
            return masked_fieldsets(self.fieldsets, MASKED_FOR_VIEWERS)
        return self.fieldsets

    @admin.display(description="Assets token")
    def assets_token_masked(self, source):
        return stored_secret(source.assets_token)

    @admin.display(description="Source secret")
    def source_token_masked(self, source):
        return stored_secret(source.source_token)

    @admin.display(description="Source URL")
    def source_url_masked(self, source):
        return mask_userinfo(source.source_url)

    @admin.display(description="OAuth2 token URL")
    def oauth_token_url_masked(self, source):
        return mask_userinfo(source.oauth_token_url)

    @admin.display(description="Extra headers")
    def extra_headers_masked(self, source):
        return masked_json(source.extra_headers)

    @admin.display(description="Extra parameters")
    def extra_params_masked(self, source):
        return masked_json(source.extra_params)

    @admin.display(description="Plug-in options")
    def plugin_options_masked(self, source):
        return masked_json(source.plugin_options)

    @admin.display(description="Webtrigger URL")
    def webtrigger_url_masked(self, source):
        return redact(services.webtrigger_url(source))

    def get_queryset(self, request):
        latest = Execution.objects.filter(source=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_state=Subquery(latest.values("state")[:1]),
                last_at=Subquery(latest.values("created_at")[:1]),
            )
        )

    @admin.display(description="Mapping at a glance")
    def mapping_overview(self, source):
        if not source.mapping:
            return "—"
        return render_to_string(
            "admin/importer/importsource/mapping_table.html",
            {"rows": mapping_table(source.mapping)},
        )

    # --- pages of their own: preview, pull and draft of the mapping ---

    def get_urls(self):
        def view(function, name):
            return path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(function),
                name=f"importer_importsource_{name.replace('-', '_')}",
            )

        return [
            view(self.preview_view, "preview"),
            view(self.pull_mapping_view, "pull-mapping"),
            view(self.draft_mapping_view, "draft-mapping"),
        ] + super().get_urls()

    def _page(self, request, source, template, title, **context):
        return TemplateResponse(
            request,
            f"admin/importer/importsource/{template}",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": source,
                "title": f"{title}: {source}",
                **context,
            },
        )

    def _source_or_404(self, request, object_id, *, change: bool):
        source = self.get_object(request, object_id)
        if source is None:
            raise Http404("No such source")
        allowed = (
            self.has_change_permission(request, source)
            if change
            else self.has_view_permission(request, source)
        )
        if not allowed:
            raise PermissionDenied
        return source

    def preview_view(self, request, object_id):
        source = self._source_or_404(request, object_id, change=False)
        preview = services.preview_import(source=source)
        tables = []
        for selector, rows in preview.data.items():
            columns = sorted({key for row in rows for key in row})
            cells = [[row.get(column, "") for column in columns] for row in rows]
            tables.append({"selector": selector, "columns": columns, "rows": cells})
        return self._page(
            request, source, "preview.html", "Preview", preview=preview, tables=tables
        )

    def pull_mapping_view(self, request, object_id):
        change = request.method == "POST"
        source = self._source_or_404(request, object_id, change=change)
        try:
            remote, differences = services.pull_mapping(source=source)
        except AssetsError as error:
            self.message_user(
                request, services.scrub_secrets(error.message, source), messages.ERROR
            )
            return HttpResponseRedirect(self._change_url(source))
        if change:
            services.replace_mapping(source=source, document=remote, pushed=True)
            self.log_change(request, source, "Replaced the mapping with the one in Assets.")
            self.message_user(request, "The mapping now is the one Assets holds.")
            return HttpResponseRedirect(self._change_url(source))
        return self._page(
            request,
            source,
            "pull_mapping.html",
            "Mapping in Assets",
            differences=differences,
            remote=json.dumps(remote, indent=2, ensure_ascii=False),
        )

    def draft_mapping_view(self, request, object_id):
        change = request.method == "POST"
        source = self._source_or_404(request, object_id, change=change)
        try:
            draft = services.draft_mapping_from_source(source=source)
        except services.MappingInvalid as invalid:
            self.message_user(request, str(invalid), messages.ERROR)
            return HttpResponseRedirect(self._change_url(source))
        if change:
            services.replace_mapping(source=source, document=draft, pushed=False)
            self.log_change(request, source, "Replaced the mapping with a draft from the source.")
            self.message_user(
                request, "The draft is now the mapping: review it, then push it to Assets."
            )
            return HttpResponseRedirect(self._change_url(source))
        return self._page(
            request,
            source,
            "draft_mapping.html",
            "Draft mapping",
            rows=mapping_table(draft),
            draft=json.dumps(draft, indent=2, ensure_ascii=False),
        )

    def _change_url(self, source) -> str:
        return reverse("admin:importer_importsource_change", args=[source.pk])

    def _one_page_for(self, request, queryset, name: str):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one source.", messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse(f"admin:importer_importsource_{name}", args=[queryset.get().pk])
        )

    @admin.action(description="Preview the first page (dry run)", permissions=["view"])
    def preview(self, request, queryset):
        return self._one_page_for(request, queryset, "preview")

    @admin.action(description="Pull mapping from Assets (show differences)", permissions=["view"])
    def pull_mapping(self, request, queryset):
        return self._one_page_for(request, queryset, "pull_mapping")

    @admin.action(description="Draft mapping from source", permissions=["change"])
    def draft_mapping(self, request, queryset):
        return self._one_page_for(request, queryset, "draft_mapping")

    @admin.display(description="Webtrigger URL")
    def webtrigger_url(self, source):
        if not source.pk:
            return "—"
        return format_html(
            '<input type="text" readonly value="{}" size="90" onclick="this.select()"> '
            "<br><small>Assets calls this address at each scheduled run. Keep it secret; "
            "rotate it with the 'Rotate webtrigger token' action.</small>",
            services.webtrigger_url(source),
        )

    @admin.display(description="Schedule")
    def schedule_summary(self, source):
        schedule = Schedule.objects.filter(source=source).first() if source.pk else None
        if schedule is None:
            add = reverse("admin:importer_schedule_add") + f"?source={source.pk or ''}"
            return format_html('No schedule. <a href="{}">Add one</a>', add)
        change = reverse("admin:importer_schedule_change", args=[schedule.pk])
        return format_html(
            '<a href="{}">{}</a>, next run {}; {}',
            change,
            schedule.get_frequency_display(),
            next_run_label(schedule),
            "in sync with Assets" if schedule.in_sync else f"OUT OF SYNC: {schedule.sync_error}",
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "enabled" in form.changed_data:
            try:
                services.apply_enabled_state(source=obj)
            except services.ScheduleError as error:
                self.message_user(request, f"Schedule: {error}", messages.WARNING)

    def delete_model(self, request, obj):
        self._delete_sources(request, [obj])

    def delete_queryset(self, request, queryset):
        self._delete_sources(request, list(queryset))

    def _delete_sources(self, request, sources):
        for source in sources:
            try:
                services.delete_source(source=source)
            except services.ScheduleError as error:
                self.message_user(
                    request,
                    f"Kept {source}: its schedule could not be removed from Assets ({error}).",
                    messages.ERROR,
                )

    def has_start_permission(self, request):
        return request.user.has_perm("importer.start_import")

    @admin.action(description="Rotate webtrigger token", permissions=["change"])
    def rotate_webtrigger_token(self, request, queryset):
        for source in queryset:
            self.log_change(request, source, "Rotated the webtrigger token.")
            try:
                services.rotate_webtrigger_token(source=source)
            except services.ScheduleError as error:
                self.message_user(
                    request,
                    f"New webtrigger token of {source} saved, but Assets still has the old "
                    f"URL: {error}",
                    messages.ERROR,
                )
            else:
                self.message_user(request, f"Webtrigger token of {source} rotated.")

    @admin.display(description="Kind", ordering="source_kind")
    def kind_label(self, source):
        return source.get_source_kind_display()

    @admin.display(description="Last import", ordering="last_at")
    def last_run(self, source):
        if not source.last_state:
            return "—"
        return format_html(
            "{} {}",
            state_badge(source.last_state),
            date_format(localtime(source.last_at), "SHORT_DATETIME_FORMAT"),
        )

    @admin.display(description="Mapping")
    def mapping_status(self, source):
        if not source.mapping:
            return "missing"
        return "pushed" if source.mapping_pushed_at else "not pushed"

    @admin.action(description="Start import", permissions=["start"])
    def start_import(self, request, queryset):
        started = 0
        for source in queryset:
            try:
                execution = services.start_import(source=source, user=request.user)
            except services.ImportRefused as refusal:
                self.log_change(request, source, f"Import refused: {refusal}")
                self.message_user(
                    request, f"Import of {source} not started: {refusal}", messages.ERROR
                )
                continue
            self.log_change(request, source, f"Started import (execution #{execution.pk}).")
            started += 1
            url = reverse("admin:importer_execution_change", args=[execution.pk])
            self.message_user(
                request,
                format_html(
                    'Import of {} started — <a href="{}">follow execution #{}</a>',
                    source,
                    url,
                    execution.pk,
                ),
                messages.SUCCESS,
            )
        if started > 1:
            self.message_user(
                request, ngettext("%d import started.", "%d imports started.", started) % started
            )

    @admin.action(description="Push mapping to Assets", permissions=["change"])
    def push_mapping(self, request, queryset):
        pushed = 0
        for source in queryset:
            self.log_change(request, source, "Pushed the mapping to Assets.")
            try:
                services.push_mapping(source=source)
            except services.MappingInvalid as invalid:
                self.message_user(
                    request, f"Mapping of {source} not pushed: {invalid}", messages.ERROR
                )
            except AssetsError as error:
                self.message_user(
                    request,
                    f"Mapping of {source} not pushed: "
                    f"{services.scrub_secrets(error.message, source)}",
                    messages.ERROR,
                )
            else:
                pushed += 1
        if pushed:
            self.message_user(
                request,
                ngettext(
                    "Assets accepted the mapping of %d source.",
                    "Assets accepted the mappings of %d sources.",
                    pushed,
                )
                % pushed,
                messages.SUCCESS,
            )


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["importer/admin.css"]}
        js = ["importer/progress.js"]

    # Narrow columns, so the list with its filters fits a 1366 px screen.
    list_display = [
        "id",
        "source",
        "state_label",
        "run_label",
        "started_label",
        "duration_label",
        "progress_bar",
    ]
    list_filter = ["source", "state", "trigger"]
    list_select_related = ["source", "triggered_by"]
    date_hierarchy = "created_at"
    search_fields = ["assets_execution_id", "source__name"]
    actions = ["cancel", "retry_failed_chunks"]
    list_per_page = 50
    # Counting a history of 10^5 rows on every page costs more than the page itself.
    show_full_result_count = False
    fields = [
        "source",
        "state_label",
        "trigger_label",
        "triggered_by_label",
        "assets_execution_id",
        "progress_detail",
        "retries_label",
        "stalled_since",
        "chunk_summary",
        "pages_fetched_label",
        "pages_submitted",
        "records_fetched",
        "records_submitted",
        "records_skipped",
        "created_at",
        "started_at",
        "completed_at",
        "finished_at",
        "duration_label",
        "error",
        "failure_reported_at",
    ]
    readonly_fields = fields
    # What changes while an import runs: the live endpoint sends these again.
    live_fields = [
        name for name in fields if name not in ("source", "trigger_label", "progress_detail")
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="State", ordering="state")
    def state_label(self, execution):
        return state_badge(execution.state)

    @admin.display(description="Run", ordering="trigger")
    def trigger_label(self, execution):
        if execution.is_scheduled:
            return format_html(
                '<span style="background:{};color:#fff;padding:1px 6px;'
                'border-radius:8px;font-size:11px">{}</span>',
                "#00695c",
                "scheduled",
            )
        return "manual"

    @admin.display(description="Triggered by")
    def triggered_by_label(self, execution):
        if execution.is_scheduled:
            return "schedule"
        return execution.triggered_by.get_username() if execution.triggered_by else "—"

    @admin.display(description="Run", ordering="trigger")
    def run_label(self, execution):
        if execution.is_scheduled:
            return self.trigger_label(execution)
        return format_html("manual<br><small>{}</small>", self.triggered_by_label(execution))

    @admin.display(description="Started", ordering="started_at")
    def started_label(self, execution):
        if not execution.started_at:
            return "—"
        started = localtime(execution.started_at)
        return format_html(
            "{}<br><small>{}</small>",
            date_format(started, "Y-m-d"),
            date_format(started, "H:i:s"),
        )

    @admin.display(description="Duration")
    def duration_label(self, execution):
        duration = execution.duration
        if duration is None:
            return "—"
        seconds = int(duration.total_seconds())
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    @admin.display(description="Progress, records", ordering="records_submitted")
    def progress_bar(self, execution):
        return progress_widget(execution, width=90, detailed=False)

    @admin.display(description="Progress")
    def progress_detail(self, execution):
        return progress_widget(execution, width=400, detailed=True)

    @admin.display(description="Chunks")
    def chunk_summary(self, execution):
        counts = chunk_counts(execution)
        parts = [
            f"{counts[state]} {label.lower()}"
            for state, label in ChunkJob.State.choices
            if counts.get(state)
        ]
        return " · ".join(parts) or "none yet"

    @admin.display(description="Pages fetched")
    def pages_fetched_label(self, execution):
        past = chunk_counts(execution)[ChunkJob.State.SKIPPED]
        if not past:
            return str(execution.pages_fetched)
        return format_html(
            "{} ({} with records, {} past the source's end, which had nothing more)",
            execution.pages_fetched,
            max(execution.pages_fetched - past, 0),
            past,
        )

    @admin.display(description="Retries")
    def retries_label(self, execution):
        if execution.state in Execution.FINISHED_STATES:
            return "—"
        retries = retries_of(execution)
        if not retries:
            return "none waiting"
        return format_html_join(
            mark_safe("<br>"),
            "page {} waits after attempt {} ({}); next attempt {}",
            (
                (
                    retry["page"],
                    retry["attempts"],
                    retry["reason"],
                    next_attempt_label(retry["next_attempt_at"]),
                )
                for retry in retries
            ),
        )

    def get_urls(self):
        def view(function, route, name):
            return path(route, self.admin_site.admin_view(function), name=name)

        return [
            view(self.dashboard_view, "dashboard/", "importer_execution_dashboard"),
            view(self.live_view, "<path:object_id>/live/", "importer_execution_live"),
            view(self.cancel_view, "<path:object_id>/cancel/", "importer_execution_cancel"),
        ] + super().get_urls()

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/importer/execution/dashboard.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Imports dashboard",
                **dashboard_context(),
            },
        )

    def _execution_or_404(self, request, object_id) -> Execution:
        execution = self.get_object(request, object_id)
        if execution is None:
            raise Http404("No such execution")
        if not self.has_view_permission(request, execution):
            raise PermissionDenied
        return execution

    def _chunk_page(self, request, execution):
        chunks = ChunkJob.objects.filter(execution=execution).order_by("index")
        page = Paginator(chunks, CHUNKS_PER_PAGE).get_page(request.GET.get("chunks_page"))
        for chunk in page:
            chunk.next_attempt_label = (
                next_attempt_label(chunk.next_attempt_at.isoformat())
                if chunk.state == ChunkJob.State.QUEUED and chunk.next_attempt_at
                else "—"
            )
        return page

    def live_view(self, request, object_id):
        """What changes on an execution's page, for progress.js to put in place."""
        execution = self._execution_or_404(request, object_id)
        form = self.get_form(request, execution)(instance=execution)
        fields = {
            name: str(AdminReadonlyField(form, name, False, model_admin=self).contents())
            for name in self.live_fields
        }
        page = self._chunk_page(request, execution)
        progress = progress_of(execution)
        return JsonResponse(
            {
                **progress,
                "label": describe(progress),
                "fields": fields,
                "chunk_count": page.paginator.count,
                "chunk_rows": render_to_string(
                    "admin/importer/execution/_chunk_rows.html", {"chunk_page": page}
                ),
                "may_cancel": execution.state in Execution.OPEN_STATES
                and self.has_cancel_permission(request),
            }
        )

    def cancel_view(self, request, object_id):
        """Cancel one import after a confirmation (a page of its own, so it works without JS)."""
        execution = self._execution_or_404(request, object_id)
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:importer_execution_change", args=[execution.pk])
        if request.method == "POST":
            if execution.state in Execution.OPEN_STATES:
                services.cancel_execution(execution=execution)
                self.log_change(request, execution, "Cancelled the import.")
                self.message_user(request, f"Import #{execution.pk} cancelled.", messages.SUCCESS)
            else:
                self.message_user(
                    request,
                    f"Import #{execution.pk} had already ended ({execution.get_state_display()}).",
                    messages.WARNING,
                )
            return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request,
            "admin/importer/execution/cancel.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": execution,
                "title": f"Cancel import #{execution.pk}?",
                "change_url": change_url,
            },
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The chunks, a page at a time: an import can have tens of thousands."""
        execution = self.get_object(request, object_id)
        extra_context = {**(extra_context or {})}
        if execution is not None:
            extra_context["chunk_page"] = self._chunk_page(request, execution)
            extra_context["may_cancel"] = (
                execution.state in Execution.OPEN_STATES and self.has_cancel_permission(request)
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def has_cancel_permission(self, request):
        return request.user.has_perm("importer.cancel_execution")

    def has_retry_permission(self, request):
        return request.user.has_perm("importer.retry_chunks")

    @admin.action(description="Cancel selected imports", permissions=["cancel"])
    def cancel(self, request, queryset):
        cancelled = 0
        for execution in queryset.select_related("source"):
            if execution.state in Execution.OPEN_STATES:
                services.cancel_execution(execution=execution)
                self.log_change(request, execution, "Cancelled the import.")
                cancelled += 1
        self.message_user(
            request,
            ngettext("%d import cancelled.", "%d imports cancelled.", cancelled) % cancelled,
        )

    @admin.action(description="Retry failed chunks", permissions=["retry"])
    def retry_failed_chunks(self, request, queryset):
        for execution in queryset.select_related("source"):
            if execution.state != Execution.State.INGESTING:
                self.message_user(
                    request,
                    f"#{execution.pk}: only an import that is still ingesting can retry chunks "
                    f"(this one is {execution.state}).",
                    messages.WARNING,
                )
                continue
            retried = services.retry_failed_chunks(execution=execution)
            self.log_change(request, execution, f"Retried {retried} failed chunk(s).")
            self.message_user(
                request,
                ngettext("#%d: %d chunk queued again.", "#%d: %d chunks queued again.", retried)
                % (execution.pk, retried),
            )


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ["source", "frequency", "next_run_label", "timezone", "sync_label", "synced_at"]
    list_select_related = ["source"]
    list_filter = ["frequency", "in_sync"]
    actions = ["pull_from_assets", "resync"]
    readonly_fields = ["callback_url", "assets_schedule_id", "sync_label", "synced_at"]

    def get_fields(self, request, obj=None):
        # A schedule not saved yet has no state in Assets to show.
        editable = ["source", "frequency", "timezone", "start_local"]
        if obj is None:
            return editable
        fields = [*editable, *self.readonly_fields]
        if not self.has_change_permission(request, obj):
            return [name if name != "callback_url" else "callback_url_masked" for name in fields]
        return fields

    @admin.display(description="Callback URL")
    def callback_url_masked(self, schedule):
        return redact(schedule.callback_url)

    @admin.display(description="Next run")
    def next_run_label(self, schedule):
        return next_run_label(schedule)

    @admin.display(description="Assets", ordering="in_sync")
    def sync_label(self, schedule):
        if schedule.in_sync:
            return state_badge("IN SYNC")
        return format_html("{} {}", state_badge("OUT OF SYNC"), schedule.sync_error)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        try:
            services.sync_schedule(schedule=obj)
        except services.ScheduleError as error:
            request.schedule_outcome = (
                messages.WARNING,
                f"The schedule of {obj.source} is saved here, but not in Assets: {error} "
                "It is marked out of sync; once the cause is fixed, use 'Re-sync schedule to "
                "Assets'.",
            )
        else:
            request.schedule_outcome = (
                messages.SUCCESS,
                f"The schedule of {obj.source} is saved, and Assets holds it.",
            )

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        # After a save, Django's "was added/changed successfully" gives way to the one
        # message that says what happened both here and in Assets.
        outcome = getattr(request, "schedule_outcome", None)
        if outcome is not None and level == messages.SUCCESS:
            del request.schedule_outcome
            level, message = outcome
        super().message_user(request, message, level, *args, **kwargs)

    def delete_model(self, request, obj):
        self._delete(request, [obj])

    def delete_queryset(self, request, queryset):
        self._delete(request, list(queryset.select_related("source")))

    def _delete(self, request, schedules):
        for schedule in schedules:
            try:
                services.delete_schedule(schedule=schedule)
            except services.ScheduleError as error:
                self.message_user(
                    request,
                    f"Kept the schedule of {schedule.source}: Assets did not delete it ({error}).",
                    messages.ERROR,
                )

    @admin.action(description="Pull schedule from Assets (show differences)")
    def pull_from_assets(self, request, queryset):
        for schedule in queryset.select_related("source"):
            try:
                differences = services.compare_schedule(schedule=schedule)
            except AssetsError as error:
                self.message_user(
                    request,
                    f"Schedule of {schedule.source}: "
                    f"{services.scrub_secrets(error.message, schedule.source)}",
                    messages.ERROR,
                )
                continue
            if differences:
                self.message_user(
                    request,
                    f"The schedule of {schedule.source} differs in Assets: "
                    + "; ".join(differences),
                    messages.WARNING,
                )
            else:
                self.message_user(request, f"Assets holds the same schedule for {schedule.source}.")

    @admin.action(description="Re-sync schedule to Assets", permissions=["change"])
    def resync(self, request, queryset):
        synced = 0
        for schedule in queryset.select_related("source"):
            try:
                services.sync_schedule(schedule=schedule)
            except services.ScheduleError as error:
                self.message_user(
                    request, f"Schedule of {schedule.source} not synced: {error}", messages.ERROR
                )
            else:
                synced += 1
        if synced:
            self.message_user(
                request,
                ngettext("%d schedule synced.", "%d schedules synced.", synced) % synced,
                messages.SUCCESS,
            )


@admin.register(LogEntry)
class AuditLogAdmin(admin.ModelAdmin):
    """Who started, cancelled and edited what, and when (Django's admin log, read-only)."""

    list_display = ["action_time", "user", "content_type", "object_repr", "action", "message"]
    list_filter = ["action_flag", "content_type", "user"]
    list_select_related = ["user", "content_type"]
    search_fields = ["object_repr", "change_message", "user__username"]
    date_hierarchy = "action_time"

    @admin.display(description="Action", ordering="action_flag")
    def action(self, entry):
        return {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}.get(entry.action_flag)

    @admin.display(description="Details")
    def message(self, entry):
        return entry.get_change_message()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Alert channels and alerts register themselves.
from importer.notifications import admin as notifications_admin  # noqa: E402,F401
