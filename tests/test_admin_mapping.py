"""Mapping work in the admin: preview, pull from Assets, draft from the source, the overview."""

import json
import re

import pytest
from django.urls import reverse

from importer import services
from importer.mapping import validate_document
from importer.models import Execution, ImportSource


@pytest.fixture
def source_page(admin_client):
    def get(source: ImportSource, name: str, **kwargs):
        return admin_client.get(reverse(f"admin:importer_importsource_{name}", args=[source.pk]))

    return get


def renamed(mapping: dict, name: str) -> dict:
    """A copy of the mapping whose 4th attribute is named otherwise."""
    copy = json.loads(json.dumps(mapping))
    copy["schema"]["objectSchema"]["objectTypes"][0]["attributes"][3]["name"] = name
    copy["mapping"]["objectTypeMappings"][0]["attributesMapping"][3]["attributeName"] = name
    return copy


def differing_from_assets(source: ImportSource, name: str) -> ImportSource:
    source.mapping = renamed(source.mapping, name)
    source.save()
    return source


def as_shown(page: str) -> dict:
    """What the page's replace button posts: its hidden fields (the stamp of what the page
    showed, and the draft it showed)."""
    return dict(re.findall(r'<input type="hidden" name="(loaded_as|draft)" value="([^"]*)"', page))


@pytest.mark.django_db
def test_preview_shows_what_would_be_sent_without_starting_an_import(
    source_page, make_source, sandbox
):
    source = make_source()

    page = source_page(source, "preview").content.decode()

    assert "25 records on the first page; the source has more pages" in page
    assert "SN-00001" in page
    assert "<code>computers</code>" in page
    # The fields in the order the records give them (the identity first), not alphabetical.
    assert page.index("<th>serial</th>") < page.index("<th>hostname</th>")
    assert not Execution.objects.exists()
    assert sandbox.executions() == []


@pytest.mark.django_db
def test_preview_warns_of_a_field_the_mapping_reads_that_no_record_holds(
    source_page, make_source, demo_mapping
):
    # Misspelled, the attribute would arrive empty in every object, and the import end DONE.
    locators = demo_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"]
    hostname = next(entry for entry in locators if entry["attributeLocators"] == ["hostname"])
    hostname["attributeLocators"] = ["hostnme"]
    source = make_source(mapping=demo_mapping)

    page = source_page(source, "preview").content.decode()

    assert (
        "No record on this page holds &#x27;hostnme&#x27; (attribute Hostname): if it is "
        "misspelled in the mapping's attribute locators, its attribute would arrive empty "
        "in every object." in page
    )
    assert "importer/admin.css" in page  # the page's own tables scroll in their box


@pytest.mark.django_db
def test_preview_shows_lists_booleans_and_nested_records_as_json(source_page, computers_with_disks):
    page = source_page(computers_with_disks(), "preview").content.decode()

    assert "<td>[&quot;blue&quot;,&quot;lab&quot;]</td>" in page
    assert "<td>false</td>" in page
    assert "<td>[{&quot;serial&quot;:&quot;D1-1&quot;,&quot;size_gb&quot;:256}]</td>" in page
    assert "<td>SN-00001</td>" in page  # text as it is, not quoted
    assert "False" not in page and "[&#x27;blue&#x27;" not in page


@pytest.mark.django_db
def test_preview_warns_of_a_misspelled_locator_of_a_nested_selector(
    source_page, computers_with_disks
):
    source = computers_with_disks()
    disk = source.mapping["mapping"]["objectTypeMappings"][1]["attributesMapping"][1]
    disk["attributeLocators"] = ["sizegb"]
    source.save()

    page = source_page(source, "preview").content.decode()

    assert (
        "No record on this page holds &#x27;sizegb&#x27; (attribute Size, computers.disks)" in page
    )


