"""A source's credentials stay with its origin: redirects to another scheme, host or port.

Two fake sources on loopback, on different ports: the source the import is configured for,
which redirects, and another that records everything it receives.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from importer.sources import build_source
from tests import test_sources
from tests.fake_source import FakeSource
from tests.test_sources import SECRET, N, every_id, failure, ids, rest_source

# The fake sources of the connector tests, started and stopped the same way.
serve = test_sources.serve
fresh_caches = test_sources.fresh_caches

HEADER_SECRET = "tenant-s3cret-42"
AUTH_CASES: dict[str, dict[str, Any]] = {
    "bearer": {},
    "basic": {"auth_username": "svc"},
    "api_key_header": {"auth_key_name": "X-Api-Key"},
    "api_key_query": {"auth_key_name": "api_key"},
    "oauth2_client_credentials": {"auth_username": "client-1"},
}


def configured(origin: FakeSource, path: str, auth: str) -> Any:
    fields = dict(AUTH_CASES[auth])
    if auth == "oauth2_client_credentials":
        fields["oauth_token_url"] = f"{origin.base_url}/oauth/token"
    return rest_source(
        f"{origin.base_url}{path}",
        records_path="data.items",
        source_auth=auth,
        source_token=SECRET,
        extra_headers={"X-Tenant-Token": HEADER_SECRET, "Accept-Language": "en"},
        **fields,
    )


def credentials_received(server: FakeSource) -> list[str]:
    """Every header or query parameter of the server's requests that holds a credential."""
    found = []
    for request in server.requests:
        for name, value in request.headers.items():
            if name in ("authorization", "x-api-key", "x-tenant-token") or SECRET in value:
                found.append(f"header {name}")
        if "api_key" in request.query or SECRET in request.raw_path:
            found.append("query api_key")
    return found


@pytest.mark.parametrize("auth", AUTH_CASES)
def test_credentials_never_follow_a_redirect_to_another_port(serve, auth: str) -> None:
    origin = serve(auth="oauth2", username="client-1", secret=SECRET)  # it issues tokens
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (302, f"{elsewhere.base_url}/api/offset")

    page = build_source(configured(origin, "/api/moved", auth)).fetch_page("")

    assert ids(page.records) == every_id(5)  # the redirect was followed ...
    assert elsewhere.requests_to("/api/offset")
    assert credentials_received(elsewhere) == []  # ... without any credential


def test_credentials_in_the_query_never_follow_a_redirect_to_another_port(serve) -> None:
    # A server that moved answers 301 to its new host with the same query: a token written
    # into the source URL, or an extra parameter carrying a function key, stays behind.
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (301, f"{elsewhere.base_url}/api/offset")
    source = configured(origin, "/api/moved?access_token=url-s3cret-7&tenant=7", "bearer")
    source.extra_params = {"code": "function-key-s3cret", "region": "eu"}

    page = build_source(source).fetch_page("")

    assert ids(page.records) == every_id(5)
    [arrived] = elsewhere.requests_to("/api/offset")
    assert "s3cret" not in arrived.raw_path
    assert (arrived.query["tenant"], arrived.query["region"]) == (["7"], ["eu"])


def test_keys_under_names_declared_secret_never_follow_a_redirect(serve) -> None:
    # OpenWeather's `appid` says nothing of a key: the operator names it secret, and it then
    # stays behind like `api_key` would, while the filters beside it still go.
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (301, f"{elsewhere.base_url}/api/offset")
    key = "b6907d289e10d714a6e88b30761fae22"
    source = configured(origin, f"/api/moved?appid={key}&units=metric", "bearer")
    source.extra_params = {"tenant": "acme", "region": "eu-west-1"}
    source.secret_params = "appid, Tenant"

    page = build_source(source).fetch_page("")

    assert ids(page.records) == every_id(5)
    [arrived] = elsewhere.requests_to("/api/offset")
    assert "appid" not in arrived.query and "tenant" not in arrived.query
    assert (arrived.query["units"], arrived.query["region"]) == (["metric"], ["eu-west-1"])


