"""URLs of sources: what a message may show of them, their origin, and their query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def public_url(url: str) -> str:
    """The URL without credentials or query string: safe to put in a message, whatever it
    holds (a port that is no number, a bracket left open)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an address that cannot be read)"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def without_credentials(url: str) -> str:
    """`url` without a user and password: requests would send them as Basic auth, in place
    of (or beside) the credentials configured for it. Query and fragment are kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: where a browser would draw its security boundary."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: no origin matches it
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def with_query(
    url: str, add: dict[str, Any] | None = None, drop: str | Callable[[str, str], bool] = ""
) -> str:
    """`url` with the `add` parameters set (replacing any of the same name), and without the
    parameter named `drop` (or every one for which `drop(name, value)` is true)."""
    add = add or {}
    dropped = drop if callable(drop) else lambda name, value: name == drop
    parts = urlsplit(url)
    kept = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in add and not dropped(name, value)
    ]
    query = urlencode(kept + list(add.items()), doseq=True)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def moved_by(url: str, following: str, step: int, ignore: str = "") -> list[tuple[str, int]]:
    """Every whole-number query parameter (but `ignore`) that is `step` more in `following`
    than in `url`, where it counts as 0 if absent: (its name, its value in `url`), in the
    order `following` writes them. How a next link that moved its offset by a page size is
    told: a link may move more than one so (an offset under two names, or a page size
    under a name of the source's own besides it), and which one the source reads it does
    not say. A number may be written in quotes (a cursor that is text of digits, sent in
    a POST's body as text: `request_body.stored_cursor`)."""
    before = _numbers(url)
    return [
        (name, before.get(name, 0))
        for name, value in _numbers(following).items()
        if name != ignore and value - before.get(name, 0) == step
    ]


def moved_number(url: str, name: str, number: int) -> str:
    """`url` with its whole-number parameter `name` set to `number`, written as the one it
    replaces is: in quotes, or to as many digits with leading zeros ("025"), when that one
    is (a cursor of text that must stay text: `request_body.stored_cursor`)."""
    written = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get(name, "")
    quoted = len(written) > 2 and written[0] == written[-1] == '"'
    digits = written[1:-1] if quoted else written
    text = str(number).zfill(len(digits)) if digits[:1] == "0" else str(number)
    return with_query(url, {name: f'"{text}"' if quoted else text})


def _numbers(url: str) -> dict[str, int]:
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    numbers = {}
    for name, value in pairs:
        digits = value[1:-1] if len(value) > 2 and value[0] == value[-1] == '"' else value
        if digits.isascii() and digits.isdigit():
            numbers[name] = int(digits)
    return numbers


def params_left_out(url: str, params: dict[str, Any]) -> dict[str, Any]:
    """The `params` whose names `url`'s query does not have."""
    present = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    return {name: value for name, value in params.items() if name not in present}


def with_missing_params(url: str, params: dict[str, Any]) -> str:
    """`url` with the `params` its query leaves out appended; the link's own query, opaque
    tokens and all, is left byte for byte as the source wrote it."""
    query = urlsplit(url).query
    missing = params_left_out(url, params)
    if not missing:
        return url
    head, _, fragment = url.partition("#")
    joiner = "&" if query else ("" if head.endswith("?") else "?")
    added = f"{head}{joiner}{urlencode(missing, doseq=True)}"
    return f"{added}#{fragment}" if fragment else added
