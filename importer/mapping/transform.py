"""Turning source records into the data chunk Assets takes for one page."""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from operator import methodcaller
from typing import Any

import orjson

from importer.mapping.coercion import (
    ABSENT,
    COERCERS,
    Coercions,
    Step,
    Target,
    Unfit,
    as_text,
    coerce_value,
    coercions_for,
)
from importer.mapping.document import (
    ATTRIBUTE_TYPES,
    ID_LIKE_FIELDS,
    INVALID_VALUES_MODES,
    MISSING_IDENTITY_MODES,
    attribute_mappings,
    index_document,
    is_missing,
    is_text,
    type_mappings,
    type_values,
    whole_number,
)


class RecordsRefused(ValueError):
    """Records of a page that the source's policy says fail the import, not leave it."""

    SHOWN = 3
    kind = "records_refused"
    what = "refused"

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        shown = "; ".join(reasons[: self.SHOWN])
        more = len(reasons) - self.SHOWN
        count = f"{len(reasons)} record{'s' if len(reasons) != 1 else ''}"
        super().__init__(
            f"{count} {self.what}: {shown}" + (f"; and {more} more" if more > 0 else "")
        )


class MissingIdentityError(RecordsRefused):
    """Records had no value for an externalIdPart field and the source says to fail, not skip."""

    kind = "missing_identity"
    what = "without identity"


class InvalidValuesError(RecordsRefused):
    """Records held values Assets' schema rules out and the source says to fail, not skip."""

    kind = "invalid_values"
    what = "with values Assets' schema rules out"


# Items of a nested selector left out in an import that sent none of them, from this many on,
# tell a field renamed at the source (`services.totals.every_nested_item_left_out`): one or
# two bad items of a selector seldom seen (a laptop's one licence) are left out and counted.
ITEMS_THAT_TELL_A_RENAME = 3

# A nested selector's first item left out is kept with its counts, this long at most: the
# page's own error keeps only its first lines, which a page of many records left out fills.
FIRST_REASON_CHARS = 300


@dataclass
class _Level:
    """What one selector (or one step of a dotted selector) reads from each of its records."""

    selector: str
    fields: dict[str, list[Target]] = field(default_factory=dict)
    identity: list[str] = field(default_factory=list)
    children: dict[str, _Level] = field(default_factory=dict)
    # An object type mapping has this very selector: each record of it is an object. A step
    # of a dotted selector without one only leads to the objects below it.
    mapped: bool = False
    coercions: dict[str, Coercions] = field(default_factory=dict)
    # Attributes with a minimumCardinality: (name, the fields feeding it, how many values).
    required: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)
    # The usual case of those, checked by a lookup: one field, one value. (field, attribute)
    required_fields: list[tuple[str, str]] = field(default_factory=list)
    # What the record loop reads, per field: its coercions; when it feeds one attribute, that
    # attribute's step; and whether that step is plain text, which takes a string as it is.
    plan: tuple[tuple[str, Coercions, Step | None, bool], ...] = ()


@dataclass
class TransformResult:
    data: dict[str, list[dict]]
    record_count: int
    skipped: list[str]  # one reason per record left out
    identities: bytes = b""  # `identity_digests` of the records sent, when asked for
    # One reason per nested item (a disk of a computer) left out while its record was sent.
    items_left_out: list[str] = field(default_factory=list)
    # Per nested selector holding items on the page: [items sent, items left out], and when
    # some were left out the first one's reason (cut to FIRST_REASON_CHARS); None when the
    # mapping has no nested selector. An import that sends none of a selector's items while
    # leaving some out fails at its end, naming that reason (`services.totals`).
    nested: dict[str, list[int | str]] | None = None


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
        level.mapped = True
        object_type = index.type_for(type_mapping)
        for _, attribute_mapping in attribute_mappings(type_mapping, path):
            attribute = index.attribute_for(object_type, attribute_mapping) or {}
            target = _target(attribute, attribute_mapping)
            raw_locators = attribute_mapping.get("attributeLocators")
            locators = tuple(
                locator
                for locator in (raw_locators if isinstance(raw_locators, list) else [])
                if is_text(locator)
            )
            for locator in locators:
                level.fields.setdefault(locator, []).append(target)
                if attribute_mapping.get("externalIdPart") is True and (
                    locator not in level.identity
                ):
                    level.identity.append(locator)
            minimum = whole_number(attribute, "minimumCardinality") or 0
            if minimum > 0 and locators:
                level.required.append((target.attribute, locators, minimum))
    for level in _all_levels(levels.values()):
        for targets in level.fields.values():
            targets.sort(key=_specificity)
        level.coercions = {name: coercions_for(targets) for name, targets in level.fields.items()}
        level.plan = tuple(
            (name, coercions, coercions.only, _takes_text_as_is(coercions.only))
            for name, coercions in level.coercions.items()
        )
        # A missing identity is reported (and handled) as such, not once more as required.
        rules = [rule for rule in level.required if not set(rule[1]) & set(level.identity)]
        level.required = [rule for rule in rules if len(rule[1]) > 1 or rule[2] > 1]
        level.required_fields = [
            (locators[0], attribute)
            for attribute, locators, minimum in rules
            if len(locators) == 1 and minimum == 1
        ]
    return levels


