"""Notifications against real local servers: HTTP (ThreadingHTTPServer) and a minimal SMTP responder."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from correlate.notify import (
    Attempt,
    AttemptLog,
    EmailReceiver,
    IncidentNotice,
    PagerDutyReceiver,
    Receiver,
    SlackReceiver,
    WebhookReceiver,
    deliver,
    deliver_all,
    verify_signature,
)
from correlate.notify.base import attempt
from warroom.errors import ConfigError, InputError
from warroom.model import Severity

# --------------------------------------------------------------------------- local servers


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class HttpServer:
    """Answers POSTs from a script of (status, headers, body), the last entry repeating, or from
    ``responder`` (which sees the request) when set."""

    script: list[Reply] = field(default_factory=lambda: [(200, {}, b"ok")])
    requests: list[Captured] = field(default_factory=list)
    delay: float = 0.0
    port: int = 0
    responder: Callable[[Captured], Reply] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def http() -> Iterator[HttpServer]:
    with serve_http() as state:
        yield state


@contextmanager
def serve_http(into: HttpServer | None = None, port: int = 0) -> Iterator[HttpServer]:
    """A local HTTP server on ``port`` (0: any free one) until the block ends, recording ``into``."""
    state: HttpServer = into or HttpServer()
    lock = threading.Lock()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            request = Captured("POST", self.path, dict(self.headers.items()), body)
            with lock:
                state.requests.append(request)
                index = min(len(state.requests), len(state.script)) - 1
                status, headers, reply = state.responder(request) if state.responder else state.script[index]
            if state.delay:
                release.wait(state.delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SmtpServer:
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    rcpt_reply: str = "250 OK"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A minimal SMTP responder: EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT."""
    state = SmtpServer()

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 localhost test SMTP")
            sender, rcpts = "", list[str]()
            while True:
                raw = self.rfile.readline()
                if not raw:
                    return
                verb = raw.decode().strip().split(" ", 1)[0].upper()
                arg = raw.decode().strip()[len(verb) :].strip()
                if verb == "EHLO":
                    self.reply("250-localhost")
                    self.reply("250 8BITMIME")
                elif verb in ("HELO", "NOOP"):
                    self.reply("250 OK")
                elif verb == "RSET":
                    sender, rcpts = "", []
                    self.reply("250 OK")
                elif verb == "MAIL":
                    sender = arg
                    self.reply("250 OK")
                elif verb == "RCPT":
                    if state.rcpt_reply.startswith("250"):
                        rcpts.append(arg)
                    self.reply(state.rcpt_reply)
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while True:
                        line = self.rfile.readline()
                        if line in (b".\r\n", b""):
                            break
                        lines.append(line[1:] if line.startswith(b"..") else line)
                    state.messages.append({"from": sender, "to": list(rcpts), "data": b"".join(lines)})
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- helpers


def notice(status: str = "open", **overrides: object) -> IncidentNotice:
    values: dict[str, object] = {
        "incident_id": "inc-42",
        "title": "checkout error ratio 24% after deploy",
        "severity": Severity.CRITICAL,
        "status": status,
        "services": ("checkout", "frontend"),
        "root_cause": "checkout",
        "summary": "Error ratio on checkout rose from 1.5% to 24.7% after version 2.3.1 rolled out.",
        "url": "https://warroom.example/incidents/inc-42",
        "started_at": datetime(2026, 11, 27, 0, 31, tzinfo=UTC),
        "alert_count": 7,
    }
    values.update(overrides)
    return IncidentNotice(**values)  # type: ignore[arg-type]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# --------------------------------------------------------------------------- model


def test_notice_is_frozen_and_round_trips() -> None:
    n = notice()
    assert IncidentNotice.from_json(json.loads(json.dumps(n.to_json()))) == n
    with pytest.raises(AttributeError):
        n.title = "x"  # type: ignore[misc]
    with pytest.raises(InputError):
        notice(status="firing")


def test_acknowledged_notice_round_trips_with_actor_and_note() -> None:
    n = notice("acknowledged", actor="alice", note="rolling back 2.3.1")
    assert IncidentNotice.from_json(json.loads(json.dumps(n.to_json()))) == n
    # notices serialised before actor/note existed still load
    old = {k: v for k, v in notice().to_json().items() if k not in ("actor", "note")}
    assert IncidentNotice.from_json(old) == notice()


def test_receivers_satisfy_protocol_and_hide_secrets(tmp_path: Path) -> None:
    receivers = [
        SlackReceiver("https://hooks.slack.com/services/T/B/SECRETPATH"),
        PagerDutyReceiver("ROUTINGKEYSECRET"),
        WebhookReceiver("https://x.example/hook", secret="HMACSECRET"),
        EmailReceiver("smtp.example", "warroom@example.com", ("oncall@example.com",), password="PWSECRET"),
    ]
    for r in receivers:
        assert isinstance(r, Receiver)
        assert "SECRET" not in repr(r)
    with pytest.raises(ConfigError):
        PagerDutyReceiver("")
    with pytest.raises(ConfigError):
        PagerDutyReceiver("k", severity_map={Severity.CRITICAL: "sev1"})
    with pytest.raises(ConfigError):
        WebhookReceiver("https://x.example", secret="")


