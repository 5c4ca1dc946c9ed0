"""The import source form, which the admin and the config file importer share.

Which settings each kind uses is in source_fields, how secrets are masked on it in
source_masking, and the checks its settings get together in source_checks.
"""

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import MinValueValidator

from importer.forms.fields import PrettyJSONField, RequestBodyField, strict_formfield
from importer.forms.secrets import WriteOnlySecretsForm, keep_stored_secrets
from importer.forms.source_checks import SourceChecks
from importer.forms.source_fields import (
    AT_LEAST_ONE,
    AUTH_FIELDS,
    CONNECTION_FIELDS,
    FILE_FIELDS,
    KEPT_WHEN_NOT_POSTED,
    LIMIT_FIELDS,
    MASKED_JSON_FIELDS,
    MASKED_URL_FIELDS,
    PAGING_FIELDS,
    SECRET_FIELDS,
    SOURCE_FIELDS,
)
from importer.forms.source_masking import MaskedSourceSettings
from importer.models import ImportSource
from importer.services.editing import ASSETS_PLACE
from importer.sources.conversions import ConversionError, converted_upload
from importer.sources.rules import listed_plugins


class ImportSourceForm(MaskedSourceSettings, SourceChecks, WriteOnlySecretsForm):
    """Tokens are write-only: the stored secret is never sent back to the browser."""

    secret_fields = SECRET_FIELDS
    # The Assets base URL is never stored with a password (refused), but one typed there is
    # masked when the form comes back with errors, as any other.
    masked_fields = (*MASKED_URL_FIELDS, *MASKED_JSON_FIELDS, "auth_username", "assets_base_url")

    assets_token = forms.CharField(
        label="Assets token",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The import source's API token. Leave empty to keep the stored token.",
    )
    source_token = forms.CharField(
        label="Source secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Bearer token, password, API key or OAuth2 client secret. Leave empty to "
        "keep the stored one.",
    )
    request_body = RequestBodyField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 12, "class": "vLargeTextField", "style": "font-family: monospace"}
        ),
        help_text=ImportSource._meta.get_field("request_body").help_text,
    )
    mapping = PrettyJSONField(
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 30,
                "cols": 100,
                "class": "vLargeTextField",
                "style": "font-family: monospace",
            }
        ),
        help_text="The schema-and-mapping document (JSON) that Assets uses to turn records "
        "into objects. Checked when you save; pushed with the 'Push mapping' action. For a new "
        "source, save it without one, then use 'Draft mapping' to infer one from its first page.",
    )

    class Meta:
        model = ImportSource
        formfield_callback = strict_formfield
        fields = [
            "name",
            "enabled",
            "assets_base_url",
            "workspace_id",
            "import_source_id",
            "assets_token",
            *SOURCE_FIELDS,
            *CONNECTION_FIELDS,
            *PAGING_FIELDS,
            *AUTH_FIELDS,
            *FILE_FIELDS,
            *LIMIT_FIELDS,
            "mapping",
        ]
        labels = {
            "csv_delimiter": "CSV delimiter",
            "csv_quotechar": "CSV quote character",
            "csv_has_header": "CSV header row",
            "csv_fieldnames": "CSV field names",
            "plugin_options": "Plug-in options",
        }
        help_texts = {
            "total_path": "Optional: where the answers tell the total number of records, a "
            "dotted path in the body (e.g. meta.total), or header: and the name of the "
            "response header that tells it (e.g. header:X-Total-Count; GitLab's "
            "header:X-Total, WordPress's header:X-WP-Total). It shows the import's progress, "
            "and the import fails if the records received do not add up to it.",
            "file_encoding": "Files: the text encoding, e.g. utf-8, or cp1252 for an older "
            "spreadsheet's CSV export. A byte-order mark (UTF-8, UTF-16) wins over it, and so "
            "does text valid as UTF-8 when a single-byte code page such as cp1252 is set.",
            "source_file": "A CSV, JSON or JSON Lines file, instead of a URL. A gzip file "
            '(.csv.gz) or a spreadsheet\'s "Unicode text" export (UTF-16) is kept as its '
            "UTF-8 text.",
            "repeated_records": "What a record found on two pages means. Pages read by "
            "position (offset, page number, most next links): when the source's order moves "
            "while it is read (no sort, or a sort on a field that changes), a record shifts "
            "onto a second page and another is never read. Fail the import then (the error "
            "names the pages), unless the source does list some objects more than once. "
            "Cursor and keyset paging: noted on the import rather than failed (a cursor "
            "naming the last record read brings a changed record again); send them to take "
            "no note.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Callable defaults (settings, empty dicts) make Django compare against a hidden
        # initial value that the config file importer does not send.
        for field in self.fields.values():
            field.show_hidden_initial = False
        self._show_stored_settings_masked()
        if "csv_delimiter" in self.fields:
            self.fields["csv_delimiter"].strip = False  # a tab is a delimiter, not blank
        if "plugin" in self.fields:
            self.fields["plugin"].widget = forms.Select(choices=self._plugin_choices())
        for name in AT_LEAST_ONE:
            if name in self.fields:
                field = self.fields[name]
                field.min_value = 1
                field.validators.append(MinValueValidator(1))
                field.widget.attrs["min"] = 1
        self._keep_what_the_page_did_not_post()

    def _keep_what_the_page_did_not_post(self) -> None:
        """A select or text area of the page posts a value, empty or not: only a page that
        lacks the setting altogether leaves it out."""
        if not self.is_bound:
            return
        missing = [
            name
            for name in KEPT_WHEN_NOT_POSTED
            if name in self.fields and self.add_prefix(name) not in self.data
        ]
        if not missing:
            return
        self.data = self.data.copy()
        for name in missing:
            field = self.fields[name]
            # The masked value the page would have shown: saving puts the secrets back.
            self.data[self.add_prefix(name)] = field.prepare_value(
                self.get_initial_for_field(field, name)
            )

    def _plugin_choices(self) -> list[tuple[str, str]]:
        """The plug-ins the site lists, and the stored one if it is no longer listed (shown,
        not dropped: saving then says it is not listed)."""
        plugins = listed_plugins()
        choices = [("", "—")] + [(name, name) for name in sorted(plugins)]
        stored = self.instance.plugin
        if stored and stored not in plugins:  # a listed class may be named by its path too
            listed = stored in plugins.values()
            choices.append((stored, stored if listed else f"{stored} (not listed)"))
        return choices

    def clean_source_file(self):
        """A gzip file, or one in UTF-16 with a byte-order mark (a spreadsheet's "Unicode
        text"), is kept as its UTF-8 text: pages are cut at byte offsets of the file."""
        upload = self.cleaned_data.get("source_file")
        if not isinstance(upload, UploadedFile):  # the stored file kept, cleared, or none
            return upload
        try:
            return converted_upload(upload)
        except ConversionError as error:
            raise forms.ValidationError(f"The file {error.problem}.") from None

    def clean_csv_delimiter(self):
        """Spaces around a delimiter are dropped; a tab or a space alone is the delimiter."""
        typed = self.cleaned_data.get("csv_delimiter", "")
        return typed.strip() or typed

    def save(self, commit=True):
        source = super().save(commit=False)
        keep_stored_secrets(source, self.cleaned_data, SECRET_FIELDS)
        # Another mapping, or another import source in Assets: not pushed there yet.
        if {"mapping", *ASSETS_PLACE} & set(self.changed_data):
            source.mapping_pushed_at = None
        if commit:
            source.save()
        return source