@pytest.mark.django_db
def test_preview_warns_when_every_nested_item_on_the_page_would_be_left_out(
    source_page, computers_with_disks
):
    # As if the source renamed the disks' serial: a warning, not a failed page, for the
    # import decides over all its pages.
    source = computers_with_disks()
    disk = source.mapping["mapping"]["objectTypeMappings"][1]["attributesMapping"][0]
    disk["attributeLocators"] = ["disk_serial"]
    source.save()

    page = source_page(source, "preview").content.decode()

    assert "would fail" not in page and "<td>SN-00001</td>" in page
    assert (
        "Every one of the 25 items of selector &#x27;computers.disks&#x27; on this page would "
        "be left out of its record (the first: record 1 (serial=SN-00001): left out "
        "&#x27;disks[0]&#x27;: no value for &#x27;disks[0].disk_serial&#x27;" in page
    )
    assert "An import that sends none of this selector&#x27;s items, leaving out 3 or more" in page


@pytest.mark.django_db
def test_preview_tells_how_many_records_the_source_says_it_holds(source_page, make_source):
    source = make_source(total_path="total")

    page = source_page(source, "preview").content.decode()

    assert "25 records on the first page of the 120 the source says it holds." in page


@pytest.mark.django_db
def test_preview_names_records_that_would_be_left_out(source_page, make_source, demo_mapping):
    demo_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][0][
        "attributeLocators"
    ] = ["asset_tag"]
    source = make_source(mapping=demo_mapping)

    page = source_page(source, "preview").content.decode()

    assert "25 would be left out" in page
    assert "asset_tag" in page


@pytest.mark.django_db
def test_preview_of_a_source_that_fails_on_such_records_says_the_import_would_fail(
    source_page, make_source, demo_mapping
):
    demo_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][0][
        "attributeLocators"
    ] = ["asset_tag"]
    source = make_source(mapping=demo_mapping, missing_identity="fail")

    page = source_page(source, "preview").content.decode()

    assert "The import would fail on this page: 25 records without identity" in page
    assert "would be left out" not in page


@pytest.mark.django_db
def test_preview_of_a_failing_source_shows_the_error(source_page, make_source, inventory):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=404, times=-1)

    page = source_page(make_source(), "preview").content.decode()

    assert "answered 404" in page


@pytest.mark.django_db
def test_mapping_in_assets_before_any_push_says_to_push_not_that_an_id_is_wrong(
    admin_client, make_source, sandbox
):
    source = make_source()

    page = admin_client.get(
        reverse("admin:importer_importsource_pull_mapping", args=[source.pk]), follow=True
    )

    assert [str(message) for message in page.context["messages"]] == [
        "Assets holds no mapping for this import source yet (it answered 404): push one. "
        "Should the push fail too, check the workspace and import source ids."
    ]


@pytest.mark.django_db
def test_an_operator_opening_a_mapping_never_pushed_is_told_to_ask_for_a_push(
    client, django_user_model, make_source, sandbox
):
    from django.contrib.auth.models import Group

    source = make_source()
    operator = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    client.force_login(operator)

    page = client.get(
        reverse("admin:importer_importsource_pull_mapping", args=[source.pk]), follow=True
    )

    assert [str(message) for message in page.context["messages"]] == [
        "Assets holds no mapping for this import source yet (it answered 404): ask an Import "
        "administrator to push one."
    ]


@pytest.mark.django_db
def test_pull_shows_the_differences_before_replacing(admin_client, make_source, sandbox):
    source = services.push_mapping(source=make_source())
    changed = json.loads(json.dumps(source.mapping))
    changed["schema"]["objectSchema"]["objectTypes"][0]["attributes"][3]["name"] = "RAM"
    source.mapping = changed
    source.save()
    url = reverse("admin:importer_importsource_pull_mapping", args=[source.pk])

    page = admin_client.get(url).content.decode()
    admin_client.post(url, as_shown(page))

    assert "Pushing the one here would change Assets' like this:" in page
    assert "renamed to &#x27;RAM&#x27;" in page
    assert "Replace the local mapping" in page
    source.refresh_from_db()
    assert source.mapping == sandbox.mapping_answer("ws-1", "src-1")  # as Assets gave it
    assert source.mapping_pushed_at is not None


