"""Reading a source's JSON answer: values at dotted paths, the list of records, an answer
that reports an error instead of a page, and what an answer says of the pages around it.

Used by REST sources and JSON files alike; nothing here makes a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from importer.json_codec import kind_of
from importer.redaction import redact
from importer.sources.base import SourceError

MISSING = object()


def _step(value: Any, key: str) -> Any:
    """One step down a dotted path: a key of an object or an index into a list."""
    if isinstance(value, dict):
        return value.get(key, MISSING)
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return value[int(key)]
    return MISSING


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path, or None when the document has nothing there.

    A key may hold dots itself: OData sources (Microsoft Graph, Dynamics, SharePoint) answer
    their next link as "@odata.nextLink", which read as two steps would be missed, ending the
    import after its first page. At each step the longest run of parts that names a key wins."""
    value = walk(document, [part for part in path.split(".") if part])
    return None if value is MISSING else value


def walk(value: Any, parts: list[str]) -> Any:
    if not parts:
        return value
    if isinstance(value, dict):
        for end in range(len(parts), 1, -1):  # "@odata.nextLink" before "@odata" / "nextLink"
            joined = ".".join(parts[:end])
            if joined in value:
                found = walk(value[joined], parts[end:])
                if found is not MISSING:
                    return found
    step = _step(value, parts[0])
    return MISSING if step is MISSING else walk(step, parts[1:])


def select_records(
    document: Any, path: str, source_name: str, scrub: Callable[[str], str] = redact
) -> list[dict]:
    """The list of records at a dotted path (the document itself when the path is empty).

    An answer that reports an error (`"ok": false`, `"errors": [...]`) with no records is
    refused quoting it, `scrub`bed of the source's secrets: taken for an empty page it would
    end the import DONE without the rest.

    A path ending in "?" ("items?") says the source leaves the list out when it is empty, as
    protobuf's JSON (Google's APIs) writes one: only the operator can say so, for an answer
    without its list is otherwise an error (a spent quota answering 200 in a shape of its
    own), which taken for an empty page would end the import without the rest."""
    optional = path.endswith("?")
    path = path.removesuffix("?")
    if not isinstance(document, dict | list) and (path or document is not None):
        # Nothing to select from: no selector (and no '?') reads records out of it.
        said = f" ({_excerpt(document, scrub, 100)})" if isinstance(document, str) else ""
        raise SourceError(
            f"source '{source_name}' answered {kind_of(document)}{said}, not an object or a "
            "list of records: check the source URL and its parameters (and its credentials, "
            "if what it answered is an error)",
            kind="bad_records",
        )
    keys = [part for part in path.split(".") if part]
    value = parent = document
    walked: list[str] = []
    for key in keys:
        parent = value
        walked.append(key)
        value = _step(value, key)
        if value is MISSING:
            _refuse_an_error(parent, document, path, source_name, scrub)
            if optional and len(walked) == len(keys) and isinstance(parent, dict):
                return []  # the list itself left out: no records here
            # Only the list itself may be left out, and only where no other list stands.
            left_out = len(walked) == len(keys) and not (  # no other list of records there
                isinstance(parent, dict)
                and any(
                    isinstance(value, list) and value and isinstance(value[0], dict)
                    for value in parent.values()
                )
            )
            hint = (
                ". If the source leaves the list out when it has no records (protobuf's "
                f"JSON, as Google's APIs write it), end the selector with '?' ('{path}?')"
                if left_out
                else ""
            )
            raise SourceError(
                f"source '{source_name}' answered without '{'.'.join(walked)}': the records "
                f"selector '{path}' matches nothing{_what_is_there(parent, walked[:-1])}{hint}",
                kind="bad_records",
            )
    if value is None or value == []:  # Go writes an empty slice as null
        _refuse_an_error(parent, document, path, source_name, scrub)
        return []
    if not isinstance(value, list):
        where = f"'{path}'" if path else "the answer"
        if _keyed_records(value):
            keys = ", ".join(str(key) for key in list(value)[:3])
            raise SourceError(
                f"source '{source_name}': {where} holds its records as an object keyed by "
                f"their ids ({keys}...), not as a list, and no records selector reads them "
                "so: a plug-in source (see Plug-in sources) can turn them into a list",
                kind="bad_records",
            )
        raise SourceError(
            f"source '{source_name}': {where} is not a list of records but "
            f"{kind_of(value)}: check the records selector{_what_is_there(value, walked)}",
            kind="bad_records",
        )
    for number, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            listed = isinstance(record, str | int) and not isinstance(record, bool)
            hint = (
                ": the source lists ids or names, not records; point it at an endpoint that "
                "answers whole records (most APIs have one that takes the ids, or a list that "
                "expands them)"
                if listed
                else ""
            )
            raise SourceError(
                f"source '{source_name}': record {number} is {kind_of(record)}, not a JSON "
                f"object{hint}",
                kind="bad_records",
            )
    return value


