"""What the services raise for people to read, and the scrubbing of secrets from messages."""

from __future__ import annotations

from importer.models import ImportSource
from importer.redaction import redact_for


class ImportRefused(Exception):
    """An import could not start; the message tells the user why and what to do.

    `recorded` is True when the history already holds the run that did not happen.
    """

    recorded = False


class ImportAlreadyRunning(ImportRefused):
    """The source already has an open execution."""


class MappingInvalid(Exception):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("The mapping is not valid: " + "; ".join(str(p) for p in problems))


# What to do about a source without a mapping, wherever that stops something.
HOW_TO_ADD_A_MAPPING = (
    "draft one from its records with the action Draft mapping from source (or paste one "
    "into its Mapping field)"
)

# What to do about a nested selector none of whose items an import (or a preview's page)
# sends: most often a field renamed or dropped at the source.
HOW_TO_MEND_A_SELECTORS_LOCATORS = (
    "If the source renamed or dropped a field, change the mapping's attribute locators of "
    "that selector to the source's fields"
)


class NoMapping(MappingInvalid):
    def __init__(self):
        self.problems = ["$: no mapping"]
        Exception.__init__(self, f"The source has no mapping yet: {HOW_TO_ADD_A_MAPPING}.")


class MappingChangedMeanwhile(Exception):
    """The mapping was saved anew while it was being pushed: Assets holds the one before."""

    def __init__(self):
        super().__init__(
            "the mapping was changed while it was being pushed, so Assets holds the one from "
            "before: push it again."
        )


class DraftImpossible(Exception):
    """No mapping can be drafted: the source cannot be read, or holds nothing to learn from."""

    def __init__(self, reason: str):
        super().__init__(f"No mapping could be drafted: {reason}")


class ImportEnded(Exception):
    """An action that needs a running import came for one that has ended."""


class NotCancellable(Exception):
    """A cancel that came too late: the import has ended, or Assets is writing its records
    (a cancel then may not stop it, and its outcome is what Assets reports)."""


class SourceBusy(Exception):
    """A change that must wait until the source's running import has ended."""


class ScheduleError(Exception):
    """A schedule could not be set up; the message says why and what to do. `refused_token`:
    Assets refused the token (asking again will not help until it is mended); `will_retry`:
    Assets could not take it now, and housekeeping syncs it again by itself."""

    def __init__(
        self, message: str, *, refused_token: bool = False, will_retry: bool = False
    ) -> None:
        super().__init__(message)
        self.refused_token = refused_token
        self.will_retry = will_retry


def scrub_secrets(text: str, source: ImportSource | None = None) -> str:
    """Remove the source's secrets and any credential from a message (see importer.redaction)."""
    return redact_for(source, text)
