"""Rules on a source's settings, applied by the admin form and, where a stored source may
break them, by the source readers too.

Each returns what is wrong ("" when nothing is), worded to read both as a form error and after
"source 'NAME' is misconfigured: ".
"""

from __future__ import annotations

import codecs
import re
import ssl

from django.conf import settings

from importer.json_codec import kind_of
from importer.redaction.masks import userinfo_of
from importer.redaction.names import is_secret_name
from importer.sources.request_body import body_problem
from importer.sources.totals import header_named

PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
# One certificate of a bundle, from its BEGIN line to its END line (or, cut short, to the next
# BEGIN or the end of the text).
_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----.*?"
    r"(?:-----END CERTIFICATE-----|(?=-----BEGIN CERTIFICATE-----)|\Z)",
    re.DOTALL,
)
PAGINATIONS_WITH_CURSOR_PATH = ("cursor", "next_url", "keyset")
# The paging a source read with POST may have: its values go into the request body, while
# a next link or Link header is a URL to GET.
POST_PAGINATIONS = ("offset", "page", "cursor", "keyset", "none")
# What keyset paging sends, as `paging_params` names it: the value of the last record's
# field, written into a POST's body as the JSON value it is (Elasticsearch's search_after
# takes the hit's `sort` array).
KEYSET_VALUE = "the last record's value"
# The paging that may send values with every request after the first (`after_first_page`).
AFTER_FIRST_PAGINATIONS = ("cursor",)
_AFTER_FIRST_EXAMPLE = '{"variables.pagination.page": "NEXT"}'


def ca_bundle_problem(pem: str) -> str:
    """What is wrong with the trusted CA certificates pasted in: read as TLS would read them,
    so a certificate cut short or a placeholder fails where it is set, not at every request."""
    if not pem:
        return ""
    if PEM_CERTIFICATE not in pem:
        return f"the trusted CA certificates are not PEM certificates ({PEM_CERTIFICATE})"
    # The text around the certificates is no part of them, and TLS skips it: a bundle's
    # comments name their issuers in any language ("# Issuer: CN=… Főtanúsítvány").
    certificates = "\n".join(_CERTIFICATE.findall(pem))
    if not certificates.isascii():
        return (
            "the trusted CA certificates hold a character beyond ASCII, which no PEM "
            "certificate does (a '…' left from an example?): paste each one whole"
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=certificates)
    except (ssl.SSLError, ValueError):
        return (
            "the trusted CA certificates do not read as PEM certificates (one is cut short "
            f"or altered): paste each one whole, from {PEM_CERTIFICATE} to its END "
            "CERTIFICATE line"
        )
    return ""


# The authentications sent in the Authorization header, which a URL's user:password@ takes
# (requests sends it as Basic auth) or, for Basic itself, leaves unsent.
URL_CREDENTIALS_REPLACE = ("bearer", "oauth2_client_credentials", "basic")


def url_credentials_problem(url: str, auth: str) -> str:
    """A user and password in the URL are sent as Basic auth, in place of the bearer token
    the source's authentication sends: its every request would be refused, and the message
    would blame a token that is right."""
    if auth not in URL_CREDENTIALS_REPLACE or not userinfo_of(url or ""):
        return ""
    if auth == "basic":
        return (
            "the URL holds a user name and password (user:password@) besides the Basic auth's "
            "own: remove them from the URL; the user name and secret fields are what is sent"
        )
    return (
        "the URL holds a user name and password (user:password@), which would be sent in "
        "place of the authentication chosen: remove them from the URL, or choose Basic auth "
        "and give them there"
    )


def cursor_path_problem(pagination: str, cursor_path: str) -> str:
    if pagination not in PAGINATIONS_WITH_CURSOR_PATH or cursor_path:
        return ""
    if pagination == "keyset":
        return (
            "keyset paging needs the dotted path of the field, inside each record, whose value "
            "the next page is asked for after (e.g. 'id'; 'sort' for Elasticsearch's hits)"
        )
    return f"{pagination} paging needs the dotted path of the next cursor or URL in the answer"


