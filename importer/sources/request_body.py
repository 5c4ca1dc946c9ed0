"""The JSON body of a REST source read with POST (a GraphQL query, a search API's query).

The reader builds each request's URL as for a GET, paging values and all; with POST those
values go into the body, each at the dotted path its parameter names (`variables.after`,
`from`), and the request goes to the source URL with its extra parameters. Every check the
reader makes by asking for another offset or page size (short pages, a source's end) so
works the same whichever way the values travel.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from importer.json_codec import kind_of

# What a paging value in the reader's URL becomes in the body: a number (an offset, a page
# number, a page size), text, the JSON value the text writes (keyset paging's last record's
# value: Elasticsearch's search_after takes the hit's `sort` array), or the cursor a stored
# cursor stands for (`stored_cursor`).
NUMBER, TEXT, JSON_VALUE, CURSOR = "number", "text", "json", "cursor"


def paging_moved_into_body(
    url: str,
    template: dict | None,
    paths: dict[str, str],
    after_first: dict[str, Any] | None = None,
) -> bytes:
    """The body for the request the reader built as `url`: the `template` with the paging
    values of `url`'s query at their dotted paths (`paths`: path -> NUMBER, TEXT or
    JSON_VALUE), and, for a page after the first, the values that say so (`after_first`:
    path -> JSON value, Lansweeper's `"page": "NEXT"`). The URL itself is not sent: the
    request goes to the source URL with its own query and the extra parameters, a filter
    there named like a path here (`from`) included."""
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    moved = {path: query[path] for path in paths if path in query}
    body = copy.deepcopy(template) if isinstance(template, dict) else {}
    for path, value in (after_first or {}).items():
        put_at(body, path, copy.deepcopy(value))
    for path, value in moved.items():
        put_at(body, path, _as_sent(value, paths[path]))
    return json.dumps(body, ensure_ascii=False).encode()


def _as_sent(value: str, kind: str) -> Any:
    if kind == NUMBER and value.isascii() and value.isdigit():
        return int(value)
    if kind == JSON_VALUE:
        return json.loads(value)
    if kind == CURSOR:
        return cursor_value(value)
    return value


def stored_cursor(value: Any) -> str:
    """How a cursor that an answer gave is stored, to be sent back in a body as the JSON
    value it was: a GraphQL variable typed `Int` refuses "25", one typed `String` refuses
    25. Text is stored as it is (an opaque token, "007", `{"id": 7}`), unless it would
    read as a JSON number, string, true, false or null ("25"): then it is stored as JSON,
    in quotes. Any other value (a number) is stored as JSON."""
    if isinstance(value, str) and _json_scalar(value) is _TEXT:
        return value
    return json.dumps(value, ensure_ascii=False)


def cursor_value(stored: str) -> Any:
    """The cursor a stored one stands for (`stored_cursor`): a cursor stored as text
    before cursors kept their type reads back as that text, unless it was such as "25"."""
    value = _json_scalar(stored)
    return stored if value is _TEXT else value


_TEXT = object()


def _json_scalar(text: str) -> Any:
    """The JSON number, string, true, false or null that `text` writes; `_TEXT` when it
    writes none (a list or an object is text too, as is NaN, which is no JSON)."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:
        return _TEXT
    return _TEXT if isinstance(value, (list, dict)) else value


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def put_at(body: dict, path: str, value: Any) -> None:
    """Set `value` at a dotted path of `body`, making the objects on the way that it lacks
    (ValueError naming the place when something else than an object stands there)."""
    keys = [key for key in path.split(".") if key]
    holder = body
    for depth, key in enumerate(keys[:-1], start=1):
        inner = holder.get(key)
        if inner is None:
            inner = holder[key] = {}
        if not isinstance(inner, dict):
            where = ".".join(keys[:depth])
            raise ValueError(f"'{where}' holds {kind_of(inner)}, not an object")
        holder = inner
    holder[keys[-1]] = value


def body_problem(template: Any, paths: dict[str, str]) -> str:
    """What keeps `template` from being sent with the paging values at their `paths`
    (what each carries -> its dotted path); "" when nothing does."""
    if template is not None and not isinstance(template, dict):
        return (
            f"the request body must be a JSON object, not {kind_of(template)} (e.g. "
            '{"query": "…", "variables": {"first": 100}})'
        )
    trial = copy.deepcopy(template or {})
    for what, path in paths.items():
        if not [key for key in path.split(".") if key]:
            return f"the dotted path for {what} in the request body is empty"
        try:
            put_at(trial, path, 0)
        except ValueError as error:
            return (
                f"the request body has no place for {what} at '{path}': {error} (make it one, "
                f"or give {what} another path under Paging)"
            )
    return ""
