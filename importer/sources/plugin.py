"""Plug-in sources: a class listed in the IMPORT_SOURCE_PLUGINS setting reads the records.

Only listed classes are loaded, so a staff user who can edit a source cannot make a worker
import arbitrary code. The interface is described in `importer/sources/base.py`.
"""

from __future__ import annotations

from typing import Any

import requests
from django.db import InterfaceError, OperationalError
from django.utils.module_loading import import_string

from importer.json_codec import kind_of
from importer.redaction import redact_for
from importer.sources import limits
from importer.sources.base import Page, SourceError, config_error
from importer.sources.rules import listed_plugins, plugin_problem

# Errors a plug-in may leak from its own HTTP, socket or database calls: worth a retry (a
# database restarting, a connection dropped).
TRANSIENT_ERRORS = (OSError, requests.RequestException, OperationalError, InterfaceError)


def plugin_path(import_source) -> str:
    """The dotted path of the source's plug-in: a listed name, or a listed dotted path."""
    name = import_source.plugin
    problem = plugin_problem(name)
    if problem:
        raise config_error(import_source, problem)
    return listed_plugins().get(name, name)


class PluginSource:
    """Builds the plug-in and holds it to the interface: it returns Pages or raises SourceError."""

    def __init__(self, import_source) -> None:
        self.name = import_source.name
        self.import_source = import_source
        path = plugin_path(import_source)
        self.label = f"plug-in '{import_source.plugin}'"
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise config_error(import_source, f"{self.label} cannot be imported ({exc})") from None
        options = import_source.plugin_options or {}
        try:
            self.plugin = cls(import_source=import_source, options=options)
        except SourceError as error:
            raise self._owned(error) from error
        except TRANSIENT_ERRORS as exc:  # signing in over a network that may come back
            raise self._failure("could not start", exc, permanent=False) from exc
        except Exception as exc:
            raise self._failure("could not start", exc, permanent=True) from exc
        if not callable(getattr(self.plugin, "fetch_page", None)):
            raise config_error(import_source, f"{self.label} ({path}) has no fetch_page method")

    def fetch_page(self, cursor: str) -> Page:
        try:
            page = self.plugin.fetch_page(cursor)
        except SourceError as error:
            raise self._owned(error) from error
        except TRANSIENT_ERRORS as exc:
            raise self._failure("failed", exc, permanent=False) from exc
        except Exception as exc:
            raise self._failure("failed", exc, permanent=True) from exc
        return self._checked(page)

    def _checked(self, page: Any) -> Page:
        records = getattr(page, "records", None)
        next_cursor = getattr(page, "next_cursor", None)
        wrong = ""
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            wrong = "records that are not a list of objects"
        elif next_cursor is not None and not isinstance(next_cursor, str):
            wrong = f"a next_cursor that is {kind_of(next_cursor)}, not a string"
        if wrong:
            raise SourceError(
                f"source '{self.name}': {self.label} returned {wrong}", kind="plugin_error"
            )
        limits.check_record_count(
            len(records),
            refuse=lambda message, **fields: SourceError(
                f"source '{self.name}': {self.label} {message}", **fields
            ),
        )
        if isinstance(page, Page):
            return page
        total = getattr(page, "total", None)
        return Page(
            records=records,
            next_cursor=next_cursor,
            total=total if isinstance(total, int) else None,
        )

    def _failure(self, what: str, exc: Exception, *, permanent: bool) -> SourceError:
        # Cut after scrubbing: a secret cut in half would no longer be recognised.
        detail = self._scrub(f"{type(exc).__name__}: {exc}")[:300]
        return SourceError(
            f"source '{self.name}': {self.label} {what} ({detail})",
            permanent=permanent,
            kind="plugin_error" if permanent else "unavailable",
        )

    def _owned(self, error: SourceError) -> SourceError:
        """The plug-in's own SourceError, held to the rules: names the source, no secret."""
        message = self._scrub(error.message)
        if not message.startswith(f"source '{self.name}'"):
            message = f"source '{self.name}': {message}"
        return SourceError(
            message,
            permanent=error.permanent,
            status=error.status,
            retry_after=error.retry_after,
            kind=error.kind,
        )

    def _scrub(self, text: str) -> str:
        """A plug-in's own words may hold the source's secret or a URL with credentials."""
        return redact_for(self.import_source, text)
