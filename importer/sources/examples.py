"""A complete, tiny plug-in: the records come from the source's plug-in options.

List it in settings to use it, e.g. `IMPORT_SOURCE_PLUGINS = {"static":
"importer.sources.examples.StaticListSource"}`, and set the source's plug-in options to
`{"records": [{"id": 1, ...}, ...]}`. Useful for demos, tests, and as a template.
"""

from __future__ import annotations

from importer.sources.base import Page, SourceError, number_cursor


class StaticListSource:
    """Serves `options["records"]`, `page_size` records per page; the cursor is an index."""

    def __init__(self, *, import_source, options: dict) -> None:
        self.name = import_source.name
        self.page_size = max(1, import_source.page_size)
        self.records = options.get("records", [])
        if not isinstance(self.records, list):
            raise SourceError(f"source '{self.name}': option 'records' must be a list")

    def fetch_page(self, cursor: str) -> Page:
        start = number_cursor(cursor, default=0, source_name=self.name, meaning="an index")
        end = start + self.page_size
        next_cursor = str(end) if end < len(self.records) else None
        return Page(records=self.records[start:end], next_cursor=next_cursor)
