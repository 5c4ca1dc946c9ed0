"""Small views: the webtrigger Assets calls for scheduled imports, and execution progress."""

import hmac
import json
import logging
import time

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.cache import cache
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from importer import metrics as import_metrics
from importer import services
from importer.health import health_report
from importer.models import Execution, ImportSource
from importer.progress import progress_of

logger = logging.getLogger(__name__)

MAX_TRIGGER_BODY_BYTES = 4096
WEBTRIGGER_NOT_POST = (
    "Assets calls this address with POST at each scheduled run; opening it runs nothing. "
    "To import now, use Start import on the source's page."
)
# Compared against when the source id is unknown, so both cases take the same time.
_NO_TOKEN = "-" * 43


def _answer(status: int, **body) -> JsonResponse:
    return JsonResponse(body, status=status)


def client_address(request) -> str:
    """The caller's address, as the trusted proxies in front of the app saw it.

    Each proxy appends the address it was called from to X-Forwarded-For, so with N trusted
    proxies the N-th address from the right is the client; anything left of it was sent by
    the client and may be forged.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return request.META.get("REMOTE_ADDR", "")
    forwarded = [
        address.strip()
        for address in request.META.get(settings.CLIENT_IP_HEADER, "").split(",")
        if address.strip()
    ]
    if not forwarded:
        return request.META.get("REMOTE_ADDR", "")
    return forwarded[-min(proxies, len(forwarded))]


def _over_rate_limit(request, source_id: int) -> bool:
    """A sliding one-minute window per client address and source, counted in the cache.

    Assets' scheduler calls from a few addresses, and many sources may be scheduled at one
    minute. The calls of the minute before are weighed by how much of it still lies within
    the last 60 s, so a burst across a minute's boundary gets no second allowance.
    """
    minute, into_minute = divmod(time.time(), 60)
    prefix = f"webtrigger-rate:{client_address(request)}:{source_id}:"
    key = f"{prefix}{int(minute)}"
    try:
        cache.add(key, 0, timeout=150)  # read again as "the minute before" for the next 60 s
        try:
            calls = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            calls = 1
        calls_before = cache.get(f"{prefix}{int(minute) - 1}", 0)
    except Exception as error:  # the cache (Redis) is down: the scheduled run is not lost
        logger.warning("webtrigger calls not counted: the cache failed (%s)", type(error).__name__)
        return False
    return calls + calls_before * (1 - into_minute / 60) > settings.WEBTRIGGER_RATE_PER_MINUTE


@csrf_exempt
def webtrigger_not_found(request, rest: str | None = None):
    """Any other address under webtrigger/: the same JSON 404 as a wrong token, never
    Django's debug 404 page, which would quote the path (and the token in it)."""
    return _answer(404, success=False, error="Not found")


@csrf_exempt
def webtrigger(request, source_id: int, token: str):
    """Assets' scheduler calls this at each scheduled run of a source.

    Throttled per client and source before anything else, so tokens cannot be guessed
    quickly; an
    unknown source and a wrong token get the same answer.
    """
    if request.method != "POST":
        # Someone opening the address from the source's page to try it: say what it is for
        # (the same words whatever the source and token, so nothing is told of either).
        answer = _answer(405, success=False, error=WEBTRIGGER_NOT_POST)
        answer["Allow"] = "POST"
        return answer
    if _over_rate_limit(request, source_id):
        return _answer(429, success=False, error="Too many requests")
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        return _answer(400, success=False, error="Content-Length must be a number")
    if int(declared) > MAX_TRIGGER_BODY_BYTES:
        return _answer(413, success=False, error="The request body is too large")
    source = ImportSource.objects.filter(pk=source_id).first()
    expected = source.webtrigger_token if source else _NO_TOKEN
    if not hmac.compare_digest(expected.encode(), token.encode()) or source is None:
        return _answer(404, success=False, error="Not found")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return _answer(400, success=False, error="The body must be JSON")
    if not isinstance(body, dict):
        return _answer(400, success=False, error="The body must be a JSON object")
    # The token in the address says which source is called; the body must not name another.
    # Its keys are read in any case (Assets' own clients spell them importSourceId too), and
    # one left out (or null) names none.
    said = {str(key).lower(): str(value) for key, value in body.items() if value is not None}
    ours = {"workspaceid": source.workspace_id, "importsourceid": source.import_source_id}
    other = {key: said[key] for key in ours if key in said and said[key] != ours[key]}
    if other:
        logger.warning(
            "webtrigger of %s called for another %s: %s",
            source,
            " and ".join("workspace" if key == "workspaceid" else "import source" for key in other),
            ", ".join(repr(value) for value in other.values()),
        )
        return _answer(
            400,
            success=False,
            error="workspaceId and importsourceId do not match this webtrigger",
        )
    try:
        execution = services.start_scheduled_import(source=source)
    except services.ImportRefused as refusal:
        logger.warning("scheduled import of %s refused: %s", source, refusal)
        response = _answer(500, success=False, error=str(refusal))
        # Told above as what it is; Django would log the 500 as an error of the server.
        response._has_been_logged = True
        return response
    if execution.state == Execution.State.PENDING:
        # The same run, triggered twice at once, and the other trigger still starting it: not
        # told as begun, for Assets may yet refuse it. Asked again, the outcome is known.
        response = _answer(
            503, success=False, error="The run is still starting: ask again in a moment"
        )
        response["Retry-After"] = "10"
        return response
    return _answer(
        200, success=True, message="Import started", executionId=execution.assets_execution_id
    )


@staff_member_required
def execution_progress(request, pk: int):
    if not request.user.has_perm("importer.view_execution"):
        return _answer(403, error="You may not view executions")
    execution = get_object_or_404(Execution.objects.select_related("source"), pk=pk)
    return JsonResponse(progress_of(execution))


def health(request):
    """For monitoring: 200 when database, broker and a task cluster are alive, else 503.

    Source names, their last good import and the raw errors are shown to staff who may view
    the execution history and to callers presenting HEALTH_TOKEN (header X-Health-Token),
    not to anyone.
    """
    token = settings.HEALTH_TOKEN
    given = request.headers.get("X-Health-Token", "")
    trusted = _may_view_executions(request) or bool(
        token and hmac.compare_digest(given.encode(), token.encode())
    )
    report = health_report(with_sources=trusted)
    return JsonResponse(report, status=200 if report["ok"] else 503)


def _may_view_executions(request) -> bool:
    """Whether a staff member who may view the execution history is signed in (a staff
    login alone may be allowed nothing); no, when the session cannot be read (the database
    is down: the report says so, rather than Django's error page)."""
    try:
        return request.user.is_staff and request.user.has_perm("importer.view_execution")
    except DatabaseError:
        return False


def metrics(request):
    """Prometheus metrics, for callers presenting METRICS_TOKEN as a bearer token.

    Without the setting there is no such page (404); a missing or wrong token gets 401.
    """
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Set METRICS_TOKEN to publish metrics.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = HttpResponse("A bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(import_metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
