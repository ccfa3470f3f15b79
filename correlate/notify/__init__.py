"""Notifications: one grouped message per incident to Slack, PagerDuty, signed webhooks and email.

``deliver(receiver, notice)`` owns retries and the attempt log; receivers only send once.
"""

from correlate.notify.base import Attempt, IncidentNotice, NoticeStatus, Receiver
from correlate.notify.delivery import AttemptLog, deliver, deliver_all
from correlate.notify.email import EmailReceiver
from correlate.notify.pagerduty import PagerDutyReceiver
from correlate.notify.slack import SlackReceiver
from correlate.notify.webhook import WebhookReceiver, verify_signature

__all__ = [
    "Attempt",
    "AttemptLog",
    "EmailReceiver",
    "IncidentNotice",
    "NoticeStatus",
    "PagerDutyReceiver",
    "Receiver",
    "SlackReceiver",
    "WebhookReceiver",
    "deliver",
    "deliver_all",
    "verify_signature",
]
