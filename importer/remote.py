"""What calls to another system (Assets or a source) share: one error type, one session type.

Services decide by the error's fields, never by parsing messages: `permanent` (not worth
retrying), `kind` (the reason shown on a chunk and counted), `status` (the HTTP status, if
any) and `retry_after` (seconds the remote asked us to wait).
"""

from __future__ import annotations

import email.utils
import errno
import re
import socket
import time
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings


class RemoteError(Exception):
    permanent: bool = True
    kind: str = "remote_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        permanent: bool | None = None,
        kind: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        if permanent is not None:
            self.permanent = permanent
        if status == 500 and not worth_retrying(status):
            self.permanent = True  # RETRY_HTTP_500 is off: for every remote, plug-ins too
        if kind is not None:
            self.kind = kind


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# Headers third-party APIs tell when a spent rate limit refills, instead of Retry-After: the
# IETF draft's RateLimit-Reset (seconds from now), and X-RateLimit-Reset as GitHub, Okta and
# Zendesk write it (a Unix time; some write seconds from now).
RATE_LIMIT_RESET_HEADERS = ("RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset")
_REMAINING_HEADERS = ("RateLimit-Remaining", "X-RateLimit-Remaining", "X-Rate-Limit-Remaining")
_UNIX_TIME_FROM = 1_000_000_000  # larger numbers are a moment, not a number of seconds
_UNIX_MILLISECONDS_FROM = 100_000_000_000  # ... and these a moment in milliseconds


def retry_after_of(response: Any) -> float | None:
    """Seconds to wait before asking again, from Retry-After or, on a 429 without it, from a
    rate limit's reset header: waiting that long gets through, where a short backoff spends
    the attempts on answers that are refused again. A reset is the spent window's only when
    no requests remain in it: GitHub's secondary limits answer 429 with requests left, and
    the primary window's reset, up to an hour away, is not what they ask to wait."""
    headers = response.headers
    asked = parse_retry_after(headers.get("Retry-After"))
    if asked is not None or not refused_by_rate_limit(response):
        return asked
    return rate_limit_reset(headers)


def refused_by_rate_limit(response: Any) -> bool:
    """Whether an error answer is a rate limit's: a 429, or a 403 that says when to ask again
    (Retry-After) or that no requests remain (GitHub answers its limits, primary and
    secondary, with 403 as well as 429). Any other 403 is a refusal of the credentials."""
    if response.status_code != 403:
        return response.status_code == 429
    headers = response.headers
    if parse_retry_after(headers.get("Retry-After")) is not None:
        return True
    return any(_number(headers.get(name)) == 0 for name in _REMAINING_HEADERS)


def rate_limit_reset(headers: Any) -> float | None:
    """Seconds until a spent rate limit refills, from its reset header; None while requests
    remain in its window, or when no header says."""
    if any(_number(headers.get(name)) not in (None, 0) for name in _REMAINING_HEADERS):
        return None
    for name in RATE_LIMIT_RESET_HEADERS:
        value = _number(headers.get(name))
        if value is None:
            continue
        if value >= _UNIX_MILLISECONDS_FROM:
            value /= 1000
        return max(0.0, value - time.time() if value >= _UNIX_TIME_FROM else value)
    return None


def _number(text: str | None) -> float | None:
    try:
        return float((text or "").strip())
    except ValueError:
        return None


def worth_retrying(status: int) -> bool:
    """Whether an answer with this HTTP status may be mended by asking again: 429 and the
    gateway errors always, a plain 500 unless RETRY_HTTP_500 is off (some servers answer 500
    for input no retry mends)."""
    if status == 500:
        return settings.RETRY_HTTP_500
    return status in (429, 502, 503, 504)


def lost_after_connecting(error: BaseException) -> bool:
    """Whether the connection was made and then broke before the answer came (reset, closed
    mid-answer): the request may have arrived, and the address is not what is wrong."""
    if isinstance(error, (requests.exceptions.ProxyError, requests.exceptions.SSLError)):
        return False
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return True
    for cause in causes(error):
        if type(cause).__name__ in ("NewConnectionError", "ConnectTimeoutError"):
            return False
        if type(cause).__name__ in ("ProtocolError", "RemoteDisconnected"):
            return True
    return False


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what lies under it (urllib3 wraps its causes in `reason` and `args`),
    nearest first, each once."""
    seen: set[int] = set()
    causes: list[Any] = [error]
    while causes:
        cause = causes.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        causes.extend([getattr(cause, "reason", None), cause.__cause__, cause.__context__])
        causes.extend(arg for arg in getattr(cause, "args", ()) if isinstance(arg, BaseException))


def why_unreachable(error: BaseException) -> str:
    """Why a connection could not be made, in the words an operator checks first (the type
    of the error when it is none of the usual ones)."""
    if isinstance(error, requests.exceptions.ProxyError):
        # Its causes are the proxy's: the host itself was never asked.
        answered = re.search(r"Tunnel connection failed: (\d{3}[\w .-]{0,60})", str(error))
        if answered:  # 407: the proxy wants credentials (in the variable's URL)
            return f"the proxy that HTTPS_PROXY or HTTP_PROXY names answered {answered[1]}"
        return "the proxy that HTTPS_PROXY or HTTP_PROXY names could not be reached"
    for cause in causes(error):
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "its host name could not be resolved"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused: nothing listens at that host and port"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "the network or the host is unreachable"
    return type(error).__name__


def page_title(html: str) -> str:
    """What an HTML error page (a gateway's, a proxy's) says, without its markup: its title,
    else its first heading, else its text, cut short. Scrub `html` of secrets first: a cut
    secret is no longer recognised."""
    found = _TITLE.search(html) or _HEADING.search(html)
    words = _TAG.sub(" ", found.group(1) if found else html)
    return " ".join(unescape(words).split())[:150]


_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")
_HEADING = re.compile(r"(?is)<h1[^>]*>(.*?)</h1>")
_TAG = re.compile(r"(?s)<[^>]*>")


class RemoteSession(requests.Session):
    """A requests Session that looks up the environment's proxy settings once per origin.

    requests looks them up before every request, walking every environment variable twice,
    which costs a worker more CPU than the rest of sending a page. A worker's environment does
    not change while it runs, so the answer for a scheme and host is kept for the session.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        scheme, netloc = urlsplit(url)[:2]
        key = (
            scheme,
            netloc,
            None if proxies is None else tuple(proxies.items()),
            stream,
            verify,
            cert,
            tuple(self.proxies.items()),
            self.stream,
            self.verify,
            self.cert,
        )
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(
                url, None if proxies is None else dict(proxies), stream, verify, cert
            )
            if len(self._environment) >= 64:
                self._environment.clear()
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}
