"""The webtrigger Assets' scheduler calls, and failure reporting to import history."""

import json
import logging
import threading

import pytest
import requests
from django.urls import reverse

from importer import services
from importer.models import ChunkJob, Execution
from tests.conftest import SANDBOX_TOKEN, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def trigger(client, source, body=None, token=None):
    url = reverse("importer:webtrigger", args=[source.pk, token or source.webtrigger_token])
    payload = (
        body
        if body is not None
        else {
            "workspaceId": source.workspace_id,
            "importsourceId": source.import_source_id,
        }
    )
    return client.post(url, data=json.dumps(payload), content_type="application/json")


def test_a_trigger_starts_a_scheduled_import(client, pushed_source, sandbox):
    response = trigger(client, pushed_source)

    execution = Execution.objects.get(source=pushed_source)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Import started",
        "executionId": execution.assets_execution_id,
    }
    assert execution.trigger == Execution.Trigger.SCHEDULE
    remote = sandbox.execution(execution.assets_execution_id)
    assert remote["scheduled"] is True
    assert len(remote["objects"]) == 120


def test_a_hung_broker_holds_a_trigger_up_for_one_try_not_one_per_lane(
    client, make_source, sandbox, hung_broker, caplog
):
    source = services.push_mapping(source=make_source(page_size=10, max_chunks_in_flight=4))

    response = trigger(client, source)

    execution = Execution.objects.get(source=source)
    first_pages = execution.chunks.filter(state=ChunkJob.State.QUEUED)
    assert response.status_code == 200
    assert first_pages.count() == 4
    # The broker was tried for the first page only; all four wait for housekeeping.
    tries = [record for record in caplog.records if "not queued" in record.getMessage()]
    assert len(tries) == 1
    assert not first_pages.filter(next_attempt_at__isnull=True).exists()


def test_it_rejects_a_forged_token_without_a_hint(client, pushed_source):
    forged = trigger(client, pushed_source, token="x" * 43)
    unknown_source = client.post(
        reverse("importer:webtrigger", args=[pushed_source.pk + 1, pushed_source.webtrigger_token]),
        data="{}",
        content_type="application/json",
    )

    assert forged.status_code == unknown_source.status_code == 404
    assert forged.content == unknown_source.content
    assert not Execution.objects.exists()


@pytest.mark.parametrize("tail", ["extra/", "", "x"])
def test_any_other_webtrigger_address_gets_the_same_json_404_without_its_path(
    client, pushed_source, settings, tail
):
    # With DEBUG on, Django's own 404 page would quote the path, token and all.
    settings.DEBUG = True
    token = pushed_source.webtrigger_token
    address = f"/webtrigger/{pushed_source.pk}/{token}/{tail}" if tail != "" else "/webtrigger/"

    response = client.post(address, data="{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Not found"}
    assert token not in response.content.decode()


def test_it_answers_only_post(client, pushed_source):
    url = reverse("importer:webtrigger", args=[pushed_source.pk, pushed_source.webtrigger_token])

    assert client.get(url).status_code == 405


@pytest.mark.parametrize("right_token", [True, False])
def test_opening_it_in_a_browser_says_what_it_is_for_and_runs_nothing(
    client, pushed_source, right_token
):
    token = pushed_source.webtrigger_token if right_token else "x" * 43
    response = client.get(reverse("importer:webtrigger", args=[pushed_source.pk, token]))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {
        "success": False,
        "error": "Assets calls this address with POST at each scheduled run; opening it runs "
        "nothing. To import now, use Start import on the source's page.",
    }
    assert not Execution.objects.exists()


def test_a_body_for_another_workspace_is_refused(client, pushed_source):
    response = trigger(
        client, pushed_source, body={"workspaceId": "other", "importsourceId": "src-1"}
    )

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"workspaceId": "ws-1", "importSourceId": "src-1"}, {}, {"importsourceId": None}],
    ids=["spelled importSourceId", "empty", "null"],
)
def test_a_body_that_names_no_other_source_starts_the_import(client, pushed_source, body):
    # The token in the address authenticates the call and names the source.
    response = trigger(client, pushed_source, body=body)

    assert response.status_code == 200, response.json()
    assert Execution.objects.get().trigger == Execution.Trigger.SCHEDULE


def test_a_body_naming_another_import_source_is_refused_and_logged(client, pushed_source, caplog):
    body = {"workspaceId": "ws-1", "importSourceId": "src-9"}

    response = trigger(client, pushed_source, body=body)

    assert response.status_code == 400
    assert not Execution.objects.exists()
    assert "webtrigger of inventory called for another import source: 'src-9'" in caplog.text


