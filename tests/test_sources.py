"""The source connectors against a real fake source on loopback: paging, auth, files, plug-ins."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest
import requests
from django.core.files.storage import FileSystemStorage, Storage

from importer import services
from importer.devtools.demo_source import demo_computer
from importer.models import Execution, ImportSource
from importer.services import housekeeping
from importer.sources import (
    Page,
    SourceError,
    build_source,
    conversions,
    cursor_for,
    files,
    json_file,
    oauth,
)
from importer.sources.answers import link_to_next, select_records
from tests.conftest import wait_for
from tests.fake_source import ONE_MB, FakeSource, fake_record, jsonl, self_signed_certificate
from tests.test_services import run_due_retries

SECRET = "s3cr3t-Value+/="
N = 23


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    oauth.clear_token_cache()
    files.clear_download_cache()
    yield
    oauth.clear_token_cache()
    files.clear_download_cache()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeSource]]:
    """Start fake sources with the given options; all are stopped after the test."""
    started: list[FakeSource] = []

    def start(**options: Any) -> FakeSource:
        server = FakeSource(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def fake(serve: Callable[..., FakeSource]) -> FakeSource:
    return serve(records=N)


@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    return self_signed_certificate()


@pytest.fixture
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def rest_source(url: str, **fields: Any) -> ImportSource:
    defaults: dict[str, Any] = {
        "name": "cmdb",
        "source_kind": "rest",
        "source_url": url,
        "page_size": 5,
        "request_timeout": 5.0,
    }
    return ImportSource(**{**defaults, **fields})


def uploaded(media: Path, name: str, content: bytes, **fields: Any) -> ImportSource:
    """A file source whose upload holds `content`."""
    (media / "source-files").mkdir(exist_ok=True)
    (media / "source-files" / name).write_bytes(content)
    kind = name.rsplit(".", 1)[1]
    fields = {"page_size": 5, **fields}
    return ImportSource(
        name="export", source_kind=kind, source_file=f"source-files/{name}", **fields
    )


def places(cursors: list[str]) -> list[str]:
    """Where each page of a file starts, without the file's version the cursor also names."""
    return [cursor.partition("@")[0] for cursor in cursors]


def walk(source: ImportSource, max_pages: int = 100) -> tuple[list[dict], list[str]]:
    """Every record and the cursor of every page, fetched as the import flow does it:
    a fresh source per chunk, from nothing but the stored cursor."""
    cursor, records, cursors = "", [], [""]
    for _ in range(max_pages):
        page = build_source(source).fetch_page(cursor)
        assert isinstance(page, Page)
        records += page.records
        if page.next_cursor is None:
            return records, cursors
        cursor = page.next_cursor
        cursors.append(cursor)
    pytest.fail(f"still more pages after {max_pages}")


def read_in_parallel(source: ImportSource, max_pages: int = 100) -> list[dict]:
    """Every record, read as parallel chunks read an offset or page-number source: each page
    from the cursor planned for its index, up to the first page that says it is the last."""
    records: list[dict] = []
    for index in range(max_pages):
        page = build_source(source).fetch_page(cursor_for(source, index) or "")
        records += page.records
        if page.next_cursor is None:
            return records
    pytest.fail(f"still more pages after {max_pages}")


def ids(records: list[dict]) -> list[int]:
    return [int(record["id"]) for record in records]


def every_id(count: int = N) -> list[int]:
    return list(range(1, count + 1))


def failure(source: ImportSource, cursor: str = "") -> SourceError:
    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page(cursor)
    return caught.value


def walk_failure(source: ImportSource) -> SourceError:
    with pytest.raises(SourceError) as caught:
        walk(source)
    return caught.value


def assert_safe(error: SourceError, *secrets: str) -> None:
    """The message names the source and holds none of the secrets, in any URL encoding."""
    assert error.message.startswith("source 'cmdb'") or error.message.startswith("source 'export'")
    for secret in secrets:
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            assert form not in error.message


# --- paging --------------------------------------------------------------------------------


def test_offset_paging_delivers_every_record_once(fake: FakeSource) -> None:
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")
    records, cursors = walk(source)
    assert ids(records) == every_id()
    assert cursors == ["", "5", "10", "15", "20"]  # the 3-record page is short: the last one


def test_a_total_lower_than_what_the_source_holds_does_not_end_offset_paging(serve) -> None:
    # Ending at the total would leave records 21-25 out (the import then checks the total).
    fake = serve(records=25, reported_total=20)
    source = rest_source(
        f"{fake.base_url}/api/offset", records_path="data.items", total_path="meta.total"
    )
    records, _ = walk(source)
    assert ids(records) == every_id(25)


def test_offset_paging_stops_on_an_empty_page(serve) -> None:
    fake = serve(records=25)
    records, _ = walk(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))
    assert ids(records) == every_id(25)
    assert len(fake.requests_to("/api/offset")) == 6


@pytest.mark.parametrize("first_page", [0, 1])
def test_page_paging_delivers_every_record_once(serve, first_page: int) -> None:
    fake = serve(records=N, first_page=first_page)
    source = rest_source(
        f"{fake.base_url}/api/page",
        pagination="page",
        records_path="items",
        page_param="page",
        limit_param="per_page",
        first_page=first_page,
    )
    records, cursors = walk(source)
    assert ids(records) == every_id()
    assert cursors == ["", *[str(first_page + n) for n in range(1, 5)]]


def test_without_a_limit_param_the_server_page_size_is_followed(fake: FakeSource) -> None:
    # The server pages by 10 while page_size says 5: a full page of 10 is not "short".
    source = rest_source(
        f"{fake.base_url}/api/page", pagination="page", records_path="items", limit_param=""
    )
    records, _ = walk(source)
    assert ids(records) == every_id()
    assert all("per_page" not in r.query and "limit" not in r.query for r in fake.requests)


def cursor_source(fake: FakeSource, **fields: Any) -> ImportSource:
    defaults = {
        "pagination": "cursor",
        "records_path": "items",
        "cursor_param": "cursor",
        "cursor_path": "meta.next_cursor",
    }
    return rest_source(f"{fake.base_url}/api/cursor", **{**defaults, **fields})


def test_cursor_paging_delivers_every_record_once(fake: FakeSource) -> None:
    source = cursor_source(fake)
    records, cursors = walk(source)
    assert ids(records) == every_id()
    assert cursors == ["", "c5", "c10", "c15", "c20"]


def test_next_url_paging_follows_relative_urls(fake: FakeSource) -> None:
    source = rest_source(
        f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
    )
    records, cursors = walk(source)
    assert ids(records) == every_id()
    assert all(cursor.startswith(f"{fake.base_url}/api/next?") for cursor in cursors[1:])
    assert len(cursors) == 5


def next_link_source(fake: FakeSource, style: str = "next_url", **fields: Any) -> ImportSource:
    """A source with an API key in a header, whose next links repeat that key in their query
    (a link signed with the caller's key), in the given paging style."""
    fake.auth, fake.key_name, fake.secret = "api_key_header", "X-API-Key", SECRET
    fake.next_link_params = {"code": SECRET}  # the key again, under a name of the source's own
    return rest_source(
        f"{fake.base_url}{'/api/next' if style == 'next_url' else '/api/link'}",
        pagination=style,
        records_path="results" if style == "next_url" else "",
        cursor_path="links.next" if style == "next_url" else "",
        source_auth="api_key_header",
        auth_key_name="X-API-Key",
        source_token=SECRET,
        **fields,
    )


@pytest.mark.parametrize("style, path", [("next_url", "/api/next"), ("link_header", "/api/link")])
def test_a_next_link_repeating_the_api_key_is_stored_without_it_and_followed_with_it(
    fake: FakeSource, style: str, path: str
) -> None:
    source = next_link_source(fake, style)

    records, cursors = walk(source)

    assert ids(records) == every_id()
    assert all(SECRET not in c and quote_plus(SECRET) not in c for c in cursors)
    assert [r.query.get("code") for r in fake.requests_to(path)][1:] == [[SECRET]] * 4


def test_a_next_link_repeating_a_key_declared_secret_is_stored_without_it(
    fake: FakeSource,
) -> None:
    # The key sits in the source URL under a name that says nothing (`appid`), and the
    # source's next links repeat it: once the operator names it secret, no cursor holds it.
    key = "b6907d289e10d714a6e88b30761fae22"
    fake.next_link_params = {"appid": key}
    source = rest_source(
        f"{fake.base_url}/api/next?appid={key}",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        secret_params="appid",
    )

    records, cursors = walk(source)

    assert ids(records) == every_id()
    assert all(key not in cursor for cursor in cursors)
    assert [r.query.get("appid") for r in fake.requests_to("/api/next")] == [[key]] * 5


def test_a_next_link_naming_a_credential_changed_since_stops_instead_of_sending_another(
    fake: FakeSource,
) -> None:
    source = next_link_source(fake, assets_token="assets-token-1234")
    cursor = build_source(source).fetch_page("").next_cursor
    source.assets_token = "assets-token-5678"  # another secret of the source: still fine
    build_source(source).fetch_page(cursor)
    source.source_token = "rotated-key-9876"

    with pytest.raises(SourceError) as changed:
        build_source(source).fetch_page(cursor)

    assert changed.value.kind == "credentials_changed"
    sent = [r.query.get("code") for r in fake.requests_to("/api/next")]
    assert sent[1] == [SECRET] and len(sent) == 2


def test_a_user_name_that_is_also_in_the_host_name_leaves_next_links_alone(
    fake: FakeSource,
) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    source = rest_source(
        f"http://localhost:pw-1234@localhost:{port}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
    )

    records, _ = walk(source)

    assert ids(records) == every_id()


def test_link_header_paging_delivers_every_record_once(fake: FakeSource) -> None:
    records, cursors = walk(rest_source(f"{fake.base_url}/api/link", pagination="link_header"))
    assert ids(records) == every_id()
    assert cursors[1] == f"{fake.base_url}/api/link?limit=5&start=5"


@pytest.mark.parametrize("relation", ["Next", "next nofollow", "prefetch NEXT"])
def test_a_link_to_the_next_page_is_followed_whatever_the_case_and_other_relations(
    fake: FakeSource, relation: str
) -> None:
    fake.next_rel = relation

    records, _ = walk(rest_source(f"{fake.base_url}/api/link", pagination="link_header"))

    assert ids(records) == every_id()


@pytest.mark.parametrize(
    "template",
    [
        pytest.param('<{next}>; title="Assets; next page"; rel="next"', id="a ; in a title"),
        pytest.param('<{first}>; rel="first", <{next}>; Rel="next"', id="Rel in capitals"),
        pytest.param(
            '<{base}/api/link;jsessionid=A1B2?{query}>; rel="next"', id="a ; in its address"
        ),
    ],
)
def test_a_link_header_in_any_form_rfc_8288_allows_leads_to_every_record_once(
    fake: FakeSource, template: str
) -> None:
    fake.link_template = template

    records, _ = walk(rest_source(f"{fake.base_url}/api/link", pagination="link_header"))

    assert ids(records) == every_id()


@pytest.mark.timeout(5)
def test_a_link_header_trailing_a_long_run_of_unclosed_brackets_is_read_in_linear_time() -> None:
    response = requests.Response()
    response.headers["Link"] = '<https://inventory.example/api?page=2>; rel="next", ' + "<" * 60_000

    assert link_to_next(response) == "https://inventory.example/api?page=2"


def test_answers_behind_gerrits_xssi_guard_line_are_read_every_record_once(
    fake: FakeSource,
) -> None:
    fake.answer_prefix = b")]}'\n"

    records, _ = walk(rest_source(f"{fake.base_url}/api/link", pagination="link_header"))

    assert ids(records) == every_id()


def test_no_paging_reads_one_answer(fake: FakeSource) -> None:
    records, cursors = walk(rest_source(f"{fake.base_url}/api/all", pagination="none"))
    assert ids(records) == every_id()
    assert cursors == [""]
    assert "limit" not in fake.requests[0].query


def test_a_datatables_answer_filtered_by_its_query_is_read_whole_in_one_request(
    serve,
) -> None:
    # DataTables' `recordsTotal` counts the records before the query's filter; those it
    # answers are `recordsFiltered`, all of them here.
    served = [{"id": i} for i in range(1, 4)]
    answer = {"draw": 1, "recordsTotal": 57, "recordsFiltered": 3, "data": served}
    url = serve().add_file("table.json", json.dumps(answer).encode(), "application/json")

    records, _ = walk(rest_source(url, pagination="none", records_path="data"))

    assert records == served


def test_a_total_under_a_usual_name_that_counts_something_else_fails_saying_to_set_the_total_path(
    serve,
) -> None:
    served = [{"id": i} for i in range(1, 4)]
    answer = {"order": {"id": 9, "total": 4200, "lines": served}}
    url = serve().add_file("order.json", json.dumps(answer).encode(), "application/json")

    error = walk_failure(rest_source(url, pagination="none", records_path="order.lines"))

    assert "says it holds 4200 records ('order.total') but its one answer held 3" in str(error)
    assert (
        "If 'order.total' counts something else, set the total path to where the answers "
        "count their records" in str(error)
    )


def test_a_total_path_set_is_the_only_total_a_first_answer_is_held_to(serve) -> None:
    # The answer's `total` is a sum of money; it counts its records nowhere, and the total
    # path names where a count would be.
    served = [{"id": i} for i in range(1, 4)]
    answer = {"order": {"id": 9, "total": 4200, "lines": served}}
    url = serve().add_file("order.json", json.dumps(answer).encode(), "application/json")

    source = rest_source(
        url, pagination="none", records_path="order.lines", total_path="order.line_count"
    )

    records, _ = walk(source)

    assert records == served


def three_records_telling(serve, headers: dict[str, str]) -> str:
    """The URL of an answer of three records with `headers` (a total told in one)."""
    served = [{"id": i} for i in range(1, 4)]
    return serve().add_file("list.json", json.dumps(served).encode(), "application/json", headers)


@pytest.mark.parametrize("named", ["header:X-Total-Count", "HEADER: x-total-count"])
def test_a_total_path_reads_the_header_it_names_whatever_its_case(serve, named) -> None:
    url = three_records_telling(serve, {"X-Total-Count": " 3 "})

    page = build_source(rest_source(url, pagination="none", total_path=named)).fetch_page("")

    assert page.total == 3


def test_an_answer_without_the_total_header_tells_no_total_as_a_body_without_its_path(
    serve,
) -> None:
    url = three_records_telling(serve, {})
    source = rest_source(url, pagination="none", total_path="header:X-Total-Count")

    assert build_source(source).fetch_page("").total is None


@pytest.mark.parametrize("told", ["12.5", "-3", "many"])
def test_a_total_header_that_is_not_a_whole_number_fails_the_page_saying_where(serve, told) -> None:
    url = three_records_telling(serve, {"X-Total": told})

    error = walk_failure(rest_source(url, pagination="none", total_path="header:X-Total"))

    told_back = f"the total in header 'X-Total' is not a number ({told!r})"
    assert error.message == f"source 'cmdb': {told_back}"


