"""The body a webhook receives, in the format its channel asks for: generic JSON (the text and
the alert's fields), a Slack message, or an Adaptive Card for Microsoft Teams Workflows.

Every format is built from the alert's subject, text and details alone, which were scrubbed of
secrets when the alert was raised: nothing here reads a channel's URL or secret header.
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

from importer.models import Alert, NotificationChannel
from importer.notifications.messages import iso_time, when_text
from importer.progress import nested_items_left_out

Format = NotificationChannel.WebhookFormat
BUTTON_TITLE = "Open in assets-sync"


def webhook_payload(alert: Alert, webhook_format: str = Format.GENERIC) -> dict:
    """The JSON body for a channel of this format."""
    return BUILDERS[webhook_format](alert)


def generic_payload(alert: Alert) -> dict:
    """`text` for people; the structured fields beside it, for any receiver of JSON."""
    return {
        "text": alert.text,
        "subject": alert.subject,
        "alert_id": alert.pk,
        "kind": alert.kind,
        "occurred_at": iso_time(alert.created_at),
        **alert.details,
    }


def slack_payload(alert: Alert) -> dict:
    """A Slack incoming-webhook message: the subject in bold, the text, the link.

    Slack reads `text` as mrkdwn, where &, < and > must be escaped (they start links and
    mentions); a link is written <url|label>.
    """
    lines = [f"*{_slack_escape(alert.subject)}*", _slack_escape(alert.text)]
    link = alert_link(alert)
    if link:
        lines.append(f"<{link}|{BUTTON_TITLE}>")
    return {"text": "\n".join(lines)}


def teams_payload(alert: Alert) -> dict:
    """A message with one Adaptive Card, as a Teams Workflows "When a Teams webhook request is
    received" flow (template "Send webhook alerts to a channel") posts it to a channel.

    The shape (a `message` whose `attachments` hold the card with contentType
    application/vnd.microsoft.card.adaptive) follows Microsoft's "Microsoft Teams - Webhook"
    connector reference, https://learn.microsoft.com/en-us/connectors/teams/#microsoft-teams-webhook,
    and the Workflows notes of Argo CD's "Teams Workflows" service,
    https://argo-cd.readthedocs.io/en/release-3.3/operator-manual/notifications/services/teams-workflows/.
    Office 365 connectors ("incoming webhooks"), which took `{"text": …}`, are retired.
    """
    # One TextBlock per line: Teams does not always honour a single newline inside a block.
    body: list[dict] = [
        {
            "type": "TextBlock",
            "text": alert.subject,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        *(
            {"type": "TextBlock", "text": line, "wrap": True, "spacing": "Small"}
            for line in alert.text.splitlines()
            if line.strip()
        ),
    ]
    facts = alert_facts(alert)
    if facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": title, "value": value} for title, value in facts],
            }
        )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [],
    }
    link = alert_link(alert)
    if link:
        card["actions"].append({"type": "Action.OpenUrl", "title": BUTTON_TITLE, "url": link})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


BUILDERS = {
    Format.GENERIC: generic_payload,
    Format.SLACK: slack_payload,
    Format.TEAMS: teams_payload,
}


def alert_link(alert: Alert) -> str:
    """The page that tells more: the execution's, else the source's, else (missed alerts, a
    summary) the Alerts list; empty if none."""
    details = alert.details or {}
    for part in ("execution", "source", "missed", "summary"):
        url = (details.get(part) or {}).get("url")
        if url:
            return url
    return ""


def alert_facts(alert: Alert) -> list[tuple[str, str]]:
    """The key details, as (title, value), of whatever this kind of alert carries."""
    details = alert.details or {}
    source = details.get("source") or {}
    execution = details.get("execution") or {}
    schedule = details.get("schedule") or {}
    facts = []
    if source.get("name"):
        facts.append(("Source", source["name"]))
    if execution.get("state"):
        facts.append(("State", execution["state"]))
    if "records_fetched" in execution:
        facts.append(
            (
                "Records",
                f"{execution['records_fetched']} fetched, "
                f"{execution.get('records_submitted', 0)} submitted, "
                f"{execution.get('records_left_out', 0)} left out"
                + (
                    f" (and {nested_items_left_out(execution['items_left_out'])})"
                    if execution.get("items_left_out")
                    else ""
                ),
            )
        )
    if execution.get("trigger"):
        facts.append(("Trigger", execution["trigger"]))
    if schedule.get("frequency"):
        facts.append(("Schedule", str(schedule["frequency"]).lower()))
    # A first failure is its own streak: "failing since" tells nothing more there.
    recovered = details.get("event") == "source.recovered"
    if details.get("failing_since") and (recovered or details.get("failed_runs", 0) > 1):
        facts.append(("Failing since", when_text(parse_datetime(details["failing_since"]))))
        facts.append(("Failed runs in a row", str(details["failed_runs"])))
    for key, title in (
        ("last_success_at", "Last success"),
        ("previous_success_at", "Success before"),
        ("due_at", "Due by"),
    ):
        if key in details and (details[key] or key != "due_at"):
            facts.append((title, when_text(parse_datetime(details[key] or ""))))
    facts.append(("When", when_text(alert.created_at)))
    return facts


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
