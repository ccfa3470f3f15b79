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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from app import wiring
from app.health import Health
from warroom.config import Settings
from warroom.errors import BrokerError, InputError, StoreError, WarroomError
from warroom.leader import Leader, lead
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

SERVICES = ("ingest", "detect", "correlate", "summarize", "executor", "api")
"""Every service ``warroom up`` runs, in start order (the API last: it answers once all else runs)."""

LEADER_ELECTED = ("correlate", "executor")
"""Services that run in one process at a time: any number of replicas start, one leads
(:mod:`warroom.leader`, through the state database) and the others stand by."""


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
    """What the services of one process share, each opened once and only when a service first
    needs it: the store, the state database and one correlator with its outbox — one, so the
    notices an API command queues are delivered by the correlate service's dispatcher in the same
    process.

    Opening lazily is what lets a standby hold nothing: a ``--only correlate,executor`` replica
    waiting for leadership has not opened the store, which on the embedded engine only one
    process may hold.
    """

    settings: Settings
    stop: threading.Event
    wake: threading.Event = field(default_factory=threading.Event)  # intake → correlator, at once
    queued: threading.Event = field(default_factory=threading.Event)  # API → executor, at once
    health: Health = field(default_factory=Health)
    _store: ClickHouse | None = None
    _state: StateDB | None = None
    _correlator: tuple[Correlator, Outbox] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _store_lock: threading.Lock = field(default_factory=threading.Lock)  # held while migrating

    @property
    def store(self) -> ClickHouse:
        """The migrated store; waits out an unreachable ClickHouse (until stopped)."""
        with self._store_lock:
            if self._store is None:
                self._store, _ = wiring.migrated_store(self.settings, self.stop)
            return self._store

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

    def leader(self, role: str) -> Leader:
        return Leader(self.state(), role)

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
        health = self.shared.health
        health.set(self.name, "running")
        try:
            self.run()
            if not self.shared.stop.is_set():
                raise WarroomError(f"{self.name} ended on its own")
        except Stopped:
            pass  # shutdown came while the store was unavailable: stopping is what was asked
        except BaseException as exc:  # whatever it was, the process must not run on half
            self.error = exc
            health.set(self.name, "failed", str(exc))
            log.error("service failed; stopping the others", exc_info=exc, extra={"service": self.name})
        finally:
            if self.error is None:
                health.set(self.name, "stopped")
            self.shared.stop.set()

    def lead(self, work: Callable[[threading.Event], None]) -> None:
        """Run ``work(led)`` whenever this process leads this service's role (see
        :data:`LEADER_ELECTED`), standing by otherwise, until stopped."""
        leader, health = self.shared.leader(self.name), self.shared.health
        health.set(self.name, "standby", f"waiting for the {self.name} lock")

        def leading(led: threading.Event) -> None:
            health.set(self.name, "leader", leader.identity)
            try:
                work(led)
            finally:
                if not self.shared.stop.is_set():
                    health.set(self.name, "standby", "leadership lost; waiting for the lock")

        lead(leader, self.shared.stop, leading)


class IngestService(Service):
    """A member of the ingest consumer group, as ``warroom ingest kafka``."""

    name = "ingest"

    def run(self) -> None:
        from ingest.kafka_worker import KafkaIngest
        from ingest.stats import IngestStats

        settings, health = self.shared.settings, self.shared.health
        stats = IngestStats(settings.home / "ingest-status.json")
        health.probe("ingest", lambda: _INGEST_STATES.get(stats.state, (stats.state, "")))
        health.extra["ingest"] = stats.snapshot
        health.metrics.append(stats.prometheus)
        try:
            KafkaIngest(settings, wiring.writer(settings, self.shared.store), stats, self.shared.stop).run()
        except BrokerError as exc:
            raise BrokerError(
                f"{exc} (start a broker, e.g. `warroom broker`, or leave ingest out with --only)"
            ) from exc


