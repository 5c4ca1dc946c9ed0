"""The staff UI in a real browser: Playwright drives Debian's Chromium against a live server.

What a staff user does by hand: log in, add an import source through the form, push its
mapping, start an import and watch the execution page until it is done (progress.js polls
and reloads the page once at the end), and get a field error for a broken mapping.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from django.contrib.auth.models import Group
from django.db import connections

from importer.models import ChunkJob, Execution, ImportSource, Schedule
from tests.conftest import (
    ARTIFACTS,
    DEMO_MAPPING,
    ROOT,
    SANDBOX_TOKEN,
    _database_url_of_test_database,
    wait_for,
)

BROWSER_TIME_ZONE = "Pacific/Auckland"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ARTIFACTS / "screenshots"
DEMO_MAPPING_TEXT = (ROOT / "importer" / "devtools" / "demo_mapping.json").read_text()
PASSWORD = "browser-test-password-1"
# Long enough for a cluster to take up a 5-page import on a slow CI machine.
IMPORT_TIMEOUT_MS = 120_000
# The demo inventory's 120 records in pages of 25.
SUBMITTED = ["25", "25", "25", "25", "20"]
PROGRESS_JSON = re.compile(r"/executions/\d+/progress\.json$")

# Notes, at each load of an execution page, whether the server rendered it finished; kept in
# sessionStorage so the list survives progress.js's reload.
RECORD_RENDERS = """
document.addEventListener("DOMContentLoaded", function () {
  var bar = document.querySelector(".import-progress[data-detailed]");
  if (!bar) { return; }
  var renders = JSON.parse(sessionStorage.getItem("renders") || "[]");
  renders.push(bar.getAttribute("data-finished"));
  sessionStorage.setItem("renders", JSON.stringify(renders));
});
"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"browser tests need Debian's Chromium at {CHROMIUM}"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
expect = sync_api.expect


@pytest.fixture
def browser_page(live_server, settings):
    """A fresh Chromium page; screenshots go to tests/artifacts/screenshots/."""
    settings.PUBLIC_BASE_URL = live_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API keeps an asyncio loop running in this thread, which makes Django
    # refuse ORM calls here; the test's own few queries are plain synchronous ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            # A zone of its own, so the admin is seen to follow the browser's, not the site's.
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, timezone_id=BROWSER_TIME_ZONE
            )
            context.set_default_timeout(15_000)
            page = context.new_page()
            try:
                yield page
            finally:
                context.close()
                browser.close()
                # Django keeps the ORM connections opened under Playwright's loop apart from
                # the test's others; left open, PostgreSQL could not drop the test database.
                connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def administrator(django_user_model):
    """A staff user with the "Import administrators" role (not a superuser)."""
    user = django_user_model.objects.create_user(
        "ada", email="ada@example.com", password=PASSWORD, is_staff=True
    )
    user.groups.add(Group.objects.get(name="Import administrators"))
    return user


