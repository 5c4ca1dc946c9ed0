"""Sending one alert through one channel: e-mail through Django's mail framework, webhooks
through one HTTP seam, each within ALERT_TIMEOUT.

Kept apart from the delivery's retries: this is what talks to a receiver, and the one place
that keeps a channel's secrets (its webhook URL, its header, the mail password) out of what a
failure says.
"""

from __future__ import annotations

import base64
import json
import smtplib
import time
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.mail import EmailMessage

from importer.deadline import (
    AnswerTooSlow,
    cut_off_at,
    mount_deadline_adapter,
    request_deadline,
)
from importer.models import Alert, NotificationChannel
from importer.notifications.formats import webhook_payload
from importer.notifications.mail_deadline import mail_connection_within
from importer.redaction import redact, remember_secrets

USER_AGENT = "assets-sync alerts"


class DeliveryError(Exception):
    """Sending failed; `permanent` says that trying again would not help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def where(url: str) -> str:
    """A webhook URL as staff and messages may see it: its path may hold a secret."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"
    )


def hide_secrets(text: str, channel: NotificationChannel) -> str:
    return redact(text, _channel_secrets(channel))


def _channel_secrets(channel: NotificationChannel) -> list[str]:
    return [*_webhook_secrets(channel.webhook_url), channel.secret_header_value]


def _mail_secrets() -> list[str]:
    """The mail server's password, and the base64 its AUTH commands carry it in (a server's
    refusal may quote the command it refused)."""
    user, password = settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD
    if not password:
        return []
    sent = [f"\0{user}\0{password}", password, f"{user}\0{password}"]
    return [password, *(base64.b64encode(text.encode()).decode() for text in sent)]


def _webhook_secrets(url: str) -> list[str]:
    """A webhook URL's parts that may be its secret, as a receiver's answer may quote them:
    the path, the query and their token-like pieces (Slack, Teams and Discord URLs carry
    their token in the path). Plain words ("hooks", "services") stay readable."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [url, parts.path, parts.query, f"{parts.path}?{parts.query}"]
    pieces = [*parts.path.split("/"), *(value for _, value in parse_qsl(parts.query))]
    for piece in pieces:
        if len(piece) >= 6 and (len(piece) >= 16 or any(c.isdigit() for c in piece)):
            found.append(piece)
    return [value for value in found if value and value != "/"]


def send_webhook(channel: NotificationChannel, alert: Alert) -> None:
    if not channel.webhook_url:
        raise DeliveryError("The channel has no webhook URL.", permanent=True)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # Lets a receiver drop a copy: a worker that died after sending sends again.
        "X-Assets-Sync-Alert": alert.key,
    }
    if channel.secret_header_name and channel.secret_header_value:
        headers[channel.secret_header_name] = channel.secret_header_value
    target = where(channel.webhook_url)
    remember_secrets(_channel_secrets(channel))  # urllib3's own log lines name the URL
    seconds = settings.ALERT_TIMEOUT
    try:
        status, text, location = _post_within(
            channel.webhook_url,
            json.dumps(webhook_payload(alert, channel.webhook_format)),
            headers,
            seconds,
        )
    except (requests.Timeout, urllib3.exceptions.TimeoutError, AnswerTooSlow):
        raise DeliveryError(f"{target} did not answer within {seconds:g} s")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        # The exception's text repeats the URL, path and all: only its type is kept.
        raise DeliveryError(f"{target} could not be reached ({type(error).__name__})")
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        # Not followed (a webhook's secret would go along), and never mended by a retry.
        raise DeliveryError(
            f"{target} answered {status}, a redirect{_to_where(location)}: give the channel "
            "the address it redirects to",
            permanent=True,
        )
    body = hide_secrets(" ".join(text.split()), channel)[:200]  # hidden first: no secret cut in two
    permanent = 400 <= status < 500 and status not in (408, 429)
    advice = WEBHOOK_ADVICE.get(status, "")
    # The advice before the body: the channels list shows an error's first 120 characters.
    raise DeliveryError(f"{target} answered {status}{advice}: {body}", permanent=permanent)


# What to check when a webhook refuses for good: its address is shown as a host only.
WEBHOOK_ADVICE = {
    404: " (check the channel's webhook URL: mistyped, or the webhook was removed)",
    410: " (the webhook was removed: give the channel a new webhook URL)",
    401: " (check the webhook's token or the channel's secret header)",
    403: " (check the webhook's token or the channel's secret header)",
}


def _to_where(location: str) -> str:
    """Where a redirect points, as a host only (its path may hold a secret)."""
    try:
        return f" to {where(location)}" if urlsplit(location).netloc else ""
    except ValueError:  # a port that is no number
        return ""


def _post_within(url: str, data: str, headers: dict, seconds: float) -> tuple[int, str, str]:
    """POST, and have the whole answer within `seconds`: the socket timeout bounds each read,
    and a receiver that drips its answer would hold the worker as long as it likes."""
    deadline = time.monotonic() + seconds
    session = mount_deadline_adapter(requests.Session())
    token = request_deadline.set(deadline)
    try:
        answer = session.post(
            url, data=data, headers=headers, timeout=seconds, allow_redirects=False, stream=True
        )
        with cut_off_at(deadline, getattr(answer.raw, "shutdown", None)):
            body = answer.raw.read(4096, decode_content=True) or b""
        if time.monotonic() >= deadline:
            raise AnswerTooSlow("the answer did not arrive before the deadline")
        text = body.decode(answer.encoding or "utf-8", errors="replace")
        return answer.status_code, text, answer.headers.get("Location", "")
    finally:
        request_deadline.reset(token)
        session.close()


# An alert is sent by a machine: out-of-office and other automatic replies are not sent back
# to DEFAULT_FROM_EMAIL (RFC 3834; Exchange and Outlook read their own header).
AUTOMATIC_MAIL_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def send_email(channel: NotificationChannel, alert: Alert) -> None:
    recipients = channel.recipient_list()
    if not recipients:
        raise DeliveryError(
            "No recipients: list them on the channel or in the ALERT_EMAILS setting.",
            permanent=True,
        )
    message = EmailMessage(
        subject=alert.subject,
        body=alert.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"X-Assets-Sync-Alert": alert.key, **AUTOMATIC_MAIL_HEADERS},
    )
    seconds = settings.ALERT_TIMEOUT
    started = time.monotonic()
    try:
        with mail_connection_within(seconds, settings.EMAIL_BACKEND) as connection:
            message.connection = connection
            message.send()
    except smtplib.SMTPResponseException as error:
        text = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        raise DeliveryError(
            f"the mail server answered {error.smtp_code}: {redact(text, _mail_secrets())[:200]}",
            permanent=500 <= error.smtp_code < 600,
        )
    except smtplib.SMTPRecipientsRefused as error:
        raise DeliveryError(
            f"the mail server refused {', '.join(error.recipients)}", permanent=True
        )
    except (smtplib.SMTPException, OSError) as error:
        if isinstance(error, TimeoutError) or time.monotonic() - started >= seconds:
            raise DeliveryError(f"the mail server did not answer within {seconds:g} s")
        raise DeliveryError(
            "the mail server could not be reached: "
            + redact(f"{type(error).__name__}: {error}", _mail_secrets())
        )


SENDERS = {
    NotificationChannel.Kind.EMAIL: send_email,
    NotificationChannel.Kind.WEBHOOK: send_webhook,
}
