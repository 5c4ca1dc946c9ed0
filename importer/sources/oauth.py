"""OAuth2 client credentials: an access token per token endpoint, client, secret and scope,
asked for once and shared by every reader in the process until shortly before it expires."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import requests
from django.utils.crypto import salted_hmac

from importer.deadline import discard, mount_deadline_adapter
from importer.redaction import remember_secrets
from importer.remote import retry_after_of, worth_retrying
from importer.sources.urls import public_url

if TYPE_CHECKING:
    from importer.sources.transport import SourceHttp

# A cached OAuth2 token is dropped this long before the provider says it expires.
TOKEN_EXPIRY_MARGIN_SECONDS = 30.0
# Providers that omit `expires_in` still get their token reused, for this long.
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0

# OAuth2 access tokens, per process: (token_url, client_id, secret's digest, scope) ->
# (token, monotonic expiry).
_tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached OAuth2 token (tests, and operators rotating a client secret)."""
    with _tokens_lock:
        _tokens.clear()


def _key(source) -> tuple[str, str, str, str]:
    """The client secret is part of it: a source with a wrong or revoked secret must not
    read with the token another source's right one got, and a new secret is tried at once."""
    secret = salted_hmac("oauth-token-cache", source.source_token or "").hexdigest()
    return (source.oauth_token_url, source.auth_username, secret, source.oauth_scope)


def access_token(http: SourceHttp) -> str:
    """The source's access token: the cached one, or a new one asked for now."""
    with _tokens_lock:
        cached = _tokens.get(_key(http.source))
    if cached and cached[1] > time.monotonic():
        return cached[0]
    token, lifetime = _request_token(http)
    remember_secrets([token])  # a library's log line may name a URL that carries it
    expires = time.monotonic() + max(lifetime - TOKEN_EXPIRY_MARGIN_SECONDS, 0.0)
    with _tokens_lock:
        _tokens[_key(http.source)] = (token, expires)
    return token


def drop_token(source, token: str) -> None:
    """Forget `token`, unless another thread has already replaced it with a fresh one."""
    with _tokens_lock:
        cached = _tokens.get(_key(source))
        if cached and cached[0] == token:
            del _tokens[_key(source)]


def _request_token(http: SourceHttp) -> tuple[str, float]:
    """A new access token and its lifetime in seconds, from the client-credentials grant."""
    source = http.source
    form = {
        "grant_type": "client_credentials",
        "client_id": source.auth_username,
        "client_secret": source.source_token,
    }
    if source.oauth_scope:
        form["scope"] = source.oauth_scope
    # Not the source's session: its extra headers are meant for the source, not the IdP.
    with mount_deadline_adapter(requests.Session()) as client:
        response = http._call(
            "POST",
            source.oauth_token_url,
            what="a token answer",
            client=client,
            data=form,
            headers={"Accept": "application/json"},
            verify=http.verify,
            stream=True,
            # A redirect would carry the client secret to wherever it points (307/308 re-post).
            allow_redirects=False,
        )
    where = f"OAuth2 token endpoint {public_url(source.oauth_token_url)}"
    if response.is_redirect:
        status = response.status_code
        target = urljoin(source.oauth_token_url, response.headers.get("Location", ""))
        discard(response, http.deadline)
        raise http.error(
            f"could not get an access token: the {where} answered {status} with a redirect "
            f"to {public_url(target)}; the client secret is never sent after a redirect: "
            "set the token URL to the address that answers",
            status=status,
            kind="auth",
        )
    if not response.ok:
        status = response.status_code
        discard(response, http.deadline)
        refused = status in (400, 401, 403)
        raise http.error(
            f"could not get an access token: the {where} answered {status} {response.reason}"
            + ("; check the client id, client secret and scope" if refused else ""),
            permanent=not worth_retrying(status),
            status=status,
            retry_after=retry_after_of(response),
            kind="auth" if refused else "server_error",
        )
    body = bytearray()
    for piece in http.iter_body(response, limit=1024 * 1024, what="a token answer"):
        body += piece
    try:
        answer = json.loads(body)
        token = answer["access_token"]
        lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_SECONDS)
    except (ValueError, TypeError, KeyError):
        raise http.error(
            f"could not get an access token: the {where} answered without a usable access_token",
            kind="auth",
        ) from None
    if not isinstance(token, str) or not token:
        raise http.error(f"could not get an access token from the {where}", kind="auth")
    return token, lifetime
