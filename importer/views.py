"""Small views: the webtrigger Assets calls for scheduled imports, and execution progress."""

import hmac
import json
import logging
import time

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from importer import services
from importer.health import health_report
from importer.models import Execution, ImportSource
from importer.progress import progress_of

logger = logging.getLogger(__name__)

MAX_TRIGGER_BODY_BYTES = 4096
# Compared against when the source id is unknown, so both cases take the same time.
_NO_TOKEN = "-" * 43


def _answer(status: int, **body) -> JsonResponse:
    return JsonResponse(body, status=status)


def _over_rate_limit(request) -> bool:
    """A fixed one-minute window per client address, counted in the cache."""
    client = request.META.get(settings.CLIENT_IP_HEADER) or request.META.get("REMOTE_ADDR", "")
    client = client.split(",")[0].strip()
    key = f"webtrigger-rate:{client}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=90)
    try:
        calls = cache.incr(key)
    except ValueError:  # the key expired between add and incr
        calls = 1
    return calls > settings.WEBTRIGGER_RATE_PER_MINUTE


@csrf_exempt
@require_POST
def webtrigger(request, source_id: int, token: str):
    """Assets' scheduler calls this at each scheduled run of a source.

    Throttled per client before anything else, so tokens cannot be guessed quickly; an
    unknown source and a wrong token get the same answer.
    """
    if _over_rate_limit(request):
        return _answer(429, success=False, error="Too many requests")
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_TRIGGER_BODY_BYTES:
        return _answer(413, success=False, error="The request body is too large")
    source = ImportSource.objects.filter(pk=source_id).first()
    expected = source.webtrigger_token if source else _NO_TOKEN
    if not hmac.compare_digest(expected.encode(), token.encode()) or source is None:
        return _answer(404, success=False, error="Not found")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _answer(400, success=False, error="The body must be JSON")
    if not isinstance(body, dict):
        return _answer(400, success=False, error="The body must be a JSON object")
    if (body.get("workspaceId"), body.get("importsourceId")) != (
        source.workspace_id,
        source.import_source_id,
    ):
        return _answer(
            400,
            success=False,
            error="workspaceId and importsourceId do not match this webtrigger",
        )
    try:
        execution = services.start_scheduled_import(source=source)
    except services.ImportRefused as refusal:
        logger.warning("scheduled import of %s refused: %s", source, refusal)
        return _answer(500, success=False, error=str(refusal))
    return _answer(
        200, success=True, message="Import started", executionId=execution.assets_execution_id
    )


@staff_member_required
def execution_progress(request, pk: int):
    if not request.user.has_perm("importer.view_execution"):
        raise PermissionDenied
    execution = get_object_or_404(Execution.objects.select_related("source"), pk=pk)
    return JsonResponse(progress_of(execution))


def health(request):
    """For monitoring: 200 when database, broker and a task cluster are alive, else 503.

    Source names and their last good import are shown to staff and to callers presenting
    HEALTH_TOKEN (header X-Health-Token), not to anyone.
    """
    token = settings.HEALTH_TOKEN
    given = request.headers.get("X-Health-Token", "")
    trusted = request.user.is_staff or bool(
        token and hmac.compare_digest(given.encode(), token.encode())
    )
    report = health_report(with_sources=trusted)
    return JsonResponse(report, status=200 if report["ok"] else 503)
