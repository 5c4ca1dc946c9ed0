"""The one client of the Assets Imports REST API.

Every call goes through `AssetsClient._call`, which sets the timeout and turns every failure
(an exception of `requests` or a non-2xx answer) into one `AssetsError` subclass, so callers
decide between retrying and failing by type.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from importer import json_codec
from importer.deadline import AnswerTooSlow, mount_deadline_adapter, request_deadline, until
from importer.redaction import redact
from importer.remote import (
    RemoteError,
    RemoteSession,
    lost_after_connecting,
    page_title,
    parse_retry_after,
    why_unreachable,
)
from importer.sources.urls import public_url, without_credentials

FAILURE_REASON_LIMIT = 1024


class AssetsError(RemoteError):
    """Assets could not do what we asked. `permanent` errors are not worth retrying."""

    kind = "assets_error"
    # A page sent in parts: what Assets took before this error (`submit_chunk`).
    items_taken = ""


class AssetsBadRequest(AssetsError):
    kind = "bad_request"


class AssetsAuthError(AssetsError):
    kind = "auth"


class AssetsNotFound(AssetsError):
    kind = "not_found"


class AssetsConflict(AssetsError):
    kind = "conflict"


class AssetsRateLimited(AssetsError):
    permanent = False
    kind = "rate_limited"


class AssetsServerError(AssetsError):
    permanent = False
    kind = "server_error"


class AssetsUnavailable(AssetsError):
    """No answer at all: connection refused or reset, DNS, TLS, or a timeout."""

    permanent = False
    kind = "unavailable"


class AssetsTimedOut(AssetsUnavailable):
    """The whole answer did not arrive within the call's timeout (`waited` seconds): Assets
    may be slow rather than away, and may have done what it was asked."""

    waited = 0.0


@dataclass(frozen=True)
class StartedExecution:
    execution_id: str
    links: dict[str, str]


@dataclass(frozen=True)
class RemoteSchedule:
    """An import schedule as Assets holds it (frequency read under either field name)."""

    schedule_id: str
    frequency: str
    start_time: str
    timezone: str
    callback_url: str

    @classmethod
    def from_answer(cls, answer: Any, schedule_id: str = "") -> RemoteSchedule:
        answer = answer if isinstance(answer, dict) else {}
        return cls(
            schedule_id=str(answer.get("id") or schedule_id),
            frequency=str(answer.get("runFrequency") or answer.get("runInterval") or ""),
            start_time=str(answer.get("startTime") or ""),
            timezone=str(answer.get("timezone") or ""),
            callback_url=str(answer.get("callbackUrl") or ""),
        )


def schedule_body(*, frequency: str, start_time: str, timezone: str, callback_url: str) -> dict:
    # The tutorial names the frequency runFrequency, the published reference runInterval:
    # send both, read either.
    return {
        "runFrequency": frequency,
        "runInterval": frequency,
        "startTime": start_time,
        "timezone": timezone,
        "callbackUrl": callback_url,
    }


# Assets' words for an execution it is done with, and whether its records were written.
# Cancelled in Assets (by someone there, or timed out) was not asked for here: a failure.
_OUTCOMES = {
    "DONE": "DONE",
    "COMPLETED": "DONE",
    "FINISHED": "DONE",
    "SUCCESS": "DONE",
    "FAILED": "FAILED",
    "ERROR": "FAILED",
    "CANCELLED": "FAILED",
    "CANCELED": "FAILED",
}


def outcome_of(word: str) -> str | None:
    """ "DONE" or "FAILED" for a status word Assets uses once it is done with an execution
    (written in part, `COMPLETED_WITH_ERRORS`, is a failure worth a look); None while it
    is not (INGESTING, PROCESSING, a word this app does not know)."""
    word = (word or "").upper()
    if word.endswith(("_WITH_ERRORS", "_WITH_ERROR")):
        return "FAILED"
    return _OUTCOMES.get(word)


# Where an execution's status word may stand: the documented body says little of its shape,
# so the usual names are read, at the top and one level down (`{"execution": {"status":
# "DONE"}}`, `{"status": {"value": "DONE"}}`).
_STATUS_KEYS = ("status", "state", "executionStatus")
# Objects that hold the execution's status under a status key (not their own name or id).
_STATUS_HOLDERS = ("execution", "progress", "result", "data")
# What names the word in a status given as an object of its own.
_WORD_KEYS = ("value", "name", "key", "code", *_STATUS_KEYS)


def _status_word(answer: dict) -> str:
    """The status word of a status answer ("" when none is found)."""
    for holder in (answer, *(answer.get(name) for name in _STATUS_HOLDERS)):
        if not isinstance(holder, dict):
            continue
        for key in _STATUS_KEYS:
            value = holder.get(key)
            if isinstance(value, dict):  # {"status": {"value": "DONE"}}
                words = (value.get(k) for k in _WORD_KEYS)
                value = next((w for w in words if isinstance(w, str) and w.strip()), "")
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ""


@dataclass(frozen=True)
class ExecutionStatus:
    status: str
    raw: dict[str, Any]


# The links Assets gives with a new execution, and the segment that follows the execution's
# id in each (.../{id}/data); `cancel` is the execution's own address (.../executions/{id}).
_ID_IN_LINKS = (("submitResults", "data"), ("getExecutionStatus", "status"), ("cancel", ""))


def execution_id_from_links(links: dict[str, str]) -> str:
    """The execution id: the second-last path segment of links.submitResults (.../{id}/data),
    or read from the other links Assets gives when that one is missing or unusable."""
    for name, after_id in _ID_IN_LINKS:
        parts = [part for part in str(links.get(name) or "").split("?")[0].split("/") if part]
        if after_id and len(parts) >= 2 and parts[-1] == after_id:
            return parts[-2]
        if not after_id and len(parts) >= 2 and parts[-2] == "executions":
            return parts[-1]
    raise AssetsBadRequest(
        "Starting the import: Assets answered 200, so it started an execution, but its answer "
        f"names it in none of its links (links given: {', '.join(sorted(links)) or 'none'}). "
        "Assets counts the import as running until that execution times out there: cancel it "
        "in Assets, then start again"
    )


def _taken_mark(encoded: list[bytes]) -> str:
    """What a page's first items sent to Assets are: their count, and a digest of them."""
    digest = hashlib.blake2b(b"\n".join(encoded), digest_size=8).hexdigest()
    return f"{len(encoded)}:{digest}"