def _takes_text_as_is(step: Step | None) -> bool:
    return step is not None and step[0] is as_text


def _target(attribute: dict, attribute_mapping: dict) -> Target:
    kind = attribute.get("type") if attribute.get("type") in ATTRIBUTE_TYPES else None
    most = whole_number(attribute, "maximumCardinality")
    return Target(
        attribute=str(attribute.get("name") or attribute_mapping.get("attributeName") or "?"),
        type=kind,
        # An attribute this code cannot see takes whatever the record holds.
        many=kind is None or attribute.get("maximumCardinality", 1) != 1,
        most=most if most is not None and most > 1 else None,
        choices=type_values(attribute),
    )


def _specificity(target: Target) -> int:
    """Lower first: when attributes share a field, the first one's coerced value is sent."""
    return 0 if target.choices else COERCERS.get(target.type, COERCERS[None])[2]


def _all_levels(levels: Iterable[_Level]) -> Iterator[_Level]:
    for level in levels:
        yield level
        yield from _all_levels(level.children.values())


def transform_records(
    records: Iterable[Any],
    document: dict,
    *,
    missing_identity: str = "skip",
    invalid_values: str = "skip",
) -> TransformResult:
    """Build the chunk's `data`: each top-level selector gets the records it reads.

    Each record keeps only the fields some locator reads (and the arrays a dotted selector
    walks into), each value coerced to its attribute's type. A record is never sent with a
    value Assets' schema rules out: one that cannot be coerced, a status or select outside
    its `typeValues`, more values than `maximumCardinality` or fewer than
    `minimumCardinality`. With invalid_values="skip" such a record is left out and the reason
    recorded; with "fail", InvalidValuesError is raised after the page. A record without a
    value for an externalIdPart field is handled the same way by missing_identity
    (MissingIdentityError).
    """
    if missing_identity not in MISSING_IDENTITY_MODES:
        raise ValueError(f"missing_identity must be one of {', '.join(MISSING_IDENTITY_MODES)}")
    if invalid_values not in INVALID_VALUES_MODES:
        raise ValueError(f"invalid_values must be one of {', '.join(INVALID_VALUES_MODES)}")
    levels, id_fields = _compiled(document)
    if not levels:
        raise ValueError("The mapping has no object type mapping with a selector.")
    outputs: list[list[dict]] = [[] for _ in levels]
    skipped: list[str] = []
    without_identity: list[str] = []
    invalid: list[str] = []
    fail_invalid = invalid_values == "fail"
    fail_missing = missing_identity == "fail"
    accepted = 0
    problems: list[str] = []
    missing: list[str] = []
    items_left_out: list[str] = []
    # A nested item's problem leaves out that item alone, unless the source says such
    # problems fail the import.
    items = _ItemRules([], [], fail_missing=fail_missing, fail_invalid=fail_invalid)
    # Per nested selector, the items left out of the records sent, and the first one's reason.
    left_out_of: Counter = Counter()
    first_left_out: dict[str, str] = {}
    # Only steps of dotted selectors at the top: a record may hold no object at all.
    only_steps = not any(level.mapped for level in levels.values())
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            reason = f"record {position}: is {_show(record)}, not an object"
            (invalid if fail_invalid else skipped).append(reason)
            continue
        picked = [_pick(level, record, "", problems, missing, items) for level in levels.values()]
        dropped, dropped_from = items.left_out, items.selectors
        if dropped:
            items.left_out, items.selectors = [], []
        if problems or missing:
            reason = f"record {position} ({_describe(record, id_fields)}): " + "; ".join(
                problems + missing
            )
            if missing and fail_missing:
                without_identity.append(reason)
            elif problems and fail_invalid:
                invalid.append(reason)
            else:
                skipped.append(reason)
            problems, missing = [], []
            continue
        if only_steps:
            nothing = _holds_no_object(levels.values(), picked)
            if nothing:
                # Sent, it would be counted as taken while Assets makes no object of it. Its
                # items left out are why, told once with the record, not counted apart.
                why = "; ".join(f"left out {reason}" for reason in dropped) or nothing
                skipped.append(
                    f"record {position} ({_describe(record, id_fields)}): holds no object "
                    f"for the mapping: {why}"
                )
                continue
        if dropped:
            described = f"record {position} ({_describe(record, id_fields)}): left out "
            for reason, selector in zip(dropped, dropped_from, strict=True):
                items_left_out.append(described + reason)
                left_out_of[selector] += 1
                if selector not in first_left_out:
                    first_left_out[selector] = (described + reason)[:FIRST_REASON_CHARS]
        accepted += 1
        for sent, item in zip(outputs, picked, strict=True):
            sent.append(item)
    # A selector none of whose records was sent is left out of the chunk.
    data = {selector: sent for selector, sent in zip(levels, outputs, strict=True) if sent}
    if without_identity:
        raise MissingIdentityError(without_identity)
    if invalid:
        raise InvalidValuesError(invalid)
    return TransformResult(
        data=data,
        record_count=accepted,
        skipped=skipped,
        items_left_out=items_left_out,
        nested=_nested_counts(levels, data, left_out_of, first_left_out),
    )


