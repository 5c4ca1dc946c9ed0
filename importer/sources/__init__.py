"""Third-party sources: each kind reads one page at a time through the same small interface."""

from importer.sources.base import Page, SourceError, build_source

__all__ = ["Page", "SourceError", "build_source"]