@pytest.mark.parametrize(
    "told, shown",
    [("3000000000", "'3000000000'"), ("9" * 5000, "'" + "9" * 50 + "'")],
    ids=["above-what-an-import-keeps", "more-digits-than-python-reads"],
)
def test_a_total_header_no_count_of_records_can_be_fails_the_page_saying_so(
    serve, told, shown
) -> None:
    url = three_records_telling(serve, {"X-Total-Count": told})

    error = walk_failure(rest_source(url, pagination="none", total_path="header:X-Total-Count"))

    assert error.kind == "bad_records"
    assert error.message == (
        "source 'cmdb': the total in header 'X-Total-Count' is no count of records (below 0 "
        f"or above 2147483647) ({shown})"
    )


@pytest.mark.parametrize("told", [-1, 3_000_000_000])
def test_a_total_in_the_body_no_count_of_records_can_be_fails_the_page_saying_so(
    serve, told
) -> None:
    answer = {"items": [{"id": i} for i in range(1, 4)], "meta": {"total": told}}
    url = serve().add_file("list.json", json.dumps(answer).encode(), "application/json")
    source = rest_source(url, pagination="none", records_path="items", total_path="meta.total")

    error = walk_failure(source)

    assert error.kind == "bad_records"
    assert error.message == (
        "source 'cmdb': the total at 'meta.total' is no count of records (below 0 or above "
        f"2147483647) ('{told}')"
    )


def test_a_first_answer_short_of_its_header_total_fails_naming_the_header(serve) -> None:
    url = three_records_telling(serve, {"X-WP-Total": "57"})

    error = walk_failure(rest_source(url, pagination="none", total_path="header:X-WP-Total"))

    assert "says it holds 57 records (in header 'X-WP-Total') but its one answer held 3" in str(
        error
    )


def test_a_usual_total_header_is_not_looked_at_without_a_total_path(serve) -> None:
    # ServiceNow's X-Total-Count counts rows its access controls then leave out: the answer
    # holds every record the caller may read.
    url = three_records_telling(serve, {"X-Total-Count": "57"})

    records, _ = walk(rest_source(url, pagination="none"))

    assert len(records) == 3


@pytest.mark.parametrize("named", ["header:", "header:X Total", "header:Set-Cookie"])
def test_a_stored_total_path_naming_no_usable_header_is_a_configuration_error(named) -> None:
    with pytest.raises(SourceError) as caught:
        build_source(rest_source("http://127.0.0.1:9/items", total_path=named))

    assert caught.value.kind == "config"
    assert "is misconfigured" in caught.value.message


@pytest.mark.parametrize(
    "header", ["X-Subject-Token", "X-Auth-Token", "X-Amz-Security-Token", "X-CSRF-Token"]
)
def test_a_total_path_naming_a_header_that_carries_a_credential_never_shows_its_value(
    serve, header
) -> None:
    # OpenStack's Keystone answers its token in X-Subject-Token, Swift's in X-Auth-Token:
    # read for a total, the token was quoted in the error ("is not a number ('gAAAA...')").
    token = "gAAAAABkSubjectTokenHeldByTheAnswer0123456789"
    url = three_records_telling(serve, {header: token})

    error = walk_failure(rest_source(url, pagination="none", total_path=f"header:{header}"))

    assert_safe(error, token, token[:12])
    assert error.kind == "config"
    assert f"the {header} header carries credentials, not a total" in error.message


def test_extra_params_go_on_every_next_url_request_though_its_links_leave_them_out(
    fake: FakeSource,
) -> None:
    fake.echo_query = False
    source = rest_source(
        f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        extra_params={"status": "active"},
        extra_headers={"X-Tenant": "acme"},
    )
    records, _ = walk(source)
    assert ids(records) == every_id()
    asked = fake.requests_to("/api/next")
    assert [r.query.get("status") for r in asked] == [["active"]] * 5
    assert {r.headers["x-tenant"] for r in asked} == {"acme"}


def test_extra_params_go_on_every_offset_request(fake: FakeSource) -> None:
    source = rest_source(
        f"{fake.base_url}/api/offset", records_path="data.items", extra_params={"status": "active"}
    )
    walk(source)
    assert all(r.query["status"] == ["active"] for r in fake.requests_to("/api/offset"))


def test_a_repeating_cursor_is_an_endless_source(fake: FakeSource) -> None:
    source = rest_source(
        f"{fake.base_url}/api/stuck",
        pagination="cursor",
        records_path="items",
        cursor_path="meta.next_cursor",
    )
    error = walk_failure(source)
    assert error.kind == "endless_source"
    assert error.permanent
    assert_safe(error)


def test_a_stored_url_with_a_port_out_of_range_fails_saying_so_once(fake: FakeSource) -> None:
    # Saved before the form checked ports: the request cannot be made, and never will be.
    error = walk_failure(
        rest_source("http://svc:pw-5531@127.0.0.1:99999/api/offset?api_key=key-5531")
    )

    assert error.kind == "config" and error.permanent
    assert "http://127.0.0.1:99999/api/offset" in error.message and "65535" in error.message
    assert_safe(error, "pw-5531", "key-5531")


def test_a_next_url_on_another_host_is_refused(fake: FakeSource) -> None:
    body = {"results": [fake_record(1)], "links": {"next": "http://elsewhere.example/steal"}}
    fake.faults.add(path_contains="/api/next", status=200, body=json.dumps(body))
    source = rest_source(
        f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        source_auth="bearer",
        source_token=SECRET,
    )
    error = failure(source)
    assert error.kind == "bad_cursor"
    assert "elsewhere.example" in error.message


def test_a_next_link_to_the_sources_own_origin_written_otherwise_is_followed(
    fake: FakeSource,
) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    fake.next_link_path = f"http://LocalHost:{port}/api/next"  # host names know no case

    records, _ = walk(
        rest_source(
            f"http://localhost:{port}/api/next",
            pagination="next_url",
            records_path="results",
            cursor_path="links.next",
        )
    )

    assert ids(records) == every_id()


def test_a_next_link_to_plain_http_from_a_source_read_over_https_is_followed_over_https(
    serve, certificate
) -> None:
    # A service behind a TLS proxy builds its links from its own side of the proxy.
    fake = serve(records=N, tls=certificate, auth="bearer", secret=SECRET)
    port = fake.base_url.rsplit(":", 1)[1]
    fake.next_link_path = f"http://127.0.0.1:{port}/api/next"
    source = rest_source(
        f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        ca_bundle=certificate[0],
        source_auth="bearer",
        source_token=SECRET,
    )

    records, cursors = walk(source)

    assert ids(records) == every_id()
    assert all(cursor.startswith(f"https://127.0.0.1:{port}/") for cursor in cursors[1:])


# --- sources that serve another page size than asked ---------------------------------------


def offset_source(fake: FakeSource, **fields: Any) -> ImportSource:
    return rest_source(f"{fake.base_url}/api/offset", records_path="data.items", **fields)


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"errcode": 45009, "errmsg": "api freq out of limit"}},
        {"errorMessages": ["Rate limit exceeded"]},
        {"data": {}, "errors": [{"message": "quota exceeded"}]},
    ],
    ids=["wechat", "jira", "graphql"],
)
def test_an_answer_without_its_list_past_the_first_page_is_no_end(fake, answer) -> None:
    # A spent quota answering 200 in a shape of its own: taken for an empty page, it would
    # end the import DONE without the rest.
    fake.faults.add(path_contains="offset=5", status=200, body=json.dumps(answer))

    error = failure(offset_source(fake, page_size=5), "5")

    assert error.kind == "bad_records"
    assert "answered an error instead of its records ('data.items')" in error.message
    said = ("45009", "Rate limit exceeded", "quota exceeded")
    assert any(what in error.message for what in said)  # what the source said
    assert "'?'" not in error.message  # an error is no list left out


@pytest.mark.parametrize(
    "answer",
    [
        {"Result": [], "Status": "OK", "Error": "None", "ResponseCode": 0},  # Kaseya VSA
        {"Result": [], "error": {"code": 0, "message": "OK"}},
        {"Result": [], "errors": {"count": 0}},
        {"Result": None, "errorMessages": [], "warningMessages": ["slow query"]},  # Jira
        {"Result": [], "error": None, "status": "ok", "message": "no more records"},
    ],
)
def test_an_empty_last_page_that_says_no_error_in_its_own_words_is_the_end(answer) -> None:
    assert select_records(answer, "Result", "cmdb") == []


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"users": None}, "errors": [{"message": "rate limited"}]},  # GraphQL
        {"Result": [], "ok": False, "error": "invalid_auth"},
        {"Result": [], "error": {"code": 403, "message": "forbidden"}},
    ],
)
def test_an_empty_page_beside_an_error_is_no_end(answer) -> None:
    path = "data.users" if "data" in answer else "Result"
    with pytest.raises(SourceError) as caught:
        select_records(answer, path, "cmdb")
    assert "answered an error instead of its records" in caught.value.message


def test_a_selector_that_misses_before_its_last_key_is_not_offered_the_question_mark(
    fake,
) -> None:
    fake.faults.add(path_contains="offset=0", status=200, body=json.dumps({"items": [], "n": 0}))

    error = failure(offset_source(fake, page_size=5))

    assert "answered without 'data'" in error.message and "items (a list)" in error.message
    assert "'?'" not in error.message


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": False, "error": "invalid_auth"},
        {"ok": False, "error": "missing_scope", "needed": "users:read", "provided": "team:read"},
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
        {"status": "error", "messages": "Too many requests"},
        {"message": "API rate limit exceeded"},
        {"detail": "Request was throttled."},
        {"success": False, "message": "quota exhausted"},
    ],
)
def test_an_error_answer_is_no_empty_page_though_the_list_may_be_left_out(fake, answer) -> None:
    # The selector says the list may be left out ("items?"): not from an error's answer.
    fake.faults.add(path_contains="/api/cursor", status=200, body=json.dumps(answer))
    source = cursor_source(fake, records_path="items?")

    error = failure(source, "c5")

    assert error.kind == "bad_records" and "answered an error instead" in error.message


@pytest.mark.parametrize(
    "answer",
    [
        {"code": 0, "message": "success"},
        {"errcode": 0, "errmsg": "ok"},
        {"errors": [], "messages": [], "success": True},
    ],
    ids=["grpc-gateway", "wechat", "cloudflare"],
)
def test_an_answer_saying_no_error_is_an_empty_page_where_the_list_may_be_left_out(
    fake, answer
) -> None:
    fake.faults.add(path_contains="/api/cursor", status=200, body=json.dumps(answer))
    source = cursor_source(fake, records_path="items?")

    page = build_source(source).fetch_page("c5")

    assert (page.records, page.next_cursor) == ([], None)


@pytest.mark.parametrize(
    "body, records_path, answered",
    [
        ("null", "data.items", "answered null, not an object or a list of records"),
        ("null", "data.items?", "answered null, not an object or a list of records"),
        ('"Unauthorized"', "", 'answered a string ("Unauthorized"), not an object or a list'),
        ('"Unauthorized"', "items?", 'answered a string ("Unauthorized"), not an object'),
        ("42", "items", "answered a number, not an object or a list of records"),
    ],
)
def test_an_answer_that_is_no_object_or_list_says_so_not_to_change_the_selector(
    fake: FakeSource, body: str, records_path: str, answered: str
) -> None:
    fake.faults.add(path_contains="/api/offset", status=200, body=body)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path=records_path))

    assert error.kind == "bad_records"
    assert answered in error.message
    assert "check the source URL and its parameters" in error.message
    assert "'?'" not in error.message and "selector" not in error.message


def test_an_empty_body_past_the_first_page_is_no_end(serve) -> None:
    # A proxy throttling may answer 200 with nothing, page after page.
    fake = serve(records=N, past_end_status=200)

    error = failure(offset_source(fake, page_size=5), str(N))

    assert (error.kind, error.permanent) == ("not_json", False)
    assert "answered 200 with an empty body, no JSON" in error.message


def test_a_202_while_the_source_prepares_its_answer_is_waited_for_as_it_asks(
    fake: FakeSource,
) -> None:
    fake.faults.add(
        path_contains="/api/offset", status=202, body="{}", headers={"Retry-After": "30"}
    )

    error = failure(offset_source(fake))

    assert (error.status, error.kind, error.permanent, error.retry_after) == (
        202,
        "unavailable",
        False,
        30,
    )
    assert "answered 202 Accepted" in error.message
    assert "still preparing its answer" in error.message


def test_a_304_to_a_conditional_request_fails_naming_the_headers_to_remove(
    fake: FakeSource,
) -> None:
    # Only a conditional request gets a 304: the source's extra headers made it one.
    fake.faults.add(path_contains="/api/offset", status=304, body="")
    source = offset_source(fake, extra_headers={"If-None-Match": '"v1"'})

    error = failure(source)

    assert (error.status, error.permanent) == (304, True)
    assert "remove If-None-Match and If-Modified-Since" in error.message


def page_source(fake: FakeSource, **fields: Any) -> ImportSource:
    defaults = {"pagination": "page", "records_path": "items", "limit_param": "per_page"}
    return rest_source(f"{fake.base_url}/api/page", **{**defaults, **fields})


@pytest.mark.parametrize(
    "habit",
    [
        pytest.param({"max_limit": 2}, id="cuts the limit to 2"),
        pytest.param({"ignore_limit": True, "default_limit": 2}, id="serves 2, ignoring it"),
        pytest.param({"ignore_limit": True, "default_limit": 7}, id="serves 7, ignoring it"),
    ],
)
@pytest.mark.parametrize("limit_param", ["limit", ""], ids=["limit sent", "limit not sent"])
def test_offset_pages_read_in_parallel_hold_every_record_once(serve, habit, limit_param) -> None:
    fake = serve(records=N, **habit)
    source = offset_source(fake, limit_param=limit_param)
    assert ids(read_in_parallel(source)) == every_id()


def test_a_source_that_ignores_offset_and_limit_fails_on_its_first_page(serve) -> None:
    fake = serve(records=N, ignore_limit=True, ignore_offset=True, default_limit=N)

    with pytest.raises(SourceError) as ignored:
        build_source(offset_source(fake)).fetch_page("")

    assert (ignored.value.kind, ignored.value.permanent) == ("ignores_offset", True)
    assert "ignores the 'offset' parameter" in ignored.value.message
    assert "No paging (one request)" in ignored.value.message


def test_an_offset_page_asks_on_from_where_a_short_answer_stopped(serve) -> None:
    fake = serve(records=N, max_limit=2)
    page = build_source(offset_source(fake)).fetch_page("10")
    assert ids(page.records) == [11, 12, 13, 14, 15]
    assert page.next_cursor == "15"
    asked = [r.query["offset"][0] for r in fake.requests_to("/api/offset")]
    assert asked == ["10", "12", "14"]


def test_a_short_offset_page_is_the_end_only_when_nothing_follows(serve) -> None:
    fake = serve(records=N)
    page = build_source(offset_source(fake)).fetch_page("20")
    assert ids(page.records) == [21, 22, 23] and page.next_cursor is None
    assert [r.query["offset"][0] for r in fake.requests] == ["20", "23"]


