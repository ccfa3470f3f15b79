"""The durable outbox against real local HTTP receivers, on SQLite and PostgreSQL (``state_dsn``).

Back-offs are tens of milliseconds and time-dependent steps pass an explicit ``now``, so nothing
here sleeps for long.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from correlate.notify import (
    Attempt,
    Dispatcher,
    IncidentNotice,
    Outbox,
    PagerDutyReceiver,
    Receiver,
    WebhookReceiver,
    build_router,
    verify_signature,
)
from correlate.notify.base import now
from correlate.notify.outbox import METADATA
from tests.correlate.test_notify import Captured, HttpServer, Reply, notice, serve_http
from warroom.errors import InputError
from warroom.statedb import StateDB, connect, migrate

FAST = {"backoff": 0.02, "max_backoff": 0.1}  # retry within a tick or two in these tests


@pytest.fixture
def db(state_dsn: str) -> Iterator[StateDB]:
    database = connect(state_dsn)
    migrate(database, [METADATA])
    try:
        yield database
    finally:
        database.dispose()


@contextmanager
def outbox_over(db: StateDB, receivers: dict[str, Receiver], **options: Any) -> Iterator[Outbox]:
    with Outbox(db, receivers, **{**FAST, **options}) as box:
        yield box


@contextmanager
def refusing_port() -> Iterator[socket.socket]:
    """A port that refuses connections (bound, never listening) until the socket is closed, so no
    other test can take it before the "receiver comes back" on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def pagerduty_api(request: Captured) -> Reply:
    """A PagerDuty Events API v2 stand-in: validates what PD validates, answers 202 or 400."""
    try:
        event = request.json()
    except ValueError:
        event = {}
    action = event.get("event_action")
    payload = event.get("payload") or {}
    valid = (
        request.path == "/v2/enqueue"
        and isinstance(event.get("routing_key"), str)
        and isinstance(event.get("dedup_key"), str)
        and action in ("trigger", "acknowledge", "resolve")
        and (action != "trigger" or all(payload.get(k) for k in ("summary", "severity", "source")))
    )
    if not valid:
        return 400, {"Content-Type": "application/json"}, b'{"status":"invalid event"}'
    reply = {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}
    return 202, {"Content-Type": "application/json"}, json.dumps(reply).encode()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def sent(server: HttpServer) -> list[tuple[str, str]]:
    """(incident_id, status) of every webhook body the server received, in arrival order."""
    return [(r.json()["incident_id"], r.json()["status"]) for r in server.requests]


LIFECYCLE = ("open", "update", "acknowledged", "resolved")


# --------------------------------------------------------------------------- ordering and payloads


def test_lifecycle_reaches_pagerduty_in_order_with_one_dedup_key(db: StateDB) -> None:
    with serve_http(HttpServer(responder=pagerduty_api)) as pd:
        config = {
            "receivers": {
                "payments-pd": {"type": "pagerduty", "routing_key_env": "PD_KEY", "base_url": pd.url}
            },
            "teams": {"payments": {"receivers": ["payments-pd"]}},
            "routes": [{"match": {"service": "checkout"}, "team": "payments"}],
        }
        router = build_router(config, {"PD_KEY": "R0UTING"})
        targets = router.receivers_for_alerts([{"service": "checkout"}, {"service": "frontend"}])
        assert targets == ["payments-pd"]
        with outbox_over(db, dict(router.receivers)) as box, Dispatcher(box, interval=0.05) as dispatcher:
            # everything queued before the first send: only the order of the queue keeps it in order
            for status in LIFECYCLE:
                box.enqueue(notice(status, actor="alice" if status == "acknowledged" else ""), targets)
                box.enqueue(notice(status, incident_id="inc-7"), targets)
            assert dispatcher.drain(10)
    events = [r.json() for r in pd.requests]
    for incident in ("inc-42", "inc-7"):
        mine = [e for e in events if e["dedup_key"] == incident]
        assert [e["event_action"] for e in mine] == ["trigger", "trigger", "acknowledge", "resolve"]
        assert {e["routing_key"] for e in mine} == {"R0UTING"}
    assert len(events) == 8
    assert [a.status for a in box.attempts("inc-42")] == list(LIFECYCLE)
    assert all(a.ok and a.http_status == 202 and a.receiver == "payments-pd" for a in box.attempts())
    assert {i.status for i in box.items()} == {"delivered"} and box.pending() == []


