"""The staff UI, driven through Django's test client as a logged-in staff user."""

import codecs
import csv
import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django import forms
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from importer import services
from importer.admin.sources import ImportSourceAdminForm
from importer.devtools.demo_source import demo_computer
from importer.forms import ImportSourceForm
from importer.forms.meanwhile import stamp
from importer.models import ChunkJob, Execution, ImportSource
from importer.sources import conversions
from tests.conftest import SANDBOX_TOKEN, wait_for_execution_to_finish


def source_form_data(source: ImportSource, **overrides) -> dict:
    """What the change form posts back for `source`, as a browser would send it."""
    form = ImportSourceForm(instance=source)
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.FileField):
            continue
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
            continue
        data[name] = "" if value is None else value
    data.update(assets_token="", source_token="")
    data.update(overrides)
    return data


def run_action(client, model: str, action: str, ids, **confirmation) -> str:
    response = client.post(
        reverse(f"admin:importer_{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in ids], **confirmation},
        follow=True,
    )
    assert response.status_code == 200
    return " ".join(str(message) for message in response.context["messages"])


@pytest.mark.django_db(transaction=True)
def test_start_import_from_the_admin_brings_every_record_into_assets(
    staff_client, make_source, sandbox, cluster
):
    source = make_source()

    pushed = run_action(staff_client, "importsource", "push_mapping", [source.pk])
    started = run_action(staff_client, "importsource", "start_import", [source.pk])

    assert "Assets accepted the mapping" in pushed
    assert "Import of inventory started" in started
    execution = wait_for_execution_to_finish(Execution.objects.get(source=source))
    remote = sandbox.execution(execution.assets_execution_id)
    assert execution.state == Execution.State.DONE, execution.error
    assert len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0
    assert remote["completed_posts"] == 1
    assert execution.triggered_by.username == "staff"


@pytest.mark.django_db
def test_the_stored_token_is_never_shown_back(staff_client, make_source):
    source = make_source(source_auth="bearer", source_token="source-secret-xyz")

    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    html = page.content.decode()
    assert SANDBOX_TOKEN not in html
    assert "source-secret-xyz" not in html


@pytest.mark.django_db
def test_saving_without_a_token_keeps_the_stored_one(staff_client, make_source):
    source = make_source()

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, page_size=50),
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.page_size == 50
    assert source.assets_token == SANDBOX_TOKEN


def last_history_message(source) -> str:
    return LogEntry.objects.filter(object_id=str(source.pk)).latest("pk").get_change_message()


@pytest.mark.django_db
def test_saving_without_edits_says_in_the_history_that_no_secret_changed(
    staff_client, make_source, inventory
):
    # The token fields come back empty and the URL masked: neither is a change.
    url = inventory.base_url.replace("http://", "http://reader:url-pass-1@") + "/api/computers"
    source = make_source(
        source_url=url,
        source_auth="api_key_header",
        auth_key_name="X-Api-Key",
        source_token="source-secret-1",
    )

    response = post_source(staff_client, source)

    assert response.status_code == 302
    assert last_history_message(source) == "No fields changed."
    post_source(staff_client, source, assets_token="a-new-token-1")
    assert last_history_message(source) == "Changed Assets token."


