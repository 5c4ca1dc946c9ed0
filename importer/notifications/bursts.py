"""Many alerts at once: a channel is sent ALERT_BURST_LIMIT alerts one by one in
BURST_WINDOW; the others of that spell are folded, and once they stop coming the channel gets
one summary naming them. Twenty sources failing together (Assets down at night) are five
messages and a summary, not twenty mails and twenty posts."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from importer.models import Alert, Delivery, NotificationChannel
from importer.notifications.messages import SUMMARY_LISTED, summary_content

DState = Delivery.State
BURST_WINDOW = timedelta(minutes=10)
# A summary is told once no alert was folded for this long, or its first one waited the
# window through (alerts that never stop are summed up every BURST_WINDOW).
QUIET_BEFORE_SUMMARY = timedelta(minutes=1)
# Never folded: they tell of the channel itself, or are summaries already.
NEVER_FOLDED = [Alert.Kind.TEST, Alert.Kind.MISSED, Alert.Kind.SUMMARY]


def folds(channel: NotificationChannel, kind: str) -> bool:
    """Inside raise_alert's transaction: whether an alert of `kind` is folded on `channel`,
    which was sent its fill of alerts one by one in the last BURST_WINDOW. The channel is
    locked, so alerts raised at once are counted one after the other."""
    limit = settings.ALERT_BURST_LIMIT
    if not limit or kind in NEVER_FOLDED:
        return False
    list(NotificationChannel.objects.select_for_update().filter(pk=channel.pk).values_list("pk"))
    sent_one_by_one = (
        Delivery.objects.filter(channel=channel, created_at__gte=timezone.now() - BURST_WINDOW)
        .exclude(state=DState.FOLDED)
        .exclude(alert__kind__in=NEVER_FOLDED)
    )
    return sent_one_by_one.count() >= limit


def tell_folded_alerts(now=None) -> list[Alert]:
    """Housekeeping: each enabled channel whose folded alerts stopped coming is told them in
    one summary. Each folded delivery is claimed by a conditional UPDATE, so it is named once
    though two housekeepings run at once."""
    # Imported here: events.py decides folding with this module.
    from importer.notifications.events import raise_alert

    now = now or timezone.now()
    waiting = Delivery.objects.filter(
        state=DState.FOLDED, summarized_at=None, channel__enabled=True
    )
    told = []
    for channel in NotificationChannel.objects.filter(pk__in=waiting.values("channel")):
        spell = waiting.filter(channel=channel).aggregate(
            first=Min("created_at"), last=Max("created_at")
        )
        if now - spell["last"] < QUIET_BEFORE_SUMMARY and now - spell["first"] < BURST_WINDOW:
            continue  # still coming
        unreported = list(waiting.filter(channel=channel).values_list("pk", flat=True))
        with transaction.atomic():
            claimed = Delivery.objects.filter(
                pk__in=unreported, state=DState.FOLDED, summarized_at=None
            ).update(summarized_at=now)
            if not claimed:
                continue  # another housekeeping's summary names them
            alerts = Alert.objects.filter(
                deliveries__channel=channel,
                deliveries__pk__in=unreported,
                deliveries__summarized_at=now,
            )
            span = alerts.aggregate(first=Min("created_at"), last=Max("created_at"))
            kinds = list(alerts.values_list("kind", flat=True))
            listed = list(
                alerts.select_related("source").order_by("created_at", "pk")[:SUMMARY_LISTED]
            )
            summary = raise_alert(
                key=f"channel-{channel.pk}-summary-{listed[0].pk}",
                kind=Alert.Kind.SUMMARY,
                content=summary_content(listed, kinds=kinds, window=BURST_WINDOW, **span),
                channels=[channel],
            )
        if summary is not None:
            told.append(summary)
    return told
