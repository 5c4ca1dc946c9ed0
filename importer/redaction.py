"""The one place that removes secrets from text leaving the app.

Every message that reaches a person or another system (chunk and execution errors, Assets'
`failureReason`, admin messages, log lines, exports) goes through `redact`. It removes:

* the secrets we know: a source's tokens and keys (`secrets_of`), and Basic credentials built
  from them, however a server escaped them when it echoed them (percent-encoded in either
  case, JSON's escapes as PHP or .NET write them, HTML entities);
* the shapes secrets take in text we did not write: `Basic <base64>` and `Bearer <token>`
  values, the values of credential-bearing headers and parameters (`Authorization: ...`,
  `"X-API-Key": "..."`, `api_key=...`), credentials in a URL (`https://user:pass@host`) and
  the token in a webtrigger path (`/webtrigger/7/<token>/`).

Structured settings (headers, parameters, URLs) are masked with `MASK`, which `restore_masked`
and `restore_url` turn back into the stored value when a form or a file is saved, so a
masked value never overwrites a secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
# Shorter values are not replaced wherever they occur: they would blank out ordinary words.
MIN_SECRET_LENGTH = 4
# A server that cuts a key it echoes ("Unknown key sk_live_4f9a2b7c1d...") still gives most
# of it away: once a known secret's first characters are random-looking (at least this many,
# with letters and digits three of each, or any of a long secret), they go with whatever key
# characters follow them.
SECRET_PREFIX_LENGTH = 12
_KEY_CHARACTERS = r"[\w.~+=%-]*"

# A header, parameter or option whose name says it carries a credential.
_SECRET_WORDS = (
    r"auth(?!ors?(?:\b|_))|token|secret|passw|pwd|credential|cookie|session|signature"
    r"|api[-_]?key|access[-_]?key|private[-_]?key|subscription[-_]?key|client[-_]?key"
)
# Whole names: a key of a vendor's own (DD-APPLICATION-KEY, X-Functions-Key), Azure's
# function code and SAS signature, a JSON Web Token.
_SECRET_WHOLE_NAMES = r"^(?:x[-_])?key$|[-_]key$|^(?:code|sig|sas|jwt|hmac)$|passphrase"
_SECRET_NAME = re.compile(rf"(?i)(?:{_SECRET_WORDS})|{_SECRET_WHOLE_NAMES}")
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

# "X-API-Key": "abc" (JSON, also JSON inside a JSON string) and 'x-api-key': 'abc' (Python).
_QUOTED_PAIR = re.compile(r"""(\\?(["'])([\w.-]+)\\?\2\s*[:=]\s*\\?(["']))([^"'\r\n]*?)(\\?\4)""")
# Authorization: Basic abc / X-Api-Key: abc (header lines) and api_key=abc (queries, forms):
# a name, then its value. Only names are searched for, so a name inside the value of another
# ("error: X-Api-Key: abc") is still found; names and values are runs without a way back, so a
# long text costs linear time.
_HEADER_NAME = re.compile(r"(?i)(?<![\w-])([a-z0-9_]+(?:-[a-z0-9_]+)*)\s*:[ \t]*(?![\s\"'])")
_HEADER_VALUE = re.compile(
    r"(?i)(?:(?:basic|bearer|digest|token|negotiate|ntlm)[ \t]+)?[^\s\"',;&}\]]+"
)
_PARAM_NAME = re.compile(r"(?<![\w.-])([\w.-]+)=")
_PARAM_VALUE = re.compile(r"[^&\s\"'#;,]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/_-]{4,}={0,2})")
# A scheme is short: bounding it keeps a long run of letters and dashes linear to scan.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^/?#\s@\"'<>]+@")
# The webtrigger's path as a request line may spell it: any character percent-encoded
# (Django decodes the path before routing it, so `/%77ebtrigger/%32/<token>/` is served too).
_ESCAPED_WEBTRIGGER = "".join(f"(?:{char}|%{ord(char):x})" for char in "webtrigger")
_WEBTRIGGER_PATH = re.compile(
    rf"(?i)(/{_ESCAPED_WEBTRIGGER}(?:/|%2f)(?:\d|%3\d)+(?:/|%2f)(?:\s|%20|%09|\+)*)"
    r"(?!HTTP/\d)[^/\s?#\"'<>]+"  # a request line's protocol is no token
)
# SMTP's AUTH commands, as a mail server's answer may quote them: base64 of the credentials.
_SMTP_AUTH = re.compile(
    r"(?i)\b(auth\s+(?:plain|login|xoauth2|oauthbearer)\s+)([A-Za-z0-9+/]{4,}={0,2})"
)


def is_secret_name(name: str, also: Iterable[str] = ()) -> bool:
    """Whether a header, query parameter or option of this name carries a credential (`also`:
    lower-case names a source declares secret, `declared_secret_params`)."""
    return bool(_SECRET_NAME.search(str(name))) or str(name).lower() in also


def declared_secret_params(source: Any) -> frozenset[str]:
    """The query parameters a source's operator named secret, lower-case: a vendor's key
    under a name that does not say so (OpenWeather's `appid`). Only the operator can tell
    such a key from a filter; once named, it is treated like a credential-named one."""
    return secret_param_names(getattr(source, "secret_params", ""))


def secret_param_names(text: str | None) -> frozenset[str]:
    """The names in a `secret_params` setting ("appid, tenant"), lower-case."""
    return frozenset(name.strip().lower() for name in (text or "").split(",") if name.strip())


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and every credential-shaped value replaced by MASK."""
    if not text:
        return text
    known = _known_secrets(tuple(sorted({s for s in secrets if _long_enough(s)})))
    if known is not None:
        text = known.sub(MASK, text)
    text = _QUOTED_PAIR.sub(_quoted_pair, text)
    text = _mask_values(text, _HEADER_NAME, _HEADER_VALUE, _is_secret_header)
    text = _mask_values(text, _PARAM_NAME, _PARAM_VALUE, is_secret_name)
    text = _BEARER.sub(rf"\1{MASK}", text)
    text = _BASIC.sub(_basic_credentials, text)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    text = _SMTP_AUTH.sub(_smtp_credentials, text)
    return _WEBTRIGGER_PATH.sub(rf"\1{MASK}", text)


# The secrets of the sources this process sends requests to, newest last. A log line of a
# library's own (urllib3 naming a request's URL, with a key in its query) cannot say which of
# its text is a secret: the log filter masks these wherever they appear.
_SECRETS_IN_USE: dict[str, None] = {}
_SECRETS_IN_USE_LIMIT = 2000
_SECRETS_IN_USE_LOCK = threading.Lock()


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mark `secrets` for removal from every log line this process writes."""
    with _SECRETS_IN_USE_LOCK:
        for secret in secrets:
            if _long_enough(secret):
                _SECRETS_IN_USE.pop(secret, None)
                _SECRETS_IN_USE[secret] = None
        while len(_SECRETS_IN_USE) > _SECRETS_IN_USE_LIMIT:
            _SECRETS_IN_USE.pop(next(iter(_SECRETS_IN_USE)))


def secrets_in_use() -> tuple[str, ...]:
    with _SECRETS_IN_USE_LOCK:
        return tuple(_SECRETS_IN_USE)


def redact_for(source: Any, text: str, *extra_secrets: str) -> str:
    """`text` without the secrets of `source` (an ImportSource, or None) or any credential."""
    known = hidden_from_messages(source) if source is not None else []
    return redact(text, [*known, *extra_secrets])


def hidden_from_messages(source: Any) -> list[str]:
    """What a message, a log line or a page never shows of a source: its secrets, and the
    values that look like keys under a name of the vendor's own. Those are not secrets
    elsewhere: a request keeps them, across a redirect too, for a look is no proof, and
    dropping a filter would read other records; the operator names such a key secret in the
    source's `secret_params`, and it is then a secret everywhere."""
    return [*secrets_of(source), *(value for _, value in _keys_under_vendor_names(source))]


def keys_under_undeclared_names(source: Any) -> list[str]:
    """The names of the source's query and extra parameters whose values look like keys,
    though neither their names nor the source's secret parameters say so: worth a word to
    the operator, who alone can tell a key from a filter (`region=eu-west-1`)."""
    return sorted({name for name, _ in _keys_under_vendor_names(source)})


def undeclared_keys_warning(source: Any) -> str:
    """What the operator is told of keys under names that say nothing ("" if none)."""
    names = keys_under_undeclared_names(source)
    if not names:
        return ""
    listed = ", ".join(f"'{name}'" for name in names)
    one = len(names) == 1
    return (
        (
            f"the query parameter {listed} holds what looks like a key; if it is one, name it"
            if one
            else f"the query parameters {listed} hold what look like keys; name those that are"
        )
        + " under the source's secret parameters (Connection): a secret parameter is masked "
        "in pages and exports, stored in no cursor, and never sent to another host on a "
        "redirect."
    )


def params_hidden_from_viewers(source: Any) -> frozenset[str]:
    """The query parameters a page that only shows a source masks: those named secret, and
    those whose values look like keys (a filter that looks like one is masked too; only
    those who edit the source need to read it)."""
    undeclared = (name.lower() for name in keys_under_undeclared_names(source))
    return declared_secret_params(source) | frozenset(undeclared)


def _keys_under_vendor_names(source: Any) -> list[tuple[str, str]]:
    """The source's query and extra parameters (name, value) that look like keys under a name
    of the vendor's own (OpenWeather's `?appid=`): only values written in key characters, so
    a date, a list of fields or a query (`install_status=1`) is no key, and no UUID."""
    pairs = [pair for url in _urls_of(source) for pair in _query_items(url)]
    params = getattr(source, "extra_params", None)
    if isinstance(params, dict):
        pairs += [(str(name), value) for name, value in params.items() if isinstance(value, str)]
    declared = declared_secret_params(source)
    return [
        (name, value)
        for name, value in pairs
        if not is_secret_name(name, declared)
        and _KEY_TEXT.fullmatch(value)
        and not _UUID.fullmatch(value)
        and _looks_like_a_key(value)
    ]


def _urls_of(source: Any) -> list[str]:
    return [getattr(source, name, "") or "" for name in source.MASKED_URL_FIELDS]


def username_holds_a_key(source: Any) -> bool:
    """A user name that is the API key: Freshservice, BambooHR and Stripe take the key as
    the Basic user name and a placeholder password ("X"). Such a user name is a secret,
    shown masked and scrubbed like the password; so is one left behind by Basic
    authentication under an authentication that sends none (bearer, API key)."""
    username = getattr(source, "auth_username", "") or ""
    auth = getattr(source, "source_auth", "")
    if not username or auth == "oauth2_client_credentials":  # a client id is no secret
        return False
    if auth != "basic":
        return True
    password = getattr(source, "source_token", "") or ""
    return len(password) <= 1 or bool(_KEY_SHAPED_USER_NAME.fullmatch(username))


# A user name shaped like a key: long, of letters, digits, "-" and "_" with both letters and
# digits (no "@" or "." as e-mail addresses and "integration.user" have).
_KEY_SHAPED_USER_NAME = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_-]{24,}")


def secrets_of(source: Any) -> list[str]:
    """Every secret an ImportSource holds, as text that must never leave the app: the
    settings it names as secret or as possibly holding one, and its webtrigger token."""
    found = [getattr(source, name, "") for name in (*source.SECRET_FIELDS, "webtrigger_token")]
    declared = declared_secret_params(source)
    username, token = getattr(source, "auth_username", ""), getattr(source, "source_token", "")
    if token:
        found.append(base64.b64encode(f"{username}:{token}".encode()).decode())
    if username_holds_a_key(source):
        found.append(username)
    for url in (getattr(source, name, "") for name in source.MASKED_URL_FIELDS):
        userinfo = _userinfo(url or "")
        if userinfo:
            user, _, password = (unquote(part) for part in userinfo.partition(":"))
            # As sent: the Basic credentials requests builds from them.
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
            found.extend([userinfo, user, password, credentials])
        found.extend(_secret_query_values(url or "", declared))
    for name in source.MASKED_JSON_FIELDS:
        value = getattr(source, name, None)
        # A header of a vendor's own naming is scrubbed when its value looks like a key: a
        # word ("items", a tenant's name) would be blanked from every message.
        keys = [
            header
            for header in _secret_headers(name, value)
            if _looks_like_a_key(str(value[header]))
        ]
        if name == "extra_params":
            keys += declared
        found.extend(_secret_values(value, also=keys))
    return [value for value in found if isinstance(value, str) and value]


def mask_url(url: str, also: Iterable[str] = ()) -> str:
    """The URL with its user name and password, and the values of its credential-named query
    parameters (`?access_token=...`, and those named in `also`), replaced by MASK."""
    parts = _split(url)
    if parts is None:
        return url
    netloc, query = parts.netloc, parts.query
    if _userinfo(url):
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    pairs = query.split("&") if query else []
    for at, pair in enumerate(pairs):
        name, equals, value = pair.partition("=")
        if equals and value and is_secret_name(unquote_plus(name), also):
            pairs[at] = f"{name}={MASK}"
    if netloc == parts.netloc and "&".join(pairs) == query:
        return url  # nothing to hide: the URL as it was written
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pairs)))


