"""Sending an alert through a channel, with retries: e-mail through Django's mail framework,
webhooks through one HTTP seam. Runs in django-q2 tasks only: the delivery's own task, or the
task that ended the import (`delivering_here`)."""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
import smtplib
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F, Q
from django.utils import timezone

from importer import work_queue
from importer.deadline import (
    AnswerTooSlow,
    cut_off_at,
    mount_deadline_adapter,
    request_deadline,
)
from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.formats import webhook_payload
from importer.notifications.mail_deadline import mail_connection_within
from importer.notifications.messages import duration_text, when_text
from importer.redaction import redact, remember_secrets
from importer.spawn import in_cluster_worker

logger = logging.getLogger(__name__)

DState = Delivery.State
# Seconds before the 2nd, 3rd, ... attempt; after the last, the delivery has failed.
RETRY_DELAYS = (30, 120, 600, 1800)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
USER_AGENT = "assets-sync alerts"


# A channel whose last attempt failed is tried by one alert at a time, and at most once in
# this many seconds; its other alerts wait their turn (using up no attempt), so a receiver
# that hangs holds one worker for ALERT_TIMEOUT now and then, not every worker at once.
# Below the first retry delay: a lone alert is retried as before.
FAILING_CHANNEL_TRIED_EVERY_SECONDS = 25
# An alert waiting that long for a failing channel is given up, as its retries would have.
WAITING_GIVEN_UP_AFTER = timedelta(seconds=sum(RETRY_DELAYS) + 300)


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


def _hide(text: str, channel: NotificationChannel) -> str:
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
    body = _hide(" ".join(text.split()), channel)[:200]  # hidden first: no secret cut in two
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


_here = threading.local()


def sends_here() -> bool:
    """Whether this thread may make an alert's first attempt itself: a task on a cluster
    worker's own thread, never a web request, a command (it may exit while sending) or the
    ticker's thread (it only talks to the database and the broker)."""
    return in_cluster_worker() and threading.current_thread() is threading.main_thread()


@contextmanager
def delivering_here():
    """The deliveries recorded within are tried at once by this thread, not queued, when it
    may send (`sends_here`), until the sends have taken `inline_budget` between them."""
    before = getattr(_here, "on", False)
    _here.on = before or sends_here()
    if not before:
        _here.spent = 0.0
    try:
        yield
    finally:
        _here.on = before


def inline_budget() -> float:
    """Seconds a task may spend sending alerts itself: one channel that hangs uses them up,
    and the channels after it are queued, so the task that ended an import (or housekeeping)
    is held for one timeout, not one per channel."""
    return settings.ALERT_TIMEOUT


def deliver_now_or_queue(delivery_id: int) -> None:
    """After the delivery is committed: its first attempt here (`delivering_here`), or its
    task. A failed attempt is retried by a task, as any; an error before the attempt leaves
    it to its task."""
    if not getattr(_here, "on", False) or getattr(_here, "spent", 0.0) >= inline_budget():
        work_queue.enqueue_delivery(delivery_id)
        return
    started = time.monotonic()
    try:
        delivery = Delivery.objects.select_related("alert", "channel").get(pk=delivery_id)
        send_delivery(delivery=delivery)
    except Exception:
        logger.exception("delivery %s: left to its task", delivery_id)
        work_queue.enqueue_delivery(delivery_id)
    finally:
        _here.spent = getattr(_here, "spent", 0.0) + time.monotonic() - started


def _claim(delivery: Delivery) -> bool:
    """PENDING → SENDING for this task only: a task delivered twice sends once."""
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=delivery.pk, state=DState.PENDING, attempts=delivery.attempts)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(state=DState.SENDING, attempts=F("attempts") + 1, updated_at=now)
    )
    if claimed:
        delivery.attempts += 1
    return bool(claimed)


def send_delivery(*, delivery: Delivery) -> Delivery:
    """Send once; on failure try again later (RETRY_DELAYS) or give up. Never raises.

    While its channel is failing, a delivery waits for its turn to try it (no attempt is
    used up by waiting); a test message is sent at once, to see whether the channel works.
    """
    probing = False
    if delivery.alert.kind != Alert.Kind.TEST:
        wait, probing = _turn_to_try(delivery.channel)
        if wait:
            return _hold_back(delivery, wait)
    try:
        return _send(delivery)
    finally:
        if probing:  # the try is over (or was not this task's): the next one may come
            NotificationChannel.objects.filter(pk=delivery.channel_id).update(probing_until=None)


