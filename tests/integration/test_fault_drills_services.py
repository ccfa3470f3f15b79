"""Fault drills (issue #7) for the services after ingest: the LLM endpoint down, the notification
receiver down, the state database locked.

Each drill breaks one dependency of a running warroom, checks that it degrades the way the README
says (keeps running, says what is wrong, keeps what it must deliver), heals the dependency, and
checks that warroom recovers by itself and lost nothing. The dependencies are real: the LLM and the
webhook receiver are processes (``tests/summarize/fake_openai.py``) on a port chosen up front, so
"down" is a refused connection and "back" is the same URL answering; the locks are taken by
another process (SQLite) or another connection (PostgreSQL). The LLM and receiver drills run
``warroom up`` as a user does; the lock drill runs the correlate service in process, because it
needs the state database of the ``state_dsn`` fixture in both flavours. Beside them: the summarize
state of before the retries still loads, summarize waits out an unreachable state database, and
replicas starting together on a fresh state database all start (defects these drills turned up).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app import up
from correlate.notify.outbox import OUTBOX
from correlate.store import EVENTS, INCIDENTS
from tests.conftest import WARROOM, run_warroom
from tests.correlate.test_notify import HttpServer, serve_http
from tests.correlate.test_serve import free_port, wait_for
from tests.summarize.fake_openai import FakeOpenAI
from warroom import alerts
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.model import Alert, Severity
from warroom.statedb import connect

pytestmark = pytest.mark.integration

# Three incidents that nothing ties together: other services, hosts, words.
INCIDENTS_ALERTS = {
    "disk": ("billing", "billing disk almost full on the ledger volume"),
    "latency": ("search", "search query latency above objective"),
    "queue": ("mailer", "mailer outbound queue backing up"),
}


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    values["WARROOM_HOME"] = str(tmp_path / "home")
    values.update({f"WARROOM_{k.upper()}": v for k, v in settings.items()})
    return values


@contextmanager
def warroom_up(
    env: dict[str, str], only: str, *flags: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str]]]:
    """``warroom up --only ONLY`` until the block ends; yields the process, the API's base URL and
    the headers of a responder's token (made once the process has migrated the state database).

    Its log goes to a file (a pipe nobody reads would stall a chatty process). On the way out it
    must still be running — a drill that killed it has failed — and SIGTERM must end it cleanly.
    """
    port = free_port()
    log = Path(env["WARROOM_HOME"]).parent / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [WARROOM, "up", "--only", only, "--port", str(port), "--interval", "0.5", *flags],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _answers(f"{base}/healthz") or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()[-3000:]
        auth = _token(env)
        yield proc, base, auth
        assert proc.poll() is None, f"warroom up died during the drill: {log.read_text()[-3000:]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _token(env: dict[str, str]) -> dict[str, str]:
    done = run_warroom(["users", "add", "drill", "--role", "responder"], env, timeout=60)
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def _post_alerts(base: str, auth: dict[str, str], *names: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = [
        {
            "fingerprint": f"drill-{name}",
            "title": INCIDENTS_ALERTS[name][1],
            "severity": "critical",
            "starts_at": now,
            "labels": {"service": INCIDENTS_ALERTS[name][0], "host.name": f"host-{name}"},
        }
        for name in names
    ]
    accepted = httpx.post(f"{base}/api/v1/alerts", json=body, headers=auth, timeout=30)
    assert accepted.status_code == 202, accepted.text


def _incident_ids(base: str, auth: dict[str, str]) -> list[str]:
    listed = httpx.get(f"{base}/api/v1/incidents", headers=auth, timeout=30)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    items = body["incidents"] if isinstance(body, dict) else body
    return sorted(i["id"] for i in items)


# -- 1. the LLM endpoint down ---------------------------------------------------------------------

NARRATIVE_TEXT = "The drill incident is under way, as the alert in the evidence shows."
ANSWER = {
    "summary": [{"text": NARRATIVE_TEXT, "evidence": ["E1"]}],
    "impact": [],
    "hypotheses": [],
    "remediations": [],
}


def test_llm_down_digest_at_once_narrative_once_it_is_back(tmp_path: Path) -> None:
    """Incidents arrive while the LLM endpoint refuses connections, then answers 503: each gets its
    deterministic digest at once, saying the narrative is not shown and when it is retried; the
    state file and ``/status`` say why. When the endpoint answers, the narrative follows by itself,
    with a bounded number of calls, and the process never stopped."""
    llm_port, status_port = free_port(), free_port()
    (tmp_path / "llm").mkdir()
    fake = FakeOpenAI(tmp_path / "llm", port=llm_port)
    fake.script("drill", {"status": 503, "body": "overloaded"})
    base_url = f"http://127.0.0.1:{llm_port}/drill/v1"
    env = _env(
        tmp_path,
        llm_base_url=base_url,
        llm_model="drill-model",
        llm_retries="0",  # the client's own retries are its business (tests/summarize); this is the service's
        llm_timeout_s="5",
        status_port=str(status_port),
    )
    home = Path(env["WARROOM_HOME"])
    state_file, pages = home / "state" / "summarize.json", home / "summaries"

    def entries() -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(state_file.read_text())["incidents"])
        except (OSError, ValueError, KeyError):
            return {}

    def settled_as(reason: str, ids: list[str]) -> bool:
        found = entries()
        return all(found.get(i, {}).get("reason", "").startswith(reason) for i in ids)

    with warroom_up(env, "api,correlate,summarize", "--summarize-every", "1") as (proc, base, auth):
        _post_alerts(base, auth, "disk", "latency")
        assert wait_for(lambda: len(_incident_ids(base, auth)) == 2, 30)
        ids = _incident_ids(base, auth)

        # Down (connection refused): the digest is written anyway, the narrative awaits a retry.
        assert wait_for(lambda: settled_as("failed: connection", ids), 30), entries()
        for incident in ids:
            assert entries()[incident]["status"] == "retry"
            page = (pages / f"{incident}.md").read_text()
            assert "LLM narrative not shown: failed: connection; will retry at" in page
            assert "## Timeline" in page  # the deterministic digest, whole

        def status() -> dict[str, Any]:
            return dict(httpx.get(f"http://127.0.0.1:{status_port}/status", timeout=5).json())

        # Reported after the state file is saved: wait for it rather than race it.
        assert wait_for(lambda: "failed: connection" in status()["services"]["summarize"]["detail"], 10)
        assert status()["services"]["summarize"]["state"] == "running"
        assert status()["ready"], status()  # an LLM outage does not take the process out of service

        # Up but overloaded (503): still a transient failure, retried with a longer back-off.
        with fake:
            assert wait_for(lambda: settled_as("failed: http_503", ids), 30), entries()
            tries = {i: entries()[i]["attempts"] for i in ids}
            assert all(n >= 2 for n in tries.values()), tries
            # Back: the narrative comes by itself, at the next retry.
            fake.script("drill", {"json": ANSWER})
            assert wait_for(lambda: settled_as("accepted", ids), 30), entries()
            for incident in ids:
                assert entries()[incident]["status"] == "done"
                page = (pages / f"{incident}.md").read_text()
                assert NARRATIVE_TEXT in page and "LLM narrative not shown" not in page
            calls = len(fake.requests(base_url))
            time.sleep(1.5)  # settled: no more calls for incidents that did not change
            assert len(fake.requests(base_url)) == calls
        assert calls <= 4 * len(ids), calls  # back-off: a handful of calls, not one per pass
        assert proc.poll() is None
        assert wait_for(lambda: status()["services"]["summarize"]["detail"] == "", 10), status()


def test_summarize_state_of_format_1_still_loads(tmp_path: Path) -> None:
    """A state file written before retries existed (format 1) is read as "settled", so an upgrade
    neither fails nor redoes every incident's LLM call."""
    settings = load_settings(env={}, home=str(tmp_path / "home"))
    state = settings.home / "state" / "summarize.json"
    state.parent.mkdir(parents=True)
    old = {"format": 1, "kind": "warroom.up.summarize", "last_pass": None, "done": {"inc-1": "2026-01-01"}}
    state.write_text(json.dumps(old))
    service = up.SummarizeService(up.Shared(settings, threading.Event()), up.Options())
    service.load()
    assert not service._due("inc-1", "2026-01-01", datetime.now(UTC))
    assert service._due("inc-1", "2026-01-02", datetime.now(UTC))  # changed since: summarised again


