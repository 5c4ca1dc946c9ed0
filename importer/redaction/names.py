"""Which names and values carry a credential: the names of headers, parameters and
options that say so, those a source's operator declares secret, and values shaped like keys.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

# The words of a header, parameter or option whose name says it carries a credential,
# searched for anywhere in the name (`x-auth-token`, `oauth_token`, `JSESSIONID`), but not
# where they begin another word: an author or an authority (`authorName`), a secretary, a
# tokenizer. "authorization", a tokenization key and a tokenized card number are credentials.
_SECRET_WORDS = (
    r"auth(?!or(?!i[sz]))|token(?!i[sz]er)|secret(?!ar(?:y|ies))|passw|passphrase|pwd"
    r"|credential|cookie|session|signature"
    r"|api[-_]?key|access[-_]?key|private[-_]?key|subscription[-_]?key|client[-_]?key"
)
_CREDENTIAL_WORD = re.compile(rf"(?i){_SECRET_WORDS}")
# Whole names: a key of a vendor's own (DD-APPLICATION-KEY, X-Functions-Key), Azure's
# function code and SAS signature, a JSON Web Token.
_SECRET_WHOLE_NAME = re.compile(r"(?i)^(?:x[-_])?key$|[-_]key$|^(?:code|sig|sas|jwt|hmac)$")
# A name's words: `authenticationMethod`, `X-API-Key`, `sessions_per_day`.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A name whose last word is one of these names something about a credential, not the
# credential: how it is sent or checked (`authenticationMethod`, `token_type`), how many
# there are or how long they last (`sessionCount`, `session_timeout`), its rules
# (`passwordPolicy`, `signature_algorithm`). Any other last word (`session_id`, `authData`,
# `tokenName`) keeps the name a credential's.
_ABOUT_A_CREDENTIAL = frozenset(
    {
        "algorithm",
        "count",
        "counts",
        "duration",
        "enabled",
        "expiration",
        "expires",
        "expiry",
        "format",
        "kind",
        "length",
        "lifetime",
        "limit",
        "method",
        "methods",
        "mode",
        "policy",
        "provider",
        "required",
        "scheme",
        "status",
        "timeout",
        "total",
        "ttl",
        "type",
        "types",
        "version",
    }
)
# Request headers that carry no credential. Any other header a source is sent may: a vendor
# names its keys as it likes.
PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-version",
        "api-version",
        "cache-control",
        "content-type",
        "if-modified-since",
        "if-none-match",
        "pragma",
        "prefer",
        "user-agent",
        "x-api-version",
        "x-github-api-version",
        "x-requested-with",
    }
)
# Header names that carry a credential without a hyphen; other header-like names need one, so
# "access token: the endpoint ..." in prose is left alone.
_PLAIN_HEADERS = {"authorization", "cookie", "apikey"}


# The JSON settings whose entries the source's secret parameters name too: the extra
# parameters, and a POST's body (a vendor's key in a GraphQL query's variables).
DECLARABLE_JSON_FIELDS = ("extra_params", "request_body", "after_first_page")
# The JSON settings keyed by dotted paths into the body (`variables.apiKey`): an entry is a
# credential when any name on its path is one.
PATH_KEYED_JSON_FIELDS = ("after_first_page",)


def is_secret_name(name: str, also: Iterable[str] = ()) -> bool:
    """Whether a header, query parameter or option of this name carries a credential (`also`:
    lower-case names a source declares secret, `declared_secret_params`)."""
    name = str(name)
    return _says_it_carries_a_credential(name) or name.lower() in also


# Every log line and message is searched for names: the same few, again and again.
@functools.lru_cache(maxsize=4096)
def _says_it_carries_a_credential(name: str) -> bool:
    return names_a_credential(name) or bool(_SECRET_WHOLE_NAME.search(name))


@functools.lru_cache(maxsize=4096)
def names_a_credential(name: str) -> bool:
    """Whether a name holds a word that says it carries a credential (`_SECRET_WORDS`), and
    is not about one: a method, a type, a count, a lifetime (`_ABOUT_A_CREDENTIAL`), or a
    rate (`sessionsPerDay`)."""
    if not _CREDENTIAL_WORD.search(name):
        return False
    words = [word.lower() for word in _WORD.findall(name)]
    if words[-1] in _ABOUT_A_CREDENTIAL:
        return False
    if "per" in words[1:]:  # a rate when what comes before "per" is a plural: "sessions"
        at = words.index("per", 1)
        before, after = "".join(words[:at]), "".join(words[at + 1 :])
        if words[at - 1].endswith("s") and not _CREDENTIAL_WORD.search(after):
            return not _CREDENTIAL_WORD.search(before)
    return True


def secret_paths(name: str, value: Any, also: Iterable[str] = ()) -> list[str]:
    """The keys of a setting keyed by dotted paths (`PATH_KEYED_JSON_FIELDS`) that name a
    credential somewhere on their path (`variables.key`, `auth.user`)."""
    if name not in PATH_KEYED_JSON_FIELDS or not isinstance(value, dict):
        return []
    return [
        str(path)
        for path in value
        if any(is_secret_name(part, also) for part in str(path).split(".") if part)
    ]


def declared_secret_params(source: Any) -> frozenset[str]:
    """The query parameters a source's operator named secret, lower-case: a vendor's key
    under a name that does not say so (OpenWeather's `appid`). Only the operator can tell
    such a key from a filter; once named, it is treated like a credential-named one."""
    return secret_param_names(getattr(source, "secret_params", ""))


def secret_param_names(text: str | None) -> frozenset[str]:
    """The names in a `secret_params` setting ("appid, tenant"), lower-case."""
    return frozenset(name.strip().lower() for name in (text or "").split(",") if name.strip())


# The characters keys and tokens are written with (base64, hex, URL-safe), and no others.
KEY_TEXT = re.compile(r"[A-Za-z0-9_\-.~+/]+={0,2}")
# An id (a tenant's, a site's): a filter, not a key.
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def looks_like_a_key(value: str) -> bool:
    """Long, or mixing letters with digits: what keys and tokens look like, and words do not."""
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    return len(value) >= 16 or (len(value) >= 8 and letters and digits)


def key_shaped(value: str) -> bool:
    """Written in key characters, no UUID, and `looks_like_a_key`: a value that may be a key
    under a name that does not say so (a date, a list of fields or a word is none)."""
    return bool(
        KEY_TEXT.fullmatch(value) and not UUID_TEXT.fullmatch(value) and looks_like_a_key(value)
    )


# A credential-named name written bare, then its value quoted: a GraphQL argument written into
# a query (`assets(apiKey: "...")`), a keyword argument or a setting (`password="..."`,
# `token = '...'`), also inside a JSON string (`apiKey: \\"...\\"`). A quoted name is
# the JSON pair's (`redact`'s own pattern); a name right after a dot or a dash is part of
# another. Group 1: the name; group 2: the opening quote, escaped or not.
BARE_NAME_QUOTED_VALUE = re.compile(r"""(?<![\w.\-"'\\])([A-Za-z_][\w.-]*)\s*[:=]\s*(\\?["'])""")


def quoted_value_end(text: str, opening: re.Match) -> int:
    """Where the value quoted after `opening` (a BARE_NAME_QUOTED_VALUE match) ends: at its
    closing quote, or at the end of its line when it has none (a text cut short).

    Only the text up to the closing quote is searched for a line's end: every opening holds
    its quote, so the searches of a long text with many such values stay linear."""
    start, quote = opening.end(), opening.group(2)
    closing = text.find(quote, start)
    stop = len(text) if closing < 0 else closing
    line_end = _LINE_END.search(text, start, stop)
    return line_end.start() if line_end else stop


_LINE_END = re.compile(r"[\r\n]")


def inline_secret_values(text: str, also: Iterable[str] = ()) -> list[str]:
    """The values a text writes quoted after a credential-named name (`apiKey: "..."` in a
    GraphQL query kept in a request body): secrets that no JSON key names."""
    found = []
    for opening in BARE_NAME_QUOTED_VALUE.finditer(text):
        if is_secret_name(opening.group(1), also):
            value = text[opening.end() : quoted_value_end(text, opening)]
            if value and quotes_a_secret(opening.group(1), value, also):
                found.append(value)
    return found


def quotes_a_secret(name: str, value: str, also: Iterable[str] = ()) -> bool:
    """Whether `value`, written quoted after the bare `name`, is a secret: always under a
    name that says it holds a credential (`apiKey`, `password`) or that the source declares
    secret; under one that only may (`key`, `code`, `sort_key`: a GraphQL filter's
    `key: "serial"`), when the value is `key_shaped`."""
    if names_a_credential(name) or name.lower() in also:
        return True
    return key_shaped(value)


def is_secret_header(name: str) -> bool:
    return ("-" in name or name.lower() in _PLAIN_HEADERS) and is_secret_name(name)
