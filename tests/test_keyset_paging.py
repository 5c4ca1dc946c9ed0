"""Keyset paging ("after the last record"): each page is asked for with a field of the last
record read, as GitHub's `?since=<id>` and Elasticsearch's `search_after` are. Every record
arrives once whatever page size the source serves, or the import fails saying what the
source did (ignores the parameter, is not sorted by the field, has no such field).

The sources are real servers on loopback: the fake API's `/api/since` and the demo
inventory's Elasticsearch-like `/api/search`; Assets is the sandbox.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

from importer import services
from importer.devtools.demo_source import demo_computer
from importer.forms.source_fields import field_is_used
from importer.models import ChunkJob, Execution, ImportSource
from importer.sources import SourceError, build_source
from tests.fake_source import FakeSource
from tests.test_admin import post_source
from tests.test_commands import run, source_entry, write

RECORDS = 100


def numbered_computer(i: int) -> dict[str, Any]:
    """A demo computer with a numeric id, as GitHub's users have."""
    return {"id": i, **demo_computer(i)}


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeSource]]:
    started: list[FakeSource] = []

    def start(**habits: Any) -> FakeSource:
        fake = FakeSource(records=RECORDS, record=numbered_computer)
        for name, value in habits.items():
            setattr(fake, name, value)
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def keyset_source(make_source):
    def build(fake: FakeSource, **fields: Any) -> ImportSource:
        settings = {
            "source_url": f"{fake.base_url}/api/since",
            "records_path": "",
            "pagination": "keyset",
            "cursor_path": "id",
            "cursor_param": "since",
            "limit_param": "limit",
            "page_size": 25,
            **fields,
        }
        return make_source(**settings)

    return build


def imported(source: ImportSource) -> Execution:
    execution = services.start_import(source=services.push_mapping(source=source))
    execution.refresh_from_db()
    return execution


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "field, first_values",
    [("id", ["10", "20"]), ("serial", ["SN-00010", "SN-00020"])],
    ids=["a number", "text"],
)
def test_a_keyset_source_capping_its_page_size_is_done_with_every_record_once(
    serve, keyset_source, sandbox, field, first_values
):
    # Asked for 25, it serves 10: a short page is no end, the page after it is asked for.
    fake = serve(max_limit=10, keyset_field=field)

    execution = imported(keyset_source(fake, cursor_path=field))

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == RECORDS
    assert remote["records_received"] == RECORDS
    assert remote["duplicate_objects"] == 0
    sent = [request.query.get("since", [None])[0] for request in fake.requests_to("/api/since")]
    assert sent[:3] == [None, *first_values]
    assert len(sent) == RECORDS // 10 + 1  # the last request answers an empty page


@pytest.mark.django_db(transaction=True)
def test_a_keyset_cursor_is_stored_as_the_json_value_of_the_last_records_field(
    serve, keyset_source
):
    fake = serve(max_limit=10, keyset_field="serial")

    execution = imported(keyset_source(fake, cursor_path="serial"))

    cursors = ChunkJob.objects.filter(execution=execution).order_by("index")
    assert list(cursors.values_list("cursor", flat=True))[:3] == ["", '"SN-00010"', '"SN-00020"']


@pytest.mark.django_db(transaction=True)
def test_a_search_api_read_after_its_last_hit_gets_the_sort_array_in_the_body(
    make_source, sandbox, inventory
):
    # Elasticsearch's search_after, past the 10,000-hit window that from + size cannot pass:
    # the last hit's "sort" array goes into the next request's body as it is.
    inventory.search_max_size = 20
    source = make_source(
        source_url=f"{inventory.base_url}/api/search",
        request_method="POST",
        request_body={"query": {"match_all": {}}, "sort": [{"ram_gb": "desc"}, "serial"]},
        records_path="items",
        pagination="keyset",
        cursor_path="sort",
        cursor_param="search_after",
        limit_param="size",
        page_size=50,
    )

    execution = imported(source)

    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0
    queries = inventory.queries
    assert "search_after" not in queries[0]
    assert queries[1]["search_after"] == [64, "SN-00100"]  # the 20th of the 64 GB servers
    assert all(query["size"] == 50 for query in queries)
    assert len(queries) == 120 // 20 + 1


@pytest.mark.django_db(transaction=True)
def test_a_keyset_source_counting_the_last_record_in_ends_done_noting_it_read_twice(
    serve, keyset_source, sandbox
):
    # An inclusive `since` repeats a page's last record on the next page: nothing is missing,
    # and the import notes the records read twice rather than failing for them.
    fake = serve(max_limit=10, inclusive_since=True)

    execution = imported(keyset_source(fake))

    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == RECORDS
    assert "records were read on two pages" in execution.notice


