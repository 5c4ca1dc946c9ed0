"""Drafting a schema and mapping from sample records, for staff to edit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from importer.mapping.coercion import (
    Unfit,
    as_date,
    as_date_time,
    as_email,
    as_ipaddress,
    as_url,
)
from importer.mapping.document import is_missing, is_text

# In order of preference, compared without case, "_" or "-" (so assetTag finds asset_tag).
_ID_CANDIDATES = (
    "id",
    "uuid",
    "serial",
    "serialnumber",
    "key",
    "sku",
    "assettag",
    "hostname",
    "name",
)
_NAME_CANDIDATES = ("name", "hostname", "title")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def draft_mapping(records: Iterable[Any], *, name: str, selector: str) -> dict:
    """A schema-and-mapping document guessed from sample records, for the user to edit.

    One object type named `name`, one attribute per top-level scalar field, types guessed from
    the values. Strings of digits stay text: "00123" may be a serial whose zeros matter.
    """
    if not is_text(name) or not is_text(selector):
        raise ValueError("A draft needs a name and a selector.")
    sample = [record for record in records if isinstance(record, dict)]
    fields: dict[str, list[Any]] = {}
    nested: set[str] = set()
    dotted: set[str] = set()  # a locator cannot name them (Assets reads no nested paths)
    for record in sample:
        for key, value in record.items():
            if not isinstance(key, str) or not key.strip():
                continue
            if "." in key:
                dotted.add(key)
                continue
            if isinstance(value, dict | list):
                nested.add(key)
            fields.setdefault(key, []).append(value)
    scalar_fields = {key: values for key, values in fields.items() if key not in nested}
    if not scalar_fields:
        raise ValueError("The sample records have no top-level fields with plain values to map.")

    id_field = _pick_field(scalar_fields, _ID_CANDIDATES, len(sample), unique_first=True)
    if id_field is None:
        id_field = _pick_field(
            scalar_fields, tuple(map(_squash, scalar_fields)), len(sample), unique_first=True
        )
    if id_field is None:  # no field is in most records: take the one found most often
        id_field = max(
            scalar_fields,
            key=lambda key: sum(not is_missing(value) for value in scalar_fields[key]),
        )
    label_field = _pick_field(scalar_fields, _NAME_CANDIDATES, len(sample)) or id_field

    type_id = _slug(name) or "object"
    used_ids = {type_id}
    used_names: set[str] = set()
    attributes = []
    attribute_mappings = []
    for key, values in scalar_fields.items():
        external_id = _unique(f"{type_id}-{_slug(key) or 'field'}", used_ids, "-{n}")
        attribute_name = _unique(_humanize(key), used_names, " ({n})")
        attribute: dict[str, Any] = {
            "externalId": external_id,
            "name": attribute_name,
            "type": _infer_type(values),
        }
        if key == label_field:
            attribute["label"] = True
        attributes.append(attribute)
        attribute_mapping: dict[str, Any] = {
            "attributeExternalId": external_id,
            "attributeName": attribute_name,
            "attributeLocators": [key],
        }
        if key == id_field:
            attribute_mapping["externalIdPart"] = True
        attribute_mappings.append(attribute_mapping)

    description = f"Drafted from {len(sample)} sample records: check names and types."
    if nested:
        description += f" Not mapped (lists or objects): {', '.join(sorted(nested))}."
    if dotted:
        description += (
            f" Not mapped (a locator cannot name a field with a dot): {', '.join(sorted(dotted))}."
        )
    return {
        "schema": {
            "objectSchema": {
                "name": name,
                "description": description,
                "objectTypes": [
                    {
                        "externalId": type_id,
                        "name": name,
                        "description": "",
                        "attributes": attributes,
                    }
                ],
            }
        },
        "mapping": {
            "objectTypeMappings": [
                {
                    "objectTypeExternalId": type_id,
                    "objectTypeName": name,
                    "selector": selector,
                    "description": f"One {name} per record, identified by '{id_field}'",
                    "attributesMapping": attribute_mappings,
                }
            ]
        },
    }


def _squash(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


def _pick_field(
    fields: dict[str, list[Any]],
    candidates: tuple[str, ...],
    total: int,
    unique_first: bool = False,
) -> str | None:
    """The first candidate present in most records; with unique_first, unique values win."""
    by_squashed: dict[str, str] = {}
    for key in fields:
        by_squashed.setdefault(_squash(key), key)
    eligible = []
    for candidate in candidates:
        key = by_squashed.get(candidate)
        if key is None:
            continue
        present = [value for value in fields[key] if not is_missing(value)]
        if len(present) * 2 > total:
            eligible.append((key, len({str(value) for value in present}) == len(present)))
    if unique_first:
        for key, unique in eligible:
            if unique:
                return key
    return eligible[0][0] if eligible else None


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if not isinstance(value, str):
        return "text"
    text = value.strip()
    checks: tuple[tuple[str, Callable[[str], Any], re.Pattern[str] | None], ...] = (
        ("date", as_date, _DATE),
        ("date_time", as_date_time, _DATE_TIME),
        ("email", as_email, None),
        ("url", as_url, None),
        ("ipaddress", as_ipaddress, None),
    )
    for kind, coercer, pattern in checks:
        if pattern is not None and not pattern.match(text):
            continue
        try:
            coercer(text)
        except Unfit:
            continue
        return kind
    return "text"


def _infer_type(values: list[Any]) -> str:
    kinds = {_value_kind(value) for value in values if not is_missing(value)}
    if not kinds:
        return "text"
    if kinds <= {"integer", "double"}:
        return "integer" if kinds == {"integer"} else "double"
    if kinds == {"date", "date_time"}:
        return "date_time"
    return kinds.pop() if len(kinds) == 1 else "text"


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text).lower()).strip(
        "-"
    )


def _humanize(key: str) -> str:
    """ram_gb -> "Ram gb", assetTag -> "Asset tag", IPAddress -> "IP address"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", key)
    words = [word if word.isupper() else word.lower() for word in re.split(r"[\s_\-.]+", spaced)]
    text = " ".join(word for word in words if word)
    return (text[:1].upper() + text[1:]) if text else key


def _unique(wanted: str, used: set[str], suffix: str) -> str:
    candidate, n = wanted, 1
    while candidate.casefold() in used:
        n += 1
        candidate = wanted + suffix.format(n=n)
    used.add(candidate.casefold())
    return candidate
