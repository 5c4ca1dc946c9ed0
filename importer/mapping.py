"""The schema-and-mapping document: checking it, turning records into chunks, drafting, comparing.

Assets answers a bad mapping or a badly typed value late (at PUT, or while PROCESSING, long after
the chunk left). Everything here runs locally first so the user sees the problem with a JSON path,
or the record and field, before anything is sent.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

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
# Fields that name a record in messages when its identity locators have no value.
ID_LIKE_FIELDS = ("id", "name", "serial", "hostname", "key")


@dataclass(frozen=True)
class MappingProblem:
    path: str  # JSON path into the document, e.g. mapping.objectTypeMappings[0].selector
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


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


# --- reading the document --------------------------------------------------------------------


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _given(data: dict, key: str) -> bool:
    """A key counts as given when it holds something: `"externalId": ""` is no externalId."""
    return data.get(key) not in (None, "")


@dataclass(eq=False)
class _Type:
    """One object type of the schema, with where it sits in the document."""

    path: str
    data: dict
    parent: _Type | None

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
class _Index:
    """The schema's object types, found by externalId or (in documents without ids) by name."""

    types: list[_Type]
    uses_ids: bool
    by_id: dict[str, _Type] = field(default_factory=dict)
    by_name: dict[str, _Type] = field(default_factory=dict)

    def type_for(self, type_mapping: dict) -> _Type | None:
        if self.uses_ids:
            return _find(self.by_id, type_mapping.get("objectTypeExternalId"))
        return _find(self.by_name, type_mapping.get("objectTypeName"))

    def attribute_for(self, object_type: _Type | None, attribute_mapping: dict) -> dict | None:
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

    def reference_target(self, attribute: dict) -> _Type | None:
        if _given(attribute, "referenceObjectTypeExternalId"):
            return _find(self.by_id, attribute["referenceObjectTypeExternalId"])
        return _find(self.by_name, attribute.get("referenceObjectTypeName"))


def _find(types: dict[str, _Type], key: Any) -> _Type | None:
    return types.get(key) if isinstance(key, str) else None


def _object_schema(document: Any) -> dict:
    schema = document.get("schema") if isinstance(document, dict) else None
    object_schema = schema.get("objectSchema") if isinstance(schema, dict) else None
    return object_schema if isinstance(object_schema, dict) else {}


def _type_mappings(document: Any) -> list[tuple[str, dict]]:
    mapping = document.get("mapping") if isinstance(document, dict) else None
    mappings = mapping.get("objectTypeMappings") if isinstance(mapping, dict) else None
    if not isinstance(mappings, list):
        return []
    return [
        (f"mapping.objectTypeMappings[{position}]", type_mapping)
        for position, type_mapping in enumerate(mappings)
        if isinstance(type_mapping, dict)
    ]


def _attribute_mappings(type_mapping: dict, path: str) -> list[tuple[str, dict]]:
    attribute_mappings = type_mapping.get("attributesMapping")
    if not isinstance(attribute_mappings, list):
        return []
    return [
        (f"{path}.attributesMapping[{position}]", attribute_mapping)
        for position, attribute_mapping in enumerate(attribute_mappings)
        if isinstance(attribute_mapping, dict)
    ]


def _walk_types(
    types: Any, path: str, parent: _Type | None, on_bad: Callable[[str, str], None]
) -> Iterator[_Type]:
    if not isinstance(types, list):
        if types is not None and parent is not None:
            on_bad(path, "must be a list of object types")
        return
    for position, data in enumerate(types):
        here = f"{path}[{position}]"
        if not isinstance(data, dict):
            on_bad(here, "must be an object")
            continue
        object_type = _Type(here, data, parent)
        yield object_type
        yield from _walk_types(data.get("children"), f"{here}.children", object_type, on_bad)


def _index(
    document: Any, on_bad: Callable[[str, str], None] = lambda path, message: None
) -> _Index:
    """Index a document leniently: anything malformed is left out (validation reports it)."""
    object_schema = _object_schema(document)
    types = list(
        _walk_types(
            object_schema.get("objectTypes"), "schema.objectSchema.objectTypes", None, on_bad
        )
    )
    uses_ids = any(
        _given(object_type.data, "externalId")
        or any(_given(attribute, "externalId") for _, attribute in object_type.own_attributes())
        for object_type in types
    )
    index = _Index(types, uses_ids)
    for object_type in types:
        if object_type.external_id:
            index.by_id.setdefault(object_type.external_id, object_type)
        if object_type.name:
            index.by_name.setdefault(object_type.name, object_type)
    return index


# --- validation ------------------------------------------------------------------------------


