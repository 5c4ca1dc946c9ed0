"""An import source: the Assets import source it feeds, the third-party source it reads, and
the mapping between them."""

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from importer.fields import EncryptedJSONField, EncryptedTextField, EncryptedURLField


def default_assets_base_url() -> str:
    return settings.ASSETS_API_BASE_URL


def new_webtrigger_token() -> str:
    """256 random bits, URL-safe: the secret in a source's webtrigger URL."""
    return secrets.token_urlsafe(32)


class ImportSource(models.Model):
    """One third-party system feeding one Assets import source."""

    # The settings that hold a secret, named once: forms keep them write-only, viewers see
    # them masked, and no text leaves the app with one (`redaction.secrets_of`).
    SECRET_FIELDS = ("assets_token", "source_token")
    # Settings that may hold one inside them: credentials in a URL, credential-named
    # headers, parameters and options. Shown masked; a masked value saved back keeps the
    # stored one.
    MASKED_URL_FIELDS = ("source_url", "oauth_token_url")
    MASKED_JSON_FIELDS = (
        "extra_headers",
        "extra_params",
        "plugin_options",
        "request_body",
        "after_first_page",
    )
    # Where the records come from, and what becomes of those that cannot be used.
    SOURCE_FIELDS = (
        "source_kind",
        "source_url",
        "request_method",
        "request_body",
        "source_file",
        "plugin",
        "plugin_options",
        "records_path",
        "missing_identity",
        "invalid_values",
    )
    # The settings that say which records each page holds, for a REST source and a file.
    PAGING_FIELDS = (
        "pagination",
        "page_size",
        "offset_param",
        "limit_param",
        "page_param",
        "first_page",
        "cursor_param",
        "cursor_path",
        "after_first_page",
        "total_path",
        "repeated_records",
    )
    FILE_FIELDS = (
        "csv_delimiter",
        "csv_quotechar",
        "csv_has_header",
        "csv_fieldnames",
        "file_encoding",
    )

    class Kind(models.TextChoices):
        REST = "rest", "REST / JSON API"
        CSV = "csv", "CSV file"
        JSON = "json", "JSON file"
        JSONL = "jsonl", "JSON Lines file"
        PLUGIN = "plugin", "Plug-in"

    class Pagination(models.TextChoices):
        OFFSET = "offset", "Offset and limit"
        PAGE = "page", "Page number"
        CURSOR = "cursor", "Cursor in the answer"
        KEYSET = "keyset", "After the last record (keyset)"
        NEXT_URL = "next_url", "Next URL in the answer"
        LINK_HEADER = "link_header", "Link header (RFC 5988)"
        NONE = "none", "No paging (one request)"

    class RequestMethod(models.TextChoices):
        GET = "GET", "GET (paging in the query)"
        POST = "POST", "POST with a JSON body (GraphQL, search APIs)"

    class AuthKind(models.TextChoices):
        NONE = "none", "None"
        BEARER = "bearer", "Bearer token"
        BASIC = "basic", "Basic (user name and password)"
        API_KEY_HEADER = "api_key_header", "API key in a header"
        API_KEY_QUERY = "api_key_query", "API key in a query parameter"
        OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth2 client credentials"

    class MissingIdentity(models.TextChoices):
        SKIP = "skip", "Skip the record and count it"
        FAIL = "fail", "Fail the import"

    class InvalidValues(models.TextChoices):
        SKIP = "skip", "Skip the record and count it"
        FAIL = "fail", "Fail the import"

    class RepeatedRecords(models.TextChoices):
        FAIL = "fail", "Fail the import (others may have been skipped)"
        SEND = "send", "Send it each time (the source lists some objects twice)"

    name = models.SlugField(
        max_length=100, unique=True, help_text="Short unique name, used on the command line."
    )
    enabled = models.BooleanField(default=True, help_text="A disabled source cannot be imported.")

    assets_base_url = models.URLField(
        "Assets API base URL",
        default=default_assets_base_url,
        help_text="https://api.atlassian.com for Atlassian Cloud.",
    )
    workspace_id = models.CharField(
        "Assets workspace id", max_length=100, help_text="The Assets workspace (a UUID)."
    )
    import_source_id = models.CharField(
        "Assets import source id",
        max_length=100,
        help_text="The id of the external import source created in Assets.",
    )
    assets_token = EncryptedTextField(
        "Assets token", help_text="The import source's API token, generated in Assets."
    )

    source_kind = models.CharField("kind", max_length=20, choices=Kind.choices, default=Kind.REST)
    source_url = EncryptedURLField(
        "source URL",
        max_length=2000,
        blank=True,
        help_text="The REST endpoint that lists the records, or the URL of a file.",
    )
    request_method = models.CharField(
        max_length=4,
        choices=RequestMethod.choices,
        default=RequestMethod.GET,
        db_default=RequestMethod.GET,  # for sources created by the release before it
        help_text="REST: POST sends the request body with each request, for GraphQL APIs and "
        "search APIs that take their query as JSON; the paging then writes its values into "
        "the body, at the dotted paths given as its parameters (Paging).",
    )
    request_body = EncryptedJSONField(
        null=True,
        blank=True,
        default=None,
        help_text='POST: the JSON object sent with each request, e.g. {"query": "query($first: '
        'Int, $after: String) { assets(first: $first, after: $after) { … } }", "variables": '
        '{"first": 100}}. A GraphQL query is one JSON string: its line breaks are written '
        "\\n. Credentials go in Source authentication or the extra headers (a "
        "credential-named entry here is kept secret too).",
    )
    source_file = models.FileField(
        "uploaded file",
        upload_to="source-files/",
        blank=True,
        help_text="A CSV, JSON or JSON Lines file, instead of a URL.",
    )
    plugin = models.CharField(
        max_length=200,
        blank=True,
        help_text="Plug-in sources: a name from the IMPORT_SOURCE_PLUGINS setting.",
    )
    plugin_options = EncryptedJSONField(
        default=dict, blank=True, help_text="Plug-in sources: options passed to the plug-in."
    )
    records_path = models.CharField(
        "records selector",
        max_length=200,
        blank=True,
        help_text="Dotted path to the list of records in each answer, e.g. 'data.items'. "
        "Empty when the answer itself is the list. End it with '?' ('items?') when the "
        "source leaves the list out of an answer with no records.",
    )
    pagination = models.CharField(
        max_length=20,
        choices=Pagination.choices,
        default=Pagination.OFFSET,
        help_text="Keyset: each page after the first is asked for with a field of the last "
        "record read (GitHub's since=<id>, Elasticsearch's search_after): the next-page path "
        "names that field in each record, the cursor parameter what it is sent as. The "
        "field must be unique to each record, as an id is, and the source must sort by it; "
        "the end is an empty page.",
    )
    page_size = models.PositiveIntegerField(
        default=100, help_text="Records per page (files: per chunk); one page becomes one chunk."
    )
    offset_param = models.CharField(
        max_length=50,
        default="offset",
        help_text="Offset paging: query parameter for the offset (POST: its dotted path in the "
        "body, e.g. 'from').",
    )
    limit_param = models.CharField(
        max_length=50,
        default="limit",
        blank=True,
        help_text="Query parameter for the page size (empty: not sent). POST: its dotted path "
        "in the body, e.g. 'size' or 'variables.first'.",
    )
    page_param = models.CharField(
        max_length=50,
        default="page",
        help_text="Page-number paging: query parameter for the page number (POST: its dotted "
        "path in the body, e.g. 'variables.page').",
    )
    first_page = models.PositiveIntegerField(
        default=1,
        help_text="Page-number paging: the number of the first page (0 or 1). Many APIs "
        "start at 0 (Spring Data's do): read from 1, their first page would be left out. "
        "The preview shows the first page read.",
    )
    cursor_param = models.CharField(
        max_length=50,
        default="cursor",
        help_text="Cursor paging: query parameter for the cursor. Keyset paging: the parameter "
        "the last record's value is sent as, e.g. 'since'. POST: its dotted path in the body, "
        "e.g. 'variables.after' or 'search_after' (the first request sends the body's own "
        "value there).",
    )
    cursor_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Cursor paging: dotted path to the next cursor in the answer, e.g. "
        "'meta.next_cursor'. Next-URL paging: dotted path to the next URL, e.g. 'links.next'. "
        "Keyset paging: dotted path, inside each record, to the field that names it, unique to "
        "each record, that the source sorts by, e.g. 'id' (Elasticsearch: 'sort', each hit's "
        "sort values, a field unique to each hit last in the sort).",
    )
    after_first_page = EncryptedJSONField(
        "values after the first page",
        null=True,
        blank=True,
        default=None,
        help_text="Cursor paging: values sent with every request but the first, for an API "
        "that must be told it is asked for a later page besides being given the cursor, as "
        "a JSON object of dotted path -> value. Lansweeper's: the body's variables hold "
        '"pagination": {"page": "FIRST"}, this {"variables.pagination.page": "NEXT"}, and '
        "the cursor parameter is 'variables.pagination.cursor'. POST: written into the "
        "body; GET: query parameters (a string or a number each), replacing an extra "
        "parameter of the same name. Not the cursor's or the page size's own path.",
    )
    total_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Optional dotted path to the total number of records: it shows the "
        "import's progress, and the import fails if the records received do not add up to it.",
    )
    source_auth = models.CharField(
        "source authentication", max_length=40, choices=AuthKind.choices, default=AuthKind.NONE
    )
    auth_username = models.CharField(
        "user name / client id",
        max_length=200,
        blank=True,
        help_text="Basic: the user name. OAuth2: the client id.",
    )
    auth_key_name = models.CharField(
        "API key name",
        max_length=100,
        blank=True,
        default="X-API-Key",
        help_text="API key: the header or query parameter that carries it.",
    )
    oauth_token_url = EncryptedURLField(
        "OAuth2 token URL", max_length=500, blank=True, help_text="OAuth2: the token endpoint."
    )
    oauth_scope = models.CharField(
        "OAuth2 scope", max_length=500, blank=True, help_text="OAuth2: scopes, space-separated."
    )
    source_token = EncryptedTextField(
        "source secret",
        blank=True,
        help_text="Bearer token, password, API key or OAuth2 client secret.",
    )
    extra_headers = EncryptedJSONField(
        default=dict, blank=True, help_text='Extra request headers, e.g. {"Accept-Language": "en"}.'
    )
    extra_params = EncryptedJSONField(
        default=dict, blank=True, help_text='Extra query parameters, e.g. {"status": "active"}.'
    )
    secret_params = models.CharField(
        "secret parameters",
        max_length=500,
        blank=True,
        help_text="Query parameters of the source URL or the extra parameters, or entries of a "
        "POST's request body, that carry a key though their name does not say so (e.g. appid), "
        "comma-separated. Like a parameter "
        "named as a credential (api_key, token, ...), they are shown masked, never stored "
        "with a page's cursor, and not sent on a redirect to another host.",
    )
    request_timeout = models.FloatField(
        null=True, blank=True, help_text="Seconds per request (empty: the HTTP_TIMEOUT setting)."
    )
    ca_bundle = models.TextField(
        "trusted CA certificates",
        blank=True,
        help_text="PEM certificates to trust for this source (a private CA). TLS verification "
        "stays on.",
    )
    csv_delimiter = models.CharField(max_length=4, default=",", help_text="CSV: field delimiter.")
    csv_quotechar = models.CharField(max_length=1, default='"', help_text="CSV: quote character.")
    csv_has_header = models.BooleanField(
        default=True, help_text="CSV: the first row names the fields."
    )
    csv_fieldnames = models.CharField(
        max_length=2000, blank=True, help_text="CSV without header: comma-separated field names."
    )
    file_encoding = models.CharField(
        max_length=40, default="utf-8", help_text="Files: text encoding (a BOM is ignored)."
    )
    missing_identity = models.CharField(
        "record without identity",
        max_length=10,
        choices=MissingIdentity.choices,
        default=MissingIdentity.SKIP,
        help_text="What to do with a record that has no value for an externalIdPart attribute.",
    )
    invalid_values = models.CharField(
        "record with a value Assets refuses",
        max_length=10,
        choices=InvalidValues.choices,
        default=InvalidValues.SKIP,
        help_text="What to do with a record holding a value its attribute rules out: not of "
        "its type, a status or select outside typeValues, more values than "
        "maximumCardinality or fewer than minimumCardinality.",
    )
    repeated_records = models.CharField(
        "record on two pages",
        max_length=10,
        choices=RepeatedRecords.choices,
        default=RepeatedRecords.FAIL,
        help_text="Offset and page-number paging: what a record found on two pages "
        "means. Pages are read by position; when the source's order moves while it is read "
        "(no sort, or a sort on a field that changes), a record shifts onto a second page "
        "and another is never read. Fail the import then (the error names the pages), unless "
        "the source does list some objects more than once.",
    )
    max_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Limit on requests to the source (empty: no limit)."
    )
    max_chunks_in_flight = models.PositiveIntegerField(
        default=4,
        help_text="How many pages of this source are read at once: each is a lane that "
        "claims its next page while the one before is sent to Assets, so up to twice as many "
        "chunks show as running.",
    )
    record_drop_limit = models.PositiveSmallIntegerField(
        "largest drop in records",
        null=True,
        blank=True,
        default=50,
        db_default=50,  # for sources created by the release before it, during an upgrade
        validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="Percent. An import that brings this much fewer records than the source's "
        "last successful import fails before Assets writes anything: a source that answers "
        "part of its data (an outage, a cap on its pages, a filter changed) would have Assets "
        "take the rest for missing. A drop that is real goes through with 'Start import, "
        "accepting fewer records'. Empty: no limit.",
    )
    next_request_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Rate limit: the next free slot."
    )

    mapping = models.JSONField(
        null=True,
        blank=True,
        help_text="The schema-and-mapping document sent to Assets.",
    )
    mapping_pushed_at = models.DateTimeField(
        null=True, blank=True, help_text="When Assets last accepted the mapping."
    )
    # Assets answers with the mapping as it stores it (ids added, defaults filled, empty fields
    # left out), never as pushed: what it answered after the push tells a change made in
    # Assets since from its own rewriting (`push_over_changes_in_assets`).
    mapping_digest_in_assets = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="SHA-256 of the mapping as Assets answered it after its last push or pull.",
    )
    webtrigger_token = EncryptedTextField(default=new_webtrigger_token)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("start_import", "Can start an import")]

    def __str__(self) -> str:
        return self.name