def shoot(page, name: str) -> None:
    """A full-page screenshot, scrolled to the top so the sticky admin sidebar sits there."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.get_by_label("Username:").fill(user.username)
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text(user.username)


def field(page, label: str):
    """The input of the admin form row whose label reads `label`."""
    return page.get_by_label(f"{label}:", exact=True)


def fill_source_form(page, *, sandbox, inventory, mapping_text: str) -> None:
    """Type a REST source wired to the sandbox and the demo inventory, as a user would."""
    field(page, "Name").fill("demo-inventory")
    field(page, "Assets API base URL").fill(sandbox.base_url)
    field(page, "Assets workspace id").fill("ws-1")
    field(page, "Assets import source id").fill("src-1")
    field(page, "Assets token").fill(SANDBOX_TOKEN)
    field(page, "Kind").select_option(label="REST / JSON API")
    field(page, "Source URL").fill(f"{inventory.base_url}/api/computers")
    field(page, "Records selector").fill("items")
    field(page, "Pagination").select_option(label="Offset and limit")
    field(page, "Page size").fill("25")
    field(page, "Mapping").fill(mapping_text)


def open_add_source_form(page) -> None:
    page.get_by_role("link", name="Import sources", exact=True).click()
    page.get_by_role("link", name=re.compile(r"Add import source", re.IGNORECASE)).click()
    expect(page.locator("h1")).to_have_text("Add import source")


def run_action(page, source_name: str, action: str) -> None:
    """Tick one row of the source list, choose `action` and press Go."""
    page.get_by_label(f"Select this object for an action - {source_name}").check()
    page.locator("select[name=action]").select_option(label=action)
    page.get_by_role("button", name="Go").click()


@pytest.mark.django_db(transaction=True)
def test_a_staff_user_adds_a_source_pushes_its_mapping_and_watches_the_import(
    browser_page, live_server, administrator, sandbox, inventory, cluster
):
    page = browser_page
    log_in(page, live_server, administrator)
    shoot(page, "1-admin-index")

    # Story 1: add the source through the form.
    open_add_source_form(page)
    fill_source_form(page, sandbox=sandbox, inventory=inventory, mapping_text=DEMO_MAPPING_TEXT)
    shoot(page, "2-add-source-filled")
    page.get_by_role("button", name="Save", exact=True).click()
    messages = page.locator("ul.messagelist")
    expect(messages).to_contain_text("was added successfully")
    mapping_status = page.locator("tbody td.field-mapping_status")
    expect(mapping_status).to_have_text("not pushed")
    shoot(page, "3-source-added")
    source = ImportSource.objects.get(name="demo-inventory")
    assert source.assets_token == SANDBOX_TOKEN
    assert source.mapping == DEMO_MAPPING
    assert (source.records_path, source.pagination, source.page_size) == ("items", "offset", 25)

    # Story 2: push the mapping, start the import, follow it to the end.
    run_action(page, "demo-inventory", "Push mapping to Assets")
    expect(messages).to_contain_text("Assets accepted the mapping")
    expect(mapping_status).to_have_text("pushed")
    shoot(page, "4-mapping-pushed")
    assert sandbox.mapping("ws-1", "src-1") == DEMO_MAPPING

    run_action(page, "demo-inventory", "Start import")
    expect(messages).to_contain_text("Import of demo-inventory started")
    shoot(page, "5-import-started")

    # The first polls wait until the page is photographed: a screenshot taken while
    # progress.js reloads the page never finishes.
    held = []

    def hold_polls(route):
        if held is None:
            route.continue_()
        else:
            held.append(route)

    page.route(PROGRESS_JSON, hold_polls)
    page.add_init_script(RECORD_RENDERS)
    messages.get_by_role("link", name=re.compile(r"follow execution #\d+")).click()
    progress = page.locator(".import-progress[data-detailed]")
    expect(progress).to_have_count(1)
    shoot(page, "6-execution-opened")
    held, polls = None, held
    for poll in polls:
        poll.continue_()

    # progress.js marks the bar finished as it announces the end, then reloads the page: the
    # details below are the server's render after that reload.
    expect(progress).to_have_attribute("data-finished", "true", timeout=IMPORT_TIMEOUT_MS)
    page.wait_for_function(
        "JSON.parse(sessionStorage.getItem('renders') || '[]').includes('true')",
        timeout=IMPORT_TIMEOUT_MS,
    )
    expect(progress).to_have_attribute("data-state", "DONE")
    expect(progress).to_have_attribute("data-percent", "100")
    expect(page.locator(".import-progress-bar")).to_have_attribute(
        "style", re.compile(r"width:\s*100%")
    )
    expect(page.locator(".import-progress-label")).to_contain_text("100%")
    expect(page.locator(".field-state_label")).to_contain_text("DONE")
    expect(page.locator(".field-records_submitted")).to_contain_text("120")
    expect(page.locator("#user-tools .time-zone")).to_have_text(f"Times in {BROWSER_TIME_ZONE}")
    chunks = page.locator("tr.chunk-row").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.textContent.trim()))"
    )
    states = [(number, state, records) for number, state, _, _, _, records, *_ in chunks]
    assert states[:5] == [(str(n), "Submitted", r) for n, r in enumerate(SUBMITTED, 1)], chunks
    # A chunk fanned out past the end says so, or is cancelled when the import completed first.
    assert all(state in ("Past the end", "Cancelled") for _, state, _ in states[5:]), chunks
    assert all(records == "0" for _, _, records in states[5:]), chunks
    shoot(page, "7-execution-done")
    # Rendered unfinished and reloaded once at the end, or (a quick import) finished at once.
    renders = page.evaluate("JSON.parse(sessionStorage.getItem('renders') || '[]')")
    assert renders in (["false", "true"], ["true"]), renders

    execution = Execution.objects.get(source=source)
    assert execution.state == Execution.State.DONE, execution.error
    assert execution.triggered_by == administrator
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["object_count"] == len(remote["objects"]) == 120
    assert remote["duplicate_objects"] == 0
    assert set(remote["objects"].values()) == {1}
    assert remote["completed_posts"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_broken_mapping_is_shown_as_a_field_error_and_nothing_is_saved(
    browser_page, live_server, administrator, sandbox, inventory
):
    page = browser_page
    broken = json.loads(DEMO_MAPPING_TEXT)
    del broken["mapping"]["objectTypeMappings"][0]["selector"]
    log_in(page, live_server, administrator)

    open_add_source_form(page)
    fill_source_form(
        page, sandbox=sandbox, inventory=inventory, mapping_text=json.dumps(broken, indent=2)
    )
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".errornote")).to_be_visible()
    mapping_row = page.locator(".form-row.field-mapping")
    expect(mapping_row.locator(".errorlist")).to_contain_text(
        "mapping.objectTypeMappings[0].selector (line 61): is required"
    )
    # The token typed in was not saved, and is not sent back: the form says so at its field.
    token_row = page.locator(".form-row.field-assets_token")
    expect(token_row.locator(".errorlist")).to_contain_text("paste it again")
    expect(page.locator(".errorlist")).to_have_count(2)
    # What the user typed is kept, so the mapping can be fixed in place.
    expect(field(page, "Mapping")).to_have_value(re.compile(r'"objectTypeMappings"'))
    expect(field(page, "Name")).to_have_value("demo-inventory")
    shoot(page, "8-broken-mapping-refused")
    assert not ImportSource.objects.exists()


def visible_rows(page, form: str = "#importsource_form") -> set[str]:
    """The names of the form rows a user sees."""
    return set(
        page.locator(f"{form} .form-row").evaluate_all(
            """rows => rows.filter(row => row.offsetParent !== null).map(
                row => [...row.classList].find(c => c.startsWith("field-")).slice(6))"""
        )
    )


@pytest.mark.django_db(transaction=True)
def test_a_rest_source_with_bearer_auth_shows_only_its_own_fields(
    browser_page, live_server, administrator, sandbox, inventory
):
    page = browser_page
    log_in(page, live_server, administrator)
    open_add_source_form(page)
    shoot(page, "14-add-source-blank")
    blank = visible_rows(page)
    assert {"source_url", "records_path", "pagination", "offset_param", "source_auth"} <= blank
    hidden = {"plugin", "plugin_options", "source_file", "csv_delimiter", "cursor_path"}
    assert not {*hidden, "after_first_page"} & blank, blank
    assert not {"source_token", "auth_username", "oauth_token_url", "oauth_scope"} & blank
    assert page.evaluate("document.documentElement.scrollHeight") < 2600

    field(page, "Source authentication").select_option(label="Bearer token")
    expect(page.locator(".form-row.field-source_token")).to_be_visible()
    assert not {"auth_username", "auth_key_name", "oauth_token_url"} & visible_rows(page)
    field(page, "Kind").select_option(label="CSV file")
    expect(page.locator(".form-row.field-source_file")).to_be_visible()
    expect(page.locator(".form-row.field-pagination")).to_be_hidden()
    expect(page.locator(".form-row.field-csv_delimiter")).to_be_visible()
    field(page, "Kind").select_option(label="REST / JSON API")
    expect(page.locator(".form-row.field-source_file")).to_be_hidden()
    field(page, "Pagination").select_option(label="Cursor in the answer")
    expect(page.locator(".form-row.field-after_first_page")).to_be_visible()
    field(page, "Pagination").select_option(label="Offset and limit")
    expect(page.locator(".form-row.field-after_first_page")).to_be_hidden()

    fill_source_form(page, sandbox=sandbox, inventory=inventory, mapping_text=DEMO_MAPPING_TEXT)
    field(page, "Source secret").fill("inventory-bearer-token")
    field(page, "Source URL").fill(inventory.base_url.removeprefix("http://") + "/api/computers")
    shoot(page, "15-add-rest-source-with-bearer")
    page.get_by_role("button", name="Save", exact=True).click()

    # The URL without its scheme is refused, and the summary at the top leads to it.
    summary = page.locator("ul.error-summary")
    expect(summary).to_contain_text("Source URL: Give the whole URL with its scheme")
    shoot(page, "16-add-source-error-summary")
    summary.get_by_role("link", name="Source URL").click()
    expect(field(page, "Source URL")).to_be_in_viewport()
    field(page, "Source URL").fill(f"{inventory.base_url}/api/computers")
    field(page, "Assets token").fill(SANDBOX_TOKEN)
    field(page, "Source secret").fill("inventory-bearer-token")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    source = ImportSource.objects.get(name="demo-inventory")
    assert (source.source_auth, source.source_token) == ("bearer", "inventory-bearer-token")
    assert source.source_url == f"{inventory.base_url}/api/computers"


@pytest.mark.django_db(transaction=True)
def test_a_file_source_shows_its_authentication_and_connection_only_while_it_reads_a_url(
    browser_page, live_server, administrator, make_source, settings, tmp_path
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = str(tmp_path)
    page = browser_page
    authentication = page.locator("fieldset:has(h2:text-is('Source authentication'))")
    connection = page.locator("fieldset:has(h2:text-is('Connection'))")
    log_in(page, live_server, administrator)
    open_add_source_form(page)

    field(page, "Kind").select_option(label="CSV file")
    expect(authentication).to_be_visible()  # read from the URL until a file is chosen
    expect(connection).to_be_visible()
    page.locator("input[name=source_file]").set_input_files(
        files=[{"name": "computers.csv", "mimeType": "text/csv", "buffer": b"serial\nSN-1\n"}]
    )
    expect(authentication).to_be_hidden()
    expect(connection).to_be_hidden()  # no headers, parameters or CA for a stored file

    upload = SimpleUploadedFile("computers.csv", b"serial\nSN-1\n")
    source = make_source(source_kind="csv", source_url="", records_path="", source_file=upload)
    page.goto(f"{live_server.url}/admin/importer/importsource/{source.pk}/change/")
    expect(page.locator(".form-row.field-csv_delimiter")).to_be_visible()
    expect(authentication).to_be_hidden()
    expect(connection).to_be_hidden()
    page.locator("input[name=source_file-clear]").check()  # from now on, read from its URL
    expect(authentication).to_be_visible()
    expect(connection).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_an_actions_message_takes_the_focus_so_it_is_read_first(
    browser_page, live_server, administrator, make_source, sandbox
):
    make_source()
    page = browser_page
    log_in(page, live_server, administrator)
    page.get_by_role("link", name="Import sources", exact=True).click()

    run_action(page, "inventory", "Push mapping to Assets")

    messages = page.get_by_role("list", name="Messages")
    expect(messages).to_contain_text("Assets accepted the mapping")
    expect(messages).to_be_focused()
    # The keyboard goes on from the messages, not from the top of the page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#header') === null")


@pytest.mark.django_db(transaction=True)
def test_a_page_button_after_unsaved_edits_asks_to_save_first(
    browser_page, live_server, administrator, make_source, sandbox
):
    # "Push mapping" acts on the source as saved: the edit below would be lost unsaid.
    source = make_source()
    page = browser_page
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/importsource/{source.pk}/change/")
    field(page, "Page size").fill("40")

    page.get_by_role("button", name="Push mapping").click()

    expect(page.locator("#unsaved-changes")).to_have_text(
        "This page has changes that are not saved. \u201cPush mapping\u201d acts on what is "
        "saved: save first (or reload the page to drop them)."
    )
    shoot(page, "23-unsaved-then-page-button")
    assert not [path for method, path in sandbox.requests_log if path.endswith("/mapping")]
    page.get_by_role("button", name="Save and continue editing").click()
    page.get_by_role("button", name="Push mapping").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Assets accepted the mapping")
    source.refresh_from_db()
    assert source.page_size == 40 and source.mapping_pushed_at is not None

    # A save that came back with errors shows edits that are not saved either.
    field(page, "Page size").fill("50")
    field(page, "Source URL").fill("not a url")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    page.get_by_role("button", name="Push mapping").click()
    expect(page.locator("#unsaved-changes")).to_be_visible()
    source.refresh_from_db()
    assert source.page_size == 40


@pytest.mark.django_db(transaction=True)
def test_a_chunk_error_opened_to_read_stays_open_while_the_import_runs(
    browser_page, live_server, administrator, make_source
):
    execution = Execution.objects.create(
        source=make_source(), state=Execution.State.INGESTING, assets_execution_id="x"
    )
    reasons = "\n".join(f"record {n} (serial=SN-{n:05d}): no value for 'serial'" for n in range(30))
    ChunkJob.objects.create(execution=execution, index=0, state="FAILED", error=reasons)
    running = ChunkJob.objects.create(execution=execution, index=1, state="RUNNING")
    page = browser_page
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/execution/{execution.pk}/change/")
    error = page.locator('tr.chunk-row[data-index="0"] .chunk-error details')
    error.locator("summary").click()
    expect(error).to_have_attribute("open", "")

    # Another lane moves on: the rows are sent again.
    ChunkJob.objects.filter(pk=running.pk).update(state="SUBMITTED", record_count=25)
    ChunkJob.objects.create(execution=execution, index=2, state="RUNNING")
    expect(page.locator('tr.chunk-row[data-index="2"]')).to_be_attached()

    expect(error).to_have_attribute("open", "")


@pytest.mark.django_db(transaction=True)
def test_who_may_only_view_a_source_sees_the_rows_its_settings_use(
    browser_page, live_server, django_user_model, make_source
):
    operator = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    source = make_source(source_auth="bearer", source_token="s3cret-token")
    page = browser_page
    log_in(page, live_server, operator)

    page.goto(f"{live_server.url}/admin/importer/importsource/{source.pk}/change/")

    shown = visible_rows(page)
    assert {"records_path", "pagination", "offset_param", "limit_param", "source_auth"} <= shown
    assert not {"plugin_options", "oauth_token_url", "cursor_path", "source_file"} & shown
    assert "s3cret-token" not in page.content()


@pytest.mark.django_db(transaction=True)
def test_who_may_only_view_a_source_sees_its_masked_settings_only_where_its_settings_use_them(
    browser_page, live_server, django_user_model, make_source, inventory
):
    operator = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name="Import operators"))
    read_with_get = make_source(name="read with GET")
    read_with_post = make_source(
        name="read with POST",
        source_url=f"{inventory.base_url}/api/search",
        request_method="POST",
        request_body={"query": {"match_all": {}}, "auth": "search-s3cret-token"},
        offset_param="from",
        limit_param="size",
    )
    page = browser_page
    log_in(page, live_server, operator)

    page.goto(f"{live_server.url}/admin/importer/importsource/{read_with_get.pk}/change/")
    shown = visible_rows(page)
    assert "source_url_masked" in shown
    assert not {"request_body_masked", "plugin_options_masked", "source_token_masked"} & shown
    page.goto(f"{live_server.url}/admin/importer/importsource/{read_with_post.pk}/change/")
    expect(page.locator(".form-row.field-request_body_masked")).to_contain_text("match_all")
    assert "search-s3cret-token" not in page.content()


# --- the execution page, live --------------------------------------------------------------

WHOLE_NUMBER_BETWEEN_1_AND_119 = re.compile(r"^\s*([1-9]|[1-9][0-9]|1[01][0-9])\s*$")


@pytest.fixture
def slow_source(make_source, sandbox, inventory):
    """120 records in 12 pages of 10, read one page at a time from a source slowed down."""
    from importer import services

    inventory.latency = 0.4
    source = make_source(page_size=10, max_chunks_in_flight=1, total_path="total")
    return services.push_mapping(source=source)


def open_execution(page, live_server, execution) -> None:
    page.add_init_script(RECORD_RENDERS)
    page.goto(f"{live_server.url}/admin/importer/execution/{execution.pk}/change/")
    expect(page.locator(".import-progress[data-detailed]")).to_have_count(1)


def watch_a_slowed_import(page, live_server, administrator, slow_source, inventory) -> Execution:
    """An import of pages a second apart, started by `administrator`, open in `page`."""
    from importer import services

    inventory.latency = 1.0
    execution = services.start_import(source=slow_source, user=administrator)
    log_in(page, live_server, administrator)
    open_execution(page, live_server, execution)
    return execution


def renders(page) -> list[str]:
    return page.evaluate("JSON.parse(sessionStorage.getItem('renders') || '[]')")


@pytest.mark.django_db(transaction=True)
def test_the_execution_page_shows_counters_chunks_and_a_retry_change_while_it_runs(
    browser_page, live_server, administrator, slow_source, inventory, cluster
):
    page = browser_page
    # Page 6 fails once; the source asks to be called again in 3 s.
    inventory.faults.add(
        method="GET", path_contains="offset=50", status=503, retry_after="3", times=1
    )
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/importsource/")
    run_action(page, "inventory", "Start import")
    page.add_init_script(RECORD_RENDERS)
    page.locator("ul.messagelist").get_by_role(
        "link", name=re.compile(r"follow execution #\d+")
    ).click()
    progress = page.locator(".import-progress[data-detailed]")
    records = page.locator(".field-records_submitted .readonly")
    submitted_rows = page.locator("tr.chunk-row[data-state=SUBMITTED]")

    # Counters and chunk rows change while the page stays the one first rendered.
    expect(records).to_have_text(WHOLE_NUMBER_BETWEEN_1_AND_119)
    expect(submitted_rows).not_to_have_count(0)
    expect(page.locator(".import-progress-label")).to_contain_text(re.compile(r"of 120 records"))
    shoot(page, "9-execution-running")

    retries = page.locator(".field-retries_label .readonly")
    # The import reaches page 6 at the source's pace, however busy the machine is.
    expect(retries).to_contain_text(
        re.compile(r"page 6 waits after attempt 1 \(.+\)"), timeout=IMPORT_TIMEOUT_MS
    )
    expect(retries).to_contain_text(re.compile(r"next attempt .*\((in \d+ s|due now)\)"))
    retried = page.locator("tr.chunk-row").nth(5)
    expect(retried).to_have_attribute("data-state", "QUEUED")
    expect(retried.locator("td").nth(4)).to_contain_text(re.compile(r"in \d+ s|due now"))
    assert renders(page) == ["false"], "the page was reloaded while the import ran"
    shoot(page, "10-execution-retry-waiting")

    # The retry succeeds, and the page shows it without a reload.
    expect(retried).to_have_attribute("data-state", "SUBMITTED", timeout=IMPORT_TIMEOUT_MS)
    expect(retried.locator("td").nth(4)).to_have_text("—")
    expect(progress).not_to_have_attribute("data-percent", "")
    assert renders(page)[0] == "false"
    shoot(page, "11-execution-retry-done")


@pytest.mark.django_db(transaction=True)
def test_an_operator_cancels_an_import_from_its_page(
    browser_page, live_server, administrator, slow_source, inventory, cluster
):
    page = browser_page
    execution = watch_a_slowed_import(page, live_server, administrator, slow_source, inventory)
    expect(page.locator(".field-records_submitted .readonly")).to_have_text(
        WHOLE_NUMBER_BETWEEN_1_AND_119
    )

    page.get_by_role("link", name="Cancel import").click()
    expect(page.locator("h1")).to_have_text(f"Cancel import #{execution.pk}?")
    shoot(page, "12-cancel-confirmation")
    page.get_by_role("button", name="Yes, cancel the import").click()

    expect(page.locator("ul.messagelist")).to_contain_text(f"Import #{execution.pk} cancelled.")
    expect(page.locator(".field-state_label")).to_contain_text("CANCELLED")
    expect(page.get_by_role("link", name="Cancel import")).to_have_count(0)
    expect(page.locator(".import-progress[data-detailed]")).to_have_attribute(
        "data-finished", "true"
    )
    # Reloaded once its pages stopped: the cancel's message is still there.
    expect(page.locator("ul.messagelist")).to_contain_text(f"Import #{execution.pk} cancelled.")
    shoot(page, "13-execution-cancelled")
    execution.refresh_from_db()
    assert execution.state == Execution.State.CANCELLED
    cancelled = execution.chunks.filter(state="CANCELLED")
    assert not cancelled.exclude(next_attempt_at=None).exists()


@pytest.mark.django_db(transaction=True)
def test_the_executions_list_shows_an_import_that_ended_while_it_was_open(
    browser_page, live_server, administrator, slow_source, cluster
):
    from importer import services

    page = browser_page
    execution = services.start_import(source=slow_source, user=administrator)
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/execution/")
    row = page.locator("#result_list tbody tr").first
    expect(row.locator(".field-state_and_why")).to_contain_text("INGESTING")

    # Without a reload by hand: its state, duration and bar are those of the end.
    expect(row.locator(".field-state_and_why")).to_contain_text("DONE", timeout=IMPORT_TIMEOUT_MS)
    expect(row.locator(".import-progress")).to_have_attribute("data-finished", "true")
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE


@pytest.mark.django_db(transaction=True)
def test_an_execution_page_says_when_its_live_updates_stop(
    browser_page, live_server, administrator, slow_source, inventory, cluster
):
    from importer import services

    page = browser_page
    execution = watch_a_slowed_import(page, live_server, administrator, slow_source, inventory)
    status = page.locator(".import-progress-status")

    page.context.clear_cookies()  # logged out meanwhile (another tab, an expired session)

    expect(status).to_have_text(
        "Live updates stopped: your session has ended. Log in again, then reload the page."
    )
    expect(status).to_have_attribute("role", "status")
    services.cancel_execution(execution=execution)


@pytest.mark.django_db(transaction=True)
def test_an_execution_page_shows_its_retry_button_once_a_page_fails(
    browser_page, live_server, administrator, make_source
):
    # Watched at night: the button must come without a reload, within the grace period.
    from importer.models import ChunkJob

    page = browser_page
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=0, state=ChunkJob.State.RUNNING)
    log_in(page, live_server, administrator)
    open_execution(page, live_server, execution)
    retry = page.get_by_role("button", name="Retry failed chunks")
    expect(retry).to_be_hidden()

    ChunkJob.objects.filter(pk=chunk.pk).update(state=ChunkJob.State.FAILED, error="answered 400")

    expect(retry).to_be_visible()
    expect(page.locator(".import-progress-status")).to_contain_text("Retry failed chunks")
    retry.click()
    expect(page.locator(".messagelist")).to_contain_text("1 chunk queued again")
    expect(retry).to_be_hidden()


@pytest.mark.django_db(transaction=True)
def test_an_execution_page_counts_its_chunks_by_state_as_the_table_does_while_it_runs(
    browser_page, live_server, administrator, make_source
):
    from importer.models import ChunkJob

    page = browser_page
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    first = ChunkJob.objects.create(execution=execution, index=0, state=ChunkJob.State.RUNNING)
    log_in(page, live_server, administrator)
    open_execution(page, live_server, execution)
    states = page.locator(".chunk-states")
    expect(states).to_be_hidden()  # one state: nothing to narrow the chunks to

    ChunkJob.objects.filter(pk=first.pk).update(state=ChunkJob.State.SUBMITTED)
    ChunkJob.objects.create(execution=execution, index=1, state=ChunkJob.State.RUNNING)
    ChunkJob.objects.create(execution=execution, index=2, state=ChunkJob.State.QUEUED)

    expect(page.locator(".chunk-count")).to_have_text("3")
    expect(states).to_be_visible()
    expect(states).to_have_text(
        re.compile(
            r"^Show:\s*All \(3\)\s*·\s*Queued \(1\)\s*·\s*Running \(1\)\s*·\s*Submitted \(1\)$"
        )
    )
    ChunkJob.objects.filter(execution=execution).update(state=ChunkJob.State.SUBMITTED)
    expect(states).to_be_hidden()  # as the page would be rendered now
    assert renders(page) == ["false"], "the page was reloaded"


@pytest.mark.django_db(transaction=True)
def test_a_chunk_error_read_with_the_keyboard_keeps_the_focus_while_the_rows_update(
    browser_page, live_server, administrator, make_source
):
    from importer.models import ChunkJob

    page = browser_page
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    long_error = "source 'inventory' answered 400 Bad Request: " + "the filter is wrong. " * 20
    ChunkJob.objects.create(
        execution=execution, index=0, state=ChunkJob.State.FAILED, error=long_error
    )
    other = ChunkJob.objects.create(execution=execution, index=1, state=ChunkJob.State.RUNNING)
    log_in(page, live_server, administrator)
    open_execution(page, live_server, execution)
    summary = page.locator('tr.chunk-row[data-index="0"] summary')
    page.get_by_role("region", name="Chunk table").focus()
    page.keyboard.press("Tab")  # onto the error's summary, as a keyboard user gets there
    expect(summary).to_be_focused()
    page.keyboard.press("Enter")  # opened to read

    ChunkJob.objects.filter(pk=other.pk).update(state=ChunkJob.State.SUBMITTED)

    # The figures move on; the rows wait while the keyboard is in them.
    expect(page.locator(".field-chunk_summary")).to_contain_text("1 submitted")
    expect(summary).to_be_focused()
    expect(page.locator('tr.chunk-row[data-index="0"] details')).to_have_attribute("open", "")
    expect(page.locator('tr.chunk-row[data-index="1"]')).to_have_attribute("data-state", "RUNNING")

    page.keyboard.press("Shift+Tab")  # out of the rows: they catch up
    expect(page.locator('tr.chunk-row[data-index="1"]')).to_have_attribute(
        "data-state", "SUBMITTED"
    )


@pytest.mark.django_db(transaction=True)
def test_an_execution_page_rides_out_a_proxys_error_page(
    browser_page, live_server, administrator, slow_source, cluster
):
    # A restart behind a proxy answers an HTML 502 for a moment: the updates go on after it.
    from importer import services

    page = browser_page
    answered = {"502": 0}

    def once_a_gateway_error(route):
        if answered["502"] == 0:
            answered["502"] += 1
            route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>")
        else:
            route.continue_()

    execution = services.start_import(source=slow_source, user=administrator)
    log_in(page, live_server, administrator)
    page.route(re.compile(r"/live/"), once_a_gateway_error)
    open_execution(page, live_server, execution)

    expect(page.locator(".field-state_label")).to_contain_text("DONE", timeout=IMPORT_TIMEOUT_MS)
    assert answered["502"] == 1
    expect(page.locator(".import-progress-status", has_text="stopped")).to_have_count(0)


@pytest.mark.django_db(transaction=True)
def test_the_list_waits_to_reload_while_a_search_is_being_typed(
    browser_page, live_server, administrator, slow_source, cluster
):
    from importer import services

    page = browser_page
    execution = services.start_import(source=slow_source, user=administrator)
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/execution/")
    page.locator("#searchbar").fill("invent")

    expect(page.locator(".imports-ended")).to_contain_text(
        "An import on this page has ended.", timeout=IMPORT_TIMEOUT_MS
    )
    expect(page.locator("#searchbar")).to_have_value("invent")  # not reloaded under the typing
    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE


# --- lists on a laptop screen ----------------------------------------------------------------

LAPTOP = {"width": 1366, "height": 768}
OVERFLOW = """() => {
  const table = document.querySelector(arguments_selector);
  return {
    page: document.documentElement.scrollWidth - window.innerWidth,
    table: table.scrollWidth - table.parentElement.clientWidth,
  };
}"""


def overflow(page, selector: str) -> dict:
    """How far the page scrolls sideways, and the table past the box holding it."""
    return page.evaluate(OVERFLOW.replace("arguments_selector", json.dumps(selector)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1366, 1280])
def test_the_lists_fit_a_laptop_screen(
    browser_page, live_server, administrator, make_source, width
):
    from django.utils import timezone

    page = browser_page
    page.set_viewport_size({**LAPTOP, "width": width})
    source = make_source(name="inventory-of-the-datacentre-in-frankfurt-rack-row-b")
    now = timezone.now()
    execution = None
    for state in ("DONE", "FAILED", "CANCELLED", "INGESTING"):
        execution = Execution.objects.create(
            source=source,
            state=state,
            started_at=now,
            finished_at=now if state != "INGESTING" else None,
            records_submitted=123456,
            records_total=300000,
            assets_execution_id="9f1c7a52-3d0e-4d5b-a8f7-0c6b7e3f2a11",
            # An address does not wrap at spaces: it must not widen the column.
            error="Chunk 3 failed: source 'x' answered 503 at https://inventory.example.com/"
            "api/v2/computers/export/all-records-including-retired "
            + "with a long explanation "
            * 8
            if state == "FAILED"
            else "",
        )
    Schedule.objects.create(
        source=source, frequency="WEEKLY", start_time=now, timezone="America/Argentina/Buenos_Aires"
    )
    failure = "attempt 3 of 5 failed: source 'x' answered 503 " + "with a long explanation " * 8
    for index in range(6):
        execution.chunks.create(
            index=index,
            cursor=f"https://inventory.example/api/computers?cursor={'c' * 80}{index}",
            state="QUEUED" if index == 5 else "SUBMITTED",
            attempts=3,
            last_error_kind="source_unavailable",
            worker="worker-host-with-a-long-name.example.com:123456",
            record_count=1000,
            error=failure if index == 5 else "",
            next_attempt_at=now if index == 5 else None,
        )
    log_in(page, live_server, administrator)

    for name, url, table in [
        ("executions", "/admin/importer/execution/", "#result_list"),
        ("sources", "/admin/importer/importsource/", "#result_list"),
        ("chunks", f"/admin/importer/execution/{execution.pk}/change/", "table.chunk-table"),
    ]:
        page.goto(live_server.url + url)
        shoot(page, f"17-list-{name}-{width}px")
        reach = overflow(page, table)
        assert reach["page"] <= 0 and reach["table"] <= 0, (name, reach)


@pytest.mark.django_db(transaction=True)
def test_the_channel_list_fits_a_1280_px_screen_with_the_sidebar_open(
    browser_page, live_server, administrator, make_source
):
    from django.utils import timezone

    from importer.models import NotificationChannel

    page = browser_page
    page.set_viewport_size({**LAPTOP, "width": 1280})
    now = timezone.now()
    sources = [
        make_source(name=f"inventory-of-the-datacentre-in-frankfurt-rack-row-{row}")
        for row in "abc"
    ]
    NotificationChannel.objects.create(
        name="IT on call (weekdays and weekends)",
        kind="email",
        recipients="it-on-call@example.com, cmdb-owners@example.com, service-desk@example.com",
        notify_on_done=True,
        last_success_at=now,
    )
    failing = NotificationChannel.objects.create(
        name="Infrastructure team's Teams channel",
        kind="webhook",
        webhook_url="https://prod-42.westeurope.logic.azure.com/workflows/0123456789abcdef/x",
        webhook_format="teams",
        last_success_at=now - timezone.timedelta(days=2),
        last_error_at=now,
        last_error="answered 400: the flow's trigger refused the card "
        + "with a long explanation " * 8,
    )
    failing.sources.set(sources)
    NotificationChannel.objects.create(
        name="slack",
        kind="webhook",
        webhook_url="https://hooks.slack.com/services/T0/B0/x",
        webhook_format="slack",
        enabled=False,
        all_sources=True,
    )
    log_in(page, live_server, administrator)

    page.goto(f"{live_server.url}/admin/importer/notificationchannel/")

    expect(page.locator("#nav-sidebar")).to_be_visible()
    shoot(page, "20-list-channels-1280px")
    table = page.locator("#result_list").bounding_box()
    assert table["x"] + table["width"] <= 1280, table
    reach = overflow(page, "#result_list")
    assert reach["page"] <= 0 and reach["table"] <= 0, reach


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", ["/admin/importer/execution/", "/admin/importer/importsource/"])
def test_a_list_on_a_narrow_screen_has_its_filters_below_it(
    browser_page, live_server, administrator, make_source, url
):
    page = browser_page
    page.set_viewport_size({"width": 800, "height": 900})
    Execution.objects.create(source=make_source(), state="DONE")
    log_in(page, live_server, administrator)

    page.goto(live_server.url + url)

    shoot(page, "19-list-800px" + url.replace("/", "-").rstrip("-"))
    table = page.locator("#result_list").bounding_box()
    filters = page.locator("#changelist-filter").bounding_box()
    assert filters["y"] >= table["y"] + table["height"], "the filters squeeze the list"
    assert table["width"] >= 400


@pytest.mark.django_db(transaction=True)
def test_an_execution_page_shows_its_whole_progress_line_on_a_narrow_screen(
    browser_page, live_server, administrator, make_source
):
    from django.utils import timezone

    page = browser_page
    page.set_viewport_size({"width": 800, "height": 900})
    execution = Execution.objects.create(
        source=make_source(),
        state="INGESTING",
        started_at=timezone.now(),
        records_submitted=123456,
        records_total=300000,
    )
    log_in(page, live_server, administrator)
    open_execution(page, live_server, execution)

    row = page.locator(".field-progress_detail")
    label = row.locator(".import-progress-label")
    expect(label).to_contain_text("123456 of 300000 records")
    shoot(page, "18-execution-800px")
    inside = page.evaluate(
        """() => {
          const row = document.querySelector(".field-progress_detail").getBoundingClientRect();
          const parts = [".import-progress", ".import-progress-label"].map(
            (selector) => document.querySelector(".field-progress_detail " + selector)
          );
          return parts.every((part) => part.getBoundingClientRect().right <= row.right + 0.5);
        }"""
    )
    assert inside, "the bar or its figures go past the row, which hides them"


@pytest.mark.django_db(transaction=True)
def test_a_viewer_reads_the_dashboard(browser_page, live_server, administrator, make_source):
    from datetime import timedelta

    from django.utils import timezone

    page = browser_page
    source = make_source()
    now = timezone.now()
    # Imported once, before the charts' 30 days: it counts in none of them.
    quiet = make_source(name="quiet-source")
    long_ago = now - timedelta(days=40)
    done = Execution.objects.create(source=quiet, state="DONE", finished_at=long_ago)
    Execution.objects.filter(pk=done.pk).update(created_at=long_ago)
    make_source(name="switched-off", enabled=False)
    for days_ago, outcomes in [(9, "DDDD"), (4, "DFFF"), (1, "DDC"), (0, "DDDFF")]:
        for number, outcome in enumerate(outcomes):
            state = {"D": "DONE", "F": "FAILED", "C": "CANCELLED"}[outcome]
            # A second apart, in the order listed: the last two of today fail in a row.
            ended = now - timedelta(days=days_ago, seconds=len(outcomes) - number)
            execution = Execution.objects.create(
                source=source,
                state=state,
                started_at=ended - timedelta(seconds=90 + 20 * number),
                finished_at=ended,
                records_submitted=300 if state == "DONE" else 40 * number,
                error="source answered 503" if state == "FAILED" else "",
            )
            Execution.objects.filter(pk=execution.pk).update(created_at=execution.started_at)
    log_in(page, live_server, administrator)

    page.goto(f"{live_server.url}/admin/importer/execution/")
    page.get_by_role("link", name="Dashboard").click()

    imports = page.get_by_role("img", name="Imports per day, by outcome")
    expect(imports).to_be_visible()
    expect(imports.locator("text.axis-label")).to_have_text(["day (last 30 days)", "imports"])
    # Days are the viewer's own: the browser's zone, not the site's.
    today = now.astimezone(ZoneInfo(BROWSER_TIME_ZONE)).strftime("%d %b")
    expect(imports.locator("rect title")).to_contain_text(
        [f"{today}: 3 done", f"{today}: 2 failed or refused"]
    )
    legend = page.locator("ul.chart-legend").first
    expect(legend).to_have_text(re.compile(r"done\s*failed or refused\s*cancelled"))
    # Above the charts, each source's condition in words, worst first; its link leads on.
    sources = page.get_by_role("region", name="Sources now").get_by_role("table")
    expect(sources.get_by_role("columnheader")).to_have_text(
        ["Source", "Condition", "Last success", "Latest import", "Error of the latest failure"]
    )
    # Its header, three sources, and the heading of the disabled ones.
    expect(sources.get_by_role("row")).to_have_count(5)
    rows = sources.locator("tr.source-status")
    expect(rows.locator(".status-badge")).to_have_text(["failing", "OK", "disabled"])
    expect(rows.nth(0)).to_contain_text("(2 in a row)")
    expect(rows.nth(0).get_by_role("cell").last).to_have_text("source answered 503")
    expect(rows.nth(1).get_by_role("rowheader")).to_have_text("quiet-source")
    # 10 of the 15 runs that ended (the cancelled one is nobody's failure)
    expect(page.locator("#success-rate")).to_have_text("66.7 %")
    shoot(page, "18-dashboard")


# --- production: collectstatic, DEBUG off, gunicorn ----------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def production_server(tmp_path, transactional_db, settings):
    """The README's production steps: collectstatic, then gunicorn with DEBUG off."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": _database_url_of_test_database(),
        "STATIC_ROOT": str(tmp_path / "static"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "gunicorn.log", "a") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "assets_sync.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/admin/login/", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(answers, timeout=30, message="gunicorn did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_production_serves_a_styled_admin_and_a_live_execution_page_with_debug_off(
    browser_page, production_server, administrator, make_source
):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    page = browser_page
    # The production settings do not know the tests' fast hasher.
    administrator.password = PBKDF2PasswordHasher().encode(PASSWORD, "productionsalt")
    administrator.save(update_fields=["password"])
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    static = []
    page.on("response", lambda r: static.append(r) if "/static/" in r.url else None)

    class Server:
        url = production_server

    log_in(page, Server, administrator)
    with page.expect_request(re.compile(rf"/execution/{execution.pk}/live/")):
        page.goto(f"{production_server}/admin/importer/execution/{execution.pk}/change/")
    expect(page.locator(".import-progress-label")).to_contain_text("total not known yet")
    shoot(page, "20-production-execution-page")

    names = [response.url.rsplit("/", 1)[-1] for response in static]
    assert all(response.status == 200 for response in static), [
        (response.url, response.status) for response in static
    ]
    assert any(re.fullmatch(r"base\.[0-9a-f]{12}\.css", name) for name in names), names
    assert any(re.fullmatch(r"progress\.[0-9a-f]{12}\.js", name) for name in names), names
    progress_js = next(r for r in static if "progress." in r.url)
    assert "max-age=315360000" in progress_js.headers["cache-control"]
    # The admin's own style sheet applies: the header is a coloured bar, not plain text.
    expect(page.locator("#header")).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")


