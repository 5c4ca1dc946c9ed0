"""This app's addresses as seen from outside: the webtrigger Assets calls, a link in an alert."""

from __future__ import annotations

from django.conf import settings
from django.urls import get_script_prefix, reverse


def public_url(viewname: str, *args) -> str:
    """`PUBLIC_BASE_URL` names the app's root, with the path prefix it is served under
    (`https://host/sync`). Within a request, reverse() puts that prefix (SCRIPT_NAME) before
    the path already: it is taken off, or an address made in the admin would hold it twice
    and differ from the one a worker or a command makes."""
    path = reverse(viewname, args=args)
    return f"{settings.PUBLIC_BASE_URL}/{path[len(get_script_prefix()) :]}"