def validate_document(document: Any) -> list[MappingProblem]:
    """Problems in a schema-and-mapping document, each pointing at its JSON path."""
    if not isinstance(document, dict):
        return [MappingProblem("$", "the document must be a JSON object")]
    checker = _Checker()
    index = checker.check_schema(document)
    checker.check_mappings(document, index)
    return checker.problems


class _Checker:
    def __init__(self) -> None:
        self.problems: list[MappingProblem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(MappingProblem(path, message))

    def check_schema(self, document: dict) -> _Index:
        schema = document.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("objectSchema"), dict):
            self.add("schema.objectSchema", "is required and must be an object")
            return _Index([], uses_ids=False)
        object_schema = schema["objectSchema"]
        if not _is_text(object_schema.get("name")):
            self.add("schema.objectSchema.name", "is required")
        object_types = object_schema.get("objectTypes")
        if not isinstance(object_types, list) or not object_types:
            self.add("schema.objectSchema.objectTypes", "must list at least one object type")
        index = _index(document, on_bad=self.add)

        with_ids: list[str] = []
        without_ids: list[str] = []
        first_use: dict[str, str] = {}  # externalId -> where it was first given
        type_names: dict[str, str] = {}

        def note_external_id(data: dict, path: str) -> None:
            if not _given(data, "externalId"):
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
            if not _is_text(object_type.data.get("name")):
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
        return index

    def _check_attributes(self, object_type: _Type, index: _Index) -> None:
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
            if not _is_text(name):
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

    def _check_attribute(self, attribute: dict, here: str, index: _Index) -> None:
        kind = attribute.get("type")
        if not _is_text(kind):
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
        if kind != "referenced_object":
            return
        key = "referenceObjectTypeExternalId" if index.uses_ids else "referenceObjectTypeName"
        target = attribute.get(key)
        if not _is_text(target):
            self.add(f"{here}.{key}", "is required: it names the object type referred to")
        elif index.reference_target(attribute) is None:
            self.add(f"{here}.{key}", f"'{target}' is not an object type of the schema")

    def _check_cardinality(self, attribute: dict, here: str) -> None:
        def whole(key: str) -> int | None:
            value = attribute.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        low, high = whole("minimumCardinality"), whole("maximumCardinality")
        if "minimumCardinality" in attribute and (low is None or low < 0):
            self.add(f"{here}.minimumCardinality", "must be a whole number, 0 or more")
        if "maximumCardinality" in attribute and (high is None or high == 0 or high < -1):
            self.add(f"{here}.maximumCardinality", "must be a whole number, 1 or more (-1: any)")
        elif low is not None and high is not None and high != -1 and high < low:
            self.add(f"{here}.maximumCardinality", f"is below minimumCardinality ({low})")

    def check_mappings(self, document: dict, index: _Index) -> None:
        mapping = document.get("mapping")
        mappings = mapping.get("objectTypeMappings") if isinstance(mapping, dict) else None
        if not isinstance(mappings, list) or not mappings:
            self.add("mapping.objectTypeMappings", "must list at least one object type mapping")
            return
        for position, type_mapping in enumerate(mappings):
            here = f"mapping.objectTypeMappings[{position}]"
            if not isinstance(type_mapping, dict):
                self.add(here, "must be an object")
                continue
            self._check_selector(type_mapping.get("selector"), f"{here}.selector")
            object_type = self._mapped_type(type_mapping, here, index)
            self._check_attribute_mappings(type_mapping, here, object_type, index)

    def _check_selector(self, selector: Any, path: str) -> None:
        if not _is_text(selector):
            self.add(path, "is required")
        elif any(not part.strip() for part in selector.split(".")):
            self.add(
                path,
                f"'{selector}' must be field names joined by dots, "
                "like 'computers' or 'hardDrives.files'",
            )

    def _mapped_type(self, type_mapping: dict, here: str, index: _Index) -> _Type | None:
        if not index.types:
            return None  # the schema is broken; that problem is already reported
        type_id, type_name = (
            type_mapping.get("objectTypeExternalId"),
            type_mapping.get("objectTypeName"),
        )
        if not index.uses_ids:
            if _given(type_mapping, "objectTypeExternalId"):
                self.add(
                    f"{here}.objectTypeExternalId",
                    "the schema has no externalIds (all or nothing): name the object type "
                    "with objectTypeName",
                )
            if not _is_text(type_name):
                self.add(f"{here}.objectTypeName", "is required")
                return None
            object_type = index.type_for(type_mapping)
            if object_type is None:
                self.add(
                    f"{here}.objectTypeName", f"'{type_name}' is not an object type of the schema"
                )
            return object_type
        if not _is_text(type_id):
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
        self, type_mapping: dict, here: str, object_type: _Type | None, index: _Index
    ) -> None:
        attribute_mappings = type_mapping.get("attributesMapping")
        if not isinstance(attribute_mappings, list) or not attribute_mappings:
            self.add(f"{here}.attributesMapping", "must map at least one attribute")
            return
        id_parts = 0
        mapped: dict[int, str] = {}  # id(attribute) -> where it was first mapped
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
            locators = attribute_mapping.get("attributeLocators")
            if (
                not isinstance(locators, list)
                or not locators
                or not all(_is_text(locator) for locator in locators)
            ):
                self.add(f"{at}.attributeLocators", "must list at least one field name")
            part = attribute_mapping.get("externalIdPart")
            if part is not None and not isinstance(part, bool):
                self.add(f"{at}.externalIdPart", "must be true or false")
            iql = attribute_mapping.get("objectMappingIQL")
            if iql is not None and not isinstance(iql, str):
                self.add(f"{at}.objectMappingIQL", "must be a string (AQL)")
            id_parts += part is True
        if not id_parts:
            self.add(
                f"{here}.attributesMapping",
                "needs at least one attribute with externalIdPart: true (the record's identity)",
            )

    def _mapped_attribute(
        self, attribute_mapping: dict, at: str, object_type: _Type | None, index: _Index
    ) -> dict | None:
        if not index.types:
            return None  # the schema is broken; that problem is already reported
        attribute_id = attribute_mapping.get("attributeExternalId")
        attribute_name = attribute_mapping.get("attributeName")
        if not index.uses_ids:
            if _given(attribute_mapping, "attributeExternalId"):
                self.add(
                    f"{at}.attributeExternalId",
                    "the schema has no externalIds (all or nothing): name the attribute "
                    "with attributeName",
                )
            if not _is_text(attribute_name):
                self.add(f"{at}.attributeName", "is required")
                return None
        elif not _is_text(attribute_id):
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
            and _is_text(attribute.get("name"))
            and attribute_name != attribute.get("name")
        ):
            self.add(
                f"{at}.attributeName",
                f"is '{attribute_name}' but attribute '{attribute_id}' is named "
                f"'{attribute.get('name')}'",
            )
        return attribute