@pytest.mark.django_db
def test_a_token_typed_into_a_form_with_errors_is_not_dropped_silently(staff_client, make_source):
    source = make_source()

    response = post_source(staff_client, source, assets_token="typed-token-1", mapping="{oops")

    assert response.status_code == 200
    token_errors = " ".join(response.context["adminform"].form.errors["assets_token"])
    assert "paste it again" in token_errors
    assert "typed-token-1" not in response.content.decode()
    source.refresh_from_db()
    assert source.assets_token == SANDBOX_TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, typed",
    [
        ("extra_headers", '{"Accept-Language": "en", "X-New-Key": "typed-secret-header-39"}'),
        ("extra_params", '{"api_key": "typed-secret-param-42", '),  # JSON that does not parse
        ("extra_headers", '{"X-Tenant-Hdr": "typed-secret-hdr-77", '),
        ("source_url", "https://reader:typed-secret-pass-49@inventory.example.com/api?x=1"),
        ("source_url", "htp://reader:typed-secret-pass-50@inventory.example.com/api"),
    ],
)
def test_a_secret_typed_into_a_setting_of_a_form_with_errors_is_not_sent_back(
    staff_client, make_source, field, typed
):
    source = make_source()

    response = post_source(staff_client, source, **{field: typed, "page_size": "0"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "typed-secret" not in page
    errors = " ".join(response.context["adminform"].form.errors[field])
    assert "again before saving (secrets are never sent back to the browser)" in errors


@pytest.mark.django_db
def test_an_api_key_typed_as_the_user_name_of_a_form_with_errors_is_not_sent_back(
    staff_client, make_source
):
    # Freshservice and BambooHR take the API key as the Basic user name, "X" as the password.
    source = make_source(source_auth="basic", auth_username="svc", source_token="pass-of-svc")
    key = "fsKey1a2B3c4D5e6F7g8H9i0Jk"

    response = post_source(staff_client, source, auth_username=key, source_token="X", page_size="0")

    assert response.status_code == 200
    assert key not in response.content.decode()
    errors = " ".join(response.context["adminform"].form.errors["auth_username"])
    assert "type it again before saving" in errors


@pytest.mark.django_db
def test_a_user_name_typed_into_a_form_with_errors_is_shown_again(staff_client, make_source):
    source = make_source(source_auth="basic", auth_username="svc", source_token="pass-of-svc")

    response = post_source(staff_client, source, auth_username="integration.user", page_size="0")

    assert response.status_code == 200
    assert 'value="integration.user"' in response.content.decode()
    assert "auth_username" not in response.context["adminform"].form.errors


@pytest.mark.django_db
def test_stars_inside_a_plain_setting_are_saved_as_they_are(staff_client, make_source):
    source = make_source()

    response = post_source(staff_client, source, extra_params='{"filter": "name:***"}')

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.extra_params == {"filter": "name:***"}


@pytest.mark.django_db
def test_a_push_assets_refused_is_not_written_to_the_history_as_pushed(staff_client, make_source):
    source = make_source(assets_token="not-the-token")

    run_action(staff_client, "importsource", "push_mapping", [source.pk])

    assert not LogEntry.objects.filter(object_id=str(source.pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_starting_an_import_pushes_a_mapping_saved_since_its_last_push_and_says_so(
    staff_client, make_source, sandbox
):
    source = make_source()  # saved, never pushed

    message = run_action(staff_client, "importsource", "start_import", [source.pk])

    assert "was pushed first" in message
    assert sandbox.mapping("ws-1", "src-1") == source.mapping
    history = [e.get_change_message() for e in LogEntry.objects.order_by("pk")]
    assert history[0] == "Pushed the mapping to Assets."
    assert history[1].startswith("Started import")


@pytest.mark.django_db
def test_a_malformed_mapping_is_refused_with_a_field_error(staff_client, make_source, demo_mapping):
    source = make_source()
    del demo_mapping["mapping"]["objectTypeMappings"][0]["selector"]

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, mapping=json.dumps(demo_mapping)),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["mapping"]
    assert "mapping.objectTypeMappings[0].selector (line 61): is required" in errors


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("encoding", "said"),
    [
        ("utf8x", "Unknown file encoding 'utf8x'"),
        ("base64", "Unknown file encoding 'base64'"),
        ("utf-16", "Files in utf-16 cannot be read in chunks: save the file as UTF-8."),
    ],
)
def test_a_file_encoding_that_cannot_be_read_is_refused_when_the_source_is_saved(
    staff_client, make_source, encoding, said
):
    source = make_source(source_kind="csv", source_url="https://files.example/it.csv")

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, file_encoding=encoding),
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["file_encoding"]
    assert error.startswith(said)


@pytest.mark.django_db
def test_a_csv_field_name_given_twice_is_refused_when_the_source_is_saved(
    staff_client, make_source
):
    source = make_source(
        source_kind="csv",
        source_url="https://files.example/it.csv",
        csv_has_header=False,
        csv_fieldnames="serial,hostname",
    )

    response = post_source(staff_client, source, csv_fieldnames="serial, hostname,serial")

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["csv_fieldnames"]
    assert error.startswith("The CSV field names name 'serial' twice: each column needs a name")


@pytest.mark.django_db
def test_a_tab_delimiter_typed_in_the_form_is_kept(staff_client, make_source):
    source = make_source(source_kind="csv", source_url="https://files.example/it.tsv")

    response = post_source(staff_client, source, csv_delimiter="\t")

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert source.csv_delimiter == "\t"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def computers_as_unicode_text() -> bytes:
    """The demo's computers as a spreadsheet's "Unicode text" export (UTF-16 LE with its
    byte-order mark, tabs, CRLF), two of whose owners have accented names."""
    out = io.StringIO()
    writer = csv.DictWriter(out, list(demo_computer(1)), delimiter="\t", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(demo_computer(i) for i in range(1, 101))
    text = (
        out.getvalue()
        .replace("user7@example.com", "jürgen.müller@example.com")
        .replace("user8@example.com", "zoë.núñez@example.com")
    )
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


@pytest.mark.django_db(transaction=True)
def test_a_unicode_text_export_uploaded_in_the_admin_arrives_in_assets_with_its_accents(
    staff_client, make_source, sandbox, media
):
    source = make_source(source_kind="csv", source_url="", records_path="")
    upload = SimpleUploadedFile("computers.txt", computers_as_unicode_text())

    response = post_source(staff_client, source, source_file=upload, csv_delimiter="\t")
    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE, execution.error
    remote = sandbox.execution(execution.assets_execution_id)
    assert (remote["records_received"], len(remote["objects"])) == (100, 100)
    sent = json.dumps(sandbox.chunks(execution.assets_execution_id), ensure_ascii=False)
    assert "jürgen.müller@example.com" in sent and "zoë.núñez@example.com" in sent


@pytest.mark.django_db
def test_a_gzip_upload_is_kept_decompressed(staff_client, make_source, media):
    source = make_source(source_kind="csv", source_url="", records_path="")
    content = "serial,owner\nSN-1,Zoë\n".encode()
    upload = SimpleUploadedFile("computers.csv.gz", gzip.compress(content))

    response = post_source(staff_client, source, source_file=upload)

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert source.source_file.name == "source-files/computers.csv"
    assert (media / source.source_file.name).read_bytes() == content


@pytest.mark.django_db
def test_an_uploaded_file_needs_no_source_authentication(staff_client, make_source, media):
    # The upload is read from the app's storage: a bearer token left from its URL is not
    # asked for (its row is hidden beside an upload).
    source = make_source(source_kind="csv", source_url="", records_path="", source_auth="bearer")
    upload = SimpleUploadedFile("computers.csv", b"serial,owner\nSN-1,Zoe\n")

    response = post_source(staff_client, source, source_file=upload)

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert source.source_file.name == "source-files/computers.csv"


@pytest.mark.django_db
def test_a_file_read_from_its_url_still_needs_its_authentication(staff_client, make_source, media):
    stored = SimpleUploadedFile("computers.csv", b"serial,owner\nSN-1,Zoe\n")
    source = make_source(source_kind="csv", records_path="", source_file=stored)
    url = "https://files.example.com/computers.csv"

    cleared = post_source(
        staff_client, source, source_url=url, source_auth="bearer", **{"source_file-clear": "on"}
    )

    [error] = cleared.context["adminform"].form.errors["source_token"]
    assert error.startswith("This authentication needs a secret")


@pytest.mark.django_db
def test_a_gzip_bomb_uploaded_in_the_admin_is_refused_naming_the_limit(
    staff_client, make_source, media, monkeypatch
):
    monkeypatch.setattr(conversions, "MAX_FILE_BYTES", 1024 * 1024)
    source = make_source(source_kind="csv", source_url="", records_path="")
    bomb = gzip.compress(b"serial,owner\n" + b"\n" * (50 * 1024 * 1024))

    response = post_source(
        staff_client, source, source_file=SimpleUploadedFile("computers.csv.gz", bomb)
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["source_file"]
    assert error.startswith(
        "The file decompresses to more than 1 MB, the most a source file may hold"
    )
    assert not (media / "source-files").exists()


@pytest.mark.django_db
def test_a_delimiter_of_more_than_one_character_is_refused_when_the_source_is_saved(
    staff_client, make_source
):
    source = make_source(source_kind="csv", source_url="https://files.example/it.csv")

    response = post_source(staff_client, source, csv_delimiter=";;")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["csv_delimiter"] == [
        "The CSV delimiter must be one character, or tab (not ';;')."
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "pagination, extra, said",
    [
        ("next_url", '{"limit": 200}', "'limit' is the query parameter the paging sends the page"),
        ("offset", '{"offset": 0, "status": "active"}', "'offset' is the query parameter"),
    ],
)
def test_an_extra_parameter_the_paging_would_replace_is_refused_saying_where_it_belongs(
    staff_client, make_source, pagination, extra, said
):
    source = make_source(pagination=pagination, cursor_path="links.next")

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, pagination=pagination, extra_params=extra),
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["extra_params"]
    assert error.startswith(said)
    assert ImportSource.objects.get(pk=source.pk).extra_params == source.extra_params


@pytest.mark.django_db
def test_extra_parameters_beside_the_pagings_own_are_saved(staff_client, make_source):
    source = make_source(pagination="next_url", cursor_path="links.next")

    staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, extra_params='{"status": "active", "top": 5}'),
    )

    assert ImportSource.objects.get(pk=source.pk).extra_params == {"status": "active", "top": 5}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "base", ["https://api.atlassian.com/jsm", "https://api.atlassian.com/jsm/assets/workspace/1"]
)
def test_an_assets_address_with_the_apis_own_path_is_refused_when_saved(
    staff_client, make_source, base
):
    source = make_source()

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, assets_base_url=base),
    )

    [error] = response.context["adminform"].form.errors["assets_base_url"]
    assert error.startswith("Give the address of the Assets API without its path")


@pytest.mark.django_db
def test_a_dotted_locator_is_refused_when_the_mapping_is_saved(
    staff_client, make_source, demo_mapping
):
    source = make_source()
    demo_mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][5][
        "attributeLocators"
    ] = ["os.name"]

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, mapping=json.dumps(demo_mapping)),
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    (error,) = form.errors["mapping"]
    path, line, message = re.match(r"(\S+) \(line (\d+)\): (.*)", error).groups()
    assert path == "mapping.objectTypeMappings[0].attributesMapping[5].attributeLocators[0]"
    assert message.startswith("'os.name' has a dot")
    shown = form["mapping"].value()  # the document as the field shows it again
    assert form.fields["mapping"].prepare_value(shown).splitlines()[int(line) - 1].strip() == (
        '"os.name"'
    )
    source.refresh_from_db()
    assert source.mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][5][
        "attributeLocators"
    ] == ["os"]


def two_mappings_of_computers_from_one_selector(mapping: dict) -> dict:
    """Refused by a rule newer than mappings stored before it."""
    mappings = mapping["mapping"]["objectTypeMappings"]
    mappings.append(json.loads(json.dumps(mappings[0])))
    return mapping