@pytest.mark.django_db(transaction=True)
def test_a_channel_form_shows_only_what_its_kind_uses(browser_page, live_server, administrator):
    page = browser_page
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/notificationchannel/add/")

    page.get_by_label("Kind").select_option("email")
    email = visible_rows(page, "#notificationchannel_form")
    page.get_by_label("Kind").select_option("webhook")
    webhook = visible_rows(page, "#notificationchannel_form")

    assert "recipients" in email and "webhook_url" not in email
    assert "webhook_url" in webhook and "secret_header_value" in webhook
    assert "recipients" not in webhook
    expect(page.locator("fieldset:has(h2:text-is('Webhook'))")).to_be_visible()
    expect(page.locator("fieldset:has(h2:text-is('E-mail'))")).to_be_hidden()


@pytest.mark.django_db(transaction=True)
def test_an_import_that_failed_with_no_known_total_is_not_drawn_as_a_cancelled_one(
    browser_page, live_server, administrator, make_source
):
    from django.utils import timezone

    page = browser_page
    source = make_source()
    now = timezone.now()
    for state in ("FAILED", "CANCELLED"):
        Execution.objects.create(
            source=source, state=state, started_at=now, finished_at=now, records_submitted=120
        )
    log_in(page, live_server, administrator)
    page.goto(f"{live_server.url}/admin/importer/execution/")

    def bar_of(state: str) -> str:
        bar = page.locator(f'.import-progress[data-state="{state}"] .import-progress-bar')
        return bar.evaluate("bar => getComputedStyle(bar).backgroundImage")

    # How much arrived is not known: stripes, not a fill, in the colour of how it ended.
    failed, cancelled = bar_of("FAILED"), bar_of("CANCELLED")
    assert "186, 33, 33" in failed
    assert "186, 33, 33" not in cancelled and "158, 158, 158" in cancelled