def _keyed_records(value: Any) -> bool:
    """Whether an object holds records under their ids (`{"17": {...}, "18": {...}}`), as
    Firebase and some older APIs answer, rather than being one record."""
    return (
        isinstance(value, dict)
        and len(value) > 1
        and all(
            isinstance(inner, dict)
            and (str(key).isdigit() or str(key) in (str(field) for field in inner.values()))
            for key, inner in value.items()
        )
    )


# Keys and values of an answer that reports an error rather than a page (a 200 that is no
# page, in the shapes APIs write them).
# ("message" and "detail" are left out: many answers carry one, "success" and all.)
_ERROR_KEYS = frozenset(
    {
        "error",
        "errors",
        "errormessages",
        "errcode",
        "error_code",
        "fault",
        "faultstring",
        "error_message",
        "error_description",
    }
)


# An answer of these keys alone, with a message, is a message: an error unless it says
# success (`{"code": 0, "message": "success"}`).
_MESSAGE_KEYS = frozenset({"message", "detail", "code", "status", "success"})


def says_error(answer: Any) -> bool:
    """Whether an answer reports an error: an error-named key with a value that says one
    (`"errors": []`, `"errcode": 0`, `"error": null`, `"Error": "None"` and
    `"error": {"code": 0}` say none), an error status, `"success": false`, or nothing but a
    message. A status that says all went well outweighs the rest (Kaseya VSA's
    `{"Status": "OK", "Error": "None"}`)."""
    if not isinstance(answer, dict):
        return False
    by_name = {str(key).lower(): value for key, value in answer.items()}
    status = str(by_name.get("status", "")).lower()
    if status in _SAYS_SUCCESS:
        return False
    if status in ("error", "fail", "failed"):
        return True
    if answer.get("success") is False or answer.get("ok") is False:  # Slack's "ok": false
        return True
    if any(name in _ERROR_KEYS and not _says_none(value) for name, value in by_name.items()):
        return True
    said_success = answer.get("code") in (0, "0") or answer.get("success") is True
    return (
        bool(by_name.keys() & {"message", "detail"})
        and by_name.keys() <= _MESSAGE_KEYS
        and (not said_success)
    )


_SAYS_SUCCESS = frozenset({"ok", "success", "succeeded", "successful"})
_SAYS_NONE = frozenset({"", "0", "none", "null", "false", "ok", "success", "no error"})


def _says_none(value: Any) -> bool:
    """Whether an error-named value says there is no error: empty, zero, "None", "OK", or an
    object of those (`{"code": 0, "message": "OK"}`, `{"count": 0}`)."""
    if value in (None, 0, False, [], {}):
        return True
    if isinstance(value, str):
        return value.strip().lower() in _SAYS_NONE
    if isinstance(value, dict):
        if value.get("code") in (0, "0"):
            return True
        return all(_says_none(inner) for inner in value.values())
    return False


def _refuse_an_error(
    parent: Any, document: Any, path: str, source_name: str, scrub: Callable[[str], str]
) -> None:
    erring = next((answer for answer in (parent, document) if says_error(answer)), None)
    if erring is None:
        return
    raise SourceError(
        f"source '{source_name}' answered an error instead of its records ('{path}'): "
        f"{_excerpt(erring, scrub)}. Check what it says (its credentials, permissions or a "
        "quota); the import stops rather than end without the rest",
        kind="bad_records",
    )