@pytest.mark.django_db
def test_a_source_whose_stored_mapping_breaks_a_newer_rule_warns_of_it_on_its_page(
    staff_client, make_source, demo_mapping
):
    source = make_source(mapping=two_mappings_of_computers_from_one_selector(demo_mapping))

    response = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    [warning] = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warning.startswith(
        "The mapping breaks rules newer than it, which refuse it when it is next saved or "
        "pushed: mapping.objectTypeMappings[1]: maps object type 'Computer' from selector "
        "'computers' again"
    )


@pytest.mark.django_db
def test_a_source_whose_stored_mapping_breaks_a_newer_rule_saves_its_other_settings(
    staff_client, make_source, demo_mapping
):
    source = make_source(mapping=two_mappings_of_computers_from_one_selector(demo_mapping))

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, page_size=50),
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.page_size == 50


@pytest.mark.django_db
def test_a_mapping_saved_anew_is_held_to_the_newer_rules(staff_client, make_source, demo_mapping):
    source = make_source(mapping=two_mappings_of_computers_from_one_selector(demo_mapping))
    demo_mapping["schema"]["objectSchema"]["description"] = "Edited"

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, mapping=json.dumps(demo_mapping)),
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["mapping"]
    assert "maps object type 'Computer' from selector 'computers' again" in error


@pytest.mark.django_db
def test_a_mapping_that_is_not_json_is_refused(staff_client, make_source):
    source = make_source()

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, mapping='{"schema": '),
    )

    assert response.status_code == 200
    assert "mapping" in response.context["adminform"].form.errors


def post_source(client, source, **overrides):
    return client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source, **overrides),
    )


@pytest.mark.django_db
def test_a_json_error_names_its_line_and_column(staff_client, make_source):
    source = make_source()

    response = post_source(staff_client, source, mapping='{\n  "schema": {\n    "a": 1,\n  }\n}')

    errors = response.context["adminform"].form.errors["mapping"]
    assert errors == [
        "Not valid JSON: Expecting property name enclosed in double quotes at line 4, column 3."
    ]
    pasted_tab = post_source(staff_client, source, mapping='{\n  "a": "one\ttwo"\n}')
    assert pasted_tab.context["adminform"].form.errors["mapping"] == [
        "Not valid JSON: Invalid control character at line 2, column 12."
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "total_path, error",
    [
        (
            "header:",
            "Name the header that tells the total after 'header:', e.g. 'header:X-Total-Count'.",
        ),
        (
            "header:X Total Count",
            "'X Total Count' is not a header name (letters, digits and - , no spaces), e.g. "
            "'header:X-Total-Count'.",
        ),
        (
            "header:Set-Cookie",
            "The Set-Cookie header carries credentials, not a total: name the header that does.",
        ),
    ],
)
def test_a_total_path_naming_no_usable_header_is_refused_at_its_field(
    staff_client, make_source, total_path, error
):
    source = make_source()

    response = post_source(staff_client, source, total_path=total_path)

    assert response.context["adminform"].form.errors["total_path"] == [error]


@pytest.mark.django_db
def test_a_total_path_naming_a_header_is_saved(staff_client, make_source):
    source = make_source()

    response = post_source(staff_client, source, total_path="header:X-Total-Count")

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.total_path == "header:X-Total-Count"


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [100, 100_000], ids=["deep", "deeper than Python parses"])
def test_json_nested_absurdly_deep_is_refused_at_its_field(staff_client, make_source, levels):
    source = make_source()

    response = post_source(
        staff_client, source, extra_headers="[" * levels + "]" * levels, mapping="{}"
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["extra_headers"] == [
        "Nested more than 64 levels deep: no setting needs that many."
    ]


@pytest.mark.django_db
def test_a_retry_time_reads_to_the_second_on_a_24_hour_clock(settings):
    from importer.admin.display import next_attempt_label

    settings.TIME_ZONE = "UTC"
    moment = timezone.now().replace(hour=13, minute=5, second=9) + timedelta(days=1)

    assert next_attempt_label(moment.isoformat()).startswith("13:05:09 (in ")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("source_url", "inventory.local/api", "Give the whole URL with its scheme"),
        ("assets_base_url", "api.atlassian.com", "Give the whole URL with its scheme"),
        ("source_url", "https://inventory.local:99999/api", "a number from 1 to 65535"),
        ("assets_base_url", "https://api.atlassian.com:70000", "a number from 1 to 65535"),
        ("source_url", "https://inventory.local:0/api", "a number from 1 to 65535"),
        ("page_size", "0", "greater than or equal to 1"),
        ("request_timeout", "200", "At most 83 s: a page may take twice the request timeout"),
        ("max_chunks_in_flight", "0", "greater than or equal to 1"),
    ],
)
def test_a_url_without_scheme_or_a_count_of_zero_is_an_error_not_a_silent_change(
    staff_client, make_source, field, value, message
):
    source = make_source()

    response = post_source(staff_client, source, **{field: value})

    assert message in str(response.context["adminform"].form.errors[field])
    source.refresh_from_db()
    assert str(getattr(source, field)) != value


@pytest.mark.django_db
def test_a_url_typed_without_scheme_is_not_repeated_with_its_password(staff_client, make_source):
    source = make_source()

    response = post_source(staff_client, source, source_url="svc:FORMPASS8@inventory.local/api")

    message = str(response.context["adminform"].form.errors["source_url"])
    assert "e.g. https://***@inventory.local/api." in message
    assert "FORMPASS8" not in message  # error texts also go to logs and import_sources output


@pytest.mark.django_db
def test_errors_are_listed_at_the_top_with_links_to_their_fields(staff_client, make_source):
    source = make_source()

    page = post_source(staff_client, source, source_url="inventory.local/api", page_size="0")

    html = page.content.decode()
    summary = html[html.index('<ul class="error-summary"') :]
    summary = summary[: summary.index("</ul>")]
    assert '<a href="#id_source_url">Source URL</a>: Give the whole URL' in summary
    assert '<a href="#id_page_size">Page size</a>: Ensure this value' in summary


@pytest.mark.django_db
def test_without_javascript_every_row_shows_and_settings_of_other_kinds_are_ignored(
    staff_client, make_source
):
    source = make_source()

    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    response = post_source(
        staff_client,
        source,
        source_kind="plugin",
        plugin="static-list",
        plugin_options='{"records": []}',
        source_url="not a url",
        extra_headers="[broken",
        oauth_token_url="nowhere",
    )

    html = page.content.decode()
    for name in ("plugin_options", "csv_delimiter", "oauth_token_url", "cursor_path"):
        assert f"field-{name}" in html
    assert '<script id="form-conditions" type="application/json">' in html
    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert (source.source_kind, source.plugin) == ("plugin", "static-list")


@pytest.mark.django_db
def test_a_cursor_source_offers_the_setting_its_note_of_records_read_twice_names(
    staff_client, make_source
):
    source = make_source(pagination="cursor")

    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    html = page.content.decode()
    start = html.index('<script id="form-conditions" type="application/json">')
    conditions = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    [shown_when] = conditions["repeated_records"]
    assert "cursor" in shown_when["pagination"]


@pytest.mark.django_db
def test_a_plug_in_is_chosen_from_those_the_site_lists_and_one_left_out_is_asked_for(
    staff_client, make_source, settings
):
    settings.IMPORT_SOURCE_PLUGINS = {
        "static-list": "importer.sources.examples.StaticListSource",
        "hr": "importer.sources.examples.StaticListSource",
    }
    source = make_source()

    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    response = post_source(staff_client, source, source_kind="plugin", plugin="")

    html = page.content.decode()
    assert '<select name="plugin"' in html
    assert '<option value="hr">hr</option>' in html
    assert '<option value="static-list">static-list</option>' in html
    assert "<label" in html and ">CSV delimiter:</label>" in html  # not "Csv delimiter"
    errors = response.context["adminform"].form.errors
    by_path = make_source(
        name="by-path",
        import_source_id="src-3",
        source_kind="plugin",
        plugin="importer.sources.examples.StaticListSource",
    )
    by_path_page = staff_client.get(
        reverse("admin:importer_importsource_change", args=[by_path.pk])
    ).content.decode()
    assert "selected>importer.sources.examples.StaticListSource</option>" in by_path_page
    assert (
        "Choose a plug-in: one listed in the IMPORT_SOURCE_PLUGINS setting (hr, static-list)"
        in (str(errors))
    )


