"""The shape of one entry in a sources file: every key known, every value of the right type.

Checked before the admin's form sees the values, so a file with `"assets": "x"`, a list where a
URL belongs, or absurd nesting gets a clear error naming the place instead of a traceback or a
value silently turned into text.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from importer.fields import holds_json
from importer.json_codec import kind_of
from importer.models import ImportSource

# Deeper than this is no configuration anyone writes (a mapping document needs about 8 levels).
MAX_DEPTH = 64
_SCALARS = (str, int, float, bool)


def shape_problems(
    entry: Any,
    field_paths: list[tuple[tuple[str, ...], str]],
    extra_paths: dict[tuple[str, ...], str],
    *,
    model: type[models.Model] = ImportSource,
    noun: str = "source",
) -> list[str]:
    """What is wrong with the shape of `entry`, each problem as "path: what".

    `field_paths` are the settings stored on the `model` (path in the file -> model field),
    `extra_paths` the other leaves the file may hold (path -> "string", "object or null",
    "list of strings").
    """
    deep = _too_deep(entry)
    if deep is not None:
        where = deep if len(deep) <= 60 else deep[:60] + "..."
        return [f"{where}: nested more than {MAX_DEPTH} levels deep"]
    if not isinstance(entry, dict):
        return [f"each {noun} must be an object, not {kind_of(entry)}"]
    expected: dict[tuple[str, ...], str] = dict(extra_paths)
    expected.update({path: field_name for path, field_name in field_paths})
    objects = {path[:depth] for path in expected for depth in range(1, len(path))}
    problems: list[str] = []
    _walk(entry, (), expected, objects, problems, model)
    return problems


def _walk(value: dict, at: tuple[str, ...], expected, objects, problems: list[str], model) -> None:
    for key, item in value.items():
        path = (*at, key)
        where = ".".join(path)
        if path in objects:
            if isinstance(item, dict):
                _walk(item, path, expected, objects, problems, model)
            elif expected.get(path) == "object or null":
                wrong = _wrong_type(item, "object or null")
                if wrong:
                    problems.append(f"{where}: {wrong}")
            else:
                problems.append(f"{where}: must be an object, not {kind_of(item)}")
        elif path in expected:
            wrong = _wrong_type(item, expected[path], model)
            if wrong:
                problems.append(f"{where}: {wrong}")
        else:
            problems.append(f"{where}: unknown setting (see the file format in README.md)")


def _wrong_type(value: Any, expected: str, model: type[models.Model] = ImportSource) -> str:
    """Why `value` does not fit `expected` (a field name of `model`, or a kind), or ""."""
    if expected in ("string", "string or null"):
        ok = isinstance(value, str) or (value is None and expected == "string or null")
        return "" if ok else f"must be a string, not {kind_of(value)}"
    if expected == "object or null":
        ok = value is None or isinstance(value, dict)
        return "" if ok else f"must be an object or null, not {kind_of(value)}"
    if expected == "list of strings":
        if not isinstance(value, list):
            return f"must be a list of strings, not {kind_of(value)}"
        bad = [item for item in value if not isinstance(item, str)]
        return f"must hold only strings, not {kind_of(bad[0])}" if bad else ""
    field = model._meta.get_field(expected)
    if value is None:
        return "" if field.null else "must not be null"
    if isinstance(field, models.BooleanField):
        ok = isinstance(value, bool)
        return "" if ok else f"must be true or false, not {kind_of(value)}"
    if isinstance(field, (models.IntegerField, models.PositiveIntegerField)):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return "" if ok else f"must be a whole number, not {kind_of(value)}"
    if isinstance(field, models.FloatField):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return "" if ok else f"must be a number, not {kind_of(value)}"
    if holds_json(field):
        if not isinstance(value, dict):
            return f"must be an object, not {kind_of(value)}"
        if expected == "extra_headers":
            bad = [name for name, item in value.items() if not isinstance(item, (str, int, float))]
            return f"the value of '{bad[0]}' must be a string" if bad else ""
        if expected == "extra_params":
            bad = [name for name, item in value.items() if not _is_param(item)]
            if bad:
                return f"the value of '{bad[0]}' must be a string, a number or a list of them"
        return ""
    return "" if isinstance(value, str) else f"must be a string, not {kind_of(value)}"


def _is_param(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, _SCALARS)


def _too_deep(value: Any) -> str | None:
    """The path of the first place nested deeper than MAX_DEPTH, or None (no recursion)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where
        if isinstance(item, dict):
            stack.extend(
                (child, f"{where}.{key}" if where else str(key), depth + 1)
                for key, child in item.items()
            )
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None
