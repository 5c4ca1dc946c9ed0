"""The schema-and-mapping document: validation, coercing records, drafts, diffs and the table."""

import copy
import json
from pathlib import Path

import pytest

from importer.devtools.demo_source import demo_computer
from importer.mapping import (
    ATTRIBUTE_TYPES,
    InvalidValuesError,
    MappingProblem,
    MissingIdentityError,
    diff_documents,
    draft_mapping,
    fields_in_no_record,
    first_left_out,
    identity_digests,
    mapping_table,
    split_newer_rules,
    transform_records,
    validate_document,
)

DEMO_MAPPING = (
    Path(__file__).resolve().parent.parent / "importer" / "devtools" / "demo_mapping.json"
)
# Documents of our own in every shape Atlassian's published examples use, each with records
# shaped like the example's data and the chunk those records must become.
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "assets"
TYPE = "schema.objectSchema.objectTypes[0]"
MAPPING = "mapping.objectTypeMappings[0]"


def laptops() -> dict:
    """The minimal pair of the reference document, with one extra attribute for coercion."""
    return {
        "schema": {
            "objectSchema": {
                "name": "Laptops",
                "description": "From inventory",
                "objectTypes": [
                    {
                        "externalId": "laptop",
                        "name": "Laptop",
                        "attributes": [
                            {
                                "externalId": "laptop-serial",
                                "name": "Serial",
                                "type": "text",
                                "label": True,
                            },
                            {"externalId": "laptop-ram", "name": "RAM GB", "type": "integer"},
                        ],
                    }
                ],
            }
        },
        "mapping": {
            "objectTypeMappings": [
                {
                    "objectTypeExternalId": "laptop",
                    "objectTypeName": "Laptop",
                    "selector": "laptops",
                    "attributesMapping": [
                        {
                            "attributeExternalId": "laptop-serial",
                            "attributeName": "Serial",
                            "attributeLocators": ["serial"],
                            "externalIdPart": True,
                        },
                        {
                            "attributeExternalId": "laptop-ram",
                            "attributeName": "RAM GB",
                            "attributeLocators": ["ram"],
                        },
                    ],
                }
            ]
        },
    }


def with_value_type(kind: str, **attribute) -> dict:
    """A document whose 'value' field feeds one attribute of the given type."""
    document = laptops()
    schema_attribute = {"externalId": "laptop-value", "name": "Value", "type": kind, **attribute}
    if kind == "referenced_object":
        schema_attribute["referenceObjectTypeExternalId"] = "laptop"
    document["schema"]["objectSchema"]["objectTypes"][0]["attributes"].append(schema_attribute)
    document["mapping"]["objectTypeMappings"][0]["attributesMapping"].append(
        {
            "attributeExternalId": "laptop-value",
            "attributeName": "Value",
            "attributeLocators": ["value"],
        }
    )
    return document


def without_ids(document: dict) -> dict:
    """The same document in the legacy form: no externalIds, mappings name types and attributes."""
    document = copy.deepcopy(document)
    for object_type in document["schema"]["objectSchema"]["objectTypes"]:
        del object_type["externalId"]
        for attribute in object_type["attributes"]:
            del attribute["externalId"]
    for type_mapping in document["mapping"]["objectTypeMappings"]:
        del type_mapping["objectTypeExternalId"]
        for attribute_mapping in type_mapping["attributesMapping"]:
            del attribute_mapping["attributeExternalId"]
    return document


def problems_of(document) -> list[str]:
    return [str(problem) for problem in validate_document(document)]


# --- validation ------------------------------------------------------------------------------


def test_the_minimal_pair_and_the_demo_mapping_are_valid():
    assert validate_document(laptops()) == []
    assert validate_document(json.loads(DEMO_MAPPING.read_text())) == []


def test_a_document_without_external_ids_is_valid_when_it_maps_by_name():
    assert validate_document(without_ids(laptops())) == []


def test_a_problem_reads_as_path_then_message():
    assert str(MappingProblem("schema.objectSchema.name", "is required")) == (
        "schema.objectSchema.name: is required"
    )


@pytest.mark.parametrize("document", [[], "{}", None, 3])
def test_a_document_that_is_not_a_json_object_is_refused(document):
    assert problems_of(document) == ["$: the document must be a JSON object"]


def test_a_missing_schema_and_mapping_are_each_reported():
    assert problems_of({}) == [
        "schema.objectSchema: is required and must be an object",
        "mapping.objectTypeMappings: must list at least one object type mapping",
    ]


def break_it(document: dict, change) -> dict:
    change(document)
    return document


def schema_type(document: dict) -> dict:
    return document["schema"]["objectSchema"]["objectTypes"][0]


def type_mapping(document: dict) -> dict:
    return document["mapping"]["objectTypeMappings"][0]


