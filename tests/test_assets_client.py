"""The Assets client against a real HTTP server on loopback."""

import json
import socket

import pytest
from werkzeug import Response

from importer import assets
from importer.assets import AssetsClient
from tests.conftest import SANDBOX_TOKEN

ROOT = "/jsm/assets/workspace/ws-1/v1/importsource/src-1"


@pytest.fixture
def client(httpserver):
    return AssetsClient(
        base_url=httpserver.url_for("/"),
        workspace_id="ws-1",
        import_source_id="src-1",
        token="secret-token-123",
        timeout=2,
    )


def started_answer(httpserver, execution_id="exec-42"):
    return {
        "links": {
            "submitResults": httpserver.url_for(f"{ROOT}/executions/{execution_id}/data"),
            "getExecutionStatus": httpserver.url_for(f"{ROOT}/executions/{execution_id}/status"),
        }
    }


def test_it_reads_the_execution_id_from_the_submit_results_link(httpserver, client):
    httpserver.expect_request(
        f"{ROOT}/executions", method="POST", headers={"Authorization": "Bearer secret-token-123"}
    ).respond_with_json(started_answer(httpserver))

    assert client.start_execution().execution_id == "exec-42"


def test_a_user_and_password_saved_in_the_address_do_not_replace_the_token(httpserver):
    client = AssetsClient(
        base_url=httpserver.url_for("/").replace("://", "://proxyuser:p@ss@"),
        workspace_id="ws-1",
        import_source_id="src-1",
        token="secret-token-123",
        timeout=2,
    )
    httpserver.expect_request(
        f"{ROOT}/executions", method="POST", headers={"Authorization": "Bearer secret-token-123"}
    ).respond_with_json(started_answer(httpserver))

    assert client.start_execution().execution_id == "exec-42"


def test_it_marks_a_scheduled_execution_in_the_body(httpserver, client):
    httpserver.expect_request(
        f"{ROOT}/executions", method="POST", json={"scheduled": True}
    ).respond_with_json(started_answer(httpserver))

    assert client.start_execution(scheduled=True).execution_id == "exec-42"


def test_it_submits_a_chunk_and_then_completion(httpserver, client):
    data_url = f"{ROOT}/executions/exec-42/data"
    httpserver.expect_ordered_request(
        data_url, method="POST", json={"data": {"laptops": [{"serial": "A"}]}}
    ).respond_with_data("", status=200)
    httpserver.expect_ordered_request(
        data_url, method="POST", json={"completed": True}
    ).respond_with_data("", status=204)

    client.submit_chunk("exec-42", {"laptops": [{"serial": "A"}]})
    client.mark_completed("exec-42")

    httpserver.check_assertions()


@pytest.mark.parametrize(
    "status, error_class, permanent",
    [
        (400, assets.AssetsBadRequest, True),
        (401, assets.AssetsAuthError, True),
        (403, assets.AssetsAuthError, True),
        (404, assets.AssetsNotFound, True),
        (409, assets.AssetsConflict, True),
        (429, assets.AssetsRateLimited, False),
        (500, assets.AssetsServerError, False),
        (503, assets.AssetsServerError, False),
    ],
)
def test_each_error_status_becomes_its_typed_error(
    httpserver, client, status, error_class, permanent
):
    httpserver.expect_request(f"{ROOT}/executions", method="POST").respond_with_json(
        {"errorMessages": ["something specific"]}, status=status
    )

    with pytest.raises(error_class) as caught:
        client.start_execution()

    assert caught.value.status == status
    assert caught.value.permanent is permanent
    assert "something specific" in caught.value.message
    assert "secret-token-123" not in caught.value.message


