"""Logs without secrets, as plain lines or one JSON object per line (LOG_FORMAT=json), and
Django's error reports (the DEBUG error page, error mails) and django-q2's records of failed
tasks without them either."""

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from importer.redaction import MASK, is_secret_name, redact, secrets_in_use

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_PLAIN_TYPES = (str, int, float, bool, type(None), list, dict)


class RedactSecrets(logging.Filter):
    """Removes credentials and webtrigger tokens from a record before any handler writes it.

    Set on the console handler, and on Django's request loggers themselves, whose lines
    ("Bad Request: /webtrigger/1/<token>/") also reach handlers other than ours. Besides
    credential-shaped text, it removes the secrets of the sources this process reads.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        known = secrets_in_use()
        record.msg, record.args = redact(message, known), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, known)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, known)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _scrubbed_field(key, value, known))
        return True


def redact_task_failure(sender, func, task: dict, **kwargs) -> None:
    """A failed task's text without secrets, before django-q2 stores it (Failed tasks in the
    admin) and its monitor logs it. The text is the traceback of every chained exception: a
    library's own words with the secret in them, behind our redacted error. Runs in the
    worker (`post_execute_in_worker`), the one process that knows the source's secrets."""
    if not task.get("success") and isinstance(task.get("result"), str):
        task["result"] = redact(task["result"], secrets_in_use())


class BriefClientErrors(logging.Filter):
    """A 4xx answer ("Forbidden (Permission denied): /admin/...") is one line: the traceback
    Django attaches says nothing about a user asking for a page they may not see."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info = record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        known = secrets_in_use()
        entry.update(
            # Objects (Django puts the request here) are written as their redacted text.
            {
                key: value if isinstance(value, _PLAIN_TYPES) else redact(str(value), known)
                for key, value in vars(record).items()
                if key not in _STANDARD
            }
        )
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class SecretsHiddenFilter(SafeExceptionReporterFilter):
    """Besides Django's own names, hides every posted field whose name says it holds a
    credential (a source's token, a channel's secret header) and every setting or header
    holding a URL with credentials in it (EMAIL_URL, DATABASE_URL)."""

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        return redact(cleansed, secrets_in_use()) if isinstance(cleansed, str) else cleansed

    def get_post_parameters(self, request):
        parameters = super().get_post_parameters(request)
        if not parameters:
            return parameters
        parameters = parameters.copy()
        for name in list(parameters):
            parameters[name] = self.hidden_if_secret(name, parameters[name])
        return parameters

    def hidden_if_secret(self, name: str, value: Any) -> Any:
        return self.cleansed_substitute if is_secret_name(name) else value


class SecretsHiddenReporter(ExceptionReporter):
    """Django's error report with every text in it redacted: a frame's variables hold URLs
    with keys in them and sources' settings, the request's path a webtrigger token, and the
    exception's message whatever a library put there."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        known = secrets_in_use()
        for items in ("request_GET_items", "request_COOKIES_items", "request_FILES_items"):
            if items in data:  # views of a dict: listed, and credential-named values hidden
                data[items] = [
                    (name, self.filter.hidden_if_secret(name, value)) for name, value in data[items]
                ]
        request = data.get("request")
        if request is not None:
            data["request"] = SimpleNamespace(
                path_info=redact(request.path_info, known),
                META={"REQUEST_METHOD": request.META.get("REQUEST_METHOD", "")},
            )
        return {key: _redacted(value, known) for key, value in data.items()}


def _scrubbed_field(name: Any, value: Any, known: tuple[str, ...]) -> Any:
    """An extra field as LOG_FORMAT=json writes it, without secrets: a library's request
    headers or parameters come as a dict or as (name, value) pairs, a credential-named entry
    is masked whole, and every text is redacted."""
    if isinstance(name, str) and is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, dict):
        return {key: _scrubbed_field(key, item, known) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and is_secret_name(value[0]):
            return [value[0], MASK if value[1] not in (None, "") else value[1]]
        return [_scrubbed_field(None, item, known) for item in value]
    return value


def _redacted(value: Any, known: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, dict):
        return {key: _redacted(item, known) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(item, known) for item in value)
    return value