# --------------------------------------------------------------------------- receivers


def test_slack_block_kit_payload(http: HttpServer) -> None:
    attempts = deliver(SlackReceiver(http.url + "/services/T/B/X", timeout=5), notice())
    assert [a.ok for a in attempts] == [True]
    assert attempts[0].http_status == 200 and attempts[0].receiver == "slack"
    (req,) = http.requests
    assert req.path == "/services/T/B/X"
    assert req.headers["Content-Type"] == "application/json"
    payload = req.json()
    assert "checkout error ratio" in payload["text"]
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert "checkout error ratio" in blocks[0]["text"]["text"]
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    for expected in ("*Severity*", "critical", "*Services*", "checkout, frontend", "*Root cause*"):
        assert expected in fields
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    (button,) = actions["elements"]
    assert button["type"] == "button"
    assert button["url"] == "https://warroom.example/incidents/inc-42"
    assert len(blocks[0]["text"]["text"]) <= 150


def test_slack_long_title_cut_and_no_button_without_url(http: HttpServer) -> None:
    deliver(SlackReceiver(http.url, timeout=5), notice(title="x" * 400, url=None))
    blocks = http.requests[0].json()["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150
    assert not [b for b in blocks if b["type"] == "actions"]


def test_pagerduty_trigger_acknowledge_resolve_share_dedup_key(http: HttpServer) -> None:
    http.script = [(202, {"Content-Type": "application/json"}, b'{"status":"success","dedup_key":"inc-42"}')]
    pd = PagerDutyReceiver("R0UTING", base_url=http.url, update_action="acknowledge", timeout=5)
    for status in ("open", "update", "resolved"):
        (a,) = deliver(pd, notice(status))
        assert a.ok and a.http_status == 202 and a.status == status
    events = [r.json() for r in http.requests]
    assert [r.path for r in http.requests] == ["/v2/enqueue"] * 3
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"inc-42"}
    assert {e["routing_key"] for e in events} == {"R0UTING"}
    payload = events[0]["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "warroom"
    assert payload["component"] == "checkout"
    assert "checkout error ratio" in payload["summary"]
    assert payload["custom_details"]["alert_count"] == 7
    assert payload["custom_details"]["services"] == ["checkout", "frontend"]
    assert events[0]["links"][0]["href"] == "https://warroom.example/incidents/inc-42"
    assert "payload" not in events[2]


def test_pagerduty_acknowledged_status_acknowledges_same_dedup_key(http: HttpServer) -> None:
    http.script = [(202, {}, b"{}")]
    pd = PagerDutyReceiver("k", base_url=http.url, timeout=5)  # default: update re-triggers
    for status in ("open", "update", "acknowledged", "resolved"):
        assert pd.send(notice(status, actor="alice")).ok
    events = [r.json() for r in http.requests]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"inc-42"}
    assert set(events[2]) == {"routing_key", "event_action", "dedup_key"}


def test_slack_and_email_say_who_acknowledged(http: HttpServer, smtp: SmtpServer) -> None:
    ack = notice("acknowledged", actor="alice", note="rolling back 2.3.1")
    assert SlackReceiver(http.url, timeout=5).send(ack).ok
    payload = http.requests[0].json()
    assert payload["blocks"][0]["text"]["text"].startswith("[ACKNOWLEDGED] ")
    (context,) = [b for b in payload["blocks"] if b["type"] == "context"]
    assert context["elements"][0]["text"] == "Acknowledged by alice: rolling back 2.3.1"
    (actions,) = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert "style" not in actions["elements"][0]  # no longer a red button: someone has it
    rx = EmailReceiver("127.0.0.1", "w@example.com", ("o@example.com",), port=smtp.port, timeout=5)
    assert rx.send(ack).ok
    msg = message_from_bytes(smtp.messages[0]["data"], policy=policy.default)
    assert msg["Subject"] == "[CRITICAL] ACKNOWLEDGED: checkout error ratio 24% after deploy"
    assert msg["In-Reply-To"] == "<warroom-inc-42@warroom.local>"
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Acknowledged by alice: rolling back 2.3.1" in text
    # without actor or note there is nothing extra to say
    assert SlackReceiver(http.url, timeout=5).send(notice("acknowledged")).ok
    assert not [b for b in http.requests[1].json()["blocks"] if b["type"] == "context"]