@pytest.mark.django_db(transaction=True)
def test_a_keyset_source_ignoring_the_parameter_fails_naming_it(serve, keyset_source, sandbox):
    fake = serve(ignores_since=True)

    execution = imported(keyset_source(fake))

    assert execution.state == Execution.State.FAILED
    assert "ignore 'since'" in execution.error
    assert "would answer this page for ever" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_keyset_source_not_sorted_by_the_field_fails_saying_to_sort_it(
    serve, keyset_source, sandbox
):
    # Pages of the records past `since` as stored: the ones a page leaves out are skipped.
    fake = serve(unsorted=True)

    execution = imported(keyset_source(fake))

    assert execution.state == Execution.State.FAILED
    assert "out of the order of 'id'" in execution.error
    assert "sort=id" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_keyset_field_the_records_lack_fails_naming_the_field_and_what_to_set(
    serve, keyset_source
):
    fake = serve()

    execution = imported(keyset_source(fake, cursor_path="uid"))

    assert execution.state == Execution.State.FAILED
    assert "has no 'uid' in the last record of a page" in execution.error
    assert "set the next-page path (Paging)" in execution.error


@pytest.mark.django_db(transaction=True)
def test_a_float_of_1e16_or_more_is_sent_in_the_query_as_the_digits_of_its_number(
    serve, keyset_source, sandbox
):
    # Written as JSON writes it, 1e+16, a source reading integers refuses it (400).
    fake = serve(max_limit=10, keyset_field="stamp")
    fake.records = [
        {**numbered_computer(i), "stamp": float(10**16 + 2 * i)} for i in range(1, RECORDS + 1)
    ]

    execution = imported(keyset_source(fake, cursor_path="stamp"))

    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == RECORDS
    sent = [request.query.get("since", [None])[0] for request in fake.requests_to("/api/since")]
    assert sent[:3] == [None, "10000000000000020", "10000000000000040"]


@pytest.mark.django_db
def test_a_list_as_keyset_value_in_a_query_is_refused_pointing_to_post(serve, keyset_source):
    fake = serve()
    fake.records = [{**record, "sort": [record["id"]]} for record in fake.records]
    reader = build_source(keyset_source(fake, cursor_path="sort"))

    with pytest.raises(SourceError) as refused:
        reader.fetch_page("")

    assert "holds a list at 'sort'" in refused.value.message
    assert "POST" in refused.value.message


@pytest.mark.parametrize(
    "values",
    [
        [3, 2, 1],  # descending
        ["apple", "Banana", "cherry"],  # a collation that ignores case
        ["Ärger", "Zeit"],  # ... and accents
    ],
    ids=["descending", "case-insensitive collation", "accents ignored"],
)
@pytest.mark.django_db
def test_records_in_one_direction_of_the_field_are_not_taken_for_an_unsorted_source(
    serve, keyset_source, values
):
    fake = serve(ignores_since=True)
    fake.records = [{**numbered_computer(i + 1), "key": value} for i, value in enumerate(values)]
    reader = build_source(keyset_source(fake, cursor_path="key"))

    page = reader.fetch_page("")

    assert json.loads(page.next_cursor) == values[-1]


@pytest.mark.django_db
def test_a_keyset_source_round_trips_through_the_config_file(tmp_path, sandbox, inventory):
    pagination = {
        "style": "keyset",
        "page_size": 500,
        "cursor_param": "since",
        "cursor_path": "id",
        "limit_param": "per_page",
    }
    entry = source_entry(sandbox, inventory, None)
    entry["source"]["pagination"] = pagination
    run("import_sources", write(tmp_path, [entry]), "--no-push")
    exported = json.loads(run("export_sources", "--with-secrets"))

    source = ImportSource.objects.get(name="laptops")
    assert (source.pagination, source.cursor_param, source.cursor_path) == ("keyset", "since", "id")
    [laptops] = exported["sources"]
    assert {**laptops["source"]["pagination"], **pagination} == laptops["source"]["pagination"]
    assert run("import_sources", write(tmp_path, exported), "--no-push").strip() == (
        "unchanged laptops"
    )


@pytest.mark.django_db
def test_the_admin_form_refuses_a_keyset_source_without_its_field(
    staff_client,
    make_source,
):
    source = make_source()

    response = post_source(
        staff_client, source, pagination="keyset", cursor_param="since", cursor_path=""
    )

    errors = response.context["adminform"].form.errors["cursor_path"]
    assert errors == [
        "Keyset paging needs the dotted path of the field, inside each record, whose value the "
        "next page is asked for after (e.g. 'id'; 'sort' for Elasticsearch's hits)."
    ]