def test_webhook_through_outbox_is_hmac_verifiable(db: StateDB) -> None:
    ack = notice("acknowledged", actor="alice", note="rolling back")
    with (
        serve_http() as server,
        outbox_over(db, {"hook": WebhookReceiver(server.url, secret="s3cret")}) as box,
    ):
        box.enqueue(ack, ["hook"])
        (result,) = box.dispatch_once()
    assert result.ok and result.attempt_no == 1
    (request,) = server.requests
    assert verify_signature("s3cret", request.body, request.headers["X-Warroom-Signature"])
    assert not verify_signature("other", request.body, request.headers["X-Warroom-Signature"])
    assert IncidentNotice.from_json(request.json()) == ack


# --------------------------------------------------------------------------- retries


def test_500_twice_then_202_after_backoff_with_three_attempt_rows(db: StateDB) -> None:
    server = HttpServer(script=[(500, {}, b"boom"), (500, {}, b"boom"), (202, {}, b"{}")])
    t0 = now()
    with serve_http(server), outbox_over(db, {"pd": PagerDutyReceiver("k", base_url=server.url)}) as box:
        box.enqueue(notice(), ["pd"], now=t0)
        assert [a.http_status for a in box.dispatch_once(t0)] == [500]
        (item,) = box.pending()
        assert t0 + timedelta(seconds=0.01) <= item.next_at <= t0 + timedelta(seconds=0.02)  # backoff·U(.5,1)
        assert item.attempts == 1 and item.last_error == "HTTP 500: boom"
        assert box.dispatch_once(t0) == []  # not due yet: nothing sent
        assert [a.http_status for a in box.dispatch_once(t0 + timedelta(seconds=1))] == [500]
        assert [a.http_status for a in box.dispatch_once(t0 + timedelta(seconds=2))] == [202]
    rows = box.attempts("inc-42")
    assert [(a.attempt_no, a.ok, a.http_status, a.retryable) for a in rows] == [
        (1, False, 500, True),
        (2, False, 500, True),
        (3, True, 202, False),
    ]
    (item,) = box.items()
    assert (item.status, item.attempts, item.last_error) == ("delivered", 3, None)
    assert item.delivered_at == t0 + timedelta(seconds=2)
    assert len(server.requests) == 3 and {r.json()["dedup_key"] for r in server.requests} == {"inc-42"}


def test_retry_after_is_honoured(db: StateDB) -> None:
    server = HttpServer(script=[(429, {"Retry-After": "120"}, b"slow down"), (202, {}, b"{}")])
    t0 = now()
    with serve_http(server), outbox_over(db, {"pd": PagerDutyReceiver("k", base_url=server.url)}) as box:
        box.enqueue(notice(), ["pd"], now=t0)
        (first,) = box.dispatch_once(t0)
        assert first.retry_after == 120.0
        assert box.pending()[0].next_at == t0 + timedelta(seconds=120)
        assert box.dispatch_once(t0 + timedelta(seconds=60)) == []
        assert [a.ok for a in box.dispatch_once(t0 + timedelta(seconds=120))] == [True]