# Each case: what to break, the JSON path the problem must point at, and part of its message.
RULES = {
    "schema name": (
        lambda d: d["schema"]["objectSchema"].pop("name"),
        "schema.objectSchema.name",
        "is required",
    ),
    "object type name": (lambda d: schema_type(d).pop("name"), f"{TYPE}.name", "is required"),
    "attribute name": (
        lambda d: schema_type(d)["attributes"][1].pop("name"),
        f"{TYPE}.attributes[1].name",
        "is required",
    ),
    "selector": (lambda d: type_mapping(d).pop("selector"), f"{MAPPING}.selector", "is required"),
    "selector with an empty step": (
        lambda d: type_mapping(d).update(selector="laptops..disks"),
        f"{MAPPING}.selector",
        "field names joined by dots",
    ),
    "object type externalId": (
        lambda d: type_mapping(d).update(objectTypeExternalId="ghost"),
        f"{MAPPING}.objectTypeExternalId",
        "'ghost' is not an object type of the schema",
    ),
    "attribute externalId": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(attributeExternalId="ghost"),
        f"{MAPPING}.attributesMapping[1].attributeExternalId",
        "'ghost' is not an attribute of 'laptop'",
    ),
    "object type name in the mapping": (
        lambda d: type_mapping(d).update(objectTypeName="Notebook"),
        f"{MAPPING}.objectTypeName",
        "is 'Notebook' but object type 'laptop' is named 'Laptop'",
    ),
    "attribute name in the mapping": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(attributeName="RAM"),
        f"{MAPPING}.attributesMapping[1].attributeName",
        "is 'RAM' but attribute 'laptop-ram' is named 'RAM GB'",
    ),
    "no label": (
        lambda d: schema_type(d)["attributes"][0].pop("label"),
        f"{TYPE}.attributes",
        "needs exactly one label attribute, has 0",
    ),
    "two labels": (
        lambda d: schema_type(d)["attributes"][1].update(label=True),
        f"{TYPE}.attributes",
        "needs exactly one label attribute, has 2",
    ),
    "no externalIdPart": (
        lambda d: type_mapping(d)["attributesMapping"][0].pop("externalIdPart"),
        f"{MAPPING}.attributesMapping",
        "needs at least one attribute with externalIdPart: true",
    ),
    "empty locators": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(attributeLocators=[]),
        f"{MAPPING}.attributesMapping[1].attributeLocators",
        "must list at least one field name",
    ),
    "blank locator": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(attributeLocators=["ram", " "]),
        f"{MAPPING}.attributesMapping[1].attributeLocators",
        "must list at least one field name",
    ),
    "unknown attribute type": (
        lambda d: schema_type(d)["attributes"][1].update(type="number"),
        f"{TYPE}.attributes[1].type",
        "'number' is not an attribute type; use one of: " + ", ".join(ATTRIBUTE_TYPES),
    ),
    "reference without target": (
        lambda d: schema_type(d)["attributes"][1].update(type="referenced_object"),
        f"{TYPE}.attributes[1].referenceObjectTypeExternalId",
        "is required",
    ),
    "reference to an unknown type": (
        lambda d: schema_type(d)["attributes"][1].update(
            type="referenced_object", referenceObjectTypeExternalId="ghost"
        ),
        f"{TYPE}.attributes[1].referenceObjectTypeExternalId",
        "'ghost' is not an object type of the schema",
    ),
    "duplicate externalId": (
        lambda d: schema_type(d)["attributes"][1].update(externalId="laptop-serial"),
        f"{TYPE}.attributes[1].externalId",
        f"'laptop-serial' is used twice (first at {TYPE}.attributes[0])",
    ),
    "attribute externalId equal to its type's": (
        lambda d: schema_type(d)["attributes"][1].update(externalId="laptop"),
        f"{TYPE}.attributes[1].externalId",
        "'laptop' is used twice",
    ),
    "some externalIds missing": (
        lambda d: schema_type(d)["attributes"][1].pop("externalId"),
        "schema.objectSchema",
        f"externalIds are all or nothing: give every object type and attribute one, or none "
        f"({TYPE}.attributes[1] has none",
    ),
    "attribute mapped twice": (
        lambda d: type_mapping(d)["attributesMapping"].append(
            {"attributeExternalId": "laptop-ram", "attributeLocators": ["memory"]}
        ),
        f"{MAPPING}.attributesMapping[2]",
        f"maps attribute 'RAM GB' again (first at {MAPPING}.attributesMapping[1])",
    ),
    "two attributes with one name": (
        lambda d: schema_type(d)["attributes"][1].update(name="serial"),
        f"{TYPE}.attributes[1].name",
        "'serial' is used twice",
    ),
    "cardinality": (
        lambda d: schema_type(d)["attributes"][1].update(maximumCardinality=0),
        f"{TYPE}.attributes[1].maximumCardinality",
        "must be a whole number, 1 or more (-1: any)",
    ),
    "dotted locator": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(attributeLocators=["meta.ram"]),
        f"{MAPPING}.attributesMapping[1].attributeLocators[0]",
        "'meta.ram' has a dot: a locator names one field of the record its selector picks "
        "(Assets reads no nested path in a locator). Map nested data with a selector of its "
        "own, like 'hardDrives.files', or name the field without dots in the source",
    ),
    "dotted second locator": (
        lambda d: type_mapping(d)["attributesMapping"][1].update(
            attributeLocators=["ram", "specs.ram"]
        ),
        f"{MAPPING}.attributesMapping[1].attributeLocators[1]",
        "'specs.ram' has a dot",
    ),
    "required attribute left unmapped": (
        lambda d: (
            schema_type(d)["attributes"][1].update(minimumCardinality=1),
            type_mapping(d)["attributesMapping"].pop(1),
        ),
        f"{MAPPING}.attributesMapping",
        "does not map attribute 'RAM GB', which needs a value in every object "
        "(minimumCardinality 1)",
    ),
    "typeValues that are not names": (
        lambda d: schema_type(d)["attributes"][1].update(type="status", typeValues="Active"),
        f"{TYPE}.attributes[1].typeValues",
        "must be a list of names",
    ),
    "status schema status without a name": (
        lambda d: d["schema"].update(statusSchema={"statuses": [{"category": "active"}]}),
        "schema.statusSchema.statuses[0].name",
        "is required",
    ),
}


@pytest.mark.parametrize("rule", RULES, ids=list(RULES))
def test_each_rule_points_at_its_json_path(rule):
    change, path, message = RULES[rule]

    problems = validate_document(break_it(laptops(), change))

    assert [
        str(problem) for problem in problems if problem.path == path and message in problem.message
    ], problems


@pytest.mark.parametrize(
    ("key", "value"),
    [("minimumCardinality", 1), ("maximumCardinality", -1), ("unique", True), ("unique", False)],
)
def test_cardinality_and_uniqueness_are_refused_without_external_ids(key, value):
    document = without_ids(laptops())
    schema_type(document)["attributes"][1][key] = value

    assert problems_of(document) == [
        f"{TYPE}.attributes[1].{key}: needs externalIds: Assets sets cardinality and "
        "uniqueness only when every object type and attribute has an externalId (give them all "
        f"one, or leave {key} out)"
    ]


def test_cardinality_and_uniqueness_are_valid_with_external_ids():
    document = laptops()
    schema_type(document)["attributes"][1].update(
        minimumCardinality=1, maximumCardinality=3, unique=True
    )

    assert validate_document(document) == []


def test_mapping_without_external_ids_must_name_a_schema_type():
    document = without_ids(laptops())
    type_mapping(document)["objectTypeName"] = "Notebook"

    assert problems_of(document) == [
        f"{MAPPING}.objectTypeName: 'Notebook' is not an object type of the schema"
    ]


def test_mapping_without_external_ids_must_name_an_attribute_of_the_type():
    document = without_ids(laptops())
    type_mapping(document)["attributesMapping"][1]["attributeName"] = "Memory"

    assert problems_of(document) == [
        f"{MAPPING}.attributesMapping[1].attributeName: 'Memory' is not an attribute of 'Laptop'"
    ]


def test_a_mapping_cannot_use_external_ids_the_schema_lacks():
    document = without_ids(laptops())
    type_mapping(document)["objectTypeExternalId"] = "laptop"

    assert any("all or nothing" in problem for problem in problems_of(document))


def with_reference(iql: str) -> dict:
    """The minimal pair whose laptops refer to their operating system, found by `iql`."""
    document = laptops()
    types = document["schema"]["objectSchema"]["objectTypes"]
    types.append(
        {
            "externalId": "os",
            "name": "Operating system",
            "attributes": [
                {"externalId": "os-name", "name": "Name", "type": "text", "label": True}
            ],
        }
    )
    types[0]["attributes"].append(
        {
            "externalId": "laptop-os",
            "name": "OS",
            "type": "referenced_object",
            "referenceObjectTypeExternalId": "os",
        }
    )
    type_mapping(document)["attributesMapping"].append(
        {
            "attributeExternalId": "laptop-os",
            "attributeLocators": ["os"],
            "objectMappingIQL": iql,
        }
    )
    return document


# Atlassian's placeholders: a locator, or one value of a locator's list by its index.
@pytest.mark.parametrize("iql", ["Name = ${os}", "Name IN (${os${0}})", '"Name" = "${os}"'])
def test_a_reference_to_another_type_of_the_schema_is_valid(iql):
    assert validate_document(with_reference(iql)) == []


@pytest.mark.parametrize("placeholder", ["${os_name}", "${os_name${0}}"])
def test_a_placeholder_naming_no_locator_is_refused_saying_what_to_write(placeholder):
    # Sent, Assets fills it with nothing: no reference is set and the import ends DONE.
    problems = problems_of(with_reference(f"Name = {placeholder}"))

    assert problems == [
        f"{MAPPING}.attributesMapping[2].objectMappingIQL: placeholder '{placeholder}' names "
        "no field of the attributeLocators of its object type mapping ('serial', 'ram', "
        "'os'), so Assets would find no object for it and set no reference: write ${os} (or "
        "another of them), or add 'os_name' to this attribute's attributeLocators"
    ]


