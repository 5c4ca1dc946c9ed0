"""Prometheus metrics, computed from the database at each scrape.

The numbers live in the database already (executions, chunks, their counts), and every web
and worker process sees the same database: so any web process answers a scrape with the
whole site's numbers, with no shared directory for prometheus_client's multiprocess mode, no
per-process counters to add up, and nothing lost when a worker restarts. A scrape costs a
handful of grouped queries; the time to DONE is stored on the execution as it ends DONE
(`took_seconds`), so the histogram compares a column rather than working out every
duration of the history at each scrape.

Counters must never go down. Executions only ever move into a final state once, and their
record counts only grow; what the retention task deletes is first added to RunningTotal
(`keep_totals`), and chunk retries, which no row keeps, are counted there as they happen.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from importer.health import last_housekeeping_at
from importer.models import (
    ChunkJob,
    Execution,
    ImportSource,
    NotificationChannel,
    RunningTotal,
    SecondsBetween,
)

State = Execution.State
# Upper bounds (seconds) of the time-to-DONE histogram's buckets.
TIME_TO_DONE_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


# --- running totals ---------------------------------------------------------------------


def _add(source_id: int, name: str, label: str, amount: float) -> None:
    if not amount:
        return
    counted = RunningTotal.objects.filter(source_id=source_id, name=name, label=label)
    if counted.update(value=F("value") + amount):
        return
    try:
        with transaction.atomic():
            RunningTotal.objects.create(source_id=source_id, name=name, label=label, value=amount)
    except IntegrityError:  # created meanwhile by another worker
        counted.update(value=F("value") + amount)


def _raise_to(source_id: int, name: str, value: float) -> None:
    kept = RunningTotal.objects.filter(source_id=source_id, name=name, label="")
    if not kept.update(value=Greatest(F("value"), value)):
        try:
            with transaction.atomic():
                RunningTotal.objects.create(source_id=source_id, name=name, value=value)
        except IntegrityError:
            kept.update(value=Greatest(F("value"), value))


def count_chunk_retry(*, source: ImportSource, reason: str) -> None:
    """A chunk will be tried again after a transient failure of this kind."""
    _add(source.pk, "chunk_retries", reason or "unknown", 1)


def _took():
    # The duration stored when the execution ended DONE. A row without it (written by other
    # means than the transition, such as a test or a hand-made fix) is measured as it always
    # was, rather than left out: a DONE execution missing from the histogram would make its
    # count disagree with assets_sync_executions_total. COALESCE reads the fallback only for
    # those rows, so the long history costs one column read per bucket.
    return Coalesce(F("took_seconds"), SecondsBetween(F("started_at"), F("finished_at")))


def _done_timings(executions):
    """Per source: count, total and bucket counts of the time to DONE, and the last DONE."""
    buckets = {
        f"le_{bound}": Count("id", filter=Q(took__lte=bound)) for bound in TIME_TO_DONE_BUCKETS
    }
    return (
        executions.filter(state=State.DONE, started_at__isnull=False, finished_at__isnull=False)
        .annotate(took=_took())
        .values("source_id")
        .annotate(count=Count("id"), total=Sum("took"), last=Max("finished_at"), **buckets)
        .order_by()
    )


# Counters of records kept per source, and the execution column each adds up.
_RECORD_TOTALS = {
    "records_submitted": "records_submitted",
    "records_left_out": "records_skipped",
    "nested_items_left_out": "items_skipped",
}
_RECORD_SUMS = {"n": Count("id")} | {column: Sum(column) for column in _RECORD_TOTALS.values()}


def keep_totals(*, execution_ids: list[int]) -> None:
    """Add what these executions count to the running totals, before they are deleted."""
    executions = Execution.objects.filter(pk__in=execution_ids)
    for row in executions.values("source_id", "state").annotate(**_RECORD_SUMS).order_by():
        if row["state"] in Execution.FINISHED_STATES:
            _add(row["source_id"], "executions", row["state"], row["n"])
        for name, column in _RECORD_TOTALS.items():
            _add(row["source_id"], name, "", row[column] or 0)
    for row in _done_timings(executions):
        source_id = row["source_id"]
        _add(source_id, "time_to_done_count", "", row["count"])
        _add(source_id, "time_to_done_sum", "", row["total"] or 0.0)
        for bound in TIME_TO_DONE_BUCKETS:
            _add(source_id, "time_to_done_bucket", str(bound), row[f"le_{bound}"])
        _raise_to(source_id, "last_success", row["last"].timestamp())


# --- the scrape -------------------------------------------------------------------------


class ImportCollector(Collector):
    """Every metric, from the database, at collect time."""

    def describe(self):
        return []  # nothing to query when the registry is built

    def collect(self):
        from importer.notifications.staleness import overdue_sources, scheduled_sources

        names = dict(ImportSource.objects.values_list("pk", "name"))
        kept = defaultdict(float)
        for source_id, name, label, value in RunningTotal.objects.values_list(
            "source_id", "name", "label", "value"
        ):
            kept[(source_id, name, label)] += value

        executions = CounterMetricFamily(
            "assets_sync_executions",
            "Executions that reached a final state, by source and state.",
            labels=["source", "state"],
        )
        submitted = CounterMetricFamily(
            "assets_sync_records_submitted",
            "Records submitted to Assets.",
            labels=["source"],
        )
        left_out = CounterMetricFamily(
            "assets_sync_records_left_out",
            "Records left out of an import (no identity, a value that does not convert).",
            labels=["source"],
        )
        items_left_out = CounterMetricFamily(
            "assets_sync_nested_items_left_out",
            "Nested items (a computer's disks) left out of records that were sent.",
            labels=["source"],
        )
        by_state = defaultdict(float)
        records = defaultdict(lambda: defaultdict(float))
        for (source_id, name, label), value in kept.items():
            if name == "executions":
                by_state[(source_id, label)] += value
            elif name in _RECORD_TOTALS:
                records[source_id][name] += value
        for row in (
            Execution.objects.values("source_id", "state").annotate(**_RECORD_SUMS).order_by()
        ):
            if row["state"] in Execution.FINISHED_STATES:
                by_state[(row["source_id"], row["state"])] += row["n"]
            for name, column in _RECORD_TOTALS.items():
                records[row["source_id"]][name] += row[column] or 0
        for (source_id, state), value in sorted(by_state.items()):
            executions.add_metric([names[source_id], state], value)
        for source_id, counted in sorted(records.items()):
            submitted.add_metric([names[source_id]], counted["records_submitted"])
            left_out.add_metric([names[source_id]], counted["records_left_out"])
            items_left_out.add_metric([names[source_id]], counted["nested_items_left_out"])
        yield executions
        yield submitted
        yield left_out
        yield items_left_out

        retries = CounterMetricFamily(
            "assets_sync_chunk_retries",
            "Chunks tried again after a transient failure, by the failure's kind.",
            labels=["source", "reason"],
        )
        for (source_id, name, label), value in sorted(kept.items()):
            if name == "chunk_retries":
                retries.add_metric([names[source_id], label], value)
        yield retries

        yield from self._timings(names, kept)
        yield from self._chunks(names)

        age = GaugeMetricFamily(
            "assets_sync_housekeeping_age_seconds",
            "Seconds since a task cluster last ran housekeeping (every minute when one is "
            "alive; +Inf if never).",
        )
        last = last_housekeeping_at()
        age.add_metric([], (timezone.now() - last).total_seconds() if last else float("inf"))
        yield age

        stale = GaugeMetricFamily(
            "assets_sync_source_stale",
            "1 when a scheduled source's last successful import is older than its schedule's "
            "interval plus STALE_GRACE_SECONDS.",
            labels=["source"],
        )
        overdue = {item.schedule.source_id for item in overdue_sources()}
        for schedule in scheduled_sources():
            stale.add_metric([schedule.source.name], 1 if schedule.source_id in overdue else 0)
        yield stale

        failing = GaugeMetricFamily(
            "assets_sync_alert_channel_failing",
            "1 when the last attempt to send through an alert channel failed.",
            labels=["channel", "kind"],
        )
        for channel in NotificationChannel.objects.filter(enabled=True):
            failing.add_metric([channel.name, channel.kind], 1 if channel.is_failing else 0)
        yield failing

    def _timings(self, names, kept):
        histogram = HistogramMetricFamily(
            "assets_sync_time_to_done_seconds",
            "Seconds from the start of an import to DONE.",
            labels=["source"],
        )
        last_success = GaugeMetricFamily(
            "assets_sync_last_success_timestamp_seconds",
            "Unix time of the source's last import that ended DONE.",
            labels=["source"],
        )
        timings = {}
        for source_id, name, _label in kept:
            if name.startswith("time_to_done") or name == "last_success":
                timings.setdefault(source_id, None)
        live = {row["source_id"]: row for row in _done_timings(Execution.objects.all())}
        for source_id in sorted({*timings, *live}):
            row = live.get(source_id, {})
            count = row.get("count", 0) + kept[(source_id, "time_to_done_count", "")]
            total = row.get("total") or 0.0
            total += kept[(source_id, "time_to_done_sum", "")]
            buckets = [
                (
                    str(float(bound)),
                    row.get(f"le_{bound}", 0)
                    + kept[(source_id, "time_to_done_bucket", str(bound))],
                )
                for bound in TIME_TO_DONE_BUCKETS
            ]
            if count:
                histogram.add_metric([names[source_id]], [*buckets, ("+Inf", count)], total)
            last = max(
                row["last"].timestamp() if row.get("last") else 0.0,
                kept[(source_id, "last_success", "")],
            )
            if last:
                last_success.add_metric([names[source_id]], last)
        yield histogram
        yield last_success

    def _chunks(self, names):
        queued = GaugeMetricFamily(
            "assets_sync_chunks_queued", "Chunks waiting for a worker.", labels=["source"]
        )
        running = GaugeMetricFamily(
            "assets_sync_chunks_running", "Chunks a worker is running.", labels=["source"]
        )
        counts = defaultdict(int)
        for source_id, state, n in (
            ChunkJob.objects.filter(state__in=[ChunkJob.State.QUEUED, ChunkJob.State.RUNNING])
            .values_list("execution__source_id", "state")
            .annotate(n=Count("id"))
            .order_by()
        ):
            counts[(source_id, state)] = n
        for source_id, name in sorted(names.items(), key=lambda item: item[1]):
            queued.add_metric([name], counts[(source_id, ChunkJob.State.QUEUED)])
            running.add_metric([name], counts[(source_id, ChunkJob.State.RUNNING)])
        yield queued
        yield running


def exposition() -> bytes:
    """The scrape's body, in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImportCollector())
    return generate_latest(registry)
