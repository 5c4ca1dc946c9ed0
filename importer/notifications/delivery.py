"""Sending an alert through a channel, with retries: e-mail through Django's mail framework,
webhooks through one HTTP seam. Runs in django-q2 tasks only: the delivery's own task, or the
task that ended the import (`delivering_here`).

The senders themselves are in senders.py, the first attempt made by that task in inline.py."""

from __future__ import annotations

import copy
import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from importer import work_queue
from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.messages import duration_text, when_text
from importer.notifications.senders import SENDERS, DeliveryError, hide_secrets

logger = logging.getLogger(__name__)

DState = Delivery.State
# Seconds before the 2nd, 3rd, ... attempt; after the last, the delivery has failed.
RETRY_DELAYS = (30, 120, 600, 1800)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


# A channel whose last attempt failed is tried by one alert at a time, and at most once in
# this many seconds; its other alerts wait their turn (using up no attempt), so a receiver
# that hangs holds one worker for ALERT_TIMEOUT now and then, not every worker at once.
# Below the first retry delay: a lone alert is retried as before.
FAILING_CHANNEL_TRIED_EVERY_SECONDS = 25
# An alert waiting that long for a failing channel is given up, as its retries would have.
WAITING_GIVEN_UP_AFTER = timedelta(seconds=sum(RETRY_DELAYS) + 300)


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
    message = hide_secrets(error.message, channel)[:1000]
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