def test_400_is_failed_at_once_and_does_not_block_the_next_notice(db: StateDB) -> None:
    server = HttpServer(script=[(400, {}, b"invalid_payload"), (200, {}, b"ok")])
    with serve_http(server), outbox_over(db, {"hook": WebhookReceiver(server.url, secret="s")}) as box:
        box.enqueue(notice("open"), ["hook"])
        box.enqueue(notice("update"), ["hook"])
        (rejected,) = box.dispatch_once()
        (accepted,) = box.dispatch_once()
    assert (rejected.status, rejected.ok, rejected.http_status, rejected.retryable) == (
        "open",
        False,
        400,
        False,
    )
    assert (accepted.status, accepted.ok) == ("update", True)
    first, second = box.items()
    assert (first.status, first.attempts, first.last_error) == ("failed", 1, "HTTP 400: invalid_payload")
    assert second.status == "delivered"
    assert [a.error for a in box.attempts("inc-42")] == ["HTTP 400: invalid_payload", None]
    # an operator can put it back
    assert box.requeue([first.id]) == 1 and [i.id for i in box.pending()] == [first.id]


def test_retryable_failures_give_up_after_max_age(db: StateDB) -> None:
    t0 = now()
    with refusing_port() as sock:
        port = sock.getsockname()[1]
        hook = WebhookReceiver(f"http://127.0.0.1:{port}/hook", secret="s", timeout=2)
        with outbox_over(db, {"hook": hook}, max_age=3600) as box:
            box.enqueue(notice(), ["hook"], now=t0)
            (early,) = box.dispatch_once(t0)
            (late,) = box.dispatch_once(t0 + timedelta(hours=2))
    assert early.retryable and late.retryable
    (item,) = box.items()
    assert (item.status, item.attempts) == ("failed", 2)
    assert item.last_error and "Connect" in item.last_error


def test_a_receiver_that_raises_or_vanished_is_recorded(db: StateDB) -> None:
    class Broken:
        name = "broken"

        def send(self, notice: IncidentNotice) -> Attempt:
            raise RuntimeError("bug")

    with outbox_over(db, {"broken": Broken(), "gone": Broken()}) as box:
        box.enqueue(notice(), ["broken", "gone"])
        box.receivers.pop("gone")  # as if removed from the config after a restart
        results = {a.receiver: a for a in box.dispatch_once()}
    assert results["broken"].error == "receiver raised RuntimeError: bug" and not results["broken"].retryable
    assert results["gone"].error == "receiver is not configured" and results["gone"].retryable
    assert {i.receiver: i.status for i in box.items()} == {"broken": "failed", "gone": "pending"}


# --------------------------------------------------------------------------- outages


def test_receiver_down_for_a_while_gets_everything_in_order(db: StateDB) -> None:
    with refusing_port() as sock:
        port = sock.getsockname()[1]
        hook = WebhookReceiver(f"http://127.0.0.1:{port}/hook", secret="s", timeout=2)
        with outbox_over(db, {"hook": hook}) as box, Dispatcher(box, interval=0.02) as dispatcher:
            for status in ("open", "update", "resolved"):
                box.enqueue(notice(status), ["hook"])
            box.enqueue(notice("open", incident_id="inc-7"), ["hook"])
            wait_for(lambda: len(box.attempts()) >= 6)  # several rounds of refused connections
            # only each queue's head was tried while down: the later notices waited their turn
            tried = {(a.incident_id, a.status) for a in box.attempts()}
            assert tried == {("inc-42", "open"), ("inc-7", "open")}
            assert not any(a.ok for a in box.attempts()) and len(box.pending()) == 4
            sock.close()
            with serve_http(port=port) as server:  # the receiver comes back on the same port
                assert dispatcher.drain(10)
    assert [s for s in sent(server) if s[0] == "inc-42"] == [
        ("inc-42", "open"),
        ("inc-42", "update"),
        ("inc-42", "resolved"),
    ]
    assert ("inc-7", "open") in sent(server) and len(server.requests) == 4  # nothing lost, nothing twice
    assert {i.status for i in box.items()} == {"delivered"}