@pytest.mark.parametrize("iql", ["Name = ${serial}", "Name = ${os} AND Serial = ${serial${0}}"])
def test_a_placeholder_may_name_a_field_another_attribute_of_its_type_mapping_reads(iql):
    # The record is sent with every field its type mapping's locators read: Assets fills it.
    assert validate_document(with_reference(iql)) == []


def test_a_reference_without_locators_is_told_so_not_a_crash():
    document = with_reference("Name = ${os_name}")
    document["mapping"]["objectTypeMappings"][0]["attributesMapping"][2]["attributeLocators"] = []

    assert problems_of(document) == [
        f"{MAPPING}.attributesMapping[2].attributeLocators: must list at least one field name"
    ]


def test_a_placeholder_naming_a_field_of_another_type_mapping_is_refused():
    document = with_reference("Name = ${hostname}")
    document["mapping"]["objectTypeMappings"].append(
        {
            "objectTypeExternalId": "os",
            "selector": "systems",
            "attributesMapping": [
                {
                    "attributeExternalId": "os-name",
                    "attributeLocators": ["hostname"],
                    "externalIdPart": True,
                }
            ],
        }
    )

    [problem] = validate_document(document)

    assert problem.path == f"{MAPPING}.attributesMapping[2].objectMappingIQL"
    assert "placeholder '${hostname}' names no field" in problem.message


def test_only_the_placeholder_and_duplicate_mapping_rules_are_newer_than_stored_mappings():
    # A mapping stored before these rules still imports (noted); every older rule still refuses.
    document = with_reference("Name = ${os_name} OR Name = ${os")
    document["mapping"]["objectTypeMappings"].append(copy.deepcopy(type_mapping(document)))
    type_mapping(document)["attributesMapping"][1]["attributeLocators"] = ["ram.gb"]

    refusing, noted = split_newer_rules(validate_document(document))

    assert [problem.path for problem in refusing] == [
        f"{MAPPING}.attributesMapping[1].attributeLocators[0]"
    ]
    assert [problem.path for problem in noted] == [
        f"{MAPPING}.attributesMapping[2].objectMappingIQL",
        f"{MAPPING}.attributesMapping[2].objectMappingIQL",
        "mapping.objectTypeMappings[1]",
        "mapping.objectTypeMappings[1].attributesMapping[2].objectMappingIQL",
        "mapping.objectTypeMappings[1].attributesMapping[2].objectMappingIQL",
    ]


def test_a_placeholder_left_open_is_refused():
    problems = problems_of(with_reference("Name = ${os"))

    assert problems == [
        f"{MAPPING}.attributesMapping[2].objectMappingIQL: '${{os' opens a placeholder that "
        "is not closed: write ${os}, naming a field of attributeLocators"
    ]


def test_two_mappings_of_one_type_from_one_selector_are_refused_naming_both():
    document = laptops()
    document["mapping"]["objectTypeMappings"].append(copy.deepcopy(type_mapping(document)))

    assert problems_of(document) == [
        "mapping.objectTypeMappings[1]: maps object type 'Laptop' from selector 'laptops' "
        "again (first at mapping.objectTypeMappings[0]): each record would be mapped to that "
        "type twice, by two lists of attributes. Merge their attributesMapping into one "
        "object type mapping, or give this one its own selector"
    ]


def nested_document() -> dict:
    """Computers with their disks as a child type, each disk with its files (hardDrives.files)."""
    document = laptops()
    computer = schema_type(document)
    computer["children"] = [
        {
            "externalId": "disk",
            "name": "Hard drive",
            "attributes": [
                {"externalId": "disk-id", "name": "Disk id", "type": "text", "label": True},
                {"externalId": "disk-size", "name": "Size GB", "type": "integer"},
            ],
            "children": [
                {
                    "externalId": "file",
                    "name": "File",
                    "attributes": [
                        {"externalId": "file-path", "name": "Path", "type": "text", "label": True},
                        {"externalId": "file-bytes", "name": "Bytes", "type": "integer"},
                    ],
                }
            ],
        }
    ]
    document["mapping"]["objectTypeMappings"] += [
        {
            "objectTypeExternalId": "disk",
            "selector": "laptops.hardDrives",
            "attributesMapping": [
                {
                    "attributeExternalId": "disk-id",
                    "attributeLocators": ["id"],
                    "externalIdPart": True,
                },
                {"attributeExternalId": "disk-size", "attributeLocators": ["size"]},
            ],
        },
        {
            "objectTypeExternalId": "file",
            "selector": "laptops.hardDrives.files",
            "attributesMapping": [
                {
                    "attributeExternalId": "file-path",
                    "attributeLocators": ["path"],
                    "externalIdPart": True,
                },
                {"attributeExternalId": "file-bytes", "attributeLocators": ["bytes"]},
            ],
        },
    ]
    return document


def test_children_object_types_are_walked_and_can_be_mapped():
    assert validate_document(nested_document()) == []


def test_a_problem_in_a_grandchild_type_points_into_children():
    document = nested_document()
    schema_type(document)["children"][0]["children"][0]["attributes"][1]["type"] = "bytes"

    assert [problem.path for problem in validate_document(document)] == [
        f"{TYPE}.children[0].children[0].attributes[1].type"
    ]


def map_laptop_ram_on_disks(document: dict) -> dict:
    document["mapping"]["objectTypeMappings"][1]["attributesMapping"].append(
        {"attributeExternalId": "laptop-ram", "attributeLocators": ["ram"]}
    )
    return document


def test_a_child_cannot_map_its_parents_attributes_without_inheritance():
    document = map_laptop_ram_on_disks(nested_document())

    assert problems_of(document) == [
        "mapping.objectTypeMappings[1].attributesMapping[2].attributeExternalId: "
        "'laptop-ram' is not an attribute of 'disk'"
    ]


def test_a_child_may_map_attributes_its_parent_passes_on():
    document = map_laptop_ram_on_disks(nested_document())
    schema_type(document)["inheritance"] = True
    # The inherited label (Serial) is the disk's label now.
    schema_type(document)["children"][0]["attributes"][0].pop("label")

    assert validate_document(document) == []


# --- transform: coercion ---------------------------------------------------------------------


def sent_value(kind: str, given, **attribute):
    result = transform_records(
        [{"serial": "C02X1", "value": given}], with_value_type(kind, **attribute)
    )
    assert result.skipped == []
    return result.data["laptops"][0].get("value", "absent")


@pytest.mark.parametrize(
    ("kind", "given", "sent"),
    [
        ("integer", "12", 12),
        ("integer", 12.0, 12),
        ("integer", " -7 ", -7),
        ("integer", 16, 16),
        ("double", "2.5", 2.5),
        ("double", 3, 3.0),
        ("boolean", "Yes", True),
        ("boolean", "no", False),
        ("boolean", "TRUE", True),
        ("boolean", "0", False),
        ("boolean", 1, True),
        ("boolean", False, False),
        ("date", "2024-05-31", "2024-05-31"),
        ("date", "2024-05-31T23:30:00+02:00", "2024-05-31"),
        ("date_time", "2024-05-31T10:00:00Z", "2024-05-31T10:00:00+00:00"),
        ("date_time", "2024-05-31T10:00:00+02:00", "2024-05-31T10:00:00+02:00"),
        ("date_time", "2024-05-31 10:00", "2024-05-31 10:00"),
        ("time", "14:30", "14:30:00"),
        ("email", " ada@example.com ", "ada@example.com"),
        ("url", "https://example.com/x?y=1", "https://example.com/x?y=1"),
        ("url", "HTTP://example.com", "HTTP://example.com"),
        ("ipaddress", "10.0.0.1", "10.0.0.1"),
        ("ipaddress", "2001:db8::1", "2001:db8::1"),
        ("text", 12, "12"),
        ("text", True, "true"),
        ("textarea", "line 1\nline 2", "line 1\nline 2"),
        ("select", "Active", "Active"),
        ("status", "In use", "In use"),
        ("referenced_object", 42, "42"),
    ],
)
def test_values_are_coerced_to_their_attribute_type(kind, given, sent):
    assert sent_value(kind, given) == sent
    assert type(sent_value(kind, given)) is type(sent)