def _nested_counts(
    levels: dict[str, _Level],
    data: dict[str, list[dict]],
    left_out_of: Counter,
    first_left_out: dict[str, str],
) -> dict[str, list[int | str]] | None:
    """Per nested selector with items on the page, [sent, left out] and, when some were left
    out, the first one's reason; None for a mapping without nested selectors, which then
    costs nothing more."""
    if not any(level.children for level in levels.values()):
        return None
    sent = Counter()
    _count_items(levels.values(), [data.get(selector, []) for selector in levels], sent)
    counts: dict[str, list[int | str]] = {}
    for selector in sorted(sent.keys() | left_out_of.keys()):
        if left_out_of[selector]:
            counts[selector] = [sent[selector], left_out_of[selector], first_left_out[selector]]
        elif sent[selector]:
            counts[selector] = [sent[selector], 0]
    return counts


def first_left_out(entry: list) -> str:
    """The first item's reason from one selector's entry of `TransformResult.nested`; "" for
    an entry of none left out, or of two elements as written before reasons were kept."""
    return entry[2] if len(entry) > 2 else ""


def _count_items(levels: Iterable[_Level], objects: list[list[dict]], counts: Counter) -> None:
    """Add the items each nested selector holds in these objects (per level) to `counts`."""
    for level, parts in zip(levels, objects, strict=True):
        for key, child in level.children.items():
            items = [item for part in parts for item in part.get(key) or ()]
            counts[child.selector] += len(items)
            _count_items([child], [items], counts)


def fields_in_no_record(records: list[Any], document: dict, *, minimum: int = 1) -> list[str]:
    """The fields the mapping reads that no record it reads them from holds, as
    "'field' (attribute A, B)" for a top-level selector and "'field' (attribute A,
    computers.disks)" for a nested one, read over the items of the records' lists: most
    likely misspelled, their attributes would arrive empty in every object. A selector
    with fewer than `minimum` records (items) on the page is not judged: a page without
    any says nothing, one of few may just lack an optional field."""
    levels, _ = _compiled(document)
    found: list[str] = []
    _fields_missing_at(levels.values(), records, minimum, found)
    return found


