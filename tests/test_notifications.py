"""Alerts by e-mail and webhook: a real SMTP server and a real HTTP receiver on loopback."""

import ast
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule as QSchedule
from django_q.models import Task as QTask
from werkzeug import Response

from importer import notifications, services, tasks, work_queue
from importer.devtools.demo_source import DemoInventory
from importer.models import (
    Alert,
    ChunkJob,
    Delivery,
    Execution,
    NotificationChannel,
    Schedule,
)
from importer.notifications import events
from importer.notifications.delivery import MAX_ATTEMPTS, RETRY_DELAYS, WAITING_GIVEN_UP_AFTER
from importer.notifications.formats import alert_facts
from importer.notifications.messages import Content, execution_content, when_text
from importer.notifications.staleness import last_successes
from tests.conftest import (
    SANDBOX_TOKEN,
    SlowSmtpServer,
    SmtpServer,
    wait_for,
    wait_for_execution_to_finish,
)
from tests.test_services import run_due_retries

pytestmark = pytest.mark.django_db(transaction=True)

HOOK_SECRET = "hook-secret-value-42"
PUBLIC = "https://assets-sync.example"


def webhook_channel(url: str, *, sources=(), **fields) -> NotificationChannel:
    values = {
        "name": "chat",
        "kind": NotificationChannel.Kind.WEBHOOK,
        "webhook_url": url,
        "secret_header_name": "X-Webhook-Token",
        "secret_header_value": HOOK_SECRET,
        "all_sources": not sources,
    }
    values.update(fields)
    channel = NotificationChannel.objects.create(**values)
    channel.sources.set(sources)
    return channel


def email_channel(*, sources=(), **fields) -> NotificationChannel:
    values = {
        "name": "it-on-call",
        "kind": NotificationChannel.Kind.EMAIL,
        "recipients": "ops@example.com, cmdb@example.com",
        "all_sources": not sources,
    }
    values.update(fields)
    channel = NotificationChannel.objects.create(**values)
    channel.sources.set(sources)
    return channel


def received(httpserver) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in httpserver.log]


def trigger_schedule(client, source):
    return client.post(
        reverse("importer:webtrigger", args=[source.pk, source.webtrigger_token]),
        data=json.dumps(
            {"workspaceId": source.workspace_id, "importsourceId": source.import_source_id}
        ),
        content_type="application/json",
    )


def fire_due_retries() -> int:
    """Let the retry time come: run each retry django-q2 holds as a one-off schedule, the way
    its scheduler does (the schedule is deleted, then its task runs)."""
    fired = 0
    # As long ago as the first retry's delay: a failing channel is tried again by then.
    NotificationChannel.objects.filter(last_error_at__isnull=False).update(
        last_error_at=timezone.now() - timedelta(seconds=RETRY_DELAYS[0])
    )
    for schedule in QSchedule.objects.filter(name__startswith="retry-delivery-"):
        (delivery_id,) = ast.literal_eval(schedule.args)
        Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
        schedule.delete()
        tasks.send_delivery(delivery_id)
        fired += 1
    return fired


@pytest.fixture
def failing_inventory(inventory, settings):
    """The inventory answers 500 with a body that repeats the Assets token."""
    settings.CHUNK_MAX_ATTEMPTS = 1
    inventory.faults.add(
        method="GET",
        path_contains="/api/computers",
        status=500,
        times=-1,
        body=f"upstream broke, token {SANDBOX_TOKEN}",
    )
    return inventory


def test_a_failed_scheduled_run_sends_one_email_and_one_webhook_without_secrets(
    client, pushed_source, sandbox, failing_inventory, smtp_server, httpserver, settings
):
    settings.PUBLIC_BASE_URL = PUBLIC
    httpserver.expect_request("/hooks/assets", method="POST").respond_with_json({"ok": True})
    email_channel(sources=[pushed_source])
    webhook_channel(httpserver.url_for("/hooks/assets"))

    response = trigger_schedule(client, pushed_source)

    execution = Execution.objects.get()
    assert response.status_code == 200 and execution.state == Execution.State.FAILED
    link = f"{PUBLIC}/admin/importer/execution/{execution.pk}/change/"
    [(sender, recipients, mail)] = smtp_server.messages
    body = mail.get_content()
    assert recipients == ["ops@example.com", "cmdb@example.com"]
    assert sender == settings.DEFAULT_FROM_EMAIL
    assert mail["Subject"] == "assets-sync: the scheduled import of inventory failed"
    assert "Reason: Chunk 1 failed" in body and "answered 500" in body
    assert "Records: 0 fetched, 0 submitted, 0 left out" in body
    assert link in body
    [request] = [request for request, _ in httpserver.log]
    payload = json.loads(request.get_data())
    assert request.headers["X-Webhook-Token"] == HOOK_SECRET
    assert request.headers["X-Assets-Sync-Alert"] == f"execution-{execution.pk}-failed"
    assert payload["text"].startswith("The scheduled import of 'inventory' failed.")
    assert payload["event"] == "execution.failed"
    assert payload["source"]["name"] == "inventory"
    assert payload["execution"]["trigger"] == "scheduled"
    assert payload["execution"]["reason"].startswith("Chunk 1 failed")
    assert payload["execution"]["records_submitted"] == 0
    assert payload["execution"]["url"] == link
    for secret in (SANDBOX_TOKEN, HOOK_SECRET, pushed_source.webtrigger_token):
        assert secret not in body
        assert secret not in request.get_data(as_text=True)


def test_an_alert_mail_is_marked_automatic_so_out_of_office_replies_are_not_sent_back(
    pushed_source, sandbox, failing_inventory, smtp_server
):
    # An on-call list has someone away: their out-of-office answers each alert, to the
    # sender's address, unless the mail says it was sent by a machine (RFC 3834; Exchange
    # reads its own header).
    email_channel()

    services.start_import(source=pushed_source)

    [(_, _, mail)] = smtp_server.messages
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["Date"] and mail["Message-ID"] and mail["X-Assets-Sync-Alert"]


def test_an_alert_delivered_twice_is_sent_once(
    pushed_source, sandbox, failing_inventory, smtp_server, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    email_channel()
    webhook_channel(httpserver.url_for("/hook"))
    execution = services.start_import(source=pushed_source)

    # The broker delivering the tasks again, and housekeeping catching up on lost alerts.
    tasks.raise_execution_alert(execution.pk, "finished")
    services.look_after_imports()
    for delivery in Delivery.objects.all():
        tasks.send_delivery(delivery.pk)

    assert execution.state == Execution.State.FAILED
    assert len(smtp_server.messages) == 1
    assert len(httpserver.log) == 1
    assert Alert.objects.count() == 1


def test_alerts_are_sent_by_the_task_cluster(
    pushed_source, sandbox, failing_inventory, smtp_server, httpserver, start_cluster
):
    httpserver.expect_request("/hook").respond_with_json({})
    email_channel()
    channel = webhook_channel(httpserver.url_for("/hook"))
    start_cluster(EMAIL_URL=smtp_server.url, CHUNK_MAX_ATTEMPTS="1")

    execution = services.start_import(source=pushed_source)

    wait_for(lambda: smtp_server.messages and httpserver.log, message="no alert arrived")
    wait_for(lambda: Delivery.objects.filter(state=Delivery.State.SENT).count() == 2)
    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert received(httpserver)[0]["execution"]["id"] == execution.pk
    channel.refresh_from_db()
    assert channel.last_success_at is not None and not channel.is_failing


def delivery_tasks_ran() -> bool:
    """Whether a delivery's own task sent an alert that arrived. With the cluster's one
    worker, a task queued now runs after any queued before the alert arrived."""
    work_queue.async_task("math.floor", 1, task_name="after-the-alert")
    wait_for(lambda: QTask.objects.filter(name="after-the-alert").exists())
    return QTask.objects.filter(name__startswith="delivery-").exists()


class CountingInventory(DemoInventory):
    """The demo inventory, counting the pages it was asked for."""

    def __init__(self, **options):
        super().__init__(**options)
        self.pages_asked = 0

    def on_request(self, request) -> None:
        self.pages_asked += 1


def test_an_alert_does_not_wait_behind_the_lanes_of_a_big_import(
    make_source, sandbox, failing_inventory, httpserver, start_cluster
):
    # One worker, a big import from a slow source with four lanes queued for it, and another
    # source's import failing meanwhile: its alert arrives before the worker runs a lane more.
    big_inventory = CountingInventory(records=5000, latency=0.2).start()
    big = services.push_mapping(
        source=make_source(
            name="big",
            import_source_id="src-big",
            source_url=f"{big_inventory.base_url}/api/computers",
            max_chunks_in_flight=4,
        )
    )
    broken = services.push_mapping(source=make_source(name="broken"))
    pages_when = {}
    failing_inventory.on_request = lambda request: pages_when.setdefault(
        "failing", big_inventory.pages_asked
    )

    def receive(request):
        pages_when.setdefault("alert", big_inventory.pages_asked)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/hook").respond_with_handler(receive)
    webhook_channel(httpserver.url_for("/hook"), sources=[broken])
    start_cluster(workers=1, CHUNK_LANE_SECONDS="2", CHUNK_MAX_ATTEMPTS="1")
    try:
        services.start_import(source=big)
        wait_for(lambda: big_inventory.pages_asked, message="the big import never started")
        failed = services.start_import(source=broken)

        wait_for(lambda: "alert" in pages_when, timeout=120, message="no alert arrived")
        failed.refresh_from_db()
        assert failed.state == Execution.State.FAILED
        assert Execution.objects.get(source=big).state == Execution.State.INGESTING
        # The worker failed the import, then sent its alert: it read no page of the big
        # import between them (one in flight as its lane ended, at most), where a queued
        # alert would have waited for its four lanes, ten pages each.
        assert pages_when["alert"] - pages_when["failing"] <= 1
        wait_for(lambda: Delivery.objects.get().state == Delivery.State.SENT)
    finally:
        big_inventory.stop()


def test_the_alert_task_of_a_refused_run_sends_it_rather_than_queue_it_again(
    make_source, httpserver, start_cluster
):
    # Refused by a web request or a command, the import is told by a task, which waits its
    # turn behind the lanes running then: its deliveries do not wait for another turn.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    unreachable = make_source(name="unreachable", assets_base_url="http://127.0.0.1:9/")
    start_cluster(workers=1)

    with pytest.raises(services.ImportRefused):
        services.start_import(source=unreachable)

    wait_for(lambda: httpserver.log, message="no alert arrived")
    assert [payload["event"] for payload in received(httpserver)] == ["execution.refused"]
    assert not delivery_tasks_ran()


def test_an_alert_sent_by_the_task_that_fails_an_import_follows_its_stop_and_report(
    pushed_source, sandbox, inventory, httpserver, monkeypatch
):
    # The task failing the import sends the alert itself: the import's queued pages are
    # cancelled and Assets is told first, so a channel slow to answer holds back neither.
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)
    assert execution.chunks.filter(state=ChunkJob.State.QUEUED).exists()
    seen_at_arrival = {}

    def receive(request):
        seen_at_arrival["queued pages"] = execution.chunks.filter(
            state=ChunkJob.State.QUEUED
        ).count()
        seen_at_arrival["told Assets"] = sandbox.execution(execution.assets_execution_id)[
            "failure_reasons"
        ]
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/hook").respond_with_handler(receive)
    webhook_channel(httpserver.url_for("/hook"))
    # A cluster worker's task.
    monkeypatch.setattr("importer.notifications.inline.in_cluster_worker", lambda: True)

    services.fail_execution(execution=execution, reason="Chunk 1 failed: answered 503")

    assert seen_at_arrival == {
        "queued pages": 0,
        "told Assets": ["Chunk 1 failed: answered 503"],
    }
    assert Delivery.objects.get().state == Delivery.State.SENT


