"""Notifications: one grouped message per incident to Slack, PagerDuty, signed webhooks and email.

Receivers only send once. ``deliver(receiver, notice)`` retries in memory for one-off sends; the
:class:`Outbox` (state database) with its :class:`Dispatcher` is the durable path: ordered per
incident, retried across outages and restarts, every attempt recorded. :func:`build_router` turns
the config file's ``receivers``/``teams``/``routes`` tables into the receivers for an incident.
"""

from correlate.notify.base import Attempt, IncidentNotice, NoticeStatus, Receiver
from correlate.notify.delivery import AttemptLog, deliver, deliver_all
from correlate.notify.email import EmailReceiver
from correlate.notify.outbox import Dispatcher, Outbox, OutboxItem
from correlate.notify.pagerduty import PagerDutyReceiver
from correlate.notify.routing import Route, Router, build_router
from correlate.notify.slack import SlackReceiver
from correlate.notify.webhook import WebhookReceiver, verify_signature

__all__ = [
    "Attempt",
    "AttemptLog",
    "Dispatcher",
    "EmailReceiver",
    "IncidentNotice",
    "NoticeStatus",
    "Outbox",
    "OutboxItem",
    "PagerDutyReceiver",
    "Receiver",
    "Route",
    "Router",
    "SlackReceiver",
    "WebhookReceiver",
    "build_router",
    "deliver",
    "deliver_all",
    "verify_signature",
]