def test_a_conflict_says_what_it_means_for_a_start_and_for_a_page(httpserver, client):
    httpserver.expect_request(f"{ROOT}/executions", method="POST").respond_with_data("", status=409)
    httpserver.expect_request(f"{ROOT}/executions/exec-42/data").respond_with_data("", status=409)
    httpserver.expect_request(f"{ROOT}/mapping").respond_with_data("", status=409)

    with pytest.raises(assets.AssetsConflict) as start:
        client.start_execution()
    with pytest.raises(assets.AssetsConflict) as page:
        client.submit_chunk("exec-42", {"laptops": [{"serial": "A"}]})
    with pytest.raises(assets.AssetsConflict) as mapping:
        client.put_mapping({"schema": {}, "mapping": {}})

    assert "an import of this import source is still running there" in start.value.message
    assert "cancel it in Assets to import now" in start.value.message
    assert page.value.message == (
        "Submitting a chunk: Assets reports a conflict (409): the execution no longer takes "
        "this (it was cancelled, completed or timed out in Assets)"
    )
    assert mapping.value.message == "Pushing the mapping: Assets reports a conflict (409)"


def test_rate_limiting_carries_retry_after_in_seconds(httpserver, client):
    httpserver.expect_request(f"{ROOT}/mapping", method="PUT").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )

    with pytest.raises(assets.AssetsRateLimited) as caught:
        client.put_mapping({"schema": {}})

    assert caught.value.retry_after == 7


def test_retry_after_as_an_http_date_is_understood():
    assert assets.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert assets.parse_retry_after("garbage") is None


def test_an_unreachable_assets_is_a_transient_error():
    client = AssetsClient(
        base_url="http://127.0.0.1:9", workspace_id="w", import_source_id="s", token="t"
    )

    with pytest.raises(assets.AssetsUnavailable) as caught:
        client.get_mapping()

    assert caught.value.permanent is False
    # Where, and what to look at: nothing listens there.
    assert caught.value.message == (
        "Reading the mapping: could not reach Assets at http://127.0.0.1:9 (the connection "
        "was refused: nothing listens at that host and port): check the Assets API base URL"
    )


def test_a_connection_assets_closes_before_answering_is_not_blamed_on_the_address(sandbox):
    # A proxy gave up after the request went through: the address is right.
    sandbox.faults.add(method="PUT", path_contains="/mapping", drop=True)
    client = AssetsClient(
        base_url=sandbox.base_url, workspace_id="w", import_source_id="s", token=SANDBOX_TOKEN
    )

    with pytest.raises(assets.AssetsUnavailable) as caught:
        client.put_mapping({"schema": {"objectSchema": {}}, "mapping": {}})

    assert caught.value.permanent is False
    assert "the connection to Assets at" in caught.value.message
    assert "broke before its answer came" in caught.value.message
    assert "check the Assets API base URL" not in caught.value.message


def test_an_import_source_assets_does_not_know_says_what_to_check(sandbox):
    client = AssetsClient(
        base_url=sandbox.base_url, workspace_id="w", import_source_id="gone", token=SANDBOX_TOKEN
    )
    sandbox.faults.add(method="POST", path_contains="/executions", status=404)

    with pytest.raises(assets.AssetsNotFound) as caught:
        client.start_execution()

    assert "check the source's workspace id and import source id" in caught.value.message


def test_a_silent_assets_times_out_as_a_transient_error():
    # A listening socket that never answers: the connection succeeds, the answer never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = AssetsClient(
            base_url=f"http://127.0.0.1:{port}",
            workspace_id="w",
            import_source_id="s",
            token="t",
            timeout=0.3,
        )

        with pytest.raises(assets.AssetsUnavailable) as caught:
            client.get_mapping()

    assert "did not answer within 0.3 s" in caught.value.message


def test_an_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_timeout(sandbox):
    # A sick proxy: every read gets a byte well within the socket timeout, and the answer
    # would take a minute.
    sandbox.faults.add(method="GET", path_contains="/schema-and-mapping", status=0, drip=0.2)
    client = AssetsClient(
        base_url=sandbox.base_url,
        workspace_id="ws-1",
        import_source_id="src-1",
        token=SANDBOX_TOKEN,
        timeout=1,
    )

    with pytest.raises(assets.AssetsUnavailable) as caught:
        client.get_mapping()

    assert "did not answer within 1 s (HTTP_TIMEOUT)" in caught.value.message
    assert caught.value.permanent is False  # tried again, as a timeout is


