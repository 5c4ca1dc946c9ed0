"""Telling a channel that works again which alerts it missed: alerts given up while it
failed (an outage longer than their retries) would otherwise be lost without a word."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.events import raise_alert
from importer.notifications.messages import MISSED_LISTED, missed_content

DState = Delivery.State


def tell_missed_alerts(channel: NotificationChannel) -> Alert | None:
    """Once a delivery through `channel` succeeded: one message through it naming the alerts
    given up on it that no such message named yet (test messages aside: they tell only
    whether the channel worked then); None when there are none.

    Several workers may succeed on the channel at once: each given-up delivery is claimed by
    a conditional UPDATE, so each is named once and a worker that claims none sends nothing.
    The message is an alert like any other, retried if it fails; given up in its turn, it
    is itself named by the next one.
    """
    unreported = list(
        Delivery.objects.filter(channel=channel, state=DState.FAILED, reported_missed_at=None)
        .exclude(alert__kind=Alert.Kind.TEST)
        .values_list("pk", flat=True)
    )
    if not unreported:
        return None
    now = timezone.now()
    with transaction.atomic():
        claimed = Delivery.objects.filter(
            pk__in=unreported, state=DState.FAILED, reported_missed_at=None
        ).update(reported_missed_at=now)
        if not claimed:
            return None  # another worker's message names them
        alerts = Alert.objects.filter(
            deliveries__channel=channel,
            deliveries__pk__in=unreported,
            deliveries__reported_missed_at=now,
        )
        span = alerts.aggregate(first=Min("created_at"), last=Max("created_at"))
        listed = list(alerts.select_related("source").order_by("created_at", "pk")[:MISSED_LISTED])
        return raise_alert(
            key=f"channel-{channel.pk}-missed-{listed[0].pk}",
            kind=Alert.Kind.MISSED,
            content=missed_content(listed, channel=channel.name, total=claimed, **span),
            channels=[channel],
        )