def test_a_webtrigger_url_without_its_last_slash_still_starts_the_import(
    client, pushed_source, sandbox, inventory
):
    url = reverse("importer:webtrigger", args=[pushed_source.pk, pushed_source.webtrigger_token])
    body = {"workspaceId": "ws-1", "importsourceId": "src-1"}

    response = client.post(url.rstrip("/"), data=body, content_type="application/json")

    assert response.status_code == 200 and response.json()["success"] is True
    assert Execution.objects.get().trigger == Execution.Trigger.SCHEDULE


def test_a_body_that_is_not_json_is_refused(client, pushed_source):
    url = reverse("importer:webtrigger", args=[pushed_source.pk, pushed_source.webtrigger_token])

    response = client.post(url, data="not json", content_type="application/json")

    assert response.status_code == 400


def test_a_trigger_while_an_import_runs_is_refused_and_kept_in_history(
    client, pushed_source, caplog
):
    running = Execution.objects.create(
        source=pushed_source, state=Execution.State.INGESTING, assets_execution_id="manual-1"
    )

    with caplog.at_level(logging.INFO):
        response = trigger(client, pushed_source)

    assert response.status_code == 500
    assert f"already running (execution #{running.pk})" in response.json()["error"]
    refused = Execution.objects.exclude(pk=running.pk).get()
    assert refused.state == Execution.State.REFUSED
    assert refused.trigger == Execution.Trigger.SCHEDULE
    assert refused.error == response.json()["error"]
    # An expected overlap is a warning, not an error of the server that would page someone.
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert "scheduled import of inventory refused" in caplog.text


def test_assets_answering_409_on_start_is_a_500_with_its_reason(client, pushed_source, sandbox):
    sandbox.faults.add(method="POST", path_contains="/executions", status=409, times=1)

    response = trigger(client, pushed_source)

    assert response.status_code == 500
    assert "409" in response.json()["error"]
    assert Execution.objects.get().state == Execution.State.REFUSED


def test_a_repeated_trigger_starts_one_execution(client, pushed_source, sandbox, inventory):
    # Hold the import open (the source is failing for a while) while Assets retries.
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)

    first = trigger(client, pushed_source)
    second = trigger(client, pushed_source)

    assert first.status_code == second.status_code == 200
    assert first.json()["executionId"] == second.json()["executionId"]
    assert Execution.objects.count() == 1
    assert len(sandbox.executions("src-1")) == 1


def test_a_source_failing_after_the_start_is_reported_once_within_1024_characters(
    client, pushed_source, sandbox, inventory, settings
):
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(
        method="GET", path_contains="/api/computers", status=500, times=-1, body="ä" * 5000
    )

    response = trigger(client, pushed_source)

    execution = Execution.objects.get()
    reasons = sandbox.execution(execution.assets_execution_id)["failure_reasons"]
    assert response.status_code == 200  # the import started; the failure came later
    assert execution.state == Execution.State.FAILED
    assert len(reasons) == 1
    assert len(reasons[0]) <= 1024
    assert execution.failure_reported_at is not None


def test_a_secret_in_a_failure_never_reaches_import_history(pushed_source, sandbox, inventory):
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)

    services.fail_execution(
        execution=execution,
        reason=f"GET https://svc:pa55word@inventory.example failed with token {SANDBOX_TOKEN}",
    )

    reason = sandbox.execution(execution.assets_execution_id)["failure_reasons"][0]
    assert SANDBOX_TOKEN not in reason
    assert "pa55word" not in reason
    assert reason.startswith("GET https://***@inventory.example failed")


def test_reporting_after_processing_began_is_logged_not_raised(pushed_source, sandbox, caplog):
    execution = services.start_import(source=pushed_source)
    assert execution.state == Execution.State.DONE
    Execution.objects.filter(pk=execution.pk).update(state=Execution.State.INGESTING)

    failed = services.fail_execution(execution=execution, reason="late failure")

    assert failed.state == Execution.State.FAILED
    assert failed.error == "late failure"
    assert failed.failure_reported_at is None
    assert "not recorded in Assets history" in caplog.text


