"""The checks a source's settings get together, beyond each field's own.

A setting may be right alone and wrong with the others (POST with next-link paging, a
secret a header cannot carry, a second source on one Assets import source): these checks say
so at the field to change. A setting the chosen kind does not use
is hidden, and nothing is held against it. The rules the source readers apply too live in
importer/sources/rules.py; this module shows them on the form.
"""

from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from importer.forms.source_fields import CHOOSERS, READ_OVER_HTTP, UPLOADED, field_is_used
from importer.mapping import line_of, split_newer_rules, validate_document
from importer.models import ImportSource
from importer.redaction import userinfo_of
from importer.services.editing import ASSETS_PLACE, FIXED_WHILE_IMPORTING, busy_text, running_import
from importer.sources import limits
from importer.sources.rules import (
    after_first_page_problem,
    ca_bundle_problem,
    csv_delimiter_problem,
    csv_fieldnames_problem,
    cursor_path_problem,
    encoding_problem,
    paging_param_problem,
    plugin_problem,
    post_paging_problem,
    request_body_problem,
    total_path_problem,
    url_credentials_problem,
)


class SourceChecks:
    """Mixed into ImportSourceForm (a WriteOnlySecretsForm of ImportSource); the URLs it
    checks come unmasked from MaskedSourceSettings."""

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
            self._add_problem("total_path", total_path_problem(cleaned.get("total_path") or ""))
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