# --- coercion --------------------------------------------------------------------------------


class _Unfit(Exception):
    """A value that cannot become the attribute's type."""


_ABSENT: Any = object()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}
_INT64 = 2**63


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple | set):
        raise _Unfit
    return str(value)


def _as_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _Unfit
    if isinstance(value, int):
        result = value
    elif isinstance(value, float | Decimal | str):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise _Unfit
        # The exponent bound keeps "1e999999" from building a million-digit int.
        if not number.is_finite() or number.adjusted() > 20 or number != number.to_integral():
            raise _Unfit
        result = int(number)
    else:
        raise _Unfit
    if not -_INT64 <= result < _INT64:
        raise _Unfit
    return result


def _as_double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _Unfit
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise _Unfit
    if not math.isfinite(number):
        raise _Unfit
    return number


def _as_boolean(value: Any) -> bool:
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
    raise _Unfit


def _as_date(value: Any) -> str:
    """An ISO date; a date-time keeps its own calendar date (no shift to UTC)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise _Unfit
    text = value.strip()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        raise _Unfit


def _as_date_time(value: Any) -> str:
    """ISO-8601 with its offset; a naive value goes as given, since its zone is unknown here."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if not isinstance(value, str):
        raise _Unfit
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Unfit
    return moment.isoformat() if moment.tzinfo is not None else text


def _as_time(value: Any) -> str:
    if isinstance(value, time):
        return value.isoformat()
    if not isinstance(value, str):
        raise _Unfit
    try:
        return time.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise _Unfit


def _as_email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise _Unfit
    return value.strip()


def _as_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unfit
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise _Unfit
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _Unfit
    if any(character.isspace() for character in text):
        raise _Unfit
    return text


def _as_ipaddress(value: Any) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if not isinstance(value, str):
        raise _Unfit
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        raise _Unfit
    return value.strip()


def _as_given(value: Any) -> Any:
    return value