@pytest.mark.parametrize("given", [None, "", "   ", []])
def test_none_and_empty_values_stay_absent(given):
    assert sent_value("integer", given) == "absent"


def test_a_multi_valued_attribute_takes_a_list_and_coerces_each_value():
    assert sent_value("integer", ["1", 2.0, None], maximumCardinality=-1) == [1, 2]


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("integer", "12.5", "a whole number (integer)"),
        ("integer", True, "a whole number (integer)"),
        ("integer", "twelve", "a whole number (integer)"),
        ("integer", "1e999999", "a whole number (integer)"),
        ("double", "abc", "a number (double)"),
        ("double", "nan", "a number (double)"),
        ("boolean", "maybe", "(boolean)"),
        ("boolean", 2, "(boolean)"),
        ("date", "31/05/2024", "(date)"),
        ("date_time", "yesterday", "(date_time)"),
        ("time", "half past two", "(time)"),
        ("email", "not-an-email", "an email address (email)"),
        ("email", "a@b", "an email address (email)"),
        ("url", "ftp://example.com/file", "an http or https URL (url)"),
        ("url", "example.com", "an http or https URL (url)"),
        ("ipaddress", "300.1.1.1", "an IPv4 or IPv6 address (ipaddress)"),
        ("ipaddress", "10.0.0.0/24", "an IPv4 or IPv6 address (ipaddress)"),
        ("text", {"a": 1}, "text (text)"),
        ("text", float("inf"), "text (text)"),  # JSON's 1e400
        ("text", float("nan"), "text (text)"),
        ("status", float("-inf"), "a status name (status)"),
        ("text", ["a", "b"], "one value (not a list)"),
    ],
)
def test_a_value_that_cannot_be_coerced_leaves_its_record_out_with_a_reason(kind, given, expected):
    records = [{"serial": "C02X1", "value": "placeholder"}, {"serial": "C02X2", "value": given}]
    records[0].pop("value")

    result = transform_records(records, with_value_type(kind))

    assert result.record_count == 1
    assert [record["serial"] for record in result.data["laptops"]] == ["C02X1"]
    assert len(result.skipped) == 1
    reason = result.skipped[0]
    assert reason.startswith("record 2 (serial=C02X2): field 'value' is ")
    assert expected in reason
    assert "attribute 'Value'" in reason


def test_a_record_is_named_by_an_id_like_field_when_its_identity_is_missing():
    result = transform_records([{"hostname": "lt-001", "ram": "many"}], laptops())

    assert result.skipped == [
        "record 1 (hostname=lt-001): field 'ram' is 'many', expected a whole number (integer) "
        "for attribute 'RAM GB'; no value for 'serial', which identifies the object in "
        "selector 'laptops'"
    ]


def test_only_fields_some_locator_reads_are_sent():
    result = transform_records(
        [{"serial": "C02X1", "ram": "16", "secret": "x", "cpu": 8}], laptops()
    )

    assert result.data == {"laptops": [{"serial": "C02X1", "ram": 16}]}


def test_records_are_read_one_at_a_time_from_any_iterable():
    records = ({"serial": f"C{i}", "ram": i} for i in range(3))

    result = transform_records(records, laptops())

    assert result.record_count == 3
    assert [record["ram"] for record in result.data["laptops"]] == [0, 1, 2]


def test_a_record_that_is_not_an_object_is_skipped():
    result = transform_records([{"serial": "A"}, "oops"], laptops())

    assert result.record_count == 1
    assert result.skipped == ["record 2: is 'oops', not an object"]


def test_the_demo_mapping_sends_every_demo_record_with_typed_values():
    records = [demo_computer(i) for i in range(1, 301)]

    result = transform_records(records, json.loads(DEMO_MAPPING.read_text()))

    assert result.skipped == []
    assert result.record_count == 300
    first = result.data["computers"][0]
    assert first == records[0]
    assert isinstance(first["ram_gb"], int)


# --- transform: identity ---------------------------------------------------------------------


def test_records_without_identity_are_skipped_and_listed_by_default():
    records = [{"serial": "A", "ram": 8}, {"ram": 16, "name": "spare"}, {"serial": "  "}]

    result = transform_records(records, laptops())

    assert result.record_count == 1
    assert result.data == {"laptops": [{"serial": "A", "ram": 8}]}
    assert result.skipped == [
        "record 2 (name=spare): no value for 'serial', which identifies the object in selector "
        "'laptops'",
        "record 3 (no id): no value for 'serial', which identifies the object in selector "
        "'laptops'",
    ]


def test_a_record_left_out_is_named_by_its_own_id_not_by_a_value_many_records_share():
    document = laptops()
    owner = copy.deepcopy(document["mapping"]["objectTypeMappings"][0])
    owner["attributesMapping"] = [dict(owner["attributesMapping"][0], attributeLocators=["owner"])]
    document["mapping"]["objectTypeMappings"].insert(0, owner)  # the owner's type comes first
    serial = document["mapping"]["objectTypeMappings"][1]["attributesMapping"][0]
    serial["attributeLocators"] = ["id"]

    result = transform_records([{"id": "C1", "owner": "ann@example.com", "ram": "x"}], document)

    assert result.skipped[0].startswith("record 1 (id=C1): ")


def test_records_without_identity_fail_the_page_when_asked():
    records = [{"serial": "A"}] + [{"ram": i} for i in range(5)]

    with pytest.raises(MissingIdentityError) as error:
        transform_records(records, laptops(), missing_identity="fail")

    assert len(error.value.reasons) == 5
    assert str(error.value).startswith("5 records without identity: record 2 (no id): no value")
    assert str(error.value).endswith("; and 2 more")


def test_an_unknown_missing_identity_mode_is_refused():
    with pytest.raises(ValueError, match="missing_identity"):
        transform_records([], laptops(), missing_identity="ignore")


# --- transform: values the schema rules out --------------------------------------------------


def left_out(document: dict, value, *, good=None) -> list[str]:
    """Why the record with `value` was left out (the one with `good`, or none, goes through)."""
    records = [{"serial": "C02X1", "value": good}, {"serial": "C02X2", "value": value}]

    result = transform_records(records, document)

    assert [record["serial"] for record in result.data["laptops"]] == ["C02X1"]
    return result.skipped


@pytest.mark.parametrize("kind", ["status", "select"])
def test_a_value_outside_type_values_leaves_its_record_out_with_a_reason(kind):
    document = with_value_type(kind, typeValues=["In use", "Retired"])

    assert left_out(document, "Broken") == [
        "record 2 (serial=C02X2): field 'value' is 'Broken', expected one of 'In use', "
        "'Retired' (typeValues) for attribute 'Value'"
    ]