def _send(delivery: Delivery) -> Delivery:
    if not _claim(delivery):
        return delivery
    channel = delivery.channel
    now = timezone.now()
    try:
        if not channel.enabled:
            raise DeliveryError("The channel was disabled.", permanent=True)
        SENDERS[channel.kind](channel, as_sent(delivery.alert, now))
    except DeliveryError as error:
        return _failed(delivery, error)
    except Exception as error:  # a bug here must not leave the delivery SENDING for ever
        logger.exception("delivery %s: unexpected error", delivery.pk)
        return _failed(delivery, DeliveryError(f"unexpected error: {type(error).__name__}"))
    sent = Delivery.objects.filter(pk=delivery.pk, state=DState.SENDING).update(
        state=DState.SENT, sent_at=now, error="", next_attempt_at=None, updated_at=now
    )
    NotificationChannel.objects.filter(pk=channel.pk).update(last_success_at=now)
    if sent and delivery.alert.kind != Alert.Kind.TEST:
        _tell_missed(channel)
    delivery.refresh_from_db()
    return delivery


# An alert sent this long after it was raised (its channel failed meanwhile) says so first.
SENT_LATE_AFTER = timedelta(minutes=5)


def as_sent(alert: Alert, now) -> Alert:
    """The alert as it goes out `now`: one that waits for its channel arrives with the alerts
    raised after it, in any order, and a failure arriving after the recovery that ended it
    must not read as news, so its text starts with when it was raised."""
    late = now - alert.created_at
    if late < SENT_LATE_AFTER or alert.kind == Alert.Kind.TEST:
        return alert
    sent = copy.copy(alert)
    sent.text = (
        f"Sent late: raised {when_text(alert.created_at)} ({duration_text(late.total_seconds())} "
        f"ago); the channel did not take it until now.\n{alert.text}"
    )
    return sent


def _tell_missed(channel: NotificationChannel) -> None:
    """The channel works: it hears of the alerts given up on it meanwhile (missed.py)."""
    # Imported here: telling raises an alert, and events.py imports this module.
    from importer.notifications.missed import tell_missed_alerts

    try:
        tell_missed_alerts(channel)
    except Exception:  # the next success through the channel tells them
        logger.exception("channel %s: the alerts it missed could not be told", channel.pk)


def _turn_to_try(channel: NotificationChannel) -> tuple[float, bool]:
    """(seconds to wait, whether this alert holds the failing channel's one try now). A
    channel that answers is tried by every alert at once: (0, False)."""
    channel.refresh_from_db(fields=["enabled", "last_error_at", "last_success_at"])
    if not channel.enabled or not channel.is_failing:
        return 0, False
    now = timezone.now()
    since = (now - channel.last_error_at).total_seconds()
    if since < FAILING_CHANNEL_TRIED_EVERY_SECONDS:
        return FAILING_CHANNEL_TRIED_EVERY_SECONDS - since, False
    # Held for as long as a try may last (it is let go as it ends): a webhook's answer, or
    # a whole conversation with the mail server, ends within ALERT_TIMEOUT.
    longest = settings.ALERT_TIMEOUT + 5
    taken = (
        NotificationChannel.objects.filter(pk=channel.pk)
        .filter(Q(probing_until__isnull=True) | Q(probing_until__lt=now))
        .update(probing_until=now + timedelta(seconds=longest))
    )
    return (0, True) if taken else (FAILING_CHANNEL_TRIED_EVERY_SECONDS, False)