def test_summarize_waits_out_an_unreachable_state_database(tmp_path: Path) -> None:
    """A summarize pass that cannot reach the state database (PostgreSQL down) is logged and tried
    again; the service reports ``degraded`` and stays up, instead of stopping the whole process."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/warroom"
    settings = load_settings(env={}, home=str(tmp_path / "home"), state_dsn=dead)
    shared = up.Shared(settings, threading.Event())
    service = up.SummarizeService(shared, up.Options(summarize_every=0.2))
    service.start()
    try:
        assert wait_for(lambda: shared.health.states()["summarize"]["state"] == "degraded", 30)
        time.sleep(0.5)  # a few more failing passes
        assert service.join(0) is False and service.error is None and not shared.stop.is_set()
    finally:
        shared.stop.set()
        assert service.join(15)
    assert service.error is None


# -- 2. the notification receiver down ------------------------------------------------------------


def test_receiver_down_then_500_then_back_gets_each_notice_once(tmp_path: Path) -> None:
    """An incident opens, and is acknowledged, while its webhook receiver refuses connections and
    then answers 500. ``warroom up`` keeps running, the outbox keeps both notices and retries them
    with growing, jittered back-off (every attempt visible on the incident in the API), and when the
    receiver answers 200 it gets each notice exactly once, in order."""
    hook_port = free_port()
    (tmp_path / "hook").mkdir()
    receiver = FakeOpenAI(tmp_path / "hook", port=hook_port)
    receiver.script("drill", {"status": 500, "body": "receiver broken"})
    hook_url = f"http://127.0.0.1:{hook_port}/drill/hook"
    config = tmp_path / "warroom.toml"
    config.write_text(
        f'[receivers.hook]\ntype = "webhook"\nurl = "{hook_url}"\nsecret = "drill"\n'
        '[teams.sre]\nreceivers = ["hook"]\n[[routes]]\nteam = "sre"\n'
    )
    env = _env(tmp_path, config=str(config))

    def attempts(base: str, auth: dict[str, str], incident: str) -> list[dict[str, Any]]:
        shown = httpx.get(f"{base}/api/v1/incidents/{incident}", headers=auth, timeout=30)
        return list(shown.json()["notifications"])

    def delivered() -> list[tuple[str, str]]:
        return [
            (r["body"]["incident_id"], r["body"]["status"])
            for r in receiver.requests(hook_url)
            if r["scripted_status"] == 200
        ]

    with warroom_up(env, "api,correlate") as (proc, base, auth):
        _post_alerts(base, auth, "disk")
        assert wait_for(lambda: len(_incident_ids(base, auth)) == 1, 30)
        (incident,) = _incident_ids(base, auth)
        acked = httpx.post(f"{base}/api/v1/incidents/{incident}/ack", headers=auth, timeout=30)
        assert acked.status_code == 200, acked.text

        # Down: refused connections, retried.
        assert wait_for(lambda: len(attempts(base, auth, incident)) >= 2, 30)
        assert all(not a["ok"] and a["retryable"] for a in attempts(base, auth, incident))
        # Up but failing (500): retried too; the acknowledgement waits behind the open notice.
        with receiver:
            assert wait_for(lambda: len(receiver.requests(hook_url)) >= 1, 30)
            receiver.script("drill", {"status": 200, "body": "ok"})
            assert wait_for(lambda: len(delivered()) == 2, 60), receiver.requests(hook_url)
            time.sleep(1.5)  # nothing more arrives: no duplicate, no stray retry
            assert delivered() == [(incident, "open"), (incident, "acknowledged")]
            seen = receiver.requests(hook_url)
        assert proc.poll() is None
        tried = attempts(base, auth, incident)

    answered_500 = [r for r in seen if r["scripted_status"] == 500]
    assert answered_500 and all(r["body"]["status"] == "open" for r in answered_500)
    assert all(r["headers"].get("X-Warroom-Signature", "").startswith("sha256=") for r in seen)
    failures = [a for a in tried if not a["ok"]]
    assert [a["status"] for a in tried if a["ok"]] == ["open", "acknowledged"]
    assert len(failures) <= 10, failures  # exponential back-off, not a retry every tick
    at = [datetime.fromisoformat(a["at"]) for a in tried if a["status"] == "open"]
    gaps = [(b - a).total_seconds() for a, b in zip(at, at[1:], strict=False)]
    # Each wait is U(0.5, 1) × 0.5 s × 2^(n-1): never shorter than the longest previous one could be.
    assert all(later >= earlier - 0.25 for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] > gaps[0], gaps


# -- 3. the state database locked -----------------------------------------------------------------

LOCK_SECONDS = 5.0


@contextmanager
def state_locked(dsn: str, seconds: float) -> Iterator[None]:
    """Another holder of the state database's write lock for ``seconds`` (or until the block ends,
    whichever is later): on SQLite another process in ``BEGIN IMMEDIATE``, on PostgreSQL another
    connection holding ``LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE`` (readers wait too)."""
    if dsn.startswith("sqlite"):
        code = (
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "db.execute('COMMIT')\n"
        )
        path = sa.make_url(dsn).database
        argv = [sys.executable, "-c", code, str(path), str(seconds)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as holder:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            yield
        assert holder.returncode == 0
        return
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        until = time.monotonic() + seconds
        yield
        with psycopg.connect(dsn, autocommit=True) as watcher:
            # Released only once someone (the correlator) is seen queued behind it, however slow
            # the machine: a drill whose lock nobody met would prove nothing.
            query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            assert wait_for(lambda: watcher.execute(query).fetchone() != (0,), 30)
        time.sleep(max(0.0, until - time.monotonic()))
        conn.rollback()


def _alert(name: str, at: datetime) -> Alert:
    service, title = INCIDENTS_ALERTS[name]
    return Alert(
        f"drill-{name}", title, Severity.CRITICAL, at, labels={"service": service, "host.name": name}
    )


def test_state_store_locked_correlate_waits_then_catches_up(
    state_dsn: str, store: ClickHouse, chdb_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Alerts arrive while another process (SQLite) or connection (PostgreSQL) holds the state
    database's lock: the correlate service waits — no crash, no notice — and once the lock is gone
    it groups them, each into one incident with one page, as if nothing had happened."""
    config = tmp_path / "warroom.toml"
    with serve_http() as receiver:
        config.write_text(
            f'[receivers.hook]\ntype = "webhook"\nurl = "{receiver.url}/hook"\nsecret = "drill"\n'
            '[teams.sre]\nreceivers = ["hook"]\n[[routes]]\nteam = "sre"\n'
        )
        settings = load_settings(
            env={"WARROOM_CONFIG": str(config)},
            home=str(tmp_path / "home"),
            clickhouse_dsn=chdb_path,
            clickhouse_database=store.database,
            state_dsn=state_dsn,
        )
        stop = threading.Event()
        shared = up.Shared(settings, stop)
        service = up.CorrelateService(shared, up.Options(correlate_interval=0.2))
        service.start()
        try:
            start = datetime.now(UTC) - timedelta(minutes=1)
            alerts.write(store, [_alert("disk", start)])
            assert wait_for(lambda: len(_pages(receiver)) == 1, 30), "the first incident was not paged"

            with state_locked(state_dsn, LOCK_SECONDS):
                # A re-send of the first alert and two new incidents arrive while it is locked.
                alerts.write(store, [_alert("disk", start), _alert("latency", start), _alert("queue", start)])
                time.sleep(LOCK_SECONDS - 1)
                assert len(_pages(receiver)) == 1  # waiting, not paging from a half-written book
                assert service.join(0) is False and service.error is None and not stop.is_set()

            assert wait_for(lambda: len(_pages(receiver)) == 3, 30), _pages(receiver)
            time.sleep(1.0)  # more polls: nothing is applied twice
        finally:
            stop.set()
            assert service.join(15)
            shared.close()
        assert service.error is None
        pages = _pages(receiver)

    assert sorted(p["status"] for p in pages) == ["open"] * 3
    assert len({p["incident_id"] for p in pages}) == 3
    db = connect(state_dsn)
    try:
        with db.begin() as conn:
            rows = conn.execute(sa.select(INCIDENTS.c.id, INCIDENTS.c.fingerprints)).all()
            opened = Counter(
                conn.execute(sa.select(EVENTS.c.incident_id).where(EVENTS.c.kind == "opened")).scalars()
            )
            queued = conn.execute(sa.select(OUTBOX.c.incident_id, OUTBOX.c.status)).all()
    finally:
        db.dispose()
    members = sorted(f for _, fingerprints in rows for f in json.loads(fingerprints))
    assert members == sorted(f"drill-{n}" for n in INCIDENTS_ALERTS)  # each alert in one incident
    assert sorted(opened.values()) == [1, 1, 1] and set(opened) == {r.id for r in rows}
    assert sorted(status for _, status in queued) == ["delivered"] * 3  # one notice each, sent
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


