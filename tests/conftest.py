"""Shared fixtures: the real Tansu broker, an embedded ClickHouse for this process, OTLP builders.

The embedded engine (chdb) opens one data path per process, so in-process tests share one path
and each test gets its own *database*; tests that run warroom as a subprocess give it its own
``WARROOM_HOME`` and read the store only after that process has exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warroom.localbroker import LocalBroker

REPO = Path(__file__).resolve().parents[1]
WARROOM = str(Path(sys.executable).parent / "warroom")


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as b:
        yield b


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "chdb://" + str(tmp_path_factory.mktemp("chdb") / "store")


@pytest.fixture(scope="session")
def _migrated(chdb_path: str) -> Any:
    from app import wiring
    from warroom.clickhouse import ClickHouse
    from warroom.config import load_settings
    from warroom.schema import migrate

    database = "t_" + uuid.uuid4().hex[:10]
    settings = load_settings(env={}, clickhouse_dsn=chdb_path, clickhouse_database=database)
    db = ClickHouse(settings.clickhouse_dsn, database)
    migrate(db, wiring.schema_options(settings), wiring.migrations())
    return db


@pytest.fixture
def store(_migrated: Any) -> Any:
    """The session's migrated database in this process's embedded engine, emptied for each test.

    Tests must use unique deduplication tokens: ClickHouse remembers tokens across TRUNCATE.
    """
    from warroom import schema as s

    for table in (*s.TELEMETRY_TABLES, s.TRACE_ID_TS, s.DEAD_LETTERS, s.LEDGER, "alerts", "warroom_topology"):
        _migrated.command(f"TRUNCATE TABLE {_migrated.table(table)}")
    return _migrated


PG_ADMIN_DSN = os.environ.get("WARROOM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database: a SQLite file, and a new database on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    import psycopg

    name = "wr_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def env(tmp_path: Path, broker: LocalBroker) -> dict[str, str]:
    """Environment for a warroom subprocess: own home, own topics and group on the shared broker."""
    uid = uuid.uuid4().hex[:8]
    values = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    values.update(
        {
            "WARROOM_HOME": str(tmp_path / "home"),
            "WARROOM_KAFKA_BOOTSTRAP": broker.bootstrap,
            "WARROOM_KAFKA_GROUP_ID": f"g-{uid}",
            "WARROOM_TOPIC_TRACES": f"spans-{uid}",
            "WARROOM_TOPIC_LOGS": f"logs-{uid}",
            "WARROOM_TOPIC_METRICS": f"metrics-{uid}",
            "WARROOM_BATCH_MAX_SECONDS": "0.5",
        }
    )
    return values


def run_warroom(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WARROOM, *args], env=env, capture_output=True, text=True, timeout=timeout)


def query_home(home: str | Path, sql: str, database: str = "otel") -> list[list[Any]]:
    """Run a query against a subprocess's embedded store (after that process has exited)."""
    code = (
        "import json,sys\n"
        "import clickhouse_connect\n"
        "c=clickhouse_connect.get_client(dsn=sys.argv[1], database=sys.argv[2])\n"
        "print(json.dumps([list(r) for r in c.query(sys.argv[3]).result_rows], default=str))\n"
    )
    dsn = "chdb://" + str(Path(home).resolve() / "clickhouse")
    out = subprocess.run(
        [sys.executable, "-c", code, dsn, database, sql],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
