"""Actions as buttons at the top of an object's page.

An object is mostly opened for one or two of the list's actions (start an import, send a test
message). The buttons post to the list's action, so the same permissions and messages apply,
and come back to the object's page.
"""

from django.contrib.admin import helpers
from django.http import HttpResponseRedirect
from django.urls import reverse

BACK_TO_PAGE = "_back_to_page"


class PageButtons:
    """Mix into a ModelAdmin; `page_buttons(request, obj)` names the actions to show."""

    def page_buttons(self, request, obj) -> list[tuple[str, str]]:
        """(action name, label) of each button the user may use on `obj`'s page."""
        return []

    def hidden_page_buttons(self, request, obj) -> set[str]:
        """The buttons on the page but hidden until the page's live updates show them."""
        return set()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        allowed = self.get_actions(request)
        context["page_buttons"] = [
            (name, label)
            for name, label in (self.page_buttons(request, obj) if obj is not None else [])
            if name in allowed
        ]
        context["page_buttons_hidden"] = self.hidden_page_buttons(request, obj) if obj else set()
        context["page_buttons_back"] = BACK_TO_PAGE
        return super().render_change_form(request, context, add, change, form_url, obj)

    def response_action(self, request, queryset):
        """A button of an object's page comes back to that page, with the action's messages."""
        response = super().response_action(request, queryset)
        object_id = request.POST.get(helpers.ACTION_CHECKBOX_NAME, "")
        if response is not None and request.POST.get(BACK_TO_PAGE) and object_id.isdigit():
            meta = self.model._meta
            return HttpResponseRedirect(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[object_id])
            )
        return response
