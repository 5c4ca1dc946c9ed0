"""Removing secrets from text: the secrets we know, in every spelling a server may echo
them in, and the shapes secrets take in text we did not write (see the package's docstring).
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
from urllib.parse import quote, quote_plus

from importer.redaction.names import (
    BARE_NAME_QUOTED_VALUE,
    MASK,
    is_secret_header,
    is_secret_name,
    quoted_value_end,
    quotes_a_secret,
)

# Shorter values are not replaced wherever they occur: they would blank out ordinary words.
MIN_SECRET_LENGTH = 4
# A server that cuts a key it echoes ("Unknown key sk_live_4f9a2b7c1d...") still gives most
# of it away: once a known secret's first characters are random-looking (at least this many,
# with letters and digits three of each, or any of a long secret), they go with whatever key
# characters follow them.
SECRET_PREFIX_LENGTH = 12
_KEY_CHARACTERS = r"[\w.~+=%-]*"

# "X-API-Key": "abc" (JSON, also JSON inside a JSON string) and 'x-api-key': 'abc' (Python).
_QUOTED_PAIR = re.compile(r"""(\\?(["'])([\w.-]+)\\?\2\s*[:=]\s*\\?(["']))([^"'\r\n]*?)(\\?\4)""")
# Authorization: Basic abc / X-Api-Key: abc (header lines) and api_key=abc (queries, forms):
# a name, then its value. Only names are searched for, so a name inside the value of another
# ("error: X-Api-Key: abc") is still found; names and values are runs without a way back, so a
# long text costs linear time.
_HEADER_NAME = re.compile(r"(?i)(?<![\w-])([a-z0-9_]+(?:-[a-z0-9_]+)*)\s*:[ \t]*(?!\s|\\?[\"'])")
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


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and every credential-shaped value replaced by MASK."""
    if not text:
        return text
    known = _known_secrets(tuple(sorted({s for s in secrets if _long_enough(s)})))
    if known is not None:
        text = known.sub(MASK, text)
    text = _QUOTED_PAIR.sub(_quoted_pair, text)
    text = _mask_bare_named_quoted_values(text)
    text = _mask_values(text, _HEADER_NAME, _HEADER_VALUE, is_secret_header)
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


def _mask_bare_named_quoted_values(text: str) -> str:
    """`apiKey: "..."`, `password='...'` (BARE_NAME_QUOTED_VALUE): the quoted value of a
    credential-named name replaced by MASK, the quotes kept."""
    pieces, done = [], 0
    for opening in BARE_NAME_QUOTED_VALUE.finditer(text):
        if opening.start() < done or not is_secret_name(opening.group(1)):
            continue
        end = quoted_value_end(text, opening)
        if end > opening.end() and quotes_a_secret(opening.group(1), text[opening.end() : end]):
            pieces += [text[done : opening.end()], MASK]
            done = end
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