def test_pagerduty_severity_mapping(http: HttpServer) -> None:
    http.script = [(202, {}, b"{}")]
    pd = PagerDutyReceiver(
        "k",
        base_url=http.url,
        severity_map={Severity.CRITICAL: "critical", Severity.WARNING: "error", Severity.INFO: "info"},
    )
    pd.send(notice(severity=Severity.WARNING))
    PagerDutyReceiver("k", base_url=http.url).send(notice(severity=Severity.INFO))
    PagerDutyReceiver("k", base_url=http.url).send(notice(severity=Severity.WARNING))
    assert [r.json()["payload"]["severity"] for r in http.requests] == ["error", "info", "warning"]
    # the default maps "update" to a re-trigger with the same dedup_key
    PagerDutyReceiver("k", base_url=http.url).send(notice("update"))
    assert http.requests[-1].json()["event_action"] == "trigger"


def test_webhook_hmac_verifies_with_secret_only(http: HttpServer) -> None:
    (a,) = deliver(WebhookReceiver(http.url + "/hook", secret="s3cret", timeout=5), notice())
    assert a.ok
    (req,) = http.requests
    signature = req.headers["X-Warroom-Signature"]
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature("s3cret", req.body, signature)
    assert not verify_signature("wrong", req.body, signature)
    assert not verify_signature("s3cret", req.body + b" ", signature)
    assert not verify_signature("s3cret", req.body, None)
    assert abs(int(req.headers["X-Warroom-Timestamp"]) - datetime.now(UTC).timestamp()) < 60
    assert IncidentNotice.from_json(req.json()) == notice()


def test_email_plain_and_html_via_local_smtp(smtp: SmtpServer) -> None:
    rx = EmailReceiver(
        "127.0.0.1",
        "warroom@example.com",
        ("oncall@example.com", "sre@example.com"),
        port=smtp.port,
        timeout=5,
    )
    (a,) = deliver(rx, notice(summary="Error <b>ratio</b> & rising"))
    assert a.ok and a.http_status is None and a.error is None
    (mail,) = smtp.messages
    assert mail["from"] == "FROM:<warroom@example.com>"
    assert mail["to"] == ["TO:<oncall@example.com>", "TO:<sre@example.com>"]
    msg = message_from_bytes(mail["data"], policy=policy.default)
    assert msg["Subject"] == "[CRITICAL] OPEN: checkout error ratio 24% after deploy"
    assert msg["Message-ID"] == "<warroom-inc-42@warroom.local>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "checkout, frontend" in text and "Error <b>ratio</b> & rising" in text
    assert "Error &lt;b&gt;ratio&lt;/b&gt; &amp; rising" in html
    assert 'href="https://warroom.example/incidents/inc-42"' in html

    deliver(rx, notice("resolved"))
    follow = message_from_bytes(smtp.messages[1]["data"], policy=policy.default)
    assert follow["In-Reply-To"] == "<warroom-inc-42@warroom.local>"
    assert follow["Subject"].startswith("[CRITICAL] RESOLVED:")


def test_email_recipient_refused_is_final_but_4xx_retried(smtp: SmtpServer) -> None:
    rx = EmailReceiver("127.0.0.1", "w@example.com", ("nobody@example.com",), port=smtp.port, timeout=5)
    smtp.rcpt_reply = "550 no such user"
    sleeps = Sleeps()
    attempts = deliver(rx, notice(), sleep=sleeps)
    assert len(attempts) == 1 and not attempts[0].ok and not attempts[0].retryable
    smtp.rcpt_reply = "451 try again later"
    attempts = deliver(rx, notice(), retries=2, sleep=sleeps)
    assert len(attempts) == 3 and all(a.retryable for a in attempts)
    assert smtp.messages == []


# --------------------------------------------------------------------------- delivery policy


def test_500_twice_then_202_is_three_attempts_and_success(http: HttpServer, tmp_path: Path) -> None:
    http.script = [(500, {}, b"boom"), (500, {}, b"boom"), (202, {}, b"{}")]
    log = AttemptLog(tmp_path / "attempts.jsonl")
    sleeps = Sleeps()
    pd = PagerDutyReceiver("k", base_url=http.url, timeout=5)
    attempts = deliver(pd, notice(), sleep=sleeps, backoff=0.5, max_backoff=10, log_to=log)
    assert [(a.attempt_no, a.ok, a.http_status) for a in attempts] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 202),
    ]
    assert attempts[0].error == "HTTP 500: boom"
    # exponential back-off with jitter in [0.5, 1] of the nominal delay
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5 and 0.5 <= sleeps.delays[1] <= 1.0
    assert len(http.requests) == 3
    assert {r.json()["dedup_key"] for r in http.requests} == {"inc-42"}
    assert log.attempts == attempts
    assert AttemptLog.load(tmp_path / "attempts.jsonl") == attempts


