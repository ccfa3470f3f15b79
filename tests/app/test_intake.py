"""HTTP alert intake against the real thing: uvicorn in a thread, the embedded ClickHouse, httpx.

The server runs in this process because the embedded engine allows one process per data path.
Each test starts its own server on a port the OS picks, so hooks and stores never leak across tests.
Intake needs a responder's token (as Alertmanager sends it from ``http_config.authorization``); the
client carries one made in the server's own state database.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import auth, wiring
from app.api.server import ServerThread, create_app
from warroom import alerts
from warroom.alert_json import alert_from_json
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.errors import ConfigError, StoreError
from warroom.model import Alert, Severity

pytestmark = pytest.mark.integration

MAX_BYTES = 64 * 1024
AM = "/api/v1/alerts/alertmanager"
GENERIC = "/api/v1/alerts"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}

Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve(store: ClickHouse, tmp_path: Path) -> Iterator[Serve]:
    """Start an intake server (``db``, ``on_accepted`` overridable) and return a client for it."""
    with ExitStack() as stack:

        def start(
            db: ClickHouse | None = None, on_accepted: Any = None, role: str | None = "responder"
        ) -> httpx.Client:
            settings = load_settings(env={}, home=str(tmp_path / "home"), intake_max_bytes=MAX_BYTES)
            server = stack.enter_context(ServerThread(create_app(settings, db or store, on_accepted)))
            headers = {}
            if role is not None:
                state = wiring.state_db(settings)
                token = auth.add_user(state, f"sender-{len(auth.users(state))}", role, actor="test")
                headers["Authorization"] = f"Bearer {token}"
            return stack.enter_context(httpx.Client(base_url=server.url, timeout=10, headers=headers))

        yield start


@pytest.fixture
def client(serve: Serve) -> httpx.Client:
    return serve()


def stored(store: ClickHouse) -> list[Alert]:
    return alerts.read(store, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))


def generic(fingerprint: str, severity: str = "critical", **extra: Any) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint,
        "title": f"{fingerprint} error ratio high",
        "severity": severity,
        "starts_at": "2026-03-01T12:00:00Z",
        "labels": {"service": "checkout"},
        **extra,
    }


def am_payload(*names: str, severity: str = "page") -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "warroom",
        "commonLabels": {"cluster": "prod"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "service": "checkout", "severity": severity},
                "annotations": {"summary": f"{name} fired"},
                "startsAt": "2026-03-01T12:00:00Z",
                "fingerprint": f"fp-{name}",
            }
            for name in names
        ],
    }


def test_healthz_and_unknown_paths_answer_json(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["reason"] == "not_found"
    wrong_method = client.put(GENERIC)
    assert wrong_method.status_code == 405 and wrong_method.json()["reason"] == "method_not_allowed"


def test_alertmanager_webhook_is_stored_with_lenient_severity(
    client: httpx.Client, store: ClickHouse
) -> None:
    response = client.post(AM, json=am_payload("HighLatency", "DiskFull", severity="bogus"))
    assert response.status_code == 202 and response.json() == {"accepted": 2}
    rows = {a.fingerprint: a for a in stored(store)}
    assert set(rows) == {"am:fp-HighLatency", "am:fp-DiskFull"}
    latency = rows["am:fp-HighLatency"]
    assert latency.title == "HighLatency: HighLatency fired" and latency.source == "alertmanager"
    assert latency.severity is Severity.INFO  # a free-form label: unknown spellings map, never reject
    assert latency.labels["cluster"] == "prod" and latency.service == "checkout" and latency.firing


def test_generic_single_alert_and_list_are_stored(client: httpx.Client, store: ClickHouse) -> None:
    single = generic("one", severity="P1", score=0.9, ends_at="2026-03-01T12:05:00Z")
    assert client.post(GENERIC, json=single).json() == {"accepted": 1}
    batch = [generic("two", "warning"), generic("three", "info", labels={"edge": "a->b"})]
    response = client.post(GENERIC, json=batch)
    assert response.status_code == 202 and response.json() == {"accepted": 2}
    rows = {a.fingerprint: a for a in stored(store)}
    assert set(rows) == {"one", "two", "three"}
    expected = alert_from_json(single)
    assert rows["one"].severity is Severity.CRITICAL and rows["one"].ends_at == expected.ends_at
    assert rows["one"].score == 0.9 and rows["one"].title == expected.title
    assert rows["three"].labels == {"edge": "a->b"}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


CHUNKED = [b" " * 8192] * (4 * MAX_BYTES // 8192)  # a list body: httpx sends it chunked, no length

BAD_INPUTS = [
    # (id, path, body, headers, status, reason, part of the message)
    ("malformed JSON", GENERIC, b'{"fingerprint": ', JSON, 400, "invalid_json", "malformed JSON"),
    ("empty body", AM, b"", JSON, 400, "invalid_json", "empty"),
    ("not UTF-8", GENERIC, b'{"title": "\xff\xfe"}', JSON, 400, "invalid_encoding", "not valid UTF-8"),
    ("NaN", GENERIC, b'{"score": NaN}', JSON, 400, "invalid_json", "NaN is not a JSON value"),
    ("deep nesting", GENERIC, b"[" * 20_000 + b"]" * 20_000, JSON, 400, "invalid_json", "nested too deeply"),
    ("huge integer", GENERIC, b"9" * 10_000, JSON, 400, "invalid_json", "Exceeds the limit"),
    (
        "text/plain",
        GENERIC,
        b"{}",
        {"content-type": "text/plain"},
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    ("no content type", AM, b"{}", {}, 415, "unsupported_media_type", "application/json"),
    (
        "latin-1 charset",
        GENERIC,
        b"{}",
        {"content-type": "application/json; charset=latin-1"},
        415,
        "unsupported_media_type",
        "UTF-8",
    ),
    ("too large", GENERIC, b" " * (MAX_BYTES + 1), JSON, 413, "payload_too_large", f"{MAX_BYTES} bytes"),
    ("too large, chunked", AM, CHUNKED, JSON, 413, "payload_too_large", "intake_max_bytes"),
    ("too many alerts", GENERIC, dumps([{}] * 1001), JSON, 413, "too_many_alerts", "1001 alerts"),
    ("empty list", GENERIC, b"[]", JSON, 422, "empty_batch", "non-empty list"),
    ("not an object", GENERIC, b'"alert"', JSON, 422, "invalid_payload", "alert: expected a JSON object"),
    (
        "missing field",
        GENERIC,
        dumps({k: v for k, v in generic("x").items() if k != "severity"}),
        JSON,
        422,
        "missing_field",
        "alert: severity: is required",
    ),
    (
        "unknown severity",
        GENERIC,
        dumps([generic("ok"), generic("typo", severity="sev9")]),
        JSON,
        422,
        "unknown_severity",
        "item 1: severity: unknown severity 'sev9'",
    ),
    (
        "bad time",
        GENERIC,
        dumps([generic("a"), generic("b"), generic("c", starts_at="yesterday")]),
        JSON,
        422,
        "invalid_time",
        "item 2: starts_at: 'yesterday' is not an RFC 3339",
    ),
    (
        "AM no alertname",
        AM,
        dumps({"alerts": [{"labels": {"severity": "page"}}]}),
        JSON,
        422,
        "missing_field",
        "alerts[0].labels: 'alertname' is required",
    ),
    ("AM not an object", AM, b"[]", JSON, 422, "invalid_payload", "must be a JSON object"),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_gets_a_4xx_naming_the_problem_and_stores_nothing(
    client: httpx.Client,
    store: ClickHouse,
    path: str,
    body: bytes | list[bytes],
    headers: dict[str, str],
    status: int,
    reason: str,
    message: str,
) -> None:
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    assert message in response.json()["error"]
    assert "\n" not in response.json()["error"]
    if isinstance(body, list):
        assert "content-length" not in response.request.headers  # the limit held while streaming
    assert stored(store) == []  # all or nothing: the good items of a rejected batch are not written


def test_nothing_accepted_is_lost_among_bad_requests(client: httpx.Client, store: ClickHouse) -> None:
    accepted: set[str] = set()
    for i in range(4):
        good = client.post(GENERIC, json=[generic(f"g{i}a"), generic(f"g{i}b")])
        assert good.status_code == 202
        accepted |= {f"g{i}a", f"g{i}b"}
        assert client.post(GENERIC, content=b"{oops", headers=JSON).status_code == 400
        assert client.post(GENERIC, json=[generic(f"bad{i}"), generic("x", "nope")]).status_code == 422
        assert client.post(GENERIC, content=b" " * (MAX_BYTES + 1), headers=JSON).status_code == 413
        assert client.post(AM, json=am_payload(f"am{i}")).status_code == 202
        accepted.add(f"am:fp-am{i}")
    assert {a.fingerprint for a in stored(store)} == accepted


HOSTILE = {
    "sql": "'; DROP TABLE alerts; --",
    "shell": "$(rm -rf /)",
    "backticks": "`reboot` \\` \\\\",
    "newlines": "line one\nline two\r\n\ttabbed",
    "quotes": "\"double\" 'single' {curly} %s %(x)s",
    "unicode": "zażółć 🔥 \u202e",
}


def test_hostile_labels_are_stored_verbatim(client: httpx.Client, store: ClickHouse) -> None:
    labels = {**HOSTILE, "service": "checkout"}
    assert (
        client.post(GENERIC, json=generic("hostile", labels=labels, title=HOSTILE["sql"])).status_code == 202
    )
    payload = am_payload("Hostile")
    payload["alerts"][0]["labels"].update(HOSTILE)
    assert client.post(AM, json=payload).status_code == 202
    rows = {a.fingerprint: a for a in stored(store)}
    assert rows["hostile"].labels == labels and rows["hostile"].title == HOSTILE["sql"]
    assert {k: rows["am:fp-Hostile"].labels[k] for k in HOSTILE} == HOSTILE


def test_unusable_store_is_503_with_retry_after(serve: Serve, store: ClickHouse) -> None:
    client = serve(db=ClickHouse(store.dsn, "no_such_database"))
    response = client.post(AM, json=am_payload("HighLatency"))
    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["reason"] == "store_unavailable" and "send it again" in body["error"]
    assert "no_such_database" not in body["error"]  # driver details go to the log, not the sender


def test_store_outage_is_503_and_the_resend_is_stored_once(
    serve: Serve, store: ClickHouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Sequence[Alert]] = []
    client = serve(on_accepted=calls.append)
    real_write = alerts.write

    def outage(db: ClickHouse, batch: Sequence[Alert]) -> int:
        raise StoreError("ClickHouse insert failed: connection refused", retryable=True)

    monkeypatch.setattr(alerts, "write", outage)
    first = client.post(GENERIC, json=[generic("a"), generic("b")])
    assert first.status_code == 503 and first.headers["retry-after"] == "5"
    assert calls == []  # nothing was claimed, so nobody is told
    monkeypatch.setattr(alerts, "write", real_write)
    assert client.post(GENERIC, json=[generic("a"), generic("b")]).status_code == 202
    assert client.post(GENERIC, json=[generic("a"), generic("b")]).status_code == 202  # a duplicate resend
    assert sorted(a.fingerprint for a in stored(store)) == ["a", "b"]


def test_unexpected_error_is_500_json_without_traceback(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: ClickHouse, batch: Sequence[Alert]) -> int:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(alerts, "write", broken)
    response = client.post(GENERIC, json=generic("a"))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "reason": "internal_error"}


def test_hook_gets_the_accepted_alerts(serve: Serve) -> None:
    calls: list[Sequence[Alert]] = []
    client = serve(on_accepted=calls.append)
    client.post(GENERIC, json=[generic("a"), generic("b")])
    client.post(GENERIC, json=[generic("c"), generic("d", "nope")])  # rejected: no call
    client.post(AM, json=am_payload("HighLatency"))
    assert [[a.fingerprint for a in batch] for batch in calls] == [["a", "b"], ["am:fp-HighLatency"]]


def test_failing_hook_is_logged_and_the_request_still_succeeds(
    serve: Serve, store: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(batch: Sequence[Alert]) -> None:
        raise RuntimeError("correlation loop is gone")

    client = serve(on_accepted=hook)
    logger = logging.getLogger("warroom.api")
    logger.addHandler(caplog.handler)  # direct: warroom's log setup may stop propagation to root
    try:
        response = client.post(GENERIC, json=generic("a"))
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 202 and response.json() == {"accepted": 1}
    assert [a.fingerprint for a in stored(store)] == ["a"]
    assert any("on_accepted hook failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_intake_needs_a_responder_token_and_stores_nothing_without_one(
    serve: Serve, store: ClickHouse
) -> None:
    for role, status, reason in [(None, 401, "missing_token"), ("viewer", 403, "forbidden")]:
        client = serve(role=role)
        for path, body in ((GENERIC, generic("a")), (AM, am_payload("HighLatency"))):
            response = client.post(path, json=body)
            assert response.status_code == status and response.json()["reason"] == reason, response.text
    assert serve(role="admin").post(GENERIC, json=generic("b")).status_code == 202
    assert [a.fingerprint for a in stored(store)] == ["b"]


def test_declared_oversize_body_is_refused_before_it_is_sent(serve: Serve) -> None:
    """The Content-Length check answers at once: a server reading the body first would wait forever."""
    client = serve()
    url = httpx.URL(str(client.base_url))
    assert url.port is not None
    with socket.create_connection((url.host, url.port), timeout=5) as sock:
        sock.sendall(
            f"POST {AM} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {client.headers['authorization']}\r\n"
            f"Content-Length: {10**9}\r\n\r\n".encode()
        )
        response = b""
        while b"}" not in response and (chunk := sock.recv(65536)):  # head and body may come apart
            response += chunk
    assert response.startswith(b"HTTP/1.1 413 ") and b'"reason":"payload_too_large"' in response


def test_server_thread_reports_a_port_it_cannot_bind(store: ClickHouse, tmp_path: Path) -> None:
    app = create_app(load_settings(env={}, home=str(tmp_path / "home")), store)
    with ServerThread(app) as first:
        with pytest.raises(ConfigError, match="WARROOM_API_PORT: cannot listen on"):
            ServerThread(app, port=first.port).start()
