"""Checking a schema-and-mapping document before Assets sees it.

Assets answers a bad mapping late (at PUT). Every problem here carries the JSON path of the
place to mend, so the user sees it when saving.
"""

from __future__ import annotations

import re
from typing import Any

from importer.mapping.document import (
    ATTRIBUTE_TYPES,
    NEEDS_EXTERNAL_IDS,
    MappingProblem,
    SchemaIndex,
    SchemaType,
    index_document,
    is_given,
    is_text,
    whole_number,
)

# A placeholder of objectMappingIQL: ${locator}, or ${locator${0}} for one value of a list.
PLACEHOLDER = re.compile(r"\$\{(?P<field>[^${}]*)(?:\$\{\d+\})?\}")
UNCLOSED_PLACEHOLDER = re.compile(r"\$\{[^}]{0,40}")


def validate_document(document: Any) -> list[MappingProblem]:
    """Problems in a schema-and-mapping document, each pointing at its JSON path."""
    if not isinstance(document, dict):
        return [MappingProblem("$", "the document must be a JSON object")]
    checker = _Checker()
    index = checker.check_schema(document)
    checker.check_mappings(document, index)
    return checker.problems


def split_newer_rules(problems: list[MappingProblem]) -> tuple[list, list]:
    """(problems that refuse an import, problems of rules newer than the mapping stored):
    an import of a mapping saved before such a rule goes on, its problem noted, while
    saving or pushing it is refused until it is mended."""
    return (
        [problem for problem in problems if not problem.newer_rule],
        [problem for problem in problems if problem.newer_rule],
    )


