"""Jobs the task cluster runs every few seconds, one caller per period."""

from datetime import timedelta

from django.db import models
from django.utils import timezone


class PeriodicJobQuerySet(models.QuerySet):
    def claim_due(self, name: str, *, every: float) -> bool:
        """Whether this caller runs job `name` now: True for the one caller that moves its
        due time on by `every` seconds, False for the others and until then."""
        now = timezone.now()
        due_next = now + timedelta(seconds=every)
        if self.filter(name=name, due_at__lte=now).update(due_at=due_next):
            return True
        _, created = self.get_or_create(name=name, defaults={"due_at": due_next})
        return created


class PeriodicJob(models.Model):
    """A job the task cluster's workers run every few seconds (django-q2's schedules count in
    minutes). Every worker process asks in turn; `claim_due` lets one through per period,
    across every worker and cluster."""

    name = models.CharField(max_length=100, unique=True)
    due_at = models.DateTimeField(help_text="The job runs again once this time has passed.")

    objects = PeriodicJobQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name