def _pages(receiver: HttpServer) -> list[dict[str, Any]]:
    return [r.json() for r in list(receiver.requests) if r.path == "/hook"]


def test_replicas_starting_together_on_a_fresh_state_database_all_start(state_dsn: str) -> None:
    """Replicas of a deployment start at the same moment on an empty state database: every one of
    them migrates it and starts (before the fix, a few in ten tripped over a table another had just
    created and exited: "already exists", a unique violation)."""
    code = (
        "import sys\n"
        "from app import wiring\n"
        "from warroom.config import load_settings\n"
        "settings = load_settings(env={}, home='/nonexistent', state_dsn=sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()  # the starting gun: every replica is loaded, so they migrate at once\n"
        "wiring.state_db(settings).dispose()\n"
    )
    argv = [sys.executable, "-c", code, state_dsn]
    pipe = subprocess.PIPE
    replicas = [subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True) for _ in range(4)]
    for replica in replicas:
        assert replica.stdout is not None and replica.stdout.readline().strip() == "ready"
    for replica in replicas:
        assert replica.stdin is not None
        replica.stdin.write("go\n")
        replica.stdin.flush()
    errors = [r.communicate(timeout=60)[1] for r in replicas]
    assert [r.returncode for r in replicas] == [0] * 4, [e[-600:] for e in errors if e]
