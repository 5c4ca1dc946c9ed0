"""What the services raise for people to read, and the scrubbing of secrets from messages."""

from __future__ import annotations

import re

from importer.models import ImportSource


class ImportRefused(Exception):
    """An import could not start; the message tells the user why and what to do."""


class ImportAlreadyRunning(ImportRefused):
    """The source already has an open execution."""


class MappingInvalid(Exception):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("The mapping is not valid: " + "; ".join(str(p) for p in problems))


class ScheduleError(Exception):
    """A schedule could not be set up; the message says why and what to do."""


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def scrub_secrets(text: str, source: ImportSource | None = None) -> str:
    """Remove the source's secrets, credentials in URLs and bearer tokens from a message."""
    if source is not None:
        for secret in (source.assets_token, source.source_token, source.webtrigger_token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub("***@", text)
    return _BEARER.sub(r"\1***", text)