@pytest.mark.django_db
def test_a_mapping_changed_here_since_the_pull_page_opened_is_not_replaced(
    admin_client, client, django_user_model, make_source, sandbox
):
    source = differing_from_assets(services.push_mapping(source=make_source()), "RAM")
    url = reverse("admin:importer_importsource_pull_mapping", args=[source.pk])
    page = admin_client.get(url).content.decode()
    edited = json.loads(json.dumps(source.mapping))
    edited["schema"]["objectSchema"]["objectTypes"][0]["description"] = "Laptops and desktops"
    other = django_user_model.objects.create_superuser("bob", "bob@example.com", "pw")
    client.force_login(other)  # another administrator saves the mapping meanwhile
    from tests.test_admin import source_form_data

    data = source_form_data(source, mapping=json.dumps(edited))
    saved = client.post(reverse("admin:importer_importsource_change", args=[source.pk]), data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors

    answer = admin_client.post(url, as_shown(page), follow=True)

    said = [str(message) for message in answer.context["messages"]]
    assert said == [
        "Since you opened this page, bob changed the mapping here: nothing was replaced. "
        "Look at the differences again, then choose."
    ]
    source.refresh_from_db()
    assert source.mapping == edited


@pytest.mark.django_db
def test_a_mapping_changed_in_assets_since_the_pull_page_opened_is_not_taken(
    admin_client, make_source, sandbox
):
    from importer.assets import AssetsClient

    source = differing_from_assets(services.push_mapping(source=make_source()), "RAM")
    url = reverse("admin:importer_importsource_pull_mapping", args=[source.pk])
    page = admin_client.get(url).content.decode()
    in_assets = AssetsClient.for_source(source)
    in_assets.put_mapping(renamed(in_assets.get_mapping(), "Memory"))  # pushed from elsewhere

    answer = admin_client.post(url, as_shown(page), follow=True)

    said = [str(message) for message in answer.context["messages"]]
    assert said == [
        "Since you opened this page, the mapping in Assets changed: nothing was replaced. "
        "Look again, then choose."
    ]


@pytest.mark.django_db
def test_a_replace_posted_without_the_pages_stamp_is_refused(admin_client, make_source, sandbox):
    source = services.push_mapping(source=make_source())
    url = reverse("admin:importer_importsource_pull_mapping", args=[source.pk])

    answer = admin_client.post(url, follow=True)

    said = [str(message) for message in answer.context["messages"]]
    assert said == ["This page is out of date: reload it, then make your change."]


@pytest.mark.django_db
def test_a_draft_from_the_source_can_become_the_mapping(admin_client, make_source, inventory):
    source = make_source(mapping=None)
    url = reverse("admin:importer_importsource_draft_mapping", args=[source.pk])

    page = admin_client.get(url).content.decode()
    inventory.faults.add(method="GET", path_contains="/api", status=500, times=-1)
    admin_client.post(url, as_shown(page))  # the draft shown, not one drafted again

    assert "serial" in page
    source.refresh_from_db()
    assert source.mapping["mapping"]["objectTypeMappings"][0]["selector"] == "items"
    assert validate_document(source.mapping) == []


@pytest.mark.django_db
def test_a_draft_from_a_source_that_refuses_us_says_so_not_that_the_mapping_is_invalid(
    admin_client, make_source, inventory
):
    source = make_source(mapping=None, source_url=f"{inventory.base_url}/api/nothing-here")
    url = reverse("admin:importer_importsource_draft_mapping", args=[source.pk])

    page = admin_client.get(url, follow=True).content.decode()

    assert "No mapping could be drafted: source &#x27;inventory&#x27;" in page
    assert "not valid" not in page


@pytest.mark.django_db
def test_the_change_page_shows_the_mapping_as_a_table(admin_client, make_source):
    source = make_source()

    page = admin_client.get(
        reverse("admin:importer_importsource_change", args=[source.pk])
    ).content.decode()

    assert 'class="mapping-table"' in page
    assert "externalIdPart" in page


@pytest.mark.django_db
def test_the_mapping_at_a_glance_shows_each_locator_whole(admin_client, make_source, demo_mapping):
    attributes = demo_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"]
    attributes[1]["attributeLocators"] = ["hostname", "fqdn"]
    source = make_source(mapping=demo_mapping)

    page = admin_client.get(
        reverse("admin:importer_importsource_change", args=[source.pk])
    ).content.decode()

    assert "<code>serial</code>" in page
    assert "<code>hostname, fqdn</code>" in page
    assert "s, e, r" not in page


@pytest.mark.django_db
def test_an_operator_sees_the_differences_but_is_not_offered_to_replace_the_mapping(
    client, django_user_model, make_source, sandbox
):
    from django.contrib.auth.models import Group

    source = services.push_mapping(source=make_source())
    source.mapping["schema"]["objectSchema"]["objectTypes"][0]["attributes"][3]["name"] = "RAM"
    source.save()
    operator = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    client.force_login(operator)

    page = client.get(reverse("admin:importer_importsource_pull_mapping", args=[source.pk]))

    text = page.content.decode()
    assert page.status_code == 200 and "renamed to &#x27;RAM&#x27;" in text
    assert "Replace the local mapping" not in text
    assert "Only an Import administrator can replace the local mapping" in text


@pytest.mark.django_db
def test_the_source_page_leads_to_its_preview_draft_and_the_mapping_in_assets(
    admin_client, make_source
):
    source = make_source(mapping=None)

    page = admin_client.get(
        reverse("admin:importer_importsource_change", args=[source.pk])
    ).content.decode()

    for name, label in [
        ("preview", "Preview"),
        ("draft_mapping", "Draft mapping"),
        ("pull_mapping", "Mapping in Assets"),
    ]:
        url = reverse(f"admin:importer_importsource_{name}", args=[source.pk])
        assert f'<a href="{url}">{label}</a>' in page


@pytest.mark.django_db
def test_who_may_only_view_a_source_is_offered_nothing_they_may_not_do(
    client, django_user_model, make_source
):
    from django.contrib.auth.models import Group

    operator = django_user_model.objects.create_user("olga", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    client.force_login(operator)
    source = make_source()

    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    draft = client.get(reverse("admin:importer_importsource_draft_mapping", args=[source.pk]))

    assert "No schedule." in page.content.decode()
    assert "Add one" not in page.content.decode()
    assert "Use this draft as the mapping" not in draft.content.decode()
    assert "Only an Import administrator can make it the source" in draft.content.decode()


@pytest.mark.django_db
def test_pushing_a_source_without_a_mapping_says_what_to_do(make_source):
    from importer import services

    with pytest.raises(services.MappingInvalid) as refused:
        services.push_mapping(source=make_source(mapping=None))

    assert str(refused.value) == (
        "The source has no mapping yet: draft one from its records with the action Draft "
        "mapping from source (or paste one into its Mapping field)."
    )


@pytest.mark.django_db
def test_starting_a_source_without_a_mapping_says_to_draft_one(make_source):
    with pytest.raises(services.ImportRefused) as refused:
        services.start_import(source=make_source(name="inventory", mapping=None))

    assert str(refused.value) == (
        "Source 'inventory' has no mapping: draft one from its records with the action Draft "
        "mapping from source (or paste one into its Mapping field), then push it to Assets."
    )


@pytest.mark.django_db
def test_preview_of_a_source_without_a_mapping_leads_to_drafting_one(source_page, make_source):
    source = make_source(mapping=None)

    page = source_page(source, "preview").content.decode()

    assert (
        "The source has no mapping yet: draft one from its records with the action Draft "
        "mapping from source (or paste one into its Mapping field)." in page
    )
    draft = reverse("admin:importer_importsource_draft_mapping", args=[source.pk])
    assert f'<a class="button" href="{draft}">Draft mapping from source</a>' in page
    assert "transformed with its mapping" not in page
