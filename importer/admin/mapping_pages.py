"""A source's pages of its own, about its mapping: the first page previewed (a dry run), the
mapping Assets holds and how it differs, and a mapping drafted from the source."""

import json

from django.contrib import admin, messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from importer import services
from importer.assets import AssetsError, AssetsNotFound
from importer.forms.meanwhile import OUT_OF_DATE, changes_since, stamp
from importer.json_codec import as_cell
from importer.mapping import mapping_table

DRAFT_SALT = "importer.admin.mapping_pages.draft"


class MappingPages:
    """For the ImportSource admin: its preview, pull and draft pages, and the list actions
    that open them."""

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
            # In the order the mapping gives them (the first record's, then any others).
            columns = list(dict.fromkeys(key for row in rows for key in row))
            cells = [[as_cell(row.get(column, "")) for column in columns] for row in rows]
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
            said = services.scrub_secrets(error.message, source)
            if isinstance(error, AssetsNotFound) and not source.mapping_pushed_at:
                # Never pushed from here: most likely no mapping yet, not a wrong id.
                said = "Assets holds no mapping for this import source yet (it answered 404): "
                if self.has_change_permission(request, source):
                    said += (
                        "push one. Should the push fail too, check the workspace and import "
                        "source ids."
                    )
                else:
                    said += "ask an Import administrator to push one."
            self.message_user(request, said, messages.ERROR)
            return HttpResponseRedirect(self._change_url(source))
        if change:
            return self._take_mapping(
                request,
                source,
                remote,
                pushed=True,
                logged="Replaced the mapping with the one in Assets.",
                said="The mapping now is the one Assets holds.",
                moved="the mapping in Assets changed",
            )
        return self._page(
            request,
            source,
            "pull_mapping.html",
            "Mapping in Assets",
            differences=differences,
            remote=json.dumps(remote, indent=2, ensure_ascii=False),
            may_replace=self.has_change_permission(request, source),
            loaded_as=stamp(source, ["mapping"], shown=remote),
        )

    def draft_mapping_view(self, request, object_id):
        change = request.method == "POST"
        source = self._source_or_404(request, object_id, change=change)
        if change:
            # The draft the page showed, not a new one: a source that lists its first page
            # in another order each time would draft another document.
            try:
                draft = signing.loads(request.POST.get("draft", ""), salt=DRAFT_SALT)
            except signing.BadSignature:
                self.message_user(request, OUT_OF_DATE, messages.ERROR)
                return HttpResponseRedirect(request.path)
            return self._take_mapping(
                request,
                source,
                draft,
                pushed=False,
                logged="Replaced the mapping with a draft from the source.",
                said="The draft is now the mapping: review it, then push it to Assets.",
                moved="the draft changed",
            )
        try:
            draft = services.draft_mapping_from_source(source=source)
        except services.DraftImpossible as impossible:
            self.message_user(request, str(impossible), messages.ERROR)
            return HttpResponseRedirect(self._change_url(source))
        return self._page(
            request,
            source,
            "draft_mapping.html",
            "Draft mapping",
            rows=mapping_table(draft),
            draft=json.dumps(draft, indent=2, ensure_ascii=False),
            signed_draft=signing.dumps(draft, salt=DRAFT_SALT, compress=True),
            may_replace=self.has_change_permission(request, source),
            loaded_as=stamp(source, ["mapping"], shown=draft),
        )

    def _take_mapping(
        self, request, source, document, *, pushed: bool, logged: str, said: str, moved: str
    ):
        """Make `document` the source's mapping (not while it imports), and go back to it;
        only if it is the one the page showed, and the mapping here is still the one it was
        shown beside (`moved`: what changed when the document is not)."""
        with transaction.atomic():
            locked = type(source)._default_manager.select_for_update().get(pk=source.pk)
            found = changes_since(
                request.POST.get("loaded_as", ""), locked, ["mapping"], shown=document
            )
            if found is None or found[0]:
                self.message_user(request, _looked_again(found, moved), messages.ERROR)
                return HttpResponseRedirect(request.path)
            try:
                services.replace_mapping(source=locked, document=document, pushed=pushed)
            except services.SourceBusy as busy:
                self.message_user(request, str(busy), messages.ERROR)
            else:
                self.log_change(request, locked, logged)
                self.message_user(request, said)
        return HttpResponseRedirect(self._change_url(source))

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


def _looked_again(found, moved: str) -> str:
    """Why the mapping was not replaced: the page is out of date (`found` None), or what
    changed since it was shown."""
    if found is None:
        return OUT_OF_DATE
    changed, by = found
    if "mapping" in changed:
        return (
            f"Since you opened this page, {by} changed the mapping here: nothing was replaced. "
            "Look at the differences again, then choose."
        )
    return f"Since you opened this page, {moved}: nothing was replaced. Look again, then choose."
