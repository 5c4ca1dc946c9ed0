"""The import source form, and which settings each kind of source, paging and auth uses."""

import json
import re
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import MinValueValidator

from importer.forms.fields import PrettyJSONField, RequestBodyField, strict_formfield
from importer.forms.secrets import WriteOnlySecretsForm, keep_stored_secrets
from importer.mapping import line_of, split_newer_rules, validate_document
from importer.models import ImportSource
from importer.redaction import (
    MASK,
    declared_secret_params,
    mask_setting,
    mask_url,
    redact,
    restore_masked,
    restore_url,
    secret_param_names,
    userinfo_of,
    username_holds_a_key,
)
from importer.services.editing import ASSETS_PLACE, FIXED_WHILE_IMPORTING, busy_text, running_import
from importer.sources import limits
from importer.sources.conversions import ConversionError, converted_upload
from importer.sources.rules import (
    AFTER_FIRST_PAGINATIONS,
    after_first_page_problem,
    ca_bundle_problem,
    csv_delimiter_problem,
    csv_fieldnames_problem,
    cursor_path_problem,
    encoding_problem,
    listed_plugins,
    paging_param_problem,
    plugin_problem,
    post_paging_problem,
    request_body_problem,
    url_credentials_problem,
)

SECRET_FIELDS = ImportSource.SECRET_FIELDS
MASKED_URL_FIELDS = ImportSource.MASKED_URL_FIELDS
MASKED_JSON_FIELDS = ImportSource.MASKED_JSON_FIELDS
SOURCE_FIELDS = list(ImportSource.SOURCE_FIELDS)
CONNECTION_FIELDS = [
    "extra_headers",
    "extra_params",
    "secret_params",
    "request_timeout",
    "ca_bundle",
]
PAGING_FIELDS = list(ImportSource.PAGING_FIELDS)
AUTH_FIELDS = [
    "source_auth",
    "auth_username",
    "source_token",
    "auth_key_name",
    "oauth_token_url",
    "oauth_scope",
]
FILE_FIELDS = list(ImportSource.FILE_FIELDS)
LIMIT_FIELDS = ["max_requests_per_minute", "max_chunks_in_flight", "record_drop_limit"]
# Counts that must be at least 1 (0 would be refused by the source or stop all work).
AT_LEAST_ONE = ("page_size", "max_chunks_in_flight")
# Settings a page opened before their release (migrations 0036, 0039) does not post: left
# out, they keep the stored value (a new source's default), rather than refuse the save as
# missing or clear it.
KEPT_WHEN_NOT_POSTED = ("request_method", "request_body", "after_first_page")


FILE_KINDS = ["csv", "json", "jsonl"]
READ_OVER_HTTP = ["rest", *FILE_KINDS]
# "source_file" as a chooser: "" when the source has no uploaded file (none stored, or the
# stored one cleared, and none chosen), UPLOADED otherwise.
UPLOADED = "uploaded"
# The sources that read a URL: REST, and a file without an upload (an upload wins over the URL).
READS_A_URL = [{"source_kind": ["rest"]}, {"source_kind": FILE_KINDS, "source_file": [""]}]


def _reading_a_url(**conditions: list[str]) -> list[dict[str, list[str]]]:
    return [{**alternative, **conditions} for alternative in READS_A_URL]