@pytest.mark.parametrize(
    "habit",
    [
        pytest.param({"max_limit": 2}, id="cuts the limit to 2"),
        pytest.param({"ignore_limit": True, "default_limit": 3}, id="serves 3, ignoring it"),
        pytest.param({"ignore_limit": True, "default_limit": 8}, id="serves 8, ignoring it"),
    ],
)
@pytest.mark.parametrize("limit_param", ["per_page", ""], ids=["limit sent", "limit not sent"])
def test_numbered_pages_read_in_parallel_hold_every_record_once(serve, habit, limit_param) -> None:
    fake = serve(records=N, **habit)
    source = page_source(fake, limit_param=limit_param)
    assert ids(read_in_parallel(source)) == every_id()


def test_a_reader_learns_the_page_size_a_source_really_serves(serve) -> None:
    fake = serve(records=N, max_limit=2)
    reader = build_source(page_source(fake))  # a lane reads its pages with one reader
    records, cursor = [], ""
    while cursor is not None:
        page = reader.fetch_page(cursor)
        records, cursor = records + page.records, page.next_cursor
    assert ids(records) == every_id()
    # Twelve pages of two, plus one look at the page after a short one and one at that page
    # asked for at the size served (pages counted by the size asked for would skip records):
    # after the first page, two records is known to be a full page here; the last page (one
    # record) is short even so, and its next page shows the end.
    assert len(fake.requests_to("/api/page")) == 12 + 1 + 1 + 1


@pytest.mark.parametrize("status", [404, 204])
@pytest.mark.parametrize("style", ["offset", "page"])
def test_an_error_or_no_content_after_a_short_page_is_the_end(
    serve, style: str, status: int
) -> None:
    fake = serve(records=N, past_end_status=status)
    source = offset_source(fake) if style == "offset" else page_source(fake)
    assert ids(read_in_parallel(source)) == every_id()


@pytest.mark.parametrize("habit", ["latin1", "mislabelled"])
def test_an_answer_in_the_charset_its_content_type_declares_is_read(serve, habit: str) -> None:
    # "mislabelled": UTF-8, as JSON is, under a label that says ISO-8859-1.
    fake = serve(records=N, record=lambda i: {**fake_record(i), "site": "Zürich"})
    fake.misbehave(habit, times=-1)

    records = read_in_parallel(offset_source(fake))

    assert ids(records) == every_id()
    assert {record["site"] for record in records} == {"Zürich"}


@pytest.mark.parametrize("reported_total", [None, 12])
def test_numbered_pages_of_a_source_cutting_the_limit_are_read_to_its_end_whatever_its_total(
    serve, reported_total: int | None
) -> None:
    fake = serve(records=20, max_limit=4, reported_total=reported_total)
    source = page_source(fake, total_path="total")
    assert ids(read_in_parallel(source)) == every_id(20)


def test_pages_carry_the_total_the_source_tells(serve) -> None:
    fake = serve(records=N, reported_total=30)
    page = build_source(offset_source(fake, total_path="meta.total")).fetch_page("")
    assert page.total == 30


# --- auth ----------------------------------------------------------------------------------

AUTH_CASES = {
    "bearer": {},
    "basic": {"auth_username": "svc"},
    "api_key_header": {"auth_key_name": "X-Api-Key"},
    "api_key_query": {"auth_key_name": "api_key"},
}


@pytest.mark.parametrize("auth", AUTH_CASES)
def test_it_authenticates_with(serve, auth: str) -> None:
    fields = AUTH_CASES[auth]
    fake = serve(auth=auth, username="svc", secret=SECRET, key_name=fields.get("auth_key_name", ""))
    source = rest_source(
        f"{fake.base_url}/api/offset",
        records_path="data.items",
        source_auth=auth,
        source_token=SECRET,
        **fields,
    )
    records, _ = walk(source)
    assert ids(records) == every_id()


def test_basic_credentials_that_fit_latin_1_are_still_sent_as_latin_1(serve) -> None:
    fake = serve(auth="basic", username="svc", secret="pässwörd", basic_charset="latin-1")
    source = rest_source(
        f"{fake.base_url}/api/offset",
        records_path="data.items",
        source_auth="basic",
        auth_username="svc",
        source_token="pässwörd",
    )

    records, _ = walk(source)

    assert ids(records) == every_id()


@pytest.mark.parametrize(("username", "password"), [("svc", "пароль€"), ("用户", "pässwörd")])
def test_basic_credentials_beyond_latin_1_are_sent_as_utf_8(
    serve, username: str, password: str
) -> None:
    fake = serve(auth="basic", username=username, secret=password, basic_charset="utf-8")
    source = rest_source(
        f"{fake.base_url}/api/offset",
        records_path="data.items",
        source_auth="basic",
        auth_username=username,
        source_token=password,
    )

    records, _ = walk(source)

    assert ids(records) == every_id()
    assert len(fake.requests) > 1  # every page, not only the first


@pytest.mark.parametrize("auth", AUTH_CASES)
def test_a_wrong_secret_fails_clearly_without_the_secret(serve, auth: str) -> None:
    fields = AUTH_CASES[auth]
    fake = serve(auth=auth, username="svc", secret="right", key_name=fields.get("auth_key_name"))
    source = rest_source(
        f"{fake.base_url}/api/offset", source_auth=auth, source_token=SECRET, **fields
    )
    error = failure(source)
    assert (error.status, error.kind, error.permanent) == (401, "auth", True)
    assert "check the source's credentials" in error.message
    assert_safe(error, SECRET)


def test_an_api_key_in_the_query_is_kept_out_of_stored_cursors(serve) -> None:
    fake = serve(records=N, auth="api_key_query", secret=SECRET, key_name="api_key")
    source = rest_source(
        f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
        source_auth="api_key_query",
        auth_key_name="api_key",
        source_token=SECRET,
    )
    records, cursors = walk(source)  # the server echoes the key into its next links
    assert ids(records) == every_id()
    assert not any("api_key" in cursor for cursor in cursors)
    assert all(r.query["api_key"] == [SECRET] for r in fake.requests_to("/api/next"))


def test_an_api_key_in_the_query_never_reaches_an_error_message(serve) -> None:
    fake = serve(auth="api_key_query", secret=SECRET, key_name="api_key")
    fake.faults.add(path_contains="/api/offset", status=400, body=f"bad key {SECRET}")
    source = rest_source(
        f"{fake.base_url}/api/offset",
        source_auth="api_key_query",
        auth_key_name="api_key",
        source_token=SECRET,
    )
    error = failure(source)
    assert error.status == 400
    assert_safe(error, SECRET)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = failure(
        rest_source(
            f"http://127.0.0.1:{port}/api/offset",
            source_auth="api_key_query",
            auth_key_name="api_key",
            source_token=SECRET,
        )
    )
    assert (unreachable.kind, unreachable.permanent) == ("unavailable", False)
    assert (
        f"could not be reached at http://127.0.0.1:{port}/api/offset (the connection was "
        "refused: nothing listens at that host and port)" in unreachable.message
    )
    assert_safe(unreachable, SECRET)


def oauth_source(fake: FakeSource, **fields: Any) -> ImportSource:
    fields = {
        "source_url": f"{fake.base_url}/api/offset",
        "records_path": "data.items",
        "source_token": SECRET,
        **fields,
    }
    return rest_source(
        fields.pop("source_url"),
        source_auth="oauth2_client_credentials",
        oauth_token_url=f"{fake.base_url}/oauth/token",
        auth_username="client-1",
        oauth_scope="assets:read",
        **fields,
    )


def test_oauth_fetches_one_token_and_reuses_it(serve) -> None:
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET)
    records, _ = walk(oauth_source(fake))
    assert ids(records) == every_id()
    [token_request] = fake.token_requests()
    assert parse_qs(token_request.body.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-1"],
        "client_secret": [SECRET],
        "scope": ["assets:read"],
    }


def test_a_token_expiring_mid_import_is_refreshed_once_and_the_import_goes_on(serve) -> None:
    # Each token is good for two requests, then the server revokes it.
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET, token_max_uses=2)
    records, _ = walk(oauth_source(fake))
    assert ids(records) == every_id()
    assert len(fake.token_requests()) == 3
    # Five pages, one request after the short last page that finds the end, and two pages
    # asked again (once each) with a fresh token.
    assert len(fake.requests_to("/api/offset")) == 5 + 1 + 2


def test_a_revoked_token_is_replaced(serve) -> None:
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET)
    source = oauth_source(fake)
    first = build_source(source).fetch_page("")
    fake.revoke_tokens()
    second = build_source(source).fetch_page(first.next_cursor or "")
    assert ids(first.records + second.records) == every_id(10)
    assert len(fake.token_requests()) == 2


def test_a_401_with_a_fresh_token_is_retried_only_once(serve) -> None:
    fake = serve(auth="oauth2", username="client-1", secret=SECRET)
    fake.faults.add(path_contains="/api/offset", status=401, times=-1)
    error = failure(oauth_source(fake))
    assert (error.status, error.permanent) == (401, True)
    assert len(fake.token_requests()) == 2
    assert len(fake.requests_to("/api/offset")) == 2
    assert_safe(error, SECRET)


def test_a_refused_client_secret_fails_clearly(serve) -> None:
    fake = serve(auth="oauth2", username="client-1", secret="another")
    error = failure(oauth_source(fake))
    assert (error.kind, error.permanent, error.status) == ("auth", True, 401)
    assert "token endpoint" in error.message and "client secret" in error.message
    assert_safe(error, SECRET)


def test_a_wrong_client_secret_is_refused_though_another_source_holds_a_token(serve) -> None:
    # Same token endpoint, client and scope; the right secret fetched a token first. A
    # mistyped or revoked secret is found out at once, not when that token expires.
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET)
    assert build_source(oauth_source(fake)).fetch_page("").records

    error = failure(oauth_source(fake, source_token="mistyped-secret"))

    assert (error.kind, error.status) == ("auth", 401)
    assert len(fake.token_requests()) == 2


# --- errors --------------------------------------------------------------------------------


def test_retry_after_on_a_429_is_read(fake: FakeSource) -> None:
    fake.faults.add(path_contains="/api/offset", status=429, retry_after="7")
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")
    error = failure(source)
    assert (error.status, error.kind, error.permanent, error.retry_after) == (
        429,
        "rate_limited",
        False,
        7.0,
    )
    assert ids(build_source(source).fetch_page("").records) == every_id(5)


ONE = [{"id": 1}]
HUBSPOT_NEXT = {"after": "NTI1", "link": "https://api.hubapi.example/crm?after=NTI1"}


@pytest.mark.parametrize(
    "style, answer, said",
    [
        ("cursor", {"data": ONE, "has_more": True}, "says it has more records ('has_more' is"),
        ("cursor", {"data": ONE, "meta": {"has_more": False, "after_cursor": "z9"}}, ""),
        ("cursor", {"data": ONE, "nextSyncToken": "s-77"}, ""),  # Google's last page
        ("cursor", {"data": ONE, "paging": {"nextPageToken": "t-2"}}, "at 'paging.nextPageToken'"),
        ("cursor", {"data": ONE, "meta": {"cursor": "c-sent"}}, ""),  # the request's, echoed
        ("cursor", {"data": ONE, "params": {"after": "c-sent"}}, ""),
        ("cursor", {"data": ONE, "isLast": True, "nextPageToken": "t-3"}, ""),  # Jira
        ("cursor", {"data": ONE, "end_of_stream": True, "after_cursor": "z"}, ""),  # Zendesk
        ("cursor", {"data": ONE, "nextPage": 0, "next_invoice_date": "2027-01-01"}, ""),
        ("cursor", {"data": ONE, "next": {}}, ""),
        ("cursor", {"data": ONE, "next": {"after": "NTI1"}}, "(e.g. 'next.after')"),
        ("next_url", {"data": ONE, "next": HUBSPOT_NEXT}, "(e.g. 'next.link')"),
        ("next_url", {"data": ONE, "_links": {"next": {"href": "/api/devices?p=2"}}}, "'_links"),
        ("cursor", {"data": ONE, "cursor": "c-2"}, "at 'cursor'"),  # named as the parameter
        ("cursor", {"data": ONE, "nextPageToken": "Ch0j", "isLast": False}, "'nextPageToken'"),
        ("cursor", {"data": ONE, "isLast": False}, "('isLast' is false)"),  # Jira
        ("cursor", {"data": ONE, "offset": "itrXYZ/recABC"}, "at 'offset'"),  # Airtable
        ("cursor", {"data": ONE, "offset": 100}, ""),  # a position told back
        ("cursor", {"data": ONE, "filters": {"after": "2024-01-01T00:00:00Z"}}, ""),
        ("cursor", {"data": ONE, "pages": {"next": {"starting_after": "WzE"}}}, "starting_after"),
        ("next_url", {"data": ONE, "done": False, "nextRecordsUrl": "/q/01g-2000"}, "'nextRec"),
        ("next_url", {"data": ONE, "next_page_uri": "/2010-04-01/Calls?Page=1"}, "next_page_uri"),
        ("next_url", {"data": ONE, "paging": {"next": HUBSPOT_NEXT}}, "at 'paging.next.link'"),
        ("next_url", {"data": ONE, "done": True, "totalSize": 1}, ""),  # Salesforce's last
    ],
)
def test_a_next_page_path_finding_nothing_ends_only_where_the_answer_does_not_lead_on(
    httpserver, style: str, answer: dict, said: str
) -> None:
    httpserver.expect_request("/api/devices").respond_with_json(answer)
    source = rest_source(
        httpserver.url_for("/api/devices"),
        records_path="data",
        pagination=style,
        cursor_path="next",
        cursor_param="cursor",
    )

    sent = "c-sent" if style == "cursor" else ""
    if said:
        assert said in failure(source, sent).message
    else:
        assert build_source(source).fetch_page(sent).next_cursor is None


@pytest.mark.parametrize(
    "header, value",
    [
        ("X-Rate-Limit-Reset", lambda: str(int(time.time()) + 20)),  # Okta: a Unix time
        ("X-RateLimit-Reset", lambda: str(int(time.time()) + 20)),  # GitHub, Zendesk
        ("RateLimit-Reset", lambda: "20"),  # the IETF draft: seconds from now
        ("X-RateLimit-Reset", lambda: str(int(time.time() * 1000) + 20_000)),  # milliseconds
    ],
)
def test_a_429_without_retry_after_waits_for_the_rate_limits_reset(
    fake: FakeSource, header: str, value: Callable[[], str]
) -> None:
    fake.faults.add(path_contains="/api/offset", status=429, headers={header: value()})
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))
    assert (error.status, error.permanent) == (429, False)
    assert 17 <= error.retry_after <= 20


