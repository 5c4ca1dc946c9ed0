"""Secrets never leave the app: messages, import history, logs and exports."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.urls import reverse

from importer import services
from importer.logs import JsonFormatter
from importer.models import Execution, ImportSource
from importer.redaction import is_secret_name, mask_secret_values, redact, redact_for
from importer.redaction.masks import secret_values
from importer.sources import SourceError, build_source
from tests.fake_source import FakeSource

PASSWORD = "pa55-w0rd-7713"
HEADER_SECRET = "tenant-s3cret-4242"
BASIC = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()


# --- the forms secrets take ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"Authorization: Basic {BASIC}", BASIC),
        (f'{{"headers": {{"Authorization": "Basic {BASIC}"}}}}', BASIC),
        (f"{{'authorization': 'Basic {BASIC}'}}", BASIC),
        (f"got basic {BASIC[:10]}", BASIC[:10]),  # cut off mid-way, still credentials
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        (f"X-Api-Key: {HEADER_SECRET}", HEADER_SECRET),
        (f"answered 401: X-Api-Key: {HEADER_SECRET} is not valid", HEADER_SECRET),
        (f'{{"X-Tenant-Token": "{HEADER_SECRET}"}}', HEADER_SECRET),
        (f'"{{\\"x-api-key\\": \\"{HEADER_SECRET}\\"}}"', HEADER_SECRET),  # JSON in JSON
        (f"GET /api?limit=5&api_key={HEADER_SECRET}", HEADER_SECRET),
        (f"grant_type=client_credentials&client_secret={PASSWORD}", PASSWORD),
        (f"at https://svc:{PASSWORD}@inventory.example/api", PASSWORD),
        ("at https://ghp-token-only@git.example/repo", "ghp-token-only"),
        ("Bad Request: /webtrigger/7/AbCd-123_xyzXYZ/", "AbCd-123_xyzXYZ"),
        ("Not Found: /webtrigger/7/ AbCd-123_xyzXYZ/", "AbCd-123_xyzXYZ"),  # a space before it
        ('"POST /webtrigger/7/%20AbCd-123_xyzXYZ/ HTTP/1.1" 404', "AbCd-123_xyzXYZ"),
        # Django decodes a path before routing it: the request line may spell it escaped.
        ('"POST /%77ebtrigger/%32/AbCd-123_xyzXYZ/ HTTP/1.1" 400', "AbCd-123_xyzXYZ"),
        ("535 5.7.8 Authentication failed: AUTH PLAIN AHN2YwBwYTU1LXcwcmQtNzcxMw==", "AHN2YwBw"),
        # A credential-named name written bare, its value quoted: a GraphQL argument, a
        # keyword argument or setting as a server's error quotes it, also in a JSON string.
        ('Syntax Error: { assets(apiKey: "gql-k3y-5521") { id }', "gql-k3y-5521"),
        (f'{{"error": "bad query {{ assets(apiKey: \\"{HEADER_SECRET}\\") }}"}}', HEADER_SECRET),
        (f"TypeError: connect() got password='{PASSWORD}'", PASSWORD),
        (f'client_secret = "{PASSWORD}" is not valid', PASSWORD),
        (f'X-Api-Key: "{HEADER_SECRET}" refused', HEADER_SECRET),
        ('denied: token: "cut-short-k3y', "cut-short-k3y"),  # an excerpt that ends in it
    ],
)
def test_it_removes_every_form_a_credential_takes(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_a_webtrigger_request_line_without_a_token_is_logged_as_it_was():
    assert redact('"GET /webtrigger/2/ HTTP/1.1" 404') == '"GET /webtrigger/2/ HTTP/1.1" 404'


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("denied for b64=c3ZjOnBhNTUtdzByZC03NzEz", id="base64 of user:password"),
        pytest.param("denied for token=query-token-6604", id="a token in the URL's query"),
        pytest.param("denied: got query-token-6604", id="that token, bare"),
    ],
)
def test_the_credentials_written_in_a_source_url_are_hidden_in_every_form(text: str) -> None:
    source = ImportSource(
        source_url=f"https://svc:{PASSWORD}@inventory.example/api?access_token=query-token-6604"
    )
    assert "c3ZjOnBhNTUtdzByZC03NzEz" == base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    assert "***" in redact_for(source, text)
    assert "query-token-6604" not in redact_for(source, text)
    assert "c3ZjOnBhNTUtdzByZC03NzEz" not in redact_for(source, text)


@pytest.mark.parametrize(
    "echo",
    [
        "Unknown key sk_live_4f9a2b7c1dE9/q...",  # cut short, as many servers quote keys
        "Unknown key sk_live_4f9a2b7c…",
        "Unknown key sk_live_4f9a2b7c1dE9%2FqXyZ (URL-encoded, whole)",
    ],
)
def test_a_key_a_server_quotes_cut_short_is_hidden_too(echo: str) -> None:
    source = ImportSource(source_auth="api_key_header", source_token="sk_live_4f9a2b7c1dE9/qXyZ")

    said = redact_for(source, echo)

    assert said.startswith("Unknown key ***")
    assert "4f9a2b7c" not in said


def test_secrets_that_are_urls_or_read_as_words_are_not_looked_for_cut_short() -> None:
    from importer.notifications.senders import _webhook_secrets

    known = [
        *_webhook_secrets("https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnop1234"),
        "administrator-pw",
    ]
    text = "fetching https://api.example.com/items; GET /services/catalog; administration"

    assert redact(text, known) == text


@pytest.mark.parametrize(
    "text",
    [
        "could not get an access token: the OAuth2 token endpoint answered 401",
        "the source uses basic authentication",
        "source 'laptops' answered 404 Not Found at https://inventory.example/api",
        '{"author": "Jane", "records": 5}',
        'author: "Jane Doe", site: "Berlin"',
    ],
)
def test_it_leaves_ordinary_words_alone(text: str) -> None:
    assert redact(text) == text


# --- which names carry a credential --------------------------------------------------------

# Names that carry a credential, wherever they are written: a header, a query parameter, a
# key of a request body, an argument of a GraphQL query, a message quoting one of these.
CREDENTIAL_NAMES = [
    *("authorization", "Proxy-Authorization", "auth", "auth_token", "authToken", "authKey"),
    *("x-auth-token", "X-Auth-Token", "oauth_token", "basicAuth", "authData", "unauthorized"),
    *("session", "sessionid", "session_id", "sessionId", "JSESSIONID", "sessionToken"),
    *("session-key", "sessionData", "sessionName", "apiKey", "api_key", "X-API-Key", "apiKeys"),
    *("token", "tokens", "access_token", "refresh_token", "tokenization_key", "tokenizedCard"),
    *("secret", "client_secret", "secretName", "password", "passwd", "pwd", "passphrase"),
    *("private_key", "access_key", "signature", "X-Hub-Signature-256", "cookie", "Set-Cookie"),
    *("credentials", "key", "x-key", "sort_key", "code", "jwt"),
    # One word of a credential's name and another, run together: kept, for the words of
    # "sessionidtoken" cannot be told from those of "sessioncount".
    *("authenticationmethod", "sessioncount"),
]
# Names that begin with the same letters as a credential's, or that say something about a
# credential (how it is sent, how many, how long it lasts, its rules), and hold none.
NOT_CREDENTIAL_NAMES = [
    *("author", "authors", "authorName", "author_id", "AUTHOR", "coauthor", "authority"),
    *("authenticationMethod", "authentication_type", "authType", "auth_method", "authScheme"),
    *("sessionCount", "session_count", "sessionsPerDay", "sessions_per_day", "sessionTimeout"),
    *("tokenizer", "Tokenizer", "token_type", "tokenType", "tokensPerMinute", "tokenExpiry"),
    *("secretary", "passwordPolicy", "password_length", "signatureAlgorithm"),
    *("oauth_signature_method", "cookieEnabled", "credentialType", "apiKeyType"),
]


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_a_value_under_a_credential_name_is_masked_and_scrubbed_from_messages(name: str) -> None:
    value = "v4lue-8c1f0e27"

    assert is_secret_name(name)
    assert mask_secret_values({name: value}) == {name: "***"}
    assert mask_secret_values({"query": f'{{ assets({name}: "{value}") {{ id }} }}'}) == {
        "query": "***"
    }
    assert value not in redact(f'{{"{name}": "{value}"}}')
    assert value not in redact(f'Syntax Error: {{ assets({name}: "{value}") }}')
    assert value not in redact(f"GET /api?limit=5&{name}={value}")


@pytest.mark.parametrize("name", NOT_CREDENTIAL_NAMES)
def test_a_name_that_only_looks_like_a_credentials_is_shown_and_quoted_as_written(
    name: str,
) -> None:
    body = {"query": f'{{ users({name}: "SAML") {{ id {name} }} }}', name: "SAML"}
    messages = [
        f'{{"{name}": "SAML", "records": 5}}',
        f'Cannot query field {{ users({name}: "SAML") }}',
        f"GET /api?limit=5&{name}=SAML",
    ]

    assert not is_secret_name(name)
    assert mask_secret_values(body) == body
    assert secret_values(body) == []
    assert [redact(message) for message in messages] == messages


@pytest.mark.timeout(10)
@pytest.mark.parametrize("run", ["a-", "x-token-", "http", '"a', "basic "])
def test_a_long_hostile_text_is_redacted_in_linear_time(run: str) -> None:
    # Every log line goes through redaction: a quadratic pattern would hang on this for minutes.
    text = run * (400_000 // len(run))

    assert len(redact(text)) > 0


@pytest.mark.timeout(15)
def test_many_quoted_values_after_credential_names_are_found_in_linear_time() -> None:
    # A GraphQL error quoting a long query, a log line of many settings: each quoted value
    # is looked at up to its closing quote, not to the end of the text.
    text = "pwd='' " * (2_000_000 // 7)

    assert len(redact(text)) > 0
    assert secret_values({"query": text}) == []


def test_it_removes_known_secrets_in_every_encoding() -> None:
    secret = "k3y/with+odd=chars"

    text = redact(f"a {secret} b k3y%2Fwith%2Bodd%3Dchars c k3y%2Fwith%2Bodd%3Dchars", [secret])

    assert "k3y" not in text


# As servers echo a key with "/" and "+" in it: PHP's json_encode, .NET's System.Text.Json,
# .NET's UrlEncode (lower-case hex), Python's quote (a "/" left as is), an HTML page.
ECHOED = {
    "php json": r"Zk9\/qL3+vT8wPn2x",
    "dotnet json": r"Zk9/qL3\u002BvT8wPn2x",
    "lower-case percent": "Zk9%2fqL3%2bvT8wPn2x",
    "quote": "Zk9/qL3%2BvT8wPn2x",
    "html": "Zk9&#x2F;qL3&#43;vT8wPn2x",
}


def test_a_known_secret_with_control_characters_or_quotes_is_removed_as_json_or_html_has_it():
    secrets = ["line1\tpart2-abcdefgh", "it's-a-s3cret"]

    text = redact(
        '{"detail": "line1\\tpart2-abcdefgh"} <p>it&#039;s-a-s3cret, it&apos;s-a-s3cret</p>',
        secrets,
    )

    assert text == '{"detail": "***"} <p>***, ***</p>'


@pytest.mark.parametrize("spelling", ECHOED.values(), ids=ECHOED.keys())
def test_a_known_secret_is_removed_however_the_server_escaped_it(spelling: str) -> None:
    assert redact(
        f'{{"error": "Invalid API key {spelling} for tenant"}}', ["Zk9/qL3+vT8wPn2x"]
    ) == ('{"error": "Invalid API key *** for tenant"}')


@pytest.mark.django_db(transaction=True)
def test_a_key_a_source_echoes_json_escaped_in_its_error_is_not_shown(echo):
    key = "Zk9/qL3+vT8wPn2x"
    body = json.dumps({"error": f"Invalid API key {key} for tenant"}).replace("/", "\\/")
    echo.faults.add(path_contains="/api/offset", status=401, body=body)
    source = ImportSource(
        name="cmdb",
        source_url=f"{echo.base_url}/api/offset",
        source_auth="api_key_header",
        auth_key_name="X-Api-Key",
        source_token=key,
    )

    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page("")

    assert "Invalid API key *** for tenant" in caught.value.message


# --- a source that echoes what it received -------------------------------------------------


@pytest.fixture
def echo() -> Iterator[FakeSource]:
    server = FakeSource().start()
    yield server
    server.stop()


VENDOR_KEY = "dd-app-key-5521"
ECHO_CASES = {
    "basic": {"source_auth": "basic", "auth_username": "svc", "source_token": PASSWORD},
    "api key header": {
        "source_auth": "api_key_header",
        "auth_key_name": "X-Api-Key",
        "source_token": PASSWORD,
    },
    "api key query": {
        "source_auth": "api_key_query",
        "auth_key_name": "api_key",
        "source_token": PASSWORD,
    },
    "password in the URL": {"url_userinfo": f"svc:{PASSWORD}@"},
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ECHO_CASES)
def test_a_source_echoing_its_request_leaks_nothing_into_errors_or_history(
    case, make_source, sandbox, echo
):
    fields = dict(ECHO_CASES[case])
    userinfo = fields.pop("url_userinfo", "")
    url = echo.base_url.replace("://", f"://{userinfo}") + "/api/echo-error"
    source = services.push_mapping(
        source=make_source(
            source_url=url,
            extra_headers={"X-Tenant-Token": HEADER_SECRET, "DD-APPLICATION-KEY": VENDOR_KEY},
            **fields,
        )
    )

    execution = services.start_import(source=source)

    execution.refresh_from_db()
    [request] = echo.requests_to("/api/echo-error")
    sent = json.dumps(request.headers) + request.raw_path
    assert PASSWORD in sent or BASIC in sent  # the source did get the credentials ...
    chunk_error = execution.chunks.get(index=0).error
    reasons = sandbox.execution(execution.assets_execution_id)["failure_reasons"]
    assert execution.state == Execution.State.FAILED
    assert "answered 400" in chunk_error and "x-tenant-token" in chunk_error
    for text in (chunk_error, execution.error, *reasons):  # ... and echoed them back
        assert PASSWORD not in text
        assert BASIC not in text
        assert HEADER_SECRET not in text
        assert VENDOR_KEY not in text  # a header named as its vendor likes


def test_a_secret_at_the_cut_of_an_error_excerpt_is_removed_whole(echo):
    echo.faults.add(path_contains="/api/offset", status=400, body="x" * 190 + f" {PASSWORD}")
    source = ImportSource(
        name="cmdb",
        source_url=f"{echo.base_url}/api/offset",
        source_auth="bearer",
        source_token=PASSWORD,
    )

    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page("")

    assert "answered 400" in caught.value.message
    assert PASSWORD[:5] not in caught.value.message


@pytest.mark.parametrize(
    "auth, secret, charset",
    [
        ("basic", "Müller-Passwort-2024", "iso-8859-1"),  # an older API's own charset
        ("bearer", "utf16-s3cret-token", "utf-16-le"),
    ],
)
def test_a_secret_echoed_in_an_error_in_another_charset_is_removed(echo, auth, secret, charset):
    body = f"denied: credentials {secret} are not valid here".encode(charset)
    url = echo.add_file("denied", body, content_type=f"text/plain; charset={charset}", status=401)
    source = ImportSource(
        name="cmdb", source_url=url, source_auth=auth, auth_username="svc", source_token=secret
    )

    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page("")

    assert "denied: credentials *** are not valid here" in caught.value.message
    assert secret[4:12] not in caught.value.message.replace("\x00", "")


def test_a_secret_in_a_utf8_error_cut_mid_character_is_removed_despite_a_wrong_label(echo):
    # The excerpt's read ends inside a two-byte character: the body is still UTF-8 (its
    # label, ISO-8859-1, is wrong), and the secret in it reads as the secret.
    secret = "Müller-Passwort-2024"
    head = f"denied: {secret}: ".encode()
    body = head + "é".encode() * 600
    assert (800 - len(head)) % 2 == 1  # the read's 800th byte falls inside an "é"
    url = echo.add_file("denied", body, content_type="text/plain; charset=iso-8859-1", status=401)
    source = ImportSource(
        name="cmdb", source_url=url, source_auth="basic", auth_username="svc", source_token=secret
    )

    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page("")

    assert "denied: ***:" in caught.value.message
    assert "ller-Passwort" not in caught.value.message


class LongWindedPlugin:
    def __init__(self, *, import_source, options) -> None:
        self.secret = import_source.source_token

    def fetch_page(self, cursor: str):
        raise RuntimeError("x" * 280 + f" {self.secret}")


def test_a_secret_at_the_cut_of_a_plugin_error_is_removed_whole(settings):
    settings.IMPORT_SOURCE_PLUGINS = {"long": "tests.test_redaction.LongWindedPlugin"}
    source = ImportSource(name="cmdb", source_kind="plugin", plugin="long", source_token=PASSWORD)

    with pytest.raises(SourceError) as caught:
        build_source(source).fetch_page("")

    assert "RuntimeError" in caught.value.message
    assert PASSWORD[:5] not in caught.value.message


# --- logs ----------------------------------------------------------------------------------


@pytest.fixture(params=["plain", "json"])
def console(request) -> Iterator[io.StringIO]:
    """What the app's console handler writes, in each LOG_FORMAT."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    stream, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(stream)
    if request.param == "json":
        handler.setFormatter(JsonFormatter())
    yield stream
    handler.setStream(previous)
    handler.setFormatter(formatter)


