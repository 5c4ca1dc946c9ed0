from django.apps import AppConfig
from django.db.models.signals import post_migrate

HOUSEKEEPING_SCHEDULE_NAME = "assets-sync: look after imports"
RETENTION_SCHEDULE_NAME = "assets-sync: prune history"


def _has_tables(using: str, *models) -> bool:
    """Whether the models' tables exist: `migrate` of this app alone, on a new database,
    leaves django-q2's and auth's for the full `migrate` that follows."""
    from django.db import connections

    tables = set(connections[using].introspection.table_names())
    return all(model._meta.db_table in tables for model in models)


def install_periodic_schedules(sender, using: str = "default", **kwargs) -> None:
    """Keep the housekeeping schedule in django-q2 (created by `migrate`, not by hand)."""
    from django_q.models import Schedule

    if not _has_tables(using, Schedule):
        return
    Schedule.objects.update_or_create(
        name=HOUSEKEEPING_SCHEDULE_NAME,
        defaults={
            "func": "importer.tasks.look_after_imports",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    Schedule.objects.get_or_create(
        name=RETENTION_SCHEDULE_NAME,
        defaults={
            "func": "importer.tasks.prune_history",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
    )


ROLES = {
    # History only.
    "Import viewers": ["view_execution", "view_chunkjob", "view_alert", "view_delivery"],
    # ... and run imports: start, cancel, retry.
    "Import operators": [
        "view_execution",
        "view_chunkjob",
        "view_importsource",
        "view_schedule",
        "view_alert",
        "view_delivery",
        "start_import",
        "cancel_execution",
        "retry_chunks",
    ],
    # ... and edit sources, credentials, mappings, schedules and alert channels; read the
    # audit log.
    "Import administrators": [
        "view_execution",
        "view_chunkjob",
        "view_importsource",
        "add_importsource",
        "change_importsource",
        "delete_importsource",
        "view_schedule",
        "add_schedule",
        "change_schedule",
        "delete_schedule",
        "view_alert",
        "view_delivery",
        "view_notificationchannel",
        "add_notificationchannel",
        "change_notificationchannel",
        "delete_notificationchannel",
        "start_import",
        "cancel_execution",
        "retry_chunks",
        "view_logentry",
    ],
}


def install_roles(sender, using: str = "default", **kwargs) -> None:
    """The three roles as groups; membership is managed under Authentication > Groups."""
    from django.contrib.auth.models import Group, Permission

    if not _has_tables(using, Group, Permission):
        return
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(
                codename__in=codenames, content_type__app_label__in=["importer", "admin"]
            )
        )


class ImporterConfig(AppConfig):
    name = "importer"
    verbose_name = "Assets imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, post_spawn

        from importer import checks, spawn, ticker  # noqa: F401  (checks registers the checks)
        from importer.logs import redact_task_failure

        post_migrate.connect(install_periodic_schedules, sender=self)
        post_migrate.connect(install_roles, sender=self)
        # Each worker process of a task cluster keeps the cluster's seconds-level clock.
        post_spawn.connect(ticker.start_in_worker, dispatch_uid="importer-ticker")
        # ... and starts connected, so its first chunk does not wait for the database.
        post_spawn.connect(spawn.warm_up, dispatch_uid="importer-warm-up")
        # A failed task's traceback is stored and logged by django-q2: without secrets.
        post_execute_in_worker.connect(redact_task_failure, dispatch_uid="importer-redact-failure")