def test_a_trigger_repeated_after_its_import_ended_is_the_same_run(client, pushed_source, sandbox):
    # A 300-record import is DONE before Assets, missing the first answer, calls again.
    first = trigger(client, pushed_source)
    assert Execution.objects.get().state == Execution.State.DONE

    second = trigger(client, pushed_source)

    assert first.status_code == second.status_code == 200
    assert first.json()["executionId"] == second.json()["executionId"]
    assert len(sandbox.executions("src-1")) == 1


def live_trigger(live_server, source) -> requests.Response:
    """A call of the source's webtrigger over HTTP, as Assets makes it."""
    path = reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token])
    url = live_server.url + path
    body = {"workspaceId": "ws-1", "importsourceId": "src-1"}
    return requests.post(url, json=body, timeout=30)


def trigger_twice_at_once(live_server, source) -> list[requests.Response]:
    answers = []
    calls = [
        threading.Thread(target=lambda: answers.append(live_trigger(live_server, source)))
        for _ in range(2)
    ]
    for thread in calls:
        thread.start()
    for thread in calls:
        thread.join()
    return answers


def test_two_triggers_at_once_start_one_run_and_refuse_none(live_server, pushed_source, sandbox):
    # The first start is still on its way to Assets when the second trigger arrives.
    sandbox.faults.add(method="POST", path_contains="/executions", status=0, delay=1.0, times=1)

    answers = trigger_twice_at_once(live_server, pushed_source)

    # The second waits for the first's outcome, and tells the same.
    told = [(answer.status_code, answer.json()["message"]) for answer in answers]
    assert told == [(200, "Import started")] * 2
    assert not Execution.objects.filter(state=Execution.State.REFUSED).exists()
    assert len(sandbox.executions("src-1")) == 1


def test_a_trigger_repeated_while_assets_refuses_the_start_is_refused_too(
    live_server, pushed_source, sandbox
):
    # Assets asks again, not having had the first answer in time: the answer it keeps must
    # not say the run began when Assets then refused it.
    sandbox.faults.add(method="POST", path_contains="/executions", status=409, delay=1.0)

    answers = trigger_twice_at_once(live_server, pushed_source)

    assert [(answer.status_code, answer.json()["success"]) for answer in answers] == [
        (500, False)
    ] * 2
    assert Execution.objects.get().state == Execution.State.REFUSED  # one run, kept once


def test_a_trigger_repeated_while_a_slow_start_goes_on_is_asked_to_come_again(
    live_server, pushed_source, sandbox, monkeypatch
):
    from importer.services.schedules import triggers

    # The start outlasts what a repeated call may wait (a web server would kill it).
    monkeypatch.setattr(triggers, "REPEATED_TRIGGER_WAIT_SECONDS", 0.5)
    sandbox.faults.add(method="POST", path_contains="/executions", status=409, delay=2.0)
    answers = {}

    def first():
        answers["first"] = live_trigger(live_server, pushed_source)

    starting = threading.Thread(target=first)
    starting.start()
    wait_for(lambda: Execution.objects.exists())  # the first call is starting the run
    repeat = live_trigger(live_server, pushed_source)
    starting.join()

    assert answers["first"].status_code == 500
    assert (repeat.status_code, repeat.headers.get("Retry-After")) == (503, "10")


def test_a_trigger_while_the_cache_is_down_still_starts_the_run(
    client, pushed_source, sandbox, settings, caplog
):
    # The calls are counted in Redis: its outage must not lose the scheduled run.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }

    with caplog.at_level(logging.WARNING, logger="importer.views"):
        response = trigger(client, pushed_source)

    assert response.status_code == 200, response.content
    assert Execution.objects.get().state == Execution.State.DONE
    assert "webtrigger calls not counted: the cache failed (ConnectionError)" in caplog.text


def test_a_broker_address_that_cannot_be_read_keeps_its_password_out_of_the_log(
    client, make_source, sandbox, async_tasks, settings, monkeypatch, caplog
):
    # A '/' in the password ends the host where the URL is read: redis-py's error quotes it.
    from django_q.conf import Conf

    from importer import work_queue

    url = "redis://:hunter2/xyz@127.0.0.1:6379/5"
    settings.REDIS_URL = url
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    monkeypatch.setattr(work_queue, "_broker", None)
    source = services.push_mapping(source=make_source(page_size=10))

    response = trigger(client, source)

    assert response.status_code == 200
    said = [record.getMessage() for record in caplog.records if "not queued" in record.getMessage()]
    assert said and "REDIS_URL cannot be read as a Redis address" in said[0]
    assert "hunter2" not in caplog.text