@pytest.mark.django_db
def test_the_webtrigger_token_never_reaches_the_log(client, make_source, console):
    source = make_source()
    url = reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token])

    response = client.post(url, "not json", content_type="application/json")

    written = console.getvalue()
    assert response.status_code == 400
    assert f"Bad Request: /webtrigger/{source.pk}/***/" in written
    assert source.webtrigger_token not in written


def test_credentials_in_a_logged_exception_are_removed(console):
    try:
        raise ConnectionError(f"GET https://svc:{PASSWORD}@host/ with Authorization: Basic {BASIC}")
    except ConnectionError:
        logging.getLogger("importer.services").exception("chunk 3 failed")

    written = console.getvalue()
    assert "chunk 3 failed" in written and "ConnectionError" in written
    assert PASSWORD not in written
    assert BASIC not in written


@pytest.mark.parametrize("console", ["json"], indirect=True)
def test_credentials_a_library_logs_as_structured_extra_fields_are_removed(console):
    # LOG_FORMAT=json writes every extra field; a library may pass its request's headers
    # and parameters as they are.
    logging.getLogger("some.client").info(
        "request sent",
        extra={
            "request_headers": {"Accept": "application/json", "Authorization": f"Basic {BASIC}"},
            "request_params": [("page", "2"), ("api_key", "extra-key-8812")],
            "api_token": "extra-token-8812",
        },
    )

    entry = json.loads(console.getvalue())
    assert entry["message"] == "request sent"
    assert entry["request_headers"]["Accept"] == "application/json"
    assert ["page", "2"] in entry["request_params"]
    for secret in (BASIC, "extra-key-8812", "extra-token-8812"):
        assert secret not in console.getvalue(), secret