# Which settings a source of each kind, paging and authentication uses: field -> alternatives,
# each a set of conditions that must all hold. The admin shows only these rows (see
# static/importer/form_conditions.js); validation ignores the others.
FIELD_CONDITIONS: dict[str, list[dict[str, list[str]]]] = {
    "source_url": [{"source_kind": READ_OVER_HTTP}],
    "request_method": [{"source_kind": ["rest"]}],
    "request_body": [{"source_kind": ["rest"], "request_method": ["POST"]}],
    "source_file": [{"source_kind": FILE_KINDS}],
    "plugin": [{"source_kind": ["plugin"]}],
    "plugin_options": [{"source_kind": ["plugin"]}],
    "records_path": [{"source_kind": ["rest", "json"]}],
    # The connection's settings, as its authentication, matter only when a URL is read.
    "extra_headers": READS_A_URL,
    "extra_params": READS_A_URL,
    "secret_params": READS_A_URL,
    "request_timeout": READS_A_URL,
    "ca_bundle": READS_A_URL,
    "pagination": [{"source_kind": ["rest"]}],
    "offset_param": [{"source_kind": ["rest"], "pagination": ["offset"]}],
    "limit_param": [
        {
            "source_kind": ["rest"],
            "pagination": ["offset", "page", "cursor", "keyset", "next_url", "link_header"],
        }
    ],
    "page_param": [{"source_kind": ["rest"], "pagination": ["page"]}],
    "first_page": [{"source_kind": ["rest"], "pagination": ["page"]}],
    "cursor_param": [{"source_kind": ["rest"], "pagination": ["cursor", "keyset"]}],
    "cursor_path": [{"source_kind": ["rest"], "pagination": ["cursor", "keyset", "next_url"]}],
    "after_first_page": [{"source_kind": ["rest"], "pagination": list(AFTER_FIRST_PAGINATIONS)}],
    "total_path": [{"source_kind": ["rest"]}],
    # Where `totals.checks_repeated_records` looks: pages read by position, next links, a
    # cursor or after the last record (keyset; those two noted there, not failed).
    "repeated_records": [
        {
            "source_kind": ["rest"],
            "pagination": ["offset", "page", "next_url", "link_header", "cursor", "keyset"],
        }
    ],
    # An uploaded file is read from the app's storage, with no authentication.
    "source_auth": READS_A_URL,
    "auth_username": _reading_a_url(source_auth=["basic", "oauth2_client_credentials"]),
    "source_token": [
        *_reading_a_url(
            source_auth=[
                "bearer",
                "basic",
                "api_key_header",
                "api_key_query",
                "oauth2_client_credentials",
            ]
        ),
        {"source_kind": ["plugin"]},
    ],
    "auth_key_name": _reading_a_url(source_auth=["api_key_header", "api_key_query"]),
    "oauth_token_url": _reading_a_url(source_auth=["oauth2_client_credentials"]),
    "oauth_scope": _reading_a_url(source_auth=["oauth2_client_credentials"]),
    "csv_delimiter": [{"source_kind": ["csv"]}],
    "csv_quotechar": [{"source_kind": ["csv"]}],
    "csv_has_header": [{"source_kind": ["csv"]}],
    "csv_fieldnames": [{"source_kind": ["csv"]}],
    "file_encoding": [{"source_kind": FILE_KINDS}],
}
CHOOSERS = ["source_kind", "request_method", "pagination", "source_auth"]


def field_is_used(name: str, chosen: dict[str, str]) -> bool:
    """Whether a source with these kind, paging and authentication uses the setting."""
    alternatives = FIELD_CONDITIONS.get(name)
    if alternatives is None:
        return True
    return any(
        all(chosen.get(chooser) in values for chooser, values in conditions.items())
        for conditions in alternatives
    )


# A header's value as JSON text writes it (`"X-Key": "value"`), however broken the rest.
_QUOTED_VALUE = re.compile(r'"\s*:\s*"')


