"""A deadline for a whole conversation with the mail server, as webhooks have one
(importer/deadline.py).

smtplib's timeout bounds each socket operation, and a conversation is many: connect, the
greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT for each recipient, DATA and the message, QUIT. A
server that takes nearly the timeout to answer each held the sending worker (the one that
ended the import, sending inline) for a minute and more. Here each step waits at most for
what is left of the deadline, none starts after it, and a reply that drips in byte by byte
is cut off at it by the same watchdog the webhooks use (`cut_off_at`).
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.utils.module_loading import import_string

from importer.deadline import AnswerTooSlow, cut_off_at


class Conversation:
    """One send's connection to the mail server, for the deadline to cut wherever it waits."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.smtp: Any = None

    def left(self) -> float:
        """Seconds left; AnswerTooSlow once none are (the send is given up)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AnswerTooSlow("the mail server did not answer before the deadline")
        return left

    def cut(self) -> None:
        sock = getattr(self.smtp, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on it at once
            except OSError:  # already closed
                pass


class _SmtpWithin:
    """Mixed into smtplib.SMTP (or SMTP_SSL): every step ends by the conversation's deadline."""

    def __init__(self, *args: Any, conversation: Conversation, **kwargs: Any):
        self._conversation = conversation
        conversation.smtp = self
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        left = self._conversation.left()
        if isinstance(timeout, int | float) and timeout > 0:  # else smtplib's "no timeout given"
            left = min(timeout, left)
        return super()._get_socket(host, port, left)  # type: ignore[misc]

    def _bound(self) -> None:
        left = self._conversation.left()
        if getattr(self, "sock", None) is not None:
            self.sock.settimeout(left)  # type: ignore[attr-defined]

    def send(self, data: Any) -> None:
        self._bound()
        super().send(data)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        self._bound()
        return super().getreply()  # type: ignore[misc]

    def quit(self) -> Any:
        """The message went (or the send failed already): an unanswered QUIT fails neither."""
        try:
            return super().quit()  # type: ignore[misc]
        except OSError:  # smtplib's errors included
            self.close()  # type: ignore[attr-defined]
            return None


@functools.cache
def _smtp_within(smtp_class: type) -> type:
    return type(f"Deadline{smtp_class.__name__}", (_SmtpWithin, smtp_class), {})


class _BackendWithin:
    """Mixed into Django's SMTP backend (or a subclass): its connections are `_SmtpWithin`."""

    def __init__(self, *args: Any, conversation: Conversation, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._conversation = conversation

    @property
    def connection_class(self) -> Any:
        smtp_class = super().connection_class  # type: ignore[misc]
        return functools.partial(_smtp_within(smtp_class), conversation=self._conversation)


@functools.cache
def _backend_within(backend_class: type) -> type:
    return type(f"Deadline{backend_class.__name__}", (_BackendWithin, backend_class), {})


@contextmanager
def mail_connection_within(seconds: float, backend_path: str) -> Iterator[Any]:
    """A mail connection (EMAIL_BACKEND's) whose whole conversation with the server ends
    within `seconds`; one that sends no mail itself (the console's, tests') as it is."""
    backend_class = import_string(backend_path)
    if not issubclass(backend_class, SmtpBackend):
        yield backend_class(fail_silently=False)
        return
    conversation = Conversation(time.monotonic() + seconds)
    backend = _backend_within(backend_class)(
        fail_silently=False, timeout=seconds, conversation=conversation
    )
    with cut_off_at(conversation.deadline, conversation.cut):
        yield backend