@pytest.mark.django_db
def test_a_second_start_is_refused_with_a_link_to_the_running_import(staff_client, make_source):
    source = make_source()
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)

    message = run_action(staff_client, "importsource", "start_import", [source.pk])

    assert "already running" in message
    url = reverse("admin:importer_execution_change", args=[running.pk])
    assert f'<a href="{url}">Follow execution #{running.pk}</a>' in message
    assert Execution.objects.filter(source=source).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_source_page_starts_an_import_from_its_own_button(staff_client, make_source, sandbox):
    source = make_source()
    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    buttons = re.findall(r'name="action" value="(\w+)"', page.content.decode())
    assert buttons == ["start_import", "push_mapping"]

    # The button posts what it holds to the list's actions, and comes back to the source.
    assert '<input type="hidden" name="_back_to_page" value="1">' in page.content.decode()
    answer = staff_client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "start_import", "_selected_action": str(source.pk), "_back_to_page": "1"},
        follow=True,
    )

    assert answer.redirect_chain[-1][0] == page.request["PATH_INFO"]
    messages = " ".join(str(message) for message in answer.context["messages"])
    assert "Import of inventory started" in messages
    execution = wait_for_execution_to_finish(Execution.objects.get(source=source))
    assert execution.state == Execution.State.DONE, execution.error


@pytest.mark.django_db(transaction=True)
def test_an_import_page_blames_an_unreachable_broker_not_the_workers(
    staff_client, make_source, hung_broker
):
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    ChunkJob.objects.create(execution=execution, index=0)  # queued, and no task for it

    page = staff_client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    html = page.content.decode()
    address = hung_broker.replace("redis://:broker-secret@", "").split("?")[0]
    assert f"The task broker, Redis at {address}, cannot be reached" in html
    assert "queued again once the broker answers" in html
    assert "broker-secret" not in html
    assert "waits for a free worker" not in html


@pytest.mark.django_db
def test_a_broker_address_that_cannot_be_read_keeps_its_password_off_the_import_page(
    staff_client, make_source, settings
):
    # A '/' in the password ends the host where a URL is read: the password would be the port.
    settings.REDIS_URL = "redis://:S3cr3t/PassW0rd@127.0.0.1:6379/0"
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)

    page = staff_client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "REDIS_URL cannot be read as a Redis address" in html
    assert "S3cr3t" not in html and "PassW0rd" not in html


@pytest.mark.django_db
def test_an_import_page_with_failed_pages_retries_them_from_its_own_button(
    staff_client, make_source
):
    from importer.models import ChunkJob

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    failed = ChunkJob.objects.create(
        execution=execution, index=0, state=ChunkJob.State.FAILED, error="source answered 503"
    )
    url = reverse("admin:importer_execution_change", args=[execution.pk])
    page = staff_client.get(url).content.decode()
    assert re.findall(r'name="action" value="(\w+)"', page) == ["retry_failed_chunks"]

    answer = staff_client.post(
        reverse("admin:importer_execution_changelist"),
        {
            "action": "retry_failed_chunks",
            "_selected_action": str(execution.pk),
            "_back_to_page": "1",
        },
        follow=True,
    )

    assert answer.redirect_chain[-1][0] == url
    assert f"#{execution.pk}: 1 chunk queued again." in " ".join(
        str(message) for message in answer.context["messages"]
    )
    failed.refresh_from_db()
    assert failed.state == ChunkJob.State.QUEUED
    # Nothing failed now: the button waits, hidden, for a page that fails (progress.js).
    assert '<li data-action="retry_failed_chunks" hidden>' in staff_client.get(url).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["#{pk}", "{pk}", "certificate", "²"])
def test_an_import_is_found_by_the_number_messages_give_it_or_by_its_error(
    staff_client, make_source, term
):
    source = make_source()
    others = [Execution.objects.create(source=source, state="DONE") for _ in range(3)]
    wanted = Execution.objects.create(
        source=source, state="FAILED", error="source 'inventory': certificate expired"
    )
    others += [Execution.objects.create(source=source, state="DONE") for _ in range(12)]

    page = staff_client.get(
        reverse("admin:importer_execution_changelist"), {"q": term.format(pk=wanted.pk)}
    )

    found = [row.pk for row in page.context["cl"].result_list]
    assert found == ([] if term == "²" else [wanted.pk])


@pytest.mark.django_db
def test_an_import_page_shows_its_failed_pages_alone_among_thousands(staff_client, make_source):
    from importer.models import ChunkJob

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    ChunkJob.objects.bulk_create(
        ChunkJob(
            execution=execution,
            index=index,
            state=ChunkJob.State.FAILED if index % 500 == 499 else ChunkJob.State.SUBMITTED,
        )
        for index in range(3000)
    )
    url = reverse("admin:importer_execution_change", args=[execution.pk])

    page = staff_client.get(url).content.decode()
    assert "All (3000)" in page and 'href="?chunks_state=FAILED">Failed (6)</a>' in page

    page = staff_client.get(url, {"chunks_state": "FAILED"}).content.decode()
    assert re.findall(r'data-index="(\d+)"', page) == ["499", "999", "1499", "1999", "2499", "2999"]
    assert '<strong aria-current="true">Failed (6)</strong>' in page

    # Retried meanwhile: the choice stays, with none in it, and the way back to all.
    ChunkJob.objects.filter(state=ChunkJob.State.FAILED).update(state=ChunkJob.State.QUEUED)
    page = staff_client.get(url, {"chunks_state": "FAILED"}).content.decode()
    assert '<strong aria-current="true">Failed (0)</strong>' in page
    assert 'href="?chunks_state=">All (3000)</a>' in page


@pytest.mark.django_db
def test_an_import_whose_completed_assets_has_not_taken_says_so_under_retries(
    staff_client, make_source
):
    execution = Execution.objects.create(
        source=make_source(), state=Execution.State.INGESTING, completion_attempts=2
    )

    page = staff_client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    assert "&#x27;completed&#x27; not yet taken by Assets (2 of at most 10 attempts)" in (
        page.content.decode()
    )


@pytest.mark.django_db
def test_an_import_page_shows_the_nested_items_left_out_beside_the_records_left_out(
    staff_client, make_source
):
    execution = Execution.objects.create(
        source=make_source(), state=Execution.State.DONE, records_skipped=1, items_skipped=2
    )
    execution.chunks.create(
        index=0, state=ChunkJob.State.SUBMITTED, skipped_count=1, items_skipped_count=2
    )

    page = staff_client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    html = " ".join(page.content.decode().split())
    assert 'Nested items left out:</label> <div class="readonly">2</div>' in html
    assert '<td>1<br><small class="items-left-out">+ 2 nested items</small></td>' in html


@pytest.mark.django_db
def test_retrying_an_import_that_failed_says_to_start_a_new_one(staff_client, make_source):
    from importer.models import ChunkJob

    execution = Execution.objects.create(source=make_source(), state=Execution.State.FAILED)
    ChunkJob.objects.create(execution=execution, index=0, state=ChunkJob.State.FAILED)

    answer = staff_client.post(
        reverse("admin:importer_execution_changelist"),
        {"action": "retry_failed_chunks", "_selected_action": str(execution.pk)},
        follow=True,
    )

    said = " ".join(str(message) for message in answer.context["messages"])
    assert f"#{execution.pk}: only an import that is still ingesting can retry chunks" in said
    assert "(this one is failed): start a new import of the source" in said