def _hold_back(delivery: Delivery, wait: float) -> Delivery:
    """Put the delivery off to its turn, its attempts untouched; given up once it is as old
    as its retries would have made it, so a channel down for hours builds no backlog."""
    now = timezone.now()
    channel = delivery.channel
    channel.refresh_from_db(fields=["last_error"])
    due = Delivery.objects.filter(
        pk=delivery.pk, state=DState.PENDING, attempts=delivery.attempts
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    if now - delivery.created_at > WAITING_GIVEN_UP_AFTER:
        minutes = round((now - delivery.created_at).total_seconds() / 60)
        error = (
            f"gave up after waiting {minutes} min for the channel, which failed throughout "
            f"(its last error: {channel.last_error})"
        )
        due.update(state=DState.FAILED, next_attempt_at=None, error=error[:1000], updated_at=now)
        delivery.refresh_from_db()
        return delivery
    wait += random.uniform(0, 5)  # the alerts held back together do not all come back at once
    error = (
        f"waiting its turn: the channel is failing (its last error: {channel.last_error}); "
        "one alert at a time tries it until it answers again"
    )
    held = due.update(
        next_attempt_at=now + timedelta(seconds=wait), error=error[:1000], updated_at=now
    )
    if held:
        work_queue.enqueue_delivery_after(delivery.pk, wait)
    delivery.refresh_from_db()
    return delivery


def _failed(delivery: Delivery, error: DeliveryError) -> Delivery:
    channel = delivery.channel
    now = timezone.now()
    message = _hide(error.message, channel)[:1000]
    # A test message tells whether the channel works now: tried again later, it would arrive
    # long after, once someone mended the channel, and tell of nothing.
    test = delivery.alert.kind == Alert.Kind.TEST
    retry = not error.permanent and delivery.attempts < MAX_ATTEMPTS and not test
    if retry:
        delay = RETRY_DELAYS[delivery.attempts - 1]
        Delivery.objects.filter(pk=delivery.pk, state=DState.SENDING).update(
            state=DState.PENDING,
            next_attempt_at=now + timedelta(seconds=delay),
            error=f"attempt {delivery.attempts} failed, retrying in {delay} s: {message}",
            updated_at=now,
        )
        work_queue.enqueue_delivery_after(delivery.pk, delay)
    else:
        Delivery.objects.filter(pk=delivery.pk, state=DState.SENDING).update(
            state=DState.FAILED,
            next_attempt_at=None,
            error=(
                f"the test message failed: {message}"
                if test
                else f"gave up after {delivery.attempts} attempt(s): {message}"
            ),
            updated_at=now,
        )
    if channel.enabled:
        NotificationChannel.objects.filter(pk=channel.pk).update(
            last_error=message, last_error_at=now
        )
    logger.warning("alert delivery %s through %s failed: %s", delivery.pk, channel, message)
    delivery.refresh_from_db()
    return delivery


def requeue_lost_deliveries() -> int:
    """Queue again deliveries whose task was lost, or whose worker died while sending.

    A retry waits in a django-q2 schedule (checked every 30 s); one still pending two
    minutes after its time was lost. A worker that died while sending may have sent: the
    receiver sees the same X-Assets-Sync-Alert twice.
    """
    now = timezone.now()
    lost = now - timedelta(minutes=2)
    dead = now - timedelta(seconds=settings.Q_TASK_TIMEOUT + 60)
    cut_short = list(
        Delivery.objects.filter(state=DState.SENDING, updated_at__lt=dead).values_list(
            "pk", flat=True
        )[:500]
    )
    # A send cut short as often as a delivery may be tried has had its tries.
    Delivery.objects.filter(
        pk__in=cut_short, state=DState.SENDING, attempts__gte=MAX_ATTEMPTS
    ).update(
        state=DState.FAILED,
        next_attempt_at=None,
        error=f"gave up after {MAX_ATTEMPTS} attempt(s): the send was cut short each time",
        updated_at=now,
    )
    cut_short = list(
        Delivery.objects.filter(pk__in=cut_short, state=DState.SENDING).values_list("pk", flat=True)
    )
    Delivery.objects.filter(pk__in=cut_short, state=DState.SENDING).update(
        state=DState.PENDING, next_attempt_at=None, updated_at=now
    )
    ids = cut_short + list(
        Delivery.objects.filter(state=DState.PENDING, updated_at__lt=lost)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=lost))
        .values_list("pk", flat=True)[:500]
    )
    # Stamped, so that a cluster that is down does not collect one more task every minute.
    Delivery.objects.filter(pk__in=ids, state=DState.PENDING).update(updated_at=now)
    for delivery_id in ids:
        work_queue.enqueue_delivery(delivery_id)
    return len(ids)
