"""The interface every source kind implements, and its typed error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Page:
    """One page of records and where the next one starts (None when this was the last)."""

    records: list[dict]
    next_cursor: str | None


class SourceError(Exception):
    """The source failed to give a page. Transient errors (`permanent=False`) are retried."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "source_error",
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.kind = kind


class Source(Protocol):
    def fetch_page(self, cursor: str) -> Page:
        """Fetch the page that starts at `cursor` ("" for the first page)."""


def build_source(import_source) -> Source:
    """The reader for an ImportSource's configuration."""
    from importer.sources.rest import RestJsonSource

    return RestJsonSource.from_import_source(import_source)