def test_a_429_with_requests_left_in_the_window_is_no_wait_for_its_reset(fake: FakeSource) -> None:
    # GitHub's secondary limits: the primary window's reset may be an hour away.
    later = str(int(time.time()) + 3000)
    headers = {"X-RateLimit-Remaining": "4200", "X-RateLimit-Reset": later}
    fake.faults.add(path_contains="/api/offset", status=429, headers=headers)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert (error.status, error.retry_after) == (429, None)


@pytest.mark.parametrize(
    "headers, wait",
    [
        (lambda: {"Retry-After": "60"}, 60),  # GitHub's secondary limits
        (  # and its primary one
            lambda: {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 20)},
            20,
        ),
    ],
    ids=["retry-after", "none-remaining"],
)
def test_a_403_that_says_when_to_ask_again_is_a_rate_limit_waited_out(
    fake: FakeSource, headers: Callable[[], dict[str, str]], wait: int
) -> None:
    body = '{"message": "You have exceeded a secondary rate limit"}'
    fake.faults.add(path_contains="/api/offset", status=403, headers=headers(), body=body)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert (error.status, error.kind, error.permanent) == (403, "rate_limited", False)
    assert wait - 3 <= error.retry_after <= wait
    assert "credentials" not in error.message


def test_a_403_that_says_nothing_of_a_rate_limit_fails_for_want_of_access(
    fake: FakeSource,
) -> None:
    fake.faults.add(path_contains="/api/offset", status=403, headers={"X-RateLimit-Remaining": "7"})

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert (error.kind, error.permanent, error.retry_after) == ("auth", True, None)
    assert "the source's credentials lack access to it" in error.message


def test_a_page_size_the_source_refuses_points_to_the_page_size_setting(fake: FakeSource) -> None:
    refusal = '{"error": {"code": 400, "message": "Invalid value for limit: at most 500"}}'
    fake.faults.add(path_contains="/api/offset", status=400, body=refusal)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert "Invalid value for limit" in error.message
    assert "if it refuses the page size asked (limit=5), set the source's Page" in error.message


@pytest.mark.parametrize("said", ["Unknown field 'account_limits'", "Parameter sublimit: bad"])
def test_a_400_that_only_mentions_a_word_like_the_page_size_keeps_the_usual_hint(
    fake: FakeSource, said: str
) -> None:
    fake.faults.add(path_contains="/api/offset", status=400, body=json.dumps({"error": said}))

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert "check the source's query parameters" in error.message
    assert "Page size" not in error.message


def test_an_html_error_page_is_a_transient_server_error(fake: FakeSource) -> None:
    html = "<html><body><h1>500 Internal Server Error</h1><p>nginx</p></body></html>"
    fake.faults.add(path_contains="/api/offset", status=500, body=html)
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))
    assert (error.status, error.kind, error.permanent) == (500, "server_error", False)
    assert "HTML error page" in error.message
    assert "<h1>" not in error.message


def test_an_html_error_page_is_quoted_by_its_title_without_the_secrets_it_echoes(
    fake: FakeSource,
) -> None:
    page = (
        f"<html><head><title>Down for maintenance &middot; key {SECRET}</title></head>"
        "<body><h1>Back at 14:00</h1></body></html>"
    )
    fake.faults.add(path_contains="/api/offset", status=503, body=page)
    source = rest_source(
        f"{fake.base_url}/api/offset",
        records_path="data.items",
        source_auth="bearer",
        source_token=SECRET,
    )

    error = failure(source)

    assert (error.status, error.kind, error.permanent) == (503, "server_error", False)
    assert '(an HTML error page: "Down for maintenance · key ' in error.message
    assert "<title>" not in error.message
    assert_safe(error, SECRET)


def test_a_redirect_to_a_login_page_names_the_page_and_points_to_the_authentication(
    fake: FakeSource,
) -> None:
    # A gateway whose session or token expired sends API calls to its sign-in page.
    fake.redirects["/api/offset"] = (302, f"{fake.base_url}/login")
    page = "<html><head><title>Sign in &middot; Inventory</title></head><body>...</body></html>"
    fake.faults.add(path_contains="/login", status=200, body=page)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert error.kind == "not_json"
    assert 'a web page titled "Sign in · Inventory"' in error.message
    assert f"where it was redirected from {fake.base_url}/api/offset" in error.message
    assert "Check the source's authentication and URL" in error.message
    assert_safe(error)


def test_a_body_that_is_not_json_is_worth_a_few_more_attempts(fake: FakeSource) -> None:
    error = failure(rest_source(f"{fake.base_url}/api/maintenance", pagination="none"))
    assert (error.kind, error.permanent, error.max_attempts) == ("not_json", False, 3)
    assert "did not answer JSON" in error.message and "Content-Type text/html" in error.message
    assert_safe(error)


@pytest.mark.parametrize(
    "body, url_query, extra_params, named",
    [
        pytest.param(
            'handleAssets({"data": {"items": []}});',
            "?callback=handleAssets",
            {},
            "the script function 'handleAssets'. Remove the 'callback' parameter",
            id="a callback in the url",
        ),
        pytest.param(
            '/**/ typeof cb === \'function\' && cb({"data": {"items": []}});',
            "",
            {"jsonp": "cb"},
            "the script function 'cb'. Remove the 'jsonp' parameter",
            id="express, a callback in the extra parameters",
        ),
        pytest.param(
            'handle({"data": {"items": []}})',
            "",
            {},
            "the script function 'handle'. Remove the callback (or jsonp) parameter",
            id="a callback the url does not name",
        ),
    ],
)
def test_a_jsonp_answer_fails_at_once_naming_the_callback_to_remove(
    fake: FakeSource, body: str, url_query: str, extra_params: dict, named: str
) -> None:
    fake.faults.add(path_contains="/api/offset", status=200, body=body)
    source = rest_source(
        f"{fake.base_url}/api/offset{url_query}",
        records_path="data.items",
        extra_params=extra_params,
    )

    error = failure(source)

    assert (error.kind, error.permanent) == ("not_json", True)  # no attempt mends it
    assert f"answered JSONP at {fake.base_url}/api/offset" in error.message
    assert named in error.message
    assert "from the source URL or its extra parameters" in error.message


def test_json_followed_by_other_text_fails_at_once_saying_at_which_byte_it_ended(
    fake: FakeSource,
) -> None:
    document = '{"data": {"items": [], "site": "Łódź"}}'  # bytes, not characters, counted
    warning = "\n<br />\n<b>Deprecated</b>: Function strftime() is deprecated in api.php"
    fake.faults.add(path_contains="/api/offset", status=200, body=document + warning)

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert (error.kind, error.permanent) == ("not_json", True)
    assert "answered JSON followed by other text" in error.message
    assert f"its JSON ends at byte {len(document.encode())}," in error.message
    assert "Deprecated" not in error.message


def test_two_json_documents_in_one_answer_fail_at_once_saying_where_the_first_ended(
    fake: FakeSource,
) -> None:
    document = json.dumps({"data": {"items": [fake_record(1)]}})
    fake.faults.add(path_contains="/api/offset", status=200, body=f"{document}\n{document}\n")

    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.items"))

    assert (error.kind, error.permanent) == ("not_json", True)
    assert "answered more than one JSON document" in error.message
    assert f"the first ends at byte {len(document)}, and another follows" in error.message
    assert "JSON Lines" in error.message


def test_an_answer_cut_off_mid_way_is_worth_another_attempt(fake: FakeSource) -> None:
    fake.misbehave("cut_off")
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")
    error = failure(source)
    assert (error.kind, error.permanent) == ("not_json", False)
    assert ids(build_source(source).fetch_page("").records) == every_id(5)


def test_an_answer_that_stalls_mid_way_is_asked_again_saying_it_stopped_sending(
    fake: FakeSource,
) -> None:
    fake.misbehave("stall")
    source = rest_source(
        f"{fake.base_url}/api/offset", records_path="data.items", request_timeout=0.3
    )

    error = failure(source)

    assert (error.kind, error.permanent) == ("timeout", False)
    assert "stopped sending a page mid-way" in error.message
    assert "nothing more came for 0.3 s (the source's request timeout)" in error.message
    assert ids(build_source(source).fetch_page("").records) == every_id(5)


def test_an_answer_shorter_than_its_content_length_is_asked_again_saying_so(
    fake: FakeSource,
) -> None:
    fake.misbehave("cut_short")
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")

    error = failure(source)

    assert (error.kind, error.permanent) == ("unavailable", False)
    assert "the connection closed after" in error.message
    assert "bytes its Content-Length announced" in error.message
    assert ids(build_source(source).fetch_page("").records) == every_id(5)


def test_an_answer_whose_gzip_is_corrupt_is_asked_again_a_few_times_saying_so(
    fake: FakeSource,
) -> None:
    fake.misbehave("bad_gzip")
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")

    error = failure(source)

    assert (error.kind, error.permanent, error.max_attempts) == ("unavailable", False, 3)
    assert "whose compression (Content-Encoding gzip) is corrupt" in error.message
    assert ids(build_source(source).fetch_page("").records) == every_id(5)


def test_a_records_selector_matching_nothing_names_the_path_and_what_is_there(
    fake: FakeSource,
) -> None:
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data.rows"))
    assert (error.kind, error.permanent) == ("bad_records", True)
    assert "'data.rows'" in error.message
    assert "('data' holds items (a list))" in error.message
    assert_safe(error)
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="data"))
    assert "'data' is not a list of records but an object" in error.message
    assert "('data' holds items (a list))" in error.message
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="results"))
    assert "(the answer holds data, meta)" in error.message


@pytest.mark.parametrize(
    "items",
    [
        pytest.param({"17": {"name": "a"}, "18": {"name": "b"}}, id="numbers"),
        pytest.param({"-Nx1": {"id": "-Nx1"}, "-Nx2": {"id": "-Nx2"}}, id="ids they repeat"),
    ],
)
def test_records_keyed_by_their_ids_fail_saying_so_and_what_reads_them(fake, items) -> None:
    fake.faults.add(path_contains="/api/page", status=200, body=json.dumps({"items": items}))

    error = failure(rest_source(f"{fake.base_url}/api/page", records_path="items"))

    assert (error.kind, error.permanent) == ("bad_records", True)
    assert "'items' holds its records as an object keyed by their ids" in error.message
    assert "a plug-in source" in error.message


def test_a_list_of_ids_instead_of_records_fails_saying_to_ask_for_whole_records(fake) -> None:
    fake.faults.add(path_contains="/api/page", status=200, body='{"items": [17, 18]}')

    error = failure(rest_source(f"{fake.base_url}/api/page", records_path="items"))

    assert "record 1 is a number, not a JSON object" in error.message
    assert "lists ids or names, not records" in error.message


def test_a_missing_endpoint_is_permanent_with_a_hint(fake: FakeSource) -> None:
    error = failure(rest_source(f"{fake.base_url}/api/nowhere"))
    assert (error.status, error.kind, error.permanent) == (404, "not_found", True)
    assert "check the source URL" in error.message


def test_a_slow_source_times_out_as_a_transient_error(fake: FakeSource) -> None:
    fake.faults.add(path_contains="/api/offset", status=0, delay=1.0)
    error = failure(rest_source(f"{fake.base_url}/api/offset", request_timeout=0.2))
    assert (error.kind, error.permanent) == ("timeout", False)


@pytest.mark.parametrize("route", ["/api/huge", "/api/huge-declared"])
def test_a_page_over_50_mb_is_refused_without_reading_it_all(fake: FakeSource, route) -> None:
    fake.huge_bytes = 200 * ONE_MB  # generated as it is sent: the test never holds it
    error = failure(rest_source(f"{fake.base_url}{route}", pagination="none"))
    assert (error.kind, error.permanent) == ("too_large", True)
    assert "larger than 50 MB" in error.message and "lower the page size" in error.message
    wait_for(lambda: fake.streamed, timeout=10, message="the server never stopped sending")
    assert fake.streamed[0] < 100 * ONE_MB  # the source hung up instead of reading on


def test_json_nested_absurdly_deep_is_refused_clearly(fake: FakeSource) -> None:
    fake.misbehave("deep")
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="items"))
    assert (error.kind, error.permanent) == ("bad_json", True)
    assert "nested too deeply" in error.message
    assert_safe(error)


def test_a_page_of_millions_of_empty_objects_is_refused_before_it_is_parsed(
    fake: FakeSource,
) -> None:
    fake.misbehave("flood")  # 49 MB of {}: 17 million dicts and well over 1 GB once parsed
    error = failure(rest_source(f"{fake.base_url}/api/offset", records_path="items"))
    assert (error.kind, error.permanent) == ("too_large", True)
    assert "JSON values" in error.message and "SOURCE_MAX_RECORDS_PER_PAGE" in error.message


def test_a_page_with_more_records_than_allowed_is_refused(fake: FakeSource, settings) -> None:
    settings.SOURCE_MAX_RECORDS_PER_PAGE = 10
    error = failure(rest_source(f"{fake.base_url}/api/all", pagination="none"))
    assert (error.kind, error.permanent) == ("too_large", True)
    assert "23 records in one page" in error.message
    assert "SOURCE_MAX_RECORDS_PER_PAGE = 10" in error.message


def test_a_source_dripping_its_answer_is_cut_off_at_the_page_budget(
    fake: FakeSource, settings
) -> None:
    settings.SOURCE_REQUEST_BUDGET_SECONDS = 1  # at least twice the request timeout: 3 s
    fake.drip_interval = 0.05  # never silent long enough for the read timeout
    fake.misbehave("drip")
    source = rest_source(f"{fake.base_url}/api/offset", request_timeout=1.5)
    error = failure(source)
    assert (error.kind, error.permanent) == ("timeout", False)
    assert "took more than 3 s" in error.message
    assert "SOURCE_REQUEST_BUDGET_SECONDS" in error.message
    wait_for(lambda: fake.streamed, timeout=10, message="the source never stopped dripping")
    full_answer = len(json.dumps({"data": {"items": [fake_record(i) for i in range(1, 6)]}}))
    assert fake.streamed[0] < full_answer / 2  # we hung up well before the end


def test_a_source_dripping_its_answer_slowly_is_cut_off_at_the_deadline_not_after_a_read(
    fake: FakeSource, settings
) -> None:
    settings.SOURCE_REQUEST_BUDGET_SECONDS = 6
    # Each read ends 0.7 s before the 3 s read timeout, however loaded the machine; the one
    # waiting at the deadline would end at 6.9 s.
    fake.drip_interval = 2.3
    fake.misbehave("drip")
    error, seconds = timed_failure(rest_source(f"{fake.base_url}/api/offset", request_timeout=3))
    assert "took more than 6 s" in error.message
    assert seconds < 6.8


