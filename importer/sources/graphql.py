"""The errors a GraphQL answer reports with 200, and the ones among them that only say the API
is throttling us.

GraphQL answers its errors with 200 and whatever data it could resolve: a field the
credentials may not read comes as null or is left out, and its records would go missing, so
such an answer fails the import. Many GraphQL APIs report their rate limits the same way,
though, and there the query itself is fine: asked again later, it is answered. Such an answer
is taken as the 429 it stands for, and the page waits and asks again (`services.chunks`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from importer.remote import parse_retry_after, rate_limit_reset
from importer.sources.base import SourceError

# An error's code or type that says the API is throttling (compared without case, spaces,
# "_" or "-"): Shopify's `extensions.code` THROTTLED, GitHub's `type` RATE_LIMITED, Linear's
# RATELIMITED, TOO_MANY_REQUESTS and RATE_LIMIT_EXCEEDED elsewhere, and monday.com's budget
# per minute, COMPLEXITY_BUDGET_EXHAUSTED. (A daily quota, monday.com's DAILY_LIMIT_EXCEEDED,
# is no wait within an import: it fails it as other errors do.)
THROTTLE_CODES = frozenset(
    {
        "THROTTLED",
        "RATELIMITED",
        "RATELIMITEXCEEDED",
        "TOOMANYREQUESTS",
        "COMPLEXITYBUDGETEXHAUSTED",
    }
)
# Seconds an error's `extensions` asks to wait (Codex's `retryAfterSeconds`, monday.com's
# `retry_in_seconds`).
_WAIT_EXTENSIONS = ("retryAfterSeconds", "retry_in_seconds")
_NOT_A_LETTER = re.compile(r"[^A-Z]")
# How much of an error's message is quoted (after its secrets are scrubbed).
QUOTED_CHARACTERS = 300


def check_errors(
    document: Any,
    headers: Mapping[str, str],
    *,
    refuse: Callable[..., SourceError],
    scrub: Callable[[str], str],
) -> None:
    """Refuse an answer that reports errors (`"errors": [...]`, beside its data or instead of
    it): as rate limited, waited out as a 429 is, when every error says the API is
    throttling; else for good, quoting the first other error and saying how many it reports.
    `headers`: the answer's, where GitHub says when its limit refills."""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors:
        return
    others = [error for error in errors if not says_throttled(error)]
    if not others:
        wait = asked_wait(document, errors, headers)
        asks = f", and asks to wait {round(wait, 1):g} s" if wait is not None else ""
        raise refuse(
            f"is rate limiting its GraphQL queries: {_quoted(errors[0], scrub)}{asks}",
            kind="rate_limited",
            permanent=False,
            # Taken as the 429 it stands for, whatever the status line said.
            status=429,
            retry_after=wait,
        )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise refuse(
        f"answered with GraphQL errors{more}: {_quoted(others[0], scrub)}. Check the request "
        "body's query and variables, and what the source's credentials may read; the import "
        "stops rather than end without the records the errors left out",
        kind="graphql_errors",
    )


def says_throttled(error: Any) -> bool:
    """Whether one error of a GraphQL answer says the API is throttling (`THROTTLE_CODES`,
    in the error's `type` or its `extensions`' `code` or `type`)."""
    if not isinstance(error, dict):
        return False
    extensions = error.get("extensions")
    extensions = extensions if isinstance(extensions, dict) else {}
    for word in (error.get("type"), extensions.get("code"), extensions.get("type")):
        if isinstance(word, str) and _NOT_A_LETTER.sub("", word.upper()) in THROTTLE_CODES:
            return True
    return False


def asked_wait(document: dict, errors: list, headers: Mapping[str, str]) -> float | None:
    """Seconds a throttled answer asks to wait, when it says: its Retry-After header, an
    error's own word, Shopify's query cost (what the query costs beyond what is available,
    at the rate it is restored), or the rate limit's reset header once no requests remain
    (GitHub's `x-ratelimit-reset`). None leaves the wait to the usual backoff."""
    asked = parse_retry_after(headers.get("Retry-After"))
    if asked is not None:
        return asked
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        for name in _WAIT_EXTENSIONS if isinstance(extensions, dict) else ():
            seconds = _number(extensions.get(name))
            if seconds is not None:
                return max(0.0, seconds)
    cost_wait = _query_cost_wait(document)
    if cost_wait is not None:
        return cost_wait
    return rate_limit_reset(headers)


def _query_cost_wait(document: dict) -> float | None:
    """Shopify's wait: `extensions.cost` holds the query's `requestedQueryCost` and a
    `throttleStatus` of points `currentlyAvailable`, restored at `restoreRate` a second."""
    extensions = document.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    status = cost.get("throttleStatus") if isinstance(cost, dict) else None
    if not isinstance(status, dict):
        return None
    requested = _number(cost.get("requestedQueryCost"))
    available = _number(status.get("currentlyAvailable"))
    rate = _number(status.get("restoreRate"))
    if requested is None or available is None or not rate or rate < 0:
        return None
    return max(0.0, (requested - available) / rate)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _quoted(error: Any, scrub: Callable[[str], str]) -> str:
    """An error's message in quotes, on one line and cut short; the whole error as JSON when
    it has no message."""
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        message = json.dumps(error, ensure_ascii=False, default=str)
    # Scrubbed whole before it is cut: a secret cut in two would no longer be recognised.
    message = " ".join(scrub(message).split())
    if len(message) > QUOTED_CHARACTERS:
        message = f"{message[: QUOTED_CHARACTERS - 1]}…"
    return f'"{message}"'
