"""Third-party sources: each kind reads one page at a time through the same small interface.

`build_source(import_source).fetch_page(cursor)` returns a `Page`, or raises `SourceError`;
see `importer/sources/base.py` for the interface and how to write a plug-in.
"""

from __future__ import annotations

from importer.redaction import hidden_from_messages, remember_secrets
from importer.sources.base import Page, Source, SourceError, config_error
from importer.sources.csv_file import CsvSource
from importer.sources.files import VERSION_MARK, FileSource
from importer.sources.json_file import JsonFileSource
from importer.sources.jsonl_file import JsonLinesSource
from importer.sources.plugin import PluginSource
from importer.sources.rest import RestJsonSource
from importer.sources.rest import cursor_for as rest_cursor_for

SOURCE_KINDS: dict[str, type] = {
    "rest": RestJsonSource,
    "csv": CsvSource,
    "json": JsonFileSource,
    "jsonl": JsonLinesSource,
    "plugin": PluginSource,
}

__all__ = [
    "Page",
    "Source",
    "SourceError",
    "build_source",
    "cursor_for",
    "first_page_again",
    "reads_a_file",
]


def build_source(import_source, *, execution_id: int | None = None) -> Source:
    """The reader for an ImportSource's configuration (SourceError when it cannot be built);
    `execution_id`, the import it reads for (a file is then read from one copy throughout)."""
    # Whatever a reader of any kind, or a library under it, says of them (a log line, a failed
    # task's traceback) this process then says without them.
    remember_secrets(hidden_from_messages(import_source))
    kind = SOURCE_KINDS.get(import_source.source_kind)
    if kind is None:
        raise config_error(import_source, f"unknown kind '{import_source.source_kind}'")
    if issubclass(kind, FileSource):
        return kind(import_source, execution_id)
    return kind(import_source)


def cursor_for(import_source, index: int) -> str | None:
    """Where page `index` of the source starts, when its kind can tell without reading the
    pages before it (None: only the page before says). Such sources are read in parallel."""
    if import_source.source_kind != "rest":
        return None
    return rest_cursor_for(import_source, index)


def first_page_again(import_source, following: str) -> str:
    """The cursor a source's first page is read from again (Assets refused it, its worker
    died), given the cursor of the page after it. A file's names the version of the file the
    import reads: the first page is read from that file, and a file that differs fails the
    import as changed, rather than give other records at the page's edge. Other sources
    read their first page from the empty cursor."""
    if not reads_a_file(import_source):
        return ""
    _, mark, version = following.partition(VERSION_MARK)
    return mark + version


def reads_a_file(import_source) -> bool:
    """Whether the source is a file (CSV, JSON, JSON Lines), uploaded or from a URL."""
    return issubclass(SOURCE_KINDS.get(import_source.source_kind, object), FileSource)