def timed_failure(source: ImportSource) -> tuple[SourceError, float]:
    """The error fetching the first page ends in, and the seconds it took to end."""
    started = time.monotonic()
    error = failure(source)
    return error, time.monotonic() - started


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_source_dripping_its_headers_is_cut_off_at_the_page_budget(
    serve, certificate, settings, tls: bool
) -> None:
    settings.SOURCE_REQUEST_BUDGET_SECONDS = 2
    fake = serve(records=N, tls=certificate if tls else None)
    fake.drip_interval = 0.2  # never silent for the read timeout; the headers take 17 s
    fake.misbehave("drip_head")
    source = rest_source(
        f"{fake.base_url}/api/offset",
        request_timeout=1.0,
        ca_bundle=certificate[0] if tls else "",
    )
    error, seconds = timed_failure(source)
    assert (error.kind, error.permanent) == ("timeout", False)
    assert error.message == (
        f"source 'cmdb' took more than 2 s to send a page at {fake.base_url}/api/offset "
        "(SOURCE_REQUEST_BUDGET_SECONDS): it answers too slowly"
    )
    assert 1.9 <= seconds < 2 + 3
    wait_for(lambda: fake.streamed, timeout=10, message="the source never stopped dripping")
    assert fake.streamed[0] < 20  # it saw us hang up well before the end of its headers


def test_a_source_slower_than_its_request_timeout_is_told_which_setting_to_raise(
    fake: FakeSource,
) -> None:
    fake.faults.add(path_contains="/api/offset", delay=1.5, times=1)

    error = failure(rest_source(f"{fake.base_url}/api/offset", request_timeout=0.5))

    assert (error.kind, error.permanent) == ("timeout", False)
    assert error.message == (
        f"source 'cmdb' did not answer within 0.5 s at {fake.base_url}/api/offset (the "
        "source's request timeout; if the source is slow, give it a longer request timeout)"
    )


def test_after_a_page_cut_off_mid_headers_the_next_one_arrives_whole(
    fake: FakeSource, settings
) -> None:
    settings.SOURCE_REQUEST_BUDGET_SECONDS = 2
    fake.drip_interval = 0.2
    fake.misbehave("drip_head")
    source = rest_source(
        f"{fake.base_url}/api/offset", records_path="data.items", request_timeout=1.0
    )
    rest = build_source(source)
    started = time.monotonic()
    with pytest.raises(SourceError, match="took more than 2 s"):
        rest.fetch_page("")
    assert time.monotonic() - started < 2 + 3
    page = rest.fetch_page("")  # the same session: the cut connection must not come back
    assert ids(page.records) == [1, 2, 3, 4, 5]


def test_a_token_endpoint_dripping_its_headers_is_cut_off_at_the_page_budget(
    serve, settings
) -> None:
    settings.SOURCE_REQUEST_BUDGET_SECONDS = 2
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET)
    fake.drip_interval = 0.2
    fake.misbehave("drip_head", path_contains="/oauth/token")
    error, seconds = timed_failure(oauth_source(fake, request_timeout=1.0))
    assert (error.kind, error.permanent) == ("timeout", False)
    assert error.message == (
        f"source 'cmdb' took more than 2 s to send a token answer at {fake.base_url}/oauth/token "
        "(SOURCE_REQUEST_BUDGET_SECONDS): it answers too slowly"
    )
    assert seconds < 2 + 3
    assert_safe(error, SECRET)


# --- TLS -----------------------------------------------------------------------------------


def test_it_trusts_a_private_ca_from_the_ca_bundle(serve, certificate, monkeypatch) -> None:
    fake = serve(records=N, tls=certificate)
    verify_used: list[Any] = []
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        verify_used.append(kwargs.get("verify"))
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    source = rest_source(f"{fake.base_url}/api/all", pagination="none", ca_bundle=certificate[0])
    records, _ = walk(source)
    assert ids(records) == every_id()
    [verify] = set(verify_used)
    assert Path(verify).read_text() == certificate[0]


def test_without_the_ca_bundle_an_unknown_certificate_is_refused(serve, certificate) -> None:
    fake = serve(tls=certificate)
    error = failure(rest_source(f"{fake.base_url}/api/all", pagination="none"))
    assert (error.kind, error.permanent) == ("tls", True)
    assert "trusted CA certificates" in error.message


# --- files ---------------------------------------------------------------------------------


def csv_bytes(count: int = N, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    rows = [delimiter.join(("id", "name", "site"))]
    rows += [delimiter.join(str(v) for v in fake_record(i).values()) for i in range(1, count + 1)]
    return "\n".join(rows).encode(encoding) + b"\n"


def test_csv_cursors_are_byte_offsets_of_each_chunk(media: Path) -> None:
    content = csv_bytes()
    records, cursors = walk(uploaded(media, "assets.csv", content))
    assert ids(records) == every_id()
    assert records[0] == {"id": "1", "name": "asset-001", "site": "Lyon"}
    offsets = [str(content.index(f"\n{i},".encode()) + 1) for i in (6, 11, 16, 21)]
    assert places(cursors[1:]) == offsets


def test_a_csv_chunk_is_fetched_again_from_its_cursor_alone(media: Path) -> None:
    source = uploaded(media, "assets.csv", csv_bytes())
    _, cursors = walk(source)
    page = build_source(source).fetch_page(cursors[3])  # the header is read again
    assert ids(page.records) == [16, 17, 18, 19, 20]
    assert set(page.records[0]) == {"id", "name", "site"}


def test_csv_with_a_bom(media: Path) -> None:
    records, _ = walk(uploaded(media, "bom.csv", b"\xef\xbb\xbf" + csv_bytes()))
    assert ids(records) == every_id()
    assert set(records[0]) == {"id", "name", "site"}


def test_a_utf8_csv_given_as_windows_1252_is_read_as_its_byte_order_mark_says(
    media: Path,
) -> None:
    content = "id,name,site\n1,asset-001,Zürich\n".encode()
    source = uploaded(media, "excel.csv", b"\xef\xbb\xbf" + content, file_encoding="cp1252")

    records, _ = walk(source)

    assert records == [{"id": "1", "name": "asset-001", "site": "Zürich"}]


def test_a_csv_columns_without_a_name_are_left_out(media: Path) -> None:
    content = b"id,name,,\n1,asset-001,,\n2,asset-002,,\n"

    records, _ = walk(uploaded(media, "sheet.csv", content))

    assert records == [{"id": "1", "name": "asset-001"}, {"id": "2", "name": "asset-002"}]


def test_a_csv_ending_lines_with_a_carriage_return_alone_says_so(media: Path) -> None:
    error = failure(uploaded(media, "mac.csv", b"id,name\r1,asset-001\r2,asset-002\r"))

    assert "carriage return outside quotes" in error.message


def test_csv_with_semicolons_and_quoted_line_breaks(media: Path) -> None:
    lines = ["id;name;note"]
    for i in range(1, N + 1):
        note = f'"first line\nsecond; line {i}"' if i % 3 == 0 else f"note {i}"
        lines.append(f"{i};asset-{i:03d};{note}")
    source = uploaded(media, "semi.csv", "\r\n".join(lines).encode(), csv_delimiter=";")
    records, _ = walk(source)
    assert ids(records) == every_id()
    assert records[2]["note"] == "first line\nsecond; line 3"
    assert records[3]["note"] == "note 4"


def test_csv_in_latin_1(media: Path) -> None:
    content = "id,name,city\n1,Müller,Zürich\n2,Åsa,Malmö\n".encode("latin-1")
    records, _ = walk(uploaded(media, "latin.csv", content, file_encoding="latin-1"))
    assert records == [
        {"id": "1", "name": "Müller", "city": "Zürich"},
        {"id": "2", "name": "Åsa", "city": "Malmö"},
    ]


def test_a_csv_said_to_be_latin_1_is_read_as_windows_1252_as_browsers_do(media: Path) -> None:
    # A European spreadsheet's export: what it calls Latin-1 is Windows-1252.
    content = "id;owner;price\n1;O’Brien;1.200 €\n2;Šimek – Müller;…\n".encode("cp1252")
    content += b"3;\x81;x\n"  # a byte Windows-1252 leaves undefined stands for itself

    records, _ = walk(
        uploaded(media, "excel.csv", content, file_encoding="latin-1", csv_delimiter=";")
    )

    assert [record["owner"] for record in records] == ["O’Brien", "Šimek – Müller", "\x81"]
    assert records[0]["price"] == "1.200 €"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "UTF8", "cp1252"])
def test_a_csv_in_an_encoding_named_as_people_name_them_is_read(media: Path, encoding: str) -> None:
    content = b"\xef\xbb\xbf" + csv_bytes() if encoding == "utf-8-sig" else csv_bytes()
    records, _ = walk(uploaded(media, "named.csv", content, file_encoding=encoding))
    assert ids(records) == every_id()


def test_a_csv_with_a_spreadsheets_delimiter_line_is_read_with_that_delimiter(
    media: Path,
) -> None:
    content = b"sep=;\r\nid;name;site\r\n" + csv_bytes(delimiter=";").split(b"\n", 1)[1]

    records, _ = walk(uploaded(media, "excel.csv", content))

    assert ids(records) == every_id()
    assert records[0] == {"id": "1", "name": "asset-001", "site": "Lyon"}


def test_a_csv_whose_first_column_is_named_like_a_tag_is_read(media: Path) -> None:
    records, _ = walk(uploaded(media, "tags.csv", b"<header>,name\nx,a\n"))
    assert records == [{"<header>": "x", "name": "a"}]


def test_a_csv_field_longer_than_the_csv_modules_limit_is_read(media: Path) -> None:
    notes = "x" * 300_000  # a certificate chain, a long description
    records, _ = walk(uploaded(media, "long.csv", f"id,notes\n1,{notes}\n".encode()))
    assert records == [{"id": "1", "notes": notes}]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (gzip.compress(csv_bytes()), "is compressed (gzip)"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(100), "is a ZIP archive (an Excel workbook"),
        ("id,name\n1,a\n".encode("utf-16"), "is UTF-16"),
        (b"\n  <!DOCTYPE html><html><body>Sign in</body></html>", "is a web page (HTML)"),
        (b"\xef\xbb\xbf<!doctype html>\n<html>", "is a web page (HTML)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "is an Office document"),
    ],
    ids=["gzip", "workbook", "utf-16", "login page", "page after a BOM", "excel 97"],
)
def test_a_file_that_is_no_text_to_read_is_named_as_what_it_is(
    media: Path, content: bytes, said: str
) -> None:
    error = failure(uploaded(media, "export.csv", content))
    assert (error.kind, error.permanent) == ("bad_file", True)
    assert said in error.message
    assert "encoding" not in error.message and "delimiter" not in error.message


def unicode_text(rows: list[list[str]]) -> bytes:
    """A spreadsheet's "Unicode text" export: UTF-16 LE with its byte-order mark, tabs
    between fields, CRLF after each row."""
    text = "".join("\t".join(row) + "\r\n" for row in rows)
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


PEOPLE = [["id", "name", "city"], ["1", "Zoë Müller", "Zürich"], ["2", "José Núñez", "Málaga"]]


def test_a_unicode_text_export_at_a_url_is_read_with_its_accents(serve) -> None:
    # Served without a length nor a final line break: whether its last row is whole is
    # judged on its UTF-8 text.
    content = unicode_text(PEOPLE).removesuffix("\r\n".encode("utf-16-le"))
    url = serve().add_file("people.txt", content, close_delimited=True)
    source = ImportSource(name="export", source_kind="csv", source_url=url, csv_delimiter="\t")

    records, _ = walk(source)

    assert records == [
        {"id": "1", "name": "Zoë Müller", "city": "Zürich"},
        {"id": "2", "name": "José Núñez", "city": "Málaga"},
    ]


def test_a_unicode_text_export_read_with_commas_is_told_to_set_the_delimiter_to_tab(
    serve,
) -> None:
    url = serve().add_file("people.txt", unicode_text(PEOPLE))
    source = ImportSource(name="export", source_kind="csv", source_url=url, csv_delimiter=",")

    error = failure(source)

    assert error.kind == "bad_file"
    assert "line 1 of the file (the header) is one field, 'id\\tname\\tcity'" in error.message
    assert "set the source's CSV delimiter to tab" in error.message


def test_a_gzip_file_at_a_url_that_decompresses_beyond_the_limit_is_refused_naming_it(
    serve, monkeypatch
) -> None:
    monkeypatch.setattr(conversions, "MAX_FILE_BYTES", ONE_MB)
    bomb = gzip.compress(b"id,name\n" + b"1," + b"x" * (20 * ONE_MB) + b"\n")
    url = serve().add_file("export.csv.gz", bomb, content_type="application/gzip")
    source = ImportSource(name="export", source_kind="csv", source_url=url)

    error = failure(source)

    assert (error.kind, error.permanent) == ("too_large", True)
    assert "decompresses to more than 1 MB, the most a source file may hold" in error.message
    assert os.listdir(files._download_dir()) == []  # nothing of it left on the disk


