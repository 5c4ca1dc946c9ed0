"""The one error type of a call to another system (Assets or a source).

Services decide by its fields, never by parsing messages: `permanent` (not worth retrying),
`kind` (the reason shown on a chunk and counted), `status` (the HTTP status, if any) and
`retry_after` (seconds the remote asked us to wait).
"""

from __future__ import annotations


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
