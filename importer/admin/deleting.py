"""Deleting what Assets also holds (a schedule, a source with a schedule): Assets first.

What Assets could not delete is kept, with an error saying why; Django's own "deleted
successfully" is then not said of it, and a single delete goes back to the kept object.
"""

from collections import Counter

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.db import router
from django.db.models.deletion import Collector
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from importer import services


class CountedDeletion:
    """A delete confirmation that lists the objects chosen and counts what goes with them.

    Django lists every related row, one link each: a source or an execution can take ten
    thousand chunks with it, a page of megabytes built in seconds. The rows are counted
    here, without being loaded where the database can delete them by query."""

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        if not objs:
            return [], {}, set(), []
        collector = Collector(using=router.db_for_write(self.model))
        collector.collect(objs)
        counts: Counter = Counter()
        perms_needed = set()
        for model, instances in collector.data.items():
            counts[model] += len(instances)
            model_admin = self.admin_site._registry.get(model)
            if model_admin and any(
                not model_admin.has_delete_permission(request, row) for row in instances
            ):
                perms_needed.add(model._meta.verbose_name)
        for rows in collector.fast_deletes:
            model, many = rows.model, rows.count()
            counts[model] += many
            model_admin = self.admin_site._registry.get(model)
            if many and model_admin and not model_admin.has_delete_permission(request):
                perms_needed.add(model._meta.verbose_name)
        model_count = {
            model._meta.verbose_name_plural: many for model, many in counts.items() if many
        }
        return [self._deleted_label(obj) for obj in objs], model_count, perms_needed, []

    def _deleted_label(self, obj):
        opts = obj._meta
        try:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
        except NoReverseMatch:
            return f"{capfirst(opts.verbose_name)}: {obj}"
        return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)


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