def test_429_retry_after_is_honoured(http: HttpServer) -> None:
    http.script = [(429, {"Retry-After": "7"}, b"rate limited"), (200, {}, b"ok")]
    sleeps = Sleeps()
    attempts = deliver(SlackReceiver(http.url, timeout=5), notice(), sleep=sleeps)
    assert [a.http_status for a in attempts] == [429, 200]
    assert attempts[0].retry_after == 7.0 and attempts[0].retryable
    assert sleeps.delays == [7.0]


def test_retry_after_is_capped(http: HttpServer) -> None:
    http.script = [(429, {"Retry-After": "3600"}, b""), (200, {}, b"ok")]
    sleeps = Sleeps()
    deliver(SlackReceiver(http.url, timeout=5), notice(), sleep=sleeps, max_retry_after=30)
    assert sleeps.delays == [30]


def test_400_is_not_retried(http: HttpServer) -> None:
    http.script = [(400, {}, b"invalid_payload")]
    sleeps = Sleeps()
    attempts = deliver(SlackReceiver(http.url, timeout=5), notice(), sleep=sleeps)
    assert len(attempts) == 1 and len(http.requests) == 1 and sleeps.delays == []
    assert attempts[0].http_status == 400 and not attempts[0].retryable
    assert attempts[0].error == "HTTP 400: invalid_payload"


def test_5xx_gives_up_after_retries_with_capped_backoff(http: HttpServer) -> None:
    http.script = [(503, {}, b"")]
    sleeps = Sleeps()
    attempts = deliver(
        SlackReceiver(http.url, timeout=5), notice(), retries=6, backoff=1, max_backoff=4, sleep=sleeps
    )
    assert len(attempts) == 7 and not attempts[-1].ok
    assert len(sleeps.delays) == 6 and max(sleeps.delays) <= 4
    assert all(2 <= d <= 4 for d in sleeps.delays[2:])


def test_timeout_is_retried(http: HttpServer) -> None:
    http.delay = 2.0
    http.script = [(200, {}, b"ok")]
    attempts = deliver(SlackReceiver(http.url, timeout=0.2), notice(), retries=1, sleep=Sleeps())
    assert len(attempts) == 2
    assert all(not a.ok and a.retryable and a.error and a.error.startswith("timeout") for a in attempts)


def test_down_receiver_fails_quietly_and_others_still_delivered(
    http: HttpServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    http.script = [(202, {}, b"{}")]
    dead = closed_port()
    log = AttemptLog(tmp_path / "log.jsonl")
    sleeps = Sleeps()
    receivers: list[Receiver] = [
        SlackReceiver(f"http://127.0.0.1:{dead}/hook", name="slack-down", timeout=2),
        PagerDutyReceiver("k", base_url=http.url, timeout=5),
        WebhookReceiver(http.url + "/hook", secret="s", timeout=5),
        EmailReceiver("127.0.0.1", "w@example.com", ("o@example.com",), port=smtp.port, timeout=5),
        EmailReceiver(
            "127.0.0.1", "w@example.com", ("o@example.com",), port=dead, name="email-down", timeout=2
        ),
    ]
    results = deliver_all(receivers, notice(), log_to=log, sleep=sleeps, retries=2)
    down, pd, hook, mail, mail_down = results
    assert len(down) == 3 and not any(a.ok for a in down) and all(a.http_status is None for a in down)
    assert all(a.error and "Connect" in a.error for a in down)
    assert len(mail_down) == 3 and not any(a.ok for a in mail_down)
    assert [a.ok for a in pd] == [True] and [a.ok for a in hook] == [True] and [a.ok for a in mail] == [True]
    assert len(smtp.messages) == 1 and len(http.requests) == 2
    assert len(log) == 3 + 1 + 1 + 1 + 3
    persisted = AttemptLog.load(tmp_path / "log.jsonl")
    assert sorted((a.receiver, a.attempt_no) for a in persisted) == sorted(
        (a.receiver, a.attempt_no) for a in log.attempts
    )


def test_a_receiver_that_raises_never_escapes_deliver() -> None:
    class Broken:
        name = "broken"

        def send(self, notice: IncidentNotice) -> Attempt:
            raise RuntimeError("bug")

    class Fine:
        name = "fine"

        def send(self, n: IncidentNotice) -> Attempt:
            return attempt(self.name, n, ok=True, http_status=200)

    broken, fine = deliver_all([Broken(), Fine()], notice(), sleep=Sleeps())
    assert len(broken) == 1 and broken[0].error == "receiver raised RuntimeError: bug"
    assert [a.ok for a in fine] == [True]


def test_attempt_log_write_failure_does_not_raise(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    log = AttemptLog(target)  # a directory: every write fails
    a = attempt("x", notice(), ok=True)
    log.append(a)
    assert log.attempts == [a]