def _still_taken(encoded: list[bytes], taken: str) -> int:
    """How many of a page's first items Assets took at an earlier attempt: none unless the
    page read again starts with those very items (a source may change a page between two
    reads: skipping by count alone would leave records out)."""
    count = taken.partition(":")[0]
    if not count.isdecimal() or int(count) > len(encoded):
        return 0
    return int(count) if _taken_mark(encoded[: int(count)]) == taken else 0


def truncate_reason(reason: str, limit: int = FAILURE_REASON_LIMIT) -> str:
    """Assets takes at most 1024 characters, counted as Java counts them (UTF-16 units: an
    emoji is two); keep the start, which says what failed."""
    if _java_length(reason) <= limit:
        return reason
    kept, used = [], 0
    for character in reason:
        used += _java_length(character)
        if used > limit - 1:  # room for the "…"
            break
        kept.append(character)
    return "".join(kept) + "…"


def _java_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _error_detail(response: requests.Response, secrets: list[str]) -> str:
    """Assets' own words for an error, without secrets; redacted before they are cut short,
    so no part of a secret is left at the cut."""
    text = redact(response.text[:20000].strip(), secrets)
    try:
        body = response.json()
    except ValueError:
        return page_title(text) if text.startswith("<") else text[:300]
    if isinstance(body, dict):
        messages = list(body.get("errorMessages") or [])
        errors = body.get("errors")
        if isinstance(errors, dict):
            messages += [f"{key}: {value}" for key, value in errors.items()]
        if body.get("message"):
            messages.append(str(body["message"]))
        if messages:
            return redact("; ".join(str(message) for message in messages), secrets)[:500]
    return text[:300]


