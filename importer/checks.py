"""System checks (`manage.py check`, and every start of runserver and qcluster)."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def lane_fits_in_the_task_timeout(app_configs, **kwargs) -> list[Error]:
    """A lane goes on until CHUNK_LANE_SECONDS, then still finishes its page: a fetch (within
    its budget, plus one read timeout for the answer begun just before the budget ran out; a
    file source may download its file instead), a submit (up to HTTP_TIMEOUT) and a retry
    waited for in the worker. django-q2 kills a task that outlives Q_TASK_TIMEOUT, mid-page."""
    fetch = max(settings.SOURCE_REQUEST_BUDGET_SECONDS, settings.SOURCE_DOWNLOAD_BUDGET_SECONDS)
    worst = (
        settings.CHUNK_LANE_SECONDS
        + fetch
        + 2 * settings.HTTP_TIMEOUT
        + settings.CHUNK_RETRY_INLINE_MAX_SECONDS
    )
    if worst < settings.Q_TASK_TIMEOUT:
        return []
    return [
        Error(
            f"A chunk task may run {worst:.0f} s (CHUNK_LANE_SECONDS + the larger of "
            "SOURCE_REQUEST_BUDGET_SECONDS and SOURCE_DOWNLOAD_BUDGET_SECONDS + 2 x "
            "HTTP_TIMEOUT + CHUNK_RETRY_INLINE_MAX_SECONDS), but django-q2 stops tasks after "
            f"Q_TASK_TIMEOUT = {settings.Q_TASK_TIMEOUT} s.",
            hint="Lower CHUNK_LANE_SECONDS, HTTP_TIMEOUT or the source budgets, or raise "
            "Q_TASK_TIMEOUT.",
            id="importer.E001",
        )
    ]