def restore_url(url: str, stored: str, also: Iterable[str] = ()) -> str:
    """A URL given back masked (`mask_url`) gets the stored credentials at the masked places
    (ValueError when none are stored there)."""
    parts = _split(url)
    if parts is None:
        return url
    kept = _split(stored or "")
    netloc, query = parts.netloc, parts.query
    if _userinfo(url) == MASK:
        userinfo = _userinfo(stored or "")
        if not userinfo:
            raise ValueError(f"'{MASK}@' stands for stored credentials, and there are none")
        netloc = f"{userinfo}@{netloc.rpartition('@')[2]}"
    # The stored values of each credential-named parameter, in order: the n-th masked one
    # given back stands for the n-th one stored.
    stored_values: dict[str, list[str]] = {}
    for pair in kept.query.split("&") if kept and kept.query else []:
        name, _, value = pair.partition("=")
        if is_secret_name(unquote_plus(name), also):
            stored_values.setdefault(name, []).append(value)
    pairs = query.split("&") if query else []
    for at, pair in enumerate(pairs):
        name, _, value = pair.partition("=")
        if value != MASK or not is_secret_name(unquote_plus(name), also):
            continue
        left = stored_values.get(name) or [""]
        if left[0] in ("", MASK):
            raise ValueError(f"'{name}={MASK}' stands for a stored value, and none is stored")
        pairs[at] = f"{name}={left.pop(0)}"
    if netloc == parts.netloc and "&".join(pairs) == query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pairs)))


