"""Deleting what Assets also holds (a schedule, a source with a schedule): Assets first.

What Assets could not delete is kept, with an error saying why; Django's own "deleted
successfully" is then not said of it, and a single delete goes back to the kept object.
"""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from importer import services


class DeletedInAssetsFirst:
    """For a ModelAdmin with `delete_in_assets_first(obj)` (raising ScheduleError when Assets
    did not delete) and `kept_text(obj, error)`."""

    def delete_model(self, request, obj):
        self._delete_all(request, [obj])

    def delete_queryset(self, request, queryset):
        self._delete_all(request, list(queryset))

    def _delete_all(self, request, objects) -> None:
        kept = [obj for obj in objects if not self._delete_one(request, obj)]
        request._kept_by_assets = kept
        deleted = len(objects) - len(kept)
        if kept and deleted:
            # Said directly: `message_user` holds back Django's success once something was kept.
            messages.success(request, f"Deleted {deleted} of {len(objects)}.")

    def _delete_one(self, request, obj) -> bool:
        try:
            self.delete_in_assets_first(obj)
        except services.ScheduleError as error:
            self.message_user(request, self.kept_text(obj, error), messages.ERROR)
            return False
        return True

    def _kept(self, request) -> list:
        return getattr(request, "_kept_by_assets", [])

    def response_delete(self, request, obj_display, obj_id):
        if self._kept(request):
            opts = self.model._meta
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj_id])
            )
        return super().response_delete(request, obj_display, obj_id)

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        if level == messages.SUCCESS and self._kept(request):
            return  # Django's "deleted successfully": not true of what was kept
        super().message_user(request, message, level, *args, **kwargs)
