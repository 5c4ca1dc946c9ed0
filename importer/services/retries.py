"""How long to wait before trying Assets or a source again."""

from __future__ import annotations

import random
import time

from importer.assets import AssetsRateLimited, AssetsServerError

MAX_RETRY_WAIT_SECONDS = 15 * 60


def call_with_retries(call, *, attempts: int = 3, max_wait: float = 5.0):
    """Call Assets, retrying briefly when it answered that it could not do it now.

    Only answers that say nothing was done (429, 5xx) are retried: after a timeout the call
    may have succeeded, and repeating "start an execution" would then conflict with it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (AssetsRateLimited, AssetsServerError) as error:
            if attempt == attempts or error.permanent:  # a 500 with RETRY_HTTP_500 off
                raise
            time.sleep(min(retry_delay(attempt, error.retry_after), max_wait))


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (base x 2^attempt + jitter); Retry-After wins if given."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_WAIT_SECONDS)
    return min(2.0 * 2 ** (attempt - 1) + random.uniform(0, 1.0), MAX_RETRY_WAIT_SECONDS)