def test_a_signed_address_a_source_redirects_to_keeps_its_own_signature(serve) -> None:
    # Exports and attachments are often served by a 302 to storage, signed in the query
    # (S3's X-Amz-*, Azure's sig, Google's X-Goog-*): without them the storage answers 403.
    # The signature came with the address; only what we sent stays behind.
    origin = serve()
    elsewhere = serve(records=N)
    signature = {
        "X-Amz-Credential": "AKIAEXAMPLE/20261202/eu-west-1/s3/aws4_request",
        "X-Amz-Signature": "0f9e8d7c6b5a49382716",
        "sig": "r2d2c3po",
        "token": "presigned-7",
    }
    origin.redirects["/api/export"] = (
        302,
        f"{elsewhere.base_url}/api/offset?{urlencode(signature)}",
    )
    source = configured(origin, "/api/export?api_key=url-s3cret-7&tenant=7", "bearer")

    page = build_source(source).fetch_page("")

    assert ids(page.records) == every_id(5)
    [arrived] = elsewhere.requests_to("/api/offset")
    assert {name: arrived.query[name] for name in signature} == {
        name: [value] for name, value in signature.items()
    }
    assert "s3cret" not in arrived.raw_path and "api_key" not in arrived.query
    assert credentials_received(elsewhere) == []


def test_an_access_token_the_redirect_writes_into_the_address_stays_behind(serve) -> None:
    origin = serve(auth="oauth2", username="client-1", secret=SECRET)
    elsewhere = serve(records=N)
    target = f"{elsewhere.base_url}/api/offset?access_token={{token}}&sig=r2d2"
    origin.redirects["/api/moved"] = (302, target)

    page = build_source(configured(origin, "/api/moved", "oauth2_client_credentials")).fetch_page(
        ""
    )

    assert ids(page.records) == every_id(5)
    [arrived] = elsewhere.requests_to("/api/offset")
    assert "access_token" not in arrived.query and arrived.query["sig"] == ["r2d2"]


def test_filters_follow_a_redirect_to_another_origin_however_long(serve) -> None:
    # What narrows the records is no credential: without it the moved host lists others.
    # Only a credential picked out by its name stays behind, never a value by its look.
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (301, f"{elsewhere.base_url}/api/offset")
    source = configured(origin, "/api/moved?updated_since=2024-01-01T00:00:00Z", "bearer")
    filters = {
        "fields": "serial,name,owner,location",
        "tenant_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "sysparm_query": "install_status=1",
        "api-version": "2023-10-01-preview",
        "region": "eu-west-1",
        "class": "cmdb_ci_linux_server",
        "site": "Berlin2Munich7",
    }
    source.extra_params = filters

    build_source(source).fetch_page("")

    [arrived] = elsewhere.requests_to("/api/offset")
    assert arrived.query["updated_since"] == ["2024-01-01T00:00:00Z"]
    assert {name: arrived.query[name] for name in filters} == {
        name: [value] for name, value in filters.items()
    }


def test_next_links_from_where_a_source_redirected_to_ask_for_that_address(serve) -> None:
    # Its relative next links lead to the host it redirected to: the message says where the
    # source is now, rather than blame a next link.
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (302, f"{elsewhere.base_url}/api/next")
    source = rest_source(
        f"{origin.base_url}/api/moved",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        page_size=2,
    )

    error = failure(source)

    assert error.kind == "bad_cursor"
    assert f"redirected to {elsewhere.base_url}/api/next" in error.message
    assert "set the source URL to the address it redirects to" in error.message


def test_a_redirect_within_the_origin_keeps_the_credentials(serve) -> None:
    origin = serve(records=N, auth="api_key_header", secret=SECRET, key_name="X-Api-Key")
    origin.redirects["/api/moved"] = (301, f"{origin.base_url}/api/offset")

    page = build_source(configured(origin, "/api/moved", "api_key_header")).fetch_page("")

    assert ids(page.records) == every_id(5)
    [answered] = origin.requests_to("/api/offset")
    assert answered.headers["x-api-key"] == SECRET
    assert answered.headers["x-tenant-token"] == HEADER_SECRET


def test_a_307_to_another_host_does_not_resend_the_credentials(serve) -> None:
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (307, f"{elsewhere.base_url}/api/offset")

    build_source(configured(origin, "/api/moved", "bearer")).fetch_page("")

    assert credentials_received(elsewhere) == []