# A response header's name, as HTTP allows it (RFC 9110's token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def total_path_problem(total_path: str) -> str:
    """What is wrong with a total path that names a header; "" when nothing is."""
    name = header_named(total_path)
    if name is None:
        return ""
    example = "e.g. 'header:X-Total-Count'"
    if not name:
        return f"name the header that tells the total after 'header:', {example}"
    if not _HEADER_NAME.fullmatch(name):
        return f"'{name[:50]}' is not a header name (letters, digits and - , no spaces), {example}"
    # A header whose name says it carries a credential (Set-Cookie, Keystone's
    # X-Subject-Token, Swift's X-Auth-Token) tells no total, and its value would be quoted
    # in the error that says it is not a number.
    if is_secret_name(name):
        return f"the {name} header carries credentials, not a total: name the header that does"
    return ""


def paging_params(cleaned: dict) -> dict[str, str]:
    """The query parameters the paging itself sends, by what each carries."""
    pagination = cleaned.get("pagination") or ""
    if pagination == "none":
        return {}
    sent = {"the page size": cleaned.get("limit_param") or ""}
    if pagination == "offset":
        sent["the offset"] = cleaned.get("offset_param") or ""
    if pagination == "page":
        sent["the page number"] = cleaned.get("page_param") or ""
    if pagination == "cursor":
        sent["the cursor"] = cleaned.get("cursor_param") or ""
    if pagination == "keyset":
        sent[KEYSET_VALUE] = cleaned.get("cursor_param") or ""
    return {what: name for what, name in sent.items() if name}


def paging_param_problem(cleaned: dict) -> str:
    """An extra parameter under a name the paging sends itself: the paging's value would
    replace it on every request (a `limit` of 200 asked as extra, 100 sent), so say which
    setting it belongs in instead of quietly overriding it. (With POST the paging writes
    into the body, and leaves the query alone.)"""
    extra = cleaned.get("extra_params")
    if not isinstance(extra, dict) or cleaned.get("request_method") == "POST":
        return ""
    for what, name in paging_params(cleaned).items():
        if name in extra:
            instead = (
                f"set Page size to {extra[name]} instead"
                if what == "the page size"
                else "the paging moves it page by page"
            )
            return (
                f"'{name}' is the query parameter the paging sends {what} in, which would "
                f"replace this value on every request: leave it out here ({instead})"
            )
    return ""


def post_paging_problem(method: str, pagination: str) -> str:
    """A POST source's paging values go into its body; a next link is a URL to GET."""
    if method == "POST" and pagination not in POST_PAGINATIONS:
        return (
            "a source read with POST is paged by offset, page number, cursor or keyset "
            "(written into its request body), or not paged: choose one of those, or GET, as "
            "next links and Link headers are read with GET"
        )
    return ""


def request_body_problem(cleaned: dict) -> str:
    """A POST source's body must be a JSON object with room for the paging's values at the
    dotted paths its parameters name (`variables.after` under a `variables` that is text
    has none)."""
    if cleaned.get("request_method") != "POST":
        return ""
    paths = paging_params(cleaned)
    values = cleaned.get("after_first_page")
    if cleaned.get("pagination") in AFTER_FIRST_PAGINATIONS and isinstance(values, dict):
        paths.update({f"'{path}' (sent after the first page)": path for path in values})
    return body_problem(cleaned.get("request_body"), paths)


