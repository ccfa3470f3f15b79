"""Slack incoming webhook: one Block Kit message per notice.

Header (title with severity and status), fields for severity, status, services, root cause, alert
count and start time, who acknowledged/resolved it and why (when known), the summary, and a button
to the incident page. ``text`` is the fallback shown in push notifications. Slack answers 200
``ok``; 4xx (``invalid_payload``, ``no_service``, ``channel_is_archived``) are final, 429 carries
``Retry-After``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from correlate.notify._http import post
from correlate.notify.base import STATUS_TAGS, Attempt, IncidentNotice, status_line

_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
_STATUS_EMOJI = {"resolved": ":white_check_mark:", "acknowledged": ":eyes:"}
_ACTIVE = ("open", "update")  # nobody has taken the incident yet: the button is red
_HEADER_CHARS = 150  # Block Kit limit for a header's plain_text
_SECTION_CHARS = 3000  # Block Kit limit for a section's text
_FIELD_CHARS = 2000  # Block Kit limit for one field


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(notice: IncidentNotice) -> dict[str, Any]:
    """The webhook body for ``notice`` (Block Kit)."""
    sev = notice.severity.value
    icon = _STATUS_EMOJI.get(notice.status) or _EMOJI.get(sev, "")
    header = f"[{STATUS_TAGS[notice.status]}] {notice.title}"
    fields = [
        ("Severity", f"{icon} {sev}".strip()),
        ("Status", notice.status),
        ("Services", ", ".join(notice.services) or "—"),
        ("Root cause", notice.root_cause or "unknown"),
        ("Alerts", str(notice.alert_count)),
        ("Started", notice.started_at.strftime("%Y-%m-%d %H:%M:%SZ")),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(header, _HEADER_CHARS), "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{value}", _FIELD_CHARS)} for name, value in fields
            ],
        },
    ]
    who = status_line(notice)
    if who:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(who, _FIELD_CHARS)}]})
    if notice.summary:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(notice.summary, _SECTION_CHARS)}}
        )
    if notice.url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open incident"},
                        "url": notice.url,
                        "action_id": "open_incident",
                        **({"style": "danger"} if sev == "critical" and notice.status in _ACTIVE else {}),
                    }
                ],
            }
        )
    return {"text": f"{header} ({sev}; {', '.join(notice.services)})", "blocks": blocks}


@dataclass(frozen=True)
class SlackReceiver:
    """Posts to a Slack incoming webhook. The URL is a secret: kept out of ``repr`` and attempts."""

    webhook_url: str = field(repr=False)
    name: str = "slack"
    timeout: float = 10.0

    def send(self, notice: IncidentNotice) -> Attempt:
        body = json.dumps(slack_payload(notice)).encode()
        return post(
            self.name,
            notice,
            self.webhook_url,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=self.timeout,
        )
