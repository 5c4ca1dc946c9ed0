"""How long to wait before trying Assets or a source again."""

from __future__ import annotations

import random
import time

from importer.assets import AssetsError, AssetsRateLimited, AssetsServerError, AssetsUnavailable

MAX_RETRY_WAIT_SECONDS = 15 * 60


def call_with_retries(call, *, attempts: int = 3, max_wait: float = 5.0, repeatable: bool = True):
    """Call Assets, retrying briefly when it answered that it could not do it now (429, 5xx).

    `repeatable=False` for a call that must not be done twice (starting an execution): only
    the answers that say nothing was done are retried then (429, 503). A 502 or 504 comes
    from a gateway that gave up waiting, and a 500 from a request that failed half-way:
    Assets may have done it all the same. After a timeout the call is never repeated here.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (AssetsRateLimited, AssetsServerError) as error:
            if attempt == attempts or error.permanent:  # a 500 with RETRY_HTTP_500 off
                raise
            if not repeatable and error.status not in NOTHING_DONE_STATUSES:
                raise
            time.sleep(min(retry_delay(attempt, error.retry_after), max_wait))


# Answers that say the request was not carried out.
NOTHING_DONE_STATUSES = frozenset({429, 503})


def may_have_been_done(error: AssetsError) -> bool:
    """Whether a call that failed may have been carried out: no answer came, or a gateway's
    (502, 504) or a half-done request's (500) instead of Assets' own."""
    return isinstance(error, AssetsUnavailable) or error.status in (500, 502, 504)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (base x 2^attempt + jitter); Retry-After wins if given,
    with a little jitter too: the pages a rate limit refused together must not all come back
    in the same instant."""
    if retry_after is not None:
        jitter = random.uniform(0, min(1.0 + retry_after / 10, 30.0))
        return min(retry_after + jitter, MAX_RETRY_WAIT_SECONDS)
    return min(2.0 * 2 ** (attempt - 1) + random.uniform(0, 1.0), MAX_RETRY_WAIT_SECONDS)
