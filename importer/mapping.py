"""The schema-and-mapping document: local validation, and turning records into a data chunk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MappingProblem:
    path: str  # JSON path into the document, e.g. mapping.objectTypeMappings[0].selector
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _object_types(schema: dict) -> list[tuple[str, dict]]:
    """Every object type with its JSON path, children included."""
    found = []

    def walk(types: Any, path: str) -> None:
        if not isinstance(types, list):
            return
        for position, object_type in enumerate(types):
            here = f"{path}[{position}]"
            if isinstance(object_type, dict):
                found.append((here, object_type))
                walk(object_type.get("children"), f"{here}.children")

    walk(schema.get("objectTypes"), "schema.objectSchema.objectTypes")
    return found


def validate_document(document: Any) -> list[MappingProblem]:
    """Problems in a schema-and-mapping document, each pointing at its JSON path."""
    problems: list[MappingProblem] = []

    def problem(path: str, message: str) -> None:
        problems.append(MappingProblem(path, message))

    if not isinstance(document, dict):
        return [MappingProblem("$", "the document must be a JSON object")]
    schema = (
        (document.get("schema") or {}).get("objectSchema")
        if isinstance(document.get("schema"), dict)
        else None
    )
    if not isinstance(schema, dict):
        problem("schema.objectSchema", "is required and must be an object")
        schema = {}
    elif not schema.get("name"):
        problem("schema.objectSchema.name", "is required")
    object_types = _object_types(schema)
    if isinstance(schema, dict) and schema and not object_types:
        problem("schema.objectSchema.objectTypes", "must list at least one object type")

    types_by_external_id: dict[str, dict] = {}
    with_ids = without_ids = 0
    for path, object_type in object_types:
        if not object_type.get("name"):
            problem(f"{path}.name", "is required")
        external_id = object_type.get("externalId")
        with_ids, without_ids = (
            (with_ids + 1, without_ids) if external_id else (with_ids, without_ids + 1)
        )
        if external_id:
            if external_id in types_by_external_id:
                problem(f"{path}.externalId", f"'{external_id}' is used twice")
            types_by_external_id[external_id] = object_type
        attributes = object_type.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            problem(f"{path}.attributes", "must list at least one attribute")
            continue
        labels = 0
        for position, attribute in enumerate(attributes):
            here = f"{path}.attributes[{position}]"
            if not isinstance(attribute, dict):
                problem(here, "must be an object")
                continue
            for key in ("name", "type"):
                if not attribute.get(key):
                    problem(f"{here}.{key}", "is required")
            if attribute.get("externalId"):
                with_ids += 1
            else:
                without_ids += 1
            labels += bool(attribute.get("label"))
            if attribute.get("type") == "referenced_object" and not attribute.get(
                "referenceObjectTypeExternalId"
            ):
                problem(f"{here}.referenceObjectTypeExternalId", "names the referenced type")
        if labels != 1:
            problem(f"{path}.attributes", f"needs exactly one label attribute, has {labels}")
    if with_ids and without_ids:
        problem(
            "schema.objectSchema",
            "externalIds are all or nothing: give every object type and attribute one, or none",
        )

    mapping = document.get("mapping")
    mappings = mapping.get("objectTypeMappings") if isinstance(mapping, dict) else None
    if not isinstance(mappings, list) or not mappings:
        problem("mapping.objectTypeMappings", "must list at least one object type mapping")
        return problems
    for position, type_mapping in enumerate(mappings):
        here = f"mapping.objectTypeMappings[{position}]"
        if not isinstance(type_mapping, dict):
            problem(here, "must be an object")
            continue
        if not type_mapping.get("selector"):
            problem(f"{here}.selector", "is required")
        type_id = type_mapping.get("objectTypeExternalId")
        object_type = types_by_external_id.get(type_id)
        if with_ids and object_type is None:
            problem(
                f"{here}.objectTypeExternalId", f"'{type_id}' is not an object type of the schema"
            )
        attributes_by_id = {
            attribute.get("externalId"): attribute
            for attribute in (object_type or {}).get("attributes") or []
            if isinstance(attribute, dict)
        }
        attribute_mappings = type_mapping.get("attributesMapping")
        if not isinstance(attribute_mappings, list) or not attribute_mappings:
            problem(f"{here}.attributesMapping", "must map at least one attribute")
            continue
        id_parts = 0
        for attribute_position, attribute_mapping in enumerate(attribute_mappings):
            at = f"{here}.attributesMapping[{attribute_position}]"
            if not isinstance(attribute_mapping, dict):
                problem(at, "must be an object")
                continue
            attribute_id = attribute_mapping.get("attributeExternalId")
            if object_type is not None and attribute_id not in attributes_by_id:
                problem(
                    f"{at}.attributeExternalId",
                    f"'{attribute_id}' is not an attribute of '{type_id}'",
                )
            locators = attribute_mapping.get("attributeLocators")
            if (
                not isinstance(locators, list)
                or not locators
                or not all(isinstance(locator, str) and locator for locator in locators)
            ):
                problem(f"{at}.attributeLocators", "must list at least one field name")
            id_parts += bool(attribute_mapping.get("externalIdPart"))
        if not id_parts:
            problem(
                f"{here}.attributesMapping",
                "needs at least one attribute with externalIdPart: true (the record's identity)",
            )
    return problems


@dataclass
class TypeRule:
    """What one top-level selector needs from each record."""

    selector: str
    locators: set[str] = field(default_factory=set)
    identity_locators: list[str] = field(default_factory=list)
    nested_keys: set[str] = field(default_factory=set)


@dataclass
class TransformResult:
    data: dict[str, list[dict]]
    record_count: int
    skipped: list[str]  # why each skipped record was left out


def _rules(document: dict) -> dict[str, TypeRule]:
    rules: dict[str, TypeRule] = {}
    for type_mapping in document["mapping"]["objectTypeMappings"]:
        top, _, nested = type_mapping["selector"].partition(".")
        rule = rules.setdefault(top, TypeRule(selector=top))
        if nested:
            # Nested selectors (e.g. "hardDrives.files") walk into arrays of the record.
            rule.nested_keys.add(nested.split(".")[0])
            continue
        for attribute_mapping in type_mapping["attributesMapping"]:
            locators = attribute_mapping["attributeLocators"]
            rule.locators.update(locators)
            if attribute_mapping.get("externalIdPart"):
                rule.identity_locators.extend(
                    locator for locator in locators if locator not in rule.identity_locators
                )
    return rules


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def transform_records(records: list[dict], document: dict) -> TransformResult:
    """Build the chunk's `data` for the mapping's selectors.

    Every top-level selector receives the page's records, reduced to the fields its
    locators read. A record without a value for an externalIdPart locator has no identity
    in Assets: it is left out and the reason recorded, never sent silently.
    """
    data: dict[str, list[dict]] = {}
    skipped: list[str] = []
    accepted = 0
    rules = _rules(document)
    for position, record in enumerate(records):
        reasons = [
            f"record {position + 1} ({_describe(record)}): no value for '{locator}', "
            f"which identifies the object in selector '{rule.selector}'"
            for rule in rules.values()
            for locator in rule.identity_locators
            if _is_missing(record.get(locator))
        ]
        if reasons:
            skipped.extend(reasons)
            continue
        accepted += 1
        for rule in rules.values():
            wanted = rule.locators | rule.nested_keys
            data.setdefault(rule.selector, []).append(
                {key: value for key, value in record.items() if key in wanted}
            )
    return TransformResult(data=data, record_count=accepted, skipped=skipped)


def _describe(record: dict) -> str:
    for key in ("id", "name", "serial", "hostname", "key"):
        if not _is_missing(record.get(key)):
            return f"{key}={str(record[key])[:60]}"
    return "no id"
