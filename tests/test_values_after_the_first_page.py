"""Cursor paging whose requests after the first say so besides sending the cursor:
Lansweeper's Data API asks `"page": "FIRST"` first and `"page": "NEXT"` with the cursor
after it, end to end against the demo inventory's Lansweeper-shaped GraphQL query and the
Assets sandbox; and the same for a GET's query parameters."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError
from django.urls import reverse

from importer import services
from importer.devtools.demo_source import _cursor_at
from importer.forms.source_fields import FIELD_CONDITIONS, field_is_used
from importer.models import Execution, ImportSource
from importer.redaction import mask_setting, secrets_of
from importer.sources import build_source
from tests.conftest import SANDBOX_TOKEN
from tests.fake_source import FakeSource
from tests.test_admin import post_source, source_form_data
from tests.test_commands import run, source_entry, write

# As Lansweeper's Data API is asked for a site's assets.
SITE_QUERY = (
    "query getAssetResources($siteId: ID!, $pagination: AssetsPaginationInputValidated) "
    "{ site(id: $siteId) { assetResources(assetPagination: $pagination, fields: "
    '["serial", "hostname"]) { total pagination { limit current next page } items } } }'
)
FIRST = {"limit": 100, "page": "FIRST"}
LANSWEEPER_SETTINGS = {
    "request_method": "POST",
    "request_body": {
        "query": SITE_QUERY,
        "variables": {"siteId": "site-1", "pagination": FIRST},
    },
    "records_path": "data.site.assetResources.items",
    "pagination": "cursor",
    "cursor_param": "variables.pagination.cursor",
    "cursor_path": "data.site.assetResources.pagination.next",
    "limit_param": "variables.pagination.limit",
    "after_first_page": {"variables.pagination.page": "NEXT"},
    "page_size": 25,
}


@pytest.fixture
def lansweeper_source(make_source, inventory):
    def build(**overrides) -> ImportSource:
        fields = {**LANSWEEPER_SETTINGS, **overrides}
        return make_source(source_url=f"{inventory.base_url}/api/graphql", **fields)

    return build


@pytest.mark.django_db(transaction=True)
def test_a_lansweeper_source_imports_every_record_once_done(lansweeper_source, sandbox, inventory):
    source = services.push_mapping(source=lansweeper_source())

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0


@pytest.mark.django_db(transaction=True)
def test_the_first_request_asks_for_first_and_the_later_ones_for_next_with_the_cursor(
    lansweeper_source, sandbox, inventory
):
    source = services.push_mapping(source=lansweeper_source())

    services.start_import(source=source)

    asked = [query["variables"]["pagination"] for query in inventory.queries]
    assert asked == [
        {"limit": 25, "page": "FIRST"},
        *(
            {"limit": 25, "page": "NEXT", "cursor": _cursor_at(start)}
            for start in (25, 50, 75, 100)
        ),
    ]
    assert all(query["variables"]["siteId"] == "site-1" for query in inventory.queries)
    # The stored template is left as it was: every import starts with FIRST again.
    source.refresh_from_db()
    assert source.request_body["variables"]["pagination"] == FIRST


# --- GET: query parameters sent after the first page ----------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeSource]:
    server = FakeSource(records=23).start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_a_get_source_sends_its_values_after_the_first_page_from_the_second_request_on(
    fake: FakeSource,
) -> None:
    source = ImportSource.objects.create(
        name="cursor",
        source_url=f"{fake.base_url}/api/cursor",
        records_path="items",
        pagination="cursor",
        cursor_param="cursor",
        cursor_path="meta.next_cursor",
        page_size=5,
        extra_params={"mode": "first"},
        after_first_page={"mode": "next", "with_count": 0},
    )
    reader = build_source(source)
    cursor, pages = "", 0
    while cursor is not None:
        cursor = reader.fetch_page(cursor).next_cursor
        pages += 1

    assert pages == 5
    assert fake.requests[0].query == {"mode": ["first"], "limit": ["5"]}
    assert all(
        request.query["mode"] == ["next"] and request.query["with_count"] == ["0"]
        for request in fake.requests[1:]
    )


# --- the admin form --------------------------------------------------------------------------


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


@pytest.mark.django_db
def test_the_setting_is_used_only_by_cursor_paging() -> None:
    rest = {"source_kind": "rest", "request_method": "POST"}
    assert field_is_used("after_first_page", {**rest, "pagination": "cursor"})
    assert field_is_used(
        "after_first_page", {**rest, "request_method": "GET", "pagination": "cursor"}
    )
    for other in ("offset", "page", "keyset", "next_url", "link_header", "none"):
        assert not field_is_used("after_first_page", {**rest, "pagination": other})
    assert "after_first_page" in FIELD_CONDITIONS


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, where",
    [
        (
            "variables.pagination.cursor",
            "is where the paging sends the cursor ('variables.pagination.cursor')",
        ),
        (
            "variables.pagination",
            "overlaps 'variables.pagination.limit', where the paging sends the page size",
        ),
        (
            "variables.pagination.limit",
            "is where the paging sends the page size ('variables.pagination.limit')",
        ),
    ],
    ids=["the cursor's path", "an object holding the paging's", "the page size's path"],
)
def test_a_value_where_the_paging_writes_its_own_is_refused(
    staff_client, lansweeper_source, path, where
):
    source = lansweeper_source()

    response = post_source(staff_client, source, after_first_page=json.dumps({path: "NEXT"}))

    assert form_errors(response)["after_first_page"] == [
        f"'{path}' {where}: leave it out of the values after the first page, which name only "
        'what else changes after it (e.g. {"variables.pagination.page": "NEXT"}).'
    ]
    source.refresh_from_db()
    assert source.after_first_page == {"variables.pagination.page": "NEXT"}


@pytest.mark.django_db
def test_values_after_the_first_page_must_be_an_object(staff_client, lansweeper_source):
    source = lansweeper_source()

    response = post_source(staff_client, source, after_first_page='["NEXT"]')

    assert form_errors(response)["after_first_page"] == [
        "The values after the first page must be a JSON object of dotted path -> value (e.g. "
        '{"variables.pagination.page": "NEXT"}), not a list.'
    ]


@pytest.mark.django_db
def test_a_get_source_is_refused_a_value_no_query_parameter_can_carry(
    staff_client, lansweeper_source
):
    source = lansweeper_source(request_method="GET", request_body=None, after_first_page=None)

    response = post_source(
        staff_client,
        source,
        request_method="GET",
        request_body="",
        cursor_param="after",
        limit_param="first",
        after_first_page=json.dumps({"page": {"name": "NEXT"}}),
    )

    assert form_errors(response)["after_first_page"] == [
        "'page' after the first page is a query parameter, whose value is a string or a "
        "number, not an object (with POST it goes into the body as written)."
    ]


@pytest.mark.django_db
def test_a_body_without_room_for_a_value_after_the_first_page_is_refused(
    staff_client, lansweeper_source
):
    source = lansweeper_source()

    response = post_source(
        staff_client, source, after_first_page=json.dumps({"variables.siteId.page": "NEXT"})
    )

    assert (
        "'variables.siteId' holds a string, not an object"
        in (form_errors(response)["request_body"][0])
    )


@pytest.mark.django_db
def test_lansweeper_values_are_saved(staff_client, lansweeper_source):
    source = lansweeper_source(after_first_page=None)

    response = post_source(
        staff_client, source, after_first_page='{"variables.pagination.page": "NEXT"}'
    )

    assert response.status_code == 302, form_errors(response)
    source.refresh_from_db()
    assert source.after_first_page == {"variables.pagination.page": "NEXT"}


@pytest.mark.django_db
def test_a_page_opened_before_the_setting_existed_is_checked_against_the_stored_values(
    staff_client, lansweeper_source
):
    # Its cursor parameter moved onto a stored value would be refused by every import.
    source = lansweeper_source()
    data = source_form_data(source, cursor_param="variables.pagination.page")
    del data["after_first_page"]

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]), data
    )

    assert form_errors(response)["after_first_page"][0].startswith(
        "'variables.pagination.page' is where the paging sends the cursor"
    )
    source.refresh_from_db()
    assert source.cursor_param == "variables.pagination.cursor"
    assert source.after_first_page == {"variables.pagination.page": "NEXT"}


# --- secrets ---------------------------------------------------------------------------------


def test_a_credential_named_value_after_the_first_page_is_kept_secret() -> None:
    key = "k-0b1e5c7d9a2f4e6081"
    values = {"variables.pagination.page": "NEXT", "variables.key": key, "auth.user": "svc"}
    source = ImportSource(pagination="cursor", after_first_page=values)

    assert mask_setting("after_first_page", values) == {
        "variables.pagination.page": "NEXT",
        "variables.key": "***",
        "auth.user": "***",
    }
    assert key in secrets_of(source) and "svc" in secrets_of(source)
    assert "NEXT" not in secrets_of(source)


@pytest.mark.django_db
def test_a_viewer_sees_a_credential_named_value_after_the_first_page_masked(
    client, django_user_model, lansweeper_source
):
    key = "k-0b1e5c7d9a2f4e6081"
    source = lansweeper_source(
        after_first_page={"variables.pagination.page": "NEXT", "variables.apiKey": key}
    )
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_importsource"))
    client.force_login(viewer)

    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    shown = page.content.decode()
    assert key not in shown
    assert "variables.pagination.page" in shown and "NEXT" in shown


# --- the sources file ------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_sources_takes_the_values_after_the_first_page_and_export_gives_them_back(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"] = {
        "kind": "rest",
        "url": f"{inventory.base_url}/api/graphql",
        "method": "POST",
        "body": LANSWEEPER_SETTINGS["request_body"],
        "records": "data.site.assetResources.items",
        "pagination": {
            "style": "cursor",
            "cursor_param": "variables.pagination.cursor",
            "cursor_path": "data.site.assetResources.pagination.next",
            "limit_param": "variables.pagination.limit",
            "after_first_page": {
                "variables.pagination.page": "NEXT",
                "variables.token": "t-9f8e7d6c5b4a",
            },
        },
    }

    assert run("import_sources", write(tmp_path, [entry]), "--no-push").strip() == "created laptops"

    source = ImportSource.objects.get(name="laptops")
    assert source.after_first_page == {
        "variables.pagination.page": "NEXT",
        "variables.token": "t-9f8e7d6c5b4a",
    }
    exported = json.loads(run("export_sources"))
    assert exported["sources"][0]["source"]["pagination"]["after_first_page"] == {
        "variables.pagination.page": "NEXT",
        "variables.token": "***",
    }
    assert run("import_sources", write(tmp_path, exported), "--no-push").strip() == (
        "unchanged laptops"
    )
    source.refresh_from_db()
    assert source.after_first_page["variables.token"] == "t-9f8e7d6c5b4a"


@pytest.mark.django_db
def test_import_sources_refuses_values_after_the_first_page_that_are_not_an_object(
    tmp_path, sandbox, inventory, demo_mapping
):
    entry = source_entry(sandbox, inventory, demo_mapping)
    entry["source"]["pagination"] = {
        "style": "cursor",
        "cursor_path": "meta.next",
        "after_first_page": "NEXT",
    }

    with pytest.raises(CommandError) as error:
        run("import_sources", write(tmp_path, [entry]))

    assert "source.pagination.after_first_page: must be an object" in str(error.value)


@pytest.mark.django_db(transaction=True)
def test_the_readme_lansweeper_example_imports_every_record_from_the_demo_inventory(
    tmp_path, sandbox, inventory, demo_mapping, monkeypatch
):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = next(
        text.split("```", 1)[0]
        for text in readme.split("```json")[1:]
        if '"name": "lansweeper-assets"' in text
    )
    entry = json.loads(block)
    entry["assets"].update(base_url=sandbox.base_url, workspace_id="ws-1", import_source_id="s")
    entry["source"]["url"] = f"{inventory.base_url}/api/graphql"
    entry["mapping"] = demo_mapping
    monkeypatch.setenv("ASSETS_SYNC_ASSETS_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ASSETS_SYNC_LANSWEEPER_TOKEN", "Token lansweeper-pat-0123456789")
    run("import_sources", write(tmp_path, [entry]))

    execution = services.start_import(source=ImportSource.objects.get(name="lansweeper-assets"))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert [query["variables"]["pagination"]["page"] for query in inventory.queries] == [
        "FIRST",
        "NEXT",
    ]
