"""The state database: what people and workflows change — incidents, their audit trail, the
notification outbox, approvals — as opposed to telemetry and alerts, which live in ClickHouse.

Why a second store: incident state is small, updated row by row and needs transactions (an ack and
a merge must not interleave); ClickHouse is built for the opposite. SQLAlchemy Core keeps one code
path for the embedded default (a SQLite file under ``$WARROOM_HOME``) and production (PostgreSQL,
``postgresql://`` URLs use psycopg 3). Every statement is built with SQLAlchemy and binds its values.

Each stage declares its tables on its own :class:`~sqlalchemy.MetaData`; the composition root
passes them all to :func:`migrate`, which creates what is missing and records the schema version.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from warroom.errors import ConfigError, StoreError

__all__ = ["SCHEMA_VERSION", "StateDB", "UTCDateTime", "connect", "migrate"]

SCHEMA_VERSION = 1
"""Bump with every change of a state table; :func:`migrate` refuses a database from the future."""

_META = sa.MetaData()
_VERSION = sa.Table(
    "warroom_state_schema",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _url(dsn: str) -> sa.URL:
    try:
        url = sa.make_url(dsn)
    except sa.exc.ArgumentError as exc:
        raise ConfigError("WARROOM_STATE_DSN", f"not a database URL: {exc}") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "postgresql+psycopg"):
        raise ConfigError("WARROOM_STATE_DSN", f"unsupported database {url.drivername!r}")
    return url


class StateDB:
    """An engine plus the helpers every stage's repository uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; database errors leave as :class:`StoreError`."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise StoreError(
                f"state database: {type(exc.orig).__name__}: {exc.orig}",
                retryable=bool(exc.connection_invalidated),
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"state database: {exc}", retryable=False) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def connect(dsn: str) -> StateDB:
    """Open the state database at ``dsn`` (a SQLite file's directory is created)."""
    url = _url(dsn)
    kwargs: dict[str, Any] = {"future": True}
    if url.drivername == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if url.drivername == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return StateDB(engine)


_MIGRATE_TRIES = 5


def migrate(db: StateDB, metadatas: Iterable[sa.MetaData]) -> int:
    """Create every missing table of ``metadatas`` and stamp :data:`SCHEMA_VERSION`; returns it.

    Replicas started together on a fresh database (``docker compose up``, a Deployment) migrate at
    the same moment. Creating a table is check-then-create, so all but one may trip over a table or
    the version row another just made ("already exists", a unique violation); such a loser simply
    runs again, a moment later, and finds them there — instead of exiting and waiting for its
    orchestrator to restart it.
    """
    metadatas = list(metadatas)
    for attempt in range(1, _MIGRATE_TRIES + 1):
        try:
            return _migrate_once(db, metadatas)
        except StoreError as exc:
            if not isinstance(exc.__cause__, DBAPIError) or attempt == _MIGRATE_TRIES:
                raise  # a schema from the future (not the database's error), or tries spent
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _migrate_once(db: StateDB, metadatas: list[sa.MetaData]) -> int:
    with db.begin() as conn:
        _META.create_all(conn)
        found = conn.execute(sa.select(_VERSION.c.version).where(_VERSION.c.id == 1)).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"state database schema {found} is newer than this warroom ({SCHEMA_VERSION})",
                retryable=False,
            )
        for metadata in metadatas:
            metadata.create_all(conn)
        if found is None:
            conn.execute(sa.insert(_VERSION).values(id=1, version=SCHEMA_VERSION))
        elif found < SCHEMA_VERSION:
            conn.execute(sa.update(_VERSION).where(_VERSION.c.id == 1).values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION
