"""Each admin user sees dates and times in their own time zone, as their browser reports it."""

from functools import cache
from urllib.parse import unquote
from zoneinfo import ZoneInfo, available_timezones

from django.utils import timezone

# Set by static/importer/timezone.js on every admin page.
TIME_ZONE_COOKIE = "assets_sync_tz"


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_from_cookie(value: str) -> ZoneInfo | None:
    """The IANA zone the cookie names; None for anything else (the site's zone applies)."""
    name = unquote(value)  # the browser URL-encodes it: Pacific%2FAuckland
    return ZoneInfo(name) if name in _known_zones() else None


class UserTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = zone_from_cookie(request.COOKIES.get(TIME_ZONE_COOKIE, ""))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
