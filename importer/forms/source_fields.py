"""Which settings a source of each kind, paging and authentication uses.

The admin shows only the rows a source uses (static/importer/form_conditions.js), and the
form's checks hold nothing against a hidden one: both read FIELD_CONDITIONS here, so what is
shown and what is checked cannot part.
"""

from importer.models import ImportSource
from importer.sources.rules import AFTER_FIRST_PAGINATIONS

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
