"""Figures for the admin dashboard: imports per day, success rate, records and duration per run.

Charts are drawn as small inline SVG on the server: no chart library, no JavaScript.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from importer.models import Execution

State = Execution.State


@dataclass
class Bar:
    label: str
    value: float
    colour: str = "#1565c0"


def imports_per_day(days: int = 30) -> list[dict]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        Execution.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            done=Count("id", filter=Q(state=State.DONE)),
            failed=Count("id", filter=Q(state__in=[State.FAILED, State.REFUSED])),
            total=Count("id"),
            records=Sum("records_submitted"),
        )
        .order_by("day")
    )
    return list(rows)


def success_rate(days: int = 30) -> float | None:
    since = timezone.now() - timedelta(days=days)
    counts = Execution.objects.filter(
        created_at__gte=since, state__in=Execution.FINISHED_STATES
    ).aggregate(done=Count("id", filter=Q(state=State.DONE)), finished=Count("id"))
    if not counts["finished"]:
        return None
    return 100.0 * counts["done"] / counts["finished"]


def recent_runs(limit: int = 40) -> list[Execution]:
    return list(
        Execution.objects.select_related("source")
        .filter(state__in=[State.DONE, State.FAILED])
        .exclude(started_at=None)
        .order_by("-created_at")[:limit]
    )[::-1]


def latest_failures(limit: int = 10) -> list[Execution]:
    return list(
        Execution.objects.select_related("source")
        .filter(state__in=[State.FAILED, State.REFUSED])
        .order_by("-created_at")[:limit]
    )


def bar_chart(bars: list[Bar], *, unit: str = "", height: int = 120, width: int = 720) -> str:
    """A bar chart as inline SVG; each bar's title shows its label and value."""
    if not bars:
        return format_html("<p>{}</p>", "No data yet.")
    top = max(bar.value for bar in bars) or 1
    step = width / len(bars)
    shapes = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}{}</title></rect>',
        (
            (
                round(index * step + 1, 1),
                round(height - bar.value / top * (height - 4), 1),
                round(max(step - 2, 1), 1),
                round(bar.value / top * (height - 4), 1),
                bar.colour,
                bar.label,
                round(bar.value, 1),
                unit,
            )
            for index, bar in enumerate(bars)
        ),
    )
    return format_html(
        '<svg class="dashboard-chart" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="img">{}</svg><div class="help">max {}{}</div>',
        width,
        height,
        width,
        height,
        shapes,
        round(top, 1),
        unit,
    )


def dashboard_context() -> dict:
    per_day = imports_per_day()
    runs = recent_runs()
    rate = success_rate()
    return {
        "success_rate": None if rate is None else round(rate, 1),
        "per_day": per_day,
        "imports_chart": bar_chart(
            [
                Bar(
                    f"{row['day']}: {row['done']} done, {row['failed']} failed",
                    row["total"],
                    "#c62828" if row["failed"] else "#2e7d32",
                )
                for row in per_day
            ],
            unit=" imports",
        ),
        "records_chart": bar_chart(
            [Bar(f"#{run.pk} {run.source}", run.records_submitted) for run in runs],
            unit=" records",
        ),
        "duration_chart": bar_chart(
            [
                Bar(
                    f"#{run.pk} {run.source}",
                    run.duration.total_seconds() if run.duration else 0,
                    "#6a1b9a" if run.state == State.DONE else "#c62828",
                )
                for run in runs
            ],
            unit=" s",
        ),
        "failures": latest_failures(),
    }