@pytest.mark.django_db
def test_retrying_an_import_with_no_failed_page_says_so_and_logs_nothing(staff_client, make_source):
    # Two operators retried at once: the second finds nothing left to retry.
    from django.contrib.admin.models import LogEntry

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)

    told = run_action(staff_client, "execution", "retry_failed_chunks", [execution.pk])

    assert told == f"#{execution.pk}: no failed chunk to retry."
    assert not LogEntry.objects.filter(object_id=str(execution.pk)).exists()


@pytest.mark.django_db
def test_an_operator_sees_the_start_button_but_not_the_push(client, django_user_model, make_source):
    from django.contrib.auth.models import Group

    operator = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    client.force_login(operator)
    source = make_source()

    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    buttons = re.findall(r'name="action" value="(\w+)"', page.content.decode())
    assert buttons == ["start_import"]


@pytest.mark.django_db
def test_a_wrong_token_ends_in_a_message_not_a_traceback(staff_client, make_source):
    source = make_source(assets_token="not-the-token")

    message = run_action(staff_client, "importsource", "push_mapping", [source.pk])

    assert "401" in message
    assert "not-the-token" not in message


@pytest.mark.django_db
def test_history_cannot_be_added_or_edited(staff_client, make_source):
    execution = Execution.objects.create(source=make_source(), state=Execution.State.DONE)

    add = staff_client.get(reverse("admin:importer_execution_add"))
    change = staff_client.post(
        reverse("admin:importer_execution_change", args=[execution.pk]), {"state": "FAILED"}
    )

    assert add.status_code == 403
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE
    assert change.status_code in (302, 403)


@pytest.mark.django_db
def test_the_history_list_shows_state_trigger_progress_and_why_a_run_failed(
    staff_client, make_source
):
    source = make_source()
    why = "Chunk 3 failed: source 'inventory' answered 500. " + "Details. " * 30
    Execution.objects.create(
        source=source, state=Execution.State.FAILED, trigger=Execution.Trigger.SCHEDULE, error=why
    )

    page = staff_client.get(reverse("admin:importer_execution_changelist"))

    html = page.content.decode()
    assert "FAILED" in html
    assert "scheduled" in html
    assert "import-progress" in html
    assert "Chunk 3 failed: source &#x27;inventory&#x27; answered 500. Details." in html


def test_an_execution_page_shows_a_notice_only_when_the_import_has_one(staff_client, make_source):
    source = make_source()
    quiet = Execution.objects.create(source=source, state=Execution.State.DONE)
    noted = Execution.objects.create(
        source=source, state=Execution.State.DONE, notice="No record of the first page holds 'x'"
    )

    def page(execution) -> str:
        url = reverse("admin:importer_execution_change", args=[execution.pk])
        return staff_client.get(url).content.decode()

    assert "field-notice" not in page(quiet)
    assert "No record of the first page holds &#x27;x&#x27;" in page(noted)


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_total_path_found_no_total_shows_done_with_the_note(
    staff_client, make_source, sandbox
):
    source = make_source(total_path="meta.totl")
    unchecked = services.start_import(source=services.push_mapping(source=source))
    ImportSource.objects.filter(pk=source.pk).update(total_path="total")
    checked = services.start_import(source=source)
    note = "Total not checked: no answer of the source told a total at &#x27;meta.totl&#x27;"

    def page(execution) -> str:
        url = reverse("admin:importer_execution_change", args=[execution.pk])
        return staff_client.get(url).content.decode()

    listing = staff_client.get(reverse("admin:importer_execution_changelist")).content.decode()

    assert listing.count(f'<div class="run-notice" title="{note}') == 1
    noted = page(unchecked)
    assert note in noted
    # Beside the progress and its counts, not below the dates.
    assert noted.index("field-progress_detail") < noted.index("field-notice")
    assert noted.index("field-notice") < noted.index("field-pages_fetched_label")
    assert "field-notice" not in page(checked)


def test_the_history_shows_when_a_refused_run_was_asked_for(staff_client, make_source):
    refused = Execution.objects.create(
        source=make_source(), state=Execution.State.REFUSED, trigger=Execution.Trigger.SCHEDULE
    )
    asked = timezone.localtime(refused.created_at)

    html = staff_client.get(reverse("admin:importer_execution_changelist")).content.decode()

    assert f"{asked:%Y-%m-%d}<br><small>{asked:%H:%M:%S} (asked)</small>" in html


def test_the_history_shows_how_long_an_import_took_even_under_a_second(staff_client, make_source):
    source = make_source()
    start = timezone.now() - timedelta(hours=3)
    for took in (timedelta(milliseconds=420), timedelta(hours=2, minutes=5, seconds=3)):
        Execution.objects.create(
            source=source, state=Execution.State.DONE, started_at=start, finished_at=start + took
        )

    html = staff_client.get(reverse("admin:importer_execution_changelist")).content.decode()

    assert "0.4 s" in html
    assert "2:05:03" in html


@pytest.mark.django_db
def test_the_source_list_shows_the_last_import_and_the_next_scheduled_run(
    staff_client, make_source
):
    from importer.models import Schedule

    source = make_source()
    make_source(name="unscheduled")
    Execution.objects.create(source=source, state=Execution.State.DONE)
    start = datetime(2099, 1, 15, 2, 0, tzinfo=UTC)
    schedule = Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.DAILY,
        start_time=start,
        timezone="UTC",
        in_sync=True,
    )
    link = reverse("admin:importer_schedule_change", args=[schedule.pk])

    def shown() -> str:
        return staff_client.get(reverse("admin:importer_importsource_changelist")).content.decode()

    assert "DONE" in shown()
    assert f'<a href="{link}">daily</a>, next 2099-01-15 02:00 UTC' in shown()
    Schedule.objects.filter(pk=schedule.pk).update(in_sync=False)
    not_synced = "not in Assets as set here: no run until it is synced"
    assert f'<a href="{link}">daily</a>, {not_synced}' in shown()
    ImportSource.objects.filter(pk=source.pk).update(enabled=False)
    assert f'<a href="{link}">daily</a>, paused: the source is disabled' in shown()


@pytest.mark.django_db
def test_a_source_page_leads_to_its_running_import_and_to_all_its_imports(
    staff_client, make_source
):
    source = make_source()
    other = make_source(name="other", import_source_id="src-2")
    Execution.objects.create(source=other, state=Execution.State.DONE)
    Execution.objects.create(source=source, state=Execution.State.FAILED)
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)
    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    html = page.content.decode()

    follow = reverse("admin:importer_execution_change", args=[running.pk])
    assert re.search(rf'Running now: <a href="{follow}">#{running.pk}</a>.*INGESTING', html)
    every = reverse("admin:importer_execution_changelist") + f"?source__id__exact={source.pk}"
    assert f'<a href="{every}">all 2 imports of this source</a>' in html
    assert len(staff_client.get(every).context["cl"].result_list) == 2


@pytest.mark.django_db
def test_a_source_never_imported_says_it_has_no_import_yet(staff_client, make_source):
    source = make_source()
    page = staff_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    assert '<div class="readonly">None yet.</div>' in page.content.decode()


