"""REST sources read with POST and a JSON body: GraphQL APIs and search APIs, end to end
against the demo inventory's GraphQL-like and search endpoints and the Assets sandbox."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError
from django.urls import reverse
from django.utils import timezone

from importer import services
from importer.devtools import demo_source
from importer.models import ChunkJob, Execution, ImportSource
from importer.progress import retries_of, retry_text
from importer.redaction import mask_secret_values, redact, redact_for, secrets_of
from importer.redaction.masks import secret_values
from importer.sources import SourceError, build_source, request_body
from tests.conftest import SANDBOX_TOKEN, run_retries_now
from tests.test_admin import post_source
from tests.test_commands import run, source_entry, write

# As Lansweeper's and GitHub's GraphQL APIs are asked: the page size and the cursor are
# variables of the query.
ASSETS_QUERY = (
    "query Assets($first: Int!, $after: String) { assets(first: $first, after: $after) "
    "{ items { serial hostname kind model ram_gb os owner purchased } "
    "pageInfo { endCursor hasNextPage } } }"
)
GRAPHQL_SETTINGS = {
    "request_method": "POST",
    "request_body": {"query": ASSETS_QUERY, "variables": {"after": None}},
    "records_path": "data.assets.items",
    "pagination": "cursor",
    "cursor_param": "variables.after",
    "cursor_path": "data.assets.pageInfo.endCursor",
    "limit_param": "variables.first",
    "page_size": 25,
}


@pytest.fixture
def graphql_source(make_source, inventory):
    def build(**overrides) -> ImportSource:
        fields = {**GRAPHQL_SETTINGS, **overrides}
        return make_source(source_url=f"{inventory.base_url}/api/graphql", **fields)

    return build


@pytest.mark.django_db(transaction=True)
def test_a_graphql_source_read_by_cursor_imports_every_record_done(
    graphql_source, sandbox, inventory
):
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0
    # The query as written, with the page size and each page's cursor in its variables.
    assert {query["query"] for query in inventory.queries} == {ASSETS_QUERY}
    assert all(query["variables"]["first"] == 25 for query in inventory.queries)
    assert inventory.queries[0]["variables"]["after"] is None
    assert all(query["variables"]["after"] for query in inventory.queries[1:])


@pytest.mark.django_db(transaction=True)
def test_a_graphql_source_ends_where_its_page_info_says_there_is_no_next_page(
    graphql_source, sandbox, inventory
):
    # The last page keeps its endCursor, with hasNextPage false: asking on would cost a
    # request, and some servers refuse a cursor past the end.
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(inventory.queries) == 5  # 120 records, 25 a page


@pytest.mark.parametrize(
    "cursors, sent", [("int", [25, 50, 75, 100]), ("digits", ["025", "050", "075", "100"])]
)
@pytest.mark.django_db(transaction=True)
def test_a_graphql_source_gets_each_cursor_back_as_the_json_type_it_answered(
    graphql_source, sandbox, inventory, cursors, sent
):
    # A cursor variable typed `Int` refuses "25"; one typed `String` refuses 25, and its
    # "025" is no 25.
    inventory.graphql_cursors = cursors
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert [query["variables"]["after"] for query in inventory.queries] == [None, *sent]


@pytest.mark.parametrize(
    "cursor",
    [25, 1.5, 2**70, True, "25", "007", " 25", "true", "null", '"25"', '{"id": 7}', "NaN", "é"],
)
def test_a_stored_cursor_stands_for_the_very_json_value_the_answer_gave(cursor):
    sent = request_body.cursor_value(request_body.stored_cursor(cursor))

    assert (sent, type(sent)) == (cursor, type(cursor))


def test_an_opaque_cursor_is_stored_as_it_came_as_the_release_before_stored_it():
    token = "YXJyYXljb25uZWN0aW9uOjI1"

    assert request_body.stored_cursor(token) == token
    assert request_body.cursor_value(token) == token


@pytest.mark.django_db(transaction=True)
def test_a_graphql_page_asked_again_sends_its_cursor_as_the_json_type_it_was_answered(
    graphql_source, sandbox, inventory
):
    inventory.graphql_cursors = "int"
    inventory.throttle_graphql(like="code", at=50)
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)
    run_retries_now(execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert [query["variables"]["after"] for query in inventory.queries] == [
        None,
        25,
        50,
        50,
        75,
        100,
    ]


@pytest.mark.parametrize("cursors", ["int", "digits"])
@pytest.mark.django_db(transaction=True)
def test_graphql_cursors_counted_by_the_size_asked_past_the_size_served_fail_naming_it(
    graphql_source, sandbox, inventory, cursors
):
    # Asked for 25, it answers 20, and its next cursor is 25 (or "025"): items 21 to 25 of
    # every 25 are never served, and no total tells.
    inventory.graphql_cursors = cursors
    inventory.graphql_max_first = 20
    inventory.graphql_counts_asked = True
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED, "DONE with 100 records of 120"
    assert "serves at most 20 records a page when asked for 25 ('variables.first')" in (
        execution.error
    )
    assert "its next link moves 'variables.after' by 25" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.parametrize("cursors", ["int", "digits"])
@pytest.mark.django_db(transaction=True)
def test_graphql_cursors_counted_by_the_size_served_are_done_with_every_record(
    graphql_source, sandbox, inventory, cursors
):
    inventory.graphql_cursors = cursors
    inventory.graphql_max_first = 20
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert len(inventory.queries) == 6  # 120 records, 20 a page: nothing asked besides


@pytest.mark.parametrize("items", [1, 0], ids=["with-records", "emptied-by-a-filter"])
@pytest.mark.django_db(transaction=True)
def test_a_graphql_page_with_no_end_cursor_that_says_it_has_a_next_page_fails_the_import(
    graphql_source, sandbox, inventory, items
):
    # Nothing can be asked for after it, yet it says more follow: ending there would be DONE
    # with the records of the pages before it alone.
    page_info = {"endCursor": None, "hasNextPage": True}
    answer = {"data": {"assets": {"items": inventory.computers()[25 : 25 + items]}}}
    answer["data"]["assets"]["pageInfo"] = page_info
    later_page = {"path_contains": "/api/graphql", "body_contains": '"after": "'}
    inventory.faults.add(**later_page, status=200, body=json.dumps(answer))
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED, "DONE with 25 records of 120"
    assert (
        "answered null at its next-page path 'data.assets.pageInfo.endCursor' while the answer "
        "says more pages follow (hasNextPage: true)"
    ) in execution.error


@pytest.mark.django_db(transaction=True)
def test_a_search_api_paged_by_offset_in_its_body_imports_every_record_done(
    make_source, sandbox, inventory
):
    source = make_source(
        source_url=f"{inventory.base_url}/api/search",
        request_method="POST",
        request_body={"query": {"match_all": {}}, "sort": ["serial"]},
        records_path="items",
        pagination="offset",
        offset_param="from",
        limit_param="size",
        total_path="total",
        page_size=50,
    )
    source = services.push_mapping(source=source)

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    read = sorted((query["from"], query["size"]) for query in inventory.queries)
    assert read[:3] == [(0, 50), (50, 50), (100, 50)]
    assert all(query["sort"] == ["serial"] for query in inventory.queries)


@pytest.mark.django_db(transaction=True)
def test_graphql_errors_fail_the_import_quoting_the_first_message(
    graphql_source, sandbox, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    query = ASSETS_QUERY.replace("assets(", "computers(")
    source = services.push_mapping(
        source=graphql_source(request_body={"query": query, "variables": {}})
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert 'answered with GraphQL errors: "Cannot query field "computers" on type "Query"."' in (
        execution.error
    )
    assert "Check the request body's query and variables" in execution.error


@pytest.mark.django_db(transaction=True)
def test_graphql_errors_beside_records_fail_the_page_without_showing_secrets(
    graphql_source, sandbox, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    token = "lansweeper-pat-5f3a9c0d1e2b4a6f"
    inventory.token = token
    partial = {
        "data": {"assets": {"items": [{"serial": "SN-00001"}], "pageInfo": {}}},
        "errors": [
            {"message": f"Token {token} may not read field 'owner'"},
            {"message": "second error"},
        ],
    }
    inventory.faults.add(path_contains="/api/graphql", status=200, body=json.dumps(partial))
    source = services.push_mapping(source=graphql_source(source_auth="bearer", source_token=token))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "answered with GraphQL errors (and 1 more)" in execution.error
    assert "may not read field 'owner'" in execution.error
    assert token not in execution.error


@pytest.mark.django_db
def test_a_request_body_that_is_not_json_is_refused_with_a_clear_message(
    staff_client, graphql_source
):
    source = graphql_source()
    pasted = "query {\n  assets { items { serial } }\n}"

    response = post_source(staff_client, source, request_body=pasted)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["request_body"]
    assert errors == [
        "The request body is not valid JSON (Expecting value at line 1, column 1). Write it "
        'as a JSON object, e.g. {"query": "query($after: String) { assets(after: $after) '
        '{ … } }", "variables": {}}: a GraphQL query is one JSON string, its line breaks '
        "written \\n."
    ]
    source.refresh_from_db()
    assert source.request_body == GRAPHQL_SETTINGS["request_body"]


@pytest.mark.django_db
def test_a_request_body_without_room_for_a_paging_value_is_refused(staff_client, graphql_source):
    source = graphql_source()

    response = post_source(
        staff_client, source, request_body=json.dumps({"query": "…", "variables": "none"})
    )

    assert response.context["adminform"].form.errors["request_body"] == [
        "The request body has no place for the page size at 'variables.first': 'variables' "
        "holds a string, not an object (make it one, or give the page size another path "
        "under Paging)."
    ]


@pytest.mark.django_db
def test_import_sources_accepts_a_graphql_source_with_its_method_and_body(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"] = {
        "kind": "rest",
        "url": f"{inventory.base_url}/api/graphql",
        "method": "POST",
        "body": {"query": ASSETS_QUERY, "variables": {"after": None}},
        "records": "data.assets.items",
        "pagination": {
            "style": "cursor",
            "page_size": 100,
            "cursor_param": "variables.after",
            "cursor_path": "data.assets.pageInfo.endCursor",
            "limit_param": "variables.first",
        },
        "auth": {"kind": "bearer", "token": "inventory-token"},
    }

    output = run("import_sources", write(tmp_path, [entry]), "--no-push")

    assert output.strip() == "created laptops"
    source = ImportSource.objects.get(name="laptops")
    assert source.request_method == "POST"
    assert source.request_body == {"query": ASSETS_QUERY, "variables": {"after": None}}
    exported = json.loads(run("export_sources", "--with-secrets"))
    assert exported["sources"][0]["source"]["body"] == source.request_body
    assert run("import_sources", write(tmp_path, exported), "--no-push").strip() == (
        "unchanged laptops"
    )


@pytest.mark.django_db
def test_import_sources_refuses_a_post_source_paged_by_next_links(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"].update(
        method="POST",
        body={"query": "{ assets { items { serial } } }"},
        pagination={"style": "next_url", "cursor_path": "links.next"},
    )

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, [entry]))

    assert "source.pagination.style: A source read with POST is paged by offset" in str(error.value)
    assert not ImportSource.objects.exists()


@pytest.mark.django_db
def test_a_credential_in_the_request_body_is_masked_in_exports(
    tmp_path, sandbox, inventory, demo_mapping
):
    # JSON-RPC APIs (Zabbix's) take their session token in the body.
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"].update(
        method="POST",
        body={"jsonrpc": "2.0", "method": "host.get", "auth": "zbx-session-0123456789abcdef"},
        pagination={"style": "none"},
    )
    run("import_sources", write(tmp_path, [entry]), "--no-push")

    exported = run("export_sources")

    assert "zbx-session-0123456789abcdef" not in exported
    assert json.loads(exported)["sources"][0]["source"]["body"]["auth"] == "***"
    assert SANDBOX_TOKEN not in exported


@pytest.mark.django_db(transaction=True)
def test_a_key_in_the_request_body_under_a_name_declared_secret_is_kept_secret(
    graphql_source, sandbox, inventory, settings, client, django_user_model
):
    # A vendor's key under a name of its own, declared under the secret parameters; GraphQL
    # servers quote the variables they refuse.
    settings.CHUNK_MAX_ATTEMPTS = 1
    key = "site-key-8c1f0e27b9d4a653"
    body = {"query": ASSETS_QUERY, "variables": {"after": None, "siteKey": key}}
    refused = {"data": None, "errors": [{"message": f'Variable "$siteKey" got "{key}"'}]}
    inventory.faults.add(path_contains="/api/graphql", status=200, body=json.dumps(refused))
    source = services.push_mapping(
        source=graphql_source(request_body=body, secret_params="sitekey")
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert 'got "***"' in execution.error
    assert key not in json.dumps(sandbox.executions())
    assert json.loads(run("export_sources"))["sources"][0]["source"]["body"]["variables"] == {
        "after": None,
        "siteKey": "***",
    }
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_importsource"))
    client.force_login(viewer)
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    assert "site-key" not in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_query_parameters_named_like_a_paging_path_in_the_body_stay_in_the_query(
    make_source, sandbox, inventory
):
    # With POST the paging writes into the body: a filter of the query under the same name
    # is the source's own, and goes on being sent.
    asked = []
    inventory.on_request = asked.append
    source = make_source(
        source_url=f"{inventory.base_url}/api/search?size=compact",
        request_method="POST",
        request_body={"query": {"match_all": {}}},
        records_path="items",
        pagination="offset",
        offset_param="from",
        limit_param="size",
        extra_params={"from": "2024-01-01"},
        page_size=50,
    )

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert sorted((query["from"], query["size"]) for query in inventory.queries)[:3] == [
        (0, 50),
        (50, 50),
        (100, 50),
    ]
    assert {request.raw_path for request in asked} == {"/api/search?size=compact&from=2024-01-01"}


# --- rate limits reported in a 200 ---------------------------------------------------------


def positions_asked(inventory) -> list[int]:
    """Where each GraphQL query asked its page to start, in order (0: the first page)."""
    return [
        demo_source._position_in(query["variables"]["after"]) if query["variables"]["after"] else 0
        for query in inventory.queries
    ]


@pytest.mark.django_db(transaction=True)
def test_a_graphql_page_throttled_as_shopify_does_waits_as_asked_then_every_record_arrives_once(
    graphql_source, sandbox, inventory
):
    # Shopify answers 200 with "Throttled" and says what the query costs beyond the points
    # available, and how fast they come back: (550 - 50) / 50 = 10 s.
    inventory.throttle_graphql(like="shopify", wait=10, at=50)
    source = services.push_mapping(source=graphql_source())

    before = timezone.now()
    execution = services.start_import(source=source)
    after = timezone.now()

    waiting = execution.chunks.get(index=2)
    assert (waiting.state, waiting.rate_limited_waits) == (ChunkJob.State.QUEUED, 1)
    seconds = timedelta(seconds=1)
    assert before + 10 * seconds <= waiting.next_attempt_at <= after + 12 * seconds  # + jitter
    assert 'rate limiting its GraphQL queries: "Throttled", and asks to wait 10 s' in waiting.error
    assert retry_text(retries_of(execution)[0]) == "page 3 waits (rate_limited)"
    run_retries_now(execution)  # without waiting for its time
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert (len(remote["objects"]), remote["duplicate_objects"]) == (120, 0)
    assert positions_asked(inventory) == [0, 25, 50, 50, 75, 100]


@pytest.mark.django_db(transaction=True)
def test_a_graphql_page_throttled_as_github_does_waits_for_the_rate_limits_reset(
    graphql_source, sandbox, inventory
):
    # GitHub answers 200 with "type": "RATE_LIMITED", and its headers say no request remains
    # until x-ratelimit-reset (a Unix time, here 30 s away).
    inventory.throttle_graphql(like="github", wait=30, at=0)
    source = services.push_mapping(source=graphql_source())

    before = timezone.now()
    execution = services.start_import(source=source)
    after = timezone.now()

    waiting = execution.chunks.get(index=0)
    assert (waiting.state, waiting.rate_limited_waits) == (ChunkJob.State.QUEUED, 1)
    seconds = timedelta(seconds=1)
    assert before + 29 * seconds <= waiting.next_attempt_at <= after + 34 * seconds
    assert '"API rate limit exceeded for user ID 583231."' in waiting.error
    run_retries_now(execution)
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert (len(remote["objects"]), remote["duplicate_objects"]) == (120, 0)


THROTTLED = {"message": "Throttled", "extensions": {"code": "THROTTLED"}}
SHOPIFY_COST = {  # (752 - 666) / 50 = 1.72 s
    "requestedQueryCost": 752,
    "actualQueryCost": None,
    "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 666, "restoreRate": 50.0},
}


def graphql_error(message: str, **extensions) -> dict:
    return {"message": message, "extensions": extensions}


@pytest.mark.parametrize(
    "answer, headers, wait",
    [
        ({"errors": [THROTTLED], "extensions": {"cost": SHOPIFY_COST}}, {}, 1.72),
        ({"errors": [THROTTLED]}, {"Retry-After": "7"}, 7.0),
        ({"errors": [graphql_error("slow down", code="TOO_MANY_REQUESTS")]}, {}, None),
        (  # Codex says how long
            {"errors": [graphql_error("slow", code="TOO_MANY_REQUESTS", retryAfterSeconds=3)]},
            {},
            3.0,
        ),
        (  # monday.com's budget per minute
            {
                "errors": [
                    graphql_error(
                        "Complexity budget exhausted",
                        code="COMPLEXITY_BUDGET_EXHAUSTED",
                        retry_in_seconds=60,
                    )
                ]
            },
            {},
            60.0,
        ),
        ({"data": None, "errors": [graphql_error("Rate limit", type="ratelimited")]}, {}, None),
        (  # GitHub, with requests left in the window: its reset is no wait
            {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]},
            {"x-ratelimit-remaining": "12", "x-ratelimit-reset": "4102444800"},
            None,
        ),
    ],
    ids=["shopify", "retry-after", "code", "codex", "monday", "linear", "requests-left"],
)
@pytest.mark.django_db
def test_a_graphql_answer_that_says_it_is_throttled_is_a_rate_limit_with_the_wait_it_asks(
    graphql_source, inventory, answer, headers, wait
):
    inventory.faults.add(
        path_contains="/api/graphql", status=200, body=json.dumps(answer), headers=headers
    )

    with pytest.raises(SourceError) as caught:
        build_source(graphql_source()).fetch_page("")

    refused = caught.value
    assert (refused.kind, refused.permanent, refused.status) == ("rate_limited", False, 429)
    assert refused.retry_after == (pytest.approx(wait) if wait is not None else None)
    assert "is rate limiting its GraphQL queries" in refused.message


@pytest.mark.parametrize(
    "error",
    [
        graphql_error("Cannot query field 'owner'", code="GRAPHQL_VALIDATION_FAILED"),
        graphql_error("Daily limit exceeded", code="DAILY_LIMIT_EXCEEDED"),
        graphql_error("Query cost is 1200, max 1000", code="MAX_COST_EXCEEDED"),
    ],
    ids=["validation", "daily-quota", "query-too-costly"],
)
@pytest.mark.django_db
def test_graphql_errors_that_no_wait_mends_still_fail_for_good(graphql_source, inventory, error):
    inventory.faults.add(
        path_contains="/api/graphql", status=200, body=json.dumps({"errors": [error]})
    )

    with pytest.raises(SourceError) as caught:
        build_source(graphql_source()).fetch_page("")

    assert (caught.value.kind, caught.value.permanent) == ("graphql_errors", True)
    assert f'answered with GraphQL errors: "{error["message"]}"' in caught.value.message


@pytest.mark.django_db(transaction=True)
def test_a_throttle_beside_another_graphql_error_fails_the_import_quoting_the_other(
    graphql_source, sandbox, inventory
):
    # Waiting would mend the throttle, not a field the credentials may not read.
    answer = {"errors": [THROTTLED, {"message": "Access denied for field 'owner'"}]}
    inventory.faults.add(path_contains="/api/graphql", status=200, body=json.dumps(answer))
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "answered with GraphQL errors (and 1 more): \"Access denied for field 'owner'\"" in (
        execution.error
    )
    assert execution.chunks.get().rate_limited_waits == 0


@pytest.mark.parametrize("refusal", ["graphql_throttled", "http_429"])
@pytest.mark.django_db(transaction=True)
def test_a_source_throttling_for_ever_fails_as_a_source_answering_429_for_ever_does(
    graphql_source, sandbox, inventory, settings, refusal
):
    settings.RATE_LIMITED_MAX_ATTEMPTS = 3
    settings.CHUNK_MAX_ATTEMPTS = 2
    if refusal == "http_429":
        inventory.faults.add(path_contains="/api/graphql", status=429, times=-1)
    else:
        inventory.throttle_graphql(times=-1, like="code")
    source = services.push_mapping(source=graphql_source())

    execution = services.start_import(source=source)
    run_retries_now(execution)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 1 failed: source 'inventory' ")
    assert execution.error.endswith(
        "(gave up after 2 attempts and 3 waits for its rate limit: set the source's limit on "
        "requests per minute below the rate it allows, or read fewer pages at once)"
    )
    page = execution.chunks.get()
    assert (page.last_error_kind, page.rate_limited_waits, page.attempts) == ("rate_limited", 3, 2)


@pytest.mark.django_db(transaction=True)
def test_a_key_written_into_the_graphql_query_itself_is_kept_secret(
    graphql_source, sandbox, inventory, settings, client, django_user_model, tmp_path
):
    # No JSON key names it: the query's text does (`apiKey: "..."`), and GraphQL servers
    # quote the argument values they refuse.
    settings.CHUNK_MAX_ATTEMPTS = 1
    key = "inline-key-3b7e91d0c2a4f658"
    query = ASSETS_QUERY.replace("assets(first", f'assets(apiKey: "{key}", first')
    refused = {
        "data": None,
        "errors": [{"message": f'Argument "apiKey" on field "assets" has invalid value "{key}"'}],
    }
    inventory.faults.add(path_contains="/api/graphql", status=200, body=json.dumps(refused))
    source = services.push_mapping(
        source=graphql_source(request_body={"query": query, "variables": {"after": None}})
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert 'has invalid value "***"' in execution.error
    assert key not in execution.chunks.get(index=0).error
    assert key not in json.dumps(sandbox.executions())
    exported = run("export_sources")
    assert json.loads(exported)["sources"][0]["source"]["body"] == {
        "query": "***",
        "variables": {"after": None},
    }
    (tmp_path / "sources.json").write_text(exported)
    run("import_sources", str(tmp_path / "sources.json"), "--no-push")
    source.refresh_from_db()
    assert source.request_body["query"] == query  # the masked text kept the stored one
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_importsource"))
    client.force_login(viewer)
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    assert page.status_code == 200
    assert key not in page.content.decode()


@pytest.mark.django_db
def test_a_graphql_filter_on_a_field_named_key_is_shown_as_written_and_scrubs_nothing(
    graphql_source, client, django_user_model
):
    # `key: "serial"` names the field a filter compares, as many GraphQL APIs write their
    # filters and sorts: no credential, so the query stays readable on the source's page,
    # and "serial" is no secret blanked from every message.
    query = ASSETS_QUERY.replace(
        "assets(first", 'assets(filter: {key: "serial", value: "SN-1"}, sort_key: "hostname", first'
    )
    source = graphql_source(request_body={"query": query, "variables": {"after": None}})

    assert not {"serial", "hostname"} & set(secrets_of(source))
    error = 'Cannot filter on key: "serial" with sort_key: "hostname"'
    assert redact_for(source, error) == error
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_importsource"))
    client.force_login(viewer)
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    assert "sort_key" in page.content.decode()


@pytest.mark.django_db
def test_a_graphql_query_on_fields_named_like_credentials_is_shown_and_exported_as_written(
    graphql_source, client, django_user_model
):
    # An identity API's users: how each signs in, who created them, how many sessions they
    # hold. Such fields begin like "auth" and "session" and hold no credential.
    query = ASSETS_QUERY.replace(
        "assets(first", 'assets(filter: {authenticationMethod: "SAML"}, first'
    ).replace("owner", "owner authorName sessionCount")
    source = graphql_source(request_body={"query": query, "variables": {"after": None}})

    assert "SAML" not in secrets_of(source)
    error = 'Field "sessionCount" of authenticationMethod: "SAML" (authorName: "Jane") failed'
    assert redact_for(source, error) == error
    assert json.loads(run("export_sources"))["sources"][0]["source"]["body"]["query"] == query
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_importsource"))
    client.force_login(viewer)
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    shown = page.content.decode()
    assert r"{authenticationMethod: \&quot;SAML\&quot;}" in shown  # JSON, then HTML
    assert "owner authorName sessionCount" in shown


def test_a_key_shaped_value_under_a_bare_key_name_in_the_query_is_still_secret() -> None:
    # `key: "AIza..."`, as Google's APIs name their key: the value looks like one.
    key = "AIzaSyD4x9Qw2Lm7Kp0Zt5Rv8Bn3Xc6Jh1Fg"
    body = {"query": f'{{ assets(key: "{key}") {{ id }} }}'}

    assert mask_secret_values(body) == {"query": "***"}
    assert secret_values(body) == [key]
    assert key not in redact(f'Argument key: "{key}" refused')


@pytest.mark.django_db(transaction=True)
def test_credentials_inside_a_credential_named_object_of_the_body_are_kept_secret(
    graphql_source, sandbox, inventory, settings
):
    # A JSON-RPC style login in the body: the object is named as credentials, its entries
    # are not; shown masked whole, every value in it is a secret.
    settings.CHUNK_MAX_ATTEMPTS = 1
    password = "rpc-pass-9d2e71c4b0"
    body = {
        "query": ASSETS_QUERY,
        "variables": {"after": None},
        "auth": {"user": "svc-reader", "pass": password},
    }
    refused = {"data": None, "errors": [{"message": f"login svc-reader/{password} refused"}]}
    inventory.faults.add(path_contains="/api/graphql", status=200, body=json.dumps(refused))
    source = services.push_mapping(source=graphql_source(request_body=body))

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert "refused" in execution.error
    for text in (execution.error, execution.chunks.get(index=0).error):
        assert password not in text
    assert password not in json.dumps(sandbox.executions())
    exported = json.loads(run("export_sources"))["sources"][0]["source"]["body"]
    assert exported["auth"] == "***"