def test_a_record_assets_finds_too_large_alone_says_to_look_for_a_huge_value(httpserver, client):
    page = "<html><head><title>413 Request Entity Too Large</title></head><body>" + "x" * 900
    httpserver.expect_request(f"{ROOT}/executions/exec-42/data", method="POST").respond_with_data(
        page, status=413, content_type="text/html"
    )

    with pytest.raises(assets.AssetsBadRequest) as caught:
        client.submit_chunk("exec-42", {"laptops": [{"serial": "A"}]})

    assert ": 413 Request Entity Too Large. It held one record alone" in caught.value.message
    assert caught.value.message.endswith("check the source's records for a huge value")
    assert "<" not in caught.value.message  # no markup
    assert caught.value.permanent


def test_another_request_assets_finds_too_large_blames_no_record(httpserver, client):
    httpserver.expect_request(f"{ROOT}/mapping", method="PUT").respond_with_data("", status=413)

    with pytest.raises(assets.AssetsBadRequest) as caught:
        client.put_mapping({"schema": {}, "mapping": {}})

    assert "too large (413)" in caught.value.message and "record" not in caught.value.message


def test_a_gateways_html_error_page_is_quoted_by_its_heading_alone(httpserver, client):
    page = (
        "<!DOCTYPE html><html><body><div class='cf'><h1>Bad gateway</h1>"
        "<p>Error code 502</p><script>var x = 1;</script></div></body></html>"
    )
    httpserver.expect_request(f"{ROOT}/executions/exec-42/status").respond_with_data(
        page, status=502, content_type="text/html"
    )

    with pytest.raises(assets.AssetsServerError) as caught:
        client.get_execution_status("exec-42")

    assert caught.value.message.endswith("a server error: Bad gateway")


def test_the_failure_reason_is_cut_to_1024_characters(httpserver, client):
    received = {}

    def record(request):
        received.update(json.loads(request.data))
        return Response(status=204)

    httpserver.expect_request(
        f"{ROOT}/executions/exec-42/history/failed", method="POST"
    ).respond_with_handler(record)

    client.report_failure("exec-42", "ü" * 3000)

    assert len(received["failureReason"]) == 1024
    assert received["failureReason"].startswith("üüü")


@pytest.mark.parametrize("length, kept", [(1024, 1024), (1025, 1024), (10, 10)])
def test_truncation_counts_characters_not_bytes(length, kept):
    reason = assets.truncate_reason("é" * length)

    assert len(reason) == kept


def test_truncation_counts_an_emoji_as_two_characters_as_java_does():
    reason = assets.truncate_reason("🔥" * 600)

    assert len(reason.encode("utf-16-le")) // 2 <= 1024
    assert reason == "🔥" * 511 + "…"


def test_a_start_answer_without_links_says_assets_started_one_to_cancel_there(httpserver, client):
    httpserver.expect_request(f"{ROOT}/executions", method="POST").respond_with_json(
        {"links": {"start": "https://assets.example/somewhere"}}
    )

    with pytest.raises(assets.AssetsBadRequest) as caught:
        client.start_execution()

    assert "so it started an execution" in caught.value.message
    assert "(links given: start)" in caught.value.message
    assert "cancel it in Assets, then start again" in caught.value.message


@pytest.mark.parametrize(
    "links",
    [
        {"getExecutionStatus": "https://a.example/v1/importsource/s/executions/e-7/status"},
        {
            "submitResults": "not a link",
            "cancel": "https://a.example/importsource/s/executions/e-7",
        },
    ],
)
def test_a_start_answer_without_its_submit_link_is_read_by_its_other_links(
    httpserver, client, links
):
    httpserver.expect_request(f"{ROOT}/executions", method="POST").respond_with_json(
        {"links": links}
    )

    assert client.start_execution().execution_id == "e-7"


