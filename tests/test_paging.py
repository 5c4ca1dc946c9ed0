"""Imports from sources that serve another page size than asked, or a total that disagrees:
every record arrives in Assets exactly once, or the import fails saying what the source did.

The source is a real server on loopback with the habits of real APIs (tests/fake_source.py);
Assets is the sandbox, which counts every object it receives.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from importer import services
from importer.devtools.demo_source import demo_computer
from importer.models import ChunkJob, Execution
from importer.progress import progress_of
from importer.services import totals
from importer.sources.urls import moved_by, moved_number
from tests.conftest import run_retries_now, wait_for_execution_to_finish
from tests.fake_source import FakeSource

pytestmark = pytest.mark.django_db(transaction=True)

RECORDS = 100


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeSource]]:
    """Start a fake inventory API of 100 computers with the given habits."""
    started: list[FakeSource] = []

    def start(**habits: Any) -> FakeSource:
        server = FakeSource(**{"records": RECORDS, "record": demo_computer, **habits}).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def import_from(make_source, sandbox):
    """Run a whole import (tasks inline) of a source reading `fake` in the given style."""

    def run(fake: FakeSource, style: str, **fields: Any) -> Execution:
        paging = {
            "offset": {
                "source_url": f"{fake.base_url}/api/offset",
                "records_path": "data.items",
                "pagination": "offset",
                "limit_param": "limit",
            },
            "page": {
                "source_url": f"{fake.base_url}/api/page",
                "records_path": "items",
                "pagination": "page",
                "limit_param": "per_page",
            },
            "cursor": {
                "source_url": f"{fake.base_url}/api/cursor",
                "records_path": "items",
                "pagination": "cursor",
                "cursor_path": "meta.next_cursor",
                "cursor_param": "cursor",
                "limit_param": "limit",
            },
            "next_url": {
                "source_url": f"{fake.base_url}/api/next",
                "records_path": "results",
                "pagination": "next_url",
                "cursor_path": "links.next",
                "limit_param": "limit",
            },
            "odata": {
                "source_url": f"{fake.base_url}/api/odata",
                "records_path": "value",
                "pagination": "next_url",
                "cursor_path": "@odata.nextLink",
                "limit_param": "$top",
            },
            "link_header": {
                "source_url": f"{fake.base_url}/api/link",
                "records_path": "",
                "pagination": "link_header",
                "limit_param": "limit",
            },
        }[style]
        defaults = {"page_size": 25, "max_chunks_in_flight": 4, **paging}
        source = make_source(**{**defaults, **fields})
        execution = services.start_import(source=services.push_mapping(source=source))
        execution.refresh_from_db()
        return execution

    return run


def assert_every_record_once(sandbox, execution: Execution) -> None:
    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.DONE, execution.error
    assert len(remote["objects"]) == RECORDS
    assert remote["records_received"] == RECORDS
    assert remote["duplicate_objects"] == 0
    assert remote["completed_posts"] == 1


SHORT_PAGES = [
    pytest.param("offset", {"max_limit": 10}, "limit", id="offset, cuts the limit to 10"),
    pytest.param("offset", {"default_limit": 10}, "", id="offset, limit not sent, serves 10"),
    pytest.param(
        "offset", {"ignore_limit": True, "default_limit": 10}, "limit", id="offset, ignores it: 10"
    ),
    pytest.param(
        "offset", {"ignore_limit": True, "default_limit": 40}, "limit", id="offset, ignores it: 40"
    ),
    pytest.param("page", {"max_limit": 10}, "per_page", id="page, cuts the limit to 10"),
    pytest.param("page", {"default_limit": 10}, "", id="page, limit not sent, serves 10"),
    pytest.param(
        "page", {"ignore_limit": True, "default_limit": 40}, "per_page", id="page, ignores it: 40"
    ),
]


@pytest.mark.parametrize("style, habits, limit_param", SHORT_PAGES)
def test_a_source_serving_another_page_size_than_asked_delivers_every_record_once(
    serve, import_from, sandbox, style, habits, limit_param
):
    fake = serve(**habits)

    execution = import_from(fake, style, limit_param=limit_param)

    assert_every_record_once(sandbox, execution)


def test_an_odata_source_whose_next_link_key_holds_a_dot_delivers_every_record(
    serve, import_from, sandbox
):
    """Microsoft Graph, Dynamics and SharePoint name their next link "@odata.nextLink"."""
    fake = serve(max_limit=30)

    execution = import_from(fake, "odata", page_size=50, total_path="@odata.count")

    assert_every_record_once(sandbox, execution)
    assert execution.records_fetched == RECORDS


def test_a_next_link_path_that_misses_the_answers_next_link_fails_instead_of_ending_early(
    serve, import_from, sandbox
):
    fake = serve(max_limit=30)

    execution = import_from(fake, "odata", page_size=50, cursor_path="odata.nextLink")

    assert execution.state == Execution.State.FAILED
    assert "answered a next link at '@odata.nextLink'" in execution.error
    assert "its next-page path is 'odata.nextLink'" in execution.error
    assert not sandbox.execution(execution.assets_execution_id)["completed_posts"]


@pytest.mark.parametrize(
    "style, cursor_path, said",
    [
        ("cursor", "meta.nextCursor", "answered a next cursor at 'meta.next_cursor'"),
        ("cursor", "next_cursor", "answered a next cursor at 'meta.next_cursor'"),
        ("next_url", "next", "answered a next link at 'links.next'"),
        ("cursor", "meta", "answered an object (holding next_cursor) at its next-page path"),
    ],
)
def test_a_next_page_path_that_misses_the_answers_cursor_fails_instead_of_ending_early(
    serve, import_from, sandbox, style, cursor_path, said
):
    fake = serve()

    execution = import_from(fake, style, cursor_path=cursor_path)

    assert execution.state == Execution.State.FAILED
    assert said in execution.error
    assert not sandbox.execution(execution.assets_execution_id)["completed_posts"]


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_next_links_that_leave_out_the_extra_parameters_and_page_size_get_them_back(
    serve, import_from, sandbox, style
):
    # HubSpot's next links carry only `after`: without `properties` every later page came
    # with empty attributes, and without `limit` ten records at a time.
    fake = serve()
    fake.echo_query = "nothing"

    execution = import_from(fake, style, extra_params={"properties": "name,serial"})

    assert_every_record_once(sandbox, execution)
    pages = fake.requests_to(f"/api/{'next' if style == 'next_url' else 'link'}")
    assert len(pages) == RECORDS // 25
    assert all(page.query["properties"] == ["name,serial"] for page in pages)
    assert all(page.query["limit"] == ["25"] for page in pages)


def test_a_next_link_refusing_the_parameters_added_to_it_says_where_they_belong(
    serve, import_from, sandbox
):
    fake = serve()
    fake.echo_query = "nothing"
    fake.faults.add(path_contains="start=25", status=400, body='{"error": "unexpected since"}')

    execution = import_from(fake, "next_url", extra_params={"since": "2026-01-01"})

    assert execution.state == Execution.State.FAILED
    assert "The request added since, limit, which the source's next link left out" in (
        execution.error
    )
    assert "write them into the source URL instead" in execution.error


@pytest.mark.parametrize("style", ["cursor", "next_url"])
def test_a_next_page_the_source_no_longer_knows_says_to_run_the_import_again(
    serve, import_from, sandbox, style
):
    # Salesforce's query locators and Elasticsearch's scroll ids expire.
    fake = serve()
    where = "cursor=c50" if style == "cursor" else "start=50"
    fake.faults.add(path_contains=where, status=404, body='{"error": "INVALID_QUERY_LOCATOR"}')

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED
    assert "INVALID_QUERY_LOCATOR" in execution.error
    assert "may expire while the pages are read" in execution.error
    assert "Run the import again" in execution.error


def test_a_parameter_written_into_the_source_url_goes_with_the_first_request_only(
    serve, import_from, sandbox
):
    # Salesforce's next "link" is a query locator: the query itself must not follow it.
    fake = serve()
    fake.echo_query = "nothing"

    execution = import_from(
        fake, "next_url", source_url=f"{fake.base_url}/api/next?q=SELECT+Name+FROM+Asset"
    )

    assert_every_record_once(sandbox, execution)
    first, *later = fake.requests_to("/api/next")
    assert first.query["q"] == ["SELECT Name FROM Asset"]
    assert later and not any("q" in page.query for page in later)


def test_numbered_pages_counted_by_the_size_asked_but_cut_shorter_fail_naming_the_size(
    serve, import_from, sandbox
):
    # Page 2 starts at record 26 though page 1 ended at record 20: records 21 to 25 of
    # every 25 are never served, and no total tells.
    fake = serve(max_limit=20, numbers_by_asked_size=True)

    execution = import_from(fake, "page", limit_param="per_page")

    assert execution.state == Execution.State.FAILED
    assert "serves at most 20 records a page when asked for 25" in execution.error
    assert "Set the page size to 20" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("refuses_odd_sizes", [False, True])
def test_numbered_pages_of_a_source_cutting_the_limit_and_counting_them_as_served_are_done(
    serve, import_from, sandbox, refuses_odd_sizes
):
    # The page asked for again at the size served holds the same records, each with another
    # last-seen time: the same records all the same. A source taking only some page sizes
    # refuses the question, which then tells nothing.
    fake = serve(max_limit=20)
    fake.stamps_each_answer = True
    if refuses_odd_sizes:
        fake.faults.add(path_contains="per_page=20", status=400, times=-1)

    execution = import_from(fake, "page", limit_param="per_page")

    assert_every_record_once(sandbox, execution)


def test_numbered_pages_of_a_source_cutting_the_limit_are_done_at_the_page_size_it_serves(
    serve, import_from, sandbox
):
    fake = serve(max_limit=20, numbers_by_asked_size=True)

    execution = import_from(fake, "page", limit_param="per_page", page_size=20)

    assert_every_record_once(sandbox, execution)


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_next_links_moved_by_the_size_asked_but_cut_shorter_fail_naming_the_size(
    serve, import_from, sandbox, style
):
    # Asked for 25, it serves 20, and its next link starts at 25: records 21 to 25 of every
    # 25 are never served, and no total tells.
    fake = serve(max_limit=20, numbers_by_asked_size=True)

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED, "DONE with 80 records of 100"
    assert "serves at most 20 records a page when asked for 25 ('limit')" in execution.error
    assert "its next link moves 'start' by 25" in execution.error
    assert "Set the page size to 20" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize(
    "also_moved",
    [{"offset": "{start}"}, {"page_size": "{limit}"}],
    ids=["the-start-under-an-older-name", "the-page-size-under-its-own-name"],
)
def test_next_links_moving_another_number_by_the_size_asked_before_the_start_still_fail(
    serve, import_from, sandbox, also_moved
):
    # Its links write `offset` (or `page_size`) before the `start` it reads, each moved by
    # the 25 asked: asked for with that one moved by the 20 served, it answers the next page
    # again, and only `start` moved so tells.
    fake = serve(max_limit=20, numbers_by_asked_size=True)
    fake.next_link_params = also_moved

    execution = import_from(fake, "next_url")

    assert execution.state == Execution.State.FAILED, "DONE with 80 records of 100"
    assert "serves at most 20 records a page when asked for 25 ('limit')" in execution.error
    assert "its next link moves 'start' by 25" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("written, moved", [("%2225%22", "%2220%22"), ("025", "020"), ("25", "20")])
def test_a_cursor_of_digits_is_asked_about_moved_and_written_as_it_came(written, moved):
    # Text of digits read with POST travels in quotes ("25") or as it came ("025"): moved,
    # it must stay text in the body, or a cursor typed `String` refuses the question.
    url, link = "https://s/q?first=25", f"https://s/q?first=25&after={written}"

    assert moved_by(url, link, 25, ignore="first") == [("after", 0)]
    assert moved_number(link, "after", 20) == f"https://s/q?first=25&after={moved}"


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_next_links_of_a_source_cutting_the_limit_and_moving_them_as_served_are_done(
    serve, import_from, sandbox, style
):
    # Its links move by the 20 records it served: nothing to ask, every record arrives.
    fake = serve(max_limit=20)
    fake.stamps_each_answer = True

    execution = import_from(fake, style)

    assert_every_record_once(sandbox, execution)
    assert len(fake.requests_to(f"/api/{'next' if style == 'next_url' else 'link'}")) == 5


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_next_links_of_a_source_cutting_the_limit_are_done_at_the_page_size_it_serves(
    serve, import_from, sandbox, style
):
    fake = serve(max_limit=20, numbers_by_asked_size=True)

    execution = import_from(fake, style, page_size=20)

    assert_every_record_once(sandbox, execution)


def test_one_page_per_task_also_delivers_every_record_of_a_source_serving_fewer(
    serve, import_from, sandbox, settings
):
    settings.CHUNK_LANE_SECONDS = 0
    fake = serve(default_limit=10)

    execution = import_from(fake, "offset", limit_param="")

    assert_every_record_once(sandbox, execution)


def test_a_source_cutting_the_limit_and_telling_its_total_is_done_when_they_agree(
    serve, import_from, sandbox
):
    fake = serve(max_limit=10)

    execution = import_from(fake, "offset", total_path="meta.total")

    assert_every_record_once(sandbox, execution)
    assert execution.records_total == RECORDS


@pytest.mark.parametrize("style, total_path", [("cursor", "total"), ("offset", "meta.total")])
def test_a_source_growing_while_it_is_read_is_done_with_every_record_it_told(
    serve, import_from, sandbox, style, total_path
):
    # A busy EDR or MDM fleet enrols devices mid-import: its later pages tell a larger total.
    fake = serve(grows_after=(2, 5))

    execution = import_from(fake, style, total_path=total_path, record_drop_limit=None)

    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.DONE, execution.error
    assert (execution.records_total, execution.records_total_largest) == (RECORDS, RECORDS + 5)
    assert remote["records_received"] == RECORDS + 5 == len(remote["objects"])


def test_a_record_deleted_while_an_offset_source_is_read_fails_the_import_on_its_total(
    serve, import_from, sandbox
):
    # Every later record moves up one place: the one at the next page's edge is never read,
    # and the records received fall short of the total told before the deletion.
    fake = serve(grows_after=(2, -1))

    execution = import_from(fake, "offset", total_path="meta.total")

    assert execution.state == Execution.State.FAILED
    assert f"said it holds {RECORDS} records (at 'meta.total') but served only" in execution.error
    assert not sandbox.execution(execution.assets_execution_id)["completed_posts"]


@pytest.mark.parametrize(
    "style, total_path, reported, served, habits",
    [
        pytest.param("offset", "meta.total", 120, "served only 100", {}, id="offset, says more"),
        pytest.param("offset", "meta.total", 90, "served 100", {}, id="offset, says fewer"),
        pytest.param("page", "total", 120, "served only 100", {}, id="page, says more"),
        pytest.param("page", "total", 90, "served 100", {}, id="page, says fewer"),
        # A total at a page's end must not end the paging: the pages after it are read.
        pytest.param("offset", "meta.total", 75, "served 100", {}, id="offset, fewer, aligned"),
        pytest.param("page", "total", 75, "served 100", {}, id="page, fewer, aligned"),
        pytest.param(
            "offset", "meta.total", 70, "served 100", {"max_limit": 10}, id="offset, cut limit"
        ),
        pytest.param("page", "total", 70, "served 100", {"max_limit": 10}, id="page, cut limit"),
    ],
)
def test_a_total_that_disagrees_with_the_records_served_fails_the_import(
    serve, import_from, sandbox, style, total_path, reported, served, habits
):
    fake = serve(reported_total=reported, **habits)

    execution = import_from(fake, style, total_path=total_path)

    assert execution.state == Execution.State.FAILED
    assert f"said it holds {reported} records (at '{total_path}') but {served}" in execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["completed_posts"] == 0
    assert len(remote["failure_reasons"]) == 1
    assert f"said it holds {reported} records" in remote["failure_reasons"][0]


# A total told in a response header alone (json-server's X-Total-Count, GitLab's X-Total):
# the demo inventory tells it so when asked with total_header=<name>.
HEADER_TOTAL = {"extra_params": {"total_header": "X-Total-Count"}}


@pytest.mark.parametrize("style", ["offset", "page"])
def test_a_total_told_in_a_header_is_the_imports_total_and_the_import_is_done(
    make_source, sandbox, style
):
    source = make_source(
        pagination=style, limit_param="limit", total_path="header:x-total-count", **HEADER_TOTAL
    )

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert execution.records_total == 120
    assert progress_of(execution)["records_total"] == 120
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120


def test_a_source_serving_fewer_records_than_its_header_total_fails_naming_the_header(
    make_source, sandbox, inventory
):
    inventory.unlisted_records = 5  # counted, as records the caller may not read, never served
    source = make_source(total_path="header:X-Total-Count", **HEADER_TOTAL)

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert (
        "The source said it holds 125 records (in header 'X-Total-Count') but served only 120"
        in execution.error
    )
    assert not sandbox.execution(execution.assets_execution_id)["completed_posts"]


# A total path that finds nothing (misspelled, or the source stopped telling it) would turn
# the check against the total off without a word.
@pytest.mark.parametrize(
    "total_path, told, habits",
    [
        ("meta.totl", "at 'meta.totl'", {}),
        ("header:X-Totl-Count", "in header 'X-Totl-Count'", HEADER_TOTAL),
    ],
    ids=["body", "header"],
)
def test_a_total_path_that_no_answer_tells_ends_done_with_a_notice_naming_it(
    make_source, sandbox, caplog, total_path, told, habits
):
    source = make_source(total_path=total_path, **habits)

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    notice = (
        f"Total not checked: no answer of the source told a total {told} (its total path), "
        "so the records received (120) were not checked against one. Set the total path to "
        "where the answers tell their total, or clear it."
    )
    assert notice in execution.notice.splitlines()
    assert f"execution {execution.pk}: {notice}" in [
        record.getMessage() for record in caplog.records if record.levelname == "WARNING"
    ]


def test_a_total_path_at_a_value_that_is_not_a_number_fails_the_import_saying_so(
    make_source, sandbox
):
    source = make_source(total_path="items.0.hostname")

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "the total at 'items.0.hostname' is not a number ('lt-00001')" in execution.error
    assert not sandbox.execution(execution.assets_execution_id)["completed_posts"]


@pytest.mark.parametrize(
    "total_path, habits",
    [
        ("total", {}),
        ("header:X-Total-Count", HEADER_TOTAL),
        ("total", {"extra_params": {"total_first_page": "1"}}),
        (
            "header:X-Total-Count",
            {"extra_params": {"total_first_page": "1", **HEADER_TOTAL["extra_params"]}},
        ),
    ],
    ids=["body", "header", "body, first page alone", "header, first page alone"],
)
def test_a_total_told_by_some_answer_is_checked_with_no_notice(
    make_source, sandbox, inventory, total_path, habits
):
    inventory.unlisted_records = 5  # shows the total was checked: the import fails

    source = make_source(total_path=total_path, **habits)
    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "The source said it holds 125 records" in execution.error
    assert "Total not checked" not in execution.notice
    inventory.unlisted_records = 0
    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert execution.records_total == 120
    assert execution.notice == ""


@pytest.mark.parametrize("status", [404, 400, 422])
@pytest.mark.parametrize("limit_param", ["per_page", ""], ids=["limit asked", "no limit"])
def test_the_page_after_a_short_one_answered_with_an_error_ends_the_source(
    serve, import_from, sandbox, status, limit_param
):
    # Without a limit, the source serves 30 a page: 100 records end on a short page.
    fake = serve(past_end_status=status, default_limit=30)

    execution = import_from(fake, "page", page_size=30, limit_param=limit_param)

    assert_every_record_once(sandbox, execution)
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()


@pytest.mark.parametrize("style, hole", [("offset", "offset=25&"), ("page", "page=2&")])
@pytest.mark.parametrize("answer", ["empty", "not_found"])
def test_a_source_answering_a_page_it_has_as_if_it_had_none_fails_the_import(
    serve, import_from, sandbox, style, hole, answer
):
    fake = serve()
    # A 404 is asked again before it is taken for the end: this one stays.
    fake.misbehave(answer, path_contains=hole, times=2 if answer == "not_found" else 1)

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED
    assert "The source's records ended with page 1" in execution.error
    assert "yet page 3 held 25 records" in execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["completed_posts"] == 0


@pytest.mark.parametrize("answer", ["empty", "not_found"])
@pytest.mark.parametrize(
    "limits",
    [
        {"max_chunks_in_flight": 1},
        {"max_chunks_in_flight": 2, "max_requests_per_minute": 6000},
    ],
    ids=["one page at a time", "rate limited"],
)
def test_a_page_answered_as_if_empty_fails_the_import_also_when_no_page_is_read_ahead(
    serve, make_source, sandbox, cluster, answer, limits
):
    # Lanes read past the end anyway; one page at a time, the page after the end is read to
    # see that it is empty too.
    fake = serve()
    fake.misbehave(answer, path_contains="offset=25&", times=2 if answer == "not_found" else 1)
    source = make_source(
        source_url=f"{fake.base_url}/api/offset",
        records_path="data.items",
        limit_param="limit",
        page_size=25,
        **limits,
    )

    execution = services.start_import(source=services.push_mapping(source=source))
    execution = wait_for_execution_to_finish(execution, timeout=60)

    assert execution.state == Execution.State.FAILED, "DONE with 25 of 100 records"
    assert "yet page 3 held 25 records" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("style, param", [("offset", "offset"), ("page", "page")])
def test_a_source_ignoring_where_pages_start_fails_within_a_few_pages(
    serve, import_from, sandbox, style, param
):
    # It honours the limit: every page is a full page of its first records, to the last
    # page allowed (IMPORT_MAX_PAGES), each sent to Assets again.
    fake = serve(ignore_offset=True)

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED
    assert f"with page 1's records again: it ignores the '{param}' parameter" in execution.error
    assert execution.pages_fetched <= 8
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


def test_a_page_past_a_wrong_end_that_assets_refused_still_fails_the_import(
    serve, make_source, sandbox, cluster
):
    # Page 4 is sent while page 3 is still being fetched; page 3 comes back empty (a lagging
    # replica) and only then does Assets refuse page 4 (429): its records must still count.
    fake = serve()
    fake.faults.add(path_contains="offset=50&", status=404, delay=0.5, times=2)
    sandbox.faults.add(
        method="POST",
        path_contains="/data",
        body_contains="SN-00076",
        status=429,
        delay=1.5,
        times=1,
    )
    source = make_source(
        source_url=f"{fake.base_url}/api/offset", records_path="data.items", limit_param="limit"
    )

    execution = services.start_import(source=services.push_mapping(source=source))
    execution = wait_for_execution_to_finish(execution, timeout=60)

    assert execution.state == Execution.State.FAILED, "DONE without records 76 to 100"
    assert "yet page 4 held 25 records" in execution.error


# Next links mostly carry an offset or a page number (Django REST framework, Jira, GitHub).
@pytest.mark.parametrize("style", ["offset", "page", "next_url", "link_header"])
def test_a_source_whose_order_moves_while_it_is_read_fails_naming_two_pages_of_one_record(
    serve, import_from, sandbox, style
):
    # Without a stable sort, the order may move between two requests: a record shifts onto
    # the next page, another is never read, and the counts (and a total) still add up.
    fake = serve(order_moves_after=2)

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED
    assert "10 records were read on two pages (the first on pages" in execution.error
    assert "sort by a field that is unique" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


def test_a_big_import_looked_at_in_several_passes_finds_the_same_records_on_two_pages(
    serve, import_from, monkeypatch
):
    monkeypatch.setattr(totals, "DIGESTS_PER_PASS", 7)  # 100 records: 15 passes

    execution = import_from(serve(order_moves_after=2), "offset")

    assert "10 records were read on two pages" in execution.error


def test_a_source_said_to_list_objects_twice_is_sent_every_record_it_serves(
    serve, import_from, sandbox
):
    fake = serve()
    fake.records[59]["serial"] = fake.records[9]["serial"]  # one computer listed twice

    execution = import_from(fake, "offset", repeated_records="send")

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["records_received"] == RECORDS
    assert remote["duplicate_objects"] == 1


@pytest.mark.parametrize(
    "style, twin",
    [
        pytest.param("offset", 11, id="offset, twice in one answer"),
        pytest.param("cursor", 60, id="cursor, on two pages"),
    ],
)
def test_a_record_listed_twice_where_paging_cannot_move_it_is_not_taken_for_a_moved_order(
    serve, import_from, sandbox, style, twin
):
    # One answer is one reading of the source; a cursor says where the last page ended.
    fake = serve()
    fake.records[twin - 1]["serial"] = fake.records[9]["serial"]

    execution = import_from(fake, style)

    assert execution.state == Execution.State.DONE, execution.error
    assert sandbox.execution(execution.assets_execution_id)["records_received"] == RECORDS
    if style == "cursor":  # told, for a cursor that may stand for a position
        assert "Paging: 1 record was read on two pages (the first on pages 1 and 3)" in (
            execution.notice
        )


def test_a_cursor_source_whose_order_moves_ends_done_noting_the_records_read_twice(
    serve, import_from, sandbox
):
    # This cursor stands for a position (an offset in disguise): when the order moves, 10
    # records come twice and 10 are never read. Most cursors name the last record read, where
    # a record coming twice only changed meanwhile: the import is not failed for it, but the
    # user is told what to look at.
    execution = import_from(serve(order_moves_after=2), "cursor")

    assert execution.state == Execution.State.DONE, execution.error
    assert "Paging: 10 records were read on two pages (the first on pages" in execution.notice
    assert "an offset in disguise" in execution.notice
    assert "sort by a field that is unique" in execution.notice


def test_a_cursor_source_said_to_list_objects_twice_gets_no_note_of_them(
    serve, import_from, sandbox
):
    execution = import_from(serve(order_moves_after=2), "cursor", repeated_records="send")

    assert execution.state == Execution.State.DONE, execution.error
    assert "read on two pages" not in execution.notice


@pytest.mark.parametrize("style", ["offset", "page"])
def test_a_source_answering_past_its_end_with_an_error_after_a_full_page_is_done(
    serve, import_from, sandbox, style
):
    fake = serve(past_end_status=404)  # 100 records: the last page is full

    execution = import_from(fake, style)

    assert_every_record_once(sandbox, execution)
    assert not execution.chunks.filter(state=ChunkJob.State.FAILED).exists()


@pytest.mark.parametrize(
    "style, status, page_size, depth, total_path",
    [
        ("offset", 400, 20, 60, ""),
        ("page", 422, 20, 60, ""),
        # Asked for 40, it serves 20: a lane's first page cannot tell a full answer from a
        # short one, and the limit comes right after one.
        ("offset", 400, 40, 70, ""),
        # The total it tells says there is more: the user hears of the limit, not of a total
        # that does not add up.
        ("offset", 400, 20, 60, "meta.total"),
    ],
)
def test_a_source_that_refuses_to_be_paged_deeper_fails_the_import_saying_so(
    serve, import_from, sandbox, style, status, page_size, depth, total_path
):
    # A search index's result window: the records after it cannot be read by position.
    fake = serve(depth_limit=depth, depth_limit_status=status, max_limit=20)

    execution = import_from(fake, style, page_size=page_size, total_path=total_path)

    assert execution.state == Execution.State.FAILED
    assert "Result window is too large" in execution.error
    assert "to be paged that deep" in execution.error
    assert "keyset paging, after the last record read" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("style, total_path", [("offset", "meta.total"), ("page", "total")])
def test_a_source_refusing_pages_past_a_full_last_one_is_done_when_its_total_agrees(
    serve, import_from, sandbox, style, total_path
):
    # 100 records in pages of 25, and 400 past them: the end, or a limit? The total tells.
    fake = serve(past_end_status=400)

    execution = import_from(fake, style, total_path=total_path)

    assert_every_record_once(sandbox, execution)


def test_a_source_refusing_pages_past_a_full_last_one_is_done_when_it_serves_its_last_record(
    serve, import_from, sandbox
):
    # No total: the end is told from a result window by asking for the last record alone and
    # with one more after it, which a window refuses and a source that ends there serves.
    fake = serve(past_end_status=400)

    execution = import_from(fake, "offset")

    assert_every_record_once(sandbox, execution)


def test_a_result_window_whose_total_is_capped_at_its_depth_fails_the_import(
    serve, import_from, sandbox
):
    # A search index counts no further than it pages (total 60, relation "gte"): the total
    # agrees with the records served, and still the records after 60 would be missing.
    fake = serve(depth_limit=60, reported_total=60, max_limit=20)

    execution = import_from(fake, "offset", page_size=20, total_path="meta.total")

    assert execution.state == Execution.State.FAILED
    assert "to be paged that deep" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


def test_without_a_total_a_source_refusing_small_pages_is_not_taken_at_its_end_on_a_guess(
    serve, import_from, sandbox
):
    # It refuses pages of fewer than 5 records, so the record before its end cannot be asked
    # for alone: a refusal right after a full page is the end, or a limit.
    fake = serve(past_end_status=400, min_limit=5)

    execution = import_from(fake, "offset")

    assert execution.state == Execution.State.FAILED
    assert "set its total path" in execution.error


@pytest.mark.parametrize(
    "total_path, told",
    [("", "to be paged that deep"), ("meta.total", "holds 100 records (at 'meta.total')")],
)
def test_a_result_window_over_a_source_refusing_small_pages_fails_the_import(
    serve, import_from, sandbox, total_path, told
):
    fake = serve(depth_limit=60, min_limit=5, max_limit=20)

    execution = import_from(fake, "offset", page_size=20, total_path=total_path)

    assert execution.state == Execution.State.FAILED
    assert told in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize(
    "style, habits, total_path",
    [
        ("offset", {"min_limit": 5}, "meta.totl"),
        ("page", {}, "totl"),
    ],
)
def test_a_result_window_is_not_taken_for_the_end_when_the_total_path_finds_no_total(
    serve, import_from, sandbox, style, habits, total_path
):
    # A misspelled total path tells nothing: the refusal after record 60 stays a guess, and
    # the import must not end DONE with the 40 records after it missing.
    fake = serve(depth_limit=60, max_limit=20, **habits)

    execution = import_from(fake, style, page_size=20, total_path=total_path)

    assert execution.state == Execution.State.FAILED
    assert "to be paged that deep" in execution.error
    assert f"no total was found at '{total_path}'" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize(
    "style, habits, total_path",
    [
        ("offset", {"min_limit": 5}, "meta.total"),
        ("page", {}, "total"),
    ],
)
def test_a_total_told_on_the_first_page_alone_settles_an_end_found_by_a_later_lane(
    serve, import_from, sandbox, style, habits, total_path
):
    # Pages of 20 over four lanes: the refusal past record 100 comes to the second lane,
    # whose answers tell no total; the first page's does, and it agrees.
    fake = serve(past_end_status=400, **habits)
    fake.total_on_first_page_only = True

    execution = import_from(fake, style, page_size=20, total_path=total_path)

    assert_every_record_once(sandbox, execution)
    assert execution.records_total == RECORDS


@pytest.mark.parametrize("style, min_limit", [("offset", 5), ("page", 1)])
def test_a_total_path_the_answers_never_fill_takes_no_refusal_after_a_full_page_for_the_end(
    serve, import_from, sandbox, style, min_limit
):
    # A total header the source never sends (a name mistyped, a total the source leaves out
    # of big answers): no total tells at the end that the records after the limit are
    # missing, so the refusal is a limit, as without a total path.
    fake = serve(depth_limit=60, depth_limit_status=400, min_limit=min_limit, max_limit=20)

    execution = import_from(fake, style, page_size=20, total_path="header:X-Total-Count")

    assert execution.state == Execution.State.FAILED, "DONE with 60 records of 100"
    assert "to be paged that deep" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("lane_seconds", [20, 0], ids=["one lane", "a lane per page"])
@pytest.mark.parametrize("wraps_to, page", [(0, 1), (50, 3)], ids=["to page 1", "to page 3"])
def test_a_cursor_source_leading_back_to_an_earlier_page_fails_instead_of_going_round(
    serve, import_from, sandbox, settings, lane_seconds, wraps_to, page
):
    settings.CHUNK_LANE_SECONDS = lane_seconds  # 0: each page read by a lane of its own
    fake = serve(wraps_around=True, wraps_to=wraps_to)

    execution = import_from(fake, "cursor")

    assert execution.state == Execution.State.FAILED
    assert f"led back to page {page} under another cursor (page 5 holds" in execution.error
    remote = sandbox.execution(execution.assets_execution_id)  # no record sent twice
    assert remote["records_received"] <= RECORDS and remote["duplicate_objects"] == 0
    assert remote["completed_posts"] == 0


@pytest.mark.parametrize("style", ["cursor", "next_url", "link_header"])
def test_an_empty_page_that_leads_on_to_more_is_not_the_end(serve, import_from, sandbox, style):
    # A filtered scan (DynamoDB, CloudWatch Logs) may answer an empty page with a next cursor.
    fake = serve(empty_hops=frozenset({50}))

    execution = import_from(fake, style)

    assert_every_record_once(sandbox, execution)


@pytest.mark.parametrize("style", ["offset", "page"])
@pytest.mark.parametrize("records", [100, 0])
def test_a_source_writing_its_empty_list_as_null_ends_where_its_records_do(
    serve, import_from, sandbox, style, records
):
    # Go's encoding/json writes an empty slice as null: {"items": null} past the last page,
    # and on the first one when the source holds nothing.
    fake = serve(null_when_empty=True)
    fake.records = fake.records[:records]

    execution = import_from(fake, style)

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == records


@pytest.mark.parametrize(
    "style, selector", [("offset", "data.items?"), ("page", "items?"), ("cursor", "items?")]
)
def test_a_source_leaving_its_empty_list_out_is_read_with_a_selector_saying_so(
    serve, import_from, sandbox, style, selector
):
    # protobuf's JSON (Google's APIs) leaves an empty list out: {"total": 100} past the end,
    # {"meta": {"next_cursor": ...}} for an empty page of a filtered scan.
    fake = serve(omit_when_empty=True, empty_hops=frozenset({50}))

    execution = import_from(fake, style, records_path=selector)

    assert_every_record_once(sandbox, execution)


@pytest.mark.parametrize("style, last_page", [("offset", "offset=75&"), ("page", "page=4&")])
def test_a_passing_404_for_the_last_page_is_asked_again_and_every_record_arrives(
    serve, import_from, sandbox, style, last_page
):
    # A load balancer's default backend answers once for the last page; no total tells.
    fake = serve()
    fake.misbehave("not_found", path_contains=last_page)

    execution = import_from(fake, style)

    assert_every_record_once(sandbox, execution)


@pytest.mark.parametrize("records_path", ["items", "items?"])
def test_a_page_answered_202_while_the_source_prepares_it_is_asked_again_and_every_record_arrives(
    serve, import_from, sandbox, records_path
):
    # A report endpoint answers 202 and a status while it prepares a page (GitHub's
    # statistics do): no records in it, yet no end, even where the list may be left out.
    fake = serve()
    fake.faults.add(path_contains="page=3", status=202, body='{"status": "queued"}')

    execution = import_from(fake, "page", records_path=records_path)
    run_retries_now(execution)
    execution.refresh_from_db()

    assert_every_record_once(sandbox, execution)


def test_an_offset_source_answering_its_last_records_for_any_offset_past_its_end_fails(
    serve, import_from, sandbox
):
    # It clamps the offset: no empty page ever comes, so paging would go on to
    # IMPORT_MAX_PAGES, sending the same records every time.
    fake = serve(clamp_pages=True)

    execution = import_from(fake, "offset")

    assert execution.state == Execution.State.FAILED
    assert "answer its last page again for any offset past its end" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0
    assert len(fake.requests_to("/api/offset")) < 20


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_links_that_go_on_past_the_last_record_fail_after_a_run_of_empty_pages(
    serve, import_from, sandbox, settings, style
):
    settings.SOURCE_MAX_EMPTY_PAGES_IN_A_ROW = 5
    fake = serve()
    fake.endless_links = True  # it always links offset + limit

    execution = import_from(fake, style)

    assert execution.state == Execution.State.FAILED
    assert "answered 5 empty pages in a row" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0
    assert execution.chunks.count() == 4 + 5  # the records' pages, then five empty ones


def test_a_source_numbering_from_one_read_from_zero_is_told_to_start_at_one(
    serve, import_from, sandbox
):
    fake = serve()  # it serves page 0 as page 1, as Laravel does

    execution = import_from(fake, "page", first_page=0)

    assert execution.state == Execution.State.FAILED
    assert "Set the first page to 1" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("records", [RECORDS, 10], ids=["pages", "one page"])
@pytest.mark.parametrize("page_meta", ["spring", "links"])
def test_a_source_numbering_from_zero_read_from_one_is_told_to_start_at_zero(
    serve, import_from, sandbox, page_meta, records
):
    # As Spring numbers its pages; a source of one page answers page 1 empty.
    fake = serve(first_page=0, records=records)
    fake.page_meta = page_meta  # and its answers say where its pages start

    execution = import_from(fake, "page", first_page=1)

    assert execution.state == Execution.State.FAILED
    assert "seems to number its pages from 0" in execution.error
    assert "Set the first page to 0" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0

    if records == RECORDS:
        assert_every_record_once(sandbox, import_from(fake, "page", first_page=0, name="0"))


@pytest.mark.parametrize("page_zero", ["first page", "last page"])
def test_a_source_numbering_from_one_that_links_a_page_before_its_first_is_imported(
    serve, import_from, sandbox, page_zero
):
    # Page 0 served as page 1 (Laravel), or as the last page (Django's Paginator.get_page).
    fake = serve()
    fake.before_first_page = page_zero.split()[0]
    fake.page_meta = "naive_prev"  # and a previous link on page 1, to page 0

    assert_every_record_once(sandbox, import_from(fake, "page", first_page=1))


@pytest.mark.parametrize("style", ["offset", "page", "cursor"])
def test_a_source_of_exactly_the_page_limit_is_imported_and_one_page_more_is_refused(
    serve, import_from, sandbox, settings, style
):
    settings.IMPORT_MAX_PAGES = 4  # the source holds 4 full pages of 25
    assert_every_record_once(sandbox, import_from(serve(), style))

    settings.IMPORT_MAX_PAGES = 3
    execution = import_from(serve(), style, name="inventory, one page more")

    assert execution.state == Execution.State.FAILED
    assert "still had more after 3 pages (IMPORT_MAX_PAGES)" in execution.error


@pytest.mark.parametrize("records", [100, 90])
def test_a_source_answering_its_last_page_for_any_page_after_it_fails_at_once(
    serve, import_from, sandbox, records
):
    # Django's Paginator.get_page() answers page 999 with the last page: no page is empty.
    fake = serve(clamp_pages=True)
    fake.records = fake.records[:records]

    execution = import_from(fake, "page")

    assert execution.state == Execution.State.FAILED
    assert "with the same records as page" in execution.error
    assert "answer its last page again for any page past its end" in execution.error
    assert len(fake.requests_to("/api/page")) < 20  # not IMPORT_MAX_PAGES of them


def test_assets_refusing_the_token_mid_import_fails_it_at_once_not_after_the_whole_source(
    serve, import_from, sandbox
):
    fake = serve(records=2000)  # 80 pages
    sandbox.faults.add(method="POST", path_contains="/data", status=0, times=2)  # two go in
    sandbox.faults.add(method="POST", path_contains="/data", status=401, times=-1)

    execution = import_from(fake, "offset")

    assert execution.state == Execution.State.FAILED
    assert "Assets refused the token (401)" in execution.error
    assert len(fake.requests_to("/api/offset")) < 20  # not all 80 pages read first


@pytest.mark.parametrize(
    "style, settings",
    [
        pytest.param("none", {}, id="one request"),
        pytest.param("cursor", {"cursor_path": "meta.next_cursor"}, id="cursor"),
        pytest.param("next_url", {"cursor_path": "links.next"}, id="next URL"),
        pytest.param("link_header", {}, id="Link header"),
    ],
)
def test_a_first_page_that_is_the_last_though_the_source_tells_more_fails_the_import(
    serve, import_from, sandbox, style, settings
):
    # An offset API read as if it gave next pages: its first page says `meta.total` 100 and
    # holds 25, with no next page anywhere. Taken for the last, it ended DONE with 25.
    fake = serve()

    execution = import_from(fake, "offset", pagination=style, **settings)

    assert execution.state == Execution.State.FAILED
    told = "says it holds 100 records ('meta.total') but "
    if style == "none":  # no page size sent: the source's own, 10
        assert f"{told}its one answer held 10: choose the paging style" in execution.error
        assert "without the other 90" in execution.error
    else:
        assert f"{told}its first page held 25, with no next page " in execution.error
        assert "The import stops rather than end DONE without the other 75" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["records_received"] == 0


def test_a_source_read_in_one_request_whose_answer_holds_its_whole_total_is_done(
    serve, import_from, sandbox
):
    fake = serve()

    execution = import_from(fake, "offset", pagination="none", extra_params={"limit": "100"})

    assert_every_record_once(sandbox, execution)
