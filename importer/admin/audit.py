"""The audit log: who started, cancelled, pushed or edited what, and when."""

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry


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