def test_a_key_in_a_url_a_library_logs_never_reaches_the_log(echo, console):
    # urllib3 warns of a header line it cannot parse, naming the request's whole URL: the key
    # under a name of the vendor's own is known to be a secret only as this source's.
    echo.misbehave("broken_header")
    source = ImportSource(
        name="cmdb",
        source_url=f"{echo.base_url}/api/offset?tenant=1",
        records_path="data.items",
        source_auth="api_key_query",
        auth_key_name="tenantkey",
        source_token="query-key-s3cret-9",
    )

    build_source(source).fetch_page("")

    written = console.getvalue()
    assert "Failed to parse headers" in written and "tenant=1" in written
    assert "query-key-s3cret-9" not in written


@pytest.mark.django_db
def test_a_token_in_a_webhook_path_that_a_library_logs_never_reaches_the_log(echo, console):
    # Slack, Teams and Discord put a webhook's token in its path, no name to tell it by.
    from importer.models import Alert, NotificationChannel
    from importer.notifications.senders import send_webhook

    echo.misbehave("broken_header")
    channel = NotificationChannel.objects.create(
        name="chat",
        kind=NotificationChannel.Kind.WEBHOOK,
        webhook_url=f"{echo.base_url}/api/next/T0001/B0002/hookS3cretPart77",
        all_sources=True,
    )
    alert = Alert.objects.create(key="k", kind=Alert.Kind.FAILED, subject="s", text="t")

    send_webhook(channel, alert)

    written = console.getvalue()
    assert "Failed to parse headers" in written
    assert "hookS3cretPart77" not in written


