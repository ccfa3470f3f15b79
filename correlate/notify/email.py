"""Email over SMTP (stdlib ``smtplib`` + ``email.message``): plain text with an HTML alternative.

Messages about one incident form a thread: ``open`` carries ``Message-ID: <warroom-{id}@{domain}>``
and later notices (update, acknowledged, resolved) refer to it with ``In-Reply-To``/``References``.
SMTP 4xx replies, disconnects and network errors are retryable; 5xx replies (unknown recipient, auth
failure) are final.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from correlate.notify.base import STATUS_TAGS, Attempt, IncidentNotice, attempt, describe, now, status_line
from warroom.errors import ConfigError


def _thread_id(notice: IncidentNotice, domain: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in notice.incident_id)
    return f"<warroom-{safe}@{domain}>"


def _rows(notice: IncidentNotice) -> list[tuple[str, str]]:
    return [
        ("Severity", notice.severity.value),
        ("Status", notice.status),
        ("Services", ", ".join(notice.services) or "-"),
        ("Root cause", notice.root_cause or "unknown"),
        ("Alerts", str(notice.alert_count)),
        ("Started", notice.started_at.isoformat()),
    ]


def render_text(notice: IncidentNotice) -> str:
    lines = [notice.title, ""]
    if status_line(notice):
        lines += [status_line(notice), ""]
    lines += [f"{name + ':':<12}{value}" for name, value in _rows(notice)]
    if notice.summary:
        lines += ["", notice.summary]
    if notice.url:
        lines += ["", f"Incident: {notice.url}"]
    return "\n".join(lines) + "\n"


def render_html(notice: IncidentNotice) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><th align='left'>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in _rows(notice)
    )
    parts = [f"<h2>{e(notice.title)}</h2>"]
    if status_line(notice):
        parts.append(f"<p><strong>{e(status_line(notice))}</strong></p>")
    parts.append(f"<table>{rows}</table>")
    if notice.summary:
        parts.append("<p>" + e(notice.summary).replace("\n", "<br>") + "</p>")
    if notice.url:
        parts.append(f'<p><a href="{e(notice.url, quote=True)}">Open incident</a></p>')
    return "<html><body>" + "".join(parts) + "</body></html>\n"


def build_message(
    notice: IncidentNotice, sender: str, recipients: Sequence[str], domain: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[{notice.severity.value.upper()}] {STATUS_TAGS[notice.status]}: {notice.title}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now())
    thread = _thread_id(notice, domain)
    if notice.status == "open":
        msg["Message-ID"] = thread
    else:
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["In-Reply-To"] = thread
        msg["References"] = thread
    msg["X-Warroom-Incident"] = notice.incident_id
    msg.set_content(render_text(notice))
    msg.add_alternative(render_html(notice), subtype="html")
    return msg


@dataclass(frozen=True)
class EmailReceiver:
    """Sends each notice as one email. The password is kept out of ``repr``."""

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str = "email"
    timeout: float = 10.0
    domain: str = "warroom.local"

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ConfigError("email.recipients", "at least one recipient is needed")
        if not self.sender:
            raise ConfigError("email.sender", "must not be empty")

    def send(self, notice: IncidentNotice) -> Attempt:
        msg = build_message(notice, self.sender, self.recipients, self.domain)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            transient = bool(codes) and all(400 <= c < 500 for c in codes)
            return attempt(
                self.name,
                notice,
                ok=False,
                error=f"recipients refused: {exc.recipients}",
                retryable=transient,
            )
        except smtplib.SMTPResponseException as exc:
            return attempt(
                self.name, notice, ok=False, error=describe(exc), retryable=400 <= exc.smtp_code < 500
            )
        except smtplib.SMTPNotSupportedError as exc:  # e.g. STARTTLS asked for, not offered: a config fault
            return attempt(self.name, notice, ok=False, error=describe(exc), retryable=False)
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections
            return attempt(self.name, notice, ok=False, error=describe(exc), retryable=True)
        if refused:
            # Some recipients got it; retrying would duplicate it for them, so report and stop.
            return attempt(self.name, notice, ok=True, error=f"some recipients refused: {refused}")
        return attempt(self.name, notice, ok=True)
