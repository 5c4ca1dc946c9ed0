"""A source's secrets: what it holds that never leaves the app, and the values that look
like keys under names that do not say so.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote

from importer.redaction.masks import (
    query_items,
    secret_headers,
    secret_query_values,
    secret_values,
    userinfo_of,
)
from importer.redaction.names import (
    DECLARABLE_JSON_FIELDS,
    declared_secret_params,
    is_secret_name,
    key_shaped,
    looks_like_a_key,
    secret_paths,
)
from importer.redaction.text import redact


def redact_for(source: Any, text: str, *extra_secrets: str) -> str:
    """`text` without the secrets of `source` (an ImportSource, or None) or any credential."""
    known = hidden_from_messages(source) if source is not None else []
    return redact(text, [*known, *extra_secrets])


def hidden_from_messages(source: Any) -> list[str]:
    """What a message, a log line or a page never shows of a source: its secrets, and the
    values that look like keys under a name of the vendor's own. Those are not secrets
    elsewhere: a request keeps them, across a redirect too, for a look is no proof, and
    dropping a filter would read other records; the operator names such a key secret in the
    source's `secret_params`, and it is then a secret everywhere."""
    return [*secrets_of(source), *(value for _, value in _keys_under_vendor_names(source))]


def keys_under_undeclared_names(source: Any) -> list[str]:
    """The names of the source's query and extra parameters whose values look like keys,
    though neither their names nor the source's secret parameters say so: worth a word to
    the operator, who alone can tell a key from a filter (`region=eu-west-1`)."""
    return sorted({name for name, _ in _keys_under_vendor_names(source)})


def undeclared_keys_warning(source: Any) -> str:
    """What the operator is told of keys under names that say nothing ("" if none)."""
    names = keys_under_undeclared_names(source)
    if not names:
        return ""
    listed = ", ".join(f"'{name}'" for name in names)
    one = len(names) == 1
    return (
        (
            f"the query parameter {listed} holds what looks like a key; if it is one, name it"
            if one
            else f"the query parameters {listed} hold what look like keys; name those that are"
        )
        + " under the source's secret parameters (Connection): a secret parameter is masked "
        "in pages and exports, stored in no cursor, and never sent to another host on a "
        "redirect."
    )


def params_hidden_from_viewers(source: Any) -> frozenset[str]:
    """The query parameters a page that only shows a source masks: those named secret, and
    those whose values look like keys (a filter that looks like one is masked too; only
    those who edit the source need to read it)."""
    undeclared = (name.lower() for name in keys_under_undeclared_names(source))
    return declared_secret_params(source) | frozenset(undeclared)


def _keys_under_vendor_names(source: Any) -> list[tuple[str, str]]:
    """The source's query and extra parameters (name, value) that look like keys under a name
    of the vendor's own (OpenWeather's `?appid=`): only values written in key characters, so
    a date, a list of fields or a query (`install_status=1`) is no key, and no UUID."""
    pairs = [pair for url in _urls_of(source) for pair in query_items(url)]
    params = getattr(source, "extra_params", None)
    if isinstance(params, dict):
        pairs += [(str(name), value) for name, value in params.items() if isinstance(value, str)]
    declared = declared_secret_params(source)
    return [
        (name, value)
        for name, value in pairs
        if not is_secret_name(name, declared) and key_shaped(value)
    ]


def _urls_of(source: Any) -> list[str]:
    return [getattr(source, name, "") or "" for name in source.MASKED_URL_FIELDS]


def username_holds_a_key(source: Any) -> bool:
    """A user name that is the API key: Freshservice, BambooHR and Stripe take the key as
    the Basic user name and a placeholder password ("X"). Such a user name is a secret,
    shown masked and scrubbed like the password; so is one left behind by Basic
    authentication under an authentication that sends none (bearer, API key)."""
    username = getattr(source, "auth_username", "") or ""
    auth = getattr(source, "source_auth", "")
    if not username or auth == "oauth2_client_credentials":  # a client id is no secret
        return False
    if auth != "basic":
        return True
    password = getattr(source, "source_token", "") or ""
    return len(password) <= 1 or bool(_KEY_SHAPED_USER_NAME.fullmatch(username))


# A user name shaped like a key: long, of letters, digits, "-" and "_" with both letters and
# digits (no "@" or "." as e-mail addresses and "integration.user" have).
_KEY_SHAPED_USER_NAME = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_-]{24,}")


def secrets_of(source: Any) -> list[str]:
    """Every secret an ImportSource holds, as text that must never leave the app: the
    settings it names as secret or as possibly holding one, and its webtrigger token."""
    found = [getattr(source, name, "") for name in (*source.SECRET_FIELDS, "webtrigger_token")]
    declared = declared_secret_params(source)
    username, token = getattr(source, "auth_username", ""), getattr(source, "source_token", "")
    if token:
        found.append(base64.b64encode(f"{username}:{token}".encode()).decode())
    if username_holds_a_key(source):
        found.append(username)
    for url in (getattr(source, name, "") for name in source.MASKED_URL_FIELDS):
        userinfo = userinfo_of(url or "")
        if userinfo:
            user, _, password = (unquote(part) for part in userinfo.partition(":"))
            # As sent: the Basic credentials requests builds from them.
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
            found.extend([userinfo, user, password, credentials])
        found.extend(secret_query_values(url or "", declared))
    for name in source.MASKED_JSON_FIELDS:
        value = getattr(source, name, None)
        # A header of a vendor's own naming is scrubbed when its value looks like a key: a
        # word ("items", a tenant's name) would be blanked from every message.
        keys = [
            header for header in secret_headers(name, value) if looks_like_a_key(str(value[header]))
        ]
        if name in DECLARABLE_JSON_FIELDS:
            keys += declared
        keys += secret_paths(name, value, declared)
        found.extend(secret_values(value, also=keys))
    return [value for value in found if isinstance(value, str) and value]
