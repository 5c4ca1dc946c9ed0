"""System checks (`manage.py check`, and every start of runserver and qcluster)."""

import ipaddress
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.checks import Error, Warning, register

from importer.health import HOW_TO_WRITE_REDIS_URL, UNREADABLE_REDIS_URL


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


@register()
def redis_url_can_be_read(app_configs, **kwargs) -> list[Error]:
    """A REDIS_URL redis-py cannot read queues no task, and a cluster started with it stops
    with redis-py's error, which quotes the password ('/' in it ends the host, and the
    password is read as the port): said here in our words, before the cluster starts."""
    if not settings.REDIS_URL:
        return []
    try:
        redis.ConnectionPool.from_url(settings.REDIS_URL)
    except ValueError:
        return [
            Error(
                f"{UNREADABLE_REDIS_URL}: no task can be queued, and no cluster can start.",
                hint=f"In REDIS_URL, {HOW_TO_WRITE_REDIS_URL}. (Not quoted here: it holds "
                "the password.)",
                id="importer.E002",
            )
        ]
    return []


@register(deploy=True)
def public_base_url_reaches_this_app(app_configs, **kwargs) -> list[Warning]:
    """Assets calls the webtrigger at PUBLIC_BASE_URL: left at its default (this machine) or
    plain http, scheduled imports never start, or their token crosses the network in clear."""
    parts = urlsplit(settings.PUBLIC_BASE_URL)
    try:
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        address = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "is not an http(s) address"
    elif parts.hostname == "localhost" or (
        address and (address.is_loopback or address.is_unspecified)
    ):
        problem = "names this machine: Assets, in Atlassian's cloud, cannot reach it there"
    elif address and address.is_private:
        problem = "is on a private network: Assets, in Atlassian's cloud, cannot reach it there"
    elif parts.scheme != "https":
        problem = "is plain http: the webtrigger's secret token would cross the network in clear"
    else:
        return []
    return [
        Warning(
            f"PUBLIC_BASE_URL ({settings.PUBLIC_BASE_URL}) {problem}.",
            hint="Set it to the https address at which Assets reaches this app (with the path "
            "prefix it is served under, if any); schedules follow it at the next housekeeping.",
            id="importer.W001",
        )
    ]


# The files collectstatic leaves out unless told otherwise.
COLLECTSTATIC_IGNORED = ["CVS", ".*", "*~"]


@register()
def static_files_collected_for_this_release(app_configs, **kwargs) -> list[Warning]:
    """With DEBUG off, a page names its static files by the manifest collectstatic wrote: a
    file this release added that an earlier release's collectstatic never saw fails every page
    naming it (the admin's own base template names one), with a 500, until collectstatic runs
    again. Said at migrate, the step of an upgrade every operator runs."""
    if settings.DEBUG or not isinstance(staticfiles_storage, ManifestFilesMixin):
        return []
    collected = staticfiles_storage.hashed_files
    if not collected:  # never collected here: the production steps say to
        return []
    missing = sorted(
        {
            path.replace("\\", "/")
            for finder in get_finders()
            for path, _ in finder.list(COLLECTSTATIC_IGNORED)
        }
        - set(collected)
    )
    if not missing:
        return []
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return [
        Warning(
            f"The static files in STATIC_ROOT ({settings.STATIC_ROOT}) were collected by an "
            f"earlier release: {shown} missing. Every admin page fails (500) until they are "
            "collected again.",
            hint="Run `python manage.py collectstatic --noinput`, then restart the web processes.",
            id="importer.W002",
        )
    ]