def mask_setting(name: str, value: Any, also: Iterable[str] = ()) -> Any:
    """A source's JSON setting (`name`) as people see it: its credential-named entries
    masked, and, in its extra headers, every header but the public ones (in its extra
    parameters, those named in `also`)."""
    declared = list(also) if name == "extra_params" else []
    return mask_secret_values(value, also=[*_secret_headers(name, value), *declared])


# The characters keys and tokens are written with (base64, hex, URL-safe), and no others.
_KEY_TEXT = re.compile(r"[A-Za-z0-9_\-.~+/]+={0,2}")
# An id (a tenant's, a site's): a filter, not a key.
_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _looks_like_a_key(value: str) -> bool:
    """Long, or mixing letters with digits: what keys and tokens look like, and words do not."""
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    return len(value) >= 16 or (len(value) >= 8 and letters and digits)


def _secret_headers(name: str, value: Any) -> list[str]:
    if name != "extra_headers" or not isinstance(value, dict):
        return []
    return [str(header) for header in value if str(header).lower() not in PUBLIC_HEADERS]


def mask_secret_values(value: Any, *, also: Iterable[str] = ()) -> Any:
    """A copy of a JSON object whose credential-named entries (at any depth) read MASK."""
    names = {name.lower() for name in also if name}
    if isinstance(value, dict):
        return {
            key: MASK
            if _is_secret_key(key, names) and value[key] not in (None, "")
            else mask_secret_values(value[key], also=names)
            for key in value
        }
    if isinstance(value, list):
        return [mask_secret_values(item, also=names) for item in value]
    return value


