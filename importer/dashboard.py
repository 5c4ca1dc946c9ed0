"""The admin dashboard: each source's condition, failing alert channels, imports per day,
the success rate and the latest failures.

Charts are drawn as inline SVG on the server (importer/charts.py): no library, no JavaScript.
There is no chart per run: runs of different sources are not comparable (one source's 200k
records flatten another's 300), and each source's latest run is in its row of the status table.
"""

from datetime import timedelta

from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from importer.charts import Series, bar_chart
from importer.models import Execution, NotificationChannel
from importer.notifications.streaks import runs_by_end
from importer.redaction import redact
from importer.source_status import disabled_sources, source_statuses

State = Execution.State
DONE_COLOUR, FAILED_COLOUR, CANCELLED_COLOUR = "#2e7d32", "#c62828", "#757575"


def imports_per_day(days: int = 30) -> list[dict]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        Execution.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            done=Count("id", filter=Q(state=State.DONE)),
            failed=Count("id", filter=Q(state__in=[State.FAILED, State.REFUSED])),
            cancelled=Count("id", filter=Q(state=State.CANCELLED)),
            total=Count("id"),
            records=Sum("records_submitted"),
        )
        .order_by("day")
    )
    return list(rows)


def success_rate(days: int = 30) -> float | None:
    """DONE among the imports that ended, cancelled ones aside: a cancel is someone's choice,
    not a failure of the import."""
    since = timezone.now() - timedelta(days=days)
    counts = (
        Execution.objects.filter(created_at__gte=since, state__in=Execution.FINISHED_STATES)
        .exclude(state=State.CANCELLED)
        .aggregate(done=Count("id", filter=Q(state=State.DONE)), finished=Count("id"))
    )
    if not counts["finished"]:
        return None
    return 100.0 * counts["done"] / counts["finished"]


def latest_failures(limit: int = 10) -> list[Execution]:
    """The latest failed or refused runs, each with the first DONE of its source since
    (`recovered_by`, None while the source has not imported successfully again): the first
    to end after it, as alerts read the order of runs."""
    recovery = (
        runs_by_end(OuterRef("source"))
        .filter(state=State.DONE, finished_at__gt=OuterRef("finished_at"))
        .reverse()
    )
    return list(
        Execution.objects.select_related("source")
        .filter(state__in=[State.FAILED, State.REFUSED])
        .annotate(recovered_by=Subquery(recovery.values("pk")[:1]))
        .order_by("-created_at")[:limit]
    )


def failing_channels() -> list[NotificationChannel]:
    """Enabled alert channels whose last attempt to send failed (`is_failing`), each with
    its last error, scrubbed: a webhook's answer may echo its URL or header."""
    channels = NotificationChannel.objects.filter(enabled=True, last_error_at__isnull=False).filter(
        Q(last_success_at__isnull=True) | Q(last_error_at__gt=F("last_success_at"))
    )
    found = list(channels)
    for channel in found:
        secrets = [channel.webhook_url, channel.secret_header_value]
        channel.error_line = redact(channel.last_error.strip().partition("\n")[0], secrets)
    return found


def _every_day(rows: list[dict], days: int) -> list[dict]:
    """One row per day of the period, days without imports at zero, so the axis is true."""
    by_day = {row["day"]: row for row in rows}
    today = timezone.localdate()
    empty = {"done": 0, "failed": 0, "cancelled": 0, "total": 0, "records": 0}
    return [
        by_day.get(day, {"day": day, **empty})
        for day in (today - timedelta(days=back) for back in range(days - 1, -1, -1))
    ]


def imports_chart(per_day: list[dict]):
    days = _every_day(per_day, 30)
    return bar_chart(
        [f"{row['day']:%d %b}" for row in days],
        [
            Series("done", DONE_COLOUR, [row["done"] for row in days]),
            Series("failed or refused", FAILED_COLOUR, [row["failed"] for row in days]),
            Series("cancelled", CANCELLED_COLOUR, [row["cancelled"] for row in days]),
        ],
        y_label="imports",
        x_label="day (last 30 days)",
        title="Imports per day, by outcome",
        label_every=5,
    )


def dashboard_context() -> dict:
    per_day = imports_per_day()
    rate = success_rate()
    return {
        "statuses": source_statuses(),
        "disabled_sources": disabled_sources(),
        "failing_channels": failing_channels(),
        "success_rate": None if rate is None else round(rate, 1),
        "per_day": per_day,
        "imports_chart": imports_chart(per_day),
        "failures": latest_failures(),
    }