def test_a_gzip_file_at_a_url_cut_short_is_downloaded_again(serve) -> None:
    compressed = gzip.compress(csv_bytes(1000))
    url = serve().add_file("export.csv.gz", compressed[: len(compressed) // 2])
    source = ImportSource(name="export", source_kind="csv", source_url=url)

    error = failure(source)

    assert (error.kind, error.permanent) == ("unavailable", False)
    assert "is compressed (gzip) and ends before the end of its compressed data" in error.message


def test_csv_without_a_header_uses_the_configured_field_names(media: Path) -> None:
    content = b"".join(f"{i},asset-{i:03d}\n".encode() for i in range(1, N + 1))
    source = uploaded(media, "plain.csv", content, csv_has_header=False, csv_fieldnames="id, name")
    records, cursors = walk(source)
    assert ids(records) == every_id()
    assert records[0] == {"id": "1", "name": "asset-001"}
    assert places(cursors)[1] == str(content.index(b"6,asset"))


def test_csv_skips_empty_lines(media: Path) -> None:
    content = b"id,name\n\n1,a\n\n\n2,b\n   \n3,c\n\n"
    records, _ = walk(uploaded(media, "gaps.csv", content))
    assert ids(records) == [1, 2, 3]


def test_malformed_csv_fails_with_the_line_number(media: Path) -> None:
    content = b'id,name\n1,a\n2,b\n3,"c"x\n4,d\n'
    error = failure(uploaded(media, "bad.csv", content))
    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "line 4 " in error.message


def test_a_csv_row_with_too_many_fields_fails_with_the_line_number(media: Path) -> None:
    error = failure(uploaded(media, "wide.csv", b"id,name\n1,a\n2,b,extra\n"))
    assert "line 3 " in error.message and "3 fields" in error.message


def test_a_csv_cut_off_mid_row_fails_instead_of_ending_with_a_broken_record(
    media: Path,
) -> None:
    # A download whose connection closed early, with no length to check it against.
    content = csv_bytes(count=20)
    cut = content.index(b"\n18,") + len(b"\n18,asse")

    error = walk_failure(uploaded(media, "cut.csv", content[:cut]))

    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "line 19 " in error.message and "looks cut off" in error.message


def test_a_csv_cut_off_mid_row_fails_though_another_row_left_a_field_out(media: Path) -> None:
    # Exporters leave trailing empty fields out: one row of the page did, the cut one too.
    content = csv_bytes(count=20).replace(b"\n5,asset-005,Porto\n", b"\n5,asset-005\n")
    assert b"\n5,asset-005\n" in content
    cut = content.index(b"\n18,") + len(b"\n18,asse")

    error = walk_failure(uploaded(media, "cut.csv", content[:cut], page_size=25))

    assert "line 19 " in error.message and "looks cut off" in error.message


def test_a_csv_whose_last_row_has_no_line_break_is_read_whole(media: Path) -> None:
    records, _ = walk(uploaded(media, "no-break.csv", csv_bytes().rstrip(b"\n")))
    assert ids(records) == every_id()
    assert records[-1]["site"] == fake_record(N)["site"]


def hardware_csv(row_5: str) -> bytes:
    """An inventory export of 10 rows, its fifth written as `row_5`."""
    rows = [f"S{i:03d},host{i:02d},Owner {i},{8 * i}" for i in range(1, 11)]
    rows[4] = row_5
    return "\n".join(["serial,hostname,owner,ram", *rows, ""]).encode()


@pytest.mark.parametrize("page_size", [5, 4, 50], ids=["page ends between", "page starts", "mid"])
def test_a_csv_row_broken_by_a_line_break_outside_quotes_fails_naming_its_lines(
    media: Path, page_size: int
) -> None:
    content = hardware_csv("S005,host05,Jürgen\nWeiß,40")

    error = walk_failure(uploaded(media, "hr.csv", content, page_size=page_size))

    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "lines 6 and 7 of the file hold 3 and 2 fields" in error.message
    assert "line break outside quotes" in error.message and "quote the fields" in error.message


def read_with_notes(source: ImportSource) -> tuple[list[dict], list[str]]:
    """Every record, and what the pages note, each once (a row may be seen by two pages)."""
    cursor, records, notes = "", [], []
    while True:
        page = build_source(source).fetch_page(cursor)
        records += page.records
        notes += [note for note in page.notes if note not in notes]
        if page.next_cursor is None:
            return records, notes
        cursor = page.next_cursor


@pytest.mark.parametrize("page_size", [5, 50], ids=["page ends between", "mid"])
@pytest.mark.parametrize(
    "row_5",
    ["S005,host05,Jürgen Weiß,\n40", "S005,host05,Jürgen Weiß,4\n0"],
    ids=["after the delimiter", "in the last field"],
)
def test_a_csv_row_maybe_broken_after_its_last_delimiter_is_read_and_its_lines_noted(
    media: Path, page_size: int, row_5: str
) -> None:
    # A line of one value may as well be a row of its own: the rows arrive, the lines are named.
    source = uploaded(media, "hr.csv", hardware_csv(row_5), page_size=page_size)

    records, notes = read_with_notes(source)

    assert len(records) == 11
    assert len(notes) == 1
    assert notes[0].startswith(
        "CSV: line 7 of the file holds 1 field of the 4 field names: if it is the end of the "
        "row before it, broken by a line break outside quotes"
    )
    assert "Check those lines of the file" in notes[0]


@pytest.mark.parametrize("page_size", [4, 50], ids=["page starts", "mid"])
def test_a_csv_whose_rows_leave_fields_out_is_read_whole_though_two_add_up_to_one_more(
    media: Path, page_size: int
) -> None:
    # Rows 5 and 6 leave fields out: 2 and 3 fields, one more than the 4 names together.
    content = hardware_csv("S005,host05").replace(b"S006,host06,Owner 6,48", b"S006,host06,x")

    records, notes = read_with_notes(uploaded(media, "ragged.csv", content, page_size=page_size))

    assert [record["serial"] for record in records] == [f"S{i:03d}" for i in range(1, 11)]
    assert records[5] == {"serial": "S006", "hostname": "host06", "owner": "x", "ram": ""}
    assert notes == []


def test_a_csv_row_holding_only_its_id_is_read_as_a_record(media: Path) -> None:
    records, notes = read_with_notes(uploaded(media, "ids.csv", hardware_csv("S005")))

    assert len(records) == 10
    assert records[4] == {"serial": "S005", "hostname": "", "owner": "", "ram": ""}
    assert notes == []


def test_a_csv_ending_with_a_line_of_one_value_is_read_and_the_line_noted(media: Path) -> None:
    content = hardware_csv("S005,host05,Owner 5,40") + b"10 rows\n"

    records, notes = read_with_notes(uploaded(media, "total.csv", content, page_size=50))

    assert len(records) == 11 and records[-1]["serial"] == "10 rows"
    assert len(notes) == 1
    assert notes[0].startswith("CSV: line 12 of the file holds 1 field of the 4 field names")


def test_two_short_rows_adding_up_to_one_row_are_read_and_noted_when_ids_tell_nothing(
    media: Path,
) -> None:
    # Names in the first column: nothing tells a row's start from the rest of a row.
    rows = ["Ann Lee,HR,Paris,1", "Bo,IT,Oslo,2", "Cy Ng,Ops,Ro\nme,3", "Jean-Luc Roy,IT,Lyon,4"]
    content = "\n".join(["name,team,site,desk", *rows, ""]).encode()

    records, notes = read_with_notes(uploaded(media, "people.csv", content, page_size=50))

    assert len(records) == 5
    assert len(notes) == 1
    assert notes[0].startswith(
        "CSV: lines 4 and 5 of the file hold 3 and 2 fields, one more than the 4 field names "
        "together: if they are one row, broken by a line break outside quotes"
    )


@pytest.mark.parametrize(
    "content",
    [
        b"id,name,site\n1,a,Lyon\n2,b\n3,c",  # leaves trailing empty fields out, as it does
        b"id,name,site\n1,a,Lyon\n2,b,Oslo\n3,c\n  ",  # the short row ends its line
        b"tag\nprod\ntag\ndev\n",  # one column: a value may be its name
        b"id,name,site\n1,a,Lyon\n2,b\n3,c,Oslo\n4,d\n" + b"5,e,Rome\n" * 36 + b"6,f",
        b"a,b,c,d\n1,x,y,z\n2,x,y\n3,x\n4\n5,x,y,z\n6,x,y\n7,x\n8,x,y,z\n",
    ],
    ids=["ragged", "then a blank line", "one column", "two short rows of 40", "short in a row"],
)
def test_csv_files_that_are_whole_are_read_whole(media: Path, content: bytes) -> None:
    records, _ = walk(uploaded(media, "whole.csv", content, page_size=50))
    assert len(records) == content.count(b"\n") - (content.endswith(b"\n") or b"  " in content)


def test_a_csv_with_a_header_read_as_one_without_says_to_read_its_header(media: Path) -> None:
    source = uploaded(
        media, "named.csv", csv_bytes(), csv_has_header=False, csv_fieldnames="id,name,site"
    )

    error = failure(source)

    assert "line 1 " in error.message and "set the source's CSV options to 'has a header'" in (
        error.message
    )


@pytest.mark.parametrize(
    "delimiter, named, typed",
    [(";", "semicolons", "';'"), ("\t", "tabs", "tab"), ("|", "'|'", "'|'")],
)
def test_a_csv_read_with_another_delimiter_than_its_own_says_which_it_uses(
    media: Path, delimiter: str, named: str, typed: str
) -> None:
    error = failure(uploaded(media, "semi.csv", csv_bytes(delimiter=delimiter)))

    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "line 1 " in error.message
    assert f"separated by {named}, not commas" in error.message
    assert error.message.endswith(f"set the source's CSV delimiter to {typed}")


def test_a_csv_whose_header_fields_each_hold_another_delimiter_says_which_it_uses(
    media: Path,
) -> None:
    # A European spreadsheet's export: its one comma splits the header in two.
    content = "Serial;Name, Vorname;Ort\nS1;Müller, Hans;Berlin\n".encode()

    error = failure(uploaded(media, "semi.csv", content))

    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "line 1 of the file (the header) reads as 2 fields" in error.message
    assert error.message.endswith(
        "its fields seem separated by semicolons, not commas; set the source's CSV delimiter to ';'"
    )


@pytest.mark.parametrize(
    ("delimiter", "content"),
    [
        (";", "Name, Vorname;Ort, PLZ\nMüller, Hans;Berlin\nMeier, Eva;Bonn\n"),
        ("\t", "Name, first\tName, last\nAnn\tLee\n"),
    ],
    ids=["semicolons", "tabs"],
)
def test_a_csv_whose_header_names_each_hold_a_comma_is_read_when_its_rows_do_not(
    media: Path, delimiter: str, content: str
) -> None:
    # Read with its own delimiter, each name holds a comma; its rows show whose it is.
    source = uploaded(media, "names.csv", content.encode(), csv_delimiter=delimiter)

    records, _ = walk(source)

    assert [list(record) for record in records][0] == content.split("\n")[0].split(delimiter)
    assert len(records) == content.count("\n") - 1


def test_a_csv_whose_header_names_hold_another_delimiter_here_and_there_is_read(
    media: Path,
) -> None:
    records, _ = walk(uploaded(media, "odd.csv", b"id,size (GB; approx),site\n1,8,Lyon\n"))
    assert records == [{"id": "1", "size (GB; approx)": "8", "site": "Lyon"}]


@pytest.mark.parametrize(
    "content", [b"", b"\r\n\r\n", b"\xef\xbb\xbf"], ids=["0 bytes", "blank lines", "a BOM"]
)
def test_an_empty_csv_fails_instead_of_being_read_as_no_records(
    media: Path, content: bytes
) -> None:
    error = failure(uploaded(media, "empty.csv", content))

    assert (error.kind, error.permanent) == ("empty_file", True)
    assert "the file is empty (not even a header row)" in error.message


def test_a_csv_of_only_its_header_is_read_as_no_records(media: Path) -> None:
    records, _ = walk(uploaded(media, "none.csv", b"id,name,site\r\n"))
    assert records == []


@pytest.mark.parametrize(
    "row", ['1, "Smith", Lyon', '1, "Smith, John", Lyon'], ids=["same fields", "one more"]
)
def test_a_csv_value_quoted_after_a_space_fails_naming_the_line(media: Path, row: str) -> None:
    # A script's ", ".join(): the quotes would arrive as characters, or shift the columns.
    content = f"id,name,site\n2,Lee,Oslo\n{row}\n".encode()

    error = failure(uploaded(media, "script.csv", content))

    assert "line 3 of the file" in error.message
    assert "a value with a space before its opening quote" in error.message
    assert "remove the spaces after the delimiters" in error.message


def test_a_quoted_csv_value_that_starts_with_a_space_and_a_quote_is_read_as_written(
    media: Path,
) -> None:
    # A spreadsheet cell ' "Big" Data' or ' "TBD"' is written quoted, its quotes doubled:
    # the value is whole, and its quotes are characters of it on purpose.
    content = b'id,name,site\n1," ""TBD""",Lyon\n2,"a, "" quoted""","  ""x"""\n'

    records, _ = walk(uploaded(media, "quoted.csv", content))

    assert records == [
        {"id": "1", "name": ' "TBD"', "site": "Lyon"},
        {"id": "2", "name": 'a, " quoted"', "site": '  "x"'},
    ]


def test_a_csv_with_a_title_line_before_its_header_says_to_remove_it(media: Path) -> None:
    content = b"Inventory report, 2024-05-01\n" + csv_bytes()

    error = failure(uploaded(media, "report.csv", content))

    assert "line 2 of the file has 3 fields" in error.message
    assert "if a title line comes before the header, remove it" in error.message


def test_a_csv_row_with_more_fields_than_names_says_to_quote_its_values(media: Path) -> None:
    error = failure(uploaded(media, "wide.csv", b"id,name\n1,a\n2,Lee, Ann\n"))
    assert error.message.endswith(
        "line 3 of the file has 3 fields, but there are 2 field names: quote the values that "
        "hold the delimiter (commas), or fix the row"
    )


def test_a_csv_without_header_refuses_a_field_name_given_twice(media: Path) -> None:
    source = uploaded(
        media, "plain.csv", b"1,a,Lyon\n", csv_has_header=False, csv_fieldnames="id,name,id"
    )

    error = failure(source)

    assert (error.kind, error.permanent) == ("config", True)
    assert "the CSV field names name 'id' twice" in error.message


def test_a_csv_repeating_its_header_mid_file_fails_naming_the_line(media: Path) -> None:
    joined = csv_bytes(count=3) + csv_bytes(count=2)  # two exports, one after the other

    error = failure(uploaded(media, "joined.csv", joined))

    assert "line 5 " in error.message and "repeats the header" in error.message


def test_a_wrong_encoding_fails_with_the_line_number_and_the_setting_to_change(
    media: Path,
) -> None:
    content = "id,name\n1,a\n2,Müller\n".encode("latin-1")
    error = failure(uploaded(media, "enc.csv", content))
    assert "line 3 " in error.message and "is not valid utf-8 (its byte 0xfc)" in error.message
    assert "set the source's file encoding to the one the file is written in" in error.message


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_utf8_csv_without_a_byte_order_mark_given_as_a_code_page_is_read_as_utf8(
    media: Path, encoding: str
) -> None:
    # An export that moved to UTF-8 while the source still names the spreadsheet's code page.
    rows = [f"{i},asset-{i:03d},Lyon" for i in range(1, N + 1)]
    rows[19] = "20,Ñuñez – Müller,Zürich"  # a later page's row: every page reads alike
    content = "\n".join(["id,name,site", *rows, ""]).encode()

    records, _ = walk(uploaded(media, "utf8.csv", content, file_encoding=encoding))

    assert ids(records) == every_id()
    assert records[19] == {"id": "20", "name": "Ñuñez – Müller", "site": "Zürich"}


def test_a_csv_in_windows_1252_is_still_read_as_windows_1252(media: Path) -> None:
    # 'Ã©' written in Windows-1252 is two bytes that form valid UTF-8 ('é'); a file of one
    # such value and another accented letter alone is not valid UTF-8 as a whole.
    content = "id,name\n1,Ã©cole\n2,Müller\n".encode("cp1252")

    records, _ = walk(uploaded(media, "excel.csv", content, file_encoding="cp1252"))

    assert [record["name"] for record in records] == ["Ã©cole", "Müller"]


@pytest.mark.parametrize("kind", ["csv", "jsonl", "json"])
def test_a_file_that_changes_during_the_import_fails_it_instead_of_losing_records(
    media: Path, kind: str
) -> None:
    # Lines of one length: the new file's line starts are where the old file's were.
    rows = [{"id": i, "name": f"asset-{i:03d}"} for i in range(1, 21)]

    def content(rows) -> bytes:
        if kind == "csv":
            return ("id,name\n" + "".join(f"{r['id']:03d},{r['name']}\n" for r in rows)).encode()
        if kind == "jsonl":
            return "".join(json.dumps(r) + "\n" for r in rows).encode()
        return json.dumps(rows).encode()

    source = uploaded(media, f"assets.{kind}", content(rows))
    first = build_source(source).fetch_page("")
    (media / "source-files" / f"assets.{kind}").write_bytes(content(rows[1:]))  # one row less

    with pytest.raises(SourceError) as changed:
        build_source(source).fetch_page(first.next_cursor)

    assert (changed.value.kind, changed.value.permanent) == ("file_changed", True)
    assert "the file changed during the import" in changed.value.message


def test_a_cursor_that_is_not_a_line_start_means_the_file_changed(media: Path) -> None:
    error = failure(uploaded(media, "assets.csv", csv_bytes()), cursor="15")
    assert (error.kind, error.permanent) == ("file_changed", True)


def test_a_csv_url_is_downloaded_once_with_the_source_auth(serve, monkeypatch) -> None:
    fake = serve(auth="bearer", secret=SECRET)
    url = fake.add_file("assets.csv", csv_bytes())
    source = ImportSource(
        name="export",
        source_kind="csv",
        source_url=url,
        page_size=5,
        source_auth="bearer",
        source_token=SECRET,
    )
    records, _ = walk(source)
    assert ids(records) == every_id()
    assert len(fake.requests_to("/files/assets.csv")) == 1
    monkeypatch.setattr(files, "DOWNLOAD_MAX_AGE_SECONDS", 0.0)
    build_source(source).fetch_page("")
    assert len(fake.requests_to("/files/assets.csv")) == 2


def test_each_import_downloads_the_file_afresh(serve, media: Path) -> None:
    # Rows added to the export between two imports are read by the second, in any worker.
    fake = serve()
    url = fake.add_file("assets.csv", csv_bytes(N))
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=100)
    first = build_source(source, execution_id=1).fetch_page("")
    fake.add_file("assets.csv", csv_bytes(N + 3))

    second = build_source(source, execution_id=2).fetch_page("")

    assert (len(first.records), len(second.records)) == (N, N + 3)
    assert len(fake.requests_to("/files/assets.csv")) == 2


@pytest.mark.parametrize(
    "rows, kept", [(1000, 1.0), (1000, 0.6), (2, 0.17)], ids=["whole", "cut", "cut to nothing"]
)
def test_a_compressed_download_cut_short_is_not_taken_for_the_whole_file(
    serve, rows: int, kept: float
) -> None:
    # Framed right (its Content-Length is what was sent), but its gzip stream breaks off.
    compressed = gzip.compress(csv_bytes(rows))
    fake = serve()
    url = fake.add_file(
        "export.csv",
        compressed[: int(len(compressed) * kept)],
        headers={"Content-Encoding": "gzip"},
    )
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=5000)

    if kept == 1.0:
        assert len(build_source(source).fetch_page("").records) == rows
        return
    with pytest.raises(SourceError) as cut:
        build_source(source).fetch_page("")
    assert "broke off" in cut.value.message and "compressed" in cut.value.message