def test_a_refused_scheduled_run_is_told(client, pushed_source, sandbox, inventory, httpserver):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    services.start_import(source=pushed_source)  # still running: retries wait

    response = trigger_schedule(client, pushed_source)

    assert response.status_code == 500
    [payload] = received(httpserver)
    assert payload["event"] == "execution.refused"
    assert payload["execution"]["trigger"] == "scheduled"
    assert "already running" in payload["execution"]["reason"]
    # It never started: the text says when it was asked for and refused, and counts nothing.
    assert "Nothing was imported." in payload["text"] and "refused 20" in payload["text"]
    assert "Started" not in payload["text"] and "Records:" not in payload["text"]


def test_a_refused_scheduled_run_asked_for_again_is_told_once(
    client, pushed_source, sandbox, inventory, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    services.start_import(source=pushed_source)  # still running: retries wait

    answers = [trigger_schedule(client, pushed_source).status_code for _ in range(3)]

    assert answers == [500, 500, 500]
    assert Execution.objects.filter(state=Execution.State.REFUSED).count() == 3  # history
    assert [payload["event"] for payload in received(httpserver)] == ["execution.refused"]
    # Housekeeping's catch-up of lost alerts does not take the repeats for lost ones.
    services.look_after_imports()
    assert [payload["event"] for payload in received(httpserver)] == ["execution.refused"]


def test_a_scheduled_run_assets_refuses_again_and_again_is_told_once(
    client, pushed_source, sandbox, httpserver
):
    # An expired token: Assets' scheduler calls on, each call refused the same way.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    sandbox.faults.add(method="POST", path_contains="/executions", status=401, times=-1)

    answers = [trigger_schedule(client, pushed_source).status_code for _ in range(3)]

    assert answers == [500, 500, 500]
    assert Execution.objects.filter(state=Execution.State.REFUSED).count() == 3
    assert [payload["event"] for payload in received(httpserver)] == ["execution.refused"]
    services.look_after_imports()
    assert [payload["event"] for payload in received(httpserver)] == ["execution.refused"]


def test_an_import_whose_outcome_assets_no_longer_lets_us_read_is_told_at_once(
    pushed_source, sandbox, httpserver
):
    # The token expired while Assets processed: without an alert, nobody would hear of it
    # for PROCESSING_TIMEOUT_SECONDS, and the next scheduled run be refused as running.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    sandbox.processing_seconds = 600
    sandbox.faults.add(method="GET", path_contains="/status", status=401, times=-1)

    execution = services.start_import(source=pushed_source)
    services.refresh_status(execution=Execution.objects.get(pk=execution.pk))

    [payload] = received(httpserver)
    assert payload["event"] == "execution.stalled"
    assert "(PROCESSING)" in payload["text"]
    assert "Assets' status could not be read" in payload["text"] and "401" in payload["text"]


def stalled_import(pushed_source, inventory, httpserver) -> Execution:
    """An import whose source fails page after page, quiet for two hours, and a channel."""
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    execution = services.start_import(source=pushed_source)
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    return execution


def test_a_stalled_import_is_told_once(pushed_source, sandbox, inventory, httpserver):
    stalled_import(pushed_source, inventory, httpserver)

    services.look_after_imports()
    services.look_after_imports()

    [payload] = received(httpserver)
    assert payload["event"] == "execution.stalled"
    # Since when it is stuck (not the threshold), and what the pages wait for, as they say
    # it: the source failing.
    assert "No page has made progress since " in payload["text"]
    assert "(2 h 00 min ago). 4 pages wait to be tried again; page " in payload["text"]
    assert "What to do: check that the source and Assets answer" in payload["text"]
    assert ": attempt 1 of 5 failed: source 'inventory' answered 503" in payload["text"]


def test_a_stalled_import_whose_pages_move_again_is_told_so_once(
    pushed_source, sandbox, inventory, httpserver
):
    # On call heard of the stall at night: they hear it is over, not only when it ends.
    execution = stalled_import(pushed_source, inventory, httpserver)
    services.look_after_imports()
    # A page went in: as its statement does, the import is stamped and no longer stalled.
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now(), stalled_since=None)

    services.look_after_imports()
    services.look_after_imports()

    stalled, resumed = received(httpserver)
    assert (stalled["event"], resumed["event"]) == ("execution.stalled", "execution.resumed")
    assert resumed["subject"] == "assets-sync: the manual import of inventory is moving again"
    assert "It was told stalled " in resumed["text"] and "its pages move again." in resumed["text"]


def test_an_import_that_stalls_again_after_it_moved_again_is_told_each_time(
    pushed_source, sandbox, inventory, httpserver
):
    execution = stalled_import(pushed_source, inventory, httpserver)
    services.look_after_imports()
    for _ in range(2):
        # A page went in; later the source failed again for two hours.
        Execution.objects.filter(pk=execution.pk).update(
            updated_at=timezone.now(), stalled_since=None
        )
        services.look_after_imports()
        Execution.objects.filter(pk=execution.pk).update(
            updated_at=timezone.now() - timedelta(hours=2)
        )
        services.look_after_imports()
        services.look_after_imports()

    events = [payload["event"] for payload in received(httpserver)]
    assert events == ["execution.stalled", "execution.resumed"] * 2 + ["execution.stalled"]


def test_an_import_done_after_two_stalls_names_the_stall_its_channels_heard_last(
    pushed_source, sandbox, inventory, httpserver
):
    execution = stalled_import(pushed_source, inventory, httpserver)
    services.look_after_imports()
    for stalled_again in (False, True):
        if stalled_again:
            Execution.objects.filter(pk=execution.pk).update(
                updated_at=timezone.now() - timedelta(hours=2)
            )
            services.look_after_imports()
        Execution.objects.filter(pk=execution.pk).update(
            updated_at=timezone.now(), stalled_since=None
        )
        services.look_after_imports()
    first, latest = Alert.objects.filter(execution=execution, kind=Alert.Kind.STALLED).order_by(
        "created_at"
    )
    Alert.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=5))
    Execution.objects.filter(pk=execution.pk).update(state="DONE", finished_at=timezone.now())

    done = events.raise_execution_alert(execution=Execution.objects.get(pk=execution.pk), event="")

    assert f"It was told stalled {when_text(latest.created_at)}" in done.text


def test_a_second_stall_whose_alert_task_was_lost_is_caught_up_once(
    pushed_source, sandbox, inventory, httpserver, monkeypatch
):
    execution = stalled_import(pushed_source, inventory, httpserver)
    services.look_after_imports()
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now(), stalled_since=None)
    services.look_after_imports()
    monkeypatch.setattr(notifications, "notify_execution_stalled", lambda execution: None)
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now() - timedelta(hours=2))

    services.look_after_imports()  # the alert's task lost: caught up
    assert events.catch_up_execution_alerts() == 0  # and once

    events_told = [payload["event"] for payload in received(httpserver)]
    assert events_told == ["execution.stalled", "execution.resumed", "execution.stalled"]


def test_an_import_told_stalled_that_goes_on_to_the_end_is_told_done_to_the_same_channels(
    pushed_source, sandbox, inventory, httpserver
):
    # A channel that asks for failures only heard of the stall: it hears the end too.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=4)
    execution = services.start_import(source=pushed_source)
    Execution.objects.filter(pk=execution.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    services.look_after_imports()

    execution = run_due_retries(execution)

    assert execution.state == Execution.State.DONE, execution.error
    stalled, done = received(httpserver)
    assert (stalled["event"], done["event"]) == ("execution.stalled", "execution.done")
    assert "It was told stalled " in done["text"]
    assert "it went on to the end." in done["text"]


def test_done_is_sent_only_to_channels_that_ask_for_it(pushed_source, sandbox, httpserver):
    httpserver.expect_request("/every-run").respond_with_json({})
    httpserver.expect_request("/failures-only").respond_with_json({})
    webhook_channel(httpserver.url_for("/every-run"), name="every run", notify_on_done=True)
    webhook_channel(httpserver.url_for("/failures-only"), name="failures only")

    execution = services.start_import(source=pushed_source)

    assert execution.state == Execution.State.DONE
    [(request, _)] = httpserver.log
    assert request.path == "/every-run"
    payload = json.loads(request.get_data())
    assert payload["event"] == "execution.done"
    assert payload["execution"]["records_submitted"] == 120


def test_a_channel_hears_only_of_its_own_sources(make_source, sandbox, inventory, httpserver):
    httpserver.expect_request("/hook").respond_with_json({})
    laptops = services.push_mapping(source=make_source(name="laptops"))
    servers = services.push_mapping(source=make_source(name="servers", import_source_id="src-2"))
    webhook_channel(httpserver.url_for("/hook"), sources=[servers], notify_on_done=True)

    services.start_import(source=laptops)
    services.start_import(source=servers)

    assert [payload["source"]["name"] for payload in received(httpserver)] == ["servers"]


def test_an_email_channel_without_recipients_writes_to_alert_emails(
    pushed_source, sandbox, failing_inventory, smtp_server, settings
):
    settings.ALERT_EMAILS = ["cmdb-team@example.com"]
    email_channel(recipients="")

    services.start_import(source=pushed_source)

    [(_, recipients, _)] = smtp_server.messages
    assert recipients == ["cmdb-team@example.com"]


# --- webhook formats ---------------------------------------------------------------------------

Format = NotificationChannel.WebhookFormat


def the_card(payload: dict) -> dict:
    """The Adaptive Card of a Teams Workflows body, after checking the envelope around it."""
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    return card


def test_a_teams_channel_gets_an_adaptive_card_with_title_facts_and_button(
    pushed_source, sandbox, failing_inventory, httpserver, settings
):
    settings.PUBLIC_BASE_URL = PUBLIC
    httpserver.expect_request("/teams").respond_with_data("", status=202)
    webhook_channel(httpserver.url_for("/teams"), webhook_format=Format.TEAMS)

    execution = services.start_import(source=pushed_source)

    [request] = [request for request, _ in httpserver.log]
    card = the_card(json.loads(request.get_data()))
    title, *lines = [block for block in card["body"] if block["type"] == "TextBlock"]
    assert title["text"] == "assets-sync: the manual import of inventory failed"
    assert title["weight"] == "Bolder"
    texts = [line["text"] for line in lines]
    assert texts[0] == "The manual import of 'inventory' failed."
    assert any(text.startswith("Reason: Chunk 1 failed") for text in texts)
    [fact_set] = [block for block in card["body"] if block["type"] == "FactSet"]
    facts = {fact["title"]: fact["value"] for fact in fact_set["facts"]}
    assert facts["Source"] == "inventory"
    assert facts["State"] == "FAILED"
    assert facts["Trigger"] == "manual"
    assert facts["Records"] == "0 fetched, 0 submitted, 0 left out"
    assert "When" in facts
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open in assets-sync",
            "url": f"{PUBLIC}/admin/importer/execution/{execution.pk}/change/",
        }
    ]
    assert Delivery.objects.get().state == Delivery.State.SENT
    body = request.get_data(as_text=True)
    for secret in (SANDBOX_TOKEN, HOOK_SECRET, pushed_source.webtrigger_token):
        assert secret not in body