class _Checker:
    def __init__(self) -> None:
        self.problems: list[MappingProblem] = []

    def add(self, path: str, message: str, *, newer_rule: bool = False) -> None:
        self.problems.append(MappingProblem(path, message, newer_rule))

    def check_schema(self, document: dict) -> SchemaIndex:
        schema = document.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("objectSchema"), dict):
            self.add("schema.objectSchema", "is required and must be an object")
            return SchemaIndex([], uses_ids=False)
        object_schema = schema["objectSchema"]
        if not is_text(object_schema.get("name")):
            self.add("schema.objectSchema.name", "is required")
        object_types = object_schema.get("objectTypes")
        if not isinstance(object_types, list) or not object_types:
            self.add("schema.objectSchema.objectTypes", "must list at least one object type")
        index = index_document(document, on_bad=self.add)

        with_ids: list[str] = []
        without_ids: list[str] = []
        first_use: dict[str, str] = {}  # externalId -> where it was first given
        type_names: dict[str, str] = {}

        def note_external_id(data: dict, path: str) -> None:
            if not is_given(data, "externalId"):
                without_ids.append(path)
                return
            with_ids.append(path)
            external_id = data["externalId"]
            if not isinstance(external_id, str):
                self.add(f"{path}.externalId", "must be a string")
            elif external_id in first_use:
                self.add(
                    f"{path}.externalId",
                    f"'{external_id}' is used twice (first at {first_use[external_id]}); "
                    "externalIds are unique in the workspace",
                )
            else:
                first_use[external_id] = path

        for object_type in index.types:
            path = object_type.path
            if not is_text(object_type.data.get("name")):
                self.add(f"{path}.name", "is required")
            elif object_type.name.casefold() in type_names:
                first = type_names[object_type.name.casefold()]
                self.add(f"{path}.name", f"'{object_type.name}' is used twice (first at {first})")
            else:
                type_names[object_type.name.casefold()] = path
            note_external_id(object_type.data, path)
            for here, attribute in object_type.own_attributes():
                note_external_id(attribute, here)
            self._check_attributes(object_type, index)

        if with_ids and without_ids:
            self.add(
                "schema.objectSchema",
                "externalIds are all or nothing: give every object type and attribute one, "
                f"or none ({without_ids[0]} has none, {with_ids[0]} has one)",
            )
        self._check_status_schema(schema.get("statusSchema"))
        return index

    def _check_status_schema(self, status_schema: Any) -> None:
        """Statuses the schema adds to those Assets already has (typeValues may name either)."""
        if status_schema is None:
            return
        path = "schema.statusSchema"
        statuses = status_schema.get("statuses") if isinstance(status_schema, dict) else None
        if not isinstance(statuses, list):
            self.add(f"{path}.statuses", "must be a list of statuses")
            return
        names: dict[str, str] = {}
        for position, status in enumerate(statuses):
            here = f"{path}.statuses[{position}]"
            if not isinstance(status, dict):
                self.add(here, "must be an object")
            elif not is_text(status.get("name")):
                self.add(f"{here}.name", "is required")
            elif status["name"].casefold() in names:
                first = names[status["name"].casefold()]
                self.add(f"{here}.name", f"'{status['name']}' is used twice (first at {first})")
            else:
                names[status["name"].casefold()] = here

    def _check_attributes(self, object_type: SchemaType, index: SchemaIndex) -> None:
        path = object_type.path
        raw = object_type.data.get("attributes")
        if raw is not None and not isinstance(raw, list):
            self.add(f"{path}.attributes", "must be a list")
        for position, attribute in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(attribute, dict):
                self.add(f"{path}.attributes[{position}]", "must be an object")
        attributes = object_type.attributes()
        if not attributes:
            if raw is None or isinstance(raw, list):
                self.add(f"{path}.attributes", "must list at least one attribute")
            return
        names: dict[str, str] = {}
        for here, attribute in object_type.own_attributes():
            name = attribute.get("name")
            if not is_text(name):
                self.add(f"{here}.name", "is required")
            elif name.casefold() in names:
                self.add(
                    f"{here}.name", f"'{name}' is used twice (first at {names[name.casefold()]})"
                )
            else:
                names[name.casefold()] = here
            self._check_attribute(attribute, here, index)
        labels = sum(attribute.get("label") is True for _, attribute in attributes)
        if labels != 1:
            self.add(f"{path}.attributes", f"needs exactly one label attribute, has {labels}")

    def _check_attribute(self, attribute: dict, here: str, index: SchemaIndex) -> None:
        kind = attribute.get("type")
        if not is_text(kind):
            self.add(f"{here}.type", "is required")
        elif kind not in ATTRIBUTE_TYPES:
            self.add(
                f"{here}.type",
                f"'{kind}' is not an attribute type; use one of: {', '.join(ATTRIBUTE_TYPES)}",
            )
        for flag in ("label", "unique"):
            if flag in attribute and not isinstance(attribute[flag], bool):
                self.add(f"{here}.{flag}", "must be true or false")
        self._check_cardinality(attribute, here)
        if not index.uses_ids:
            for key in NEEDS_EXTERNAL_IDS:
                if key in attribute:
                    self.add(
                        f"{here}.{key}",
                        "needs externalIds: Assets sets cardinality and uniqueness only when "
                        "every object type and attribute has an externalId (give them all one, "
                        f"or leave {key} out)",
                    )
        values = attribute.get("typeValues")
        if values is not None and (
            not isinstance(values, list) or not all(is_text(value) for value in values)
        ):
            self.add(f"{here}.typeValues", "must be a list of names (of statuses or options)")
        if kind != "referenced_object":
            return
        key = "referenceObjectTypeExternalId" if index.uses_ids else "referenceObjectTypeName"
        target = attribute.get(key)
        if not is_text(target):
            self.add(f"{here}.{key}", "is required: it names the object type referred to")
        elif index.reference_target(attribute) is None:
            self.add(f"{here}.{key}", f"'{target}' is not an object type of the schema")

    def _check_cardinality(self, attribute: dict, here: str) -> None:
        low = whole_number(attribute, "minimumCardinality")
        high = whole_number(attribute, "maximumCardinality")
        if "minimumCardinality" in attribute and (low is None or low < 0):
            self.add(f"{here}.minimumCardinality", "must be a whole number, 0 or more")
        if "maximumCardinality" in attribute and (high is None or high == 0 or high < -1):
            self.add(f"{here}.maximumCardinality", "must be a whole number, 1 or more (-1: any)")
        elif low is not None and high is not None and high != -1 and high < low:
            self.add(f"{here}.maximumCardinality", f"is below minimumCardinality ({low})")

    def check_mappings(self, document: dict, index: SchemaIndex) -> None:
        mapping = document.get("mapping")
        mappings = mapping.get("objectTypeMappings") if isinstance(mapping, dict) else None
        if not isinstance(mappings, list) or not mappings:
            self.add("mapping.objectTypeMappings", "must list at least one object type mapping")
            return
        first_mapped: dict[tuple[int, str], str] = {}  # (id(type), selector) -> where
        for position, type_mapping in enumerate(mappings):
            here = f"mapping.objectTypeMappings[{position}]"
            if not isinstance(type_mapping, dict):
                self.add(here, "must be an object")
                continue
            selector = type_mapping.get("selector")
            self._check_selector(selector, f"{here}.selector")
            object_type = self._mapped_type(type_mapping, here, index)
            if object_type is not None and is_text(selector):
                first = first_mapped.setdefault((id(object_type), selector), here)
                if first != here:
                    self.add(
                        here,
                        f"maps object type '{object_type.name}' from selector '{selector}' "
                        f"again (first at {first}): each record would be mapped to that "
                        "type twice, by two lists of attributes. Merge their "
                        "attributesMapping into one object type mapping, or give this one "
                        "its own selector",
                        newer_rule=True,
                    )
            self._check_attribute_mappings(type_mapping, here, object_type, index)

    def _check_selector(self, selector: Any, path: str) -> None:
        if not is_text(selector):
            self.add(path, "is required")
        elif any(not part.strip() for part in selector.split(".")):
            self.add(
                path,
                f"'{selector}' must be field names joined by dots, "
                "like 'computers' or 'hardDrives.files'",
            )

    def _mapped_type(self, type_mapping: dict, here: str, index: SchemaIndex) -> SchemaType | None:
        if not index.types:
            return None  # the schema is broken; that problem is already reported
        type_id, type_name = (
            type_mapping.get("objectTypeExternalId"),
            type_mapping.get("objectTypeName"),
        )
        if not index.uses_ids:
            if is_given(type_mapping, "objectTypeExternalId"):
                self.add(
                    f"{here}.objectTypeExternalId",
                    "the schema has no externalIds (all or nothing): name the object type "
                    "with objectTypeName",
                )
            if not is_text(type_name):
                self.add(f"{here}.objectTypeName", "is required")
                return None
            object_type = index.type_for(type_mapping)
            if object_type is None:
                self.add(
                    f"{here}.objectTypeName", f"'{type_name}' is not an object type of the schema"
                )
            return object_type
        if not is_text(type_id):
            self.add(f"{here}.objectTypeExternalId", "is required")
            return None
        object_type = index.type_for(type_mapping)
        if object_type is None:
            self.add(
                f"{here}.objectTypeExternalId", f"'{type_id}' is not an object type of the schema"
            )
        elif type_name is not None and object_type.name and type_name != object_type.name:
            self.add(
                f"{here}.objectTypeName",
                f"is '{type_name}' but object type '{type_id}' is named '{object_type.name}'",
            )
        return object_type

    def _check_attribute_mappings(
        self, type_mapping: dict, here: str, object_type: SchemaType | None, index: SchemaIndex
    ) -> None:
        attribute_mappings = type_mapping.get("attributesMapping")
        if not isinstance(attribute_mappings, list) or not attribute_mappings:
            self.add(f"{here}.attributesMapping", "must map at least one attribute")
            return
        id_parts = 0
        mapped: dict[int, str] = {}  # id(attribute) -> where it was first mapped
        # A record is sent with the fields every locator of its type mapping reads, so a
        # placeholder may name any of them (a reference found by another attribute's field).
        fields = list(
            dict.fromkeys(
                locator
                for attribute_mapping in attribute_mappings
                if isinstance(attribute_mapping, dict)
                and isinstance(attribute_mapping.get("attributeLocators"), list)
                for locator in attribute_mapping["attributeLocators"]
                if is_text(locator)
            )
        )
        for position, attribute_mapping in enumerate(attribute_mappings):
            at = f"{here}.attributesMapping[{position}]"
            if not isinstance(attribute_mapping, dict):
                self.add(at, "must be an object")
                continue
            attribute = self._mapped_attribute(attribute_mapping, at, object_type, index)
            if attribute is not None:
                if id(attribute) in mapped:
                    self.add(
                        at,
                        f"maps attribute '{attribute.get('name')}' again "
                        f"(first at {mapped[id(attribute)]})",
                    )
                mapped.setdefault(id(attribute), at)
            self._check_locators(attribute_mapping.get("attributeLocators"), at)
            part = attribute_mapping.get("externalIdPart")
            if part is not None and not isinstance(part, bool):
                self.add(f"{at}.externalIdPart", "must be true or false")
            iql = attribute_mapping.get("objectMappingIQL")
            if iql is not None and not isinstance(iql, str):
                self.add(f"{at}.objectMappingIQL", "must be a string (AQL)")
            elif iql is not None:
                self._check_placeholders(
                    iql, attribute_mapping.get("attributeLocators"), fields, at
                )
            id_parts += part is True
        if not id_parts:
            self.add(
                f"{here}.attributesMapping",
                "needs at least one attribute with externalIdPart: true (the record's identity)",
            )
        for _, attribute in object_type.attributes() if object_type is not None else []:
            minimum = whole_number(attribute, "minimumCardinality") or 0
            if minimum > 0 and id(attribute) not in mapped:
                self.add(
                    f"{here}.attributesMapping",
                    f"does not map attribute '{attribute.get('name')}', which needs a value "
                    f"in every object (minimumCardinality {minimum})",
                )

    def _check_locators(self, locators: Any, at: str) -> None:
        """Each locator names one field of the record its selector picks, as Assets reads it.

        Assets' guide reaches nested data through selectors (a child type's
        'hardDrives.files') and documents no nested path for a locator, so a dotted one is
        refused here: sent as given it could only find nothing and leave its attribute empty.
        """
        if (
            not isinstance(locators, list)
            or not locators
            or not all(is_text(locator) for locator in locators)
        ):
            self.add(f"{at}.attributeLocators", "must list at least one field name")
            return
        for position, locator in enumerate(locators):
            if "." in locator:
                self.add(
                    f"{at}.attributeLocators[{position}]",
                    f"'{locator}' has a dot: a locator names one field of the record its "
                    "selector picks (Assets reads no nested path in a locator). Map nested "
                    "data with a selector of its own, like 'hardDrives.files', or name the "
                    "field without dots in the source",
                )

    def _check_placeholders(self, iql: str, locators: Any, fields: list[str], at: str) -> None:
        """Each `${field}` (or `${field${0}}`, one value of a list) in the AQL names a field
        some locator of the object type mapping reads (its own attribute's, or another's):
        Assets fills it with that field's value. Any other name is filled with nothing (the
        transform sends only the fields locators read), so no object is found, no reference
        is set, and the import still ends DONE."""
        if not locators or not isinstance(locators, list) or not all(map(is_text, locators)):
            return  # the locators' own problem is reported
        named = ", ".join(f"'{name}'" for name in fields)
        for placeholder in PLACEHOLDER.finditer(iql):
            field = placeholder.group("field")
            if field in fields:
                continue
            self.add(
                f"{at}.objectMappingIQL",
                f"placeholder '{placeholder.group(0)}' names no field of the attributeLocators "
                f"of its object type mapping ({named}), so Assets would find no object for it "
                f"and set no reference: write ${{{locators[0]}}} (or another of them), or add "
                f"'{field}' to this attribute's attributeLocators",
                newer_rule=True,
            )
        unclosed = UNCLOSED_PLACEHOLDER.search(PLACEHOLDER.sub("", iql))
        if unclosed is not None:
            self.add(
                f"{at}.objectMappingIQL",
                f"'{unclosed.group(0)}' opens a placeholder that is not closed: write "
                f"${{{locators[0]}}}, naming a field of attributeLocators",
                newer_rule=True,
            )

    def _mapped_attribute(
        self, attribute_mapping: dict, at: str, object_type: SchemaType | None, index: SchemaIndex
    ) -> dict | None:
        if not index.types:
            return None  # the schema is broken; that problem is already reported
        attribute_id = attribute_mapping.get("attributeExternalId")
        attribute_name = attribute_mapping.get("attributeName")
        if not index.uses_ids:
            if is_given(attribute_mapping, "attributeExternalId"):
                self.add(
                    f"{at}.attributeExternalId",
                    "the schema has no externalIds (all or nothing): name the attribute "
                    "with attributeName",
                )
            if not is_text(attribute_name):
                self.add(f"{at}.attributeName", "is required")
                return None
        elif not is_text(attribute_id):
            self.add(f"{at}.attributeExternalId", "is required")
            return None
        if object_type is None:
            return None
        attribute = index.attribute_for(object_type, attribute_mapping)
        type_label = object_type.external_id if index.uses_ids else object_type.name
        if attribute is None:
            key, given = (
                ("attributeExternalId", attribute_id)
                if index.uses_ids
                else ("attributeName", attribute_name)
            )
            self.add(f"{at}.{key}", f"'{given}' is not an attribute of '{type_label}'")
        elif (
            index.uses_ids
            and attribute_name is not None
            and is_text(attribute.get("name"))
            and attribute_name != attribute.get("name")
        ):
            self.add(
                f"{at}.attributeName",
                f"is '{attribute_name}' but attribute '{attribute_id}' is named "
                f"'{attribute.get('name')}'",
            )
        return attribute