def restore_masked(value: Any, stored: Any, where: str = "") -> Any:
    """`value` with every MASK replaced by the stored value at the same place.

    Raises ValueError naming the place when there is no stored value to put back.
    """
    if value == MASK:
        if stored in (None, "", MASK):
            raise ValueError(
                f"{where or 'the value'}: '{MASK}' stands for a stored secret, and none is stored"
            )
        return stored
    if isinstance(value, dict):
        stored = stored if isinstance(stored, dict) else {}
        return {
            key: restore_masked(item, stored.get(key), f"{where}.{key}" if where else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        stored = stored if isinstance(stored, list) else []
        return [
            restore_masked(item, stored[i] if i < len(stored) else None, f"{where}[{i}]")
            for i, item in enumerate(value)
        ]
    return value


# --- helpers -------------------------------------------------------------------------------


def _is_secret_key(key: Any, also: set[str]) -> bool:
    return is_secret_name(str(key)) or str(key).lower() in also


def _secret_values(value: Any, *, also: Iterable[str] = ()) -> list[str]:
    """The values of credential-named entries of a JSON object, at any depth."""
    names = {name.lower() for name in also if name}
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_secret_key(key, names) and isinstance(item, (str, int, float)):
                found.append(str(item))
            else:
                found.extend(_secret_values(item, also=names))
    elif isinstance(value, list):
        for item in value:
            found.extend(_secret_values(item, also=names))
    return found


def _split(url: str):
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _secret_query_values(url: str, also: Iterable[str] = ()) -> list[str]:
    """The values of a URL's credential-named query parameters."""
    return [value for name, value in _query_items(url) if is_secret_name(name, also)]


def _query_items(url: str) -> list[tuple[str, str]]:
    parts = _split(url)
    return parse_qsl(parts.query) if parts is not None else []


def _userinfo(url: str) -> str:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo if at else ""


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret as a URL may carry it: plain, URL-encoded, JSON-escaped; longest first,
    in the same order in every process (next links store these as marks, `sources.rest`)."""
    forms: set[str] = set()
    for secret in secrets:
        if not _long_enough(secret):
            continue
        forms.update({secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]})
    return sorted(forms, key=lambda form: (-len(form), form))


def _long_enough(secret: Any) -> bool:
    return isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH


@functools.lru_cache(maxsize=256)
def _known_secrets(secrets: tuple[str, ...]) -> re.Pattern | None:
    """One pattern for the secrets in every spelling a server may echo them in: each
    character as is or escaped, whichever way (`_spellings`); longest secrets first."""
    if not secrets:
        return None
    ordered = sorted(secrets, key=lambda secret: (-len(secret), secret))
    return re.compile("|".join(map(_secret_pattern, ordered)))


def _secret_pattern(secret: str) -> str:
    """The secret whole, or cut off after its random-looking start (`_random_start`)."""
    spelled = [_spellings(char) for char in secret]
    whole = "".join(spelled)
    start = _random_start(secret)
    if not start:
        return whole
    return f"{whole}|{''.join(spelled[:start])}{_KEY_CHARACTERS}"


def _random_start(secret: str) -> int:
    """How many first characters of a secret tell it apart when quoted cut short: at least
    SECRET_PREFIX_LENGTH; up to where three letters and three digits came before, or just
    those of a secret of 20 characters or more (a key of one kind of character); 0 for a
    secret that is a URL or a path (a webhook's: its start is `https://` or `/services/`),
    one that reads as words, or one too short to be cut."""
    if "://" in secret or secret.startswith("/") or any(char.isspace() for char in secret):
        return 0
    if len(secret) >= 20 and "/" not in secret[:SECRET_PREFIX_LENGTH]:
        return SECRET_PREFIX_LENGTH
    letters = digits = 0
    for at, char in enumerate(secret[:32], start=1):
        letters, digits = letters + char.isalpha(), digits + char.isdigit()
        if at >= SECRET_PREFIX_LENGTH and letters >= 3 and digits >= 3:
            return at if at <= len(secret) - 2 else 0
    return 0


@functools.lru_cache(maxsize=1024)
def _spellings(char: str) -> str:
    """A character of a secret in any escaped form: percent-encoded (either case of hex,
    `+` for a space), JSON (`\\uXXXX`, `\\/` as PHP writes a slash, `\\"`), HTML entities.
    Servers differ: .NET writes `+` as `\\u002B`, PHP `/` as `\\/`, some encoders `%2f`."""
    if char.isascii() and char.isalnum():
        return re.escape(char)
    forms = {re.escape(char), "%" + "%".join(_hex(byte, 2) for byte in char.encode())}
    forms.add("".join(rf"\\u{_hex(unit, 4)}" for unit in _utf16_units(char)))
    forms.update({f"&#0*{ord(char)};", f"&#[xX]0*{_hex(ord(char), 1)};"})
    forms.update(_OTHER_SPELLINGS.get(char, ()))
    return "(?:" + "|".join(sorted(forms)) + ")"


_OTHER_SPELLINGS = {
    " ": [r"\+"],
    "/": [r"\\/"],
    '"': [r'\\"', "&quot;"],
    "'": ["&apos;"],
    "\n": [r"\\n"],
    "\r": [r"\\r"],
    "\t": [r"\\t"],
    "\b": [r"\\b"],
    "\f": [r"\\f"],
    "\\": [r"\\\\"],
    "&": ["&amp;"],
    "<": ["&lt;"],
    ">": ["&gt;"],
}


def _hex(number: int, width: int) -> str:
    """`number` in hexadecimal, each letter in either case, as a regular expression."""
    return "".join(
        f"[{digit}{digit.lower()}]" if digit.isalpha() else digit for digit in f"{number:0{width}X}"
    )


def _utf16_units(char: str) -> list[int]:
    encoded = char.encode("utf-16-be")
    return [int.from_bytes(encoded[at : at + 2], "big") for at in range(0, len(encoded), 2)]


def _quoted_pair(match: re.Match) -> str:
    if not is_secret_name(match.group(3)):
        return match.group(0)
    return f"{match.group(1)}{MASK}{match.group(6)}"


def _is_secret_header(name: str) -> bool:
    return ("-" in name or name.lower() in _PLAIN_HEADERS) and is_secret_name(name)


def _mask_values(text: str, names: re.Pattern, values: re.Pattern, secret) -> str:
    """Every value right after a name that `secret` accepts, replaced by MASK."""
    pieces, done = [], 0
    for name in names.finditer(text):
        if name.start() < done or not secret(name.group(1)):
            continue
        value = values.match(text, name.end())
        if value:
            pieces += [text[done : name.end()], MASK]
            done = value.end()
    return "".join(pieces) + text[done:] if pieces else text


def _basic_credentials(match: re.Match) -> str:
    """`Basic <base64 of user:password>` loses the value; the word "basic" in prose stays."""
    value = match.group(2)
    if re.search(r"[0-9+/=]", value) or _decodes_to_credentials(value):
        return f"{match.group(1)}{MASK}"
    return match.group(0)


def _smtp_credentials(match: re.Match) -> str:
    """`AUTH PLAIN <base64>` loses the value; "auth login required" in prose stays."""
    value = match.group(2)
    if re.search(r"[0-9+/=]", value) or _decodes_to_credentials(value, also="\0"):
        return f"{match.group(1)}{MASK}"
    return match.group(0)


def _decodes_to_credentials(value: str, also: str = "") -> bool:
    usable = value[: len(value) - len(value) % 4]
    try:
        decoded = base64.b64decode(usable, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    if also and also in decoded:
        return True
    return ":" in decoded and decoded.isprintable()