def test_down_or_slow_receiver_does_not_delay_another(db: StateDB) -> None:
    slow = HttpServer(delay=5.0)
    with refusing_port() as sock, serve_http() as up, serve_http(slow):
        down_url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        receivers: dict[str, Receiver] = {
            "down": WebhookReceiver(down_url, secret="s", timeout=1),
            "slow": WebhookReceiver(slow.url, secret="s", name="slow", timeout=1.5),
            "up": WebhookReceiver(up.url, secret="s"),
        }
        with outbox_over(db, receivers) as box, Dispatcher(box, interval=0.05):
            started = time.monotonic()
            for status in ("open", "update", "resolved"):
                box.enqueue(notice(status), list(receivers))
            wait_for(lambda: len(up.requests) == 3, timeout=5)
            elapsed = time.monotonic() - started
    # all three reached "up" while "slow" was still stuck in its first send (1.5 s timeout)
    assert elapsed < 1.4, elapsed
    assert sent(up) == [("inc-42", "open"), ("inc-42", "update"), ("inc-42", "resolved")]
    assert {i.receiver for i in box.pending()} == {"down", "slow"}


def test_pending_notices_survive_a_restart(db: StateDB, state_dsn: str) -> None:
    with refusing_port() as sock:
        port = sock.getsockname()[1]
        hook = WebhookReceiver(f"http://127.0.0.1:{port}/hook", secret="s", timeout=2)
        with outbox_over(db, {"hook": hook}) as first:
            for status in ("open", "update", "resolved"):
                first.enqueue(notice(status), ["hook"])
            (failed,) = first.dispatch_once()
            assert not failed.ok
    db.dispose()  # the process "restarts": new connection, new outbox, new dispatcher

    restarted_db = connect(state_dsn)
    try:
        migrate(restarted_db, [METADATA])  # idempotent at start-up
        with serve_http(port=port) as server:
            with outbox_over(restarted_db, {"hook": hook}) as box, Dispatcher(box, interval=0.02) as d:
                assert len(box.pending()) == 3
                assert d.drain(10)
        assert sent(server) == [("inc-42", "open"), ("inc-42", "update"), ("inc-42", "resolved")]
        assert [(a.status, a.ok) for a in box.attempts("inc-42")] == [
            ("open", False),
            ("open", True),
            ("update", True),
            ("resolved", True),
        ]
    finally:
        restarted_db.dispose()


# --------------------------------------------------------------------------- enqueue


def test_enqueue_joins_the_callers_transaction(db: StateDB) -> None:
    class Rollback(Exception):
        pass

    with serve_http() as server, outbox_over(db, {"hook": WebhookReceiver(server.url, secret="s")}) as box:
        with pytest.raises(Rollback), db.begin() as conn:
            box.enqueue(notice(), ["hook"], conn=conn)
            raise Rollback  # the incident change failed: its notice must not go out
        assert box.items() == []
        with db.begin() as conn:
            (queued,) = box.enqueue(notice(), ["hook"], conn=conn)
        assert [i.id for i in box.pending()] == [queued]
        assert [a.ok for a in box.dispatch_once()] == [True]


def test_unrouted_notice_is_logged_not_queued(db: StateDB, caplog: pytest.LogCaptureFixture) -> None:
    router = build_router(
        {
            "receivers": {"r": {"type": "webhook", "url": "https://x.example/h", "secret": "s"}},
            "teams": {"t": {"receivers": ["r"]}},
            "routes": [{"match": {"service": "checkout"}, "team": "t"}],
        },
        {},
    )
    with outbox_over(db, dict(router.receivers)) as box, caplog.at_level(logging.WARNING, "warroom.notify"):
        assert box.enqueue(notice(), router.receivers_for_alerts([{"service": "search"}])) == []
        with pytest.raises(InputError):
            box.enqueue(notice(), ["r", "nope"])
        assert box.items() == []
        ids = box.enqueue(notice(), ["r", "r"])
    assert len(ids) == 1
    (record,) = caplog.records
    assert "no route matched" in record.getMessage() and record.__dict__["incident_id"] == "inc-42"