@pytest.mark.django_db
def test_staff_who_may_not_open_imports_see_them_named_without_links_to_a_403(
    client, django_user_model, make_source
):
    from django.contrib.auth.models import Permission

    editor = django_user_model.objects.create_user("editor", password="pw", is_staff=True)
    editor.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_importsource", "change_importsource"])
    )
    client.force_login(editor)
    source = make_source()
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)

    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    listed = client.get(reverse("admin:importer_importsource_changelist"))

    html = page.content.decode() + listed.content.decode()
    assert f"Running now: #{running.pk}" in html and "1 import in all" in html
    assert reverse("admin:importer_execution_change", args=[running.pk]) not in html
    assert reverse("admin:importer_execution_changelist") not in html


@pytest.mark.django_db
def test_the_source_lists_last_import_opens_that_import(staff_client, make_source):
    source = make_source()
    Execution.objects.create(source=source, state=Execution.State.FAILED)
    latest = Execution.objects.create(source=source, state=Execution.State.DONE)
    html = staff_client.get(reverse("admin:importer_importsource_changelist")).content.decode()

    link = reverse("admin:importer_execution_change", args=[latest.pk])
    assert re.search(rf'<td class="field-last_run"><a href="{link}">.*DONE', html)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cookie, shown, zone",
    [
        ("Asia/Tokyo", "2026-01-15 21:00:00", "Asia/Tokyo"),
        ("America%2FNew_York", "2026-01-15 07:00:00", "America/New_York"),
        (None, "2026-01-15 12:00:00", "UTC"),
        ("../../etc/passwd", "2026-01-15 12:00:00", "UTC"),
    ],
)
def test_times_are_shown_in_the_time_zone_the_browser_reports(
    staff_client, make_source, settings, cookie, shown, zone
):
    settings.TIME_ZONE = "UTC"
    started = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    execution = Execution.objects.create(
        source=make_source(), state=Execution.State.DONE, started_at=started
    )
    if cookie:
        staff_client.cookies["assets_sync_tz"] = cookie

    page = staff_client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    html = page.content.decode()
    assert shown in html
    assert f"Times in {zone}" in html
    assert "importer/timezone.js" in html


@pytest.mark.django_db
def test_a_page_that_left_out_records_shows_one_line_and_the_rest_on_a_click(
    staff_client, make_source
):
    execution = Execution.objects.create(source=make_source(), state=Execution.State.DONE)
    reasons = [f"record {n} (serial=SN-{n:05d}): no value for 'serial'" for n in range(1, 31)]
    ChunkJob.objects.create(
        execution=execution, index=0, state="SUBMITTED", error="\n".join(reasons)
    )
    long_line = "answered 400: " + "the object type Laptop has no attribute 'Foo'; " * 10
    ChunkJob.objects.create(execution=execution, index=1, state="SUBMITTED", error=long_line)

    html = staff_client.get(
        reverse("admin:importer_execution_change", args=[execution.pk])
    ).content.decode()

    rows = re.findall(r'<td class="chunk-error">(.*?)</td>', html, re.S)
    assert rows[0].startswith(
        "<details><summary>record 1 (serial=SN-00001): no value for &#x27;serial&#x27; "
        "(and 29 more lines)</summary>record 2 "
    )
    summary = re.search(r"<summary>(.*?)</summary>", rows[1]).group(1)
    assert summary.endswith(" …") and len(summary) < 200
    assert rows[1].count("has no attribute") > 5  # the whole text, once opened


