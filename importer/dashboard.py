"""Figures for the admin dashboard: imports per day, success rate, records and duration per run.

Charts are drawn as inline SVG on the server (importer/charts.py): no library, no JavaScript.
"""

from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from importer.charts import Series, bar_chart
from importer.models import Execution

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


def _seconds(run: Execution) -> float:
    return run.duration.total_seconds() if run.duration else 0.0


def runs_charts(runs: list[Execution]) -> tuple:
    labels = [f"#{run.pk}" for run in runs]
    every = max(1, len(runs) // 10)
    done = [run.state == State.DONE for run in runs]

    def by_outcome(value) -> tuple[list[Series], list[Series]]:
        """The done and failed series of `value(run)`, and which one each run belongs to
        (a failed run that sent nothing in no time still shows as failed)."""
        values = [value(run) for run in runs]
        series = [
            Series("done", DONE_COLOUR, [v if d else 0 for v, d in zip(values, done, strict=True)]),
            Series(
                "failed", FAILED_COLOUR, [0 if d else v for v, d in zip(values, done, strict=True)]
            ),
        ]
        return series, [series[0] if d else series[1] for d in done]

    series, marks = by_outcome(lambda run: run.records_submitted)
    records = bar_chart(
        labels,
        series,
        y_label="records sent",
        x_label="run (execution number, oldest first)",
        title="Records per run",
        label_every=every,
        zero_marks=marks,
    )
    longest = max((_seconds(run) for run in runs), default=0)
    unit, divisor = ("minutes", 60) if longest >= 600 else ("seconds", 1)
    series, marks = by_outcome(lambda run: _seconds(run) / divisor)
    durations = bar_chart(
        labels,
        series,
        y_label=unit,
        x_label="run (execution number, oldest first)",
        title="Duration per run",
        label_every=every,
        zero_marks=marks,
    )
    return records, durations


def dashboard_context() -> dict:
    per_day = imports_per_day()
    runs = recent_runs()
    rate = success_rate()
    records_chart, duration_chart = runs_charts(runs)
    return {
        "success_rate": None if rate is None else round(rate, 1),
        "per_day": per_day,
        "imports_chart": imports_chart(per_day),
        "records_chart": records_chart,
        "duration_chart": duration_chart,
        "failures": latest_failures(),
    }