@pytest.mark.parametrize("kind", ["status", "select"])
def test_a_value_in_type_values_is_sent_in_their_spelling(kind):
    document = with_value_type(kind, typeValues=["In use", "Retired"])

    assert sent_value(kind, "In use", typeValues=["In use", "Retired"]) == "In use"
    assert sent_value(kind, " in USE ", typeValues=["In use", "Retired"]) == "In use"
    assert validate_document(document) == []


def test_a_status_without_type_values_takes_any_status_name():
    assert sent_value("status", "Anything Assets knows") == "Anything Assets knows"


def test_each_value_of_a_multi_valued_select_must_be_in_type_values():
    document = with_value_type("select", typeValues=["red", "green", "blue"], maximumCardinality=-1)

    assert sent_value(
        "select", ["red", "Blue"], typeValues=["red", "green", "blue"], maximumCardinality=-1
    ) == ["red", "blue"]
    assert left_out(document, ["red", "pink"]) == [
        "record 2 (serial=C02X2): field 'value' is ['red', 'pink'], expected one of 'red', "
        "'green', 'blue' (typeValues) for attribute 'Value'"
    ]


def test_a_long_type_values_list_is_cut_short_in_the_reason():
    names = [f"status {n}" for n in range(40)]

    (reason,) = left_out(with_value_type("status", typeValues=names), "status 99")

    assert "'status 9', ... (40 in all) (typeValues)" in reason


def test_more_values_than_maximum_cardinality_leave_the_record_out():
    document = with_value_type("text", maximumCardinality=2)

    assert left_out(document, ["a", "b", "c"]) == [
        "record 2 (serial=C02X2): field 'value' is ['a', 'b', 'c'], expected at most 2 values "
        "(maximumCardinality 2) for attribute 'Value'"
    ]


def test_values_up_to_maximum_cardinality_are_sent():
    assert sent_value("text", ["a", "b", None, ""], maximumCardinality=2) == ["a", "b"]
    assert sent_value("text", "a", maximumCardinality=2) == "a"


@pytest.mark.parametrize("given", [None, "", "  ", []])
def test_no_value_where_minimum_cardinality_is_one_leaves_the_record_out(given):
    document = with_value_type("text", minimumCardinality=1)

    assert left_out(document, given, good="x") == [
        "record 2 (serial=C02X2): no value for 'value', which attribute 'Value' requires "
        "(minimumCardinality 1)"
    ]


def test_a_record_without_the_field_of_a_required_attribute_is_left_out():
    document = with_value_type("text", minimumCardinality=1)

    result = transform_records([{"serial": "C02X1"}, {"serial": "C02X2", "value": "x"}], document)

    assert result.data == {"laptops": [{"serial": "C02X2", "value": "x"}]}
    assert result.skipped == [
        "record 1 (serial=C02X1): no value for 'value', which attribute 'Value' requires "
        "(minimumCardinality 1)"
    ]


def test_fewer_values_than_minimum_cardinality_leave_the_record_out():
    document = with_value_type("text", minimumCardinality=2, maximumCardinality=-1)

    assert left_out(document, ["a", None], good=["a", "b"]) == [
        "record 2 (serial=C02X2): 'value' gave 1 value, attribute 'Value' requires 2 or more "
        "(minimumCardinality 2)"
    ]


def test_a_required_attribute_with_two_locators_needs_one_of_them():
    document = with_value_type("text", minimumCardinality=1)
    type_mapping(document)["attributesMapping"][2]["attributeLocators"] = ["value", "fallback"]

    result = transform_records([{"serial": "A", "fallback": "x"}, {"serial": "B"}], document)

    assert result.data == {"laptops": [{"serial": "A", "fallback": "x"}]}
    assert result.skipped == [
        "record 2 (serial=B): no value for 'value' or 'fallback', which attribute 'Value' "
        "requires (minimumCardinality 1)"
    ]


def test_a_value_that_cannot_be_coerced_is_not_also_reported_as_missing():
    document = with_value_type("integer", minimumCardinality=1)

    (reason,) = left_out(document, "many", good=3)

    assert "expected a whole number (integer)" in reason
    assert "minimumCardinality" not in reason


def test_a_required_identity_is_reported_once_as_identity():
    document = laptops()
    schema_type(document)["attributes"][0]["minimumCardinality"] = 1

    result = transform_records([{"ram": 8}], document, missing_identity="skip")

    assert result.skipped == [
        "record 1 (no id): no value for 'serial', which identifies the object in selector 'laptops'"
    ]


def test_records_with_values_the_schema_rules_out_fail_the_page_when_asked():
    document = with_value_type("status", typeValues=["In use"], minimumCardinality=1)
    records = [
        {"serial": "A", "value": "In use"},
        {"serial": "B", "value": "Broken"},
        {"serial": "C"},
        {"serial": "D", "value": "In use", "ram": "lots"},
        "not a record",
    ]

    with pytest.raises(InvalidValuesError) as error:
        transform_records(records, document, invalid_values="fail")

    assert error.value.kind == "invalid_values"
    assert len(error.value.reasons) == 4
    assert str(error.value) == (
        "4 records with values Assets' schema rules out: record 2 (serial=B): field 'value' is "
        "'Broken', expected one of 'In use' (typeValues) for attribute 'Value'; record 3 "
        "(serial=C): no value for 'value', which attribute 'Value' requires "
        "(minimumCardinality 1); record 4 (serial=D): field 'ram' is 'lots', expected a whole "
        "number (integer) for attribute 'RAM GB'; and 1 more"
    )


def test_records_without_identity_follow_their_own_policy_when_values_fail():
    records = [{"serial": "A"}, {"ram": 8}]

    result = transform_records(records, laptops(), invalid_values="fail")

    assert result.record_count == 1
    assert len(result.skipped) == 1


def test_an_unknown_invalid_values_mode_is_refused():
    with pytest.raises(ValueError, match="invalid_values"):
        transform_records([], laptops(), invalid_values="ignore")


# --- transform: nested selectors -------------------------------------------------------------


def laptop_with_disks(size="512") -> dict:
    return {
        "serial": "C02X1",
        "ram": 16,
        "owner": "not sent",
        "hardDrives": [
            {
                "id": "d1",
                "size": size,
                "vendor": "not sent",
                "files": [{"path": "/etc/hosts", "bytes": "120", "mode": "0644"}],
            },
            {"id": "d2", "size": 256, "files": []},
        ],
    }


def test_a_dotted_selector_keeps_the_nested_arrays_with_coerced_values():
    result = transform_records([laptop_with_disks()], nested_document())

    assert result.skipped == []
    assert result.data == {
        "laptops": [
            {
                "serial": "C02X1",
                "ram": 16,
                "hardDrives": [
                    {"id": "d1", "size": 512, "files": [{"path": "/etc/hosts", "bytes": 120}]},
                    {"id": "d2", "size": 256},
                ],
            }
        ]
    }


def test_a_bad_value_in_a_nested_item_leaves_that_item_out_and_sends_its_record():
    result = transform_records([laptop_with_disks(size="big")], nested_document())

    assert result.record_count == 1 and result.skipped == []
    assert [disk["id"] for disk in result.data["laptops"][0]["hardDrives"]] == ["d2"]
    assert result.items_left_out == [
        "record 1 (serial=C02X1): left out 'hardDrives[0]': field 'hardDrives[0].size' is "
        "'big', expected a whole number (integer) for attribute 'Size GB'"
    ]