STARTING = "Starting the import"
SUBMITTING = "Submitting a chunk"
COMPLETING = "Marking the submission completed"
REPORTING = "Reporting the failure to import history"
# Calls on one execution: a 409 there means it no longer takes them.
EXECUTION_CALLS = frozenset({SUBMITTING, COMPLETING, REPORTING})
# Calls on the execution's data endpoint: a 404 there means the execution, or the import
# source it belongs to, is gone (the import source deleted in Jira, perhaps created again).
DATA_CALLS = frozenset({SUBMITTING, COMPLETING})
# Calls on the import source itself: a 404 there means the ids (or the source) are wrong.
PUSHING_MAPPING = "Pushing the mapping"
READING_MAPPING = "Reading the mapping"
CREATING_SCHEDULE = "Creating the import schedule"
SOURCE_CALLS = frozenset({PUSHING_MAPPING, READING_MAPPING, STARTING, CREATING_SCHEDULE})

_ERRORS_BY_STATUS = {
    400: (AssetsBadRequest, "Assets rejected the request (400)"),
    401: (
        AssetsAuthError,
        "Assets refused the token (401): generate a new token for the import source",
    ),
    403: (
        AssetsAuthError,
        "Assets denied access (403): the token does not belong to this import source",
    ),
    404: (AssetsNotFound, "Assets does not know this workspace, import source or execution (404)"),
    409: (AssetsConflict, "Assets reports a conflict (409)"),
    413: (AssetsBadRequest, "Assets refused the request as too large (413)"),
    429: (AssetsRateLimited, "Assets is rate limiting us (429)"),
}


def error_for_response(
    response: requests.Response, action: str, *, secrets: list[str] | None = None
) -> AssetsError:
    """The typed error for a non-2xx answer; Assets' own text is quoted without `secrets` (it
    may echo what it was sent) or anything shaped like a credential."""
    status = response.status_code
    error_class, summary = _ERRORS_BY_STATUS.get(status, (None, None))
    if error_class is None:
        if status >= 500:
            error_class, summary = AssetsServerError, f"Assets answered {status}, a server error"
        else:
            error_class, summary = AssetsBadRequest, f"Assets answered {status}"
    if status == 404 and action in SOURCE_CALLS:
        summary += (
            ": check the source's workspace id and import source id (an import source "
            "deleted in Assets is gone: create it again and give its new id and token)"
        )
    if status == 404 and action in DATA_CALLS:
        summary = (
            "Assets does not know this import's execution or its import source (404): check "
            "in Assets that the import source still exists, and that the source's import "
            "source id is the one Assets shows (an import source deleted and created again in "
            "Jira has a new id, and needs a new token); then run the import again"
        )
    if status == 409 and action in EXECUTION_CALLS:
        summary += (
            ": the execution no longer takes this (it was cancelled, completed or timed out "
            "in Assets)"
        )
    if status == 409 and action == STARTING:
        summary = (
            "Assets reports a conflict (409): an import of this import source is still running "
            "there. If none runs here, Assets counts one that ended here without hearing it "
            "(it is told again within minutes), or one whose start was never answered (it "
            "runs until it times out in Assets): cancel it in Assets to import now"
        )
    detail = _error_detail(response, secrets or [])
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 and retry_after is not None:
        summary = f"{summary}, and asks us to wait {retry_after:g} s"
    message = f"{action}: {summary}" + (f": {detail}" if detail else "")
    return error_class(message, status=status, retry_after=retry_after)