def inventory_csv() -> bytes:
    return b"serial,hostname,ram\n" + b"".join(
        f"S{i:03d},host{i:02d},{8 * i}\n".encode() for i in range(1, 11)
    )


@pytest.mark.parametrize(
    "content",
    [
        inventory_csv()[: inventory_csv().index(b"S010,host10") + len(b"S010,host10")],
        inventory_csv()[: inventory_csv().index(b"\nS0") + len(b"\nS0")],
        inventory_csv().replace(b"host10", b'"host 10"')[:-6],
        inventory_csv().replace(b"host10,80", b"host10,8\xc3\xa9")[:-2],
    ],
    ids=["before the last value", "inside a row", "inside quotes", "inside a character"],
)
def test_a_download_without_a_length_that_ends_mid_line_is_taken_for_cut_off(
    serve, content: bytes
) -> None:
    # The server tells no length and closes the connection: there the body ends, whole or not.
    fake = serve()
    url = fake.add_file("export.csv", content, close_delimited=True)
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=50)

    error = failure(source)

    assert (error.kind, error.permanent) == ("unavailable", False)
    assert "did not declare the file's length" in error.message
    assert "ended mid-line, its last row or record not whole" in error.message


@pytest.mark.parametrize(
    "content",
    [
        inventory_csv().rstrip(b"\n"),
        inventory_csv().replace(b"S010,host10,80\n", b'S010,host10,"8\n0"'),
        inventory_csv().replace(b"S010,host10,80\n", b'S010,"host\n10,x",80'),
        b"sep=;\n" + inventory_csv().replace(b",", b";").rstrip(b"\n"),
    ],
    ids=["plain", "quoted line break", "line break in a quoted value", "spreadsheet's sep="],
)
def test_a_download_without_a_length_whose_last_row_is_whole_is_read_without_a_line_break(
    serve, content: bytes
) -> None:
    fake = serve()
    url = fake.add_file("export.csv", content, close_delimited=True)
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=50)

    records, _ = walk(source)

    assert [record["serial"] for record in records] == [f"S{i:03d}" for i in range(1, 11)]
    assert len(fake.requests_to("/files/export.csv")) == 1


def test_a_download_cut_off_mid_line_is_read_whole_when_tried_again(serve) -> None:
    content = inventory_csv()
    downloads: list[bytes] = [content[:-5], content]  # ends "S010,host1" the first time
    fake = serve()
    url = fake.add_file("export.csv", lambda: downloads.pop(0), close_delimited=True)
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=50)
    with pytest.raises(SourceError):
        build_source(source).fetch_page("")

    records, _ = walk(source)

    assert records[-1] == {"serial": "S010", "hostname": "host10", "ram": "80"}


def test_a_json_lines_download_without_a_length_that_ends_mid_line_is_taken_for_cut_off(
    serve,
) -> None:
    content = b"".join(json.dumps(fake_record(i)).encode() + b"\n" for i in range(1, 11))
    fake = serve()
    url = fake.add_file("export.jsonl", content[:-5], close_delimited=True)
    source = ImportSource(name="export", source_kind="jsonl", source_url=url, page_size=50)

    error = failure(source)

    assert (error.kind, error.permanent) == ("unavailable", False)
    assert "ended mid-line" in error.message


def test_a_json_lines_download_without_a_length_whose_last_record_is_whole_is_read(
    serve,
) -> None:
    content = b"\n".join(json.dumps(fake_record(i)).encode() for i in range(1, 11))
    fake = serve()
    url = fake.add_file("export.jsonl", content, close_delimited=True)
    source = ImportSource(name="export", source_kind="jsonl", source_url=url, page_size=50)

    records, _ = walk(source)

    assert records == [fake_record(i) for i in range(1, 11)]


def test_a_download_without_a_length_that_ends_with_a_line_break_is_read_whole(serve) -> None:
    fake = serve()
    url = fake.add_file("export.csv", inventory_csv(), close_delimited=True)
    source = ImportSource(name="export", source_kind="csv", source_url=url, page_size=50)

    records, _ = walk(source)

    assert [record["ram"] for record in records] == [str(8 * i) for i in range(1, 11)]


class StorageWithoutPaths(Storage):
    """A file storage with no local paths, as object storage (S3 and the like) is."""

    def __init__(self) -> None:
        self.files = FileSystemStorage()

    def _open(self, name, mode="rb"):
        return self.files._open(name, mode)

    def _save(self, name, content):
        return self.files._save(name, content)

    def exists(self, name):
        return self.files.exists(name)

    def delete(self, name):
        self.files.delete(name)

    def listdir(self, path):
        return self.files.listdir(path)


def computers_csv(stamp: int | None = None) -> bytes:
    """The demo's 100 computers as CSV; with a stamp, as an export made at that moment."""
    out = io.StringIO()
    columns = [*demo_computer(1), *(["exported"] if stamp is not None else [])]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    stamped = {} if stamp is None else {"exported": stamp}
    writer.writerows({**demo_computer(i), **stamped} for i in range(1, 101))
    return out.getvalue().encode()


@pytest.fixture
def import_file(serve, make_source, sandbox, media, monkeypatch):
    """Import a CSV file served at a URL, every page downloading it anew (as a page taken by
    another worker would); the fake source and the import are returned."""
    monkeypatch.setattr(files, "DOWNLOAD_MAX_AGE_SECONDS", 0.0)
    fake = serve()

    def run(
        content, name: str = "inventory", source_fields: dict | None = None, **served: Any
    ) -> tuple[FakeSource, Execution]:
        url = fake.add_file(f"{name}.csv", content, **served)
        source = make_source(
            name=name, source_kind="csv", source_url=url, records_path="", **(source_fields or {})
        )
        execution = services.start_import(source=services.push_mapping(source=source))
        execution.refresh_from_db()
        return fake, execution

    return run


def every_computer_arrived(sandbox, execution: Execution) -> bool:
    remote = sandbox.execution(execution.assets_execution_id)
    return (remote["records_received"], len(remote["objects"])) == (100, 100)


def stored_copies(media: Path) -> list[Path]:
    return [path for path in (media / files.SHARED_COPIES).rglob("*") if path.is_file()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("storage", ["local paths", "no local paths"])
def test_a_file_generated_anew_for_each_download_is_imported_from_one_copy_of_it(
    import_file, sandbox, media, settings, storage
) -> None:
    if storage == "no local paths":
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "tests.test_sources.StorageWithoutPaths"},
        }
    stamps = itertools.count(1)

    fake, execution = import_file(lambda: computers_csv(next(stamps)))

    assert execution.state == Execution.State.DONE, execution.error
    assert every_computer_arrived(sandbox, execution)
    assert len(fake.requests_to("/files/inventory.csv")) == 1  # once per import, not per page
    assert housekeeping.drop_unused_file_copies() == 1  # the import is over: its copy goes
    assert stored_copies(media) == []
    if storage == "local paths":  # and its folder (object storage has none)
        assert not list((media / files.SHARED_COPIES).iterdir())
    # A worker keeps one import's copy of its own: the next import's takes its place.
    _, later = import_file(lambda: computers_csv(next(stamps)), name="later")
    assert later.state == Execution.State.DONE, later.error
    kept = [name for name in os.listdir(files._download_dir()) if name.startswith("shared-")]
    assert len(kept) == (1 if storage == "no local paths" else 0)


