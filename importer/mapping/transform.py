"""Turning source records into the data chunk Assets takes for one page."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from importer.mapping.coercion import (
    ABSENT,
    COERCERS,
    Coercions,
    Target,
    Unfit,
    coerce_value,
    coercions_for,
)
from importer.mapping.document import (
    ATTRIBUTE_TYPES,
    ID_LIKE_FIELDS,
    MISSING_IDENTITY_MODES,
    attribute_mappings,
    index_document,
    is_missing,
    is_text,
    type_mappings,
)


class MissingIdentityError(ValueError):
    """Records had no value for an externalIdPart field and the source says to fail, not skip."""

    SHOWN = 3

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        shown = "; ".join(reasons[: self.SHOWN])
        more = len(reasons) - self.SHOWN
        count = f"{len(reasons)} record{'s' if len(reasons) != 1 else ''}"
        super().__init__(
            f"{count} without identity: {shown}" + (f"; and {more} more" if more > 0 else "")
        )


@dataclass
class _Level:
    """What one selector (or one step of a dotted selector) reads from each of its records."""

    selector: str
    fields: dict[str, list[Target]] = field(default_factory=dict)
    identity: list[str] = field(default_factory=list)
    children: dict[str, _Level] = field(default_factory=dict)
    coercions: dict[str, Coercions] = field(default_factory=dict)


@dataclass
class TransformResult:
    data: dict[str, list[dict]]
    record_count: int
    skipped: list[str]  # one reason per record left out


def _compile(document: Any) -> dict[str, _Level]:
    index = index_document(document)
    levels: dict[str, _Level] = {}
    for path, type_mapping in type_mappings(document):
        selector = type_mapping.get("selector")
        if not is_text(selector):
            continue
        parts = selector.split(".")
        level = levels.setdefault(parts[0], _Level(parts[0]))
        for depth in range(1, len(parts)):
            level = level.children.setdefault(parts[depth], _Level(".".join(parts[: depth + 1])))
        object_type = index.type_for(type_mapping)
        for _, attribute_mapping in attribute_mappings(type_mapping, path):
            attribute = index.attribute_for(object_type, attribute_mapping) or {}
            kind = attribute.get("type") if attribute.get("type") in ATTRIBUTE_TYPES else None
            target = Target(
                attribute=str(
                    attribute.get("name") or attribute_mapping.get("attributeName") or "?"
                ),
                type=kind,
                # An attribute this code cannot see takes whatever the record holds.
                many=kind is None or attribute.get("maximumCardinality", 1) != 1,
            )
            locators = attribute_mapping.get("attributeLocators")
            for locator in locators if isinstance(locators, list) else []:
                if not is_text(locator):
                    continue
                level.fields.setdefault(locator, []).append(target)
                if attribute_mapping.get("externalIdPart") is True and (
                    locator not in level.identity
                ):
                    level.identity.append(locator)
    for level in _all_levels(levels.values()):
        for targets in level.fields.values():
            targets.sort(key=lambda target: COERCERS.get(target.type, COERCERS[None])[2])
        level.coercions = {name: coercions_for(targets) for name, targets in level.fields.items()}
    return levels


def _all_levels(levels: Iterable[_Level]) -> Iterator[_Level]:
    for level in levels:
        yield level
        yield from _all_levels(level.children.values())


def transform_records(
    records: Iterable[Any], document: dict, *, missing_identity: str = "skip"
) -> TransformResult:
    """Build the chunk's `data`: each top-level selector gets the records it reads.

    Each record keeps only the fields some locator reads (and the arrays a dotted selector
    walks into), each value coerced to its attribute's type. A record with a value that cannot
    be coerced, or (with missing_identity="skip") without a value for an externalIdPart field,
    is left out and the reason recorded: never sent with a wrong value. With
    missing_identity="fail", records without identity raise MissingIdentityError after the page.
    """
    if missing_identity not in MISSING_IDENTITY_MODES:
        raise ValueError(f"missing_identity must be one of {', '.join(MISSING_IDENTITY_MODES)}")
    levels = _compile(document)
    if not levels:
        raise ValueError("The mapping has no object type mapping with a selector.")
    id_fields = [locator for level in levels.values() for locator in level.identity]
    id_fields += [name for name in ID_LIKE_FIELDS if name not in id_fields]
    data: dict[str, list[dict]] = {}
    skipped: list[str] = []
    without_identity: list[str] = []
    accepted = 0
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            skipped.append(f"record {position}: is {_show(record)}, not an object")
            continue
        problems: list[str] = []
        missing: list[str] = []
        picked = {
            selector: _pick(level, record, "", problems, missing)
            for selector, level in levels.items()
        }
        if problems or missing:
            reason = f"record {position} ({_describe(record, id_fields)}): " + "; ".join(
                problems + missing
            )
            (without_identity if missing and missing_identity == "fail" else skipped).append(reason)
            continue
        accepted += 1
        for selector, item in picked.items():
            data.setdefault(selector, []).append(item)
    if without_identity:
        raise MissingIdentityError(without_identity)
    return TransformResult(data=data, record_count=accepted, skipped=skipped)


def _pick(level: _Level, record: dict, at: str, problems: list[str], missing: list[str]) -> dict:
    """The part of one record its selector sends, coerced; problems go to the two lists."""
    picked: dict[str, Any] = {}
    unfit: set[str] = set()
    for locator, coercions in level.coercions.items():
        value = record.get(locator)
        try:
            coerced = coerce_value(value, coercions)
        except Unfit as error:
            target, expected = error.args
            problems.append(
                f"field '{at}{locator}' is {_show(value)}, expected {expected} "
                f"for attribute '{target.attribute}'"
            )
            unfit.add(locator)
            continue
        if coerced is not ABSENT:
            picked[locator] = coerced
    for locator in level.identity:
        if locator not in picked and locator not in unfit:
            missing.append(
                f"no value for '{at}{locator}', which identifies the object "
                f"in selector '{level.selector}'"
            )
    for key, child in level.children.items():
        items = record.get(key)
        if is_missing(items):
            continue
        if not isinstance(items, list):
            problems.append(
                f"field '{at}{key}' is {_show(items)}, expected a list of objects "
                f"for selector '{child.selector}'"
            )
            continue
        kept = []
        for position, item in enumerate(items):
            where = f"{at}{key}[{position}]"
            if isinstance(item, dict):
                kept.append(_pick(child, item, f"{where}.", problems, missing))
            else:
                problems.append(f"field '{where}' is {_show(item)}, expected an object")
        picked[key] = kept
    return picked


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _describe(record: dict, id_fields: list[str]) -> str:
    for key in id_fields:
        value = record.get(key)
        if not is_missing(value) and not isinstance(value, dict | list):
            return f"{key}={str(value)[:60]}"
    return "no id"