_INGEST_STATES = {
    "starting": ("starting", "joining the consumer group"),
    "running": ("running", ""),
    "retrying": ("degraded", "ClickHouse unavailable: consumption paused, retrying with back-off"),
    "broker_unavailable": (
        "degraded",
        "Kafka unreachable: reconnecting; offsets of stored batches are committed once it is back",
    ),
    "stopped": ("stopped", ""),
}


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
    notices delivered by the outbox dispatcher, the topology relearned periodically — in the one
    replica that leads the ``correlate`` role; the others stand by."""

    name = "correlate"

    def run(self) -> None:
        def work(led: threading.Event) -> None:
            correlator, outbox = self.shared.correlator()
            with wiring.background_services(self.shared.store, outbox, led, self.options.topology_every):
                correlator.watch(led, self.options.correlate_interval, self.shared.wake)

        self.lead(work)


class ExecutorService(Service):
    """Runs the remediations people queued (``POST …/execute?queue=true``, ``warroom remediation
    execute --queue``) and expires overdue proposals — in the one replica that leads the
    ``executor`` role. Each run is claimed by compare-and-set, so no proposal runs twice, even
    across a change of leader; one that was running when its leader died stays ``executing``
    (warroom cannot know whether it took effect) for a person to check."""

    name = "executor"
    poll: ClassVar[float] = 1.0

    def run(self) -> None:
        from summarize.approval import Approvals

        settings = self.shared.settings

        def work(led: threading.Event) -> None:
            approvals = Approvals.from_settings(self.shared.state(), settings, wiring.catalog(settings))
            while not led.is_set():
                try:
                    approvals.expire_due()
                    for proposal in approvals.run_queued():
                        log.info(
                            "remediation executed",
                            extra={"proposal": proposal.id, "state": proposal.state.value},
                        )
                except WarroomError as exc:  # an outage of the state database: try again
                    log.warning("executor pass failed", extra={"error": str(exc)})
                if self.shared.queued.wait(self.poll):
                    self.shared.queued.clear()

        self.lead(work)


class SummarizeService(Service):
    """Keeps every incident's summary current: each pass summarises the incidents opened or changed
    since they were last summarised, as ``warroom summarize`` does (evidence pack, digest, the LLM
    narrative when one is configured, remediations recorded as proposals), and writes the digest to
    ``$WARROOM_HOME/summaries/<id>.html`` and ``.md``.

    Its state — when it last passed and, per incident, which version (``updated_at``) it settled and
    why — is saved after every pass (``$WARROOM_HOME/state/summarize.json``), so neither the next
    pass nor a restart redoes incidents that did not change (an LLM call each is not free).

    An LLM endpoint that is down must not cost an incident its narrative for good, nor an incident
    its digest: when the narrative failed for a transient reason (no connection, a timeout, 429 or
    5xx once the client's own retries are spent) the digest is written at once, saying the narrative
    is not shown and when it is tried again, and the incident is retried on a later pass, after
    ``summarize_every · 2^(n-1)`` seconds (capped at :attr:`retry_max_backoff`), at most
    :attr:`retry_limit` times per version — so an outage heals by itself and a long one costs a
    bounded number of calls. A deterministic outcome (accepted, an answer rejected by grounding, a
    4xx, a refusal) settles the version, as does a failure that is the incident's own (it is gone,
    a bad config): again only when the incident changes. A state database that fails without saying
    the failure is transient (SQLite's "database is locked" once its busy timeout ran out) gets the
    same bounded retries; a retryable store outage is retried every pass, without a bound, as it
    costs nothing but a query. A pass that fails as a whole (the state database unreachable) is
    logged, reported ``degraded`` and tried again at the next one: the process stays up.
    """

    name = "summarize"
    #: The newest incidents looked at per pass; older ones changing again is rare, and bounded state
    #: matters more to a process that runs for months.
    window: ClassVar[int] = 500
    #: Longest wait between retries of one incident's narrative, and how many tries a version gets
    #: (with the default 60 s passes: retried over about two and a half hours).
    retry_max_backoff: ClassVar[float] = 1800.0
    retry_limit: ClassVar[int] = 10
    #: Version 2 keeps, per incident, what was settled and why (version 1: the settled version only).
    state_format: ClassVar[int] = 2

    def __init__(self, shared: Shared, options: Options) -> None:
        super().__init__(shared, options)
        home = shared.settings.home
        self.state_path = home / "state" / "summarize.json"
        self.out = home / "summaries"
        self.last_pass: datetime | None = None
        #: incident id → {"version": updated_at, "status": "done" | "retry", "reason": why,
        #: "attempts": tries of this version that failed transiently, "next_at": when to retry}
        self.incidents: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        self.load()
        while not self.shared.stop.is_set():
            try:
                self.pass_once()
            except StoreError as exc:
                # The state database or the store is down (or PostgreSQL restarting): wait it out,
                # as the correlator does, rather than take the whole process down with this part.
                log.warning("summarize pass failed; retrying next pass", extra={"error": str(exc)})
                self.shared.health.set(self.name, "degraded", f"pass failed: {exc}")
            self.shared.stop.wait(self.options.summarize_every)

    def load(self) -> None:
        if not self.state_path.exists():
            return
        try:
            payload = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"summarize state {self.state_path} is unreadable: {exc}", "bad_state") from exc
        found = payload.get("format")
        if found == 1:  # before retries: every version it names was settled
            self.incidents = {
                k: {"version": v, "status": "done", "reason": ""} for k, v in payload["done"].items()
            }
        elif found == self.state_format:
            self.incidents = {k: dict(v) for k, v in payload.get("incidents", {}).items()}
        else:
            raise InputError(f"summarize state {self.state_path}: unknown format {found!r}", "bad_state")
        self.last_pass = datetime.fromisoformat(payload["last_pass"]) if payload.get("last_pass") else None

    def save(self) -> None:
        from app.summaries import write_atomic

        payload = {
            "format": self.state_format,
            "kind": "warroom.up.summarize",
            "last_pass": self.last_pass.isoformat() if self.last_pass else None,
            "incidents": self.incidents,
        }
        write_atomic(self.state_path, json.dumps(payload, indent=1))

    def _due(self, incident_id: str, version: str, now: datetime) -> bool:
        entry = self.incidents.get(incident_id)
        if entry is None or entry["version"] != version:
            return True
        return entry["status"] == "retry" and datetime.fromisoformat(entry["next_at"]) <= now

    def _settle(self, incident_id: str, version: str, reason: str) -> None:
        self.incidents[incident_id] = {"version": version, "status": "done", "reason": reason}

    def _retry_later(self, incident_id: str, version: str, reason: str, now: datetime) -> datetime | None:
        """Schedule another try of this version; None when its tries are spent (then it is settled)."""
        entry = self.incidents.get(incident_id)
        attempts = (entry.get("attempts", 0) if entry and entry["version"] == version else 0) + 1
        if attempts >= self.retry_limit:
            self._settle(incident_id, version, f"{reason}; gave up after {attempts} tries")
            return None
        delay = min(self.retry_max_backoff, self.options.summarize_every * 2 ** (attempts - 1))
        next_at = now + timedelta(seconds=delay)
        self.incidents[incident_id] = {
            "version": version,
            "status": "retry",
            "reason": reason,
            "attempts": attempts,
            "next_at": next_at.isoformat(),
        }
        return next_at

    def pass_once(self) -> list[str]:
        """One pass; returns the ids whose pages it wrote."""
        from app import summaries

        settings, state = self.shared.settings, self.shared.state()
        incidents = wiring.incident_store(settings, state, lambda: None)  # reads only: no topology
        catalog = wiring.catalog(settings)
        listed = incidents.incidents(limit=self.window)
        summarised = []
        for incident in listed:
            if self.shared.stop.is_set():
                break
            version, now = incident.updated_at.isoformat(), datetime.now(UTC)
            if not self._due(incident.id, version, now):
                continue
            fields: dict[str, object] = {"incident": incident.id}
            try:
                result = summaries.summarize_incident(
                    settings, self.shared.store, state, incidents, incident.id, catalog=catalog
                )
            except WarroomError as exc:
                fields["error"] = str(exc)
                if isinstance(exc, StoreError) and exc.retryable:
                    log.warning("summary failed; retrying next pass", extra=fields)  # an outage
                    continue
                retry_at = None
                if isinstance(exc, StoreError):  # not said to be transient, but may be (a lock)
                    retry_at = self._retry_later(incident.id, version, f"failed: {exc}", now)
                else:  # the incident's own (gone, a bad config): again only when it changes
                    self._settle(incident.id, version, f"failed: {exc}")
                fields["retry_at"] = retry_at.isoformat() if retry_at else None
                log.warning("summary failed", extra=fields)
                continue
            summary, outcome = result.summary, result.outcome
            status = outcome.status if outcome is not None else "no LLM"
            if outcome is not None and outcome.retryable:
                next_at = self._retry_later(incident.id, version, status, now)
                if next_at is None:  # tries spent: the page says so, as the state does
                    summary = replace(summary, llm_status=self.incidents[incident.id]["reason"])
                else:
                    summary = replace(summary, llm_status=f"{status}; will retry at {next_at:%H:%M:%S} UTC")
                fields["llm_status"] = summary.llm_status
            else:
                self._settle(incident.id, version, status)
            summaries.write_pages(summary, self.out)
            summarised.append(incident.id)
            fields["proposals"] = [p.id for p in result.proposals]
            log.info("incident summarised", extra=fields)
        listed_ids = {i.id for i in listed}
        self.incidents = {k: v for k, v in self.incidents.items() if k in listed_ids}
        self.last_pass = datetime.now(UTC)
        self.save()
        self._report()
        return summarised

    def _report(self) -> None:
        """Say in ``/status`` which narratives wait for a retry, and why. The state stays ``running``
        (ready): digests are still written, and an LLM outage must not take the API out of service."""
        waiting = [v for v in self.incidents.values() if v["status"] == "retry"]
        detail = ""
        if waiting:
            reasons = ", ".join(sorted({str(v["reason"]) for v in waiting}))
            detail = f"narrative of {len(waiting)} incident(s) to retry with back-off ({reasons})"
        self.shared.health.set(self.name, "running", detail)


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
            on_queued=self.shared.queued.set,
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
    s.name: s
    for s in (IngestService, DetectService, CorrelateService, SummarizeService, ExecutorService, ApiService)
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
    shared = Shared(settings, stop)
    services = [_KINDS[name](shared, options) for name in options.only]
    status = None
    if settings.status_port:
        from app.health import serve

        status = serve(shared.health, settings.status_host, settings.status_port)
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
        if status is not None:
            status.shutdown()
            status.server_close()
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
