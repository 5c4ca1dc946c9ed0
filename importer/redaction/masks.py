"""Settings shown masked: URLs, headers, parameters and options with their secrets read
as MASK, and put back from the stored value when a masked one is saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

from importer.redaction.names import (
    DECLARABLE_JSON_FIELDS,
    MASK,
    PUBLIC_HEADERS,
    inline_secret_values,
    is_secret_name,
    secret_paths,
)


def mask_url(url: str, also: Iterable[str] = ()) -> str:
    """The URL with its user name and password, and the values of its credential-named query
    parameters (`?access_token=...`, and those named in `also`), replaced by MASK."""
    parts = _split(url)
    if parts is None:
        return url
    netloc, query = parts.netloc, parts.query
    if userinfo_of(url):
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
    if userinfo_of(url) == MASK:
        userinfo = userinfo_of(stored or "")
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
    declared = list(also) if name in DECLARABLE_JSON_FIELDS else []
    paths = secret_paths(name, value, {part.lower() for part in declared})
    return mask_secret_values(value, also=[*secret_headers(name, value), *declared, *paths])


def secret_headers(name: str, value: Any) -> list[str]:
    if name != "extra_headers" or not isinstance(value, dict):
        return []
    return [str(header) for header in value if str(header).lower() not in PUBLIC_HEADERS]


def mask_secret_values(value: Any, *, also: Iterable[str] = ()) -> Any:
    """A copy of a JSON object whose credential-named entries (at any depth) read MASK, and
    so does a text that writes a key in itself (a GraphQL query's `apiKey: "..."`): the
    key cannot be masked alone, for a masked value is put back whole when saved."""
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
    if isinstance(value, str) and inline_secret_values(value, names):
        return MASK
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


def secret_values(value: Any, *, also: Iterable[str] = ()) -> list[str]:
    """The values of credential-named entries of a JSON object, at any depth: every value
    within such an entry (`"auth": {"user": ..., "pass": ...}`, shown masked whole), and the
    keys a text writes in itself (`mask_secret_values`)."""
    names = {name.lower() for name in also if name}
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_secret_key(key, names):
                found.extend(_every_value(item))
            else:
                found.extend(secret_values(item, also=names))
    elif isinstance(value, list):
        for item in value:
            found.extend(secret_values(item, also=names))
    elif isinstance(value, str):
        found.extend(inline_secret_values(value, names))
    return found


def _every_value(value: Any) -> list[str]:
    """Every text and number within a JSON value (not true, false or null)."""
    if isinstance(value, dict):
        return [found for item in value.values() for found in _every_value(item)]
    if isinstance(value, list):
        return [found for item in value for found in _every_value(item)]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [str(value)]
    return []


def _split(url: str):
    try:
        return urlsplit(url)
    except ValueError:
        return None


def secret_query_values(url: str, also: Iterable[str] = ()) -> list[str]:
    """The values of a URL's credential-named query parameters."""
    return [value for name, value in query_items(url) if is_secret_name(name, also)]


def query_items(url: str) -> list[tuple[str, str]]:
    parts = _split(url)
    return parse_qsl(parts.query) if parts is not None else []


def userinfo_of(url: str) -> str:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo if at else ""