class ImportSourceForm(WriteOnlySecretsForm):
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
        declared = declared_secret_params(self.instance)
        for name in MASKED_URL_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_url(getattr(self.instance, name) or "", declared)
        for name in MASKED_JSON_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_setting(name, getattr(self.instance, name), declared)
        if "auth_username" in self.fields and username_holds_a_key(self.instance):
            self.initial["auth_username"] = MASK  # the API key, as Freshservice takes it
            kept = f" It holds the API key here, so it is shown as {MASK}: leave {MASK} to keep it."
            self.fields["auth_username"].help_text += kept
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

    def _declared_secret_params(self) -> frozenset[str]:
        """Named secret as stored, or on this form: a config file may name it too."""
        return declared_secret_params(self.instance) | secret_param_names(
            self.data.get(self.add_prefix("secret_params"))
        )

    def shown_masked(self, name: str, typed: str) -> str:
        if name == "auth_username":
            # A user name that is the API key (Freshservice's, BambooHR's) is not shown again.
            return "" if typed != MASK and self._typed_username_holds_a_key(typed) else typed
        if name in MASKED_URL_FIELDS or name == "assets_base_url":
            return mask_url(typed, self._declared_secret_params())
        if name in MASKED_JSON_FIELDS:
            try:
                value = json.loads(typed)
            except (ValueError, RecursionError):
                # Which of it is a secret cannot be told (every header may be one): not shown
                # again if it may hold any.
                holds_values = name == "extra_headers" and _QUOTED_VALUE.search(typed)
                return "" if holds_values or redact(typed) != typed else typed
            masked = mask_setting(name, value, self._declared_secret_params())
            return typed if masked == value else json.dumps(masked, ensure_ascii=False)
        return typed

    def _typed_username_holds_a_key(self, typed: str) -> bool:
        """`username_holds_a_key` of the source as typed on this form (the stored secret
        where none was typed)."""
        typed_source = ImportSource(
            auth_username=typed,
            source_auth=self.data.get(self.add_prefix("source_auth"), self.instance.source_auth),
            source_token=(
                self.data.get(self.add_prefix("source_token")) or self._stored.get("source_token")
            ),
        )
        return username_holds_a_key(typed_source)

    def _unmasked(self, name: str):
        """The submitted value, with masked secrets put back from the stored source."""
        value = self.cleaned_data.get(name)
        stored = getattr(self.instance, name)
        try:
            if name in MASKED_URL_FIELDS:
                return restore_url(value or "", stored or "", self._declared_secret_params())
            return restore_masked(value, stored, name)
        except ValueError as error:
            raise forms.ValidationError(f"{error}: give the value itself.") from None

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

    def clean_auth_username(self):
        return self._unmasked("auth_username")

    def clean_source_url(self):
        return _requestable(self._unmasked("source_url"))

    def clean_oauth_token_url(self):
        return _requestable(self._unmasked("oauth_token_url"))

    def clean_assets_base_url(self):
        url = _requestable(self.cleaned_data.get("assets_base_url"))
        path = urlsplit(url or "").path.rstrip("/")
        if userinfo_of(url or ""):
            raise forms.ValidationError(
                "Give the address without a user name or password (user:password@): Assets "
                "knows the app by the API token below, and a proxy's credentials go in the "
                "HTTPS_PROXY setting."
            )
        if path.endswith("/jsm") or "/jsm/assets" in path:
            raise forms.ValidationError(
                "Give the address of the Assets API without its path (e.g. "
                "https://api.atlassian.com): /jsm/assets/workspace/... is added to it."
            )
        return url

    def clean_extra_headers(self):
        return self._unmasked("extra_headers")

    def clean_extra_params(self):
        return self._unmasked("extra_params")

    def clean_plugin_options(self):
        return self._unmasked("plugin_options")

    def clean_request_body(self):
        return self._unmasked("request_body")

    def clean_after_first_page(self):
        return self._unmasked("after_first_page")

    def clean_assets_token(self):
        token = self.cleaned_data.get("assets_token", "").strip()
        if not token and not (self.instance.pk and self.instance.assets_token):
            raise forms.ValidationError(
                self.secret_missing("Paste the import source's API token from Assets")
            )
        if _header_problem(token):
            raise forms.ValidationError(_header_problem(token))
        return token

    def clean_mapping(self):
        document = self.cleaned_data.get("mapping")
        if document in (None, ""):
            return None
        problems = validate_document(document)
        if "mapping" not in self.changed_data:
            # Stored before rules newer than it, it still imports (noted): the source's other
            # settings may be saved; the mapping itself only once it keeps them.
            problems, _ = split_newer_rules(problems)
        if problems:
            # The lines of the document as the field shows it again, indented.
            raise forms.ValidationError([_with_line(document, problem) for problem in problems])
        return document

    def chosen(self) -> dict[str, str]:
        """The kind, paging and authentication chosen on the form (or stored), and whether
        the source has an uploaded file."""
        chosen = {
            name: self.cleaned_data.get(name) or getattr(self.instance, name) for name in CHOOSERS
        }
        upload = self.cleaned_data.get("source_file")  # False: the stored one cleared
        if upload is None:
            upload = self.instance.source_file
        chosen["source_file"] = UPLOADED if upload else ""
        return chosen

    def clean(self):
        cleaned = super().clean()
        chosen = self.chosen()
        # Settings the chosen kind does not use are hidden: their errors would be invisible,
        # and they change nothing, so they are not held against the form.
        for name in list(self.errors):
            if name in self.fields and not field_is_used(name, chosen):
                del self.errors[name]
        kind = cleaned.get("source_kind")
        Kind, Auth = ImportSource.Kind, ImportSource.AuthKind
        if kind == Kind.REST and not cleaned.get("source_url") and "source_url" not in self.errors:
            self.add_error("source_url", "A REST source needs the URL that lists its records.")
        if (
            kind in (Kind.CSV, Kind.JSON, Kind.JSONL)
            and not (cleaned.get("source_url") or cleaned.get("source_file"))
            and "source_file" not in self.errors  # an upload refused says why already
        ):
            self.add_error("source_file", "Upload the file or give its URL.")
        if kind in (Kind.CSV, Kind.JSON, Kind.JSONL):
            self._add_problem("file_encoding", encoding_problem(cleaned.get("file_encoding", "")))
        if kind == Kind.CSV and "csv_delimiter" not in self.errors:
            self._add_problem(
                "csv_delimiter", csv_delimiter_problem(cleaned.get("csv_delimiter", ""))
            )
        if kind == Kind.CSV:
            self._add_problem(
                "csv_fieldnames",
                csv_fieldnames_problem(
                    bool(cleaned.get("csv_has_header")), cleaned.get("csv_fieldnames", "")
                ),
            )
        if kind == Kind.PLUGIN:
            self._add_problem("plugin", plugin_problem(cleaned.get("plugin") or ""))
        if kind == Kind.REST:
            self._add_problem(
                "cursor_path",
                cursor_path_problem(cleaned.get("pagination"), cleaned.get("cursor_path") or ""),
            )
            self._add_problem("extra_params", paging_param_problem(cleaned))
            method = cleaned.get("request_method")
            self._add_problem("pagination", post_paging_problem(method, cleaned.get("pagination")))
            if "after_first_page" not in self.errors:
                self._add_problem("after_first_page", after_first_page_problem(cleaned))
            if "request_body" not in self.errors and "after_first_page" not in self.errors:
                self._add_problem("request_body", request_body_problem(cleaned))
        reads_a_url = kind in READ_OVER_HTTP and field_is_used("source_auth", chosen)
        auth = cleaned.get("source_auth") if reads_a_url else Auth.NONE
        has_secret = bool(cleaned.get("source_token") or self.instance.source_token)
        if auth != Auth.NONE and not has_secret:
            self.add_error(
                "source_token", self.secret_missing("This authentication needs a secret")
            )
        basic = auth == Auth.BASIC
        if auth in HEADER_AUTH and (
            problem := _header_problem(cleaned.get("source_token") or "", basic=basic)
        ):
            self.add_error("source_token", problem)
        if basic and (problem := _header_problem(cleaned.get("auth_username") or "", basic=True)):
            self.add_error("auth_username", problem)
        if auth in (Auth.BASIC, Auth.OAUTH2_CLIENT_CREDENTIALS) and not cleaned.get(
            "auth_username"
        ):
            self.add_error("auth_username", "Give the user name or client id.")
        if auth in (Auth.API_KEY_HEADER, Auth.API_KEY_QUERY) and not cleaned.get("auth_key_name"):
            self.add_error("auth_key_name", "Name the header or query parameter for the key.")
        if "source_url" not in self.errors:
            self._add_problem(
                "source_url", url_credentials_problem(cleaned.get("source_url") or "", auth)
            )
        if auth == Auth.OAUTH2_CLIENT_CREDENTIALS and not cleaned.get("oauth_token_url"):
            self.add_error("oauth_token_url", "Give the OAuth2 token endpoint.")
        for name in ("extra_headers", "extra_params", "plugin_options"):
            value = cleaned.get(name)
            if value not in (None, "") and not isinstance(value, dict):
                self.add_error(name, 'Give a JSON object, e.g. {"name": "value"}.')
        self._add_problem("ca_bundle", ca_bundle_problem(cleaned.get("ca_bundle") or ""))
        self._refuse_a_shared_import_source(cleaned)
        self._refuse_changes_while_importing()
        return cleaned

    def clean_request_timeout(self):
        seconds = self.cleaned_data.get("request_timeout")
        if seconds is not None and seconds <= 0:
            raise forms.ValidationError(
                "Give a number of seconds above 0, or leave it empty for HTTP_TIMEOUT."
            )
        longest = limits.longest_request_timeout()
        if seconds is not None and seconds > longest:
            raise forms.ValidationError(
                f"At most {longest:g} s: a page may take twice the request timeout, and a "
                f"chunk task must end within Q_TASK_TIMEOUT ({settings.Q_TASK_TIMEOUT} s), "
                "or the worker is stopped mid-page. Raise Q_TASK_TIMEOUT to allow more."
            )
        return seconds

    def _refuse_changes_while_importing(self) -> None:
        """A running import reads these settings page after page (services/editing.py)."""
        changed = [name for name in self.changed_data if name in FIXED_WHILE_IMPORTING]
        running = running_import(self.instance) if changed else None
        if running is None:
            return
        for name in changed:
            if not self.has_error(name):
                label = self.fields[name].label or name
                self.add_error(name, busy_text(self.instance, running, f"a new {label.lower()}"))

    def _refuse_a_shared_import_source(self, cleaned: dict) -> None:
        """Assets keeps one mapping and one running import per import source: two sources
        sharing one would push their mappings over each other and refuse each other's
        imports ("another import is running")."""
        where = {name: cleaned.get(name) for name in ASSETS_PLACE}
        if not all(where.values()):
            return
        base = where.pop("assets_base_url").rstrip("/")
        other = (
            ImportSource.objects.filter(assets_base_url__in=[base, f"{base}/"], **where)
            .exclude(pk=self.instance.pk)
            .first()
        )
        if other is not None:
            self.add_error(
                "import_source_id",
                f"The source '{other.name}' imports into this Assets import source already. "
                "Assets keeps one mapping and runs one import at a time per import source: "
                "create another external import source in Assets (Settings → Import) and give "
                "its id here.",
            )

    def _add_problem(self, field: str, problem: str) -> None:
        """A rule the source readers apply too (importer/sources/rules.py), shown at its field."""
        if problem:
            self.add_error(field, problem[0].upper() + problem[1:] + ".")

    def save(self, commit=True):
        source = super().save(commit=False)
        keep_stored_secrets(source, self.cleaned_data, SECRET_FIELDS)
        # Another mapping, or another import source in Assets: not pushed there yet.
        if {"mapping", *ASSETS_PLACE} & set(self.changed_data):
            source.mapping_pushed_at = None
        if commit:
            source.save()
        return source


