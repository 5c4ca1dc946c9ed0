"""Secrets a sources file names instead of holding: `{"$env": "ASSETS_SYNC_..."}` or
`{"$file": "PATH"}`.

A file kept in version control, or handed from one team to another, then carries no secret:
`import_sources` puts in the value of an environment variable of its own process, or the
contents of a file on its host (a Docker or Kubernetes secret), before the file is read.

What a reference may reach is bounded, as the file's author may not be the host's: only
variables named ASSETS_SYNC_... (never the app's own DATABASE_URL or SECRET_KEY, which a
header would otherwise carry to the author's server), and only files in SECRET_FILES_DIR.
And a reference is taken only where its value stays a secret once stored (masked on the
source's page, left out of exports): the Assets token, the source's secret, a header that is
not a public one, a parameter that is credential-named or declared secret, a credential-named
plug-in option, a channel's webhook URL and secret header. Errors name the place and the
variable or the path, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from importer.redaction import PUBLIC_HEADERS, is_secret_name, secret_param_names, secret_paths

REFERENCE_KEYS = ("$env", "$file")
ENV_PREFIX = "ASSETS_SYNC_"
ENV_NAME = re.compile(rf"{ENV_PREFIX}[A-Za-z0-9_]+")
# A secret file is a token, a password or a certificate: anything bigger is the wrong file.
MAX_SECRET_FILE_BYTES = 64 * 1024
# The Assets document goes to Assets as written: a reference there would be sent as one.
NOT_RESOLVED_IN = ("mapping",)
ENTRY_KINDS = {"sources": "source", "notification_channels": "channel"}
SOURCE_SECRET_NAMES = ("token", "password", "key", "client_secret")


class UnresolvedReference(Exception):
    """A reference that gives no value; the message names it, never a value."""


def resolve_references(
    document: Any, *, environ: Mapping[str, str], secret_files_dir: Path
) -> tuple[Any, list[str]]:
    """The document with every reference replaced by its value, and what could not be
    resolved (one line each, with its place: `source 2 (laptops): assets.token: ...`)."""
    errors: list[str] = []
    reader = _Reader(environ, Path(secret_files_dir), errors)
    if isinstance(document, list):  # a file of sources only
        return [reader.entry(entry, i, "source") for i, entry in enumerate(document)], errors
    if not isinstance(document, dict):
        return document, errors
    resolved = dict(document)
    for key, kind in ENTRY_KINDS.items():
        if isinstance(document.get(key), list):
            resolved[key] = [
                reader.entry(entry, position, kind) for position, entry in enumerate(document[key])
            ]
    return resolved, errors


class _Reader:
    def __init__(self, environ: Mapping[str, str], folder: Path, errors: list[str]) -> None:
        self.environ = environ
        self.folder = folder
        self.errors = errors

    def entry(self, entry: Any, position: int, kind: str) -> Any:
        if not isinstance(entry, dict):
            return entry
        name = entry.get("name")
        where = f"{kind} {position + 1}" + (f" ({name})" if isinstance(name, str) else "")
        declared = secret_param_names(_at(entry, ("source", "secret_params")))
        return {
            key: value
            if key in NOT_RESOLVED_IN
            else self.value(value, (key,), where, kind, declared)
            for key, value in entry.items()
        }

    def value(self, value: Any, path: tuple, where: str, kind: str, declared) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and next(iter(value)) in REFERENCE_KEYS:
                try:
                    if not _keeps_a_secret(kind, path, declared):
                        raise UnresolvedReference(
                            "a value given by reference must be a secret, and this one would "
                            "be shown and exported as it is: give it here, or name it secret "
                            "(a parameter in source.secret_params)"
                        )
                    return self.look_up(*next(iter(value.items())))
                except UnresolvedReference as error:
                    self.errors.append(f"{where}: {'.'.join(map(str, path))}: {error}")
                    return value
            return {
                key: self.value(item, (*path, key), where, kind, declared)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                self.value(item, (*path, index), where, kind, declared)
                for index, item in enumerate(value)
            ]
        return value

    def look_up(self, kind: str, named: Any) -> str:
        if kind == "$env":
            if not isinstance(named, str) or not ENV_NAME.fullmatch(named):
                raise UnresolvedReference(
                    f'"$env" must name an environment variable that starts with {ENV_PREFIX} '
                    "(letters, digits, _)"
                )
            if named not in self.environ:
                raise UnresolvedReference(f"the environment variable {named} is not set")
            if not self.environ[named]:
                raise UnresolvedReference(f"the environment variable {named} is empty")
            return self.environ[named]
        if not isinstance(named, str) or not named:
            raise UnresolvedReference('"$file" must be the path of a file holding the secret')
        return self._read_file(named)

    def _read_file(self, named: str) -> str:
        folder = self.folder.resolve()
        path = (folder / named).resolve()  # a name alone is in the folder
        if not path.is_relative_to(folder):
            raise UnresolvedReference(
                f"{named} is not in SECRET_FILES_DIR ({folder}): secret files are read there only"
            )
        try:
            if path.stat().st_size > MAX_SECRET_FILE_BYTES:
                raise UnresolvedReference(
                    f"{named} is larger than {MAX_SECRET_FILE_BYTES // 1024} KB: not a "
                    "secret's file"
                )
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UnresolvedReference(f"no file {named} in {folder}") from None
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


def _keeps_a_secret(kind: str, path: tuple, declared: frozenset[str]) -> bool:
    """Whether the value at `path` of an entry is kept as a secret once stored."""
    if kind == "channel":
        return path in (("webhook", "url"), ("webhook", "header_value"))
    if path in (("assets", "token"),) or (
        len(path) == 3 and path[:2] == ("source", "auth") and path[2] in SOURCE_SECRET_NAMES
    ):
        return True
    if len(path) == 3 and path[:2] == ("source", "headers"):
        return str(path[2]).lower() not in PUBLIC_HEADERS
    if len(path) == 3 and path[:2] == ("source", "params"):
        return is_secret_name(path[2], declared)
    if len(path) >= 3 and path[:2] == ("source", "options"):
        return is_secret_name(path[-1])
    if len(path) >= 3 and path[:2] == ("source", "body"):
        return is_secret_name(path[-1], declared)
    if len(path) >= 4 and path[:3] == ("source", "pagination", "after_first_page"):
        return bool(secret_paths("after_first_page", {path[3]: ""}, declared))
    return False


def _at(entry: dict, path: tuple) -> Any:
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry if isinstance(entry, str) else None