def after_first_page_problem(cleaned: dict) -> str:
    """The values sent with every request after the first (Lansweeper's `"page": "NEXT"`):
    a JSON object of dotted path (GET: query parameter) -> value, none where the paging
    writes its own values, as one would overwrite the other page after page."""
    values = cleaned.get("after_first_page")
    if cleaned.get("pagination") not in AFTER_FIRST_PAGINATIONS or values in (None, {}):
        return ""
    if not isinstance(values, dict):
        return (
            "the values after the first page must be a JSON object of dotted path -> value "
            f"(e.g. {_AFTER_FIRST_EXAMPLE}), not {kind_of(values)}"
        )
    posts = cleaned.get("request_method") == "POST"
    for path, value in values.items():
        if not _keys_of(path):
            return "a path among the values after the first page is empty"
        if not posts and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            return (
                f"'{path}' after the first page is a query parameter, whose value is a string "
                f"or a number, not {kind_of(value)} (with POST it goes into the body as written)"
            )
        for what, own in paging_params(cleaned).items():
            if _overlaps(path, own) if posts else path == own:
                where = (
                    f"is where the paging sends {what} ('{own}')"
                    if _keys_of(path) == _keys_of(own)
                    else f"overlaps '{own}', where the paging sends {what}"
                )
                return (
                    f"'{path}' {where}: leave it out of the values after the first page, "
                    f"which name only what else changes after it (e.g. {_AFTER_FIRST_EXAMPLE})"
                )
    return ""


def _keys_of(path: str) -> list[str]:
    return [key for key in str(path).split(".") if key]


def _overlaps(path: str, other: str) -> bool:
    """Whether one dotted path is the other or lies within it."""
    keys, others = _keys_of(path), _keys_of(other)
    shorter = min(len(keys), len(others))
    return keys[:shorter] == others[:shorter]


def listed_plugins() -> dict[str, str]:
    return getattr(settings, "IMPORT_SOURCE_PLUGINS", {}) or {}


def plugin_problem(name: str) -> str:
    """A plug-in is a name listed in IMPORT_SOURCE_PLUGINS, or one of the listed dotted paths."""
    plugins = listed_plugins()
    if name and (name in plugins or name in plugins.values()):
        return ""
    listed = ", ".join(sorted(plugins)) or "none"
    if not name:
        return f"choose a plug-in: one listed in the IMPORT_SOURCE_PLUGINS setting ({listed})"
    return f"plug-in '{name}' is not listed in the IMPORT_SOURCE_PLUGINS setting (listed: {listed})"


# What staff type for a tab in a text box (a tab itself is kept too).
DELIMITER_ALIASES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


def csv_delimiter(typed: str) -> str:
    """The delimiter a CSV source's setting names."""
    return DELIMITER_ALIASES.get(typed, typed)


def csv_delimiter_problem(typed: str) -> str:
    if len(csv_delimiter(typed)) != 1:
        return f"the CSV delimiter must be one character, or tab (not {typed!r})"
    return ""


def csv_fieldnames_problem(has_header: bool, typed: str) -> str:
    """The names given to a file without header: each column's value goes under its name, so
    a name given twice would keep only its last column's value."""
    if has_header:
        return ""
    names = [name.strip() for name in (typed or "").split(",")]
    if not any(names):
        return "a CSV file without header needs field names"
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        return (
            f"the CSV field names name {', '.join(repr(name) for name in repeated)} twice: "
            "each column needs a name of its own (leave a name empty to leave its column out)"
        )
    return ""


def encoding_problem(name: str) -> str:
    """Files are read in chunks by byte offset: their encoding must be known, and write a line
    break as the single byte 0x0A (UTF-16 and UTF-32 do not)."""
    try:
        codec = codecs.lookup(name or "utf-8")
    except LookupError:
        codec = None
    if codec is None or not getattr(codec, "_is_text_encoding", True):  # base64, zip, ...
        return f"unknown file encoding '{name}' (e.g. utf-8, cp1252, latin-1)"
    if codec.name in ("utf-8", "utf-8-sig"):  # a byte-order mark is skipped, where there is one
        return ""
    try:
        line_break = "\n".encode(codec.name)
    except UnicodeError:  # "undefined"
        line_break = b""
    if line_break != b"\n":
        return f"files in {name} cannot be read in chunks: save the file as UTF-8"
    return ""
