"""The interface every source kind implements, and its typed error.

A source reads one page of records at a time. The import flow calls, once per chunk::

    page = build_source(import_source).fetch_page(cursor)   # cursor "" for the first page

and stores `page.next_cursor` with the next chunk, so that chunk can be fetched again on a retry,
by another worker, from the cursor alone. A cursor is a string the source chooses (an offset, a
page number, an opaque token, a URL, a byte offset) and must not contain a secret: it is stored
and shown to staff. `next_cursor` is None on the last page. `total`, when the source says how
many records it holds, is checked against the records the import received at its end.

Plug-ins are classes listed in the IMPORT_SOURCE_PLUGINS setting (name -> dotted path). An
ImportSource of kind "plugin" names one of them, and each chunk builds one instance as
`cls(import_source=import_source, options=import_source.plugin_options)`::

    # settings.py
    IMPORT_SOURCE_PLUGINS = {"hr": "acme.sources.HrSystemSource"}

    # acme/sources.py
    from importer.sources import Page, SourceError

    class HrSystemSource:
        def __init__(self, *, import_source, options):
            self.name = import_source.name
            self.page_size = import_source.page_size
            self.client = HrClient(options["base_url"], import_source.source_token)

        def fetch_page(self, cursor: str) -> Page:
            try:
                rows, more = self.client.people(start=int(cursor or 0), count=self.page_size)
            except HrTimeout:
                raise SourceError(f"source '{self.name}' timed out", permanent=False)
            next_cursor = str(int(cursor or 0) + len(rows)) if more else None
            return Page(records=rows, next_cursor=next_cursor)

Raise SourceError for failures the import should report; `permanent=False` asks for a retry.
Any other exception from a plug-in fails the chunk too (network-like errors are retried).
`importer/sources/examples.py` holds a complete, tiny plug-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from importer.remote import RemoteError


@dataclass(frozen=True)
class Page:
    """One page of records and where the next one starts (None when this was the last).

    `total` is the number of records the source says it holds, when its answers say so.
    `notes`: what is worth a look though the page is read (a CSV row that may be broken),
    noted on the import.
    """

    records: list[dict]
    next_cursor: str | None
    total: int | None = None
    notes: tuple[str, ...] = ()


class SourceError(RemoteError):
    """The source failed to give a page. Transient errors (`permanent=False`) are retried.

    The message names the source ("source 'NAME' ...") and never holds a secret: it is stored
    on the chunk and shown to staff. `max_attempts` bounds the attempts a transient failure of
    this kind is worth, below CHUNK_MAX_ATTEMPTS (None: that setting decides).
    """

    kind = "source_error"

    def __init__(self, message: str, *, max_attempts: int | None = None, **fields):
        """`max_attempts`: a transient error that is worth fewer attempts than
        CHUNK_MAX_ATTEMPTS (an answer that did not parse is retried briefly)."""
        super().__init__(message, **fields)
        self.max_attempts = max_attempts

    def explained(self, why: str) -> SourceError:
        """The same error with what most likely caused it told after its message."""
        return SourceError(
            f"{self.message}. {why}",
            status=self.status,
            permanent=self.permanent,
            retry_after=self.retry_after,
            kind=self.kind,
        )


def number_cursor(cursor: str, *, default: int, source_name: str, meaning: str) -> int:
    """The non-negative number a cursor holds (an offset, a page number, a record index);
    `default` for the first page's empty cursor."""
    try:
        number = int(cursor) if cursor else default
    except ValueError:
        number = -1
    if number < 0:
        raise SourceError(
            f"source '{source_name}': cursor '{cursor[:50]}' is not {meaning}", kind="bad_cursor"
        )
    return number


class Source(Protocol):
    def fetch_page(self, cursor: str) -> Page:
        """Fetch the page that starts at `cursor` ("" for the first page)."""
        ...


def config_error(source, problem: str) -> SourceError:
    """A setting of the ImportSource is wrong: permanent, and says which."""
    return SourceError(f"source '{source.name}' is misconfigured: {problem}", kind="config")
