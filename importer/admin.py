"""The staff UI: sources with their actions, and the read-only execution history."""

from django.contrib import admin, messages
from django.db import models
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from importer import services
from importer.assets import AssetsError
from importer.forms import ImportSourceForm
from importer.models import ChunkJob, Execution, ImportSource
from importer.progress import percent_done


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
        "QUEUED": "#8d6e00",
        "RUNNING": "#1565c0",
        "SUBMITTED": "#2e7d32",
    }
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px">{}</span>',
        colours.get(state, "#555"),
        state,
    )


@admin.register(ImportSource)
class ImportSourceAdmin(admin.ModelAdmin):
    form = ImportSourceForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "enabled",
        "workspace_id",
        "last_run_state",
        "last_run_at",
        "mapping_status",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "workspace_id", "import_source_id"]
    actions = ["start_import", "push_mapping"]
    readonly_fields = ["mapping_pushed_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "Assets",
            {"fields": ["assets_base_url", "workspace_id", "import_source_id", "assets_token"]},
        ),
        (
            "Source",
            {
                "fields": [
                    "source_url",
                    "records_path",
                    "pagination",
                    "page_size",
                    "offset_param",
                    "limit_param",
                    "page_param",
                    "first_page",
                    "source_auth",
                    "source_token",
                ]
            },
        ),
        ("Mapping", {"fields": ["mapping", "mapping_pushed_at"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

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

    @admin.display(description="Last import", ordering="last_state")
    def last_run_state(self, source):
        return state_badge(source.last_state) if source.last_state else "—"

    @admin.display(description="Last import at", ordering="last_at")
    def last_run_at(self, source):
        return source.last_at or "—"

    @admin.display(description="Mapping")
    def mapping_status(self, source):
        if not source.mapping:
            return "missing"
        return "pushed" if source.mapping_pushed_at else "not pushed"

    @admin.action(description="Start import")
    def start_import(self, request, queryset):
        started = 0
        for source in queryset:
            try:
                execution = services.start_import(source=source, user=request.user)
            except services.ImportRefused as refusal:
                self.message_user(request, f"{source}: {refusal}", messages.ERROR)
                continue
            started += 1
            url = reverse("admin:importer_execution_change", args=[execution.pk])
            self.message_user(
                request,
                format_html(
                    '{}: import started — <a href="{}">follow execution #{}</a>',
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

    @admin.action(description="Push mapping to Assets")
    def push_mapping(self, request, queryset):
        pushed = 0
        for source in queryset:
            try:
                services.push_mapping(source=source)
            except services.MappingInvalid as invalid:
                self.message_user(request, f"{source}: {invalid}", messages.ERROR)
            except AssetsError as error:
                self.message_user(
                    request,
                    f"{source}: {services.scrub_secrets(error.message, source)}",
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


class ChunkJobInline(admin.TabularInline):
    model = ChunkJob
    fields = [
        "index",
        "state_badge",
        "cursor",
        "attempts",
        "record_count",
        "skipped_count",
        "started_at",
        "submitted_at",
        "next_attempt_at",
        "error",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ["index"]

    @admin.display(description="State")
    def state_badge(self, chunk):
        return state_badge(chunk.state)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "source",
        "state_label",
        "trigger_label",
        "triggered_by_label",
        "started_at",
        "duration_label",
        "records_submitted",
        "progress_bar",
    ]
    list_filter = ["source", "state", "trigger"]
    list_select_related = ["source", "triggered_by"]
    date_hierarchy = "created_at"
    search_fields = ["assets_execution_id", "source__name"]
    actions = ["cancel"]
    inlines = [ChunkJobInline]
    fields = [
        "source",
        "state_label",
        "trigger_label",
        "triggered_by_label",
        "assets_execution_id",
        "progress_bar",
        "pages_fetched",
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

    @admin.display(description="Duration")
    def duration_label(self, execution):
        duration = execution.duration
        if duration is None:
            return "—"
        seconds = int(duration.total_seconds())
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    @admin.display(description="Progress")
    def progress_bar(self, execution):
        percent = percent_done(execution)
        return format_html(
            '<div class="import-progress" data-url="{}" title="{}%" style="width:120px;'
            'background:#e0e0e0;border-radius:4px"><div class="import-progress-bar" '
            'style="width:{}%;background:#1565c0;height:10px;border-radius:4px"></div></div>'
            '<span class="import-progress-label">{}%</span>',
            reverse("importer:progress", args=[execution.pk]),
            percent,
            percent,
            percent,
        )

    @admin.action(description="Cancel selected imports")
    def cancel(self, request, queryset):
        cancelled = 0
        for execution in queryset.select_related("source"):
            if execution.state in Execution.OPEN_STATES:
                services.cancel_execution(execution=execution)
                cancelled += 1
        self.message_user(
            request,
            ngettext("%d import cancelled.", "%d imports cancelled.", cancelled) % cancelled,
        )