@pytest.mark.django_db(transaction=True)
def test_a_first_page_sent_again_reads_the_copy_the_later_pages_read(import_file, sandbox) -> None:
    # Each download is a new export, newest first: one computer more at the top.
    newest = itertools.count(100)
    sandbox.faults.add(method="POST", path_contains="/data", status=503, times=1)

    def export() -> bytes:
        top = next(newest)
        out = io.StringIO()
        writer = csv.DictWriter(out, list(demo_computer(1)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(demo_computer(i) for i in range(top, top - 100, -1))
        return out.getvalue().encode()

    _, execution = import_file(export)
    execution = run_due_retries(execution)

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    serials = sorted(key.rpartition(":")[2] for key in remote["objects"])
    assert serials == [f"SN-{i:05d}" for i in range(1, 101)]  # one export's, each once
    assert remote["duplicate_objects"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_csv_served_without_a_length_nor_a_final_line_break_is_imported_whole(
    import_file, sandbox
) -> None:
    fake, execution = import_file(computers_csv().rstrip(b"\n"), close_delimited=True)

    assert execution.state == Execution.State.DONE, execution.error
    assert every_computer_arrived(sandbox, execution)
    assert len(fake.requests_to("/files/inventory.csv")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_csv_served_without_a_length_and_cut_mid_row_is_downloaded_again_then_fails(
    import_file, sandbox
) -> None:
    content = computers_csv()
    cut = content[: content.index(b"\nSN-00100,") + len(b"\nSN-00100,lt-")]

    fake, execution = import_file(cut, close_delimited=True)
    execution = run_due_retries(execution)

    assert execution.state == Execution.State.FAILED
    assert "the file ended mid-line, its last row or record not whole" in execution.error
    assert len(fake.requests_to("/files/inventory.csv")) == 3
    assert sandbox.execution(execution.assets_execution_id)["records_received"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_utf8_export_of_a_source_set_to_windows_1252_arrives_in_assets_as_written(
    import_file, sandbox
) -> None:
    content = computers_csv().replace(b"user7@example.com", "jürgen.müller@example.com".encode())

    _, execution = import_file(content, source_fields={"file_encoding": "cp1252"})

    assert execution.state == Execution.State.DONE, execution.error
    sent = json.dumps(sandbox.chunks(execution.assets_execution_id), ensure_ascii=False)
    assert "jürgen.müller@example.com" in sent and "Ã" not in sent


def accented_computers_csv() -> bytes:
    """The demo's computers, two of whose owners have accented names."""
    return (
        computers_csv()
        .replace(b"user7@example.com", "jürgen.müller@example.com".encode())
        .replace(b"user8@example.com", "zoë.núñez@example.com".encode())
    )


@pytest.mark.django_db(transaction=True)
def test_a_gzip_export_at_a_url_arrives_in_assets_with_its_accents(import_file, sandbox) -> None:
    # A `.csv.gz` export, served as a file of its own (no Content-Encoding).
    compressed = gzip.compress(accented_computers_csv())

    fake, execution = import_file(compressed, content_type="application/gzip")

    assert execution.state == Execution.State.DONE, execution.error
    assert every_computer_arrived(sandbox, execution)
    sent = json.dumps(sandbox.chunks(execution.assets_execution_id), ensure_ascii=False)
    assert "jürgen.müller@example.com" in sent and "zoë.núñez@example.com" in sent
    assert len(fake.requests_to("/files/inventory.csv")) == 1  # its pages read one copy


@pytest.mark.django_db(transaction=True)
def test_a_gzip_bomb_at_a_url_fails_the_import_naming_the_limit(
    import_file, sandbox, monkeypatch
) -> None:
    monkeypatch.setattr(conversions, "MAX_FILE_BYTES", ONE_MB)
    bomb = gzip.compress(computers_csv() + b"\n" * (50 * ONE_MB))

    _, execution = import_file(bomb, content_type="application/gzip")

    assert execution.state == Execution.State.FAILED
    assert "decompresses to more than 1 MB, the most a source file may hold" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["records_received"] == 0


@pytest.mark.django_db(transaction=True)
def test_an_empty_export_at_a_url_fails_the_import_instead_of_sending_no_records(
    import_file, sandbox
) -> None:
    _, execution = import_file(b"\r\n")

    assert execution.state == Execution.State.FAILED
    assert "the file is empty (not even a header row)" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_csv_without_a_column_the_mapping_reads_fails_before_a_page_goes(
    import_file, sandbox
) -> None:
    # The export renamed a column: every computer would arrive without its hostname.
    renamed = computers_csv().replace(b"hostname", b"host_name", 1)

    _, execution = import_file(renamed)

    assert execution.state == Execution.State.FAILED
    assert "the file has no column 'hostname' (attribute Hostname)" in execution.error
    assert "'host_name'" in execution.error  # the columns it has, to choose from
    assert sandbox.execution(execution.assets_execution_id)["records_received"] == 0


@pytest.mark.django_db(transaction=True)
def test_an_import_of_a_csv_row_that_may_be_broken_ends_done_noting_its_lines(
    import_file, sandbox
) -> None:
    # Computer 25's purchase date on a line of its own: a break after the last delimiter, or
    # a row of one value; the import goes on, and says which lines to look at.
    content = computers_csv().replace(b"user25@example.com,", b"user25@example.com,\n", 1)

    _, execution = import_file(content)

    assert execution.state == Execution.State.DONE, execution.error
    assert execution.notice.startswith(
        "CSV: line 27 of the file holds 1 field of the 8 field names: if it is the end of the "
        "row before it"
    )
    assert execution.notice.count("CSV: line 27") == 1  # the pages on either side note it once


@pytest.mark.django_db
def test_a_preview_notes_a_csv_row_that_may_be_broken(serve, make_source) -> None:
    content = computers_csv().replace(b"user5@example.com,", b"user5@example.com,\n", 1)
    url = serve().add_file("inventory.csv", content)
    source = make_source(source_kind="csv", source_url=url, records_path="")

    preview = services.preview_import(source=source)

    assert preview.error in ("", None) and preview.records_fetched == 25
    assert [note[:40] for note in preview.notes] == ["CSV: line 7 of the file holds 1 field of"]


@pytest.mark.django_db
def test_a_preview_of_a_csv_without_a_column_the_mapping_reads_shows_its_records_and_warns(
    serve, make_source
) -> None:
    # The preview (and the draft) is what an operator mends the mapping with.
    url = serve().add_file("renamed.csv", computers_csv().replace(b"hostname", b"host_name", 1))
    source = make_source(source_kind="csv", source_url=url, records_path="")

    preview = services.preview_import(source=source)

    assert preview.error in ("", None) and preview.records_fetched == 25
    assert any("'hostname'" in missing for missing in preview.fields_missing)


@pytest.mark.django_db(transaction=True)
def test_a_first_page_sent_again_from_a_file_not_kept_fails_as_a_changed_file(
    import_file, sandbox, monkeypatch
) -> None:
    # The copy could not be kept (a full disk) and the export is made anew for each
    # download: the first page read again must not give other records at its edge.
    monkeypatch.setattr(files, "share_copy", lambda *args: None)
    monkeypatch.setattr(files, "DOWNLOAD_MAX_AGE_SECONDS", 300.0)  # this worker keeps its copy
    stamps = itertools.count(1)
    # The first page's submit (record SN-00001's) is refused once, whichever lane goes first.
    sandbox.faults.add(
        method="POST", path_contains="/data", body_contains='"SN-00001"', status=503, times=1
    )

    _, execution = import_file(lambda: computers_csv(next(stamps)))
    files.clear_download_cache()  # the first page is read again by another worker
    execution = run_due_retries(execution)

    assert execution.state != Execution.State.DONE
    assert "the file changed during the import" in execution.chunks.get(index=0).error


@pytest.mark.django_db(transaction=True)
def test_a_copy_cut_short_in_the_storage_is_not_read(import_file, sandbox, media, monkeypatch):
    from django.core.files.storage import default_storage

    def save_half(name, content, max_length=None):  # a full disk, or a copy still arriving
        whole = content.read()
        path = media / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(whole[: len(whole) // 2])
        return name

    monkeypatch.setattr(default_storage, "save", save_half)

    _, execution = import_file(computers_csv())

    assert execution.state == Execution.State.DONE, execution.error
    assert every_computer_arrived(sandbox, execution)


@pytest.mark.django_db
def test_a_preview_of_a_file_keeps_no_copy(serve, make_source, media) -> None:
    url = serve().add_file("inventory.csv", computers_csv())
    source = make_source(source_kind="csv", source_url=url, records_path="")

    preview = services.preview_import(source=source)

    assert preview.records_fetched == 25 and preview.has_more
    assert stored_copies(media) == []


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_a_file_url_answering_an_empty_file_is_an_error_not_a_file_of_no_records(
    serve, kind
) -> None:
    # A failed export job: an import of no records would tell Assets every object is gone.
    url = serve().add_file(f"export.{kind}", b"")
    source = ImportSource(name="export", source_kind=kind, source_url=url, records_path="")

    error = failure(source)

    assert (error.kind, error.permanent) == ("empty_file", False)
    assert "answered 200 with an empty file (0 bytes)" in error.message


def test_an_empty_json_lines_export_is_a_file_of_no_records(serve) -> None:
    url = serve().add_file("export.jsonl", b"")  # what an export of no records writes
    source = ImportSource(name="export", source_kind="jsonl", source_url=url, records_path="")

    assert walk(source)[0] == []


def test_a_file_url_that_fails_names_the_source(serve) -> None:
    fake = serve(auth="bearer", secret=SECRET)
    source = ImportSource(
        name="export",
        source_kind="jsonl",
        source_url=f"{fake.base_url}/files/gone.jsonl",
        source_auth="bearer",
        source_token=SECRET,
    )
    error = failure(source)
    assert (error.status, error.permanent) == (404, True)
    assert_safe(error, SECRET)


def test_json_lines_delivers_every_record_once(media: Path) -> None:
    content = jsonl(fake_record(i) for i in range(1, N + 1)).replace(b"\n", b"\n\n", 3)
    records, cursors = walk(uploaded(media, "assets.jsonl", content))
    assert records == [fake_record(i) for i in every_id()]
    assert places(cursors)[1] == str(content.index(b'{"id": 6,'))


def test_malformed_json_lines_fail_with_the_line_number(media: Path) -> None:
    content = b'{"id": 1}\n{"id": 2}\n\n{"id": 3,\n{"id": 4}\n'
    error = failure(uploaded(media, "bad.jsonl", content))
    assert (error.kind, error.permanent) == ("bad_file", True)
    assert "line 4 " in error.message


def test_a_json_lines_line_that_is_not_an_object_fails(media: Path) -> None:
    error = failure(uploaded(media, "list.jsonl", b'{"id": 1}\n[1, 2]\n'))
    assert "line 2 " in error.message and "is a list, not a JSON object" in error.message


def test_a_record_that_is_not_an_object_is_named_by_its_json_type(httpserver) -> None:
    records = [{"id": number} for number in range(1, 11)] + [11]
    httpserver.expect_request("/api/devices").respond_with_json({"data": records})
    source = rest_source(httpserver.url_for("/api/devices"), records_path="data", page_size=20)

    error = failure(source)

    assert (error.kind, error.permanent) == ("bad_records", True)
    assert "record 11 is a number, not a JSON object" in error.message


def test_a_json_file_is_chunked_by_record_index(media: Path) -> None:
    document = {"data": {"assets": [fake_record(i) for i in every_id()]}}
    content = b"\xef\xbb\xbf" + json.dumps(document).encode()
    records, cursors = walk(uploaded(media, "assets.json", content, records_path="data.assets"))
    assert ids(records) == every_id()
    assert places(cursors) == ["", "5", "10", "15", "20"]


def test_a_json_file_is_parsed_once_by_a_reader_going_through_its_pages(
    media: Path, monkeypatch
) -> None:
    # A lane reads page after page with one reader: parsing 20 MB for each page of 100 records
    # cost ~0.15 s of CPU a page, 20 times what the records themselves cost.
    parsed = []
    loads = json_file.limits.loads
    monkeypatch.setattr(
        json_file.limits, "loads", lambda *a, **k: parsed.append(1) or loads(*a, **k)
    )
    document = {"data": {"assets": [fake_record(i) for i in every_id()]}}
    source = uploaded(
        media, "assets.json", json.dumps(document).encode(), records_path="data.assets"
    )
    reader = build_source(source)
    cursor, records = "", []
    while cursor is not None:
        page = reader.fetch_page(cursor)
        records += page.records
        cursor = page.next_cursor

    assert ids(records) == every_id()
    assert len(parsed) == 1


def test_a_json_file_uploaded_anew_is_read_anew_by_the_same_reader(media: Path) -> None:
    source = uploaded(media, "assets.json", json.dumps([fake_record(1)]).encode())
    reader = build_source(source)
    assert ids(reader.fetch_page("").records) == [1]

    uploaded(media, "assets.json", json.dumps([fake_record(2), fake_record(3)]).encode())

    assert ids(reader.fetch_page("").records) == [2, 3]


def test_a_json_file_selector_matching_nothing_names_the_path(media: Path) -> None:
    source = uploaded(media, "assets.json", b'{"data": []}', records_path="data.assets")
    error = failure(source)
    assert "'data.assets'" in error.message


def test_a_json_file_over_the_limit_is_refused(media: Path, monkeypatch) -> None:
    monkeypatch.setattr(json_file, "MAX_PAGE_BYTES", 100)
    error = failure(uploaded(media, "big.json", json.dumps([fake_record(1)] * 10).encode()))
    assert (error.kind, error.permanent) == ("too_large", True)
    assert "JSON Lines" in error.message


def test_a_missing_upload_fails_clearly(media: Path) -> None:
    source = ImportSource(name="export", source_kind="csv", source_file="source-files/gone.csv")
    error = failure(source)
    assert "gone.csv" in error.message and error.permanent


@pytest.mark.timeout(20)
def test_a_csv_header_of_100k_columns_is_checked_in_linear_time(media: Path) -> None:
    names = [f"c{n}" for n in range(100_000)] + ["c7"]
    content = (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()
    error = failure(uploaded(media, "wide.csv", content))
    assert "names 'c7' twice" in error.message


def test_a_json_file_nested_absurdly_deep_is_refused_clearly(media: Path) -> None:
    content = b"[" * 100_000 + b"]" * 100_000
    error = failure(uploaded(media, "deep.json", content))
    assert (error.kind, error.permanent) == ("bad_json", True)


# --- plug-ins ------------------------------------------------------------------------------


class ExplodingSource:
    def __init__(self, *, import_source: ImportSource, options: dict) -> None:
        self.error = options["error"]

    def fetch_page(self, cursor: str) -> Page:
        raise self.error(f"boom with {SECRET}")


class SloppySource(ExplodingSource):
    def fetch_page(self, cursor: str) -> Page:
        return Page(records=["not", "objects"], next_cursor=None)  # type: ignore[list-item]


@pytest.fixture
def plugins(settings) -> None:
    settings.IMPORT_SOURCE_PLUGINS = {
        "static": "importer.sources.examples.StaticListSource",
        "exploding": "tests.test_sources.ExplodingSource",
        "sloppy": "tests.test_sources.SloppySource",
    }


def plugin_source(plugin: str, **options: Any) -> ImportSource:
    return ImportSource(
        name="cmdb",
        source_kind="plugin",
        plugin=plugin,
        plugin_options=options,
        page_size=5,
        source_token=SECRET,
    )


@pytest.mark.parametrize("plugin", ["static", "importer.sources.examples.StaticListSource"])
def test_a_listed_plugin_serves_every_record_once(plugins, plugin: str) -> None:
    records, cursors = walk(plugin_source(plugin, records=[fake_record(i) for i in every_id()]))
    assert ids(records) == every_id()
    assert cursors == ["", "5", "10", "15", "20"]


def test_an_unlisted_plugin_is_never_imported(plugins) -> None:
    error = failure(plugin_source("importer.devtools.demo_source.DemoInventory"))
    assert (error.kind, error.permanent) == ("config", True)
    assert "IMPORT_SOURCE_PLUGINS" in error.message


@pytest.mark.parametrize(
    "raised, permanent", [(KeyError, True), (ConnectionError, False), (SourceError, True)]
)
def test_a_failing_plugin_raises_a_source_error(plugins, raised: type, permanent: bool) -> None:
    error = failure(plugin_source("exploding", error=raised))
    assert error.permanent is permanent
    assert_safe(error, SECRET)


def test_a_plugin_returning_bad_records_is_caught(plugins) -> None:
    error = failure(plugin_source("sloppy", error=None))
    assert error.kind == "plugin_error"
    assert "not a list of objects" in error.message


def test_an_unknown_kind_is_a_configuration_error() -> None:
    error = failure(ImportSource(name="cmdb", source_kind="ftp"))
    assert (error.kind, error.permanent) == ("config", True)


def test_a_20_digit_number_in_a_page_keeps_every_digit(fake: FakeSource) -> None:
    # An ICCID (a SIM card's serial) sent as a JSON number does not fit in 64 bits.
    fake.records[0] = {"id": 1, "iccid": 89014103211118510720}
    source = rest_source(f"{fake.base_url}/api/offset", records_path="data.items")

    record = build_source(source).fetch_page("").records[0]

    assert record["iccid"] == 89014103211118510720 and type(record["iccid"]) is int


def test_a_page_with_a_byte_order_mark_and_nan_is_read_as_before(fake: FakeSource) -> None:
    body = '\ufeff{"data": {"items": [{"id": 1, "score": NaN}]}}'
    fake.faults.add(path_contains="/api/offset", status=200, body=body)
    source = rest_source(
        f"{fake.base_url}/api/offset", records_path="data.items", pagination="none"
    )

    records = build_source(source).fetch_page("").records

    assert [record["id"] for record in records] == [1]
    assert math.isnan(records[0]["score"])


def test_a_next_link_repeating_the_oauth_token_is_stored_without_it_and_followed_with_a_fresh_one(
    serve,
) -> None:
    fake = serve(records=N, auth="oauth2", username="client-1", secret=SECRET, token_max_uses=2)
    fake.next_link_params = {"access_token": "{token}", "sid": "{token}"}
    source = oauth_source(
        fake,
        source_url=f"{fake.base_url}/api/next",
        pagination="next_url",
        records_path="results",
        cursor_path="links.next",
    )

    records, cursors = walk(source)

    sent = [r.query.get("sid", [""])[0] for r in fake.requests_to("/api/next")]
    assert ids(records) == every_id()
    assert len(fake.token_requests()) >= 3  # the tokens ran out on the way
    assert all(token not in cursor for cursor in cursors for token in sent if token)


def test_a_next_link_with_the_api_key_in_its_path_is_stored_without_it(fake: FakeSource) -> None:
    source = next_link_source(fake)
    fake.next_link_path = f"/api/next/session/{SECRET}"

    records, cursors = walk(source)

    assert ids(records) == every_id()
    assert all(SECRET not in c and quote(SECRET, safe="") not in c for c in cursors)
    assert {r.path for r in fake.requests[1:]} == {f"/api/next/session/{SECRET}"}


def test_a_user_and_password_in_a_bearer_sources_url_say_so_not_that_the_token_is_wrong(
    fake: FakeSource,
) -> None:
    host = fake.base_url.removeprefix("http://")
    source = rest_source(
        f"http://apiuser:url-pass-77@{host}/api/offset",
        pagination="offset",
        records_path="results",
        source_auth="bearer",
        source_token=SECRET,
    )

    error = failure(source)

    assert error.kind == "config" and error.permanent
    assert "user name and password" in error.message and "401" not in error.message
    assert_safe(error, "url-pass-77", SECRET)


def test_a_header_holding_a_character_http_cannot_carry_names_the_settings_to_check(
    fake: FakeSource,
) -> None:
    # Saved before the form refused it: a placeholder's '…' left in an extra header.
    source = rest_source(
        f"{fake.base_url}/api/offset",
        records_path="data.items",
        extra_headers={"X-Tenant": "acme…"},
    )

    error = failure(source)

    assert (error.kind, error.permanent) == ("config", True)
    assert "a header it is sent with holds a character HTTP headers cannot carry" in (error.message)
    assert "redirect" not in error.message
