"""``warroom up``: the services run as one process, stop together, and fail together.

As a user runs it (a subprocess with its own home): the API answers, SIGTERM ends everything with
exit 0 within seconds, and a misspelt ``--only`` is refused before anything starts. In process: a
service that dies takes the others down and the command fails naming it, and the summarize service
does not redo incidents that did not change — not in its next pass, nor after a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from app import up, wiring
from tests.conftest import WARROOM
from tests.correlate.test_serve import free_port, wait_for
from warroom import alerts
from warroom.clickhouse import ClickHouse
from warroom.config import Settings, load_settings
from warroom.errors import WarroomError
from warroom.model import Alert, Severity

pytestmark = pytest.mark.integration


def _env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    values["WARROOM_HOME"] = str(tmp_path / "home")
    return values


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [WARROOM, "up", "--only", "api,correlate", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60), "up did not serve"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 0, err[-3000:]
    assert took < 10, f"shutdown took {took:.1f} s"
    assert f"warroom up: correlate, api; API on http://127.0.0.1:{port}/" in err
    assert "Traceback" not in err, err[-3000:]


def test_up_refuses_an_unknown_service(tmp_path: Path) -> None:
    done = subprocess.run(
        [WARROOM, "up", "--only", "api,bogus"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    known = "ingest, detect, correlate, summarize, executor, api"
    assert f"unknown service 'bogus' (known: {known})" in done.stderr
    assert not (tmp_path / "home" / "clickhouse").exists()  # refused before opening anything


def test_parse_only_orders_and_defaults() -> None:
    assert up.parse_only(["api", "ingest, detect"]) == ("ingest", "detect", "api")
    assert up.parse_only([]) == up.SERVICES


# -- in process ----------------------------------------------------------------------------------


@pytest.fixture
def settings(store: ClickHouse, chdb_path: str, tmp_path: Path) -> Settings:
    return load_settings(
        env={},
        home=str(tmp_path / "home"),
        clickhouse_dsn=chdb_path,
        clickhouse_database=store.database,
        state_dsn=f"sqlite:///{tmp_path / 'state.db'}",
    )


class _Crashes(up.Service):
    name = "detect"

    def run(self) -> None:
        time.sleep(0.2)
        raise RuntimeError("detector exploded")


class _Waits(up.Service):
    name = "summarize"
    stopped: ClassVar[list[bool]] = []

    def run(self) -> None:
        self.shared.stop.wait()
        self.stopped.append(True)


def test_a_failing_service_stops_the_others_and_fails_the_command(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(up._KINDS, "detect", _Crashes)
    monkeypatch.setitem(up._KINDS, "summarize", _Waits)
    stop = threading.Event()
    with pytest.raises(WarroomError, match="detect failed: detector exploded; stopped summarize"):
        up.run(settings, up.Options(only=("detect", "summarize"), join_timeout=5), stop)
    assert stop.is_set() and _Waits.stopped == [True]


def _alert(fingerprint: str, at: datetime) -> Alert:
    labels = {"service": "checkout", "host.name": "h-1"}
    return Alert(fingerprint, f"checkout errors {fingerprint}", Severity.CRITICAL, at, labels=labels)


def test_summarize_passes_only_redo_changed_incidents(settings: Settings, store: ClickHouse) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    alerts.write(store, [_alert("a-1", start)])
    state = wiring.state_db(settings)
    correlator, outbox = wiring.correlator(settings, store, state)  # no receivers: nothing is sent
    correlator.run(start - timedelta(minutes=1), start + timedelta(minutes=1))
    shared = up.Shared(settings, threading.Event(), _store=store)

    def service() -> Any:
        summarizer = up.SummarizeService(shared, up.Options())
        summarizer.load()
        return summarizer

    first = service()
    (incident,) = first.pass_once()
    assert (settings.home / "summaries" / f"{incident}.html").read_text().startswith("<!")
    assert first.pass_once() == []  # nothing changed
    assert service().pass_once() == []  # nor after a restart: the state file remembers

    alerts.write(store, [_alert("a-2", start + timedelta(minutes=2))])  # the incident grows
    correlator.run(start + timedelta(minutes=1), start + timedelta(minutes=3))
    assert service().pass_once() == [incident]
    outbox.close()
    shared.close()
    state.dispose()
