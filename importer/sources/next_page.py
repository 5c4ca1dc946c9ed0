"""Where an answer says its next page is, for cursor and next-URL paging.

The next-page path finds the cursor or link. Where it finds nothing, the answer is the
source's last page, unless the answer leads on all the same: a next cursor or link under
another name, or a "has more" flag set. Then the path is wrong, and ending there would mark
the first page DONE as if it were all the source holds, so the import fails naming the key.
So does a cursor found empty while a flag beside it says more pages follow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from importer.sources.answers import MISSING, walk
from importer.sources.base import SourceError

# Flags that say more pages follow, and flags that say this page is the last (set to false,
# those say more follow: Salesforce's `"done": false`, Jira's `"isLast": false`).
_MORE_KEYS = frozenset({"hasmore", "more", "hasnext", "hasnextpage", "moreresults", "istruncated"})
_LAST_KEYS = frozenset({"islast", "islastpage", "done", "endofstream", "last"})
# Cursor names without "next" in them (Zendesk's `after_cursor`, Elasticsearch's
# `_scroll_id`, Intercom's `starting_after`, Kubernetes' `continue`, Airtable's `offset`);
# names with it must say what they hold (`next_cursor`, `nextPageToken`, `nextCursorMark`),
# so `next_invoice_date` is no cursor.
_CURSOR_KEYS = frozenset(
    {"after", "aftercursor", "cursor", "continuation", "continue", "scrollid", "startingafter"}
)
_NEXT_ENDINGS = ("cursor", "token", "page", "marker", "mark", "key", "offset", "start", "id")
_NEXT_LINK_ENDINGS = ("link", "url", "uri", "href")
# Names under which an answer tells how many records its source holds in all (compared by
# their letters, lower-case): GraphQL's `totalCount`, Salesforce's `totalSize`, Django REST
# framework's and OData's `count` (`@odata.count`), Elasticsearch's `hits.total`, DataTables'
# `recordsFiltered` (its `recordsTotal` counts the records before the query's filter).
_TOTAL_KEYS = frozenset(
    {
        "total",
        "totalcount",
        "totalsize",
        "totalresults",
        "totalrecords",
        "totalitems",
        "totalhits",
        "recordsfiltered",
        "count",
    }
)
# Objects in which an answer keeps what it says of its paging (Laravel's and JSON:API's
# `meta`, `pagination`, `page_info`).
_PAGING_HOLDERS = frozenset({"meta", "metadata", "pagination", "paging", "page", "pageinfo"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# How deep in an answer a next cursor or flag is looked for (GraphQL's
# `data.organization.repositories.pageInfo.hasNextPage`).
_DEPTH = 6


def value_at(
    document: Any, records: list[dict], *, config: Any, cursor_sent: str, source_name: str
) -> Any:
    """What the answer holds at the next-page path: None where it holds nothing.

    A link object (`{"href": ...}`, JSON:API 1.1, HAL) gives its link to next-URL paging; an
    empty object is no next page; another object or a list is refused, naming what it holds
    (HubSpot's `paging.next` holds `after` and `link`)."""
    value = walk(document, [part for part in config.cursor_path.split(".") if part])
    if value is MISSING:
        if records:
            _refuse_a_missed_next(document, config, cursor_sent, source_name)
        return None
    if value in ({}, []):
        return None
    links = config.pagination == "next_url"
    if links and isinstance(value, dict) and isinstance(value.get("href"), str):
        return value["href"]
    if isinstance(value, (dict, list)):
        raise SourceError(
            f"source '{source_name}' answered {_shape(value)} at its next-page path "
            f"'{config.cursor_path}', not a {'link' if links else 'cursor'}: set the path to "
            f"the value inside it{_suggestion(value, config.cursor_path, links)}",
            kind="config",
        )
    return value


def total_told(document: Any, records_path: str) -> tuple[str, int] | None:
    """Where an answer says how many records its source holds in all, and how many: a total's
    name (`_TOTAL_KEYS`) at the answer's top, beside its records or in its paging's own object
    (`meta.total`, `pagination.totalCount`), holding a whole number (or Elasticsearch's
    `{"value": n}`); None when it says nothing of the kind."""
    parts = [part for part in records_path.removesuffix("?").split(".") if part]
    places: list[tuple[list[str], Any]] = [([], document)]
    if len(parts) > 1:
        places.append((parts[:-1], walk(document, parts[:-1])))
    if isinstance(document, dict):
        places += [
            ([str(key)], value)
            for key, value in document.items()
            if _bare(str(key)) in _PAGING_HOLDERS
        ]
    for prefix, holder in places:
        if not isinstance(holder, dict):
            continue
        for key, value in holder.items():
            if _bare(str(key)) not in _TOTAL_KEYS:
                continue
            if isinstance(value, dict):  # Elasticsearch's hits.total: {"value": n, ...}
                value = value.get("value")
            if isinstance(value, int) and not isinstance(value, bool):
                return ".".join([*prefix, str(key)]), value
    return None


def says_last_beside(document: Any, path: str) -> bool:
    """Whether the object holding the next cursor at `path` says, by a flag beside it, that
    this page is the last: GraphQL's `pageInfo` keeps its `endCursor` on the last page, with
    `hasNextPage: false`."""
    flag = _flag_beside(document, path)
    return flag is not None and not _more(flag)


def refuse_more_without_a_cursor(
    document: Any, value: Any, *, path: str, refuse: Callable[..., SourceError]
) -> None:
    """Fails a page whose cursor at `path` is empty (`value`: null, "", false) though a flag
    beside it says more pages follow (`"endCursor": null, "hasNextPage": true`, as a GraphQL
    server may answer a page its filter emptied, or one the credentials may not read): no
    next page can be asked for, and ending there would be DONE without the records after
    it. `refuse`: the reader's error, naming the source."""
    flag = _flag_beside(document, path)
    if flag is None or not _more(flag):
        return
    raise refuse(
        f"answered {json.dumps(value)} at its next-page path '{path}' while the answer says "
        f"more pages follow ({flag[0]}: {str(flag[1]).lower()}): the records after this page "
        "cannot be asked for, so the import stopped rather than end DONE without them. Check "
        "that the next-page path names the cursor (GraphQL: pageInfo.endCursor), and the "
        "query's filter and what the source's credentials may read",
        kind="bad_cursor",
    )


def _flag_beside(document: Any, path: str) -> tuple[str, Any] | None:
    holder = walk(document, [part for part in path.split(".") if part][:-1])
    if not isinstance(holder, dict):
        return None
    return next(
        ((str(key), value) for key, value in holder.items() if _says_whether_more(str(key), value)),
        None,
    )


def _refuse_a_missed_next(document: Any, config: Any, cursor_sent: str, source_name: str) -> None:
    """Fails the page when the answer leads on though the path found nothing; returns when
    it is the last page by every sign it gives."""
    flag = _find(document, _says_whether_more)
    if flag and not _more(flag):
        return  # the answer says it is the last page
    links = config.pagination == "next_url"

    def leads_on(key: str, value: Any) -> bool:
        if str(value) == cursor_sent:
            return False  # the request's own cursor, echoed back
        return _looks_like_next_link(key, value) if links else _looks_like_next_cursor(key, value)

    found = _find(document, leads_on)
    if not (found or flag):
        return
    told = (
        f"answered {'a next link' if links else 'a next cursor'} at '{found[0]}'"
        if found
        else f"says it has more records ('{flag[0]}' is {str(flag[1]).lower()})"
    )
    raise SourceError(
        f"source '{source_name}' {told}, but its next-page path is '{config.cursor_path}', "
        "which this answer does not have: set the path to where the answer keeps its next "
        "page, or the import would end after this page",
        kind="config",
    )


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object (holding {', '.join(str(key) for key in value)})"
    return "a list"


def _suggestion(value: Any, path: str, links: bool) -> str:
    """The key inside an object that holds what the paging style needs, as an example."""
    if not isinstance(value, dict):
        return ""
    wanted = _looks_like_next_link if links else _looks_like_next_cursor
    fitting = [
        key for key, inner in value.items() if wanted(key, inner) or wanted(f"next{key}", inner)
    ]
    return f" (e.g. '{path}.{fitting[0]}')" if fitting else ""


def _bare(key: str) -> str:
    """A key's name in lower-case letters only, after any namespace ("@odata.nextLink")."""
    return re.sub(r"[^a-z]", "", key.rpartition(".")[2].lower())


def _says_whether_more(key: str, value: Any) -> bool:
    return isinstance(value, bool) and _bare(key) in _MORE_KEYS | _LAST_KEYS


def _more(flag: tuple[str, Any]) -> bool:
    """Whether a flag found by `_says_whether_more` says more pages follow."""
    key, value = flag
    return value if _bare(key.rpartition(".")[2]) in _MORE_KEYS else not value


def _looks_like_next_cursor(key: str, value: Any) -> bool:
    """A value under a cursor's name: `next_cursor`, `nextPageToken`, `after_cursor`; not
    `nextSyncToken` (what a last page of Google's gives for later changes), a date, a 0, or
    a number under `offset` (a position, not Airtable's token)."""
    bare = _bare(key)
    named = (
        bare in _CURSOR_KEYS
        or bare == "offset"
        and isinstance(value, str)
        and not value.isdigit()
        or bare.startswith("next")
        and "sync" not in bare
        and (bare == "next" or bare[4:].endswith(_NEXT_ENDINGS))
    )
    if not named or isinstance(value, bool) or value in ("", 0):
        return False
    if isinstance(value, str) and (_DATE.match(value) or value.startswith(("http://", "https://"))):
        return False
    return isinstance(value, (str, int))


def _looks_like_next_link(key: str, value: Any) -> bool:
    """A URL under a next link's name (`next`, `nextLink`, `nextRecordsUrl`, Twilio's
    `next_page_uri`), or a link object there (`"next": {"href": ...}`)."""
    bare = _bare(key)
    if not (bare.startswith("next") and (bare == "next" or bare.endswith(_NEXT_LINK_ENDINGS))):
        return False
    if isinstance(value, dict):
        value = value.get("href")
    return isinstance(value, str) and value.startswith(("http://", "https://", "/", "?"))


def _find(
    document: Any, wanted, prefix: str = "", depth: int = _DEPTH, within_next: bool = False
) -> tuple[str, Any] | None:
    """The dotted path and value of the first entry `wanted(key, value)` picks, within a few
    levels of the answer's objects; None when there is none. Under a key named `next`
    (HubSpot's `paging.next.link`, `pages.next.starting_after`) a key is read as next's own:
    `link` as `nextlink`."""
    if not isinstance(document, dict) or depth == 0:
        return None
    nested = []
    for key, value in document.items():
        if wanted(str(key), value) or (within_next and wanted(f"next_{key}", value)):
            return f"{prefix}{key}", value
        if isinstance(value, dict):
            nested.append((key, value))
    for key, value in nested:
        found = _find(value, wanted, f"{prefix}{key}.", depth - 1, _bare(str(key)) == "next")
        if found:
            return found
    return None