def test_it_sends_text_in_any_script_and_long_numbers_as_they_are(httpserver, client):
    records = [{"name": "Zo\u00eb \u6771\u4eac", "iccid": "89014103211118510720", "n": 2**70}]
    httpserver.expect_request(
        f"{ROOT}/executions/exec-42/data", method="POST", json={"data": {"sims": records}}
    ).respond_with_data("", status=200)

    client.submit_chunk("exec-42", {"sims": records})

    httpserver.check_assertions()


@pytest.fixture
def proxy_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_every_request_goes_through_the_proxy_the_environment_names(httpserver, proxy_environment):
    proxy_environment.setenv("HTTP_PROXY", httpserver.url_for("/").rstrip("/"))
    # A host nobody can reach directly: only the proxy (here the test server) answers.
    behind_proxy = AssetsClient(
        base_url="http://assets.invalid",
        workspace_id="ws-1",
        import_source_id="src-1",
        token="secret-token-123",
        timeout=2,
    )
    httpserver.expect_request(f"{ROOT}/executions/exec-42/data", method="POST").respond_with_data(
        "", status=200
    )

    for _ in range(3):
        behind_proxy.submit_chunk("exec-42", {"laptops": [{"serial": "A"}]})

    assert len(httpserver.log) == 3
    assert all(request.host == "assets.invalid" for request, _ in httpserver.log)


def test_a_host_the_environment_exempts_from_the_proxy_is_reached_directly(
    httpserver, client, proxy_environment
):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    proxy_environment.setenv("NO_PROXY", "localhost,127.0.0.1")
    httpserver.expect_request(f"{ROOT}/executions/exec-42/data", method="POST").respond_with_data(
        "", status=200
    )

    for _ in range(2):
        client.submit_chunk("exec-42", {"laptops": [{"serial": "A"}]})

    assert len(httpserver.log) == 2


def test_a_proxy_that_is_down_is_named_not_the_assets_host(proxy_environment):
    # The host itself was never asked: "check the Assets API base URL" would mislead.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    behind_proxy = AssetsClient(
        base_url="http://assets.invalid", workspace_id="w", import_source_id="s", token="t"
    )

    with pytest.raises(assets.AssetsUnavailable) as caught:
        behind_proxy.get_mapping()

    assert caught.value.message == (
        "Reading the mapping: could not reach Assets at http://assets.invalid (the proxy that "
        "HTTPS_PROXY or HTTP_PROXY names could not be reached)"
    )


def test_a_proxy_that_wants_credentials_is_named_with_its_answer(proxy_environment):
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def refuse():  # asked to CONNECT, it wants credentials first
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")

    threading.Thread(target=refuse, daemon=True).start()
    proxy_environment.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    behind_proxy = AssetsClient(
        base_url="https://assets.invalid", workspace_id="w", import_source_id="s", token="t"
    )
    try:
        with pytest.raises(assets.AssetsUnavailable) as caught:
            behind_proxy.get_mapping()
    finally:
        listener.close()

    assert caught.value.message == (
        "Reading the mapping: could not reach Assets at https://assets.invalid (the proxy that "
        "HTTPS_PROXY or HTTP_PROXY names answered 407 Proxy Authentication Required)"
    )


def test_an_error_text_that_echoes_the_token_is_quoted_without_it(httpserver, client):
    # Assets (or a proxy before it) may quote what it was sent: the message goes to logs,
    # the execution's page and alerts.
    httpserver.expect_request(f"{ROOT}/executions/exec-42/status").respond_with_json(
        {"errorMessages": ["token secret-token-123 was revoked"]}, status=401
    )

    with pytest.raises(assets.AssetsAuthError) as error:
        client.get_execution_status("exec-42")

    assert "secret-token-123" not in str(error.value)
    assert "secret-token-123" not in error.value.message
    assert "token *** was revoked" in error.value.message