def _with_line(document, problem) -> str:
    line = line_of(document, problem.path)
    return f"{problem.path} (line {line}): {problem.message}" if line else str(problem)


# The kinds of authentication whose secret travels in a request header.
HEADER_AUTH = (
    ImportSource.AuthKind.BEARER,
    ImportSource.AuthKind.BASIC,
    ImportSource.AuthKind.API_KEY_HEADER,
)
PLACEHOLDER = "Holds '…', as a placeholder does: paste the secret itself."
HEADER_CHARACTERS = (
    "Holds a character an HTTP header cannot carry (a letter beyond Latin-1): only Basic "
    "authentication's user name and password may hold any letter."
)


def _header_problem(value: str, *, basic: bool = False) -> str:
    """Why the value cannot be sent in a header: HTTP writes headers in Latin-1, and only Basic
    credentials have a rule for other letters (UTF-8, RFC 7617); else every request would fail
    before it left, with an error that names no setting. A '…' is an example's placeholder."""
    if "…" in value:
        return PLACEHOLDER
    if basic:
        return ""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return HEADER_CHARACTERS
    return ""


def _requestable(url: str | None) -> str | None:
    """A URL whose port can be read: Django's URL check lets any five digits pass."""
    try:
        port = urlsplit(url or "").port
    except ValueError:
        port = 0
    if port == 0:
        raise forms.ValidationError(
            "The host or port cannot be read: a port is a number from 1 to 65535 (an IPv6 "
            "address goes in brackets, e.g. https://[2001:db8::1]:8443/)."
        )
    return url