def _fields_missing_at(
    levels: Iterable[_Level], records: list[Any], minimum: int, found: list[str]
) -> None:
    objects = [record for record in records if isinstance(record, dict)]
    if not objects:
        return
    for level in levels:
        if len(objects) >= minimum:
            where = "" if "." not in level.selector else f", {level.selector}"
            found.extend(
                f"'{locator}' (attribute "
                f"{', '.join(target.attribute for target in targets)}{where})"
                for locator, targets in level.fields.items()
                if all(is_missing(record.get(locator)) for record in objects)
            )
        for key, child in level.children.items():
            items = [
                item
                for record in objects
                if isinstance(record.get(key), list)
                for item in record[key]
            ]
            _fields_missing_at([child], items, minimum, found)


def identity_digests(result: TransformResult, document: dict) -> bytes:
    """A 64-bit digest of each sent record's identity (the externalIdPart values of its
    top-level objects, as text), in ascending order, as an array of unsigned 64-bit integers
    (`array("Q")`); b"" when no top-level selector has one.

    Digests, not the values: a page of 1000 records costs 8 KB and under a millisecond, and
    two pages holding one record is all they need to show. In order, so that a share of them
    is a slice found by bisection (`services.totals`).
    """
    levels, _ = _compiled(document)
    parts = [
        (result.data[selector], locator)
        for selector, level in levels.items()
        if level.identity and selector in result.data
        for locator in level.identity
    ]
    if not parts:
        return b""
    if len(parts) == 1:  # the usual mapping: one object per record, named by one field
        objects, locator = parts[0]
        texts = [str(item[locator]) for item in objects]
    else:
        texts = [
            "\x1f".join(str(objects[at].get(locator, "")) for objects, locator in parts)
            for at in range(result.record_count)
        ]
    # map() rather than a loop: a page of 1000 costs 0.7 ms, not 1.2.
    digests = array("Q")
    digests.frombytes(b"".join(map(_DIGEST, map(_BLAKE2B_8, map(str.encode, texts)))))
    return array("Q", sorted(digests)).tobytes()


_BLAKE2B_8 = partial(hashlib.blake2b, digest_size=8)
_DIGEST = methodcaller("digest")


# Mappings worked out lately, by their JSON text: a lane transforms page after page with one.
_COMPILED: dict[bytes, tuple[dict[str, _Level], list[str]]] = {}
_COMPILED_KEPT = 16


def _compiled(document: Any) -> tuple[dict[str, _Level], list[str]]:
    """The document's levels and the fields that name a record in messages, worked out once."""
    try:
        key = orjson.dumps(document)
    except (orjson.JSONEncodeError, TypeError):  # not JSON text: nothing to key it by
        return _levels_and_id_fields(document)
    found = _COMPILED.get(key)
    if found is None:
        found = _levels_and_id_fields(document)
        if len(_COMPILED) >= _COMPILED_KEPT:
            _COMPILED.clear()
        _COMPILED[key] = found
    return found


def _levels_and_id_fields(document: Any) -> tuple[dict[str, _Level], list[str]]:
    levels = _compile(document)
    id_fields = [locator for level in levels.values() for locator in level.identity]
    # Records that feed several object types are named by their own id, not by the e-mail
    # of a person many records share.
    id_fields.sort(key=lambda locator: locator not in ID_LIKE_FIELDS)
    id_fields += [name for name in ID_LIKE_FIELDS if name not in id_fields]
    return levels, id_fields


# Values of these types are never missing, never lists: they go straight to their coercer.
_SCALARS = frozenset({int, float, bool})


@dataclass
class _ItemRules:
    """Where the problems of a nested item go: the reasons of the items left out (with their
    selectors), or, for the kinds of problem the source says fail the import, the record's."""

    left_out: list[str]
    selectors: list[str]
    fail_missing: bool
    fail_invalid: bool

    def leave_out(self, selector: str, reason: str) -> None:
        self.left_out.append(reason)
        self.selectors.append(selector)