def test_the_error_page_of_a_crash_shows_no_credentials(rf, settings):
    from django.views.debug import get_exception_reporter_class

    settings.DEBUG = True
    request = rf.post(
        "/webtrigger/3/TriggerT0ken-5531/?access_token=query-t0ken-5531",
        {"name": "laptops", "source_token": "posted-token-5531"},
        EMAIL_URL="smtp://alerts:mail-pa55-8812@mail.example",
    )

    def preview(source_url, settings_of_the_source):
        raise ValueError(f"Port out of range at {source_url}")

    try:
        preview(
            f"https://svc:{PASSWORD}@inventory.example:99999/api?api_key=query-key-5531",
            {"client_secret": "client-s3cret-5531", "page_size": 100},
        )
    except ValueError:
        import sys

        report = get_exception_reporter_class(request)(request, *sys.exc_info())
        page = report.get_traceback_html() + report.get_traceback_text()  # the mail's text too

    assert "Port out of range" in page and "page_size" in page
    for secret in (
        PASSWORD,
        "query-key-5531",
        "client-s3cret-5531",
        "posted-token-5531",
        "TriggerT0ken-5531",
        "query-t0ken-5531",
        "mail-pa55-8812",
    ):
        assert secret not in page, secret


# --- exports -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_export_without_secrets_leaves_out_url_credentials_and_secret_headers(
    make_source, tmp_path
):
    make_source(
        source_url=f"https://svc:{PASSWORD}@inventory.example/api",
        extra_headers={
            "X-Tenant-Token": HEADER_SECRET,
            "X-Functions-Key": "function-key-2203",  # a vendor's name for its key
            "Accept-Language": "en",
        },
    )

    exported = io.StringIO()
    call_command("export_sources", stdout=exported)

    [entry] = json.loads(exported.getvalue())["sources"]
    for secret in (PASSWORD, HEADER_SECRET, "function-key-2203"):
        assert secret not in exported.getvalue()
    assert entry["source"]["url"] == "https://***@inventory.example/api"
    assert entry["source"]["headers"] == {
        "X-Tenant-Token": "***",
        "X-Functions-Key": "***",
        "Accept-Language": "en",
    }
    path = tmp_path / "sources.json"
    path.write_text(exported.getvalue())
    imported = io.StringIO()
    call_command("import_sources", str(path), "--no-push", stdout=imported)
    source = ImportSource.objects.get()
    assert imported.getvalue().strip() == "unchanged inventory"  # masked values keep the stored
    assert source.source_url == f"https://svc:{PASSWORD}@inventory.example/api"
    assert source.extra_headers["X-Tenant-Token"] == HEADER_SECRET
    assert source.extra_headers["X-Functions-Key"] == "function-key-2203"