def _excerpt(answer: Any, scrub: Callable[[str], str], limit: int = 300) -> str:
    """An error answer as the source wrote it, scrubbed whole before it is cut (a secret cut
    in two would no longer be recognised)."""
    text = scrub(json.dumps(answer, ensure_ascii=False, default=str))
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _what_is_there(value: Any, walked: list[str]) -> str:
    """What an object on the way to the records holds, to choose the selector from: its keys,
    those that hold lists first (names only: no value of the source's is shown)."""
    if not isinstance(value, dict) or not value:
        return ""
    where = f"'{'.'.join(walked)}'" if walked else "the answer"
    keys = sorted(value, key=lambda key: not isinstance(value[key], list))
    shown = ", ".join(
        f"{key} (a list)" if isinstance(value[key], list) else str(key) for key in keys[:12]
    )
    more = f" and {len(keys) - 12} more" if len(keys) > 12 else ""
    return f" ({where} holds {shown[:400]}{more})"


# Where an answer says where its pages start: Spring's `first`, `hasPrevious` (and GraphQL's
# pageInfo), and a link to the first page (JSON:API, HAL, Laravel, Link headers). A link to
# the page before is no sign: some 1-based APIs link page 0 from page 1 without checking.
_PAGING_HOLDERS = ("links", "_links", "paging", "pagination", "meta", "page", "pageInfo")
_HAS_PREVIOUS_KEYS = ("hasPrevious", "hasPreviousPage", "has_previous", "has_previous_page")
_FIRST_LINK_KEYS = ("first", "first_page_url", "firstPage", "first_url")


def says_page_before(response: Any, document: Any, page_param: str, page: int) -> str:
    """What in the answer to page `page` says a page comes before it ("" when nothing does):
    it says it is not the first (`"first": false`, `"hasPrevious": true`), or its link to the
    first page asks for an earlier page number."""

    def earlier_page(link: Any) -> bool:
        link = link.get("href") if isinstance(link, dict) else link
        if not isinstance(link, str):
            return False
        asked = parse_qs(urlsplit(link).query).get(page_param, [""])[0]
        return asked.isdigit() and int(asked) < page

    for url, relations in header_links(response):
        if "first" in relations and earlier_page(url):
            return "its Link header's first page has an earlier number"
    if not isinstance(document, dict):
        return ""
    holders = [document, *(document.get(key) for key in _PAGING_HOLDERS)]
    for holder in filter(lambda value: isinstance(value, dict), holders):
        if holder.get("first") is False:
            return 'its answer says "first": false'
        if any(holder.get(key) is True for key in _HAS_PREVIOUS_KEYS):
            return "its answer says it has a previous page"
        if any(earlier_page(holder.get(key)) for key in _FIRST_LINK_KEYS):
            return "its link to the first page has an earlier number"
    return ""


def link_to_next(response: Any) -> str | None:
    """The Link header's next page: relation types are case-insensitive and a link may have
    several (`rel="next nofollow"`, RFC 8288)."""
    return next((url for url, relations in header_links(response) if "next" in relations), None)


# One link of a Link header: its target, then its parameters up to a comma that stands outside
# quotes (a quoted title may hold commas, semicolons and angle brackets). A target holds no
# "<" (RFC 3986), so a run of them without a ">" is passed over in linear time.
_LINK_VALUE = re.compile(r'<([^<>]*)>((?:[^,"<]|"(?:[^"\\]|\\.)*")*)')
_LINK_PARAM = re.compile(r';\s*([^\s;=,"]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,]*))?')


def header_links(response: Any) -> list[tuple[str, list[str]]]:
    """Each link of the answer's Link header (however many header lines hold them), as its
    target and its relation types, lower-cased. Parsed as RFC 8288 says, where `requests`
    misreads parameter names in capitals (`Rel=next`), a `;` inside a quoted parameter
    (`title="Page; 2"`) and one in the target itself (`<…/assets;jsessionid=…?page=2>`),
    and would lose the link to the next page, ending the import short of its records."""
    links = []
    for target, parameters in _LINK_VALUE.findall(response.headers.get("Link") or ""):
        relations: list[str] = []
        for name, value in _LINK_PARAM.findall(parameters):
            if name.lower() == "rel" and not relations:  # only the first rel counts
                relations = _unquoted(value.strip()).lower().split() or [""]
        links.append((target.strip(), [r for r in relations if r]))
    return links


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value.strip("'")