def _pick(
    level: _Level,
    record: dict,
    at: str,
    problems: list[str],
    missing: list[str],
    items: _ItemRules | None = None,
) -> dict:
    """The part of one record its selector sends, coerced; problems go to the two lists.
    With `items`, a nested item with a problem is left out alone (its reason noted there),
    not its whole record with every other object it makes."""
    picked: dict[str, Any] = {}
    unfit: set[str] = set()
    get = record.get
    for locator, coercions, only, as_is in level.plan:
        value = get(locator)
        if value is None:
            continue
        kind = value.__class__
        if only is not None and (kind is str or kind in _SCALARS):
            # The usual case, one attribute fed by a plain value: as coerce_value would do.
            if kind is str:
                if not value.strip():
                    continue
                if as_is:
                    picked[locator] = value
                    continue
            try:
                picked[locator] = only[0](value)
            except Unfit:
                problems.append(_unfit(at, locator, value, only[2], only[1]))
                unfit.add(locator)
            continue
        try:
            coerced = coerce_value(value, coercions)
        except Unfit as error:
            target, expected = error.args
            problems.append(_unfit(at, locator, value, target, expected))
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
    for locator, attribute in level.required_fields:
        if locator not in picked and locator not in unfit:
            problems.append(_too_few(at, attribute, (locator,), 1, 0))
    for attribute, locators, minimum in level.required:
        count = 0
        for locator in locators:
            value = picked.get(locator, ABSENT)
            if value is not ABSENT:
                count += len(value) if isinstance(value, list) else 1
        if count < minimum and unfit.isdisjoint(locators):
            problems.append(_too_few(at, attribute, locators, minimum, count))
    for key, child in level.children.items():
        values = record.get(key)
        if is_missing(values):
            continue
        if not isinstance(values, list):
            problems.append(
                f"field '{at}{key}' is {_show(values)}, expected a list of objects "
                f"for selector '{child.selector}'"
            )
            continue
        kept = []
        for position, item in enumerate(values):
            where = f"{at}{key}[{position}]"
            if not isinstance(item, dict):
                problem = f"field '{where}' is {_show(item)}, expected an object"
                if items is None or items.fail_invalid:
                    problems.append(problem)
                else:
                    items.leave_out(child.selector, f"'{where}': {problem}")
                continue
            if items is None:
                kept.append(_pick(child, item, f"{where}.", problems, missing))
                continue
            own_problems: list[str] = []
            own_missing: list[str] = []
            chosen = _pick(child, item, f"{where}.", own_problems, own_missing, items)
            fails = (own_missing and items.fail_missing) or (own_problems and items.fail_invalid)
            if fails:
                problems.extend(own_problems)
                missing.extend(own_missing)
            elif own_problems or own_missing:
                reason = f"'{where}': " + "; ".join(own_problems + own_missing)
                items.leave_out(child.selector, reason)
            else:
                kept.append(chosen)
        picked[key] = kept
    return picked


def _holds_no_object(levels, picked: list[dict], at: str = "") -> str:
    """Why a record picked at these levels makes no object ("" when it makes one): a step of
    a dotted selector whose list is missing or empty (`computers.items` over records
    without `items`)."""
    reasons = []
    for level, part in zip(levels, picked, strict=True):
        if level.mapped:
            return ""
        for key, child in level.children.items():
            items = part.get(key)
            if not items:
                reasons.append(f"no '{at}{key}' list for selector '{child.selector}'")
                continue
            inner = _holds_no_object([child] * len(items), items, f"{at}{key}[].")
            if not inner:
                return ""
            reasons.append(inner)
    return "; ".join(dict.fromkeys(reasons))


def _unfit(at: str, locator: str, value: Any, target: Target, expected: str) -> str:
    return (
        f"field '{at}{locator}' is {_show(value)}, expected {expected} "
        f"for attribute '{target.attribute}'"
    )


def _too_few(at: str, attribute: str, locators: tuple[str, ...], minimum: int, count: int) -> str:
    fields = " or ".join(f"'{at}{locator}'" for locator in locators)
    rule = f"(minimumCardinality {minimum})"
    if not count:
        return f"no value for {fields}, which attribute '{attribute}' requires {rule}"
    values = f"{count} value{'s' if count != 1 else ''}"
    return f"{fields} gave {values}, attribute '{attribute}' requires {minimum} or more {rule}"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _describe(record: dict, id_fields: list[str]) -> str:
    for key in id_fields:
        value = record.get(key)
        if not is_missing(value) and not isinstance(value, dict | list):
            return f"{key}={str(value)[:60]}"
    return "no id"
