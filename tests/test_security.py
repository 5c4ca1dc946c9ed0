"""Secrets at rest, roles, the audit log, the webtrigger's limits and deployment checks."""

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from importer import fields, services
from importer.config_file import source_to_config
from importer.forms import ImportSourceForm
from importer.models import Alert, Execution, ImportSource, NotificationChannel, Schedule
from importer.redaction import redact_for, username_holds_a_key
from tests.conftest import SANDBOX_TOKEN
from tests.test_admin import source_form_data

ROOT = Path(__file__).resolve().parent.parent


def stored_value(row, column: str) -> str:
    """What the database holds in `column` of the row of a source (or a schedule)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {row._meta.db_table} WHERE id = %s", [row.pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_tokens_are_encrypted_in_the_database(make_source):
    source = make_source(source_auth="bearer", source_token="source-secret-1")

    assert SANDBOX_TOKEN not in stored_value(source, "assets_token")
    assert "source-secret-1" not in stored_value(source, "source_token")
    assert ImportSource.objects.get(pk=source.pk).source_token == "source-secret-1"


@pytest.mark.django_db
def test_the_webtrigger_url_a_schedule_keeps_is_encrypted_in_the_database(make_source):
    source = make_source()
    url = services.webtrigger_url(source)
    schedule = Schedule.objects.create(
        source=source,
        frequency="DAILY",
        start_time=timezone.now(),
        timezone="UTC",
        callback_url=url,
    )

    assert source.webtrigger_token not in stored_value(schedule, "callback_url")
    assert Schedule.objects.get(pk=schedule.pk).callback_url == url


@pytest.mark.django_db
def test_settings_that_may_hold_credentials_are_encrypted_in_the_database(make_source, inventory):
    # A database dump or backup must not hand out a source's credentials, wherever the
    # source keeps them.
    url = inventory.base_url.replace("http://", "http://reader:url-pass-1@") + "/api/computers"
    settings_with_secrets = {
        "source_url": url,
        "oauth_token_url": "https://client:oauth-pass-2@login.example.com/token",
        "extra_headers": {"X-Api-Key": "header-key-3"},
        "extra_params": {"api_key": "param-key-4"},
        "plugin_options": {"password": "plugin-pass-5"},
    }
    source = make_source(**settings_with_secrets)

    stored = " ".join(str(stored_value(source, column)) for column in settings_with_secrets)
    for secret in ("url-pass-1", "oauth-pass-2", "header-key-3", "param-key-4", "plugin-pass-5"):
        assert secret not in stored
    reread = ImportSource.objects.get(pk=source.pk)
    assert {name: getattr(reread, name) for name in settings_with_secrets} == (
        settings_with_secrets
    )
    # ... and the import still reads its records with them.
    assert services.preview_import(source=reread).records_fetched > 0


@pytest.mark.django_db
def test_rotating_keys_reencrypts_every_secret(make_source, settings):
    source = make_source()
    channel = NotificationChannel.objects.create(
        name="chat", kind="webhook", webhook_url="https://hooks.example.com/T0/secret-path"
    )
    before = stored_value(source, "assets_token")
    settings.FIELD_ENCRYPTION_KEYS = ["a-brand-new-key", *settings.FIELD_ENCRYPTION_KEYS]

    call_command("rotate_encryption_keys", stdout=open(os.devnull, "w"))

    settings.FIELD_ENCRYPTION_KEYS = ["a-brand-new-key"]  # the old key is gone now
    assert stored_value(source, "assets_token") != before
    assert ImportSource.objects.get(pk=source.pk).assets_token == SANDBOX_TOKEN
    for column in ("assets_token", "source_url", "extra_headers", "webtrigger_token"):
        assert not fields.needs_rotation(stored_value(source, column))
    # The alert channels' secrets too: their webhooks still work without the old key.
    assert NotificationChannel.objects.get(pk=channel.pk).webhook_url.endswith("/secret-path")


@pytest.mark.django_db
def test_rotating_without_the_key_that_decrypts_stops_with_a_clear_error(make_source, settings):
    from django.core.management import CommandError

    source = make_source()
    before = stored_value(source, "assets_token")
    settings.FIELD_ENCRYPTION_KEYS = ["a-brand-new-key"]  # the old key left out too early

    with pytest.raises(CommandError, match="Nothing was re-encrypted: A stored secret cannot"):
        call_command("rotate_encryption_keys", stdout=open(os.devnull, "w"))

    assert stored_value(source, "assets_token") == before


@pytest.mark.django_db
def test_exporting_without_the_key_that_decrypts_stops_with_a_clear_error(make_source, settings):
    from django.core.management import CommandError

    make_source()
    settings.FIELD_ENCRYPTION_KEYS = ["a-brand-new-key"]

    with pytest.raises(CommandError, match="Nothing was written: A stored secret cannot"):
        call_command("export_sources", stdout=open(os.devnull, "w"))


@pytest.mark.django_db
def test_the_three_roles_exist_with_their_permissions():
    viewer = Group.objects.get(name="Import viewers")
    operator = Group.objects.get(name="Import operators")
    administrator = Group.objects.get(name="Import administrators")

    def codenames(group):
        return set(group.permissions.values_list("codename", flat=True))

    assert codenames(viewer) == {"view_execution", "view_chunkjob", "view_alert", "view_delivery"}
    assert {"start_import", "cancel_execution", "retry_chunks"} <= codenames(operator)
    assert "change_importsource" not in codenames(operator)
    assert "change_notificationchannel" not in codenames(operator)
    assert {
        "change_importsource",
        "change_schedule",
        "change_notificationchannel",
        "view_logentry",
    } <= codenames(administrator)


def user_in(django_user_model, group_name: str, username: str):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.mark.django_db
def test_a_viewer_sees_history_but_cannot_start_or_edit(client, django_user_model, make_source):
    source = make_source()
    client.force_login(user_in(django_user_model, "Import viewers", "vera"))

    history = client.get(reverse("admin:importer_execution_changelist"))
    sources = client.get(reverse("admin:importer_importsource_changelist"))
    start = client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "start_import", "_selected_action": [source.pk]},
    )

    assert history.status_code == 200
    assert sources.status_code == 403
    assert start.status_code == 403
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_a_viewer_reads_an_imports_source_by_name_not_as_a_link_to_a_page_refused_to_them(
    client, django_user_model, make_source
):
    execution = Execution.objects.create(source=make_source(), state=Execution.State.DONE)
    source_page = reverse("admin:importer_importsource_change", args=[execution.source_id])
    client.force_login(user_in(django_user_model, "Import viewers", "vera"))

    page = client.get(reverse("admin:importer_execution_change", args=[execution.pk]))

    alert = Alert.objects.create(
        key="k", kind=Alert.Kind.FAILED, source=execution.source, execution=execution, subject="s"
    )
    alert_page = client.get(reverse("admin:importer_alert_change", args=[alert.pk]))

    for shown in (page, alert_page):
        assert shown.status_code == 200
        assert "inventory" in shown.content.decode()
        assert source_page not in shown.content.decode()
    assert client.get(source_page).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("group", ["Import viewers", "Import operators"])
def test_an_alert_names_its_channel_without_a_link_to_a_page_refused_to_them(
    client, django_user_model, group
):
    channel = NotificationChannel.objects.create(name="on-call chat")
    alert = Alert.objects.create(key="k", kind=Alert.Kind.FAILED, subject="s")
    alert.deliveries.create(channel=channel, state="SENT")
    channel_page = reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    client.force_login(user_in(django_user_model, group, "vera"))

    page = client.get(reverse("admin:importer_alert_change", args=[alert.pk]))

    assert page.status_code == 200
    assert "on-call chat" in page.content.decode()
    assert channel_page not in page.content.decode()
    assert client.get(channel_page).status_code == 403


@pytest.mark.django_db
def test_an_operator_can_start_but_not_edit_credentials(
    client, django_user_model, pushed_source, sandbox
):
    client.force_login(user_in(django_user_model, "Import operators", "otto"))

    page = client.get(reverse("admin:importer_importsource_changelist"))
    edit = client.post(
        reverse("admin:importer_importsource_change", args=[pushed_source.pk]),
        {"name": "renamed"},
    )

    actions = [choice[0] for choice in page.context["action_form"].fields["action"].choices]
    assert "start_import" in actions
    assert "push_mapping" not in actions
    assert edit.status_code == 403
    assert ImportSource.objects.get(pk=pushed_source.pk).name == pushed_source.name


@pytest.mark.django_db(transaction=True)
def test_starting_an_import_is_written_to_the_audit_log(admin_client, pushed_source, sandbox):
    admin_client.post(
        reverse("admin:importer_importsource_changelist"),
        {"action": "start_import", "_selected_action": [pushed_source.pk]},
    )

    entry = LogEntry.objects.get(object_id=str(pushed_source.pk))
    assert entry.user.username == "admin"
    assert "Started import" in entry.get_change_message()
    audit_page = admin_client.get(reverse("admin:admin_logentry_changelist"))
    assert "Started import" in audit_page.content.decode()


@pytest.mark.django_db
def test_the_webtrigger_is_throttled_per_client(client, make_source, settings):
    settings.WEBTRIGGER_RATE_PER_MINUTE = 3
    source = make_source()
    url = reverse("importer:webtrigger", args=[source.pk, "guess"])

    answers = [
        client.post(url, "{}", content_type="application/json", REMOTE_ADDR="10.9.9.9").status_code
        for _ in range(5)
    ]

    assert answers == [404, 404, 404, 429, 429]


@pytest.mark.django_db
def test_the_webtrigger_refuses_a_large_body(client, make_source):
    source = make_source()
    url = reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token])

    response = client.post(url, "x" * 100_000, content_type="application/json")

    assert response.status_code == 413


def test_the_documented_production_settings_pass_check_deploy():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assets_sync.settings",
        "DEBUG": "false",
        "SECRET_KEY": "p" * 20 + "r0duct10n-k3y-w1th-en0ugh-ch4rs-and-v4riety-XYZ",
        "ALLOWED_HOSTS": "assets-sync.example.com",
        "PUBLIC_BASE_URL": "https://assets-sync.example.com",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_COOKIES": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_PRELOAD": "true",
        "FIELD_ENCRYPTION_KEYS": "another-long-random-key",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


# --- who sees which secret -----------------------------------------------------------------

SOURCE_SECRETS = {
    "assets token": SANDBOX_TOKEN,
    "source secret": "source-secret-7431",
    "password in the URL": "url-pass-9912",
    "secret header": "header-secret-5521",
    "secret parameter": "param-secret-3318",
    "token in the URL query": "query-token-6604",
    # A vendor's second key, under a name of its own, and an Azure function's code.
    "vendor key header": "vendor-key-8870",
    "function code parameter": "function-code-4417",
    # Keys under names that say nothing, named secret by the operator (OpenWeather's appid).
    "declared key in the URL": "appid-7730",
    "declared key parameter": "tenant-key-5154",
}


@pytest.fixture
def secret_source(make_source):
    """A source holding a secret in every place one can be kept, and its schedule."""
    source = make_source(
        source_auth="api_key_header",
        auth_key_name="X-Api-Key",
        source_token=SOURCE_SECRETS["source secret"],
        source_url=(
            f"https://svc:{SOURCE_SECRETS['password in the URL']}@inventory.example/api"
            f"?access_token={SOURCE_SECRETS['token in the URL query']}&status=ok"
            f"&appid={SOURCE_SECRETS['declared key in the URL']}"
        ),
        secret_params="AppId, tenant",
        extra_headers={
            "X-Tenant-Token": SOURCE_SECRETS["secret header"],
            "DD-APPLICATION-KEY": SOURCE_SECRETS["vendor key header"],
            "Accept-Language": "en",
        },
        extra_params={
            "api_key": SOURCE_SECRETS["secret parameter"],
            "code": SOURCE_SECRETS["function code parameter"],
            "tenant": SOURCE_SECRETS["declared key parameter"],
            "status": "active",
        },
    )
    Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.DAILY,
        start_time=timezone.now() + timedelta(days=1),
        callback_url=services.webtrigger_url(source),
    )
    return source


def pages_of(client, source) -> dict[str, object]:
    return {
        "source": client.get(reverse("admin:importer_importsource_change", args=[source.pk])),
        "schedule": client.get(
            reverse("admin:importer_schedule_change", args=[source.schedule.pk])
        ),
    }


def secrets_shown(html: str) -> list[str]:
    return [what for what, secret in SOURCE_SECRETS.items() if secret in html]


@pytest.mark.django_db
def test_a_viewer_cannot_open_a_source_or_its_schedule(client, django_user_model, secret_source):
    client.force_login(user_in(django_user_model, "Import viewers", "vera"))

    pages = pages_of(client, secret_source)

    assert {name: page.status_code for name, page in pages.items()} == {
        "source": 403,
        "schedule": 403,
    }


@pytest.mark.django_db
def test_an_operator_sees_a_source_and_its_schedule_without_any_secret(
    client, django_user_model, secret_source
):
    client.force_login(user_in(django_user_model, "Import operators", "otto"))

    pages = pages_of(client, secret_source)

    for name, page in pages.items():
        html = page.content.decode()
        assert page.status_code == 200, name
        assert secrets_shown(html) == [], name
        assert secret_source.webtrigger_token not in html, name
    source_page = pages["source"].content.decode()
    assert "https://***@inventory.example/api" in source_page
    assert "Accept-Language" in source_page and "X-Tenant-Token" in source_page
    assert f"/webtrigger/{secret_source.pk}/***/" in source_page
    assert "Loaded as" not in source_page  # the edit stamp is the editors' alone


@pytest.mark.django_db
def test_an_administrator_sees_secrets_only_as_write_only_fields(
    client, django_user_model, secret_source
):
    client.force_login(user_in(django_user_model, "Import administrators", "ada"))

    pages = pages_of(client, secret_source)

    for name, page in pages.items():
        assert page.status_code == 200, name
        assert secrets_shown(page.content.decode()) == [], name
    form = pages["source"].context["adminform"].form
    assert form["source_url"].value() == (
        "https://***@inventory.example/api?access_token=***&status=ok&appid=***"
    )
    assert json.loads(form["extra_headers"].value()) == {
        "X-Tenant-Token": "***",
        "DD-APPLICATION-KEY": "***",
        "Accept-Language": "en",
    }
    assert json.loads(form["extra_params"].value()) == {
        "api_key": "***",
        "code": "***",
        "tenant": "***",
        "status": "active",
    }


@pytest.mark.django_db
def test_saving_a_source_with_masked_values_keeps_the_stored_secrets(
    client, django_user_model, secret_source
):
    client.force_login(user_in(django_user_model, "Import administrators", "ada"))
    data = source_form_data(secret_source, page_size=50)

    response = client.post(
        reverse("admin:importer_importsource_change", args=[secret_source.pk]), data
    )

    assert response.status_code == 302
    stored = ImportSource.objects.get(pk=secret_source.pk)
    assert stored.page_size == 50
    assert stored.source_url == secret_source.source_url
    assert stored.extra_headers == secret_source.extra_headers
    assert stored.extra_params == secret_source.extra_params
    assert stored.source_token == SOURCE_SECRETS["source secret"]


@pytest.mark.django_db
def test_an_export_without_secrets_holds_none_and_importing_it_back_keeps_them(
    secret_source, tmp_path
):
    out = io.StringIO()
    call_command("export_sources", stdout=out)
    exported = out.getvalue()
    document = json.loads(exported)
    for entry in document["sources"]:
        entry.pop("schedule")  # left as it is: Assets has no mapping of this source to sync
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(document))

    call_command("import_sources", str(path), "--no-push", stdout=io.StringIO())

    assert secrets_shown(exported) == []
    stored = ImportSource.objects.get(pk=secret_source.pk)
    assert (stored.source_url, stored.extra_params) == (
        secret_source.source_url,
        secret_source.extra_params,
    )


@pytest.mark.django_db
def test_saving_a_key_under_a_name_that_says_nothing_suggests_naming_it_secret(
    admin_client, make_source
):
    source = make_source()
    url = reverse("admin:importer_importsource_change", args=[source.pk])
    with_key = "https://inventory.example/api?appid=b6907d289e10d714a6e88b30761fae22&units=si"

    def saved(**fields) -> str:
        response = admin_client.post(url, source_form_data(source, **fields), follow=True)
        assert response.status_code == 200
        return " ".join(str(message) for message in response.context["messages"])

    suggested = saved(source_url=with_key)
    declared = saved(source_url=with_key, secret_params="appid")

    assert "the query parameter 'appid' holds what looks like a key" in suggested
    assert "under the source's secret parameters (Connection)" in suggested
    assert "looks like a key" not in declared
    assert ImportSource.objects.get(pk=source.pk).source_url == with_key


VENDOR_KEY = "b6907d289e10d714a6e88b30761fae22"


@pytest.mark.django_db
def test_an_operator_sees_no_key_under_a_name_that_says_nothing(
    client, django_user_model, make_source
):
    # Not named secret: an operator's page masks it by its look, filters stay readable.
    source = make_source(
        source_url=f"https://weather.example/data?appid={VENDOR_KEY}&units=metric",
        extra_params={"site_key_id": "Zx81Qa93Lm27Pw", "status": "active"},
    )
    client.force_login(user_in(django_user_model, "Import operators", "otto"))

    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))

    html = page.content.decode()
    assert VENDOR_KEY not in html and "Zx81Qa93Lm27Pw" not in html
    assert "appid=***&amp;units=metric" in html and "active" in html


@pytest.mark.django_db
def test_an_export_names_keys_under_names_that_say_nothing_until_declared(make_source):
    source = make_source(source_url=f"https://weather.example/data?appid={VENDOR_KEY}")

    def exported() -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        call_command("export_sources", stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    undeclared_out, undeclared_err = exported()
    source.secret_params = "appid"
    source.save()
    declared_out, declared_err = exported()

    assert VENDOR_KEY in undeclared_out  # a filter may look like a key: only said
    assert "'appid' holds what looks like a key" in undeclared_err
    assert VENDOR_KEY not in declared_out and "appid=***" in declared_out
    assert declared_err == ""


@pytest.mark.django_db
def test_a_file_naming_a_key_secret_the_stored_source_did_not_keeps_the_stored_key(
    make_source, tmp_path
):
    # The file comes from an installation where `appid` is named secret: its URL holds ***.
    source = make_source(source_url=f"https://weather.example/data?appid={VENDOR_KEY}&q=Berlin")
    out = io.StringIO()
    call_command("export_sources", stdout=out, stderr=io.StringIO())
    document = json.loads(out.getvalue())
    [entry] = document["sources"]
    entry.pop("schedule", None)
    entry["source"]["url"] = "https://weather.example/data?appid=***&q=Berlin"
    entry["source"]["secret_params"] = "appid"
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(document))

    call_command("import_sources", str(path), "--no-push", stdout=io.StringIO())

    stored = ImportSource.objects.get(pk=source.pk)
    assert stored.source_url == f"https://weather.example/data?appid={VENDOR_KEY}&q=Berlin"
    assert stored.secret_params == "appid"


@pytest.mark.django_db
def test_a_masked_value_without_a_stored_secret_is_refused(make_source):
    form = ImportSourceForm(
        data=source_form_data(make_source(), extra_headers='{"X-Api-Key": "***"}')
    )

    assert not form.is_valid()
    assert "X-Api-Key: '***' stands for a stored secret" in form.errors["extra_headers"][0]


# --- hostile requests get clean answers ----------------------------------------------------


def webtrigger_url(source) -> str:
    return reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token])


def trigger_body(source) -> str:
    return json.dumps(
        {"workspaceId": source.workspace_id, "importsourceId": source.import_source_id}
    )


@pytest.mark.django_db
def test_a_content_length_that_is_not_a_number_gets_a_400(client, make_source):
    source = make_source()

    response = client.post(
        webtrigger_url(source), "{}", content_type="application/json", CONTENT_LENGTH="abc"
    )

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Content-Length must be a number"}


@pytest.mark.django_db
def test_a_deeply_nested_body_gets_a_400_in_json(client, make_source):
    source = make_source()

    response = client.post(
        webtrigger_url(source), "[" * 2000 + "]" * 2000, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["success"] is False


@pytest.mark.django_db
def test_a_trigger_for_a_disabled_source_is_kept_as_refused(client, make_source):
    source = make_source(enabled=False)

    response = client.post(
        webtrigger_url(source), trigger_body(source), content_type="application/json"
    )

    refused = Execution.objects.get(source=source)
    assert response.status_code == 500
    assert "disabled" in response.json()["error"]
    assert (refused.state, refused.trigger) == (Execution.State.REFUSED, Execution.Trigger.SCHEDULE)
    assert "disabled" in refused.error


@pytest.mark.django_db
def test_progress_needs_the_permission_to_view_executions(client, django_user_model, make_source):
    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    url = reverse("importer:progress", args=[execution.pk])
    client.force_login(django_user_model.objects.create_user("sam", password="pw", is_staff=True))
    refused = client.get(url)
    client.force_login(user_in(django_user_model, "Import viewers", "vera"))
    allowed = client.get(url)

    assert refused.status_code == 403
    assert "state" not in refused.json()
    assert allowed.status_code == 200
    assert allowed.json()["state"] == "INGESTING"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "proxies, forwarded",
    [
        (1, "{forged}, 203.0.113.7"),  # nginx appends the address it was called from
        (2, "{forged}, 203.0.113.8, 10.0.0.2"),  # a load balancer, then nginx
    ],
)
def test_the_rate_limit_counts_the_address_the_trusted_proxies_saw(
    client, make_source, settings, proxies, forwarded
):
    settings.WEBTRIGGER_RATE_PER_MINUTE = 2
    settings.TRUSTED_PROXY_COUNT = proxies
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    url = reverse("importer:webtrigger", args=[make_source().pk, "guess"])

    answers = [
        client.post(
            url,
            "{}",
            content_type="application/json",
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded.format(forged=f"198.51.100.{n}"),
        ).status_code
        for n in range(4)
    ]

    assert answers == [404, 404, 429, 429]  # a new forged address each time does not help


@pytest.mark.django_db
def test_the_rate_limit_gives_no_second_allowance_across_a_minutes_boundary(
    client, make_source, settings, monkeypatch
):
    settings.WEBTRIGGER_RATE_PER_MINUTE = 2
    url = reverse("importer:webtrigger", args=[make_source().pk, "guess"])
    a_minute_ends = 1_700_000_000 // 60 * 60 + 60  # far from the real clock: keys of their own
    clock = SimpleNamespace(time=lambda: a_minute_ends - 0.5)
    monkeypatch.setattr("importer.views.time", clock)

    def answer_at(seconds_after_the_boundary):
        clock.time = lambda: a_minute_ends + seconds_after_the_boundary
        return client.post(
            url, "{}", content_type="application/json", REMOTE_ADDR="192.0.2.60"
        ).status_code

    burst = [answer_at(-0.5), answer_at(-0.2), answer_at(0.1), answer_at(0.4)]
    half_a_minute_on = answer_at(30)  # the calls of the minute before still weigh half
    after_a_quiet_minute = answer_at(125)

    assert burst == [404, 404, 429, 429]
    assert half_a_minute_on == 429
    assert after_a_quiet_minute == 404


class UnreachableBroker:
    def ping(self):
        raise ConnectionError(
            'could not connect to "queue.internal" (10.1.2.3) as user "assets_sync": refused'
        )


@pytest.mark.django_db
def test_anonymous_health_checks_show_no_raw_error_text(client, settings, monkeypatch):
    settings.HEALTH_TOKEN = "monitoring-token"
    monkeypatch.setattr("importer.health.get_broker", UnreachableBroker)

    anonymous = client.get(reverse("importer:health"))
    trusted = client.get(reverse("importer:health"), HTTP_X_HEALTH_TOKEN="monitoring-token")

    assert anonymous.status_code == trusted.status_code == 503
    assert anonymous.json()["checks"]["broker"]["ok"] is False
    assert "queue.internal" not in anonymous.content.decode()
    assert "queue.internal" in trusted.json()["checks"]["broker"]["error"]


@pytest.mark.django_db
def test_a_staff_login_allowed_nothing_sees_health_as_anonymous_callers_do(
    client, django_user_model, make_source, monkeypatch
):
    monkeypatch.setattr("importer.health.get_broker", UnreachableBroker)
    make_source(name="payroll-hr")
    nobody = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    viewer = django_user_model.objects.create_user("vic", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Import viewers"))

    client.force_login(nobody)
    allowed_nothing = client.get(reverse("importer:health")).content.decode()
    client.force_login(viewer)
    allowed_history = client.get(reverse("importer:health")).content.decode()

    assert "payroll-hr" not in allowed_nothing and "queue.internal" not in allowed_nothing
    assert "payroll-hr" in allowed_history and "queue.internal" in allowed_history


@pytest.mark.django_db(transaction=True)
def test_upgrading_encrypts_the_settings_stored_before_and_a_downgrade_restores_them():
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("importer", "0008_took_seconds")], [("importer", "0009_encrypted_settings")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    OldSource = executor.loader.project_state(before).apps.get_model("importer", "ImportSource")
    old = OldSource.objects.create(
        name="stored-before",
        workspace_id="ws",
        import_source_id="src",
        assets_token="token-1",
        source_url="https://reader:url-pass-1@inventory.example.com/api",
        extra_headers={"X-Api-Key": "header-key-3"},
    )

    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        NewSource = executor.loader.project_state(after).apps.get_model("importer", "ImportSource")
        source = NewSource.objects.get(pk=old.pk)
        assert source.source_url == "https://reader:url-pass-1@inventory.example.com/api"
        assert source.extra_headers == {"X-Api-Key": "header-key-3"}
        assert "url-pass-1" not in stored_value(source, "source_url")
        assert "header-key-3" not in stored_value(source, "extra_headers")

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        restored = OldSource.objects.get(pk=old.pk)
        assert restored.source_url == "https://reader:url-pass-1@inventory.example.com/api"
        assert restored.extra_headers == {"X-Api-Key": "header-key-3"}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_the_webtrigger_limit_leaves_other_sources_scheduled_at_the_same_minute_alone(
    client, make_source, settings
):
    settings.WEBTRIGGER_RATE_PER_MINUTE = 1
    first, second = make_source(), make_source(name="second", import_source_id="src-2")

    def call(source):
        url = reverse("importer:webtrigger", args=[source.pk, "guess"])
        answer = client.post(url, "{}", content_type="application/json", REMOTE_ADDR="10.7.7.7")
        return answer.status_code

    assert [call(first), call(second), call(first)] == [404, 404, 429]


def test_every_secret_setting_has_a_masked_stand_in_for_viewers():
    from importer.admin.display import MASKED_FOR_VIEWERS
    from importer.admin.sources import ImportSourceAdmin

    named = (
        *ImportSource.SECRET_FIELDS,
        *ImportSource.MASKED_URL_FIELDS,
        *ImportSource.MASKED_JSON_FIELDS,
    )

    assert all(callable(getattr(ImportSourceAdmin, MASKED_FOR_VIEWERS[name])) for name in named)


@pytest.mark.django_db
def test_a_worker_with_other_encryption_keys_says_on_the_page_why_it_left_it(make_source, settings):
    # One cluster started with another FIELD_ENCRYPTION_KEYS: it cannot read the source, and
    # the page waits for another worker, its row saying why.
    from django.core.exceptions import ImproperlyConfigured

    from importer import tasks
    from importer.models import ChunkJob, Execution

    execution = Execution.objects.create(source=make_source(), state=Execution.State.INGESTING)
    chunk = ChunkJob.objects.create(execution=execution, index=0)
    settings.FIELD_ENCRYPTION_KEYS = ["a-key-the-others-do-not-have"]

    with pytest.raises(ImproperlyConfigured):
        tasks.run_chunk(chunk.pk)

    chunk.refresh_from_db()
    assert chunk.state == ChunkJob.State.QUEUED
    assert "could not take this page: A stored secret cannot be decrypted" in chunk.error


FRESHSERVICE_KEY = "Qm9vS2V5Zm9yRnJlc2hzZXJ2aWNlMjAyNg"


@pytest.mark.django_db
def test_an_api_key_given_as_the_basic_user_name_is_kept_like_a_secret(
    client, admin_client, django_user_model, make_source, tmp_path
):
    # Freshservice, BambooHR and Stripe take the key as the user name, the password "X".
    source = make_source(
        source_auth="basic", auth_username=FRESHSERVICE_KEY, source_token="X", name="fresh"
    )
    plain = make_source(
        source_auth="basic",
        auth_username="svc-cmdb",
        source_token="pw-42-long",
        name="plain",
        import_source_id="import-source-2",
    )
    client.force_login(user_in(django_user_model, "Import operators", "otto"))
    page = client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    plain_page = client.get(reverse("admin:importer_importsource_change", args=[plain.pk]))
    out = io.StringIO()
    call_command("export_sources", stdout=out)
    admin_form = admin_client.get(reverse("admin:importer_importsource_change", args=[source.pk]))
    path = tmp_path / "sources.json"
    document = json.loads(out.getvalue())
    path.write_text(json.dumps(document))
    call_command("import_sources", str(path), "--no-push", stdout=io.StringIO())
    saved = admin_client.post(
        reverse("admin:importer_importsource_change", args=[source.pk]),
        source_form_data(source),
        follow=True,
    )

    assert FRESHSERVICE_KEY not in page.content.decode()
    assert "svc-cmdb" in plain_page.content.decode()  # a user name that is only a name
    assert FRESHSERVICE_KEY not in out.getvalue()
    assert FRESHSERVICE_KEY not in admin_form.content.decode()
    assert saved.status_code == 200 and not saved.context.get("errors")
    assert ImportSource.objects.get(pk=source.pk).auth_username == FRESHSERVICE_KEY
    assert redact_for(source, f"401 for {FRESHSERVICE_KEY}") == "401 for ***"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth, username, password, secret",
    [
        ("basic", FRESHSERVICE_KEY, "X", True),  # Freshservice, BambooHR: a placeholder
        ("basic", "jane.doe@example.com", "api-token-0a9b8c7d6e", False),  # Jira, Zendesk
        ("basic", "integration.user", "Pa55-w0rd-long", False),  # ServiceNow
        ("basic", "admin2024", "Pa55-w0rd-long", False),
        ("basic", "4f6c2b9e0d1a7c3e5b8f2a6d9c0e1b7a4f3d2c1b", "Pa55-w0rd-long", True),
        ("bearer", FRESHSERVICE_KEY, "a-bearer-token-1234", True),  # left behind by Basic
        ("oauth2_client_credentials", "client-1", "a-client-secret-99", False),
    ],
)
def test_a_user_name_is_kept_secret_when_it_is_a_key_not_when_it_is_a_name(
    make_source, auth, username, password, secret
):
    source = make_source(source_auth=auth, auth_username=username, source_token=password)

    assert username_holds_a_key(source) is secret
    assert (source_to_config(source)["source"]["auth"]["username"] == "***") is secret
