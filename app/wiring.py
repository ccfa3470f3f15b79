"""Build the process's components from settings, in one place.

The list of schema migrations is assembled here (core tables, then each stage's own), because only
the composition root may know every stage.
"""

from __future__ import annotations

import logging
import threading
import time

from correlate.topology import MIGRATION as TOPOLOGY_MIGRATION
from detect.run import MIGRATION as DETECT_MIGRATION
from ingest.native_sql import MIGRATION as INGEST_MIGRATION
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter
from warroom.alerts import MIGRATION as ALERTS_MIGRATION
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import StoreError
from warroom.retry import retry
from warroom.schema import MIGRATIONS_LIST, Migration, SchemaOptions, migrate

log = logging.getLogger("warroom")

STAGE_MIGRATIONS: tuple[Migration, ...] = (
    ALERTS_MIGRATION,
    INGEST_MIGRATION,
    DETECT_MIGRATION,
    TOPOLOGY_MIGRATION,
)


def migrations() -> list[Migration]:
    return sorted([*MIGRATIONS_LIST, *STAGE_MIGRATIONS], key=lambda m: m.version)


def store(settings: Settings) -> ClickHouse:
    if settings.clickhouse_dsn.startswith("chdb://"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return ClickHouse(settings.clickhouse_dsn, settings.clickhouse_database)


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