def test_a_teams_card_for_a_stale_source_links_to_the_source(
    pushed_source, sandbox, httpserver, settings
):
    settings.PUBLIC_BASE_URL = PUBLIC
    httpserver.expect_request("/teams").respond_with_data("", status=202)
    webhook_channel(httpserver.url_for("/teams"), webhook_format=Format.TEAMS)
    daily_schedule(pushed_source)
    succeeded_hours_ago(pushed_source, 27)

    services.look_after_imports()

    [payload] = received(httpserver)
    card = the_card(payload)
    assert card["body"][0]["text"] == "assets-sync: inventory is stale"
    [fact_set] = [block for block in card["body"] if block["type"] == "FactSet"]
    facts = {fact["title"]: fact["value"] for fact in fact_set["facts"]}
    assert facts["Source"] == "inventory" and facts["Schedule"] == "daily"
    assert "Last success" in facts and "Due by" in facts
    [button] = card["actions"]
    assert button["url"] == f"{PUBLIC}/admin/importer/importsource/{pushed_source.pk}/change/"


def test_a_slack_channel_gets_the_subject_in_bold_and_the_link(
    pushed_source, sandbox, failing_inventory, httpserver, settings
):
    settings.PUBLIC_BASE_URL = PUBLIC
    httpserver.expect_request("/slack").respond_with_data("ok")
    webhook_channel(httpserver.url_for("/slack"), webhook_format=Format.SLACK)

    execution = services.start_import(source=pushed_source)

    [payload] = received(httpserver)
    link = f"{PUBLIC}/admin/importer/execution/{execution.pk}/change/"
    assert list(payload) == ["text"]
    first, second, *_ = payload["text"].splitlines()
    assert first == "*assets-sync: the manual import of inventory failed*"
    assert second == "The manual import of 'inventory' failed."
    assert "Reason: Chunk 1 failed" in payload["text"]
    assert payload["text"].endswith(f"<{link}|Open in assets-sync>")
    for secret in (SANDBOX_TOKEN, HOOK_SECRET, pushed_source.webtrigger_token):
        assert secret not in payload["text"]


def test_a_channel_without_a_format_keeps_the_generic_json(
    pushed_source, sandbox, failing_inventory, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    channel = webhook_channel(httpserver.url_for("/hook"))

    services.start_import(source=pushed_source)

    assert channel.webhook_format == Format.GENERIC
    [payload] = received(httpserver)
    assert set(payload) == {
        "text",
        "subject",
        "alert_id",
        "kind",
        "occurred_at",
        "event",
        "source",
        "execution",
        "failing_since",
        "failed_runs",
        "last_success_at",
    }
    assert payload["subject"] == "assets-sync: the manual import of inventory failed"
    assert payload["text"].startswith("The manual import of 'inventory' failed.")


# --- stale sources ---------------------------------------------------------------------------


def daily_schedule(source, *, first_run_days_ago: int = 3) -> Schedule:
    return Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.DAILY,
        start_time=timezone.now() - timedelta(days=first_run_days_ago),
        timezone="UTC",
    )


def succeeded_hours_ago(source, hours: float) -> Execution:
    execution = services.start_import(source=source)
    assert execution.state == Execution.State.DONE
    Execution.objects.filter(pk=execution.pk).update(
        finished_at=timezone.now() - timedelta(hours=hours)
    )
    execution.refresh_from_db()
    return execution


def test_a_stale_source_is_told_once_then_its_recovery_once(pushed_source, sandbox, httpserver):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    succeeded_hours_ago(pushed_source, 27)

    services.look_after_imports()
    services.look_after_imports()

    [stale] = received(httpserver)
    assert stale["event"] == "source.stale"
    assert stale["source"]["name"] == "inventory"
    assert stale["schedule"]["frequency"] == "DAILY"
    assert "has a daily schedule, but its last successful import was at" in stale["text"]

    execution = services.start_import(source=pushed_source)
    services.look_after_imports()

    stale_again, recovered = received(httpserver)
    assert stale_again == stale
    assert recovered["event"] == "source.recovered"
    assert recovered["execution"]["id"] == execution.pk
    assert Alert.objects.get(kind=Alert.Kind.STALE).resolved_at is not None


def test_housekeeping_sends_a_stale_alert_itself_rather_than_queue_it(
    pushed_source, sandbox, httpserver, start_cluster
):
    # Queued, its delivery would wait behind every lane of the imports running then.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    start_cluster(workers=1)
    done = wait_for_execution_to_finish(services.start_import(source=pushed_source))
    assert done.state == Execution.State.DONE
    Execution.objects.filter(pk=done.pk).update(finished_at=timezone.now() - timedelta(hours=27))

    work_queue.async_task("importer.tasks.look_after_imports", task_name="housekeeping")

    wait_for(lambda: httpserver.log, message="no alert arrived")
    assert [payload["event"] for payload in received(httpserver)] == ["source.stale"]
    assert not delivery_tasks_ran()
    assert Delivery.objects.get().state == Delivery.State.SENT


def test_a_daily_source_is_stale_only_after_a_day_and_the_grace(
    pushed_source, sandbox, httpserver, settings
):
    settings.STALE_GRACE_SECONDS = 2 * 3600
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    execution = succeeded_hours_ago(pushed_source, 25.9)

    services.look_after_imports()
    assert received(httpserver) == []

    Execution.objects.filter(pk=execution.pk).update(
        finished_at=timezone.now() - timedelta(hours=26, minutes=1)
    )
    services.look_after_imports()
    assert [payload["event"] for payload in received(httpserver)] == ["source.stale"]


def test_pruning_history_keeps_a_sources_last_success_so_it_is_not_told_stale(
    make_source, httpserver
):
    # A weekly source last imported five days ago, its history kept three days.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    source = make_source()
    Schedule.objects.create(
        source=source,
        frequency=Schedule.Frequency.WEEKLY,
        start_time=timezone.now() - timedelta(days=40),
        timezone="UTC",
    )
    ended = [timezone.now() - timedelta(days=days) for days in (12, 6, 5)]
    executions = []
    for state, at in zip(["DONE", "DONE", "FAILED"], ended, strict=True):
        execution = Execution.objects.create(source=source, state=state)
        Execution.objects.filter(pk=execution.pk).update(
            created_at=at - timedelta(minutes=5), finished_at=at
        )
        executions.append(execution)

    call_command("prune_history", "--days", "3", stdout=io.StringIO())
    services.look_after_imports()

    assert list(Execution.objects.values_list("pk", flat=True)) == [executions[1].pk]
    assert received(httpserver) == []
    assert last_successes([source.pk]) == {source.pk: ended[1]}


@pytest.mark.parametrize("first_run_hours_ago, stale", [(3, False), (27, True)])
def test_a_schedule_never_imported_is_stale_a_day_and_the_grace_after_its_first_run(
    pushed_source, httpserver, settings, first_run_hours_ago, stale
):
    settings.STALE_GRACE_SECONDS = 2 * 3600
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    Schedule.objects.create(
        source=pushed_source,
        frequency=Schedule.Frequency.DAILY,
        start_time=timezone.now() - timedelta(hours=first_run_hours_ago),
        timezone="UTC",
    )

    services.look_after_imports()

    assert [payload["event"] for payload in received(httpserver)] == (
        ["source.stale"] if stale else []
    )


def test_a_schedule_saved_with_a_start_long_past_is_not_late_before_the_run_assets_was_told(
    pushed_source, sandbox, httpserver
):
    # A start time copied from a file exported months ago: Assets is told the next run.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    schedule = Schedule.objects.create(
        source=pushed_source,
        frequency=Schedule.Frequency.WEEKLY,
        start_time=timezone.now() - timedelta(days=60, hours=1),
        timezone="UTC",
    )
    services.sync_schedule(schedule=schedule)

    services.look_after_imports()

    assert received(httpserver) == []


