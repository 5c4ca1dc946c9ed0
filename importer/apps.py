from django.apps import AppConfig
from django.db.models.signals import post_migrate

REQUEUE_SCHEDULE_NAME = "assets-sync: requeue stalled work"


def install_periodic_schedules(sender, **kwargs) -> None:
    """Keep the housekeeping schedule in django-q2 (created by `migrate`, not by hand)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=REQUEUE_SCHEDULE_NAME,
        defaults={
            "func": "importer.tasks.requeue_stalled_work",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )


class ImporterConfig(AppConfig):
    name = "importer"
    verbose_name = "Assets imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(install_periodic_schedules, sender=self)
