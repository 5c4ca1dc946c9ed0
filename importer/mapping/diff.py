"""What differs between two schema-and-mapping documents, in words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from importer.mapping.document import (
    SchemaIndex,
    SchemaType,
    attribute_mappings,
    index_document,
    object_schema_of,
    type_mappings,
)


def diff_documents(local: Any, remote: Any) -> list[str]:
    """What pushing `local` would change in `remote` (the document Assets has), one line each.

    Types, attributes and mappings are matched by externalId when both documents have them,
    else by name, so the ids Assets adds to a document sent without any are not differences.
    Fields a document may leave out are compared with their defaults; descriptions and icons
    only when `local` gives them. Empty when the two are equivalent.
    """
    local_index, remote_index = index_document(local), index_document(remote)
    by_ids = local_index.uses_ids and remote_index.uses_ids
    lines: list[str] = []
    local_schema, remote_schema = object_schema_of(local), object_schema_of(remote)
    if local_schema.get("name") != remote_schema.get("name"):
        lines.append(
            f"schema name {_quoted(remote_schema.get('name'))} → "
            f"{_quoted(local_schema.get('name'))}"
        )
    if "description" in local_schema and (local_schema.get("description") or "") != (
        remote_schema.get("description") or ""
    ):
        lines.append("schema description changed")

    def type_key(object_type: SchemaType | None) -> str | None:
        if object_type is None:
            return None
        return object_type.external_id if by_ids else object_type.name.casefold()

    local_types = {type_key(t): t for t in local_index.types}
    remote_types = {type_key(t): t for t in remote_index.types}
    for key, object_type in local_types.items():
        if key not in remote_types:
            lines.append(f"object type '{object_type.name}' added")
    for key, object_type in remote_types.items():
        if key not in local_types:
            lines.append(f"object type '{object_type.name}' removed")
    for key, mine in local_types.items():
        theirs = remote_types.get(key)
        if theirs is not None:
            lines.extend(_diff_type(mine, theirs, by_ids, type_key, local_index, remote_index))
    lines.extend(_diff_mappings(local, remote, local_index, remote_index, by_ids))
    return lines


def _quoted(value: Any) -> str:
    return f"'{value}'" if value not in (None, "") else "(none)"


def _diff_type(
    mine: SchemaType,
    theirs: SchemaType,
    by_ids: bool,
    type_key: Callable[[SchemaType | None], str | None],
    local_index: SchemaIndex,
    remote_index: SchemaIndex,
) -> list[str]:
    lines = []
    if mine.name != theirs.name:
        lines.append(f"object type '{theirs.name}' renamed to '{mine.name}'")
    label = f"object type '{mine.name}'"
    for key in ("description", "iconKey"):
        if key in mine.data and (mine.data.get(key) or "") != (theirs.data.get(key) or ""):
            lines.append(f"{label}: {key} changed")
    if "inheritance" in mine.data and bool(mine.data["inheritance"]) != bool(
        theirs.data.get("inheritance")
    ):
        lines.append(f"{label}: inheritance {'on' if mine.data['inheritance'] else 'off'}")
    if type_key(mine.parent) != type_key(theirs.parent):
        where = f"under '{mine.parent.name}'" if mine.parent else "to the top level"
        lines.append(f"{label}: moved {where}")

    def attribute_key(attribute: dict) -> str:
        return str(attribute.get("externalId") if by_ids else str(attribute.get("name")).casefold())

    my_attributes = {attribute_key(a): a for _, a in mine.own_attributes()}
    their_attributes = {attribute_key(a): a for _, a in theirs.own_attributes()}
    for key, attribute in my_attributes.items():
        if key not in their_attributes:
            lines.append(
                f"{label}: attribute '{attribute.get('name')}' added ({attribute.get('type')})"
            )
    for key, attribute in their_attributes.items():
        if key not in my_attributes:
            lines.append(f"{label}: attribute '{attribute.get('name')}' removed")
    for key, attribute in my_attributes.items():
        if key in their_attributes:
            lines.extend(
                _diff_attribute(
                    label, attribute, their_attributes[key], by_ids, local_index, remote_index
                )
            )
    return lines


def _diff_attribute(
    label: str,
    mine: dict,
    theirs: dict,
    by_ids: bool,
    local_index: SchemaIndex,
    remote_index: SchemaIndex,
) -> list[str]:
    lines = []
    if mine.get("name") != theirs.get("name"):
        lines.append(f"{label}: attribute '{theirs.get('name')}' renamed to '{mine.get('name')}'")
    prefix = f"{label}: attribute '{mine.get('name')}'"
    if mine.get("type") != theirs.get("type"):
        lines.append(f"{prefix} type {theirs.get('type')} → {mine.get('type')}")
    for flag, now, before in (
        ("label", "is now the label", "is no longer the label"),
        ("unique", "is now unique", "is no longer unique"),
    ):
        if bool(mine.get(flag)) != bool(theirs.get(flag)):
            lines.append(f"{prefix} {now if mine.get(flag) else before}")

    def cardinality(attribute: dict) -> str:
        high = attribute.get("maximumCardinality", 1)
        return f"{attribute.get('minimumCardinality', 0)}..{'any' if high == -1 else high}"

    if cardinality(mine) != cardinality(theirs):
        lines.append(f"{prefix} cardinality {cardinality(theirs)} → {cardinality(mine)}")
    if "referenced_object" in (mine.get("type"), theirs.get("type")):
        my_target = local_index.reference_target(mine)
        their_target = remote_index.reference_target(theirs)
        my_name = my_target.name if my_target else mine.get("referenceObjectTypeExternalId")
        their_name = (
            their_target.name if their_target else theirs.get("referenceObjectTypeExternalId")
        )
        same = (
            (my_target.external_id if my_target else None)
            == (their_target.external_id if their_target else None)
            if by_ids
            else my_name == their_name
        )
        if not same:
            lines.append(f"{prefix} refers to '{my_name}' instead of '{their_name}'")
    for key in ("description", "typeValues"):
        if key in mine and mine.get(key) != theirs.get(key):
            lines.append(f"{prefix} {key} changed")
    return lines


def _diff_mappings(
    local: Any, remote: Any, local_index: SchemaIndex, remote_index: SchemaIndex, by_ids: bool
) -> list[str]:
    mine_all = _keyed_type_mappings(local, local_index, by_ids)
    theirs_all = _keyed_type_mappings(remote, remote_index, by_ids)
    lines = []
    for key, (_, mapping, shown) in mine_all.items():
        if key not in theirs_all:
            lines.append(f"mapping for '{shown}' added (selector '{mapping.get('selector')}')")
    for key, (_, _, shown) in theirs_all.items():
        if key not in mine_all:
            lines.append(f"mapping for '{shown}' removed")
    for key, (path, mine, shown) in mine_all.items():
        if key not in theirs_all:
            continue
        their_path, theirs, _ = theirs_all[key]
        label = f"mapping for '{shown}'"
        if mine.get("selector") != theirs.get("selector"):
            lines.append(f"{label}: selector '{theirs.get('selector')}' → '{mine.get('selector')}'")
        my_attributes = _keyed_attribute_mappings(mine, path, local_index, by_ids)
        their_attributes = _keyed_attribute_mappings(theirs, their_path, remote_index, by_ids)
        lines.extend(_diff_attribute_mappings(label, my_attributes, their_attributes))
    return lines


def _keyed_type_mappings(
    document: Any, index: SchemaIndex, by_ids: bool
) -> dict[str, tuple[str, dict, str]]:
    """Type mappings by the key of their object type: (path, mapping, name to show)."""
    found: dict[str, tuple[str, dict, str]] = {}
    for path, type_mapping in type_mappings(document):
        object_type = index.type_for(type_mapping)
        if object_type is not None:
            key = object_type.external_id if by_ids else object_type.name.casefold()
            shown = object_type.name
        else:
            given = type_mapping.get("objectTypeExternalId" if by_ids else "objectTypeName")
            key, shown = str(given).casefold(), str(given)
        n = 1
        while f"{key}#{n}" in found:  # two mappings for one type (e.g. split by AQL)
            n += 1
        found[f"{key}#{n}"] = (path, type_mapping, shown)
    return found


def _keyed_attribute_mappings(
    type_mapping: dict, path: str, index: SchemaIndex, by_ids: bool
) -> dict[str, tuple[dict, str]]:
    """Attribute mappings by the key of their attribute: (mapping, name to show)."""
    object_type = index.type_for(type_mapping)
    found = {}
    for _, attribute_mapping in attribute_mappings(type_mapping, path):
        attribute = index.attribute_for(object_type, attribute_mapping)
        if attribute is not None:
            key = str(attribute.get("externalId") if by_ids else attribute.get("name"))
            shown = str(attribute.get("name"))
        else:
            given = attribute_mapping.get("attributeExternalId" if by_ids else "attributeName")
            key = shown = str(given)
        found[key.casefold()] = (attribute_mapping, shown)
    return found


def _diff_attribute_mappings(
    label: str, mine: dict[str, tuple[dict, str]], theirs: dict[str, tuple[dict, str]]
) -> list[str]:
    def locators(attribute_mapping: dict) -> str:
        value = attribute_mapping.get("attributeLocators")
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    lines = []
    for key, (attribute_mapping, shown) in mine.items():
        prefix = f"{label}: attribute '{shown}'"
        if key not in theirs:
            lines.append(f"{prefix} now mapped from {locators(attribute_mapping)}")
            continue
        other = theirs[key][0]
        if locators(attribute_mapping) != locators(other):
            lines.append(f"{prefix} locators {locators(other)} → {locators(attribute_mapping)}")
        if bool(attribute_mapping.get("externalIdPart")) != bool(other.get("externalIdPart")):
            now = "is now" if attribute_mapping.get("externalIdPart") else "is no longer"
            lines.append(f"{prefix} {now} part of the identity (externalIdPart)")
        my_iql = attribute_mapping.get("objectMappingIQL") or ""
        their_iql = other.get("objectMappingIQL") or ""
        if my_iql != their_iql:
            lines.append(f"{prefix} AQL '{their_iql or 'none'}' → '{my_iql or 'none'}'")
    for key, (_, shown) in theirs.items():
        if key not in mine:
            lines.append(f"{label}: attribute '{shown}' no longer mapped")
    return lines