def test_the_admin_form_shows_the_parameter_and_field_of_keyset_paging_only():
    chosen = {"source_kind": "rest", "pagination": "keyset"}

    shown = {
        name
        for name in ("cursor_param", "cursor_path", "limit_param", "offset_param", "total_path")
        if field_is_used(name, chosen)
    }

    assert shown == {"cursor_param", "cursor_path", "limit_param", "total_path"}


@pytest.mark.django_db
def test_the_admin_form_says_the_keyset_field_must_be_unique_to_each_record(
    staff_client,
    make_source,
):
    source = make_source()

    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    help_texts = {
        name: str(page.context["adminform"].form.fields[name].help_text)
        for name in ("pagination", "cursor_path")
    }
    assert all("unique to each record" in text for text in help_texts.values()), help_texts


@pytest.mark.django_db
def test_the_migrations_hold_the_models_as_they_are():
    # The keyset help texts are written into migration 0038 itself, not a migration after.
    call_command("makemigrations", "importer", check=True, dry_run=True, verbosity=0)


@pytest.mark.django_db
def test_a_keyset_source_read_with_post_is_saved(staff_client, make_source):  # noqa: F811
    source = make_source()

    response = post_source(
        staff_client,
        source,
        pagination="keyset",
        request_method="POST",
        request_body=json.dumps({"sort": ["serial"]}),
        cursor_param="search_after",
        cursor_path="sort",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert (source.pagination, source.cursor_param) == ("keyset", "search_after")


@pytest.mark.django_db(transaction=True)
def test_a_search_sorted_on_a_field_that_repeats_fails_saying_to_add_a_tiebreaker(
    make_source, sandbox, inventory
):
    # Sorted on RAM alone, the hits after [64] skip the 64 GB servers the page left out:
    # DONE would hold a third of the records fewer.
    inventory.search_max_size = 20
    source = make_source(
        source_url=f"{inventory.base_url}/api/search",
        request_method="POST",
        request_body={"sort": [{"ram_gb": "desc"}]},
        records_path="items",
        pagination="keyset",
        cursor_path="sort",
        cursor_param="search_after",
        limit_param="size",
    )

    execution = imported(source)

    assert execution.state == Execution.State.FAILED
    assert "more than one record holds [64] at 'sort'" in execution.error
    assert "a field unique to each record" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_keyset_field_that_repeats_fails_though_the_source_honours_since(
    serve, keyset_source, sandbox
):
    fake = serve(max_limit=10, keyset_field="ram_gb")

    execution = imported(keyset_source(fake, cursor_path="ram_gb"))

    assert execution.state == Execution.State.FAILED
    assert "more than one record holds 8 at 'ram_gb'" in execution.error


@pytest.mark.parametrize(
    "habit", [{"inclusive_since": True}, {"ignores_since": True}], ids=["inclusive", "ignoring"]
)
@pytest.mark.django_db(transaction=True)
def test_one_record_a_page_answered_again_for_its_own_value_is_not_taken_for_the_end(
    serve, keyset_source, sandbox, habit
):
    # Asked for one record a page, a `since` that counts the record in answers that record
    # for ever, as a source that ignores `since` does: neither is the end of 100 records.
    fake = serve(**habit)

    execution = imported(keyset_source(fake, page_size=1))

    assert execution.state == Execution.State.FAILED
    assert "asked for one record a page" in execution.error
    assert "Set a larger page size" in execution.error


@pytest.mark.django_db(transaction=True)
def test_a_descending_source_whose_since_asks_for_higher_values_fails_not_done_with_a_page(
    serve, keyset_source, sandbox
):
    # 100 down to 91, then since=91 answers 100 down to 92, ... up to since=100 and an empty
    # page: DONE with the ten highest only, the ninety below never asked for.
    fake = serve(max_limit=10, descending=True)

    execution = imported(keyset_source(fake))

    assert execution.state == Execution.State.FAILED
    assert "after 'since' 91 it answered 100" in execution.error
    assert sandbox.execution(execution.assets_execution_id)["completed_posts"] == 0


@pytest.mark.django_db(transaction=True)
def test_numbers_written_as_text_sorted_as_numbers_are_done_with_every_record(
    serve, keyset_source, sandbox
):
    # Jira's and many SQL-backed APIs' ids are numbers written as text: "9" before "10".
    fake = serve(max_limit=30, numbers_as_text=True)
    fake.records = [{**record, "id": str(record["id"])} for record in fake.records]

    execution = imported(keyset_source(fake))

    assert execution.state == Execution.State.DONE, execution.error
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == RECORDS
