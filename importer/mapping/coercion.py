"""Converting record values to the attribute types Assets expects, or saying why not."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from importer.mapping.document import is_missing


class Unfit(Exception):
    """A value that cannot become the attribute's type."""


ABSENT: Any = object()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}
_INT64 = 2**63


def as_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple | set):
        raise Unfit
    # JSON's 1e400 and NaN are no number anyone wrote: not "inf" or "nan" in Assets.
    if isinstance(value, float) and not math.isfinite(value):
        raise Unfit
    if isinstance(value, Decimal) and not value.is_finite():
        raise Unfit
    return str(value)


def as_integer(value: Any) -> int:
    if value.__class__ is int and -_INT64 <= value < _INT64:
        return value
    if isinstance(value, bool):
        raise Unfit
    if isinstance(value, int):
        result = value
    elif isinstance(value, float | Decimal | str):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise Unfit
        # The exponent bound keeps "1e999999" from building a million-digit int.
        if not number.is_finite() or number.adjusted() > 20 or number != number.to_integral():
            raise Unfit
        result = int(number)
    else:
        raise Unfit
    if not -_INT64 <= result < _INT64:
        raise Unfit
    return result


def as_double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise Unfit
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise Unfit
    if not math.isfinite(number):
        raise Unfit
    return number


def as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise Unfit


def as_date(value: Any) -> str:
    """An ISO date; a date-time keeps its own calendar date (no shift to UTC)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise Unfit
    text = value.strip()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        raise Unfit


def as_date_time(value: Any) -> str:
    """ISO-8601 with its offset; a naive value goes as given, since its zone is unknown here."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if not isinstance(value, str):
        raise Unfit
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Unfit
    return moment.isoformat() if moment.tzinfo is not None else text


def as_time(value: Any) -> str:
    if isinstance(value, time):
        return value.isoformat()
    if not isinstance(value, str):
        raise Unfit
    try:
        return time.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise Unfit


def as_email(value: Any) -> str:
    if not isinstance(value, str):
        raise Unfit
    text = value.strip()
    if not _EMAIL.match(text):
        raise Unfit
    return text


def as_url(value: Any) -> str:
    if not isinstance(value, str):
        raise Unfit
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise Unfit
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Unfit
    if any(character.isspace() for character in text):
        raise Unfit
    return text


def as_ipaddress(value: Any) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if not isinstance(value, str):
        raise Unfit
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        raise Unfit
    return value.strip()


def as_given(value: Any) -> Any:
    return value


# type -> (coercer, what the user must give, how specific: lower wins when types share a field)
COERCERS: dict[str | None, tuple[Callable[[Any], Any], str, int]] = {
    "integer": (as_integer, "a whole number (integer)", 0),
    "double": (as_double, "a number (double)", 0),
    "boolean": (as_boolean, "true/false, yes/no or 1/0 (boolean)", 0),
    "date": (as_date, "an ISO date like 2024-05-31 (date)", 0),
    "date_time": (as_date_time, "an ISO-8601 date and time (date_time)", 0),
    "time": (as_time, "a time like 14:30 (time)", 0),
    "email": (as_email, "an email address (email)", 0),
    "url": (as_url, "an http or https URL (url)", 0),
    "ipaddress": (as_ipaddress, "an IPv4 or IPv6 address (ipaddress)", 0),
    "text": (as_text, "text (text)", 1),
    "textarea": (as_text, "text (textarea)", 1),
    "select": (as_text, "text (select)", 1),
    "status": (as_text, "a status name (status)", 1),
    "referenced_object": (as_text, "text that finds the referenced object", 1),
    None: (as_given, "any value", 2),
}


@dataclass(frozen=True)
class Target:
    """One attribute a field feeds."""

    attribute: str
    type: str | None  # None when the document does not say (an invalid document)
    many: bool  # maximumCardinality other than 1: a list of values is fine
    most: int | None = None  # maximumCardinality above 1: at most this many values
    choices: tuple[str, ...] = ()  # typeValues of a status or select: the only values it takes


# How one target takes a value: its coercer, what it expects in words, the target.
Step = tuple[Callable[[Any], Any], str, Target]


@dataclass(frozen=True, slots=True)
class Coercions:
    """A field's targets with their coercers and limits, worked out once per mapping."""

    steps: tuple[Step, ...]
    only: Step | None  # the usual case, one attribute per field: its step
    single: Target | None  # a target that takes one value, not a list
    capped: Target | None  # the target with the lowest maximumCardinality above 1


def coercions_for(targets: list[Target]) -> Coercions:
    steps = []
    for target in targets:
        coercer, expected, _ = COERCERS.get(target.type, COERCERS[None])
        if target.choices:
            coercer, expected = one_of(target.choices)
        steps.append((coercer, expected, target))
    capped = [target for target in targets if target.many and target.most is not None]
    return Coercions(
        steps=tuple(steps),
        only=steps[0] if len(steps) == 1 else None,
        single=next((target for target in targets if not target.many), None),
        capped=min(capped, key=lambda target: target.most or 0) if capped else None,
    )


def one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], str], str]:
    """A coercer taking only the given values, and what it expects in words.

    A value that differs from a choice only in case or surrounding blanks is sent in the
    choice's own spelling: that is what Assets matches, whatever its rule for case.
    """
    exact = frozenset(choices)
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(choice.strip().casefold(), choice)

    def coerce(value: Any) -> str:
        text = as_text(value)
        if text in exact:
            return text
        found = folded.get(text.strip().casefold())
        if found is None:
            raise Unfit
        return found

    shown = ", ".join(repr(choice) for choice in choices[:_CHOICES_SHOWN])
    if len(choices) > _CHOICES_SHOWN:
        shown += f", ... ({len(choices)} in all)"
    return coerce, f"one of {shown} (typeValues)"


_CHOICES_SHOWN = 10


def coerce_value(value: Any, coercions: Coercions) -> Any:
    """The value to send, or ABSENT; raises Unfit with the target it failed."""
    if is_missing(value):
        return ABSENT
    if isinstance(value, list | tuple):
        if coercions.single is not None:
            raise Unfit(coercions.single, "one value (not a list)")
        items = [_coerce_one(item, coercions) for item in value if not is_missing(item)]
        capped = coercions.capped
        if capped is not None and len(items) > (capped.most or 0):
            raise Unfit(capped, f"at most {capped.most} values (maximumCardinality {capped.most})")
        return items or ABSENT
    return _coerce_one(value, coercions)


def _coerce_one(value: Any, coercions: Coercions) -> Any:
    only = coercions.only
    if only is not None:
        coercer, expected, target = only
        try:
            return coercer(value)
        except Unfit:
            raise Unfit(target, expected) from None
    result = ABSENT
    for coercer, expected, target in coercions.steps:  # most specific first: its result is sent
        try:
            coerced = coercer(value)
        except Unfit:
            raise Unfit(target, expected) from None
        if result is ABSENT:
            result = coerced
    return result