# type -> (coercer, what the user must give, how specific: lower wins when types share a field)
_COERCERS: dict[str | None, tuple[Callable[[Any], Any], str, int]] = {
    "integer": (_as_integer, "a whole number (integer)", 0),
    "double": (_as_double, "a number (double)", 0),
    "boolean": (_as_boolean, "true/false, yes/no or 1/0 (boolean)", 0),
    "date": (_as_date, "an ISO date like 2024-05-31 (date)", 0),
    "date_time": (_as_date_time, "an ISO-8601 date and time (date_time)", 0),
    "time": (_as_time, "a time like 14:30 (time)", 0),
    "email": (_as_email, "an email address (email)", 0),
    "url": (_as_url, "an http or https URL (url)", 0),
    "ipaddress": (_as_ipaddress, "an IPv4 or IPv6 address (ipaddress)", 0),
    "text": (_as_text, "text (text)", 1),
    "textarea": (_as_text, "text (textarea)", 1),
    "select": (_as_text, "text (select)", 1),
    "status": (_as_text, "a status name (status)", 1),
    "referenced_object": (_as_text, "text that finds the referenced object", 1),
    None: (_as_given, "any value", 2),
}


@dataclass(frozen=True)
class _Target:
    """One attribute a field feeds."""

    attribute: str
    type: str | None  # None when the document does not say (an invalid document)
    many: bool  # maximumCardinality other than 1: a list of values is fine


# A field's targets with their coercers looked up once per mapping, not once per value.
_Coercions = tuple[tuple[Callable[[Any], Any], str, _Target], ...]


def _coercions(targets: list[_Target]) -> _Coercions:
    found = []
    for target in targets:
        coercer, expected, _ = _COERCERS.get(target.type, _COERCERS[None])
        found.append((coercer, expected, target))
    return tuple(found)


def _coerce(value: Any, coercions: _Coercions) -> Any:
    """The value to send, or _ABSENT; raises _Unfit with the target it failed."""
    if _is_missing(value):
        return _ABSENT
    if isinstance(value, list | tuple):
        single = next((target for _, _, target in coercions if not target.many), None)
        if single is not None:
            raise _Unfit(single, "one value (not a list)")
        items = [_coerce_one(item, coercions) for item in value if not _is_missing(item)]
        return items or _ABSENT
    return _coerce_one(value, coercions)


def _coerce_one(value: Any, coercions: _Coercions) -> Any:
    if len(coercions) == 1:  # the usual case: one attribute per field
        coercer, expected, target = coercions[0]
        try:
            return coercer(value)
        except _Unfit:
            raise _Unfit(target, expected) from None
    result = _ABSENT
    for coercer, expected, target in coercions:  # most specific first: its result is sent
        try:
            coerced = coercer(value)
        except _Unfit:
            raise _Unfit(target, expected) from None
        if result is _ABSENT:
            result = coerced
    return result


# --- transform -------------------------------------------------------------------------------


@dataclass
class _Level:
    """What one selector (or one step of a dotted selector) reads from each of its records."""

    selector: str
    fields: dict[str, list[_Target]] = field(default_factory=dict)
    identity: list[str] = field(default_factory=list)
    children: dict[str, _Level] = field(default_factory=dict)
    coercions: dict[str, _Coercions] = field(default_factory=dict)


@dataclass
class TransformResult:
    data: dict[str, list[dict]]
    record_count: int
    skipped: list[str]  # one reason per record left out


def _compile(document: Any) -> dict[str, _Level]:
    index = _index(document)
    levels: dict[str, _Level] = {}
    for path, type_mapping in _type_mappings(document):
        selector = type_mapping.get("selector")
        if not _is_text(selector):
            continue
        parts = selector.split(".")
        level = levels.setdefault(parts[0], _Level(parts[0]))
        for depth in range(1, len(parts)):
            level = level.children.setdefault(parts[depth], _Level(".".join(parts[: depth + 1])))
        object_type = index.type_for(type_mapping)
        for _, attribute_mapping in _attribute_mappings(type_mapping, path):
            attribute = index.attribute_for(object_type, attribute_mapping) or {}
            kind = attribute.get("type") if attribute.get("type") in ATTRIBUTE_TYPES else None
            target = _Target(
                attribute=str(
                    attribute.get("name") or attribute_mapping.get("attributeName") or "?"
                ),
                type=kind,
                # An attribute this code cannot see takes whatever the record holds.
                many=kind is None or attribute.get("maximumCardinality", 1) != 1,
            )
            locators = attribute_mapping.get("attributeLocators")
            for locator in locators if isinstance(locators, list) else []:
                if not _is_text(locator):
                    continue
                level.fields.setdefault(locator, []).append(target)
                if attribute_mapping.get("externalIdPart") is True and (
                    locator not in level.identity
                ):
                    level.identity.append(locator)
    for level in _all_levels(levels.values()):
        for targets in level.fields.values():
            targets.sort(key=lambda target: _COERCERS.get(target.type, _COERCERS[None])[2])
        level.coercions = {name: _coercions(targets) for name, targets in level.fields.items()}
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
            coerced = _coerce(value, coercions)
        except _Unfit as error:
            target, expected = error.args
            problems.append(
                f"field '{at}{locator}' is {_show(value)}, expected {expected} "
                f"for attribute '{target.attribute}'"
            )
            unfit.add(locator)
            continue
        if coerced is not _ABSENT:
            picked[locator] = coerced
    for locator in level.identity:
        if locator not in picked and locator not in unfit:
            missing.append(
                f"no value for '{at}{locator}', which identifies the object "
                f"in selector '{level.selector}'"
            )
    for key, child in level.children.items():
        items = record.get(key)
        if _is_missing(items):
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
        if not _is_missing(value) and not isinstance(value, dict | list):
            return f"{key}={str(value)[:60]}"
    return "no id"


