"""The schema-and-mapping document: its vocabulary and how to read its types and mappings."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTE_TYPES = (
    "text",
    "textarea",
    "integer",
    "double",
    "boolean",
    "date",
    "time",
    "date_time",
    "email",
    "url",
    "select",
    "ipaddress",
    "status",
    "referenced_object",
)
MISSING_IDENTITY_MODES = ("skip", "fail")
# What to do with a record holding a value Assets' schema rules out: leave it out, or fail.
INVALID_VALUES_MODES = ("skip", "fail")
# Attribute types whose `typeValues` list the only values they take.
CHOICE_TYPES = ("status", "select")
# Assets sets these only in documents where every object type and attribute has an externalId.
NEEDS_EXTERNAL_IDS = ("minimumCardinality", "maximumCardinality", "unique")
# Fields that name a record in messages when its identity locators have no value.
ID_LIKE_FIELDS = ("id", "name", "serial", "hostname", "key")


@dataclass(frozen=True)
class MappingProblem:
    path: str  # JSON path into the document, e.g. mapping.objectTypeMappings[0].selector
    message: str
    # Broken only a rule newer than mappings stored before it: a mapping being saved or pushed
    # is refused for it, one stored already still imports, noted (`split_newer_rules`).
    newer_rule: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def line_of(document: Any, path: str, *, indent: int = 2) -> int | None:
    """The line (from 1) where the node at `path` starts in the document written out with
    `indent`, as the mapping's field shows it; for a path to something missing, the line of
    the nearest node that is there. None when not even the first step is."""
    steps = [int(index) if index else key for key, index in _PATH_STEP.findall(path)]
    parent, place = None, None
    node = document
    for step in steps:
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            parent, place, node = node, step, node[step]
        elif isinstance(step, str) and isinstance(node, dict) and step in node:
            parent, place, node = node, step, node[step]
        else:
            break
    if parent is None:
        return None
    original = parent[place]
    parent[place] = _LINE_MARK
    try:
        text = json.dumps(document, indent=indent, ensure_ascii=False)
    finally:
        parent[place] = original
    return text[: text.index(json.dumps(_LINE_MARK))].count("\n") + 1


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_LINE_MARK = "\u0000line-of-this-node\u0000"


# --- reading the document --------------------------------------------------------------------


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def whole_number(data: dict, key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def type_values(attribute: dict) -> tuple[str, ...]:
    """The only values a status or select attribute takes; () when the document sets none."""
    values = attribute.get("typeValues")
    if attribute.get("type") not in CHOICE_TYPES or not isinstance(values, list):
        return ()
    return tuple(value for value in values if is_text(value))


def is_given(data: dict, key: str) -> bool:
    """A key counts as given when it holds something: `"externalId": ""` is no externalId."""
    return data.get(key) not in (None, "")


@dataclass(eq=False)
class SchemaType:
    """One object type of the schema, with where it sits in the document."""

    path: str
    data: dict
    parent: SchemaType | None

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def external_id(self) -> str:
        return str(self.data.get("externalId") or "")

    def own_attributes(self) -> list[tuple[str, dict]]:
        attributes = self.data.get("attributes")
        if not isinstance(attributes, list):
            return []
        return [
            (f"{self.path}.attributes[{position}]", attribute)
            for position, attribute in enumerate(attributes)
            if isinstance(attribute, dict)
        ]

    def attributes(self) -> list[tuple[str, dict]]:
        """Own attributes, then those of ancestors that pass theirs on (`inheritance: true`)."""
        inherited: list[tuple[str, dict]] = []
        parent = self.parent
        if parent is not None and parent.data.get("inheritance") is True:
            inherited = parent.attributes()
        return self.own_attributes() + inherited


@dataclass
class SchemaIndex:
    """The schema's object types, found by externalId or (in documents without ids) by name."""

    types: list[SchemaType]
    uses_ids: bool
    by_id: dict[str, SchemaType] = field(default_factory=dict)
    by_name: dict[str, SchemaType] = field(default_factory=dict)

    def type_for(self, type_mapping: dict) -> SchemaType | None:
        if self.uses_ids:
            return _find(self.by_id, type_mapping.get("objectTypeExternalId"))
        return _find(self.by_name, type_mapping.get("objectTypeName"))

    def attribute_for(self, object_type: SchemaType | None, attribute_mapping: dict) -> dict | None:
        if object_type is None:
            return None
        key, wanted = (
            ("externalId", attribute_mapping.get("attributeExternalId"))
            if self.uses_ids
            else ("name", attribute_mapping.get("attributeName"))
        )
        for _, attribute in object_type.attributes():
            if wanted is not None and attribute.get(key) == wanted:
                return attribute
        return None

    def reference_target(self, attribute: dict) -> SchemaType | None:
        if is_given(attribute, "referenceObjectTypeExternalId"):
            return _find(self.by_id, attribute["referenceObjectTypeExternalId"])
        return _find(self.by_name, attribute.get("referenceObjectTypeName"))


def _find(types: dict[str, SchemaType], key: Any) -> SchemaType | None:
    return types.get(key) if isinstance(key, str) else None


def object_schema_of(document: Any) -> dict:
    schema = document.get("schema") if isinstance(document, dict) else None
    object_schema = schema.get("objectSchema") if isinstance(schema, dict) else None
    return object_schema if isinstance(object_schema, dict) else {}


def type_mappings(document: Any) -> list[tuple[str, dict]]:
    mapping = document.get("mapping") if isinstance(document, dict) else None
    mappings = mapping.get("objectTypeMappings") if isinstance(mapping, dict) else None
    if not isinstance(mappings, list):
        return []
    return [
        (f"mapping.objectTypeMappings[{position}]", type_mapping)
        for position, type_mapping in enumerate(mappings)
        if isinstance(type_mapping, dict)
    ]


def attribute_mappings(type_mapping: dict, path: str) -> list[tuple[str, dict]]:
    attribute_mappings = type_mapping.get("attributesMapping")
    if not isinstance(attribute_mappings, list):
        return []
    return [
        (f"{path}.attributesMapping[{position}]", attribute_mapping)
        for position, attribute_mapping in enumerate(attribute_mappings)
        if isinstance(attribute_mapping, dict)
    ]


def _walk_types(
    types: Any, path: str, parent: SchemaType | None, on_bad: Callable[[str, str], None]
) -> Iterator[SchemaType]:
    if not isinstance(types, list):
        if types is not None and parent is not None:
            on_bad(path, "must be a list of object types")
        return
    for position, data in enumerate(types):
        here = f"{path}[{position}]"
        if not isinstance(data, dict):
            on_bad(here, "must be an object")
            continue
        object_type = SchemaType(here, data, parent)
        yield object_type
        yield from _walk_types(data.get("children"), f"{here}.children", object_type, on_bad)


def index_document(
    document: Any, on_bad: Callable[[str, str], None] = lambda path, message: None
) -> SchemaIndex:
    """Index a document leniently: anything malformed is left out (validation reports it)."""
    object_schema = object_schema_of(document)
    types = list(
        _walk_types(
            object_schema.get("objectTypes"), "schema.objectSchema.objectTypes", None, on_bad
        )
    )
    uses_ids = any(
        is_given(object_type.data, "externalId")
        or any(is_given(attribute, "externalId") for _, attribute in object_type.own_attributes())
        for object_type in types
    )
    index = SchemaIndex(types, uses_ids)
    for object_type in types:
        if object_type.external_id:
            index.by_id.setdefault(object_type.external_id, object_type)
        if object_type.name:
            index.by_name.setdefault(object_type.name, object_type)
    return index
