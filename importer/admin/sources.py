"""Import sources: the form by kind, the mapping at a glance, and the actions that start
and push (the mapping's own pages, preview, pull and draft, are in `mapping_pages`)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import models
from django.db.models import OuterRef, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from importer import services
from importer.admin.buttons import PageButtons
from importer.admin.deleting import CountedDeletion, DeletedInAssetsFirst
from importer.admin.display import (
    MASKED_FOR_VIEWERS,
    masked_fieldsets,
    masked_json,
    stalled_note,
    state_badge,
    stored_choices,
    stored_secret,
    when_it_runs,
)
from importer.admin.mapping_pages import MappingPages
from importer.fields import EncryptedJSONField, EncryptedURLField
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
    SchemeURLField,
)
from importer.forms.meanwhile import RefusesEditsMadeMeanwhile
from importer.mapping import mapping_table
from importer.models import Execution, ImportSource, Schedule
from importer.redaction import (
    declared_secret_params,
    mask_url,
    params_hidden_from_viewers,
    redact,
    undeclared_keys_warning,
    username_holds_a_key,
)


class ImportSourceAdminForm(RefusesEditsMadeMeanwhile, ImportSourceForm):
    remind_typed_secrets_on_errors = True
    guarded_fields = tuple(
        name for name in ImportSourceForm.Meta.fields if name not in ImportSourceForm.secret_fields
    )


URL_INPUT = forms.URLInput(attrs={"class": "vURLField"})


@admin.register(ImportSource)
class ImportSourceAdmin(
    PageButtons, MappingPages, DeletedInAssetsFirst, CountedDeletion, admin.ModelAdmin
):
    form = ImportSourceAdminForm
    # Plain URL inputs: the admin's own widget writes "Currently: <link> Change:" above a
    # URL, on an add form too, and links to a source's address from its settings page.
    formfield_overrides = {
        models.URLField: {"form_class": SchemeURLField, "widget": URL_INPUT},
        models.JSONField: {"form_class": LocatedJSONField},
        # Encrypted at rest, shown as what they hold (not as the text areas of a TextField).
        EncryptedURLField: {"form_class": SchemeURLField, "widget": URL_INPUT},
        EncryptedJSONField: {"form_class": LocatedJSONField, "widget": forms.Textarea},
    }
    list_display = ["name", "enabled", "kind_label", "last_run", "next_run", "mapping_status"]
    list_filter = ["enabled"]
    search_fields = ["name", "workspace_id", "import_source_id"]
    actions = [
        "start_import",
        "start_import_accepting_fewer_records",
        "push_mapping",
        "preview",
        "pull_mapping",
        "draft_mapping",
        "rotate_webtrigger_token",
    ]
    readonly_fields = [
        "imports_summary",
        "imports_summary_text",
        "mapping_pushed_at",
        "mapping_overview",
        "webtrigger_url",
        "schedule_summary",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "loaded_as", "imports_summary"]}),
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
                "description": "Extra headers and query parameters, which parameters carry a "
                "key, timeout, private CA.",
            },
        ),
        ("Limits", {"fields": LIMIT_FIELDS, "classes": ["collapse"]}),
        ("Mapping", {"fields": ["mapping", "mapping_overview", "mapping_pushed_at"]}),
        ("Schedule", {"fields": ["schedule_summary", "webtrigger_url"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    # Kept apart from the rest: a new source has no mapping in Assets, schedule or history.
    fields_of_a_saved_source = {"imports_summary", "mapping_overview", "mapping_pushed_at"}
    fieldsets_of_a_saved_source = {"Schedule", "History"}

    class Media:
        css = {"all": ["importer/admin.css"]}
        js = ["importer/form_conditions.js", "importer/page_buttons.js"]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # static/importer/form_conditions.js shows only the rows the chosen kind uses.
        context["field_conditions"] = FIELD_CONDITIONS
        context["field_chosen"] = stored_choices(obj, FIELD_CONDITIONS)
        form = context["adminform"].form
        context["error_summary"] = [
            {"id": form[name].id_for_label, "label": form[name].label, "errors": errors}
            for name, errors in form.errors.items()
            if name in form.fields
        ]
        # The source's own pages: what an import would send, and the mapping's other sides.
        context["source_links"] = (
            [
                (reverse(f"admin:importer_importsource_{name}", args=[obj.pk]), label)
                for name, label in (
                    ("preview", "Preview"),
                    ("draft_mapping", "Draft mapping"),
                    ("pull_mapping", "Mapping in Assets"),
                )
            ]
            if obj is not None
            else []
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            source = self.get_object(request, unquote(object_id))
            allowed = source is not None and self.has_view_or_change_permission(request, source)
            warning = services.stored_mapping_warning(source) if allowed else ""
            if warning:
                self.message_user(request, warning, messages.WARNING)
        return super().change_view(request, object_id, form_url, extra_context)

    def page_buttons(self, request, obj):
        """The actions a source is mostly opened for."""
        return [
            (name, label)
            for name, label, allowed in (
                ("start_import", "Start import", self.has_start_permission(request)),
                ("push_mapping", "Push mapping", self.has_change_permission(request, obj)),
            )
            if allowed
        ]

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
        fieldsets = self.fieldsets
        if not self._sees_imports(request):  # no link to pages that answer 403
            fieldsets = masked_fieldsets(fieldsets, {"imports_summary": "imports_summary_text"})
        if not self.has_change_permission(request, obj):
            return masked_fieldsets(fieldsets, MASKED_FOR_VIEWERS)
        return fieldsets

    @admin.display(description="Assets token")
    def assets_token_masked(self, source):
        return stored_secret(source.assets_token)

    @admin.display(description="Source secret")
    def source_token_masked(self, source):
        return stored_secret(source.source_token)

    @admin.display(description="User name / client id")
    def auth_username_masked(self, source):
        if username_holds_a_key(source):
            return stored_secret(source.auth_username)
        return source.auth_username or "—"

    @admin.display(description="Source URL")
    def source_url_masked(self, source):
        return mask_url(source.source_url, params_hidden_from_viewers(source))

    @admin.display(description="OAuth2 token URL")
    def oauth_token_url_masked(self, source):
        return mask_url(source.oauth_token_url, params_hidden_from_viewers(source))

    @admin.display(description="Extra headers")
    def extra_headers_masked(self, source):
        return masked_json("extra_headers", source.extra_headers)

    @admin.display(description="Extra parameters")
    def extra_params_masked(self, source):
        return masked_json("extra_params", source.extra_params, params_hidden_from_viewers(source))

    @admin.display(description="Plug-in options")
    def plugin_options_masked(self, source):
        return masked_json("plugin_options", source.plugin_options)

    @admin.display(description="Request body")
    def request_body_masked(self, source):
        if source.request_body is None:
            return "—"
        return masked_json("request_body", source.request_body, declared_secret_params(source))

    @admin.display(description="Values after the first page")
    def after_first_page_masked(self, source):
        if source.after_first_page is None:
            return "—"
        return masked_json(
            "after_first_page", source.after_first_page, declared_secret_params(source)
        )

    @admin.display(description="Webtrigger URL")
    def webtrigger_url_masked(self, source):
        return redact(services.webtrigger_url(source))

    def get_queryset(self, request):
        latest = Execution.objects.filter(source=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .select_related("schedule")
            .annotate(
                last_pk=Subquery(latest.values("pk")[:1]),
                last_state=Subquery(latest.values("state")[:1]),
                last_at=Subquery(latest.values("created_at")[:1]),
                last_stalled_since=Subquery(latest.values("stalled_since")[:1]),
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

    @admin.display(description="Webtrigger URL")
    def webtrigger_url(self, source):
        if not source.pk:
            return "—"
        return format_html(
            '<input type="text" readonly value="{}" size="90" aria-label="Webtrigger URL" '
            'onclick="this.select()"> '
            "<br><small>Assets calls this address at each scheduled run. Keep it secret; "
            "rotate it with the 'Rotate webtrigger token' action.</small>",
            services.webtrigger_url(source),
        )

    @admin.display(description="Schedule")
    def schedule_summary_viewed(self, source):
        """For who may only view the source (and may not add a schedule)."""
        return self.schedule_summary(source, may_add=False)

    @admin.display(description="Schedule")
    def schedule_summary(self, source, may_add: bool = True):
        schedule = Schedule.objects.filter(source=source).first() if source.pk else None
        if schedule is None and not may_add:
            return "No schedule."
        if schedule is None:
            add = reverse("admin:importer_schedule_add") + f"?source={source.pk or ''}"
            return format_html('No schedule. <a href="{}">Add one</a>', add)
        change = reverse("admin:importer_schedule_change", args=[schedule.pk])
        return format_html(
            '<a href="{}">{}</a>, {}; {}',
            change,
            schedule.get_frequency_display(),
            when_it_runs(schedule),
            "in sync with Assets" if schedule.in_sync else f"OUT OF SYNC: {schedule.sync_error}",
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if {"source_url", "extra_params", "secret_params"} & set(form.changed_data):
            self._warn_of_undeclared_keys(request, obj)
        if not change:
            return
        try:
            services.source_saved(
                source=obj,
                changed=set(form.changed_data),
                was=form.initial,
                wait_for_assets=False,
            )
        except services.ScheduleError as error:
            self.message_user(request, f"Schedule: {error}", messages.WARNING)

    def _warn_of_undeclared_keys(self, request, source) -> None:
        warning = undeclared_keys_warning(source)
        if warning:
            self.message_user(request, f"Source '{source}': {warning}", messages.WARNING)

    def delete_in_assets_first(self, source) -> None:
        services.delete_source(source=source)

    def kept_text(self, source, error) -> str:
        return f"Kept {source}: its schedule could not be removed from Assets ({error})."

    def has_start_permission(self, request):
        return request.user.has_perm("importer.start_import")

    @admin.action(description="Rotate webtrigger token", permissions=["change"])
    def rotate_webtrigger_token(self, request, queryset):
        for source in queryset:
            self.log_change(request, source, "Rotated the webtrigger token.")
            try:
                services.rotate_webtrigger_token(source=source, wait_for_assets=False)
            except services.ScheduleError as error:
                # The old token is retired all the same (it may have leaked): say that the
                # runs stop, and how they start again.
                then = (
                    "'Re-sync schedule to Assets' under Schedules tries at once"
                    if error.will_retry
                    else "once the cause is fixed, use 'Re-sync schedule to Assets' under Schedules"
                )
                self.message_user(
                    request,
                    f"New webtrigger token of {source} saved, but Assets still has the old "
                    f"URL: {str(error).rstrip('.')}. Its scheduled runs call that URL and start "
                    f"nothing until Assets has the new one: {then}.",
                    messages.ERROR,
                )
            else:
                self.message_user(request, f"Webtrigger token of {source} rotated.")

    @admin.display(description="Kind", ordering="source_kind")
    def kind_label(self, source):
        return source.get_source_kind_display()

    @admin.display(description="Last import", ordering="last_at")
    def last_run(self, source):
        return self._last_run(source, linked=True)

    @admin.display(description="Last import", ordering="last_at")
    def last_run_text(self, source):
        return self._last_run(source, linked=False)

    def _last_run(self, source, *, linked: bool):
        if not source.last_state:
            return "—"
        stalled = source.last_state in Execution.OPEN_STATES and source.last_stalled_since
        shown = format_html(
            '{} <span class="one-line">{}</span>',
            state_badge(source.last_state),
            date_format(localtime(source.last_at), "SHORT_DATETIME_FORMAT"),
        )
        if linked:
            url = reverse("admin:importer_execution_change", args=[source.last_pk])
            shown = format_html('<a href="{}">{}</a>', url, shown)
        return format_html(
            "{}{}", shown, stalled_note(source.last_stalled_since) if stalled else ""
        )

    @admin.display(description="Imports")
    def imports_summary(self, source):
        """The source's latest import (the running one, while one runs) and a link to all of
        them: the way from a source to its history."""
        return self._imports_summary(source, linked=True)

    @admin.display(description="Imports")
    def imports_summary_text(self, source):
        """As `imports_summary`, for staff who may not open imports: no link to a 403."""
        return self._imports_summary(source, linked=False)

    def _imports_summary(self, source, *, linked: bool):
        executions = Execution.objects.filter(source=source)
        latest = executions.order_by("-created_at").first() if source.pk else None
        if latest is None:
            return "None yet."
        running = latest.state in Execution.OPEN_STATES
        count = executions.count()
        which = f"#{latest.pk}"
        every = ngettext("%d import", "%d imports", count) % count
        if linked:
            which = format_html(
                '<a href="{}">{}</a>',
                reverse("admin:importer_execution_change", args=[latest.pk]),
                which,
            )
            every = format_html(
                '<a href="{}?source__id__exact={}">all {} of this source</a>',
                reverse("admin:importer_execution_changelist"),
                source.pk,
                every,
            )
        else:
            every = f"{every} in all"
        return format_html(
            '{} {} {}, {} <span class="one-line">{}</span> · {}',
            "Running now:" if running else "Latest:",
            which,
            state_badge(latest.state),
            "since" if running else "started",
            date_format(localtime(latest.created_at), "SHORT_DATETIME_FORMAT"),
            every,
        )

    def _sees_imports(self, request) -> bool:
        return request.user.has_perm("importer.view_execution")

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        if self._sees_imports(request):
            return shown
        return ["last_run_text" if name == "last_run" else name for name in shown]

    def get_deleted_objects(self, objs, request):
        """A source with a running import is not deleted: say so, and what to do (Django
        would say the user lacks the permission to delete executions)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        running = Execution.objects.open().filter(source__in=list(objs))
        if running:
            perms_needed.discard(Execution._meta.verbose_name)
            protected = [
                *protected,
                *(
                    f"the running import #{execution.pk} of {execution.source}: "
                    + (
                        "cancel it first, or wait for it to end"
                        if execution.state in Execution.CANCELLABLE_STATES
                        else "wait for it to end (Assets is finishing it)"
                    )
                    for execution in running.select_related("source")
                ),
            ]
        return deleted, counts, perms_needed, protected

    @admin.display(description="Schedule")
    def next_run(self, source):
        """How often it runs and when next, linking to its schedule."""
        try:
            schedule = source.schedule
        except Schedule.DoesNotExist:
            return "—"
        return format_html(
            '<a href="{}">{}</a>, {}',
            reverse("admin:importer_schedule_change", args=[schedule.pk]),
            schedule.get_frequency_display().lower(),
            when_it_runs(schedule),
        )

    @admin.display(description="Mapping")
    def mapping_status(self, source):
        if not source.mapping:
            return "missing"
        return "pushed" if source.mapping_pushed_at else "not pushed"

    @admin.action(description="Start import", permissions=["start"])
    def start_import(self, request, queryset):
        self._start_imports(request, queryset)

    @admin.action(description="Start import, accepting fewer records", permissions=["start"])
    def start_import_accepting_fewer_records(self, request, queryset):
        """For a source known to hold far fewer records now than at its last import, which
        its 'largest drop in records' would otherwise take for part of its data."""
        self._start_imports(request, queryset, accept_fewer_records=True)

    def _start_imports(self, request, queryset, accept_fewer_records=False):
        started = 0
        for source in queryset:
            pushed_before = source.mapping_pushed_at
            try:
                execution = services.start_import(
                    source=source, user=request.user, accept_fewer_records=accept_fewer_records
                )
            except services.ImportRefused as refusal:
                self._log_push_at_start(request, source, pushed_before)
                self.log_change(request, source, f"Import refused: {refusal}")
                self.message_user(request, self._refusal_message(source, refusal), messages.ERROR)
                continue
            pushed_first = self._log_push_at_start(request, source, pushed_before)
            accepting = ", accepting fewer records" if accept_fewer_records else ""
            self.log_change(
                request, source, f"Started import (execution #{execution.pk}){accepting}."
            )
            started += 1
            url = reverse("admin:importer_execution_change", args=[execution.pk])
            self.message_user(
                request,
                format_html(
                    'Import of {} started{} — <a href="{}">follow execution #{}</a>',
                    source,
                    " (its mapping, not pushed yet, was pushed first)" if pushed_first else "",
                    url,
                    execution.pk,
                ),
                messages.SUCCESS,
            )
        if started > 1:
            self.message_user(
                request, ngettext("%d import started.", "%d imports started.", started) % started
            )

    @staticmethod
    def _refusal_message(source, refusal):
        """Why the import did not start; when another is running, a link to follow it."""
        running = (
            Execution.objects.open().filter(source=source).first()
            if isinstance(refusal, services.ImportAlreadyRunning)
            else None
        )
        if running is None:
            return f"Import of {source} not started: {refusal}"
        return format_html(
            'Import of {} not started: {} <a href="{}">Follow execution #{}</a>.',
            source,
            str(refusal),
            reverse("admin:importer_execution_change", args=[running.pk]),
            running.pk,
        )

    def _log_push_at_start(self, request, source, pushed_before) -> bool:
        """An import pushes a mapping saved since its last push (`services.start_import`);
        whether it did, logged as the push action would be."""
        if source.mapping_pushed_at == pushed_before:
            return False
        self.log_change(request, source, "Pushed the mapping to Assets.")
        return True

    @admin.action(description="Push mapping to Assets", permissions=["change"])
    def push_mapping(self, request, queryset):
        pushed = 0
        for source in queryset:
            why_not = services.try_push_mapping(source=source)
            if why_not:
                self.message_user(
                    request, f"Mapping of {source} not pushed: {why_not}", messages.ERROR
                )
            else:
                self.log_change(request, source, "Pushed the mapping to Assets.")
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
