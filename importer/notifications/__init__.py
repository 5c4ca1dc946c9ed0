"""Alerts: what people are told when an import fails, is refused, stalls or a source goes
stale, and telling them by e-mail and webhook (see README, "Alerts and metrics")."""

from importer.notifications.delivery import send_delivery
from importer.notifications.events import (
    check_staleness,
    look_after_notifications,
    notify_execution_finished,
    notify_execution_stalled,
    prune_alerts,
    raise_execution_alert,
    send_check_message,
)

__all__ = [
    "check_staleness",
    "look_after_notifications",
    "notify_execution_finished",
    "notify_execution_stalled",
    "prune_alerts",
    "raise_execution_alert",
    "send_check_message",
    "send_delivery",
]