def test_a_bad_value_in_a_nested_item_fails_the_page_when_the_source_says_so():
    with pytest.raises(InvalidValuesError, match=r"hardDrives\[0\]\.size"):
        transform_records([laptop_with_disks(size="big")], nested_document(), invalid_values="fail")


def test_a_nested_item_without_identity_is_left_out_naming_its_place():
    record = laptop_with_disks()
    del record["hardDrives"][0]["files"][0]["path"]

    result = transform_records([record, laptop_with_disks()], nested_document())

    assert result.data["laptops"][0]["hardDrives"][0]["files"] == []
    assert result.items_left_out == [
        "record 1 (serial=C02X1): left out 'hardDrives[0].files[0]': no value for "
        "'hardDrives[0].files[0].path', which identifies the object in selector "
        "'laptops.hardDrives.files'"
    ]


def test_a_page_whose_every_nested_item_lacks_its_identity_sends_its_records_counting_them():
    # A field renamed at the source, or a few bad disks on this page alone: a page cannot
    # tell, so it is sent and counted; the import judges at its end (services.totals).
    records = [laptop_with_disks(), laptop_with_disks()]
    for record in records:
        for disk in record["hardDrives"]:
            disk["disk_id"] = disk.pop("id")

    result = transform_records(records, nested_document())

    assert result.record_count == 2 and len(result.items_left_out) == 4
    assert result.nested == {
        "laptops.hardDrives": [
            0,
            4,
            "record 1 (serial=C02X1): left out 'hardDrives[0]': no value for 'hardDrives[0].id', "
            "which identifies the object in selector 'laptops.hardDrives'",
        ]
    }


def test_a_page_counts_the_items_each_nested_selector_sends_and_leaves_out():
    record = laptop_with_disks()
    del record["hardDrives"][0]["files"][0]["path"]

    result = transform_records([record, laptop_with_disks()], nested_document())

    counts = {selector: entry[:2] for selector, entry in result.nested.items()}
    assert counts == {"laptops.hardDrives": [4, 0], "laptops.hardDrives.files": [1, 1]}
    assert result.nested["laptops.hardDrives"] == [4, 0]  # no reason when none was left out


def test_a_mapping_without_nested_selectors_counts_no_nested_items():
    result = transform_records([demo_computer(1)], laptops())

    assert result.nested is None


def test_a_nested_selectors_first_item_left_out_is_kept_with_its_counts():
    record = laptop_with_disks()
    del record["hardDrives"][0]["files"][0]["path"]
    record["hardDrives"][1]["size"] = "big"

    result = transform_records([record], nested_document())

    assert first_left_out(result.nested["laptops.hardDrives.files"]) == (
        "record 1 (serial=C02X1): left out 'hardDrives[0].files[0]': no value for "
        "'hardDrives[0].files[0].path', which identifies the object in selector "
        "'laptops.hardDrives.files'"
    )
    assert first_left_out(result.nested["laptops.hardDrives"]).startswith(
        "record 1 (serial=C02X1): left out 'hardDrives[1]': field 'hardDrives[1].size'"
    )
    assert first_left_out([3, 0]) == ""  # none left out, or counted before reasons were kept


def test_a_page_whose_one_nested_item_lacks_its_identity_is_sent_without_it():
    # One bad disk on a page with no other disk is no renamed field: the page goes on.
    records = [laptop_with_disks(), laptop_with_disks()]
    records[0]["hardDrives"] = [{"size": 512}]
    records[1]["hardDrives"] = []

    result = transform_records(records, nested_document())

    assert result.record_count == 2 and len(result.items_left_out) == 1
    assert result.data.get("laptops.hardDrives", []) == []
    assert result.nested["laptops.hardDrives"][:2] == [0, 1]


def test_a_record_whose_only_objects_are_nested_items_left_out_is_told_once():
    # A nested selector alone: a record whose every disk is left out makes no object, so it
    # is a record left out, its disks its reason, not also counted as items left out.
    document = nested_document()
    document["mapping"]["objectTypeMappings"] = document["mapping"]["objectTypeMappings"][1:2]
    renamed = laptop_with_disks()
    renamed["serial"] = "C02X2"
    for disk in renamed["hardDrives"]:
        del disk["id"]

    result = transform_records([laptop_with_disks(), renamed], document)

    assert result.record_count == 1 and result.items_left_out == []
    assert result.skipped == [
        "record 2 (serial=C02X2): holds no object for the mapping: left out 'hardDrives[0]': "
        "no value for 'hardDrives[0].id', which identifies the object in selector "
        "'laptops.hardDrives'; left out 'hardDrives[1]': no value for 'hardDrives[1].id', "
        "which identifies the object in selector 'laptops.hardDrives'"
    ]


def test_a_nested_item_without_identity_fails_the_page_when_the_source_says_so():
    record = laptop_with_disks()
    del record["hardDrives"][0]["files"][0]["path"]

    with pytest.raises(MissingIdentityError, match=r"hardDrives\[0\]\.files\[0\]\.path"):
        transform_records([record], nested_document(), missing_identity="fail")


def test_a_nested_selector_alone_sends_only_its_array():
    document = nested_document()
    document["mapping"]["objectTypeMappings"] = document["mapping"]["objectTypeMappings"][1:2]

    result = transform_records([laptop_with_disks()], document)

    assert result.data == {
        "laptops": [{"hardDrives": [{"id": "d1", "size": 512}, {"id": "d2", "size": 256}]}]
    }


def test_a_record_without_the_list_a_nested_selector_alone_walks_into_is_left_out():
    # A records path copied into the selector ("computers.items" over records that have no
    # "items"): sent, each record would be an empty object Assets makes nothing of, counted
    # as taken, and the import would end DONE with no object in Assets.
    document = nested_document()
    document["mapping"]["objectTypeMappings"] = document["mapping"]["objectTypeMappings"][1:2]
    without_disks = {"serial": "C02X2", "ram": 8}
    with_none = {"serial": "C02X3", "hardDrives": []}

    result = transform_records([laptop_with_disks(), without_disks, with_none], document)

    assert result.record_count == 1
    assert result.skipped == [
        "record 2 (serial=C02X2): holds no object for the mapping: no 'hardDrives' list for "
        "selector 'laptops.hardDrives'",
        "record 3 (serial=C02X3): holds no object for the mapping: no 'hardDrives' list for "
        "selector 'laptops.hardDrives'",
    ]
    assert len(result.data["laptops"]) == 1


def test_a_record_without_nested_items_still_makes_its_own_object_when_its_type_is_mapped():
    result = transform_records([{"serial": "C02X2", "ram": 8}], nested_document())

    assert result.record_count == 1 and result.skipped == []


def test_a_misspelled_locator_of_a_nested_selector_is_named_with_its_selector():
    document = nested_document()
    document["mapping"]["objectTypeMappings"][1]["attributesMapping"][1]["attributeLocators"] = [
        "sizegb"
    ]
    records = [laptop_with_disks(), {"serial": "C02X2", "ram": 8}]

    assert fields_in_no_record(records, document) == [
        "'sizegb' (attribute Size GB, laptops.hardDrives)"
    ]


def test_a_misspelled_locator_two_levels_down_is_found_over_every_list():
    document = nested_document()
    document["mapping"]["objectTypeMappings"][2]["attributesMapping"][1]["attributeLocators"] = [
        "size"
    ]

    missing = fields_in_no_record([laptop_with_disks(), laptop_with_disks()], document)

    assert missing == ["'size' (attribute Bytes, laptops.hardDrives.files)"]