# --- drafting a mapping from sample records --------------------------------------------------

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
    if not _is_text(name) or not _is_text(selector):
        raise ValueError("A draft needs a name and a selector.")
    sample = [record for record in records if isinstance(record, dict)]
    fields: dict[str, list[Any]] = {}
    nested: set[str] = set()
    for record in sample:
        for key, value in record.items():
            if not isinstance(key, str) or not key.strip():
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
            key=lambda key: sum(not _is_missing(value) for value in scalar_fields[key]),
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
        present = [value for value in fields[key] if not _is_missing(value)]
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
        ("date", _as_date, _DATE),
        ("date_time", _as_date_time, _DATE_TIME),
        ("email", _as_email, None),
        ("url", _as_url, None),
        ("ipaddress", _as_ipaddress, None),
    )
    for kind, coercer, pattern in checks:
        if pattern is not None and not pattern.match(text):
            continue
        try:
            coercer(text)
        except _Unfit:
            continue
        return kind
    return "text"


def _infer_type(values: list[Any]) -> str:
    kinds = {_value_kind(value) for value in values if not _is_missing(value)}
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


# --- comparing two documents -----------------------------------------------------------------


def diff_documents(local: Any, remote: Any) -> list[str]:
    """What pushing `local` would change in `remote` (the document Assets has), one line each.

    Types, attributes and mappings are matched by externalId when both documents have them,
    else by name, so the ids Assets adds to a document sent without any are not differences.
    Fields a document may leave out are compared with their defaults; descriptions and icons
    only when `local` gives them. Empty when the two are equivalent.
    """
    local_index, remote_index = _index(local), _index(remote)
    by_ids = local_index.uses_ids and remote_index.uses_ids
    lines: list[str] = []
    local_schema, remote_schema = _object_schema(local), _object_schema(remote)
    if local_schema.get("name") != remote_schema.get("name"):
        lines.append(
            f"schema name {_quoted(remote_schema.get('name'))} → "
            f"{_quoted(local_schema.get('name'))}"
        )
    if "description" in local_schema and (local_schema.get("description") or "") != (
        remote_schema.get("description") or ""
    ):
        lines.append("schema description changed")

    def type_key(object_type: _Type | None) -> str | None:
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
    mine: _Type,
    theirs: _Type,
    by_ids: bool,
    type_key: Callable[[_Type | None], str | None],
    local_index: _Index,
    remote_index: _Index,
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
    label: str, mine: dict, theirs: dict, by_ids: bool, local_index: _Index, remote_index: _Index
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
    local: Any, remote: Any, local_index: _Index, remote_index: _Index, by_ids: bool
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
    document: Any, index: _Index, by_ids: bool
) -> dict[str, tuple[str, dict, str]]:
    """Type mappings by the key of their object type: (path, mapping, name to show)."""
    found: dict[str, tuple[str, dict, str]] = {}
    for path, type_mapping in _type_mappings(document):
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
    type_mapping: dict, path: str, index: _Index, by_ids: bool
) -> dict[str, tuple[dict, str]]:
    """Attribute mappings by the key of their attribute: (mapping, name to show)."""
    object_type = index.type_for(type_mapping)
    found = {}
    for _, attribute_mapping in _attribute_mappings(type_mapping, path):
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


# --- a table for people ----------------------------------------------------------------------


def mapping_table(document: Any) -> list[dict]:
    """One row per mapped attribute, for a readable view of the mapping in the admin.

    Keys: object_type, selector, attribute, type, locators, identity, label, reference. Works
    on an invalid document too (unknown parts show as "?"), so staff can see what is wrong.
    """
    index = _index(document)
    rows = []
    for path, type_mapping in _type_mappings(document):
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
        for _, attribute_mapping in _attribute_mappings(type_mapping, path):
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
