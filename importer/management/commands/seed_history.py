"""Fill the history with synthetic executions and chunks, to see the admin at scale."""

import random
from datetime import timedelta

from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from importer.management.base import DatabaseCommand
from importer.models import ChunkJob, Execution, ImportSource

BATCH = 5000


class Command(DatabaseCommand):
    help = "Seed N executions and M chunk jobs of a 'seeded-history' source (for load tests)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--executions", type=int, default=100_000, help="How many executions (default 10^5)."
        )
        parser.add_argument(
            "--chunks",
            type=int,
            default=1_000_000,
            help="How many chunk jobs, spread over the executions (default 10^6).",
        )

    def handle(self, *args, executions, chunks, **options):
        if executions < 1 or chunks < 0:
            raise CommandError("--executions must be 1 or more and --chunks 0 or more.")
        source, _ = ImportSource.objects.get_or_create(
            name="seeded-history",
            defaults={
                "enabled": False,
                "workspace_id": "seed",
                "import_source_id": "seed",
                "assets_token": "seed",
                "source_url": "https://inventory.invalid/api",
            },
        )
        now = timezone.now()
        states = [Execution.State.DONE] * 8 + [Execution.State.FAILED, Execution.State.CANCELLED]
        created_ids: list[int] = []
        for start in range(0, executions, BATCH):
            rows = []
            for number in range(start, min(start + BATCH, executions)):
                began = now - timedelta(minutes=10 * (executions - number))
                state = random.choice(states)
                took = random.randint(5, 900)
                rows.append(
                    Execution(
                        source=source,
                        assets_execution_id=f"seed-{number}",
                        state=state,
                        started_at=began,
                        finished_at=began + timedelta(seconds=took),
                        # What the transition to DONE stores (rows are inserted here directly).
                        took_seconds=float(took) if state == Execution.State.DONE else None,
                        pages_fetched=10,
                        pages_submitted=10,
                        records_submitted=random.randint(100, 5000),
                        last_chunk_index=9,
                        # Not real runs: housekeeping's catch-up raises no alert for them.
                        alert_wanted=False,
                    )
                )
            with transaction.atomic():
                batch = [row.pk for row in Execution.objects.bulk_create(rows)]
                # created_at is set on insert: date the rows back to when they "started".
                Execution.objects.filter(pk__in=batch).update(created_at=F("started_at"))
                created_ids += batch
            self.progress(f"{len(created_ids)} executions")
        if self.stdout.isatty():
            self.stdout.write("")  # off the rewritten line
        per_execution = max(1, chunks // max(1, len(created_ids)))
        made = 0
        pending = []
        for execution_id in created_ids:
            for index in range(per_execution):
                if made >= chunks:
                    break
                pending.append(
                    ChunkJob(
                        execution_id=execution_id,
                        index=index,
                        cursor=str(index * 100),
                        state=ChunkJob.State.SUBMITTED,
                        attempts=1,
                        record_count=100,
                    )
                )
                made += 1
            if len(pending) >= BATCH:
                ChunkJob.objects.bulk_create(pending)
                pending = []
                self.progress(f"{made} chunks")
        ChunkJob.objects.bulk_create(pending)
        self.progress(f"Seeded {len(created_ids)} executions and {made} chunks.", done=True)

    def progress(self, line: str, *, done: bool = False) -> None:
        """On a terminal one line, rewritten; elsewhere a line each."""
        if self.stdout.isatty():
            self.stdout.write(f"\r{line}", ending="\n" if done else "")
        else:
            self.stdout.write(line)