def test_a_nested_selector_with_fewer_items_than_asked_for_is_not_judged():
    document = nested_document()
    document["mapping"]["objectTypeMappings"][1]["attributesMapping"][1]["attributeLocators"] = [
        "sizegb"
    ]
    laptops_with_two_disks = [laptop_with_disks() | {"serial": f"C{n}"} for n in range(3)]

    assert fields_in_no_record(laptops_with_two_disks, document, minimum=6) == [
        "'sizegb' (attribute Size GB, laptops.hardDrives)"
    ]
    assert fields_in_no_record(laptops_with_two_disks, document, minimum=7) == []


# --- Atlassian's published example shapes ----------------------------------------------------


def example(name: str, part: str = "document"):
    return json.loads((EXAMPLES / f"{name}.{part}.json").read_text())


EXAMPLE_NAMES = sorted(path.name.split(".")[0] for path in EXAMPLES.glob("*.document.json"))


def test_the_examples_cover_every_published_shape():
    assert EXAMPLE_NAMES == ["external_ids", "importsource_put", "nested_selector", "reference"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_each_example_document_validates(name):
    assert validate_document(example(name)) == []


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_records_shaped_like_each_example_become_its_chunk(name):
    result = transform_records(example(name, "records"), example(name))

    assert result.skipped == []
    assert {"data": result.data} == example(name, "chunk")


def test_data_shaped_like_the_guide_is_sent_as_the_guide_shows():
    records = example("nested_selector", "records")

    result = transform_records(records, example("nested_selector"))

    assert result.data == {"hardDrives": records}


def test_a_status_outside_the_examples_type_values_leaves_its_drive_out():
    records = example("importsource_put", "records")
    records[1]["status"] = "Melted"

    result = transform_records(records, example("importsource_put"))

    assert [drive["id"] for drive in result.data["hardDrives"]] == ["drv-7f3a"]
    assert result.skipped == [
        "record 2 (id=drv-91c0): field 'status' is 'Melted', expected one of 'Degraded', "
        "'Retired', 'Quarantined' (typeValues) for attribute 'Health'"
    ]


def test_a_file_without_its_required_size_is_left_out_of_its_drive_naming_the_file():
    records = example("importsource_put", "records")
    del records[0]["files"][0]["size"]
    del records[1]["label"]
    # Another drive's file is sent: a page that sends none of its files fails instead.
    records.append({**records[0], "id": "drv-a11e", "files": [{"path": "/a", "size": 1}]})

    result = transform_records(records, example("importsource_put"))

    assert result.record_count == 2  # the drive goes, without the file
    assert result.items_left_out == [
        "record 1 (id=drv-7f3a): left out 'files[0]': no value for 'files[0].size', which "
        "attribute 'Bytes' requires (minimumCardinality 1)",
    ]
    assert result.skipped == [
        "record 2 (id=drv-91c0): no value for 'label', which attribute 'Volume name' requires "
        "(minimumCardinality 1)",
    ]


def test_more_mirrors_than_the_examples_cardinality_leave_the_drive_out():
    records = example("external_ids", "records")
    records[0]["mirrors"] = ["drv-1", "drv-2", "drv-3", "drv-4"]
    records[1]["mirrors"] = []

    result = transform_records(records, example("external_ids"))

    assert result.skipped == [
        "record 1 (id=drv-7f3a): field 'mirrors' is ['drv-1', 'drv-2', 'drv-3', 'drv-4'], "
        "expected at most 3 values (maximumCardinality 3) for attribute 'Mirrors'",
        "record 2 (id=drv-91c0): no value for 'mirrors', which attribute 'Mirrors' requires "
        "(minimumCardinality 1)",
    ]


# --- drafting --------------------------------------------------------------------------------


def agent_records() -> list[dict]:
    """What an inventory agent's API might answer: mixed types, a few gaps, nested parts."""
    return [
        {
            "hostname": f"lt-{i:03d}",
            "serial": f"C02X{i:04d}",
            "ip": f"10.0.0.{i}",
            "ram_gb": 16,
            "cpu_ghz": 2.4 if i % 2 else 3,
            "managed": i % 3 == 0,
            "last_seen": f"2024-05-{i:02d}T10:22:00Z",
            "purchased": f"2023-01-{i:02d}",
            "owner": f"user{i}@example.com" if i != 4 else None,
            "portal": f"https://mdm.example.com/devices/{i}",
            "assetTag": f"{i:05d}",
            "tags": ["laptop"],
            "location": {"site": "HQ"},
        }
        for i in range(1, 11)
    ]


def draft_attributes(document: dict) -> dict[str, dict]:
    attributes = schema_type(document)["attributes"]
    locators = [m["attributeLocators"][0] for m in type_mapping(document)["attributesMapping"]]
    return dict(zip(locators, attributes, strict=True))


def test_a_draft_from_realistic_records_validates_and_sends_them_all():
    records = agent_records()

    draft = draft_mapping(records, name="Laptop", selector="laptops")

    assert validate_document(draft) == []
    result = transform_records(records, draft)
    assert result.skipped == []
    assert result.record_count == 10


def test_a_draft_infers_one_attribute_per_scalar_field_with_its_type():
    draft = draft_mapping(agent_records(), name="Laptop", selector="laptops")

    types = {locator: attribute["type"] for locator, attribute in draft_attributes(draft).items()}
    assert types == {
        "hostname": "text",
        "serial": "text",
        "ip": "ipaddress",
        "ram_gb": "integer",
        "cpu_ghz": "double",
        "managed": "boolean",
        "last_seen": "date_time",
        "purchased": "date",
        "owner": "email",
        "portal": "url",
        "assetTag": "text",
    }
    description = draft["schema"]["objectSchema"]["description"]
    assert description.endswith("Not mapped (lists or objects): location, tags.")


def test_a_draft_names_external_ids_after_the_type_and_field():
    draft = draft_mapping(agent_records(), name="Field Laptop", selector="laptops")

    attributes = draft_attributes(draft)
    assert schema_type(draft)["externalId"] == "field-laptop"
    assert attributes["ram_gb"]["externalId"] == "field-laptop-ram-gb"
    assert attributes["assetTag"]["externalId"] == "field-laptop-asset-tag"
    assert attributes["assetTag"]["name"] == "Asset tag"
    assert type_mapping(draft)["selector"] == "laptops"


def test_a_draft_identifies_by_serial_and_labels_by_hostname():
    draft = draft_mapping(agent_records(), name="Laptop", selector="laptops")

    identity = [
        m["attributeLocators"]
        for m in type_mapping(draft)["attributesMapping"]
        if m.get("externalIdPart")
    ]
    labels = [loc for loc, attribute in draft_attributes(draft).items() if attribute.get("label")]
    assert identity == [["serial"]]
    assert labels == ["hostname"]


def test_a_draft_skips_an_id_field_whose_values_repeat():
    records = [{"id": 1, "sku": f"SKU-{i}", "title": f"Item {i}"} for i in range(5)]

    draft = draft_mapping(records, name="Item", selector="items")

    identity = [
        m["attributeLocators"]
        for m in type_mapping(draft)["attributesMapping"]
        if m.get("externalIdPart")
    ]
    labels = [loc for loc, attribute in draft_attributes(draft).items() if attribute.get("label")]
    assert identity == [["sku"]]
    assert labels == ["title"]


def test_a_draft_falls_back_to_hostname_when_few_records_have_a_serial():
    records = [{"hostname": f"srv-{i}", "serial": "S1" if i == 0 else None} for i in range(4)]

    draft = draft_mapping(records, name="Server", selector="servers")

    identity = [
        m["attributeLocators"]
        for m in type_mapping(draft)["attributesMapping"]
        if m.get("externalIdPart")
    ]
    assert identity == [["hostname"]]
    assert validate_document(draft) == []


def test_a_draft_of_the_demo_records_matches_the_demo_mapping_in_shape():
    records = [demo_computer(i) for i in range(1, 101)]
    draft = draft_mapping(records, name="Computer", selector="computers")

    rows = {row["locators"]: row for row in mapping_table(draft)}
    assert rows["serial"]["identity"] and rows["hostname"]["label"]
    assert rows["ram_gb"]["type"] == "integer"
    assert rows["owner"]["type"] == "email"
    assert rows["purchased"]["type"] == "date"


def test_a_draft_leaves_out_fields_whose_names_have_a_dot_and_says_so():
    records = [{"serial": "A1", "meta.label": "x"}, {"serial": "A2", "meta.label": "y"}]

    document = draft_mapping(records, name="Laptop", selector="laptops")

    assert validate_document(document) == []
    assert list(draft_attributes(document)) == ["serial"]
    assert document["schema"]["objectSchema"]["description"].endswith(
        "Not mapped (a locator cannot name a field with a dot): meta.label."
    )


def test_a_draft_needs_fields_with_plain_values():
    with pytest.raises(ValueError, match="no top-level fields"):
        draft_mapping([{"parts": [1, 2]}], name="Thing", selector="things")


# --- diff ------------------------------------------------------------------------------------


def test_equivalent_documents_have_no_differences():
    remote = json.loads(json.dumps(laptops(), sort_keys=True))

    assert diff_documents(laptops(), remote) == []


def test_ids_and_defaults_the_server_adds_are_not_differences():
    local = without_ids(laptops())
    remote = laptops()  # the same, with the externalIds Assets generates
    for attribute in schema_type(remote)["attributes"]:
        attribute.update(minimumCardinality=0, maximumCardinality=1, unique=False, description="")
    schema_type(remote)["iconKey"] = "laptop-icon"

    assert diff_documents(local, remote) == []


def test_a_changed_attribute_type_is_reported_from_remote_to_local():
    local = laptops()
    schema_type(local)["attributes"][1]["type"] = "text"

    assert diff_documents(local, laptops()) == [
        "object type 'Laptop': attribute 'RAM GB' type integer → text"
    ]


def test_added_and_removed_attributes_are_reported():
    local = with_value_type("date")
    schema_type(local)["attributes"].pop(1)
    type_mapping(local)["attributesMapping"].pop(1)

    assert diff_documents(local, laptops()) == [
        "object type 'Laptop': attribute 'Value' added (date)",
        "object type 'Laptop': attribute 'RAM GB' removed",
        "mapping for 'Laptop': attribute 'Value' now mapped from value",
        "mapping for 'Laptop': attribute 'RAM GB' no longer mapped",
    ]


def test_changed_locators_identity_and_names_are_reported():
    local = laptops()
    type_mapping(local)["attributesMapping"][1]["attributeLocators"] = ["memory_gb"]
    type_mapping(local)["attributesMapping"][1]["externalIdPart"] = True
    schema_type(local)["name"] = "Notebook"
    type_mapping(local)["objectTypeName"] = "Notebook"

    assert diff_documents(local, laptops()) == [
        "object type 'Laptop' renamed to 'Notebook'",
        "mapping for 'Notebook': attribute 'RAM GB' locators ram → memory_gb",
        "mapping for 'Notebook': attribute 'RAM GB' is now part of the identity (externalIdPart)",
    ]


def test_added_and_removed_object_types_are_reported():
    local = nested_document()

    differences = diff_documents(local, laptops())

    assert "object type 'Hard drive' added" in differences
    assert "mapping for 'File' added (selector 'laptops.hardDrives.files')" in differences
    assert diff_documents(laptops(), local)[:2] == [
        "object type 'Hard drive' removed",
        "object type 'File' removed",
    ]


# --- table -----------------------------------------------------------------------------------


def test_the_table_has_one_row_per_mapped_attribute():
    assert mapping_table(laptops()) == [
        {
            "object_type": "Laptop",
            "selector": "laptops",
            "attribute": "Serial",
            "type": "text",
            "locators": "serial",
            "identity": True,
            "label": True,
            "reference": "",
        },
        {
            "object_type": "Laptop",
            "selector": "laptops",
            "attribute": "RAM GB",
            "type": "integer",
            "locators": "ram",
            "identity": False,
            "label": False,
            "reference": "",
        },
    ]


def test_the_table_names_a_reference_target_and_survives_an_invalid_document():
    document = with_value_type("referenced_object")
    type_mapping(document)["attributesMapping"][1]["attributeExternalId"] = "ghost"

    rows = mapping_table(document)

    assert rows[2]["reference"] == "Laptop"
    assert rows[1]["attribute"] == "RAM GB" and rows[1]["type"] == "?"


def test_a_mapping_edited_between_two_pages_applies_to_the_next_page():
    document = laptops()
    records = [{"serial": "A1", "ram": "16"}]
    assert transform_records(records, document).data == {"laptops": [{"serial": "A1", "ram": 16}]}

    ram = document["schema"]["objectSchema"]["objectTypes"][0]["attributes"][1]
    ram["type"] = "text"

    assert transform_records(records, document).data == {"laptops": [{"serial": "A1", "ram": "16"}]}


def test_identity_digests_tell_records_apart_by_their_identity_alone():
    from array import array

    document = laptops()

    def digests(*records) -> list[int]:
        stored = array("Q")
        stored.frombytes(identity_digests(transform_records(list(records), document), document))
        return stored.tolist()

    page = digests(
        {"serial": "A-1", "ram": 8},
        {"serial": "A-2", "ram": 8},
        {"serial": "A-1", "ram": 16},  # the same laptop, read again with another value
        {"serial": 1, "ram": 8},  # text "1" once coerced, like the record after it
        {"serial": "1", "ram": 8},
    )

    assert len(page) == 5 and page == sorted(page)  # in order, for bisection
    assert len(set(page)) == 3
    assert digests({"serial": "A-1"}) == digests({"serial": "A-1", "ram": 4})
    assert digests({"serial": "A-1"}) != digests({"serial": "A-2"})


def test_no_identity_digests_when_no_top_level_selector_has_an_identity():
    document = laptops()
    document["mapping"]["objectTypeMappings"][0]["selector"] = "rack.laptops"
    result = transform_records([{"laptops": [{"serial": "A-1"}]}], document)

    assert result.record_count == 1
    assert identity_digests(result, document) == b""


def test_a_record_the_transform_sends_always_makes_a_json_body():
    from importer.json_codec import encode

    document = laptops()
    records = [
        {"serial": 89014103211118510720, "ram": 2**62},
        {"serial": "Zo\u00eb \ud800", "ram": 16.0},
        {"serial": 2.5, "ram": "8"},
        {"serial": True, "ram": " 4 "},
    ]

    result = transform_records(records, document)

    assert result.record_count == 4
    assert json.loads(encode({"data": result.data})) == {
        "data": {
            "laptops": [
                {"serial": "89014103211118510720", "ram": 2**62},
                {"serial": "Zo\u00eb \ud800", "ram": 16},
                {"serial": "2.5", "ram": 8},
                {"serial": "true", "ram": 4},
            ]
        }
    }