class AssetsClient:
    """Calls the Imports API of one import source with its token."""

    def __init__(
        self,
        *,
        base_url: str,
        workspace_id: str,
        import_source_id: str,
        token: str,
        timeout: float | None = None,
    ):
        # A user and password in the address would go as Basic auth in place of the token:
        # the form refuses them, and one saved before is not sent.
        base_url = without_credentials(base_url)
        self.root = (
            f"{base_url.rstrip('/')}/jsm/assets/workspace/{workspace_id}"
            f"/v1/importsource/{import_source_id}"
        )
        self.timeout = timeout if timeout is not None else settings.HTTP_TIMEOUT
        self.host = public_url(base_url)
        # Kept to scrub it from Assets' own error texts, which may quote what they were sent.
        self._token = token
        self.session = mount_deadline_adapter(RemoteSession())
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )

    @classmethod
    def for_source(cls, source) -> AssetsClient:
        return cls(
            base_url=source.assets_base_url,
            workspace_id=source.workspace_id,
            import_source_id=source.import_source_id,
            token=source.assets_token,
        )

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        body: Any = None,
        *,
        encoded: bytes = b"",
        timeout: float | None = None,
    ) -> Any:
        """One request, whose whole answer must arrive within the timeout: a proxy that
        drips its answer a byte at a time keeps each read within a socket timeout, and
        would hold the worker (and the page's lease) as long as it likes. `encoded`: the
        body, already JSON; `timeout`: longer than the client's, for this call."""
        url = self.root + path
        timeout = max(timeout or 0.0, self.timeout)
        deadline = time.monotonic() + timeout
        reset = request_deadline.set(deadline)
        if body is not None:
            encoded = json_codec.encode(body)
        try:
            response = self.session.request(
                method,
                url,
                data=encoded or None,
                headers={"Content-Type": "application/json"} if encoded else None,
                timeout=timeout,
                stream=True,
            )
            with until(deadline, response) as watch:
                response.content  # noqa: B018 (read here, by the deadline)
            if watch.cut:  # a body cut off may still read as whole (no length given)
                raise AnswerTooSlow("the answer did not arrive before the deadline")
        except (requests.RequestException, AnswerTooSlow) as exc:
            if isinstance(exc, (requests.Timeout, AnswerTooSlow)) or time.monotonic() >= deadline:
                raise self._timed_out(action, timeout, sent=bool(encoded)) from None
            if lost_after_connecting(exc):
                raise AssetsUnavailable(
                    f"{action}: the connection to Assets at {self.host} broke before its "
                    f"answer came ({why_unreachable(exc)}); Assets may have received the "
                    "request all the same"
                ) from None
            advice = (
                ""
                if isinstance(exc, requests.exceptions.ProxyError)
                else ": check the Assets API base URL"
            )
            raise AssetsUnavailable(
                f"{action}: could not reach Assets at {self.host} ({why_unreachable(exc)}){advice}"
            ) from None
        finally:
            request_deadline.reset(reset)
        if not response.ok:
            raise error_for_response(response, action, secrets=[self._token])
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _timed_out(self, action: str, waited: float, *, sent: bool) -> AssetsTimedOut:
        """The error of a call whose answer did not come within `waited` seconds (`sent`: it
        carried a body Assets may have acted on)."""
        longer = waited > self.timeout
        late = (
            "answered a page of this import too late"
            if action == SUBMITTING
            else "had answered this import too late"
        )
        which = (
            f"longer than HTTP_TIMEOUT = {self.timeout:g} s, as it {late}"
            if longer
            else "HTTP_TIMEOUT"
        )
        message = f"{action}: Assets did not answer within {waited:g} s ({which})"
        if sent:
            message += (
                "; it may have received the request all the same. If Assets is this slow, "
                "raise HTTP_TIMEOUT"
            )
            if longer:  # the wait is bounded by what a chunk task has room for
                message += " and Q_TASK_TIMEOUT"
        error = AssetsTimedOut(message)
        error.waited = waited
        return error

    def put_mapping(self, document: dict) -> None:
        self._call("PUT", "/mapping", PUSHING_MAPPING, document)

    def get_mapping(self) -> dict:
        return self._call("GET", "/schema-and-mapping", READING_MAPPING) or {}

    def start_execution(self, *, scheduled: bool = False) -> StartedExecution:
        body = {"scheduled": True} if scheduled else None
        answer = self._call("POST", "/executions", STARTING, body) or {}
        links = answer.get("links") if isinstance(answer, dict) else None
        return StartedExecution(
            execution_id=execution_id_from_links(links if isinstance(links, dict) else {}),
            links=links,
        )

    def submit_chunk(
        self,
        execution_id: str,
        data: dict[str, list],
        taken: str = "",
        *,
        timeout: float | None = None,
    ) -> None:
        """Send a page's data. A page larger than ASSETS_MAX_SUBMIT_BYTES goes in parts,
        each a run of its items in order (an item and the objects nested in it go whole), and
        so does one Assets refuses as too large (413): parts are halved until an item goes
        alone. `taken`: what an earlier attempt got Assets to take (`parts_taken`), not sent
        again if the page holds those very items first; an error says what was taken in all
        (`items_taken`). `timeout`: seconds to wait for each answer, when Assets answered a
        page later than HTTP_TIMEOUT (`AssetsTimedOut`)."""
        path = f"/executions/{execution_id}/data"
        limit = settings.ASSETS_MAX_SUBMIT_BYTES
        if not taken:
            whole = json_codec.encode({"data": data})
            if len(whole) <= limit:
                try:
                    return self._call("POST", path, SUBMITTING, encoded=whole, timeout=timeout)
                except AssetsError as error:
                    if error.status != 413:
                        raise
                    limit = len(whole) // 2
        items = [(selector, item) for selector, listed in data.items() for item in listed]
        encoded = [json_codec.encode(item) for _, item in items]
        sent = _still_taken(encoded, taken)
        while sent < len(items):
            end, size = sent + 1, len(encoded[sent]) + 1
            while end < len(items) and size + len(encoded[end]) + 1 <= limit:
                size, end = size + len(encoded[end]) + 1, end + 1
            part: dict[str, list] = {}
            for selector, item in items[sent:end]:
                part.setdefault(selector, []).append(item)
            try:
                self._call("POST", path, SUBMITTING, {"data": part}, timeout=timeout)
            except AssetsError as error:
                if error.status == 413 and end - sent > 1:
                    limit = size // 2
                    continue
                if error.status == 413:
                    error.message += (
                        ". It held one record alone (with what is nested in it): check the "
                        "source's records for a huge value"
                    )
                error.items_taken = _taken_mark(encoded[:sent]) if sent else ""
                raise
            sent = end
        return None

    def mark_completed(self, execution_id: str, *, timeout: float | None = None) -> None:
        """`timeout`: as `submit_chunk`'s, for an import Assets answered late."""
        self._call(
            "POST",
            f"/executions/{execution_id}/data",
            COMPLETING,
            {"completed": True},
            timeout=timeout,
        )

    def report_failure(self, execution_id: str, reason: str) -> None:
        self._call(
            "POST",
            f"/executions/{execution_id}/history/failed",
            REPORTING,
            {"failureReason": truncate_reason(reason)},
        )

    def get_execution_status(
        self, execution_id: str, *, timeout: float | None = None
    ) -> ExecutionStatus:
        """`timeout`: as `submit_chunk`'s, for an import Assets answered late."""
        answer = self._call(
            "GET",
            f"/executions/{execution_id}/status",
            "Reading the execution status",
            timeout=timeout,
        )
        answer = answer if isinstance(answer, dict) else {}
        status = _status_word(answer)
        if not status:  # a proxy's page, or an answer of another shape: read again
            shape = ", ".join(sorted(map(str, answer))[:8])
            raise AssetsServerError(
                "Reading the execution status: Assets answered without a status (not JSON, "
                f"or no 'status' in it{f'; its keys: {shape}' if shape else ''})"
            )
        return ExecutionStatus(status=status.upper(), raw=answer)

    def cancel_execution(self, execution_id: str) -> None:
        self._call("DELETE", f"/executions/{execution_id}", "Cancelling the execution")

    def create_schedule(self, body: dict) -> RemoteSchedule:
        answer = self._call("POST", "/importschedule", CREATING_SCHEDULE, body)
        schedule = RemoteSchedule.from_answer(answer)
        if not schedule.schedule_id:
            raise AssetsBadRequest("Creating the import schedule: Assets answered without an id")
        return schedule

    def get_schedule(self, schedule_id: str) -> RemoteSchedule:
        answer = self._call("GET", f"/importschedule/{schedule_id}", "Reading the import schedule")
        return RemoteSchedule.from_answer(answer, schedule_id)

    def update_schedule(self, schedule_id: str, body: dict) -> RemoteSchedule:
        answer = self._call(
            "PUT", f"/importschedule/{schedule_id}", "Updating the import schedule", body
        )
        return RemoteSchedule.from_answer(answer, schedule_id)

    def delete_schedule(self, schedule_id: str) -> None:
        self._call("DELETE", f"/importschedule/{schedule_id}", "Deleting the import schedule")
