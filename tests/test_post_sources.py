"""REST sources read with POST and a JSON body: GraphQL APIs and search APIs, end to end
against the demo inventory's GraphQL-like and search endpoints and the Assets sandbox."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError
from django.urls import reverse

from importer import services
from importer.models import Execution, ImportSource
from tests.conftest import SANDBOX_TOKEN
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
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


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
