"""The execution history: the list, the live execution page with its chunks, cancel and retry."""

import hashlib
import re
import time

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.helpers import AdminReadonlyField
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from importer import services
from importer.admin.buttons import PageButtons
from importer.admin.deleting import CountedDeletion
from importer.admin.display import (
    CHUNKS_PER_PAGE,
    SourceByNameToViewers,
    error_head_and_rest,
    next_attempt_cell,
    next_attempt_label,
    progress_widget,
    stalled_note,
    state_badge,
)
from importer.dashboard import dashboard_context
from importer.health import broker_problem
from importer.models import ChunkJob, Execution, ImportSource, NotificationChannel
from importer.progress import (
    chunk_counts,
    describe,
    progress_of,
    retries_of,
    retry_text,
    settled,
)
from importer.redaction import hidden_from_messages, redact

# A retry's countdown in a chunk row: it moves every second, the row does not.
_COUNTDOWN = re.compile(r'<span data-due-at="\d+">[^<]*</span>')


def no_chunks_text(execution: Execution) -> str:
    """What an execution without chunks says instead: "yet" only while it may get some."""
    if execution.state == Execution.State.REFUSED:
        return "none: the import never started"
    if execution.state in Execution.FINISHED_STATES:
        return "none"
    return "none yet"


class StalledFilter(admin.SimpleListFilter):
    """The imports housekeeping flagged stalled (no progress for STALLED_AFTER_SECONDS, or an
    outcome Assets will not tell) that still run: what on call looks at first."""

    title = "stalled"
    parameter_name = "stalled"

    def lookups(self, request, model_admin):
        return [("now", "Stalled now")]

    def queryset(self, request, queryset):
        if self.value() == "now":
            return queryset.open().filter(stalled_since__isnull=False)
        return queryset


def _cut_short(kind: str, text: str) -> str:
    """A message under an import's state in the list, its start shown, the rest on hover."""
    text = " ".join(text.split())
    shown = text if len(text) <= 90 else text[:89] + "…"
    return format_html('<div class="{}" title="{}">{}</div>', kind, text[:1000], shown)


