"""The schedule form: the start time typed as wall-clock time in the schedule's zone."""

from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.utils import timezone

from importer.models import Schedule

# Names the time zone database holds that are not zones of a place: the server's own zone,
# a placeholder, and copies under other rules.
_NOT_A_PLACE = ("localtime", "Factory", "posixrules")


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
        known = name not in _NOT_A_PLACE and not name.startswith(("posix/", "right/"))
    except (ZoneInfoNotFoundError, ValueError):
        known = False
    if not known:
        raise forms.ValidationError(
            f"'{name}' is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)."
        )
    return name


class ScheduleForm(forms.ModelForm):
    """The start time is typed as wall-clock time in the schedule's own time zone."""

    start_local = forms.DateTimeField(
        label="Start time",
        # Year first only (ISO 8601 is read too): Django's own formats also take 12/04/2026
        # month first, which most of the world writes for 12 April, not 4 December.
        input_formats=["%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(
            format="%Y-%m-%d %H:%M", attrs={"placeholder": "YYYY-MM-DD HH:MM"}
        ),
        help_text="The first run (YYYY-MM-DD HH:MM), as wall-clock time in the schedule's "
        "time zone (the Timezone field). A daily, weekly or monthly schedule may start in the "
        "past: it runs next at its own time of day (and day of the week or month).",
        error_messages={
            "invalid": "Give a date and a time, as YYYY-MM-DD HH:MM (e.g. 2026-12-01 02:00)."
        },
    )

    class Meta:
        model = Schedule
        fields = ["source", "frequency", "timezone"]
        help_texts = {
            "source": "Saving sends the schedule to Assets, which starts each run by calling "
            "the source's webtrigger: Assets must have accepted the source's mapping first "
            "(Push mapping)."
        }
        error_messages = {
            "source": {
                "unique": "This source has a schedule already (a source has one): change "
                "that one, under Schedules or from the source's page."
            }
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            local = self.instance.start_time.astimezone(ZoneInfo(self.instance.timezone))
            # As the field shows it: to the minute.
            self.initial["start_local"] = local.replace(tzinfo=None, second=0, microsecond=0)
            # Its remote schedule and webtrigger are the source's: another source gets a
            # schedule of its own.
            if "source" in self.fields:
                self.fields["source"].disabled = True
                self.fields["source"].help_text = (
                    "A schedule stays with its source: to schedule another source, add a "
                    "schedule to it."
                )
        stored = self.instance
        self._stored_run = (stored.frequency, stored.start_time, stored.timezone)

    def clean_timezone(self):
        return validate_timezone(self.cleaned_data["timezone"])

    def clean(self):
        cleaned = super().clean()
        local, zone = cleaned.get("start_local"), cleaned.get("timezone")
        if local is None or not zone:
            return cleaned
        wall = local.replace(tzinfo=None)
        start = wall.replace(tzinfo=ZoneInfo(zone))
        if start.astimezone(UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) != wall:
            self.add_error(
                "start_local",
                f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: the clocks skip that hour "
                "that day. Choose a time after the change.",
            )
            return cleaned
        kept = self._start_kept(start, zone)
        once = cleaned.get("frequency") == Schedule.Frequency.ONCE
        # A repeating schedule may start in the past (a file exported long ago): Assets is
        # told its next run.
        if once and not kept and start <= timezone.now():
            self.add_error("start_local", "The start time of a run once must be in the future.")
        # An unchanged start keeps its stored value, however long ago its first run was.
        cleaned["start_time"] = self.instance.start_time if kept else start
        return cleaned

    def _start_kept(self, start, zone: str) -> bool:
        """Whether the form gives the schedule's stored start again (to the minute), as the
        wall clock of its zone reads it: in the hour the clocks repeat, Python never counts
        a time of the zone equal to the same moment in UTC."""
        if not self.instance.pk or zone != self.instance.timezone:
            return False
        stored = self.instance.start_time.astimezone(ZoneInfo(zone))
        return start.replace(tzinfo=None) == stored.replace(tzinfo=None, second=0, microsecond=0)

    def changes_schedule(self) -> bool:
        """Whether the (valid) form sets another frequency, start or zone than stored."""
        return not self.instance.pk or bool(self.changed_settings())

    def changed_settings(self) -> list[str]:
        """Which of frequency, start time and time zone the (valid) form changes."""
        cleaned = self.cleaned_data
        wanted = (cleaned["frequency"], cleaned["start_time"], cleaned["timezone"])
        names = ("frequency", "start_time", "timezone")
        stored = self._stored_run
        return [name for name, new, old in zip(names, wanted, stored, strict=True) if new != old]

    def save(self, commit=True):
        schedule = super().save(commit=False)
        schedule.start_time = self.cleaned_data["start_time"]
        if commit:
            schedule.save()
        return schedule
