"""Schedules: kept in sync with Assets, pulled and compared, shown in the schedule's zone."""

from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import ngettext

from importer import services
from importer.admin.deleting import DeletedInAssetsFirst
from importer.admin.display import state_badge, when_it_runs
from importer.assets import AssetsError
from importer.forms import (
    ScheduleForm,
)
from importer.forms.meanwhile import RefusesEditsMadeMeanwhile
from importer.models import Schedule
from importer.redaction import redact

OLD_ADDRESS = (
    "Assets holds it with a webtrigger address this app no longer has (PUBLIC_BASE_URL changed "
    "since it was synced), and calls that one. Select it and use 'Re-sync schedule to Assets'."
)


class ScheduleAdminForm(RefusesEditsMadeMeanwhile, ScheduleForm):
    guarded_fields = ("frequency", "timezone", "start_time")
    form_field_of = {"start_time": "start_local"}


@admin.register(Schedule)
class ScheduleAdmin(DeletedInAssetsFirst, admin.ModelAdmin):
    form = ScheduleAdminForm
    list_display = ["source", "frequency", "next_run_label", "timezone", "sync_label", "synced_at"]
    list_select_related = ["source"]
    list_filter = ["frequency", "in_sync"]
    actions = ["pull_from_assets", "resync"]
    readonly_fields = [
        "next_run_label",
        "callback_url",
        "assets_schedule_id",
        "sync_label",
        "synced_at",
    ]

    def get_fields(self, request, obj=None):
        # A schedule not saved yet has no state in Assets to show.
        editable = ["source", "frequency", "timezone", "start_local"]
        if obj is None:
            return editable
        fields = [*editable, *self.readonly_fields]
        if not self.has_change_permission(request, obj):
            shown_as = {"callback_url": "callback_url_masked", "start_local": "start_label"}
            return [shown_as.get(name, name) for name in fields]
        return [*editable, "loaded_as", *self.readonly_fields]

    @admin.display(description="Start time")
    def start_label(self, schedule):
        """The first run as the form has it: wall-clock time in the schedule's zone."""
        local = schedule.start_time.astimezone(ZoneInfo(schedule.timezone))
        return f"{local:%Y-%m-%d %H:%M} {schedule.timezone}"

    @admin.display(description="Callback URL")
    def callback_url_masked(self, schedule):
        return redact(schedule.callback_url)

    @admin.display(description="Next run")
    def next_run_label(self, schedule):
        return when_it_runs(schedule).removeprefix("next ")

    @admin.display(description="Assets", ordering="in_sync")
    def sync_label(self, schedule):
        if services.calls_an_old_address(schedule):
            return format_html("{} {}", state_badge("OUT OF DATE"), OLD_ADDRESS)
        if schedule.in_sync:
            return state_badge("IN SYNC")
        return format_html("{} {}", state_badge("OUT OF SYNC"), schedule.sync_error)

    def changelist_view(self, request, extra_context=None):
        # Said at the top too: after a move, every schedule is out of date at once.
        moved = [
            schedule
            for schedule in Schedule.objects.select_related("source").filter(in_sync=True)
            if services.calls_an_old_address(schedule)
        ]
        if moved and request.method == "GET":
            self.message_user(
                request,
                ngettext(
                    "The schedule of %(names)s: %(why)s",
                    "%(count)d schedules (%(names)s): %(why)s",
                    len(moved),
                )
                % {
                    "count": len(moved),
                    "names": ", ".join(str(schedule.source) for schedule in moved[:5]),
                    "why": OLD_ADDRESS,
                },
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        try:
            # Not waited for here: housekeeping syncs again what Assets could not take now.
            services.sync_schedule(schedule=obj, wait_for_assets=False)
        except services.ScheduleError as error:
            meanwhile = (
                " Until then Assets runs it as last synced."
                if services.runs_as_last_synced(obj)
                else ""
            )
            then = (
                "'Re-sync schedule to Assets' tries at once"
                if error.will_retry
                else "once the cause is fixed, use 'Re-sync schedule to Assets'"
            )
            request.schedule_outcome = (
                messages.WARNING,
                f"The schedule of {obj.source} is saved here, but not in Assets: "
                f"{str(error).rstrip('.')}. It is marked out of sync; {then}.{meanwhile}",
            )
        else:
            request.schedule_outcome = (
                messages.SUCCESS,
                f"The schedule of {obj.source} is saved, and Assets holds it: {when_it_runs(obj)}.",
            )

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        # After a save, Django's "was added/changed successfully" gives way to the one
        # message that says what happened both here and in Assets.
        outcome = getattr(request, "schedule_outcome", None)
        if outcome is not None and level == messages.SUCCESS:
            del request.schedule_outcome
            level, message = outcome
        super().message_user(request, message, level, *args, **kwargs)

    def delete_in_assets_first(self, schedule) -> None:
        services.delete_schedule(schedule=schedule)

    def kept_text(self, schedule, error) -> str:
        return f"Kept the schedule of {schedule.source}: Assets did not delete it ({error})."

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
                listed = "; ".join(differences)
                self.log_change(
                    request, schedule, f"Pulled the schedule from Assets: {listed.rstrip('.')}."
                )
                self.message_user(
                    request,
                    f"The schedule of {schedule.source} differs in Assets: {listed}",
                    messages.WARNING,
                )
            else:
                self.log_change(request, schedule, "Pulled the schedule from Assets: the same.")
                self.message_user(request, f"Assets holds the same schedule for {schedule.source}.")

    @admin.action(description="Re-sync schedule to Assets", permissions=["change"])
    def resync(self, request, queryset):
        synced = 0
        for schedule in queryset.select_related("source"):
            try:
                services.sync_schedule(schedule=schedule, wait_for_assets=False)
            except services.ScheduleError as error:
                self.message_user(
                    request, f"Schedule of {schedule.source} not synced: {error}", messages.ERROR
                )
            else:
                self.log_change(request, schedule, "Re-synced the schedule to Assets.")
                synced += 1
        if synced:
            self.message_user(
                request,
                ngettext("%d schedule synced.", "%d schedules synced.", synced) % synced,
                messages.SUCCESS,
            )