@admin.register(Execution)
class ExecutionAdmin(SourceByNameToViewers, PageButtons, CountedDeletion, admin.ModelAdmin):
    class Media:
        css = {"all": ["importer/admin.css"]}
        js = ["importer/progress.js"]

    # Narrow columns, so the list with its filters fits a 1366 px screen.
    list_display = [
        "id",
        "source",
        "state_and_why",
        "run_label",
        "started_label",
        "duration_label",
        "progress_bar",
    ]
    list_filter = ["source", "state", StalledFilter, "trigger"]
    list_select_related = ["source", "triggered_by"]
    date_hierarchy = "created_at"
    search_fields = ["assets_execution_id", "source__name", "error"]
    search_help_text = "An import's number (#3941), its source, its Assets id, or its error."
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
        "notice",
        "retries_label",
        "stalled_since",
        "chunk_summary",
        "pages_fetched_label",
        "pages_submitted",
        "records_fetched",
        "records_submitted",
        "records_skipped",
        "items_skipped",
        "created_at",
        "started_at",
        "completed_at",
        "finished_at",
        "duration_label",
        "error",
        "failure_report_label",
    ]
    readonly_fields = fields
    # What changes while an import runs: the live endpoint sends these again.
    live_fields = [
        name for name in fields if name not in ("source", "trigger_label", "progress_detail")
    ]

    def get_fields(self, request, obj=None):
        """The notice only when there is one: most imports have none."""
        fields = super().get_fields(request, obj)
        if obj is not None and not obj.notice:
            return [name for name in fields if name != "notice"]
        return fields

    def get_search_results(self, request, queryset, search_term):
        """Messages and alerts name an import by its number: `#3941` (or `3941`) finds it."""
        term = search_term.strip()
        number = term.removeprefix("#")
        if number.isascii() and number.isdecimal():
            if term.startswith("#"):  # the number alone
                return queryset.filter(pk=int(number)), False
            found, duplicates = super().get_search_results(request, queryset, number)
            return found | queryset.filter(pk=int(number)), duplicates
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Failure or cancel told to Assets")
    def failure_report_label(self, execution):
        """Whether Assets has heard of the failure or the cancel: only those have anything
        to tell."""
        if execution.failure_reported_at:
            return date_format(localtime(execution.failure_reported_at), "DATETIME_FORMAT")
        if execution.failure_report_pending:
            return (
                "not yet: Assets did not take it (it could not be reached, was busy, or "
                "refused the token: the log of the workers says which). Housekeeping, and "
                "the source's next start, tell it again; until then Assets may count the "
                "import as running."
            )
        return "—"

    @admin.display(description="State", ordering="state")
    def state_label(self, execution):
        return state_badge(execution.state)

    @admin.display(description="State", ordering="state")
    def state_and_why(self, execution):
        """The state, and under it the start of why a run failed, or since when a running
        one is stalled: no need to open it to see."""
        if execution.state in Execution.OPEN_STATES and execution.stalled_since:
            return format_html(
                "{}{}", state_badge(execution.state), stalled_note(execution.stalled_since)
            )
        if execution.state == Execution.State.DONE and execution.notice:
            # DONE, with something worth a look (a total that could not be checked).
            return format_html(
                "{}{}", state_badge(execution.state), _cut_short("run-notice", execution.notice)
            )
        if not execution.error or execution.state in Execution.OPEN_STATES:
            return state_badge(execution.state)
        return format_html(
            "{}{}", state_badge(execution.state), _cut_short("run-error", execution.error)
        )

    @admin.display(description="Run", ordering="trigger")
    def trigger_label(self, execution):
        if execution.is_scheduled:
            return format_html(
                '<span style="background:{};color:#fff;padding:1px 6px;'
                'border-radius:8px;font-size:11px">{}</span>',
                "#00695c",
                "scheduled",
            )
        trigger = execution.get_trigger_display().lower()
        # Its drop in records was let through: say so wherever the trigger shows.
        return f"{trigger}, accepting fewer records" if execution.accepts_fewer_records else trigger

    @admin.display(description="Triggered by")
    def triggered_by_label(self, execution):
        if execution.is_scheduled:
            return "schedule"
        return execution.triggered_by.get_username() if execution.triggered_by else "—"

    @admin.display(description="Run", ordering="trigger")
    def run_label(self, execution):
        if execution.is_scheduled:
            return self.trigger_label(execution)
        return format_html(
            "{}<br><small>{}</small>",
            self.trigger_label(execution),
            self.triggered_by_label(execution),
        )

    @admin.display(description="Started", ordering="started_at")
    def started_label(self, execution):
        """When it started; for a run that never did (refused), when it was asked for."""
        when = execution.started_at or execution.created_at
        if not when:
            return "—"
        started = localtime(when)
        return format_html(
            "{}<br><small>{}{}</small>",
            date_format(started, "Y-m-d"),
            date_format(started, "H:i:s"),
            "" if execution.started_at else " (asked)",
        )

    @admin.display(description="Duration")
    def duration_label(self, execution):
        duration = execution.duration
        if duration is None:
            return "—"
        if duration.total_seconds() < 60:  # most small imports take well under a second
            return f"{duration.total_seconds():.1f} s"
        seconds = int(duration.total_seconds())
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    @admin.display(description="Progress, records", ordering="records_submitted")
    def progress_bar(self, execution):
        return progress_widget(execution, width=80, detailed=False)

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
        return " · ".join(parts) or no_chunks_text(execution)

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
        if not retries and execution.completion_attempts:
            return (
                f"'completed' not yet taken by Assets ({execution.completion_attempts} of at "
                f"most {settings.COMPLETION_MAX_ATTEMPTS} attempts): posted again shortly"
            )
        if not retries:
            return "none waiting"
        return format_html_join(
            mark_safe("<br>"),
            "{}; next attempt {}",
            (
                (retry_text(retry), next_attempt_label(retry["next_attempt_at"]))
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
                **self._pages_one_may_open(request),
            },
        )

    def _pages_one_may_open(self, request) -> dict:
        """Sources and channels are linked only for who may open them (an Import viewer
        would meet a 403)."""
        sources = self.admin_site.get_model_admin(ImportSource)
        channels = self.admin_site.get_model_admin(NotificationChannel)
        return {
            "can_open_sources": sources.has_view_or_change_permission(request),
            "can_add_source": sources.has_add_permission(request),
            "can_open_channels": channels.has_view_or_change_permission(request),
        }

    def _execution_or_404(self, request, object_id) -> Execution:
        execution = self.get_object(request, object_id)
        if execution is None:
            raise Http404("No such execution")
        if not self.has_view_permission(request, execution):
            raise PermissionDenied
        return execution

    def _chunk_page(self, request, execution):
        chunks = (
            ChunkJob.objects.filter(execution=execution).defer("identity_digests").order_by("index")
        )
        state = request.GET.get("chunks_state")
        if state in ChunkJob.State.values:  # the failed pages of 30,000, without paging there
            chunks = chunks.filter(state=state)
        page = Paginator(chunks, CHUNKS_PER_PAGE).get_page(request.GET.get("chunks_page"))
        secrets = hidden_from_messages(execution.source)
        for chunk in page:
            chunk.cursor_shown = redact(chunk.cursor, secrets)
            chunk.error_head, chunk.error_rest = error_head_and_rest(chunk.error)
            chunk.next_attempt_label = (
                next_attempt_cell(chunk.next_attempt_at)
                if chunk.state == ChunkJob.State.QUEUED and chunk.next_attempt_at
                else "—"
            )
        return page

    def page_buttons(self, request, execution):
        """Retrying is what an import's page is opened for when its pages failed: on the
        page of an import still ingesting, shown once a page failed (`live_view` tells)."""
        if execution.state != Execution.State.INGESTING:
            return []
        return [("retry_failed_chunks", "Retry failed chunks")]

    def hidden_page_buttons(self, request, execution):
        return set() if _has_failed_pages(execution) else {"retry_failed_chunks"}

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
        rows = render_to_string("admin/importer/execution/_chunk_rows.html", {"chunk_page": page})
        # The rows are most of the answer: unchanged since the page's last poll, they are not
        # sent again (a slow link was kept busy with the same 50 KB every second).
        rows_digest = hashlib.blake2b(_COUNTDOWN.sub("", rows).encode(), digest_size=8).hexdigest()
        return JsonResponse(
            {
                **progress,
                "finished": settled(execution),
                "label": describe(progress),
                "fields": fields,
                "chunk_count": page.paginator.count,
                "chunk_states": _chunk_states_html(request, execution),
                "chunk_rows": None if request.GET.get("rows") == rows_digest else rows,
                "rows_digest": rows_digest,
                "now_ms": round(time.time() * 1000),  # the countdowns' clock
                "may_cancel": execution.state in Execution.CANCELLABLE_STATES
                and self.has_cancel_permission(request),
                "may_retry": _has_failed_pages(execution)
                and "retry_failed_chunks" in self.get_actions(request),
            }
        )

    def cancel_view(self, request, object_id):
        """Cancel one import after a confirmation (a page of its own, so it works without JS)."""
        execution = self._execution_or_404(request, object_id)
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:importer_execution_change", args=[execution.pk])
        if request.method == "POST":
            try:
                services.cancel_execution(execution=execution, by=request.user.get_username())
            except services.NotCancellable as too_late:
                self.message_user(request, str(too_late), messages.WARNING)
            else:
                self.log_change(request, execution, "Cancelled the import.")
                self.message_user(request, f"Import #{execution.pk} cancelled.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        cancellable = execution.state in Execution.CANCELLABLE_STATES
        return TemplateResponse(
            request,
            "admin/importer/execution/cancel.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": execution,
                "title": f"Cancel import #{execution.pk}?",
                "change_url": change_url,
                "why_not": None if cancellable else services.why_not_cancellable(execution),
            },
        )

    def get_object(self, request, object_id, from_field=None):
        """Read once per request: the change page reads it before Django's view does, and
        the counts kept on it (`progress.chunk_counts`) serve both."""
        key = (object_id, from_field)
        kept = getattr(request, "_execution_read", None)
        if kept is None or kept[0] != key:
            kept = (key, super().get_object(request, object_id, from_field))
            request._execution_read = kept
        return kept[1]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The chunks, a page at a time: an import can have tens of thousands."""
        execution = self.get_object(request, object_id)
        extra_context = {**(extra_context or {})}
        if execution is not None:
            extra_context["chunk_page"] = self._chunk_page(request, execution)
            extra_context["chunk_states_html"] = _chunk_states_html(request, execution)
            extra_context["no_chunks_text"] = no_chunks_text(execution).capitalize()
            extra_context["may_cancel"] = (
                execution.state in Execution.CANCELLABLE_STATES
                and self.has_cancel_permission(request)
            )
            if execution.state in Execution.OPEN_STATES:  # its pages need the broker
                extra_context["broker_problem"] = broker_problem()
        return super().change_view(request, object_id, form_url, extra_context)

    def has_delete_permission(self, request, obj=None):
        """A running import is cancelled, never deleted: its pages are still being sent."""
        if obj is not None and obj.state in Execution.OPEN_STATES:
            return False
        return super().has_delete_permission(request, obj)

    def has_cancel_permission(self, request):
        return request.user.has_perm("importer.cancel_execution")

    def has_retry_permission(self, request):
        return request.user.has_perm("importer.retry_chunks")

    @admin.action(description="Cancel selected imports", permissions=["cancel"])
    def cancel(self, request, queryset):
        """After a confirmation page, as the execution page's own Cancel asks for one."""
        if request.POST.get("post") != "yes":
            selected = list(queryset.select_related("source").order_by("-pk"))
            running = [e for e in selected if e.state in Execution.CANCELLABLE_STATES]
            return TemplateResponse(
                request,
                "admin/importer/execution/cancel_selected.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Cancel the selected imports?" if running else "Nothing to cancel",
                    "running": running,
                    "left": [
                        services.why_not_cancellable(e)
                        for e in selected
                        if e.state not in Execution.CANCELLABLE_STATES
                    ],
                    "selected": selected,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        cancelled = 0
        left = []
        for execution in queryset.select_related("source"):
            try:
                services.cancel_execution(execution=execution, by=request.user.get_username())
            except services.NotCancellable as too_late:
                left.append(str(too_late))
                continue
            self.log_change(request, execution, "Cancelled the import.")
            cancelled += 1
        if cancelled or not left:
            self.message_user(
                request,
                ngettext("%d import cancelled.", "%d imports cancelled.", cancelled) % cancelled,
            )
        for told in left:
            self.message_user(request, told, messages.WARNING)

    @admin.action(description="Retry failed chunks", permissions=["retry"])
    def retry_failed_chunks(self, request, queryset):
        for execution in queryset.select_related("source"):
            try:
                retried = services.retry_failed_chunks(execution=execution)
            except services.ImportEnded as ended:
                self.message_user(request, str(ended), messages.WARNING)
                continue
            if not retried:  # none failed, or another operator retried them a moment ago
                self.message_user(
                    request, f"#{execution.pk}: no failed chunk to retry.", messages.WARNING
                )
                continue
            self.log_change(request, execution, f"Retried {retried} failed chunk(s).")
            self.message_user(
                request,
                ngettext("#%d: %d chunk queued again.", "#%d: %d chunks queued again.", retried)
                % (execution.pk, retried),
            )


def _has_failed_pages(execution: Execution) -> bool:
    """Whether an import still ingesting has pages that failed (to retry)."""
    return execution.state == Execution.State.INGESTING and (
        execution.chunks.filter(state=ChunkJob.State.FAILED).exists()
    )


def _chunk_states_html(request, execution: Execution) -> str:
    """The line that narrows the page's chunks to a state, with the count in each: on the
    page, and again with every live update, as pages move from state to state."""
    chosen = request.GET.get("chunks_state")
    html = render_to_string(
        "admin/importer/execution/_chunk_states.html",
        {"chunk_states": _chunk_states(execution, chosen), "chunks_state": chosen},
    )
    return mark_safe(html.strip())  # the template escaped what it holds


def _chunk_states(execution: Execution, chosen: str | None) -> list[dict]:
    """The chunk states the page's chunks may be narrowed to, with how many are in each
    (one query), "all" first."""
    counts = {state: n for state, n in chunk_counts(execution).items() if n}
    chosen = chosen if chosen in ChunkJob.State.values else ""
    choices = [{"value": "", "label": "All", "count": sum(counts.values())}]
    choices += [
        # The state chosen stays, with none left in it (its failed pages retried meanwhile).
        {"value": value, "label": label, "count": counts.get(value, 0)}
        for value, label in ChunkJob.State.choices
        if counts.get(value) or value == chosen
    ]
    for choice in choices:
        choice["chosen"] = choice["value"] == chosen
    return choices