def test_a_long_error_text_is_cut_after_the_token_is_hidden_never_through_it(httpserver, client):
    token = client.session.headers["Authorization"].removeprefix("Bearer ")
    text = "x" * 281 + f" said Bearer {token}"  # the cut at 300 falls in the token
    httpserver.expect_request(f"{ROOT}/executions/exec-42/status").respond_with_data(
        text, status=400
    )

    with pytest.raises(assets.AssetsBadRequest) as error:
        client.get_execution_status("exec-42")

    assert token[:4] not in error.value.message.rpartition("x")[2]


def test_rate_limiting_says_how_long_assets_asks_us_to_wait(httpserver, client):
    httpserver.expect_request(f"{ROOT}/executions", method="POST").respond_with_data(
        "", status=429, headers={"Retry-After": "30"}
    )

    with pytest.raises(assets.AssetsRateLimited) as error:
        client.start_execution()

    assert "rate limiting us (429), and asks us to wait 30 s" in error.value.message


def sandbox_client(sandbox, **options) -> AssetsClient:
    return AssetsClient(
        base_url=sandbox.base_url,
        workspace_id="ws-1",
        import_source_id="src-1",
        token=SANDBOX_TOKEN,
        **options,
    )


def test_a_page_assets_answers_too_late_says_it_may_have_arrived_and_what_to_raise(sandbox):
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=1.5)
    client = sandbox_client(sandbox, timeout=0.5)

    with pytest.raises(assets.AssetsUnavailable) as caught:
        client.submit_chunk("exec-1", {"computers": [{"serial": "SN-1"}]})

    assert caught.value.message == (
        "Submitting a chunk: Assets did not answer within 0.5 s (HTTP_TIMEOUT); it may have "
        "received the request all the same. If Assets is this slow, raise HTTP_TIMEOUT"
    )


def test_a_page_answered_too_late_after_a_longer_wait_names_both_settings(sandbox):
    sandbox.faults.add(method="POST", path_contains="/data", status=0, delay=1.5)
    client = sandbox_client(sandbox, timeout=0.25)

    with pytest.raises(assets.AssetsTimedOut) as caught:
        client.submit_chunk("exec-1", {"computers": [{"serial": "SN-1"}]}, timeout=0.5)

    assert caught.value.waited == 0.5
    assert caught.value.message == (
        "Submitting a chunk: Assets did not answer within 0.5 s (longer than HTTP_TIMEOUT = "
        "0.25 s, as it answered a page of this import too late); it may have received the "
        "request all the same. If Assets is this slow, raise HTTP_TIMEOUT and Q_TASK_TIMEOUT"
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "DONE"}',
        '{"execution": {"status": "DONE"}}',
        '{"progress": {"state": "done"}}',
        '{"status": {"value": "DONE"}}',
        '{"status": {"value": "", "name": "DONE"}}',
        '{"execution": {"id": "10001", "name": "Nightly laptops", "status": "DONE"}}',
        '{"execution": {"key": "EXEC-42", "state": "DONE"}}',
        '{"status": 200, "data": {"name": "Laptops", "state": "DONE"}}',
    ],
)
def test_an_execution_status_is_read_in_the_shapes_assets_may_give_it(sandbox, body):
    sandbox.faults.add(method="GET", path_contains="/status", status=200, body=body)
    client = sandbox_client(sandbox)

    assert client.get_execution_status("exec-1").status == "DONE"


def test_a_status_answer_without_a_status_names_the_keys_it_has(sandbox):
    sandbox.faults.add(method="GET", path_contains="/status", status=200, body='{"phase": 3}')
    client = sandbox_client(sandbox)

    with pytest.raises(assets.AssetsServerError, match=r"no 'status' in it; its keys: phase\)"):
        client.get_execution_status("exec-1")