def test_a_rejection_after_a_redirect_to_another_origin_says_so(serve) -> None:
    origin = serve()
    elsewhere = serve(auth="bearer", secret=SECRET)
    origin.redirects["/api/moved"] = (302, f"{elsewhere.base_url}/api/offset")

    error = failure(configured(origin, "/api/moved", "bearer"))

    assert (error.status, error.permanent) == (401, True)
    assert f"redirected to another origin, {elsewhere.base_url}/api/offset" in error.message
    assert "credentials are not sent" in error.message


def test_cross_origin_redirects_can_be_refused_instead(serve, settings) -> None:
    settings.CROSS_ORIGIN_REDIRECTS = "refuse"
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (302, f"{elsewhere.base_url}/api/offset")

    error = failure(configured(origin, "/api/moved", "bearer"))

    assert (error.kind, error.permanent) == ("redirect", True)
    assert "CROSS_ORIGIN_REDIRECTS" in error.message
    assert elsewhere.requests == []


@pytest.mark.parametrize("status", [302, 307, 308])
def test_the_oauth2_token_request_never_follows_a_redirect(serve, status: int) -> None:
    identity_provider = serve(auth="oauth2", username="client-1", secret=SECRET)
    elsewhere = serve(auth="oauth2", username="client-1", secret=SECRET)
    identity_provider.redirects["/oauth/token"] = (status, f"{elsewhere.base_url}/oauth/token")

    error = failure(configured(identity_provider, "/api/offset", "oauth2_client_credentials"))

    assert (error.kind, error.permanent, error.status) == ("auth", True, status)
    assert f"redirect to {elsewhere.base_url}/oauth/token" in error.message
    assert "set the token URL" in error.message
    assert elsewhere.requests == []


@pytest.mark.parametrize(
    "target, says",
    [
        ("/api/loop", "redirected in a loop"),
        ("http://[::1", "a redirect to an address that cannot be read (ValueError)"),
    ],
    ids=["a loop", "a malformed Location"],
)
def test_a_redirect_that_cannot_be_followed_fails_at_once_saying_why(
    serve, target: str, says: str
) -> None:
    origin = serve(records=N)
    origin.redirects["/api/loop"] = (302, target)

    error = failure(rest_source(f"{origin.base_url}/api/loop"))

    assert says in error.message
    assert error.permanent  # asking again would go round the same loop


# JSON-RPC APIs (Zabbix's) take their session token in the request body.
BODY_SECRET = "zbx-session-7f3a9c0d1e2b4a6f"


def posted(origin: FakeSource, path: str) -> Any:
    return rest_source(
        f"{origin.base_url}{path}",
        records_path="data.items",
        pagination="none",
        request_method="POST",
        request_body={"jsonrpc": "2.0", "method": "host.get", "auth": BODY_SECRET},
    )


@pytest.mark.parametrize("status", [307, 308])
def test_a_post_body_is_never_sent_on_to_another_origin(serve, status: int) -> None:
    # 307 and 308 keep the method and the body: the credential in it would go along.
    origin = serve()
    elsewhere = serve(records=N)
    origin.redirects["/api/moved"] = (status, f"{elsewhere.base_url}/api/offset")

    error = failure(posted(origin, "/api/moved"))

    assert elsewhere.requests == []
    assert (error.kind, error.permanent) == ("redirect", True)
    assert f"redirected its POST to another origin, {elsewhere.base_url}/api/offset" in (
        error.message
    )
    assert "set its URL there" in error.message
    assert BODY_SECRET not in error.message


@pytest.mark.parametrize("status", [301, 302])
def test_a_post_redirected_to_be_asked_with_get_fails_instead_of_losing_its_body(
    serve, status: int
) -> None:
    # requests goes on with GET and no body: the query would be lost, and whatever the
    # address answers a bare GET (every record, a default page) taken for its answer.
    origin = serve(records=N)
    origin.redirects["/api/moved"] = (status, f"{origin.base_url}/api/offset")

    error = failure(posted(origin, "/api/moved"))

    assert origin.requests_to("/api/offset") == []
    assert (error.kind, error.permanent) == ("bad_redirect", True)
    assert (
        f"answered its POST with a redirect ({status}) to {origin.base_url}/api/offset, which "
        "would be asked with GET, without the request body" in error.message
    )
    assert "set the source URL to that address" in error.message
