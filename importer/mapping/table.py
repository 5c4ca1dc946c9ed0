"""The mapping at a glance: object types, attributes and their locators, for people."""

from __future__ import annotations

from typing import Any

from importer.mapping.document import attribute_mappings, index_document, type_mappings


def mapping_table(document: Any) -> list[dict]:
    """One row per mapped attribute, for a readable view of the mapping in the admin.

    Keys: object_type, selector, attribute, type, locators, identity, label, reference. Works
    on an invalid document too (unknown parts show as "?"), so staff can see what is wrong.
    """
    index = index_document(document)
    rows = []
    for path, type_mapping in type_mappings(document):
        object_type = index.type_for(type_mapping)
        type_name = (
            object_type.name
            if object_type
            else str(
                type_mapping.get("objectTypeName")
                or type_mapping.get("objectTypeExternalId")
                or "?"
            )
        )
        for _, attribute_mapping in attribute_mappings(type_mapping, path):
            attribute = index.attribute_for(object_type, attribute_mapping) or {}
            locators = attribute_mapping.get("attributeLocators")
            target = index.reference_target(attribute) if attribute else None
            rows.append(
                {
                    "object_type": type_name,
                    "selector": str(type_mapping.get("selector") or ""),
                    "attribute": str(
                        attribute.get("name")
                        or attribute_mapping.get("attributeName")
                        or attribute_mapping.get("attributeExternalId")
                        or "?"
                    ),
                    "type": str(attribute.get("type") or "?"),
                    "locators": ", ".join(map(str, locators)) if isinstance(locators, list) else "",
                    "identity": attribute_mapping.get("externalIdPart") is True,
                    "label": attribute.get("label") is True,
                    "reference": target.name if target else "",
                }
            )
    return rows
