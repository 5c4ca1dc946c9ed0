import logging
import time

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import InterfaceError, OperationalError, connection

from importer import services
from importer.assets import AssetsError
from importer.management.base import DatabaseCommand
from importer.models import Execution, ImportSource
from importer.notifications.messages import admin_url
from importer.progress import (
    describe,
    nested_items_left_out,
    progress_of,
    retries_of,
    retry_text,
)
from importer.redaction import redact_for

# In a log or a pipe, a line at least this often while the counts move.
LOG_LINE_SECONDS = 15


# EX_TEMPFAIL (sysexits.h): nothing was done, and trying again later may work.
ALREADY_RUNNING = 75


class Command(DatabaseCommand):
    help = "Start an import of a source (pushing its mapping first if Assets lacks it)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The source's name.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Show progress until the import ends; exit 0 only when DONE.",
        )
        parser.add_argument(
            "--poll",
            type=float,
            default=0.25,
            help="With --wait, seconds between updates (default: %(default)s).",
        )
        parser.add_argument(
            "--accept-fewer-records",
            action="store_true",
            help="The source holds far fewer records than at its last successful import, and "
            "that is right: let the drop past its 'largest drop in records' through.",
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="The admin user the history names as having started the import.",
        )

    def handle(self, *args, verbosity, **options):
        # django-q2 logs a line for every task queued, which would break up the progress.
        queue_log = logging.getLogger("django-q")
        level = queue_log.level
        if verbosity < 2:
            queue_log.setLevel(logging.WARNING)
        try:
            self.start_and_follow(**options)
        finally:
            queue_log.setLevel(level)

    def start_and_follow(self, *, name, wait, poll, user, accept_fewer_records, **options):
        if poll <= 0:
            raise CommandError(f"--poll must be a number of seconds above 0 (given {poll:g}).")
        source = ImportSource.objects.filter(name=name).first()
        if source is None:
            raise CommandError(f"No source named '{name}'.")
        started_by = self.user_named(user) if user else None
        pushed_before = source.mapping_pushed_at
        try:
            execution = services.start_import(
                source=source,
                user=started_by,
                trigger=Execution.Trigger.COMMAND,
                accept_fewer_records=accept_fewer_records,
            )
        except services.ImportRefused as error:
            pushed = source.mapping_pushed_at != pushed_before
            self.log_for(started_by, source, pushed, f"Import refused: {error}")
            # A scheduler tells "another import runs; try later" from a failure by its code.
            running = isinstance(error, services.ImportAlreadyRunning)
            raise CommandError(str(error), returncode=ALREADY_RUNNING if running else 1)
        except AssetsError as error:
            raise CommandError(services.scrub_secrets(error.message, source))
        pushed = source.mapping_pushed_at != pushed_before
        if pushed:
            self.stdout.write("Assets accepted the mapping (it was not pushed yet).")
        self.log_for(
            started_by,
            source,
            pushed,
            f"Started import (execution #{execution.pk}) from the command line.",
        )
        self.stdout.write(f"Started execution #{execution.pk} ({execution.assets_execution_id}).")
        if not wait:
            return
        try:
            self.follow(execution, poll)
        except KeyboardInterrupt:
            # Only the following stops: the import is the cluster's.
            if self.stdout.isatty():
                self.stdout.write("")  # off the progress line
            raise CommandError(
                f"Stopped following execution #{execution.pk}; the import goes on. Follow or "
                f"cancel it at {admin_url('execution', execution.pk)}",
                returncode=130,
            ) from None

    def follow(self, execution: Execution, poll: float) -> None:
        """Show the import's progress until it ends; fail unless it ended DONE."""
        # On a terminal one line is rewritten in place; in a log or a pipe a line is written
        # as the import reaches a new state, each tenth of the way, when retries start, and
        # otherwise every LOG_LINE_SECONDS while the counts move (no total: no tenths).
        live = self.stdout.isatty()
        shown, written, written_at = None, "", time.monotonic()
        while True:
            try:
                execution.refresh_from_db()
                progress = progress_of(execution)
                retries = retries_of(execution)
            except (OperationalError, InterfaceError):
                # The database dropped this session (a restart, a failover): the import goes
                # on in the workers; follow it on a new connection.
                self.stderr.write("The database connection was lost; following on a new one.")
                connection.close()
                time.sleep(poll)
                continue
            line = progress_line(progress, retries)
            if live:
                self.stdout.write(f"\r{line:<100}", ending="")
                self.stdout.flush()
            else:
                percent = progress["percent"]
                milestone = (progress["state"], percent and percent // 10, bool(retries))
                due = time.monotonic() - written_at >= LOG_LINE_SECONDS and line != written
                if milestone != shown or due:
                    self.stdout.write(line)
                    shown, written, written_at = milestone, line, time.monotonic()
            if progress["finished"]:
                break
            time.sleep(poll)
        if live:
            self.stdout.write("")
        if execution.state != Execution.State.DONE:
            raise CommandError(
                f"Import ended {execution.state}: {execution.error}\n"
                f"See {admin_url('execution', execution.pk)}"
            )
        pages = execution.pages_submitted
        done = f"Done: {execution.records_submitted} records in {pages} page{'s' * (pages != 1)}."
        if execution.records_skipped or execution.items_skipped:
            items = (
                f", and {nested_items_left_out(execution.items_skipped)}"
                if execution.items_skipped
                else ""
            )
            done = (
                f"{done[:-1]}; {execution.records_skipped} left out{items} (without an "
                "identity, or with a value that does not convert): see "
                f"{admin_url('execution', execution.pk)}"
            )
        self.stdout.write(self.style.SUCCESS(done))
        # What the import's page shows as worth a look (a total path no answer told).
        for note in redact_for(execution.source, execution.notice).splitlines():
            self.stdout.write(self.style.WARNING(f"Note: {note}"))

    @staticmethod
    def log_for(user, source: ImportSource, pushed: bool, message: str) -> None:
        """The source's history, as the admin's start writes it, when a user is named."""
        if user is None:
            return
        messages = (["Pushed the mapping to Assets."] if pushed else []) + [message]
        for change_message in messages:
            LogEntry.objects.log_actions(
                user.pk, [source], CHANGE, change_message, single_object=True
            )

    @staticmethod
    def user_named(username: str):
        users = get_user_model()
        try:
            return users.objects.get(**{users.USERNAME_FIELD: username})
        except users.DoesNotExist:
            raise CommandError(f"No user named '{username}'.") from None


def progress_line(progress: dict, retries: list[dict]) -> str:
    """The import's progress as one line: a bar once the total is known, and the pages
    waiting for another attempt (else a source that keeps failing looks like a stuck one)."""
    line = describe(progress)
    if progress["percent"] is not None:
        line = f"[{'#' * (progress['percent'] // 4):<25}] {line}"
    if retries and not progress["finished"]:
        others = " and others" if len(retries) > 1 else ""
        line += f" · {retry_text(retries[0])}{others}"
    if progress["error"] and not progress["finished"]:
        # What the import waits for: Assets' answer to 'completed', its status, a page.
        line += f" · {' '.join(progress['error'].split())[:300]}"
    return line
