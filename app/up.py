"""``warroom up``: ingest, detect, correlate, summarize and the API as one process — or a chosen
subset of them (``--only``), so that each can run, and scale, as its own service.

Why threads in one process: the embedded ClickHouse (chdb) opens one data path per process, so on
the embedded defaults (chdb + SQLite) every part must live in the process that owns the store;
they share that store and one state database. With a ClickHouse server and PostgreSQL the same
command runs each part as its own deployment: ``--only ingest`` (as many as the topics have
partitions, one consumer group), ``--only detect``, ``--only correlate``, ``--only summarize``,
``--only api``.

Lifecycle, in one place (:func:`run`): every service is a :class:`Service` running in its own
thread and watching one shared stop event. SIGTERM or SIGINT sets it; each service returns, the
threads are joined within a deadline, and the command exits 0. A service that raises — or returns
while nobody asked it to stop — is logged, sets the same event so all the others stop too, and the
command exits non-zero: a process with its ingest dead but its API answering ``/healthz`` would
look healthy to an orchestrator while losing data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from app import wiring
from warroom.config import Settings
from warroom.errors import BrokerError, InputError, StoreError, WarroomError
from warroom.model import Alert
from warroom.retry import Stopped

if TYPE_CHECKING:  # the API stack (FastAPI, uvicorn) loads only when a service needs it
    from app.api.context import ApiContext
    from app.api.server import ServerThread
    from correlate.notify.outbox import Outbox
    from correlate.service import Correlator
    from warroom.clickhouse import ClickHouse
    from warroom.statedb import StateDB

__all__ = ["SERVICES", "Options", "api_server", "parse_only", "run", "stop_on_signals"]

log = logging.getLogger("warroom.up")

SERVICES = ("ingest", "detect", "correlate", "summarize", "api")
"""Every service ``warroom up`` runs, in start order (the API last: it answers once all else runs)."""

SUMMARIZE_STATE_FORMAT = 1


def parse_only(values: Iterable[str]) -> tuple[str, ...]:
    """``--only`` values (comma-separated, repeatable) → service names in :data:`SERVICES` order.

    Nothing given means every service. An unknown name is an :class:`InputError` naming the known
    ones, so a typo fails at once instead of starting a process that silently lacks a part.
    """
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise InputError(
            f"unknown service {', '.join(repr(n) for n in unknown)} (known: {', '.join(SERVICES)})",
            reason="unknown_service",
        )
    return tuple(s for s in SERVICES if s in names) if names else SERVICES


def stop_on_signals(stop: threading.Event | None = None) -> threading.Event:
    """An event set by the first SIGTERM/SIGINT; a second one ends the process at once.

    The second signal is the way out of a shutdown that hangs (a ClickHouse that never answers):
    the first asks politely, the second does not wait.
    """
    event = stop or threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if event.is_set():
            os._exit(128 + signum)
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event


def api_server(ctx: ApiContext, host: str, port: int) -> ServerThread:
    """The HTTP API over ``ctx`` with the web console mounted; not started.

    The one place that builds the served application, so ``warroom up``, ``warroom serve`` and
    ``warroom demo`` serve the same thing.
    """
    from app.api.server import ServerThread, create_app
    from app.console import mount_console

    app = create_app(ctx)
    mount_console(app, ctx)
    return ServerThread(app, host, port)


@dataclass(frozen=True)
class Options:
    """What ``warroom up``'s flags choose; every default is that of the matching one-part command."""

    only: tuple[str, ...] = SERVICES
    host: str | None = None  # default: WARROOM_API_HOST
    port: int | None = None  # default: WARROOM_API_PORT
    detect_step: int = 60  # as `detect watch --step`
    rules: Path | None = None  # as `detect watch --rules`
    correlate_interval: float = 5.0  # as `correlate watch --interval`
    topology_every: float = 300.0  # as `correlate watch --topology-every`
    summarize_every: float = 60.0
    join_timeout: float = 30.0


@dataclass
class Shared:
    """What the services of one process share, opened once: the store, and (only if a service
    needs them) the state database and one correlator with its outbox — one, so the notices an
    API command queues are delivered by the correlate service's dispatcher in the same process."""

    settings: Settings
    store: ClickHouse
    stop: threading.Event
    wake: threading.Event = field(default_factory=threading.Event)  # intake → correlator, at once
    _state: StateDB | None = None
    _correlator: tuple[Correlator, Outbox] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self) -> StateDB:
        with self._lock:
            if self._state is None:
                self._state = wiring.state_db(self.settings)
            return self._state

    def correlator(self) -> tuple[Correlator, Outbox]:
        state = self.state()
        with self._lock:
            if self._correlator is None:
                self._correlator = wiring.correlator(self.settings, self.store, state)
            return self._correlator

    def close(self) -> None:
        if self._correlator is not None:
            self._correlator[1].close()
        if self._state is not None:
            self._state.dispose()


