"""Real ``warroom ingest kafka`` processes and a steady producer, for the tests that change a
consumer group under load (scale-out, fault drills): one place for starting, signalling and
waiting on members, so each test says only what it does to them."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.conftest import WARROOM
from tests.otlp_builders import sdk_spans

PARTITIONS = 6
RECORD_INTERVAL_S = 0.04  # ~25 records (150 spans) a second, spread round-robin over the partitions
PHASE_TIMEOUT_S = 60.0  # per phase; the rebalance after a SIGKILL waits out the 10 s session timeout


# -- the producer ------------------------------------------------------------------------------


class Stream(threading.Thread):
    """Produce one small trace request every ``RECORD_INTERVAL_S`` until stopped.

    Each record goes to partition ``seq % PARTITIONS``; once stopped, ``records`` maps every
    record's ``(partition, offset)`` to its span ids (hex, as stored).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="scaleout-producer", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.halt = threading.Event()
        self.records: dict[tuple[int, int], list[str]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            sent = []
            seq = 0
            while not self.halt.is_set():
                request = sdk_spans(f"svc-{seq % 5}", traces=2, children=2)
                ids = [
                    sp.span_id.hex()
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for sp in ss.spans
                ]
                sent.append(
                    (ids, producer.send(self.topic, request.SerializeToString(), partition=seq % PARTITIONS))
                )
                seq += 1
                self.halt.wait(RECORD_INTERVAL_S)
            producer.flush(timeout=30)
            for ids, future in sent:
                meta = future.get(timeout=30)
                self.records[(meta.partition, meta.offset)] = ids
            producer.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread in finish()
            self.error = exc

    def finish(self) -> dict[tuple[int, int], list[str]]:
        self.halt.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the producer did not flush within 60 s"
        if self.error is not None:
            raise self.error
        return self.records


# -- the members -------------------------------------------------------------------------------


@dataclass
class Member:
    """One ``warroom ingest kafka`` process (restartable: a restart keeps the home and store)."""

    name: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    running: bool = False  # started and not yet waited for: dying now is a failure
    exits: list[int] = field(default_factory=list)
    _log: IO[bytes] | None = None

    @property
    def home(self) -> Path:
        return Path(self.env["WARROOM_HOME"])

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"{self.name}.log"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [WARROOM, "ingest", "kafka"], env=self.env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        self.running = True

    def stored(self) -> int:
        """Spans this incarnation has stored, from its status file (0 before its first write)."""
        try:
            status = json.loads((self.home / "ingest-status.json").read_text())
        except (OSError, ValueError):
            return 0
        if self.proc is None or status.get("pid") != self.proc.pid:
            return 0
        return int(status.get("items", {}).get("traces", 0))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.running = False
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f} s; see {self.log_path}"
            ) from None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        self.exits.append(code)
        return code

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_for(
    what: str,
    check: Callable[[], bool],
    members: list[Member],
    timeout: float = PHASE_TIMEOUT_S,
    detail: Callable[[], object] = lambda: "",
) -> None:
    """Poll ``check`` until true; fail with ``what`` (and any dead member's log) on timeout.

    Waiting on observed progress rather than sleeping keeps the test correct on a loaded machine;
    the timeout only bounds how long a stuck phase takes to report.
    """
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        for m in members:
            assert not m.running or m.alive(), f"{m.name} died:\n{m.tail()}"
        if check():
            # Shown by pytest on failure (or with -s): where the wall time went, phase by phase.
            print(f"{time.monotonic() - started:6.1f} s until {what}")
            return
        time.sleep(0.2)
    progress = {m.name: m.stored() for m in members}
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting until {what} {detail()}; spans stored so far: {progress}"
    )