def test_a_schedule_an_earlier_release_synced_with_a_start_long_past_is_not_late(
    pushed_source, sandbox, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    schedule = Schedule.objects.create(
        source=pushed_source,
        frequency=Schedule.Frequency.MONTHLY,
        start_time=timezone.now() - timedelta(days=40),
        timezone="UTC",
    )
    services.sync_schedule(schedule=schedule)
    Schedule.objects.filter(pk=schedule.pk).update(start_sent=None, runs_from=None)

    services.look_after_imports()

    assert received(httpserver) == []


def test_a_new_schedule_is_not_late_before_its_first_run(pushed_source, sandbox, httpserver):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    succeeded_hours_ago(pushed_source, 24 * 30)  # imported by hand a month ago
    daily_schedule(pushed_source, first_run_days_ago=-1)  # first run tomorrow

    services.look_after_imports()

    assert received(httpserver) == []


# --- failing channels ------------------------------------------------------------------------


def test_a_receiver_answering_500_is_retried_then_shown_failing_in_the_admin(
    pushed_source, sandbox, failing_inventory, httpserver, admin_client
):
    httpserver.expect_request("/hook").respond_with_data("receiver is broken", status=500)
    channel = webhook_channel(httpserver.url_for("/hook"))
    execution = services.start_import(source=pushed_source)

    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.PENDING and delivery.next_attempt_at is not None
    while fire_due_retries():
        pass

    delivery.refresh_from_db()
    assert len(httpserver.log) == MAX_ATTEMPTS
    assert delivery.state == Delivery.State.FAILED
    assert f"gave up after {MAX_ATTEMPTS} attempt(s)" in delivery.error
    execution.refresh_from_db()
    assert execution.state == Execution.State.FAILED
    assert execution.error.startswith("Chunk 1 failed")  # the import's own reason
    page = admin_client.get(reverse("admin:importer_notificationchannel_changelist"))
    text = page.content.decode()
    assert "FAILING" in text
    assert "answered 500: receiver is broken" in text
    assert "/hook" not in text  # the URL's path may hold a secret: only its host is shown
    channel.refresh_from_db()
    assert channel.is_failing and channel.last_success_at is None


def test_a_receiver_back_on_its_feet_gets_the_alert_on_a_retry(
    pushed_source, sandbox, failing_inventory, httpserver
):
    httpserver.expect_oneshot_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_request("/hook").respond_with_json({})
    channel = webhook_channel(httpserver.url_for("/hook"))
    services.start_import(source=pushed_source)

    fire_due_retries()

    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.SENT and delivery.attempts == 2
    assert len(httpserver.log) == 2
    channel.refresh_from_db()
    assert not channel.is_failing and channel.last_success_at is not None


def test_an_alert_that_reaches_a_channel_back_after_an_outage_says_it_is_late(
    pushed_source, sandbox, inventory, httpserver, settings
):
    # The chat was down from 02:00 to 02:30: the failure of 02:00 and the recovery of 02:20
    # arrive together, in either order. The failure arriving last must not read as news.
    settings.ALERT_REPEAT_HOURS = 0
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    webhook_channel(httpserver.url_for("/hook"), webhook_format=Format.SLACK)
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    raised = timezone.now() - timedelta(minutes=30)
    Alert.objects.update(created_at=raised)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/hook").respond_with_json({})

    fire_due_retries()

    [payload] = received(httpserver)[1:]
    lines = payload["text"].splitlines()
    assert lines[0] == "*assets-sync: the manual import of inventory failed*"
    assert lines[1] == (
        f"Sent late: raised {when_text(raised)} (30 minutes ago); the channel did not take "
        "it until now."
    )
    assert lines[2] == "The manual import of 'inventory' failed."
    # An alert sent as it is raised says nothing of the kind.
    mend(pushed_source, inventory)
    services.start_import(source=pushed_source)
    assert "Sent late" not in received(httpserver)[-1]["text"]


def test_a_failing_channel_never_fails_an_import(pushed_source, sandbox, httpserver):
    httpserver.expect_request("/hook").respond_with_data("no", status=500)
    webhook_channel(httpserver.url_for("/hook"), notify_on_done=True)

    execution = services.start_import(source=pushed_source)

    assert execution.state == Execution.State.DONE
    assert len(sandbox.execution(execution.assets_execution_id)["objects"]) == 120
    assert NotificationChannel.objects.get().is_failing


def test_a_webhook_that_redirects_is_given_up_at_once_naming_the_host_only(
    pushed_source, sandbox, failing_inventory, httpserver
):
    # An http:// address answered by a redirect to https://: no retry mends it, and the
    # secret path it points to is not shown.
    httpserver.expect_request("/incoming").respond_with_data(
        "", status=301, headers={"Location": "https://hooks.example.com/services/T0/B0/s3cr3t"}
    )
    webhook_channel(httpserver.url_for("/incoming"))

    services.start_import(source=pushed_source)

    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED and delivery.attempts == 1
    assert delivery.error == (
        f"gave up after 1 attempt(s): http://{httpserver.host}:{httpserver.port}/… answered 301, a "
        "redirect to https://hooks.example.com/…: give the channel the address it redirects to"
    )


def test_a_webhook_that_is_gone_is_not_retried(
    pushed_source, sandbox, failing_inventory, httpserver
):
    httpserver.expect_request("/hook").respond_with_data("no_service", status=404)
    webhook_channel(httpserver.url_for("/hook"))

    services.start_import(source=pushed_source)

    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED and delivery.attempts == 1
    assert "answered 404 (check the channel's webhook URL: mistyped" in delivery.error
    assert "or the webhook was removed): no_service" in delivery.error


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("no hook registered at {path}", id="the path's token"),
        pytest.param("x" * 185 + " bad key {header}", id="the header secret, at the cut"),
    ],
)
def test_a_receiver_quoting_the_webhook_secret_has_it_hidden_in_the_error(
    pushed_source, sandbox, failing_inventory, httpserver, caplog, answer
):
    path = "/hooks/T0123/B0456/HOOKPATHSECRET123"
    text = answer.format(path=path, header=HOOK_SECRET)
    httpserver.expect_request(path).respond_with_data(text, status=404)
    webhook_channel(httpserver.url_for(path))

    services.start_import(source=pushed_source)

    delivery = Delivery.objects.get()
    our_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("importer"))
    shown = [delivery.error, NotificationChannel.objects.get().last_error, our_log]
    assert delivery.state == Delivery.State.FAILED and "answered 404 (" in delivery.error
    for secret in ("HOOKPATHSECRET123", HOOK_SECRET[:6]):
        assert not [where for where in shown if secret in where], secret


# --- the admin ---------------------------------------------------------------------------------


def test_the_channel_list_says_where_each_sends_and_since_when_it_fails(admin_client, make_source):
    from datetime import datetime

    failing = webhook_channel(
        "https://hooks.example.com/services/SECRET-PATH",
        sources=[make_source(name="laptops")],
        webhook_format=Format.TEAMS,
        last_error="answered 503: down for maintenance",
        last_error_at=timezone.make_aware(datetime(2025, 3, 7, 14, 5)),
    )
    email_channel(name="ops", enabled=False, notify_on_done=True)

    page = admin_client.get(reverse("admin:importer_notificationchannel_changelist"))
    text = page.content.decode()

    assert "Webhook (Teams)" in text and "https://hooks.example.com/…" in text
    assert "failing since 2025-03-07 14:05: answered 503: down for maintenance" in text
    assert "laptops" in text and "never" in text  # its sources; nothing sent through it yet
    assert "ops@example.com and 1 more" in text and ">disabled</span>" in text
    assert "and every successful import" in text
    assert "SECRET-PATH" not in text and HOOK_SECRET not in text
    assert failing.name in text


def test_a_new_channels_form_has_no_status_section_until_it_is_saved(admin_client):
    add_page = admin_client.get(reverse("admin:importer_notificationchannel_add")).content
    channel = email_channel()
    change_page = admin_client.get(
        reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    ).content

    for shown in (b">Status</h2>", b"Last error at:", b"Webhook posts to:"):
        assert shown not in add_page, shown
    assert b">Status</h2>" in change_page and b"Last error at:" in change_page


def test_a_new_channels_secrets_do_not_offer_to_keep_a_stored_value(admin_client):
    add_page = admin_client.get(reverse("admin:importer_notificationchannel_add")).content
    change_page = admin_client.get(
        reverse("admin:importer_notificationchannel_change", args=[email_channel().pk])
    ).content

    assert b"keep the stored one" not in add_page  # there is none yet
    assert b"Leave empty to keep the stored one." in change_page


def test_the_sources_picker_says_what_choosing_a_source_means(admin_client):
    page = admin_client.get(reverse("admin:importer_notificationchannel_add")).content.decode()

    assert "Hold down" not in page  # a multiple select's hint: the picker is two lists
    assert 'class="selectfilter"' in page
    assert "The sources whose alerts this channel receives" in page