class Service:
    """One part of the process: :meth:`run` blocks until ``shared.stop`` is set.

    :meth:`start` runs it in a thread; :meth:`join` waits for it. Whatever ends :meth:`run` other
    than the stop event — an exception, or an early return — is recorded in :attr:`error` and sets
    the stop event, which takes every other service down with it.
    """

    name: ClassVar[str]

    def __init__(self, shared: Shared, options: Options) -> None:
        self.shared = shared
        self.options = options
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"warroom-{self.name}", daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the service to end; False if it is still running after ``timeout`` seconds."""
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            self.run()
            if not self.shared.stop.is_set():
                raise WarroomError(f"{self.name} ended on its own")
        except Stopped:
            pass  # shutdown came while the store was unavailable: stopping is what was asked
        except BaseException as exc:  # whatever it was, the process must not run on half
            self.error = exc
            log.error("service failed; stopping the others", exc_info=exc, extra={"service": self.name})
        finally:
            self.shared.stop.set()


class IngestService(Service):
    """A member of the ingest consumer group, as ``warroom ingest kafka``."""

    name = "ingest"

    def run(self) -> None:
        from ingest.kafka_worker import KafkaIngest
        from ingest.stats import IngestStats

        settings = self.shared.settings
        stats = IngestStats(settings.home / "ingest-status.json")
        server = stats.serve(settings.status_port) if settings.status_port else None
        try:
            KafkaIngest(settings, wiring.writer(settings, self.shared.store), stats, self.shared.stop).run()
        except BrokerError as exc:
            raise BrokerError(
                f"{exc} (start a broker, e.g. `warroom broker`, or leave ingest out with --only)"
            ) from exc
        finally:
            if server is not None:
                server.shutdown()


class DetectService(Service):
    """The ``warroom detect watch`` loop: every step, detection over the newest complete step,
    resuming from the state file after a restart (``$WARROOM_HOME/state/detect.json``, or
    ``detect-IofN.json`` for shard ``WARROOM_DETECT_SHARD=I/N``)."""

    name = "detect"

    def run(self) -> None:
        from detect.run import DetectRunner, RunConfig, load_rules_file, state_file, watch
        from detect.sharding import Shard

        step, stop = self.options.detect_step, self.shared.stop
        shard = Shard.parse(self.shared.settings.detect_shard)
        runner = DetectRunner(
            self.shared.store,
            state_file(self.shared.settings.home, shard),
            RunConfig(step_s=step, rules=load_rules_file(self.options.rules), shard=shard),
        )
        watch(runner, stop, step, _log_opened)


def _log_opened(alert: Alert) -> None:
    extra = {"service": alert.service, "severity": alert.severity.value}
    log.info("alert opened: %s", alert.title, extra=extra)


class CorrelateService(Service):
    """``warroom correlate watch``: alerts into incidents as they arrive, quiet ones resolved,
    notices delivered by the outbox dispatcher, the topology relearned periodically."""

    name = "correlate"

    def run(self) -> None:
        correlator, outbox = self.shared.correlator()
        with wiring.background_services(
            self.shared.store, outbox, self.shared.stop, self.options.topology_every
        ):
            correlator.watch(self.shared.stop, self.options.correlate_interval, self.shared.wake)


class SummarizeService(Service):
    """Keeps every incident's summary current: each pass summarises the incidents opened or changed
    since they were last summarised, as ``warroom summarize`` does (evidence pack, digest, the LLM
    narrative when one is configured, remediations recorded as proposals), and writes the digest to
    ``$WARROOM_HOME/summaries/<id>.html`` and ``.md``.

    Its state — when it last passed and which version (``updated_at``) of each incident it
    summarised — is saved after every pass (``$WARROOM_HOME/state/summarize.json``), so neither the
    next pass nor a restart redoes incidents that did not change (an LLM call each is not free).
    """

    name = "summarize"
    #: The newest incidents looked at per pass; older ones changing again is rare, and bounded state
    #: matters more to a process that runs for months.
    window: ClassVar[int] = 500

    def __init__(self, shared: Shared, options: Options) -> None:
        super().__init__(shared, options)
        home = shared.settings.home
        self.state_path = home / "state" / "summarize.json"
        self.out = home / "summaries"
        self.last_pass: datetime | None = None
        self.done: dict[str, str] = {}  # incident id → the updated_at that was summarised

    def run(self) -> None:
        self.load()
        while not self.shared.stop.is_set():
            self.pass_once()
            self.shared.stop.wait(self.options.summarize_every)

    def load(self) -> None:
        if not self.state_path.exists():
            return
        try:
            payload = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"summarize state {self.state_path} is unreadable: {exc}", "bad_state") from exc
        if payload.get("format") != SUMMARIZE_STATE_FORMAT:
            raise InputError(
                f"summarize state {self.state_path}: unknown format {payload.get('format')!r}", "bad_state"
            )
        self.last_pass = datetime.fromisoformat(payload["last_pass"]) if payload.get("last_pass") else None
        self.done = dict(payload.get("done", {}))

    def save(self) -> None:
        from app.summaries import write_atomic

        payload = {
            "format": SUMMARIZE_STATE_FORMAT,
            "kind": "warroom.up.summarize",
            "last_pass": self.last_pass.isoformat() if self.last_pass else None,
            "done": self.done,
        }
        write_atomic(self.state_path, json.dumps(payload, indent=1))

    def pass_once(self) -> list[str]:
        """One pass; returns the ids it summarised."""
        from app import summaries

        settings, state = self.shared.settings, self.shared.state()
        incidents = wiring.incident_store(settings, state, lambda: None)  # reads only: no topology
        catalog = wiring.catalog(settings)
        listed = incidents.incidents(limit=self.window)
        summarised = []
        for incident in listed:
            if self.shared.stop.is_set():
                break
            version = incident.updated_at.isoformat()
            if self.done.get(incident.id) == version:
                continue
            try:
                result = summaries.summarize_incident(
                    settings, self.shared.store, state, incidents, incident.id, catalog=catalog
                )
            except WarroomError as exc:
                log.warning("summary failed", extra={"incident": incident.id, "error": str(exc)})
                if isinstance(exc, StoreError) and exc.retryable:
                    continue  # an outage: try again next pass
                self.done[incident.id] = version  # deterministic: again only when the incident changes
                continue
            summaries.write_pages(result.summary, self.out)
            self.done[incident.id] = version
            summarised.append(incident.id)
            log.info(
                "incident summarised",
                extra={"incident": incident.id, "proposals": [p.id for p in result.proposals]},
            )
        listed_ids = {i.id for i in listed}
        self.done = {k: v for k, v in self.done.items() if k in listed_ids}
        self.last_pass = datetime.now(UTC)
        self.save()
        return summarised


class ApiService(Service):
    """The HTTP API (and the console, when installed) — :func:`api_server` — until stopped.

    Incident commands made through it queue their notices in the state database; the correlate
    service's dispatcher delivers them — in this process, or in the one running ``--only correlate``
    against the same state database.
    """

    name = "api"

    def __init__(self, shared: Shared, options: Options) -> None:
        super().__init__(shared, options)
        self.url: str | None = None
        self.ready = threading.Event()  # set once listening (or failed): the CLI then says where

    def run(self) -> None:
        from app.api.context import ApiContext

        settings = self.shared.settings
        correlator, _outbox = self.shared.correlator()
        wake = self.shared.wake
        ctx = ApiContext(
            settings,
            self.shared.store,
            self.shared.state(),
            correlator,
            wiring.catalog(settings),
            on_accepted=lambda _alerts: wake.set(),
        )
        host = self.options.host or settings.api_host
        port = self.options.port or settings.api_port
        try:
            with api_server(ctx, host, port) as server:
                self.url = server.url
                self.ready.set()
                self.shared.stop.wait()
        finally:
            self.ready.set()


_KINDS: dict[str, type[Service]] = {
    s.name: s for s in (IngestService, DetectService, CorrelateService, SummarizeService, ApiService)
}


def run(
    settings: Settings,
    options: Options,
    stop: threading.Event,
    on_ready: Callable[[Sequence[str], str | None], None] | None = None,
) -> None:
    """Run the chosen services until ``stop`` is set, then stop them all; raises if one failed.

    ``on_ready(names, api_url)`` is called once every service has started (and the API, if chosen,
    listens), for the CLI to say so.
    """
    store, _ = wiring.migrated_store(settings, stop)  # waits for an unreachable server, until stopped
    shared = Shared(settings, store, stop)
    services = [_KINDS[name](shared, options) for name in options.only]
    try:
        for service in services:
            service.start()
        api = next((s for s in services if isinstance(s, ApiService)), None)
        if api is not None:
            api.ready.wait()
        if on_ready is not None and not stop.is_set():
            on_ready(options.only, api.url if api else None)
        while not stop.wait(0.5):  # a timed wait, so signal handlers run promptly in this thread
            pass
        deadline = time.monotonic() + options.join_timeout
        for service in reversed(services):  # the API first: no new requests while the rest stops
            if not service.join(deadline - time.monotonic()):
                log.warning("service did not stop in time", extra={"service": service.name})
    finally:
        shared.close()
    failed = [s for s in services if s.error is not None]
    if failed:
        first = failed[0]
        error = WarroomError(
            f"{first.name} failed: {first.error}; stopped "
            + (", ".join(s.name for s in services if s is not first) or "nothing else")
        )
        if isinstance(first.error, WarroomError):
            error.exit_code = first.error.exit_code
        raise error from first.error
