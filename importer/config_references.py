"""Secrets a sources file names instead of holding: `{"$env": "NAME"}` or `{"$file": "PATH"}`.

A file kept in version control, or handed from one team to another, then carries no secret:
`import_sources` puts in the value of an environment variable of its own process, or the
contents of a file on its host (a Docker or Kubernetes secret), before the file is read. Any
string of a source or a channel may be given so (the Assets token, the source's secret, a
header's or a parameter's value, a webhook URL); the Assets mapping document may not, as it is
sent to Assets as it is written. Errors name the place and the variable or the path, never a
value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REFERENCE_KEYS = ("$env", "$file")
# A secret file is a token, a password or a certificate: anything bigger is the wrong file.
MAX_SECRET_FILE_BYTES = 64 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The Assets document goes to Assets as written: a reference there would be sent as one.
NOT_RESOLVED_IN = ("mapping",)
ENTRY_KINDS = {"sources": "source", "notification_channels": "channel"}


class UnresolvedReference(Exception):
    """A reference that gives no value; the message names it, never a value."""


def resolve_references(document: Any, *, environ: Mapping[str, str]) -> tuple[Any, list[str]]:
    """The document with every reference replaced by its value, and what could not be
    resolved (one line each, with its place: `source 2 (laptops): assets.token: ...`)."""
    errors: list[str] = []
    if isinstance(document, list):  # a file of sources only
        return [_entry(e, i, "source", environ, errors) for i, e in enumerate(document)], errors
    if not isinstance(document, dict):
        return document, errors
    resolved = dict(document)
    for key, kind in ENTRY_KINDS.items():
        if isinstance(document.get(key), list):
            resolved[key] = [
                _entry(entry, position, kind, environ, errors)
                for position, entry in enumerate(document[key])
            ]
    return resolved, errors


def _entry(entry: Any, position: int, kind: str, environ, errors: list[str]) -> Any:
    if not isinstance(entry, dict):
        return entry
    name = entry.get("name")
    where = f"{kind} {position + 1}" + (f" ({name})" if isinstance(name, str) else "")
    return {
        key: value if key in NOT_RESOLVED_IN else _value(value, (key,), where, environ, errors)
        for key, value in entry.items()
    }


def _value(value: Any, path: tuple, where: str, environ, errors: list[str]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in REFERENCE_KEYS:
            ((kind, named),) = value.items()
            try:
                return _look_up(kind, named, environ)
            except UnresolvedReference as error:
                errors.append(f"{where}: {'.'.join(map(str, path))}: {error}")
                return value
        return {
            key: _value(item, (*path, key), where, environ, errors) for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _value(item, (*path, index), where, environ, errors) for index, item in enumerate(value)
        ]
    return value


def _look_up(kind: str, named: Any, environ: Mapping[str, str]) -> str:
    if kind == "$env":
        if not isinstance(named, str) or not ENV_NAME.fullmatch(named):
            raise UnresolvedReference(
                '"$env" must name an environment variable (letters, digits, _)'
            )
        if named not in environ:
            raise UnresolvedReference(f"the environment variable {named} is not set")
        if not environ[named]:
            raise UnresolvedReference(f"the environment variable {named} is empty")
        return environ[named]
    if not isinstance(named, str) or not named:
        raise UnresolvedReference('"$file" must be the path of a file holding the secret')
    path = Path(named).expanduser()
    try:
        if path.stat().st_size > MAX_SECRET_FILE_BYTES:
            raise UnresolvedReference(
                f"{named} is larger than {MAX_SECRET_FILE_BYTES // 1024} KB: not a secret's file"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnresolvedReference(f"no file {named}") from None
    except IsADirectoryError:
        raise UnresolvedReference(f"{named} is a directory, not a file") from None
    except PermissionError:
        raise UnresolvedReference(f"{named} cannot be read by this user") from None
    except UnicodeDecodeError:
        raise UnresolvedReference(f"{named} is not UTF-8 text") from None
    # `echo token > file` and most secret stores end the value with a line break.
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise UnresolvedReference(f"{named} is empty")
    return secret
