"""Build the process's components from settings, in one place.

The list of schema migrations is assembled here (core tables, then each stage's own), because only
the composition root may know every stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from correlate.grouping import GroupingConfig
from correlate.lifecycle import LifecycleConfig
from correlate.notifier import Notifier
from correlate.notify.outbox import Dispatcher, Outbox
from correlate.notify.routing import build_router
from correlate.service import Correlator
from correlate.store import IncidentStore
from correlate.topology import MIGRATION as TOPOLOGY_MIGRATION
from correlate.topology import Topology
from correlate.topology_refresh import TopologyCache, refresh
from detect.run import MIGRATION as DETECT_MIGRATION
from ingest.native_sql import MIGRATION as INGEST_MIGRATION
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter
from summarize.catalog import Catalog
from warroom import statedb
from warroom.alerts import INSERTED_AT_MIGRATION
from warroom.alerts import MIGRATION as ALERTS_MIGRATION
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import StoreError, WarroomError
from warroom.retry import retry
from warroom.schema import MIGRATIONS_LIST, Migration, SchemaOptions, migrate
from warroom.statedb import StateDB

log = logging.getLogger("warroom")

STAGE_MIGRATIONS: tuple[Migration, ...] = (
    ALERTS_MIGRATION,
    INSERTED_AT_MIGRATION,
    INGEST_MIGRATION,
    DETECT_MIGRATION,
    TOPOLOGY_MIGRATION,
)


def migrations() -> list[Migration]:
    return sorted([*MIGRATIONS_LIST, *STAGE_MIGRATIONS], key=lambda m: m.version)


def store(settings: Settings) -> ClickHouse:
    if settings.clickhouse_dsn.startswith("chdb://"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return ClickHouse(settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_cluster)


def schema_options(settings: Settings) -> SchemaOptions:
    return SchemaOptions(
        ttl_days=settings.ttl_days, dedup_window=settings.dedup_window, cluster=settings.clickhouse_cluster
    )


def migrated_store(
    settings: Settings, stop: threading.Event | None = None
) -> tuple[ClickHouse, list[Migration]]:
    """Open the store and apply pending migrations.

    With ``stop`` (long-running services), an unreachable ClickHouse is waited for with back-off
    instead of failing start-up; without it (one-shot commands) the error is reported at once.
    """
    db = store(settings)
    if stop is None:
        return db, migrate(db, schema_options(settings), migrations())

    def on_retry(attempt: int, exc: StoreError, delay: float) -> None:
        log.warning(
            "ClickHouse unavailable at start-up, retrying", extra={"attempt": attempt, "error": str(exc)}
        )

    applied = retry(
        lambda: migrate(db, schema_options(settings), migrations()),
        stop,
        settings.retry_max_seconds,
        on_retry=on_retry,
    )
    return db, applied


def limits(settings: Settings) -> Limits:
    return Limits(
        max_attr_value_chars=settings.max_attr_value_chars,
        max_body_chars=settings.max_body_chars,
        max_future_skew_ns=settings.max_future_skew_s * 1_000_000_000,
    )


def writer(settings: Settings, db: ClickHouse) -> NativeWriter:
    return NativeWriter(db, limits(settings), time.time_ns)


# --- the state database and the correlator -----------------------------------------------------


def state_db(settings: Settings) -> StateDB:
    """Open the state database and create its missing tables (every stage's, listed here)."""
    from app.auth import METADATA as USER_TABLES
    from correlate.notify.outbox import METADATA as OUTBOX_TABLES
    from correlate.store import METADATA as INCIDENT_TABLES
    from summarize.approval import METADATA as APPROVAL_TABLES
    from warroom.audit import METADATA as AUDIT_TABLES

    db = statedb.connect(settings.state_dsn)
    statedb.migrate(db, [AUDIT_TABLES, INCIDENT_TABLES, OUTBOX_TABLES, APPROVAL_TABLES, USER_TABLES])
    return db


def catalog(settings: Settings) -> Catalog:
    """The remediation catalog: the built-in actions merged with the config file's ``[actions]``."""
    return Catalog.from_settings(settings)


def grouping_config(settings: Settings) -> GroupingConfig:
    return GroupingConfig(reopen_window=timedelta(seconds=settings.incident_reopen_s))


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    return LifecycleConfig(
        quiet=timedelta(seconds=settings.incident_quiet_s),
        flap_window=timedelta(seconds=settings.flap_window_s),
        flap_threshold=max(2, settings.flap_threshold),
    )


def incident_store(
    settings: Settings, state: StateDB, topology: Callable[[], Topology | None]
) -> IncidentStore:
    return IncidentStore(state, topology, grouping_config(settings), lifecycle_config(settings))


def correlator(
    settings: Settings, store: ClickHouse, state: StateDB, *, data_time: datetime | None = None
) -> tuple[Correlator, Outbox]:
    """The correlator with routing and the outbox from the config file.

    ``data_time`` pins the topology snapshot (a run over past data); by default the newest one.
    """
    router = build_router(settings.tables)
    outbox = Outbox(state, router.receivers)
    topology = TopologyCache(store, (lambda: data_time) if data_time else (lambda: datetime.now(UTC)))
    notifier = Notifier(router, outbox)
    return Correlator(store, incident_store(settings, state, topology), notifier), outbox


@contextmanager
def background_services(
    store: ClickHouse, outbox: Outbox, stop: threading.Event, topology_every: float = 300.0
) -> Iterator[Dispatcher]:
    """The correlator's helpers while it runs: notice delivery and periodic topology learning."""

    def learn() -> None:
        while not stop.is_set():
            try:
                refresh(store, datetime.now(UTC))
            except WarroomError as exc:
                log.warning("topology refresh failed", extra={"error": str(exc)})
            stop.wait(topology_every)

    learner = threading.Thread(target=learn, name="warroom-topology", daemon=True)
    learner.start()
    with Dispatcher(outbox) as dispatcher:
        yield dispatcher
    stop.set()
    learner.join(5.0)