def test_channel_secrets_are_encrypted_and_never_shown_again(admin_client, pushed_source):
    from django.db import connection

    response = admin_client.post(
        reverse("admin:importer_notificationchannel_add"),
        {
            "name": "teams",
            "kind": "webhook",
            "enabled": "on",
            "all_sources": "on",
            "webhook_url": "https://example.webhook.office.com/webhookb2/SECRET-PATH",
            "webhook_format": "generic",
            "secret_header_name": "Authorization",
            "secret_header_value": "Bearer header-secret",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    channel = NotificationChannel.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url, secret_header_value FROM importer_notificationchannel")
        stored = " ".join(cursor.fetchone())
    page = admin_client.get(
        reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    ).content.decode()
    listing = admin_client.get(reverse("admin:importer_notificationchannel_changelist"))

    assert "SECRET-PATH" not in stored and "header-secret" not in stored
    assert "SECRET-PATH" not in page and "header-secret" not in page
    assert "https://example.webhook.office.com/…" in page
    assert "SECRET-PATH" not in listing.content.decode()
    # Saving without retyping them keeps the stored secrets.
    admin_client.post(
        reverse("admin:importer_notificationchannel_change", args=[channel.pk]),
        {
            "name": "teams",
            "kind": "webhook",
            "all_sources": "on",
            "webhook_format": "generic",
            "secret_header_name": "Authorization",
        },
    )
    channel.refresh_from_db()
    assert not channel.enabled
    assert channel.webhook_url.endswith("/SECRET-PATH")
    assert channel.secret_header_value == "Bearer header-secret"


def test_the_channel_page_sends_a_test_message_and_comes_back(admin_client, smtp_server):
    channel = email_channel(recipients="me@example.com")
    page_url = reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    page = admin_client.get(page_url).content.decode()
    assert ">Send a test message</button>" in page
    assert "importer/admin.css" in page  # drawn as the source page's buttons are

    response = admin_client.post(
        reverse("admin:importer_notificationchannel_changelist"),
        {"action": "send_check_message", "_selected_action": [channel.pk], "_back_to_page": "1"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == page_url
    assert "A test message is on its way" in response.content.decode()
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["me@example.com"]
    assert "this channel works" in mail.get_content()
    channel.refresh_from_db()
    assert channel.last_success_at is not None


def test_the_admin_test_message_uses_the_channel_format(admin_client, httpserver):
    httpserver.expect_request("/teams").respond_with_data("", status=202)
    channel = webhook_channel(httpserver.url_for("/teams"), webhook_format=Format.TEAMS)

    admin_client.post(
        reverse("admin:importer_notificationchannel_changelist"),
        {"action": "send_check_message", "_selected_action": [channel.pk]},
        follow=True,
    )

    [payload] = received(httpserver)
    card = the_card(payload)
    assert card["body"][0]["text"] == "assets-sync: test message"
    assert "this channel works" in card["body"][1]["text"]
    channel.refresh_from_db()
    assert channel.last_success_at is not None
    # The list of alerts says which channel a test message went to.
    alerts = admin_client.get(reverse("admin:importer_alert_changelist")).content.decode()
    assert "1 sent, to chat" in alerts


def test_a_test_message_that_fails_is_not_sent_again_later(admin_client, httpserver):
    # Sent again minutes later, it would arrive once someone mended the channel, telling of
    # nothing: the failure shows at once, and the channel is tried anew by another test.
    httpserver.expect_request("/hook").respond_with_data("receiver is broken", status=503)
    channel = webhook_channel(httpserver.url_for("/hook"))

    admin_client.post(
        reverse("admin:importer_notificationchannel_changelist"),
        {"action": "send_check_message", "_selected_action": [channel.pk]},
    )

    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED and delivery.next_attempt_at is None
    assert delivery.error.startswith("the test message failed: ")
    assert not fire_due_retries()
    assert len(httpserver.log) == 1
    channel.refresh_from_db()
    assert channel.is_failing


def test_the_admin_saves_a_channel_webhook_format(admin_client):
    response = admin_client.post(
        reverse("admin:importer_notificationchannel_add"),
        {
            "name": "teams",
            "kind": "webhook",
            "enabled": "on",
            "all_sources": "on",
            "webhook_url": "https://prod.westeurope.logic.azure.com/workflows/SECRET/triggers",
            "webhook_format": "teams",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    channel = NotificationChannel.objects.get()
    page = admin_client.get(
        reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    ).content.decode()

    assert channel.webhook_format == Format.TEAMS
    assert 'value="teams" selected' in page
    assert "Microsoft Teams (Workflows)" in page


def test_the_alert_list_shows_what_was_sent(
    admin_client, pushed_source, sandbox, failing_inventory, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    services.start_import(source=pushed_source)

    page = admin_client.get(reverse("admin:importer_alert_changelist")).content.decode()

    assert "assets-sync: the manual import of inventory failed" in page
    assert "1 sent" in page


def test_the_demo_channel_shows_an_alert_on_the_sandbox_page(pushed_source, sandbox):
    import requests

    from importer.management.commands.demo import demo_alert_channel

    demo_alert_channel(receiver_url=f"{sandbox.base_url}/_sandbox/alerts")

    execution = services.start_import(source=pushed_source)

    [alert] = sandbox.alerts()
    assert alert["event"] == "execution.done"
    page = requests.get(f"{sandbox.base_url}/", timeout=5).text
    assert "Alerts received" in page
    assert f"Details: http://127.0.0.1:8000/admin/importer/execution/{execution.pk}/change/" in page


def test_retention_deletes_old_alerts_but_keeps_a_source_still_stale(make_source):
    source = make_source()
    for kind in (Alert.Kind.FAILED, Alert.Kind.STALE):
        alert = Alert.objects.create(key=kind, kind=kind, source=source, subject=kind, text="")
        Alert.objects.filter(pk=alert.pk).update(created_at=timezone.now() - timedelta(days=400))
    out = io.StringIO()

    call_command("prune_history", "--days", "180", stdout=out)

    assert list(Alert.objects.values_list("kind", flat=True)) == [Alert.Kind.STALE]
    assert "1 alert(s)" in out.getvalue()


def test_housekeeping_sends_a_delivery_whose_task_was_lost(make_source, httpserver):
    httpserver.expect_request("/hook").respond_with_json({})
    channel = webhook_channel(httpserver.url_for("/hook"))
    alert = Alert.objects.create(
        key="lost", kind=Alert.Kind.FAILED, source=make_source(), subject="s", text="lost task"
    )
    delivery = Delivery.objects.create(alert=alert, channel=channel)  # its task never ran
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    services.look_after_imports()
    services.look_after_imports()

    assert [payload["text"] for payload in received(httpserver)] == ["lost task"]
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.SENT


def test_a_mail_server_slow_over_every_answer_is_given_up_at_the_timeout(settings):
    # Each answer came within the socket timeout, the whole conversation long after: the
    # worker that ended the import, sending inline, was held for each step's timeout.
    settings.ALERT_TIMEOUT = 1
    server = SlowSmtpServer(delay=0.4).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    channel = email_channel()
    alert = Alert.objects.create(key="slow-mail", kind=Alert.Kind.FAILED, subject="s", text="t")
    delivery = Delivery.objects.create(alert=alert, channel=channel)
    try:
        tasks.send_delivery(delivery.pk)
    finally:
        server.stop()

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (Delivery.State.PENDING, 1)
    assert delivery.error == (
        f"attempt 1 failed, retrying in {RETRY_DELAYS[0]} s: "
        "the mail server did not answer within 1 s"
    )
    assert server.messages == []


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_timeout(settings):
    import socket
    import threading
    import time

    from importer.notifications.senders import DeliveryError, send_webhook

    settings.ALERT_TIMEOUT = 1
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip():  # the status line, then a header byte every 0.3 s: each read within 1 s
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for byte in b"X-Slow: " + b"." * 30 + b"\r\n\r\n":
                if stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    receiver = threading.Thread(target=drip, daemon=True)
    receiver.start()
    channel = webhook_channel(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
    alert = Alert.objects.create(key="slow-receiver", kind=Alert.Kind.FAILED, subject="s", text="t")
    try:
        with pytest.raises(DeliveryError, match="did not answer within 1 s"):
            send_webhook(channel, alert)
    finally:
        stop.set()
        receiver.join(timeout=5)
        listener.close()


def test_a_send_cut_short_every_time_is_given_up_after_the_last_attempt(settings):
    from importer.notifications.delivery import requeue_lost_deliveries

    channel = webhook_channel("http://127.0.0.1:9/hook")
    alert = Alert.objects.create(key="cut-short", kind=Alert.Kind.FAILED, subject="s", text="t")
    delivery = Delivery.objects.create(
        alert=alert, channel=channel, state=Delivery.State.SENDING, attempts=MAX_ATTEMPTS
    )
    long_ago = timezone.now() - timedelta(seconds=settings.Q_TASK_TIMEOUT + 120)
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=long_ago)

    requeue_lost_deliveries()

    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.FAILED
    assert "cut short each time" in delivery.error


def test_a_source_stale_again_after_its_alert_was_closed_is_told_again(
    pushed_source, sandbox, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    succeeded_hours_ago(pushed_source, 27)
    services.look_after_imports()
    ImportSource = type(pushed_source)

    # Disabled: the source runs on no schedule, and its stale alert is closed silently.
    ImportSource.objects.filter(pk=pushed_source.pk).update(enabled=False)
    services.look_after_imports()
    # Enabled again, still with no import since: stale again, and told again.
    ImportSource.objects.filter(pk=pushed_source.pk).update(enabled=True)
    services.look_after_imports()

    events = [payload["event"] for payload in received(httpserver)]
    assert events == ["source.stale", "source.stale"]


def test_who_may_only_view_a_channel_sees_where_it_posts_but_not_its_url_or_secret(
    client, django_user_model
):
    from django.contrib.auth.models import Permission

    channel = webhook_channel("https://hooks.example/services/T0123/B0456/PATHTOKEN9876")
    viewer = django_user_model.objects.create_user("vic", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notificationchannel"))
    client.force_login(viewer)

    page = client.get(
        reverse("admin:importer_notificationchannel_change", args=[channel.pk])
    ).content.decode()

    assert "https://hooks.example/…" in page
    assert "PATHTOKEN9876" not in page and HOOK_SECRET not in page
    assert "stored (only Import administrators may replace it)" in page


def staff_with(django_user_model, username: str, *codenames: str):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_who_may_only_view_a_channel_cannot_send_a_test_message_through_it(
    client, django_user_model, httpserver
):
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    channel = webhook_channel(httpserver.url_for("/hook"))
    client.force_login(staff_with(django_user_model, "vic", "view_notificationchannel"))

    page = client.get(reverse("admin:importer_notificationchannel_change", args=[channel.pk]))
    response = client.post(
        reverse("admin:importer_notificationchannel_changelist"),
        {"action": "send_check_message", "_selected_action": [channel.pk]},
        follow=True,
    )

    assert "Send a test message" not in page.content.decode()
    assert "A test message is on its way" not in response.content.decode()
    assert not Delivery.objects.exists()
    assert not httpserver.log


def test_a_test_message_sent_from_the_admin_is_in_the_channels_history(
    client, django_user_model, httpserver
):
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    channel = webhook_channel(httpserver.url_for("/hook"))
    client.force_login(
        staff_with(
            django_user_model, "ada", "view_notificationchannel", "change_notificationchannel"
        )
    )

    client.post(
        reverse("admin:importer_notificationchannel_changelist"),
        {"action": "send_check_message", "_selected_action": [channel.pk]},
    )

    assert Delivery.objects.get().channel == channel
    history = client.get(
        reverse("admin:importer_notificationchannel_history", args=[channel.pk])
    ).content.decode()
    assert "Sent a test message." in history and "ada" in history


def test_a_webhook_url_that_is_not_one_is_refused_once_saying_why():
    from importer.notifications.forms import NotificationChannelForm

    form = NotificationChannelForm(
        data={"name": "chat", "kind": "webhook", "all_sources": "on", "webhook_url": "hooks"}
    )

    assert not form.is_valid()
    assert form.errors["webhook_url"] == ["Enter a valid URL."]


@pytest.mark.parametrize("site_wide, refused", [([], True), (["cmdb@example.com"], False)])
def test_an_email_channel_with_nobody_to_write_to_is_refused_when_saved(
    settings, site_wide, refused
):
    from importer.notifications.forms import NotificationChannelForm

    settings.ALERT_EMAILS = site_wide
    form = NotificationChannelForm(
        data={
            "name": "mail",
            "kind": "email",
            "all_sources": "on",
            "recipients": "",
            "webhook_format": "generic",
        }
    )

    assert form.is_valid() is not refused
    if refused:
        assert "the ALERT_EMAILS setting" in form.errors["recipients"][0]


def test_a_mail_server_quoting_the_login_it_refused_shows_no_password(settings):
    import base64

    from aiosmtpd.smtp import AuthResult

    from importer.notifications.senders import DeliveryError, send_email

    password = "smtp-pa55-8812"

    def refuse_quoting_the_login(server, session, envelope, mechanism, auth_data):
        sent = base64.b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password).decode()
        return AuthResult(
            success=False,
            handled=False,
            message=f"535 5.7.8 Authentication failed: AUTH {mechanism} {sent} "
            f"(user {auth_data.login.decode()}, password {auth_data.password.decode()})",
        )

    server = SmtpServer(authenticator=refuse_quoting_the_login, auth_require_tls=False).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "alerts", password
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    alert = Alert.objects.create(key="smtp-auth", kind=Alert.Kind.FAILED, subject="s", text="t")
    try:
        with pytest.raises(DeliveryError) as refused:
            send_email(email_channel(recipients="ops@example.com"), alert)
    finally:
        server.stop()

    said = refused.value.message
    assert "answered 535" in said and "user alerts" in said
    assert password not in said
    assert base64.b64encode(f"\0alerts\0{password}".encode()).decode() not in said


def test_a_task_sending_alerts_itself_queues_the_channels_left_once_one_has_hung(
    settings, monkeypatch
):
    # Each channel tried inline held the task that ended the import for its whole timeout:
    # with several hanging, its worker was gone for one timeout per channel.
    import socket
    import threading

    from importer.notifications.inline import delivering_here

    settings.ALERT_TIMEOUT = 1
    monkeypatch.setattr("importer.notifications.inline.in_cluster_worker", lambda: True)
    queued = []
    monkeypatch.setattr(work_queue, "enqueue_delivery", queued.append)
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    held = []

    def hang(listener):  # takes connections and never answers
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    for n, listener in enumerate(listeners):
        threading.Thread(target=hang, args=(listener,), daemon=True).start()
        webhook_channel(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", name=f"chat {n}")
    try:
        with delivering_here():
            alert = events.raise_alert(
                key="two-hanging", kind=Alert.Kind.FAILED, content=Content("s", "t")
            )
    finally:
        for listener in listeners:
            listener.close()

    assert len(held) == 1
    tried, left = sorted(alert.deliveries.all(), key=lambda d: -d.attempts)
    assert (tried.state, tried.attempts) == (Delivery.State.PENDING, 1)
    assert "did not answer within 1 s" in tried.error
    assert (left.state, left.attempts) == (Delivery.State.PENDING, 0)
    assert queued == [left.pk]  # its own task tries it
    for connection in held:
        connection.close()


def test_a_receiver_that_hangs_is_tried_by_one_alert_not_by_every_worker(settings):
    # Each hung send would hold a worker the imports share for the whole timeout.
    import socket
    import threading

    settings.ALERT_TIMEOUT = 1
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def hang():  # takes connections and never answers
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=hang, daemon=True).start()
    channel = webhook_channel(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
    deliveries = [
        Delivery.objects.create(
            channel=channel,
            alert=Alert.objects.create(key=f"a{n}", kind=Alert.Kind.FAILED, subject="s", text="t"),
        )
        for n in range(5)
    ]
    try:
        for delivery in deliveries:
            tasks.send_delivery(delivery.pk)
    finally:
        listener.close()

    assert len(held) == 1
    tried, *waiting = [Delivery.objects.get(pk=delivery.pk) for delivery in deliveries]
    assert (tried.state, tried.attempts) == (Delivery.State.PENDING, 1)
    assert "did not answer within 1 s" in tried.error
    # Waiting for their turn uses up none of their attempts.
    assert all((d.state, d.attempts) == (Delivery.State.PENDING, 0) for d in waiting)
    assert all(
        d.error.startswith("waiting its turn: the channel is failing (its last error: ")
        and "did not answer within 1 s" in d.error
        for d in waiting
    )
    channel.refresh_from_db()
    assert "did not answer within 1 s" in channel.last_error  # what the channel really did
    assert channel.probing_until is None  # the try is over: the next may come in its time
    for connection in held:
        connection.close()


def test_an_alert_on_its_last_attempt_waits_its_turn_and_is_sent_once_the_channel_answers(
    httpserver,
):
    httpserver.expect_request("/hook").respond_with_json({})
    channel = webhook_channel(httpserver.url_for("/hook"))
    # Another alert's attempt failed a moment ago; this one has one attempt left.
    NotificationChannel.objects.filter(pk=channel.pk).update(
        last_error="answered 503", last_error_at=timezone.now()
    )
    alert = Alert.objects.create(key="last", kind=Alert.Kind.FAILED, subject="s", text="t")
    delivery = Delivery.objects.create(channel=channel, alert=alert, attempts=MAX_ATTEMPTS - 1)

    tasks.send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (Delivery.State.PENDING, MAX_ATTEMPTS - 1)
    assert httpserver.log == []
    fire_due_retries()  # its turn comes: the channel is tried, and answers
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.SENT and len(httpserver.log) == 1


def test_an_outcome_refused_after_a_stall_while_ingesting_is_told_and_caught_up_if_lost(
    pushed_source, sandbox, httpserver, monkeypatch
):
    from importer import notifications

    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    sandbox.processing_seconds = 600
    execution = services.start_import(source=pushed_source)
    # Told stalled while its pages went, before Assets took them all.
    Alert.objects.create(
        key=f"execution-{execution.pk}-stalled", kind=Alert.Kind.STALLED, execution=execution
    )
    sandbox.faults.add(method="GET", path_contains="/status", status=401, times=-1)
    with monkeypatch.context() as lost:  # its alert task lost (a broker down at the time)
        lost.setattr(notifications, "notify_execution_stalled", lambda execution: None)
        services.refresh_status(execution=Execution.objects.get(pk=execution.pk))
    assert received(httpserver) == []

    services.look_after_imports()  # housekeeping raises it

    [payload] = received(httpserver)
    assert payload["event"] == "execution.stalled" and "401" in payload["text"]
    # Read again with a new token: no longer stalled.
    sandbox.faults.clear()
    services.refresh_status(execution=Execution.objects.get(pk=execution.pk))
    assert Execution.objects.get(pk=execution.pk).stalled_since is None


def test_an_alert_waiting_for_a_channel_that_stays_down_is_given_up_as_its_retries_would(
    httpserver,
):
    # A channel down for hours builds no backlog of alerts that arrive hours late.
    from importer.notifications.delivery import WAITING_GIVEN_UP_AFTER

    channel = webhook_channel(httpserver.url_for("/hook"))
    NotificationChannel.objects.filter(pk=channel.pk).update(
        last_error="answered 503: down", last_error_at=timezone.now()
    )
    alert = Alert.objects.create(key="old", kind=Alert.Kind.FAILED, subject="s", text="t")
    delivery = Delivery.objects.create(channel=channel, alert=alert)
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - WAITING_GIVEN_UP_AFTER - timedelta(minutes=1)
    )

    tasks.send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.FAILED
    assert delivery.error.startswith("gave up after waiting ")
    assert "failed throughout (its last error: answered 503: down)" in delivery.error
    assert httpserver.log == []


def test_the_end_of_an_import_told_stalled_is_caught_up_if_its_alert_was_lost(
    pushed_source, sandbox, httpserver, monkeypatch
):
    from importer import notifications

    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))  # failures only: not every successful import
    with monkeypatch.context() as lost:  # its alert task lost (a broker down at the time)
        lost.setattr(notifications, "notify_execution_finished", lambda execution: None)
        execution = services.start_import(source=pushed_source)
    Alert.objects.create(
        key=f"execution-{execution.pk}-stalled", kind=Alert.Kind.STALLED, execution=execution
    )

    services.look_after_imports()

    [payload] = received(httpserver)
    assert payload["event"] == "execution.done" and "it went on to the end" in payload["text"]


def test_a_misspelled_locator_is_noted_on_the_import_and_in_its_alert(
    make_source, sandbox, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"), notify_on_done=True)
    source = make_source(page_size=50)
    source.mapping["mapping"]["objectTypeMappings"][0]["attributesMapping"][1][
        "attributeLocators"
    ] = ["host_name"]
    source.save()

    execution = services.start_import(source=services.push_mapping(source=source))

    execution.refresh_from_db()
    assert execution.state == Execution.State.DONE  # the objects arrive, without a hostname
    assert execution.notice.startswith(
        "No record of the first page holds 'host_name' (attribute Hostname): if it is "
        "misspelled in the mapping's attribute locators"
    )
    [done] = received(httpserver)
    assert "Note: No record of the first page holds 'host_name'" in done["text"]


# --- failure streaks ---------------------------------------------------------------------------

DEAD_PORT_URL = "http://127.0.0.1:19399/api/computers"  # nothing listens there


def fail_on_a_dead_port(source, settings, runs: int) -> list[Execution]:
    """Point the source at a port where nothing listens and run it `runs` times."""
    settings.CHUNK_MAX_ATTEMPTS = 1
    type(source).objects.filter(pk=source.pk).update(source_url=DEAD_PORT_URL)
    source.refresh_from_db()
    failed = [services.start_import(source=source) for _ in range(runs)]
    assert {execution.state for execution in failed} == {Execution.State.FAILED}
    return failed


def mend(source, inventory) -> None:
    type(source).objects.filter(pk=source.pk).update(
        source_url=f"{inventory.base_url}/api/computers"
    )
    source.refresh_from_db()


def test_a_source_failing_run_after_run_is_sent_once_and_the_repeats_are_held_back(
    admin_client, pushed_source, sandbox, inventory, smtp_server, httpserver, settings
):
    httpserver.expect_request("/hook").respond_with_json({})
    email_channel()
    webhook_channel(httpserver.url_for("/hook"))
    succeeded_hours_ago(pushed_source, 1)

    fail_on_a_dead_port(pushed_source, settings, runs=3)

    assert len(smtp_server.messages) == 1
    [payload] = received(httpserver)
    assert payload["subject"] == "assets-sync: the manual import of inventory failed"
    assert payload["failed_runs"] == 1
    # The repeats are in the Alerts list, sent to nobody, saying why.
    held_back = Alert.objects.filter(kind=Alert.Kind.FAILED, deliveries__isnull=True)
    assert held_back.count() == 2
    assert all("Not sent: this streak of failures was sent" in alert.text for alert in held_back)
    page = admin_client.get(reverse("admin:importer_alert_changelist")).content.decode()
    assert page.count("held back: its failure streak was sent already") == 2


def test_a_failure_after_the_repeat_interval_is_sent_with_the_streak_it_belongs_to(
    pushed_source, sandbox, inventory, httpserver, settings
):
    settings.ALERT_REPEAT_HOURS = 4
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    success = succeeded_hours_ago(pushed_source, 30)
    first, *_ = fail_on_a_dead_port(pushed_source, settings, runs=2)
    Alert.objects.update(created_at=timezone.now() - timedelta(hours=4, minutes=1))

    fail_on_a_dead_port(pushed_source, settings, runs=1)

    told_first, told_again = received(httpserver)
    first.refresh_from_db()
    assert told_again["subject"] == (
        "assets-sync: the manual import of inventory failed (3rd failure in a row)"
    )
    assert (
        f"Failing since {when_text(first.finished_at)}: 3 failed runs in a row; "
        f"last success: {when_text(success.finished_at)}." in told_again["text"]
    )
    assert told_again["failed_runs"] == 3
    assert told_again["failing_since"] == first.finished_at.isoformat()


def test_with_no_repeat_interval_every_failure_is_sent_with_its_count(
    pushed_source, sandbox, inventory, httpserver, settings
):
    settings.ALERT_REPEAT_HOURS = 0
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))

    fail_on_a_dead_port(pushed_source, settings, runs=3)

    subjects = [payload["subject"] for payload in received(httpserver)]
    assert subjects == [
        "assets-sync: the manual import of inventory failed",
        "assets-sync: the manual import of inventory failed (2nd failure in a row)",
        "assets-sync: the manual import of inventory failed (3rd failure in a row)",
    ]
    assert "last success: never." in received(httpserver)[-1]["text"]


def test_a_refused_start_counts_in_the_streak_of_failures(
    client, pushed_source, sandbox, inventory, httpserver, settings
):
    settings.ALERT_REPEAT_HOURS = 0
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    sandbox.faults.add(method="POST", path_contains="/executions", status=401, times=-1)

    trigger_schedule(client, pushed_source)

    failed, refused = received(httpserver)
    assert refused["event"] == "execution.refused"
    assert refused["subject"].endswith("was refused (2nd failure in a row)")
    assert "2 failed runs in a row" in refused["text"]


def test_a_source_that_works_again_after_failing_is_told_recovered_by_every_channel(
    pushed_source, sandbox, inventory, smtp_server, httpserver, settings
):
    # Neither channel asks for every success; one does, and hears it once, as "recovered".
    httpserver.expect_request("/every-run").respond_with_json({})
    email_channel()
    webhook_channel(httpserver.url_for("/every-run"), notify_on_done=True)
    success = succeeded_hours_ago(pushed_source, 30)
    first, *_ = fail_on_a_dead_port(pushed_source, settings, runs=3)
    mend(pushed_source, inventory)

    done = services.start_import(source=pushed_source)

    assert done.state == Execution.State.DONE
    events_told = [payload["event"] for payload in received(httpserver)]
    assert events_told == ["execution.done", "execution.failed", "source.recovered"]
    recovered = received(httpserver)[-1]
    first.refresh_from_db()
    assert recovered["subject"] == "assets-sync: inventory has recovered"
    assert (
        f"It had been failing since {when_text(first.finished_at)}: 3 failed runs in a row."
        in recovered["text"]
    )
    assert f"The success before was at {when_text(success.finished_at)}." in recovered["text"]
    assert recovered["execution"]["id"] == done.pk and recovered["failed_runs"] == 3
    failed_mail, recovered_mail = smtp_server.messages
    assert recovered_mail[2]["Subject"] == "assets-sync: inventory has recovered"
    # The next success after it ends no streak: nothing more to the failure-only channel.
    services.start_import(source=pushed_source)
    assert len(smtp_server.messages) == 2


def test_a_recovery_whose_alert_task_was_lost_is_caught_up_once(
    pushed_source, sandbox, inventory, httpserver, settings, monkeypatch
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    mend(pushed_source, inventory)
    monkeypatch.setattr(notifications, "notify_execution_finished", lambda execution: None)
    services.start_import(source=pushed_source)

    services.look_after_imports()
    services.look_after_imports()

    events_told = [payload["event"] for payload in received(httpserver)]
    assert events_told == ["execution.failed", "source.recovered"]


def test_a_stale_source_that_recovers_is_told_when_an_import_was_due_and_its_last_success(
    pushed_source, sandbox, httpserver
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    before = succeeded_hours_ago(pushed_source, 27)
    services.look_after_imports()
    [stale] = received(httpserver)

    services.start_import(source=pushed_source)
    services.look_after_imports()

    recovered = received(httpserver)[-1]
    due = stale["due_at"]
    assert recovered["due_at"] == due
    assert (
        f"an import was due by {when_text(timezone.datetime.fromisoformat(due))}"
        in (recovered["text"])
    )
    assert f"The success before was at {when_text(before.finished_at)}." in recovered["text"]
    assert "stale since" not in recovered["text"]


def test_a_source_both_stale_and_failing_that_recovers_is_told_once_naming_both(
    pushed_source, sandbox, inventory, httpserver, settings
):
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    daily_schedule(pushed_source)
    succeeded_hours_ago(pushed_source, 27)
    services.look_after_imports()
    fail_on_a_dead_port(pushed_source, settings, runs=2)
    mend(pushed_source, inventory)

    services.start_import(source=pushed_source)
    services.look_after_imports()

    events_told = [payload["event"] for payload in received(httpserver)]
    assert events_told == ["source.stale", "execution.failed", "source.recovered"]
    recovered = received(httpserver)[-1]
    assert "It had been failing since " in recovered["text"]
    assert "It was stale: an import was due by " in recovered["text"]


def test_no_recovered_alert_follows_a_scheduled_run_refused_while_a_manual_import_ran(
    client, pushed_source, sandbox, inventory, httpserver
):
    # The scheduled run is refused because the manual import is open: the source did not
    # fail, so the manual import's DONE ends no failure streak.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    manual = services.start_import(source=pushed_source)  # still running: retries wait
    trigger_schedule(client, pushed_source)
    inventory.faults.clear()

    manual = run_due_retries(manual)

    assert manual.state == Execution.State.DONE, manual.error
    [refused] = received(httpserver)
    assert refused["event"] == "execution.refused"
    assert "in a row" not in refused["subject"] and "failed_runs" not in refused
    assert not Alert.objects.filter(kind=Alert.Kind.RECOVERED).exists()


def test_a_scheduled_run_refused_while_a_manual_import_runs_is_no_failure_in_a_row(
    client, pushed_source, sandbox, inventory, httpserver, settings
):
    # Told on its own, though the source failed before: not "2nd failure in a row", and not
    # held back as a repeat of that streak.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    attempts = settings.CHUNK_MAX_ATTEMPTS
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    mend(pushed_source, inventory)
    settings.CHUNK_MAX_ATTEMPTS = attempts
    inventory.faults.add(method="GET", path_contains="/api/computers", status=503, times=-1)
    services.start_import(source=pushed_source)  # still running: retries wait

    trigger_schedule(client, pushed_source)

    failed, refused = received(httpserver)
    assert refused["event"] == "execution.refused"
    assert refused["subject"] == "assets-sync: the scheduled import of inventory was refused"


def test_a_start_refused_because_assets_was_not_told_the_last_one_ended_is_no_failure_in_a_row(
    client, pushed_source, sandbox, inventory, httpserver, settings
):
    # The failure's report to Assets was cut off: Assets counts that import as running and
    # refuses the scheduled run with 409. That import's failure is the streak; the refusal
    # adds nothing to it.
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    sandbox.faults.add(method="POST", path_contains="/history/failed", drop=True, times=-1)
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    sandbox.faults.add(method="POST", path_contains="/executions", status=409, times=1)
    trigger_schedule(client, pushed_source)
    sandbox.faults.clear()
    mend(pushed_source, inventory)

    services.start_import(source=pushed_source)

    failed, refused, recovered = received(httpserver)
    assert "has not yet been told" in refused["execution"]["reason"]
    assert "in a row" not in refused["subject"]
    assert recovered["event"] == "source.recovered" and recovered["failed_runs"] == 1


def test_a_failure_alert_no_channel_received_does_not_silence_the_next_failure(
    pushed_source, sandbox, inventory, httpserver, settings
):
    # The receiver was gone (410: given up at once) when the first failure was sent, and is
    # back: nobody heard of the streak, so the next failure is sent, within
    # ALERT_REPEAT_HOURS too.
    settings.ALERT_REPEAT_HOURS = 4
    httpserver.expect_oneshot_request("/hook").respond_with_data("gone", status=410)
    httpserver.expect_request("/hook").respond_with_json({})
    webhook_channel(httpserver.url_for("/hook"))
    fail_on_a_dead_port(pushed_source, settings, runs=1)
    assert Delivery.objects.get().state == Delivery.State.FAILED

    fail_on_a_dead_port(pushed_source, settings, runs=1)
    fire_due_retries()  # the channel failed last: the alert waits its turn, then goes

    subjects = [payload["subject"] for payload in received(httpserver)]
    assert subjects == [
        "assets-sync: the manual import of inventory failed",
        "assets-sync: the manual import of inventory failed (2nd failure in a row)",
        "assets-sync: 1 alert could not be delivered to the channel 'chat'",
    ]
    assert Delivery.objects.filter(state=Delivery.State.SENT).count() == 2


def test_an_alert_counts_the_nested_items_left_out_beside_the_records_left_out(make_source):
    execution = Execution.objects.create(
        source=make_source(),
        state=Execution.State.FAILED,
        records_fetched=30,
        records_submitted=30,
        items_skipped=2,
    )

    content = execution_content(execution, Alert.Kind.FAILED)

    assert (
        "Records: 30 fetched, 30 submitted, 0 left out (and 2 nested items of records sent); "
        "0 pages submitted." in content.text
    )
    facts = dict(alert_facts(Alert(kind=Alert.Kind.FAILED, details=content.details)))
    assert facts["Records"] == (
        "30 fetched, 30 submitted, 0 left out (and 2 nested items of records sent)"
    )


# --- a channel back after an outage ----------------------------------------------------------


def alert_through(channel, subject: str, *, source=None) -> Alert:
    """An alert for `channel` alone, sent at once (tasks run inline)."""
    return events.raise_alert(
        key=subject,
        kind=Alert.Kind.FAILED,
        source=source,
        content=Content(subject, "t", {"event": "execution.failed"}),
        channels=[channel],
    )


def an_outage(httpserver, channel, *subjects: str, source=None) -> list[Alert]:
    """The receiver answers 503 while these alerts are raised, 47 and 5 minutes ago, ...: the
    first is given up after its retries, the others after waiting their turn for too long;
    then it answers again."""
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    alerts = [alert_through(channel, subject, source=source) for subject in subjects]
    for minutes, alert in zip((47, 5, 4, 3), alerts, strict=False):
        Alert.objects.filter(pk=alert.pk).update(
            created_at=timezone.now() - timedelta(minutes=minutes)
        )
    Delivery.objects.filter(alert__in=alerts[1:]).update(
        created_at=timezone.now() - WAITING_GIVEN_UP_AFTER - timedelta(minutes=1)
    )
    while fire_due_retries():
        pass
    given_up = Delivery.objects.filter(alert__in=alerts, state=Delivery.State.FAILED)
    assert given_up.count() == len(alerts)
    httpserver.clear_all_handlers()
    httpserver.clear_log()
    httpserver.expect_request("/hook").respond_with_json({})
    return [Alert.objects.get(pk=alert.pk) for alert in alerts]


def test_a_webhook_back_after_an_outage_gets_the_next_alert_then_one_message_naming_those_it_missed(
    make_source, httpserver, settings
):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TIME_ZONE = "Europe/Berlin"
    channel = webhook_channel(httpserver.url_for("/hook"))
    first, last = an_outage(
        httpserver,
        channel,
        "assets-sync: the scheduled import of inventory failed",
        "assets-sync: inventory is stale",
        source=make_source(),
    )

    alert_through(channel, "assets-sync: the manual import of inventory is done")

    told = received(httpserver)
    assert [payload["subject"] for payload in told] == [
        "assets-sync: the manual import of inventory is done",
        "assets-sync: 2 alerts could not be delivered to the channel 'chat'",
    ]
    missed = told[1]
    assert missed["event"] == "channel.missed"
    assert missed["text"].startswith(
        "2 alerts could not be delivered to the channel 'chat' between "
        f"{when_text(first.created_at)} and {when_text(last.created_at)} (time zone Europe/Berlin)"
    )
    assert when_text(first.created_at).endswith(("CET", "CEST"))
    assert (
        f"- the scheduled import of inventory failed (inventory, {when_text(first.created_at)})"
        in missed["text"]
    )
    assert f"- inventory is stale (inventory, {when_text(last.created_at)})" in missed["text"]
    assert f"Every alert: {PUBLIC}/admin/importer/alert/" in missed["text"]
    assert [alert["id"] for alert in missed["missed"]["alerts"]] == [first.pk, last.pk]


def test_a_long_outage_is_told_as_the_first_twenty_alerts_and_how_many_more(httpserver, settings):
    settings.ALERT_BURST_LIMIT = 0  # each alert on its own: their summary is told apart
    channel = webhook_channel(httpserver.url_for("/hook"))
    an_outage(httpserver, channel, *(f"assets-sync: alert {n}" for n in range(23)))

    alert_through(channel, "assets-sync: the next one")

    _, missed = received(httpserver)
    assert (
        missed["subject"] == "assets-sync: 23 alerts could not be delivered to the channel 'chat'"
    )
    listed = [line for line in missed["text"].splitlines() if line.startswith("- ")]
    assert listed[0].startswith("- alert 0 (no source, ") and len(listed) == 20
    assert "\nand 3 more.\n" in missed["text"]


def test_a_channel_recovering_again_with_nothing_given_up_since_is_told_nothing_missed(
    httpserver,
):
    channel = webhook_channel(httpserver.url_for("/hook"))
    an_outage(httpserver, channel, "assets-sync: lost")
    alert_through(channel, "assets-sync: back")
    assert len(received(httpserver)) == 2  # the alert, and what was missed
    httpserver.clear_all_handlers()
    httpserver.clear_log()
    # Down again for a moment: the next alert gets through on its retry.
    httpserver.expect_oneshot_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_request("/hook").respond_with_json({})

    alert_through(channel, "assets-sync: later")
    fire_due_retries()

    assert [payload["subject"] for payload in received(httpserver)] == [
        "assets-sync: later",
        "assets-sync: later",
    ]
    assert Alert.objects.filter(kind=Alert.Kind.MISSED).count() == 1


def test_a_test_message_neither_tells_what_a_channel_missed_nor_counts_as_missed(httpserver):
    # It tells whether the channel works now; the next alert tells what was missed.
    channel = webhook_channel(httpserver.url_for("/hook"))
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    notifications.send_check_message(channel=channel)  # fails, and is given up at once
    httpserver.clear_all_handlers()
    an_outage(httpserver, channel, "assets-sync: lost")

    notifications.send_check_message(channel=channel)
    assert [payload["event"] for payload in received(httpserver)] == ["test"]
    alert_through(channel, "assets-sync: back")

    *_, missed = received(httpserver)
    assert missed["subject"] == "assets-sync: 1 alert could not be delivered to the channel 'chat'"
    assert "- lost (no source, " in missed["text"] and "test message" not in missed["text"]


def test_two_workers_succeeding_on_a_channel_at_once_tell_what_it_missed_once(
    httpserver, monkeypatch
):
    import threading
    from types import SimpleNamespace

    from django.db import connections

    from importer.notifications import missed

    channel = webhook_channel(httpserver.url_for("/hook"))
    an_outage(httpserver, channel, "assets-sync: lost", "assets-sync: lost too")
    notifications.send_check_message(channel=channel)  # it answers again
    deliveries = [
        Delivery.objects.create(
            channel=channel,
            alert=Alert.objects.create(key=f"now-{n}", kind=Alert.Kind.FAILED, subject=f"now {n}"),
        )
        for n in range(2)
    ]
    # Both workers have read what the channel missed before either claims it.
    both_read = threading.Barrier(2, timeout=10)

    def now_once_both_read():
        both_read.wait()
        return timezone.now()

    monkeypatch.setattr(missed, "timezone", SimpleNamespace(now=now_once_both_read))

    def worker(delivery_id: int) -> None:
        try:
            tasks.send_delivery(delivery_id)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=worker, args=(d.pk,)) for d in deliveries]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert sorted(payload["subject"] for payload in received(httpserver)) == [
        "assets-sync: 2 alerts could not be delivered to the channel 'chat'",
        "assets-sync: test message",
        "now 0",
        "now 1",
    ]
    assert Alert.objects.filter(kind=Alert.Kind.MISSED).count() == 1


def test_alerts_given_up_before_the_upgrade_are_not_told_missed_after_it(httpserver):
    # Some may be months old; staff saw them on the channel's page.
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("importer", "0030_nested_items_left_out")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        old_channel = old_apps.get_model("importer", "NotificationChannel").objects.create(
            name="chat", kind="webhook", webhook_url=httpserver.url_for("/hook")
        )
        old_alert = old_apps.get_model("importer", "Alert").objects.create(
            key="old", kind="failed", subject="assets-sync: old"
        )
        old_apps.get_model("importer", "Delivery").objects.create(
            alert=old_alert, channel=old_channel, state="FAILED"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    httpserver.expect_request("/hook").respond_with_json({})

    alert_through(NotificationChannel.objects.get(), "assets-sync: after the upgrade")

    assert [payload["subject"] for payload in received(httpserver)] == [
        "assets-sync: after the upgrade"
    ]


# --- many alerts at once -----------------------------------------------------------------------


def test_twenty_sources_failing_at_once_are_told_one_by_one_up_to_the_limit_then_in_one_summary(
    admin_client, make_source, sandbox, smtp_server, httpserver, settings
):
    # Assets goes down at night: every source's import fails within a minute. On call gets the
    # first few alerts, then one message naming the others, not twenty mails and posts.
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.CHUNK_MAX_ATTEMPTS = 1
    httpserver.expect_request("/slack").respond_with_json({})
    email_channel()
    webhook_channel(httpserver.url_for("/slack"), webhook_format="slack")
    sources = [
        services.push_mapping(source=make_source(name=f"site-{n:02d}", import_source_id=f"s{n}"))
        for n in range(20)
    ]
    sandbox.faults.add(method="POST", path_contains="/data", status=503, times=-1)

    for source in sources:
        services.start_import(source=source)

    first = [mail["Subject"] for _, _, mail in smtp_server.messages]
    assert first == [f"assets-sync: the manual import of site-{n:02d} failed" for n in range(5)]
    assert len(received(httpserver)) == 5
    # The others are in the Alerts list, each saying it waits for the summary.
    page = admin_client.get(reverse("admin:importer_alert_changelist")).content.decode()
    assert page.count("2 folded into a summary") == 20 - 5

    services.look_after_imports()  # the alerts are still coming: no summary yet
    assert len(smtp_server.messages) == 5
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    services.look_after_imports()
    services.look_after_imports()

    *_, summary = smtp_server.messages
    assert len(smtp_server.messages) == 5 + 1
    assert summary[2]["Subject"] == "assets-sync: 15 more alerts: 15 failed imports"
    body = summary[2].get_content()
    assert body.startswith("15 more alerts came ")
    assert "too many at once to send one by one" in body
    assert "- the manual import of site-05 failed (site-05, " in body
    # Each with the first words of its reason: the same cause shows at a glance.
    assert "503" in body.split("(site-05, ")[1].splitlines()[0]
    assert "- the manual import of site-19 failed (site-19, " in body
    assert f"Every alert: {PUBLIC}/admin/importer/alert/" in body
    *_, posted = received(httpserver)
    assert posted["text"].startswith("*assets-sync: 15 more alerts: 15 failed imports*")
    assert f"<{PUBLIC}/admin/importer/alert/|Open in assets-sync>" in posted["text"]
    # A source failing after the storm is told on its own again.
    settings.ALERT_REPEAT_HOURS = 0
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    services.start_import(source=sources[0])
    assert smtp_server.messages[-1][2]["Subject"].startswith(
        "assets-sync: the manual import of site-00 failed"
    )
