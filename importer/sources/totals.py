"""Where a REST source's answers tell how many records it holds: at a dotted path in the JSON
body (`meta.total`), or, written `header:X-Total-Count` in the same total path, in a header
of the answer, where many APIs tell it alone (json-server and many Spring or Rails APIs'
X-Total-Count, ServiceNow's Table API when its account reads every row, GitLab's X-Total,
WordPress's X-WP-Total).

One setting says both, so a stored source, and a source written as code, keep their meaning.

A total path set is the only total read from headers: a usual total header is not looked at
without it (as the first-page check looks at usual names in the body), for some count what
the caller may not read. ServiceNow's X-Total-Count may count rows its access controls then
leave out of the answer, and a source holding such rows, read whole in one request, would
fail with nothing to set but a total path that names nothing.
"""

from __future__ import annotations

from typing import Any

from importer.sources.answers import lookup

HEADER_PREFIX = "header:"


def header_named(total_path: str) -> str | None:
    """The header a total path names (`header:X-Total-Count`, the prefix in any case), or
    None when the path is a dotted path in the body."""
    path = total_path.strip()
    if path[: len(HEADER_PREFIX)].lower() != HEADER_PREFIX:
        return None
    return path[len(HEADER_PREFIX) :].strip()


def told_in(total_path: str) -> str:
    """Where the total is told, as a message names it: "at 'meta.total'", or "in header
    'X-Total-Count'"."""
    name = header_named(total_path)
    return f"at '{total_path}'" if name is None else f"in header '{name}'"


# The largest total an import keeps (`Execution.records_total`, a PostgreSQL integer).
LARGEST_TOTAL = 2**31 - 1
_NO_COUNT = f"is no count of records (below 0 or above {LARGEST_TOTAL})"


class NotATotal(ValueError):
    """What an answer holds where its total path points is not a whole number (`what`:
    how a message says so), or is none a source's records can number."""

    def __init__(self, value: Any, what: str = "is not a number") -> None:
        super().__init__(value)
        self.value = value
        self.what = what


def _counted(number: int, value: Any) -> int:
    """`number` as a total, which no count of records is below 0 or above LARGEST_TOTAL:
    kept, it failed the page with a database error, quoting the import's row."""
    if not 0 <= number <= LARGEST_TOTAL:
        raise NotATotal(value, _NO_COUNT)
    return number


def told_total(response: Any, document: Any, total_path: str) -> int | None:
    """The total an answer tells where its total path points, in its body or in a header
    (whose name is matched in any case); None when it tells nothing there. Raises NotATotal
    when what is there is not a number (a header's text must be digits alone), or is out of
    the range of a count of records."""
    name = header_named(total_path)
    if name is None:
        value = lookup(document, total_path)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise NotATotal(value) from None
        return _counted(number, value)
    text = response.headers.get(name) if response is not None else None
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise NotATotal(text)
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(LARGEST_TOTAL)):  # more digits than int() reads (4300) too
        raise NotATotal(text, _NO_COUNT)
    return _counted(int(digits), text)