@pytest.mark.parametrize(
    "url",
    [
        "https://h/api?token=first-111&token=second-222",  # one name twice: each keeps its own
        "https://h/api?q=***&status=active",  # a value that only looks masked
        "https://svc:p%40ss@h/api?access_token=a%2Bb&page=2#frag",
        "https://h/api",
    ],
)
def test_a_url_masked_for_a_form_and_given_back_unchanged_is_the_stored_one(url: str) -> None:
    from importer.redaction import mask_url, restore_url

    assert restore_url(mask_url(url), url) == url


def test_a_header_of_a_vendors_naming_is_scrubbed_when_it_holds_a_key_not_a_word():
    source = ImportSource(
        name="cmdb",
        extra_headers={
            "X-Fields": "items",
            "X-Tenant": "inventory",
            "DD-APPLICATION-KEY": VENDOR_KEY,
        },
    )

    told = redact_for(source, f"no items in inventory for key {VENDOR_KEY}")

    assert told == "no items in inventory for key ***"


def test_a_key_in_a_query_parameter_of_a_vendors_naming_is_scrubbed_not_a_word():
    # OpenWeather names its key `appid`; a source echoes the URL it was asked for.
    source = ImportSource(
        name="weather",
        source_url=f"https://api.example.com/data?appid={VENDOR_KEY}&units=metric",
        extra_params={
            "fields": "serial,name,owner,location",
            "since": "2024-01-01T00:00:00Z",
            "sysparm_query": "install_status=1",
            "tenant": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "license": "A1B2C3D4E5F6G7H8",
        },
    )

    told = redact_for(
        source,
        f"403 for /data?appid={VENDOR_KEY}&units=metric&fields=serial,name,owner,location"
        "&since=2024-01-01T00:00:00Z&sysparm_query=install_status=1"
        "&tenant=3f2504e0-4f89-11d3-9a0c-0305e82c3301&license=A1B2C3D4E5F6G7H8",
    )

    # A date, a list of fields, a query or an id is no key: the message keeps them.
    assert told == (
        "403 for /data?appid=***&units=metric&fields=serial,name,owner,location"
        "&since=2024-01-01T00:00:00Z&sysparm_query=install_status=1"
        "&tenant=3f2504e0-4f89-11d3-9a0c-0305e82c3301&license=***"
    )