@pytest.mark.django_db
def test_the_admin_is_branded_assets_sync(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert '<a href="/admin/">assets-sync</a>' in page
    assert "<title>Imports into Atlassian Assets | assets-sync</title>" in page
    assert "Django administration" not in page


def opened_source_page(client, source: ImportSource) -> dict:
    """What the source's change page, opened now, would post back unchanged."""
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    return source_form_data(source, loaded_as=page.context["adminform"].form["loaded_as"].value())


@pytest.mark.django_db
def test_a_save_that_would_put_back_what_someone_changed_meanwhile_is_refused(
    staff_client, make_source, django_user_model
):
    from django.test import Client

    source = make_source(page_size=50)
    alice = Client()
    alice.force_login(django_user_model.objects.create_superuser("alice", "a@example.com", "pw"))
    url = reverse("admin:importer_importsource_change", args=[source.pk])
    shown_to_alice = opened_source_page(alice, source)
    shown_to_staff = opened_source_page(staff_client, source)

    saved = alice.post(url, {**shown_to_alice, "page_size": 25, "enabled": ""})
    refused = staff_client.post(url, {**shown_to_staff, "request_timeout": 12})

    assert saved.status_code == 302
    assert refused.status_code == 200
    told = refused.context["adminform"].form.non_field_errors()[0]
    assert told.startswith("Since you opened this page, alice changed ")
    assert "enabled" in told.lower() and "page size" in told.lower()
    source.refresh_from_db()
    assert (source.page_size, source.enabled, source.request_timeout) == (25, False, None)
    # Reloaded, the page shows the change, and the save goes through.
    again = staff_client.post(
        url, {**opened_source_page(staff_client, source), "request_timeout": 12}
    )
    assert again.status_code == 302
    source.refresh_from_db()
    assert (source.page_size, source.enabled, source.request_timeout) == (25, False, 12)
    assert (
        "loaded"
        not in LogEntry.objects.filter(object_id=str(source.pk))
        .latest("pk")
        .get_change_message()
        .lower()
    )


def opened_before_post_requests(client, source: ImportSource) -> dict:
    """What a source's page opened before the release that added the request method and body
    (migration 0036) posts back: neither setting, and a stamp made without them."""
    data = opened_source_page(client, source)
    del data["request_method"], data["request_body"]
    older = [
        name
        for name in ImportSourceAdminForm.guarded_fields
        if name not in ("request_method", "request_body")
    ]
    data["loaded_as"] = stamp(source, older)
    return data


@pytest.mark.django_db
def test_a_source_page_opened_before_the_request_method_existed_saves_as_get(
    staff_client, make_source
):
    source = make_source()
    url = reverse("admin:importer_importsource_change", args=[source.pk])

    response = staff_client.post(
        url, {**opened_before_post_requests(staff_client, source), "request_timeout": 12}
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert (source.request_method, source.request_timeout) == ("GET", 12)


@pytest.mark.django_db
def test_a_source_page_opened_before_the_request_method_existed_keeps_a_post_set_since(
    staff_client, make_source
):
    source = make_source(
        pagination=ImportSource.Pagination.OFFSET,
        offset_param="from",
        limit_param="size",
    )
    shown = opened_before_post_requests(staff_client, source)
    ImportSource.objects.filter(pk=source.pk).update(
        request_method="POST", request_body={"query": {"match_all": {}}, "token": "s3cret"}
    )
    url = reverse("admin:importer_importsource_change", args=[source.pk])

    response = staff_client.post(url, {**shown, "request_timeout": 12})

    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert source.request_method == "POST"
    assert source.request_body == {"query": {"match_all": {}}, "token": "s3cret"}
    assert source.request_timeout == 12


@pytest.mark.django_db
def test_a_new_source_posted_without_a_request_method_is_read_with_get(
    staff_client, sandbox, inventory
):
    data = {
        "name": "older-page",
        "enabled": "on",
        "assets_base_url": sandbox.base_url,
        "workspace_id": "ws-1",
        "import_source_id": "src-older",
        "assets_token": SANDBOX_TOKEN,
        "source_kind": "rest",
        "source_url": f"{inventory.base_url}/api/computers",
        "records_path": "items",
        "pagination": "offset",
        "offset_param": "offset",
        "limit_param": "limit",
        "page_size": "25",
    }
    form = ImportSourceForm()
    for name, field in form.fields.items():
        if name not in data and name not in ("request_method", "request_body"):
            if isinstance(field, forms.BooleanField | forms.FileField):
                continue
            value = form[name].value()
            data[name] = "" if value is None else value

    response = staff_client.post(reverse("admin:importer_importsource_add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ImportSource.objects.get(name="older-page").request_method == "GET"


@pytest.mark.django_db
def test_cancelling_imports_that_already_ended_says_why_nothing_was_cancelled(
    staff_client, make_source
):
    source = make_source()
    done = Execution.objects.create(source=source, state=Execution.State.DONE)
    failed = Execution.objects.create(source=source, state=Execution.State.FAILED)

    message = run_action(staff_client, "execution", "cancel", [done.pk, failed.pk], post="yes")

    assert "0 imports cancelled" not in message
    assert f"Import #{done.pk} had already ended (Done)." in message
    assert f"Import #{failed.pk} had already ended (Failed)." in message


@pytest.mark.django_db
def test_an_import_assets_is_writing_offers_no_cancel_and_says_why(staff_client, make_source):
    processing = Execution.objects.create(
        source=make_source(),
        state=Execution.State.PROCESSING,
        completed_at=timezone.now(),
        assets_execution_id="e-1",
    )
    page = staff_client.get(reverse("admin:importer_execution_change", args=[processing.pk]))
    cancel_url = reverse("admin:importer_execution_cancel", args=[processing.pk])

    asked = staff_client.get(cancel_url).content.decode()
    answered = staff_client.post(cancel_url, follow=True)

    assert "Cancel import</a>" not in page.content.decode()
    assert "Yes, cancel the import" not in asked
    assert "can no longer be cancelled: every page was sent at" in asked
    told = " ".join(str(message) for message in answered.context["messages"])
    assert f"Import #{processing.pk} can no longer be cancelled" in told
    processing.refresh_from_db()
    assert processing.state == Execution.State.PROCESSING


@pytest.mark.django_db
def test_an_import_whose_completion_is_on_its_way_is_not_cancelled(staff_client, make_source):
    # "completed" may reach Assets before the cancel does: Assets then writes every record.
    completing = Execution.objects.create(
        source=make_source(), state=Execution.State.COMPLETING, assets_execution_id="e-1"
    )

    with pytest.raises(services.NotCancellable, match="Assets is being told so"):
        services.cancel_execution(execution=completing)

    completing.refresh_from_db()
    assert completing.state == Execution.State.COMPLETING


@pytest.mark.django_db
def test_a_schedule_changed_meanwhile_names_its_start_time(staff_client, make_source, settings):
    from importer.models import Schedule

    schedule = Schedule.objects.create(
        source=make_source(), frequency="DAILY", start_time=timezone.now(), timezone="UTC"
    )
    url = reverse("admin:importer_schedule_change", args=[schedule.pk])
    shown = staff_client.get(url).context["adminform"].form
    posted = {
        "frequency": "WEEKLY",
        "timezone": "UTC",
        "start_local": shown["start_local"].value().strftime("%Y-%m-%d %H:%M"),
        "loaded_as": shown["loaded_as"].value(),
    }
    Schedule.objects.filter(pk=schedule.pk).update(
        start_time=schedule.start_time + timedelta(hours=1)
    )

    refused = staff_client.post(url, posted)

    told = refused.context["adminform"].form.non_field_errors()[0]
    assert told.startswith("Since you opened this page, someone changed Start time.")
    # A page opened before SECRET_KEY was rotated is out of date, not "changed by someone".
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "another-" + settings.SECRET_KEY
    stale = staff_client.post(url, {**posted, "loaded_as": shown["loaded_as"].value()})
    assert stale.context["adminform"].form.non_field_errors() == [
        "This page is out of date: reload it, then make your change."
    ]


@pytest.mark.django_db
def test_cancelling_from_the_list_asks_first_naming_what_would_be_cancelled(
    staff_client, make_source, sandbox
):
    running = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    done = Execution.objects.create(source=make_source(name="other"), state=Execution.State.DONE)
    url = reverse("admin:importer_execution_changelist")
    chosen = {"action": "cancel", "_selected_action": [str(running.pk), str(done.pk)]}

    asked = staff_client.post(url, chosen).content.decode()
    running.refresh_from_db()
    confirmed = staff_client.post(url, {**chosen, "post": "yes"}, follow=True)

    assert "Cancel 1 running import?" in asked
    assert f"execution #{running.pk}, ingesting" in asked
    assert f"Import #{done.pk} had already ended (Done)." in asked
    assert running.state == Execution.State.INGESTING  # nothing happened before the answer
    running.refresh_from_db()
    assert running.state == Execution.State.CANCELLED
    assert running.error == "Cancelled by staff."  # who did it, in the import's history
    assert "1 import cancelled." in confirmed.content.decode()


@pytest.mark.django_db
def test_a_refused_import_says_it_never_started_instead_of_waiting_for_chunks(
    staff_client, make_source
):
    refused = Execution.objects.create(
        source=make_source(), state=Execution.State.REFUSED, error="Assets answered 401"
    )

    page = staff_client.get(reverse("admin:importer_execution_change", args=[refused.pk]))

    text = page.content.decode()
    assert "None: the import never started." in text
    assert "none yet" not in text.lower()


def test_a_second_source_into_the_same_assets_import_source_is_refused(staff_client, make_source):
    first = make_source()
    second = make_source(name="second", import_source_id="src-2")

    response = staff_client.post(
        reverse("admin:importer_importsource_change", args=[second.pk]),
        source_form_data(second, import_source_id=first.import_source_id),
    )

    assert response.status_code == 200
    assert "The source &#x27;inventory&#x27; imports into this Assets import source already" in (
        response.content.decode()
    )
    second.refresh_from_db()
    assert second.import_source_id == "src-2"


@pytest.mark.django_db
def test_a_running_import_cannot_be_deleted_only_cancelled(staff_client, make_source):
    running = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    ended = Execution.objects.create(source=make_source(name="b"), state=Execution.State.DONE)

    page = staff_client.get(reverse("admin:importer_execution_delete", args=[running.pk]))
    both = staff_client.post(
        reverse("admin:importer_execution_changelist"),
        {"action": "delete_selected", "_selected_action": [running.pk, ended.pk]},
    )
    alone = staff_client.post(
        reverse("admin:importer_execution_delete", args=[ended.pk]), {"post": "yes"}
    )

    assert page.status_code == 403
    assert "permission to delete" in both.content.decode()
    assert alone.status_code == 302
    assert list(Execution.objects.values_list("pk", flat=True)) == [running.pk]


@pytest.mark.django_db
def test_deleting_a_source_with_a_running_import_says_to_cancel_it_first(staff_client, make_source):
    source = make_source()
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)

    html = staff_client.get(
        reverse("admin:importer_importsource_delete", args=[source.pk])
    ).content.decode()

    assert "permission to delete" not in html
    assert f"the running import #{running.pk} of inventory: cancel it first" in html
    assert ImportSource.objects.filter(pk=source.pk).exists()


@pytest.mark.django_db
def test_deleting_a_source_counts_its_chunks_instead_of_listing_each(admin_client, make_source):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from importer.models import ChunkJob

    source = make_source()
    for _ in range(3):
        execution = Execution.objects.create(source=source, state=Execution.State.DONE)
        ChunkJob.objects.bulk_create(
            ChunkJob(execution=execution, index=index, state=ChunkJob.State.SUBMITTED)
            for index in range(400)
        )

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(reverse("admin:importer_importsource_delete", args=[source.pk]))

    html = page.content.decode()
    assert "<li>Chunk jobs: 1200</li>" in html and "<li>Executions: 3</li>" in html
    assert "Chunk job:" not in html  # not a line per chunk
    assert len(queries) < 20
    admin_client.post(
        reverse("admin:importer_importsource_delete", args=[source.pk]), {"post": "yes"}
    )
    assert not ChunkJob.objects.exists() and not Execution.objects.exists()


@pytest.mark.django_db
def test_what_a_running_import_reads_cannot_change_until_it_has_ended(admin_client, make_source):
    source = make_source(page_size=100)
    running = Execution.objects.create(source=source, state=Execution.State.INGESTING)
    url = reverse("admin:importer_importsource_change", args=[source.pk])

    response = admin_client.post(url, source_form_data(source, page_size=200))

    page = response.content.decode()
    assert f"An import of &#x27;inventory&#x27; is running (execution #{running.pk})" in page
    assert "cancel the import first" in page
    assert ImportSource.objects.get(pk=source.pk).page_size == 100


@pytest.mark.django_db
def test_the_number_of_lanes_of_a_running_import_cannot_change(admin_client, make_source):
    # A lane steps over as many pages as there are lanes: another number leaves pages out.
    source = make_source(max_chunks_in_flight=2)
    Execution.objects.create(source=source, state=Execution.State.INGESTING)
    url = reverse("admin:importer_importsource_change", args=[source.pk])

    response = admin_client.post(url, source_form_data(source, max_chunks_in_flight=4))

    assert "is running" in response.content.decode()
    assert ImportSource.objects.get(pk=source.pk).max_chunks_in_flight == 2


@pytest.mark.django_db
def test_a_source_token_can_be_rotated_while_an_import_runs(admin_client, make_source):
    source = make_source()
    Execution.objects.create(source=source, state=Execution.State.INGESTING)
    url = reverse("admin:importer_importsource_change", args=[source.pk])

    response = admin_client.post(url, source_form_data(source, source_token="rotated"))

    assert response.status_code == 302
    assert ImportSource.objects.get(pk=source.pk).source_token == "rotated"


@pytest.mark.django_db
def test_a_mapping_is_not_pushed_while_the_source_imports(make_source, sandbox):
    source = make_source()
    Execution.objects.create(source=source, state=Execution.State.INGESTING)

    with pytest.raises(services.SourceBusy, match="pushing the mapping would apply"):
        services.push_mapping(source=source)

    assert sandbox.mapping("ws-1", "src-1") is None


@pytest.mark.django_db
def test_an_assets_address_with_a_user_and_password_is_refused_when_saved(
    staff_client, make_source
):
    source = make_source()

    response = post_source(
        staff_client, source, assets_base_url="https://proxyuser:proxy-pass@api.atlassian.com"
    )

    error = response.context["adminform"].form.errors["assets_base_url"][0]
    assert error.startswith("Give the address without a user name or password")
    assert "proxy-pass" not in ImportSource.objects.get(pk=source.pk).assets_base_url
    assert "proxy-pass" not in response.content.decode()  # not sent back either


@pytest.mark.django_db
def test_a_user_and_password_in_the_url_of_a_source_with_a_token_is_refused_when_saved(
    staff_client, make_source
):
    source = make_source(source_auth="bearer", source_token="tok-1")
    host = source.source_url.removeprefix("http://")

    response = post_source(staff_client, source, source_url=f"http://apiuser:pw@{host}")

    error = response.context["adminform"].form.errors["source_url"][0]
    assert "user name and password" in error and "choose Basic auth" in error


@pytest.mark.django_db
def test_a_stalled_import_says_since_when_in_the_history_and_the_source_list(
    staff_client, make_source
):
    stalled_since = timezone.now()
    Execution.objects.create(
        source=make_source(), state=Execution.State.INGESTING, stalled_since=stalled_since
    )
    Execution.objects.create(
        source=make_source(name="servers", import_source_id="src-2"),
        state=Execution.State.INGESTING,
    )
    note = f"stalled since {timezone.localtime(stalled_since):%H:%M}"

    history = staff_client.get(reverse("admin:importer_execution_changelist")).content.decode()
    sources = staff_client.get(reverse("admin:importer_importsource_changelist")).content.decode()

    assert history.count(note) == 1
    assert sources.count(note) == 1


@pytest.mark.django_db
def test_the_history_filters_the_imports_stalled_now(staff_client, make_source):
    source = make_source()
    Execution.objects.create(
        source=source, state=Execution.State.FAILED, stalled_since=timezone.now()
    )
    Execution.objects.create(source=source, state=Execution.State.DONE)
    stalled = Execution.objects.create(
        source=source, state=Execution.State.PROCESSING, stalled_since=timezone.now()
    )

    page = staff_client.get(reverse("admin:importer_execution_changelist"), {"stalled": "now"})

    assert page.status_code == 200
    assert [execution.pk for execution in page.context["cl"].result_list] == [stalled.pk]
    assert "Stalled now" in page.content.decode()


@pytest.mark.django_db
def test_trusted_ca_certificates_that_do_not_read_are_refused_where_they_are_set(
    staff_client, make_source
):
    from tests.fake_source import self_signed_certificate

    source = make_source()
    whole = self_signed_certificate()[0]
    cut = whole[: len(whole) // 2] + "\n-----END CERTIFICATE-----\n"

    placeholder = post_source(staff_client, source, ca_bundle="-----BEGIN CERTIFICATE-----…")
    cut_short = post_source(staff_client, source, ca_bundle=cut)
    pasted_whole = post_source(staff_client, source, ca_bundle=whole)

    [error] = placeholder.context["adminform"].form.errors["ca_bundle"]
    assert "hold a character beyond ASCII" in error
    [error] = cut_short.context["adminform"].form.errors["ca_bundle"]
    assert "do not read as PEM certificates (one is cut short or altered)" in error
    assert pasted_whole.status_code == 302


@pytest.mark.django_db
def test_trusted_ca_certificates_with_comments_around_them_in_any_language_are_taken(
    staff_client, make_source
):
    # certifi's and Mozilla's bundles name each certificate's issuer in a comment before it;
    # TLS reads the certificates alone. Windows line endings read the same.
    from tests.fake_source import self_signed_certificate

    source = make_source()
    first, second = self_signed_certificate()[0], self_signed_certificate()[0]
    bundle = (
        "# Issuer: CN=NetLock Arany (Class Gold) Főtanúsítvány O=NetLock Kft.\n"
        f'{first}\n# Label: "TÜBİTAK Kamu SM SSL Kök Sertifikası"\n{second}'
    ).replace("\n", "\r\n")

    page = post_source(staff_client, source, ca_bundle=bundle)

    assert page.status_code == 302
    source.refresh_from_db()
    assert "Főtanúsítvány" in source.ca_bundle and source.ca_bundle.count("BEGIN") == 2


@pytest.mark.django_db
def test_basic_credentials_beyond_latin_1_are_taken(staff_client, make_source):
    source = make_source()

    response = post_source(
        staff_client, source, source_auth="basic", auth_username="用户", source_token="пароль€"
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.auth_username, source.source_token) == ("用户", "пароль€")


@pytest.mark.django_db
def test_a_bearer_token_beyond_latin_1_is_refused_saying_only_basic_may_hold_it(
    staff_client, make_source
):
    source = make_source()

    response = post_source(staff_client, source, source_auth="bearer", source_token="пароль€")

    [error] = response.context["adminform"].form.errors["source_token"]
    assert "an HTTP header cannot carry" in error and "only Basic" in error
    assert "пароль" not in error


@pytest.mark.django_db
@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_a_secret_holding_an_examples_ellipsis_is_refused_as_a_placeholder(
    staff_client, make_source, auth
):
    source = make_source()

    response = post_source(
        staff_client, source, source_auth=auth, auth_username="svc", source_token="paste…"
    )

    [error] = response.context["adminform"].form.errors["source_token"]
    assert error == "Holds '…', as a placeholder does: paste the secret itself."
