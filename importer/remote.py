"""What calls to another system (Assets or a source) share: one error type, one session type.

Services decide by the error's fields, never by parsing messages: `permanent` (not worth
retrying), `kind` (the reason shown on a chunk and counted), `status` (the HTTP status, if
any) and `retry_after` (seconds the remote asked us to wait).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests


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
        if kind is not None:
            self.kind = kind


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
