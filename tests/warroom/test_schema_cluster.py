"""Cluster mode: Replicated local tables behind Distributed tables, all ``ON CLUSTER``.

No ClickHouse server can be installed here and the embedded engine has no distributed DDL queue, so
the cluster DDL is checked at three depths:

* every statement is parsed by the real ClickHouse parser (``formatQuery`` in the embedded engine);
* in a child process, the embedded engine is given a one-shard cluster and an in-process test
  Keeper, and creates every table and view of the cluster DDL (``ON CLUSTER`` removed: that clause
  needs the server's DDL queue). That validates engine parameters, macros, sharding keys and the
  views' source and target tables. Replicated tables stay read-only there (no replication thread),
  so the data path is exercised with the Replicated engines swapped for their plain variants: the
  real migration, the ingest writer and the replay of a batch through the Distributed tables;
* against a real cluster when ``WARROOM_TEST_CLICKHOUSE_URL`` and ``WARROOM_TEST_CLICKHOUSE_CLUSTER``
  are set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app import wiring
from warroom import schema as s
from warroom.clickhouse import ClickHouse

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "wr"
ON = f" ON CLUSTER `{CLUSTER}`"

#: The documented sharding key of every table (README "ClickHouse cluster"). A new table must be
#: added here, which forces the choice to be made and documented.
SHARD_KEYS = {
    s.TRACES: "cityHash64(TraceId)",
    s.TRACE_ID_TS: "cityHash64(TraceId)",
    s.LOGS: "cityHash64(ServiceName, Timestamp)",
    **{t: "cityHash64(ServiceName, MetricName, Attributes)" for t in s.METRIC_TABLES},
    s.DEAD_LETTERS: "cityHash64(Topic, Partition)",
    s.LEDGER: "0",
    s.MIGRATIONS: "0",
    "alerts": "0",
    "warroom_topology": "0",
    "warroom_log_templates": "0",
    "warroom_log_template_ids": "cityHash64(BodyHash, ServiceName)",
}

#: sha256 (first 16 hex digits) of each single-node statement, normalised by ``formatQuerySingleLine``,
#: as the code before cluster mode rendered them (database ``otel``, no TTL). Cluster mode must not
#: change single-node DDL. After an intended schema change, regenerate with :func:`_digests`.
SINGLE_NODE_DIGESTS = (
    "a53afb79fa5e3268 9ee8f27bcba4398f 3acbb6bd3375438d 5cde0c8fa361f12e cf8556e63ecb433a "
    "42ba3681064e5814 dad6b2022404a416 592c394b8dc6db5f 098533cb33976ac9 cca77a95997b244a "
    "4d11a7c31cf90c4a b9c54ae1c9cb73bb 55522fbe0e970322 4e5a0526da62427e 959de7e479904b01 "
    "10e25c576087669a 46ccf3ee0b6add3e 3e729b08bcc8d3d8 162e24c35959de8a 21cd1418e1e83a30 "
    "074e782f4c27b24d 03e70c96874dbc80 336106a3db4aef6c d833aa074d0aa26c 62ca950b9d563b4f "
    "5ff7c5846d55fdfc fe44edf96818dfec 2288068376db2805 1dbb770b904cb4bf 3e13b77bbd697826 "
    "53dcfc28b29e427f 811880dd0993f51a 3d297f378a3735e9"
).split()


def _statements(cluster: str = CLUSTER, ttl_days: int = 0) -> list[str]:
    return s.ddl("otel", s.SchemaOptions(ttl_days=ttl_days, cluster=cluster), wiring.migrations())


def _normalised(store: ClickHouse, sql: str) -> str:
    return str(store.scalar("SELECT formatQuerySingleLine({q:String})", {"q": sql}))


def _digests(store: ClickHouse, statements: list[str]) -> list[str]:
    return [hashlib.sha256(_normalised(store, q).encode()).hexdigest()[:16] for q in statements]


def _creates(statements: list[str]) -> dict[str, str]:
    """Table name → its CREATE TABLE statement."""
    out = {}
    for q in statements:
        match = re.match(r"CREATE TABLE IF NOT EXISTS `otel`\.`(\w+)`", q)
        if match:
            out[match.group(1)] = q
    return out


# --- rendering -------------------------------------------------------------------------------------


def test_single_node_ddl_is_what_it_was_before_cluster_mode(store: ClickHouse) -> None:
    statements = _statements(cluster="")
    assert not any("ON CLUSTER" in q or "Replicated" in q or "Distributed" in q for q in statements)
    digests = _digests(store, statements)
    changed = [
        q[:80] for q, d, old in zip(statements, digests, SINGLE_NODE_DIGESTS, strict=False) if d != old
    ]
    assert (len(digests), changed) == (len(SINGLE_NODE_DIGESTS), [])


def test_single_node_ddl_is_what_migrate_runs(store: ClickHouse) -> None:
    """The printed DDL is the migration's own statements (recorded on a fresh database)."""
    ran: list[str] = []

    class Recording(ClickHouse):
        def command(self, sql: str, parameters: Any = None) -> Any:
            ran.append(sql.strip())
            return super().command(sql, parameters)

    database = "t_" + uuid.uuid4().hex[:10]
    fresh = Recording(store.dsn, database)
    try:
        s.migrate(fresh, s.SchemaOptions(), wiring.migrations())
        assert ran == s.ddl(database, s.SchemaOptions(), wiring.migrations())
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_every_table_is_replicated_behind_a_distributed_table_with_its_sharding_key() -> None:
    single = _creates(_statements(cluster=""))
    cluster = _creates(_statements())
    assert set(single) - {
        "warroom_in_traces",
        "warroom_in_logs",
        "warroom_in_metrics",
        "warroom_points",
    } == set(SHARD_KEYS)
    for table, key in SHARD_KEYS.items():
        engine = re.search(r"ENGINE = (\w*)MergeTree(?:\((.*?)\))?\n", single[table] + "\n")
        assert engine, table
        variant, params = engine.group(1), engine.group(2)
        local = cluster[table + "_local"]
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}_local', '{{replica}}'"
        expected = f"ENGINE = Replicated{variant}MergeTree({path}{', ' + params if params else ''})"
        assert expected in local, table
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS `otel`.`{table}_local`{ON} (")
        assert cluster[table] == (
            f"CREATE TABLE IF NOT EXISTS `otel`.`{table}`{ON} AS `otel`.`{table}_local`\n"
            f"ENGINE = Distributed('{CLUSTER}', 'otel', '{table}_local', {key})"
        )
    assert "replicated_deduplication_window = 10000" in cluster[s.TRACES + "_local"]
    assert "non_replicated_deduplication_window" not in "".join(cluster.values())


def test_every_cluster_statement_is_on_cluster_and_views_use_the_right_tables() -> None:
    statements = _statements()
    assert all(ON in q for q in statements)
    assert not any(re.search(r"ENGINE = (\w*)MergeTree", q) and "Replicated" not in q for q in statements)
    views = {
        m.group(1): q
        for q in statements
        if (m := re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS `otel`\.`(\w+)`", q))
    }
    # The trace-id index is filled on each shard, from and to the local tables.
    index = views["otel_traces_trace_id_ts_mv"]
    assert "TO `otel`.`otel_traces_trace_id_ts_local`" in index and "FROM `otel`.`otel_traces_local`" in index
    # Ingest views run on the node that took the insert and write through the Distributed tables.
    for name, q in views.items():
        if name.startswith(("warroom_in_", "warroom_route_")):
            assert re.search(r"TO `otel`\.`(\w+)` AS", q) and "_local`" not in q, name
    nulls = [q for q in statements if q.endswith("ENGINE = Null")]
    assert len(nulls) == 4 and all(ON in q for q in nulls)


@pytest.mark.parametrize("ttl_days", [0, 7])
def test_every_cluster_statement_parses(store: ClickHouse, ttl_days: int) -> None:
    for q in _statements(ttl_days=ttl_days):
        assert _normalised(store, q)  # raises StoreError with the parser's message on bad syntax


class _Fake(ClickHouse):
    """Records statements; ``scalar`` answers the TTL check with a CREATE lacking any TTL."""

    def __init__(self, cluster: str) -> None:
        super().__init__("", "otel", cluster)
        self.ran: list[str] = []
        self.asked: list[Any] = []

    def command(self, sql: str, parameters: Any = None) -> Any:
        self.ran.append(sql)

    def scalar(self, sql: str, parameters: Any = None) -> Any:
        self.asked.append(dict(parameters or {}).get("t"))
        return "CREATE TABLE x (a UInt8) ENGINE = MergeTree ORDER BY a"


def test_ttl_and_column_changes_target_the_local_tables(store: ClickHouse) -> None:
    fake = _Fake(CLUSTER)
    opts = s.SchemaOptions(ttl_days=7, cluster=CLUSTER)
    s._reconcile_ttl(fake, opts)
    assert fake.asked == [spec.name + "_local" for spec in s.TABLE_SPECS]
    assert fake.ran[0] == (
        f"ALTER TABLE `otel`.`otel_traces_local`{ON} MODIFY TTL toDateTime(Timestamp) + toIntervalDay(7)"
    )
    assert len(fake.ran) == len(s.TABLE_SPECS)
    fake.ran.clear()
    s.alter_table(fake, opts, "alerts", "ADD COLUMN IF NOT EXISTS X UInt8")
    assert fake.ran == [
        f"ALTER TABLE `otel`.`alerts_local`{ON} ADD COLUMN IF NOT EXISTS X UInt8",
        f"ALTER TABLE `otel`.`alerts`{ON} ADD COLUMN IF NOT EXISTS X UInt8",
    ]
    for q in fake.ran:
        assert _normalised(store, q)


def test_replicated_engine_keeps_the_variant_and_its_parameters() -> None:
    path = "'/clickhouse/tables/{shard}/{database}/t_local', '{replica}'"
    assert s.replicated_engine("MergeTree", "t_local") == f"ReplicatedMergeTree({path})"
    assert s.replicated_engine("MergeTree()", "t_local") == f"ReplicatedMergeTree({path})"
    assert (
        s.replicated_engine("ReplacingMergeTree(UpdatedAt)", "t_local")
        == f"ReplicatedReplacingMergeTree({path}, UpdatedAt)"
    )
    assert (
        s.replicated_engine("SummingMergeTree((a, b))", "t_local")
        == f"ReplicatedSummingMergeTree({path}, (a, b))"
    )
    with pytest.raises(ValueError, match="only MergeTree"):
        s.replicated_engine("Log", "t_local")


def test_declared_types_match_what_the_server_reports(store: ClickHouse) -> None:
    for table in s.METRIC_TABLES:
        reported = dict(
            store.rows(
                "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String}",
                {"d": store.database, "t": table},
            )
        )
        assert s.declared_types(table) == reported, table


def test_cluster_settings_are_added_to_inserts_and_queries_only_on_a_cluster() -> None:
    single, cluster = ClickHouse("", "otel"), ClickHouse("", "otel", CLUSTER)
    assert single.insert_settings("tok") == {"insert_deduplication_token": "tok"}
    assert single.query_settings() == {}
    assert cluster.insert_settings("tok") == {
        "insert_deduplication_token": "tok",
        "insert_distributed_sync": 1,
    }
    assert cluster.insert_settings() == {"insert_distributed_sync": 1}
    assert cluster.query_settings() == {"distributed_product_mode": "global"}


def test_migrate_refuses_a_store_on_another_cluster() -> None:
    with pytest.raises(ValueError, match="differs"):
        s.migrate(ClickHouse("", "otel"), s.SchemaOptions(cluster=CLUSTER))


# --- CLI -------------------------------------------------------------------------------------------


def _cli(args: list[str], tmp_path: Path) -> Any:
    from app.cli import cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    env["WARROOM_HOME"] = str(tmp_path / "home")
    return CliRunner().invoke(cli, args, env=env)


def test_cli_prints_the_cluster_ddl_without_running_it(tmp_path: Path) -> None:
    result = _cli(["db", "migrate", "--cluster", CLUSTER, "--print-sql"], tmp_path)
    assert result.exit_code == 0, result.output
    statements = [q.strip() for q in result.output.split(";\n") if q.strip()]
    assert statements == _statements()
    assert not (tmp_path / "home" / "clickhouse").exists()  # nothing was created


def test_cli_rejects_a_cluster_name_that_is_not_an_identifier(tmp_path: Path) -> None:
    result = _cli(["db", "migrate", "--cluster", "x; DROP TABLE y", "--print-sql"], tmp_path)
    assert result.exit_code == 2
    assert "WARROOM_CLICKHOUSE_CLUSTER" in result.output and "identifier" in result.output
    assert "DROP" not in result.output.replace("x; DROP TABLE y", "")


def test_the_example_server_config_matches_the_manifests() -> None:
    import xml.etree.ElementTree as ET

    import yaml

    root = ET.parse(REPO / "deploy" / "clickhouse" / "warroom-cluster.xml").getroot()
    (cluster,) = list(root.iterfind("remote_servers/*"))
    docs = yaml.safe_load_all((REPO / "deploy" / "k8s" / "10-config.yaml").read_text())
    (config,) = [d for d in docs if d and d.get("kind") == "ConfigMap"]
    assert cluster.tag == config["data"]["WARROOM_CLICKHOUSE_CLUSTER"]
    shards = cluster.findall("shard")
    assert shards and all(shard.findtext("internal_replication") == "true" for shard in shards)
    assert {m.tag for m in root.iterfind("macros/*")} == {"shard", "replica"}
    assert root.find("zookeeper") is not None and root.find("distributed_ddl") is not None


# --- the embedded engine with a one-shard cluster and a test Keeper --------------------------------

_CONFIG = f"""<clickhouse>
  <tcp_port>9000</tcp_port>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <remote_servers><{CLUSTER}><shard><internal_replication>true</internal_replication>
    <replica><host>localhost</host><port>9000</port></replica></shard></{CLUSTER}></remote_servers>
  <macros><shard>01</shard><replica>r1</replica></macros>
</clickhouse>
"""


def _local_only(sql: str) -> str:
    """Drop ``ON CLUSTER``: the embedded engine has no distributed DDL queue."""
    return sql.replace(ON, "")


def _plain(sql: str) -> str:
    """Replicated engines → their plain variants, with the single-node deduplication window."""
    sql = re.sub(
        r"Replicated(\w*)MergeTree\('[^']*', '\{replica\}'(?:, )?", r"\1MergeTree(", _local_only(sql)
    )
    return re.sub(
        r"replicated_deduplication_window = (\d+), replicated_deduplication_window_seconds = \d+",
        r"non_replicated_deduplication_window = \1",
        sql,
    )


def _harness(path: str, config: str) -> dict[str, Any]:
    """Runs in a child process (the engine's data path and Keeper are per process)."""
    import clickhouse_connect

    from ingest.otlp_parse import Limits
    from ingest.writer import NativeWriter, Record
    from tests.otlp_builders import sdk_logs, sdk_metrics, sdk_spans
    from warroom import clickhouse as ch

    dsn = "chdb://" + path
    ch._CLIENTS[dsn] = clickhouse_connect.get_client(dsn=dsn, chdb_options={"config-file": config})
    out: dict[str, Any] = {}

    # 1. The real cluster DDL, Replicated engines included, is accepted by the engine.
    replicated = ClickHouse(dsn, "repl", CLUSTER)
    failed = []
    for q in s.ddl("repl", s.SchemaOptions(ttl_days=7, cluster=CLUSTER), wiring.migrations()):
        if q.startswith("ALTER"):
            continue  # read-only replicas here; ALTER syntax is checked by the parser tests
        try:
            replicated.command(_local_only(q))
        except Exception as exc:  # collected: the test shows every failure at once
            failed.append(f"{q[:100]}: {exc}")
    out["failed"] = failed
    out["replicas"] = replicated.scalar("SELECT count() FROM system.replicas WHERE database = 'repl'")
    out["zk_path"] = replicated.scalar(
        "SELECT zookeeper_path FROM system.replicas WHERE database = 'repl' AND table = 'otel_traces_local'"
    )

    # 2. The data path through the Distributed tables, over plain local tables.
    class Emulated(ClickHouse):
        def command(self, sql: str, parameters: Any = None) -> Any:
            return super().command(_plain(sql), parameters)

    store = Emulated(dsn, "emu", CLUSTER)
    out["applied"] = len(s.migrate(store, s.SchemaOptions(ttl_days=7, cluster=CLUSTER), wiring.migrations()))
    out["reapplied"] = len(
        s.migrate(store, s.SchemaOptions(ttl_days=3, cluster=CLUSTER), wiring.migrations())
    )
    try:
        s.migrate(ClickHouse(dsn, "emu"), s.SchemaOptions(), wiring.migrations())
    except Exception as exc:
        out["single_node_on_cluster_database"] = f"{type(exc).__name__}: {exc}"
    out["engines"] = dict(store.rows("SELECT name, engine FROM system.tables WHERE database = 'emu'"))
    out["local_ttl"] = store.scalar(
        "SELECT create_table_query FROM system.tables WHERE database = 'emu' AND name = 'otel_traces_local'"
    )
    now = time.time_ns()
    writer = NativeWriter(store, Limits(1000, 1000, 3600 * 10**9), lambda: now)
    requests = {
        "traces": sdk_spans("svc", 5).SerializeToString(),
        "logs": sdk_logs("svc", 4).SerializeToString(),
        "metrics": sdk_metrics("svc", 3).SerializeToString(),
    }
    for signal, payload in requests.items():
        batch = [writer.prepare(Record(signal, "otlp_proto", payload, "kafka", signal, 0, 1))]
        for _ in range(2):  # a replay under the same token
            writer.write(signal, batch, f"{signal}:0:1-1")
    tables = (s.TRACES, s.TRACE_ID_TS, s.LOGS, s.GAUGE, s.SUM, s.HISTOGRAM, s.DEAD_LETTERS)
    out["counts"] = {t: store.scalar(f"SELECT count() FROM {store.table(t)}") for t in tables}
    out["local_counts"] = {
        t: store.scalar(f"SELECT count() FROM {store.table(t + '_local')}") for t in tables
    }
    # An IN subquery over another Distributed table (as summarize's saturation query does).
    nested = (
        f"SELECT count() FROM {store.table(s.TRACES)} WHERE TraceId IN "
        f"(SELECT TraceId FROM {store.table(s.TRACE_ID_TS)})"
    )
    out["nested"] = store.scalar(nested)
    return out


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("cluster")
    config = folder / "config.xml"
    config.write_text(_CONFIG)
    code = (
        "import json, os, sys\n"
        "from tests.warroom.test_schema_cluster import _harness\n"
        "print('RESULT ' + json.dumps(_harness(sys.argv[1], sys.argv[2]), default=str), flush=True)\n"
        "os._exit(0)\n"  # the test Keeper's threads would keep the process alive
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / "store"), str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_the_engine_creates_every_cluster_table_and_view(emulated: dict[str, Any]) -> None:
    assert emulated["failed"] == []
    assert emulated["replicas"] == len(SHARD_KEYS)
    assert emulated["zk_path"] == "/clickhouse/tables/01/repl/otel_traces_local"


def test_migration_bookkeeping_and_ttl_work_through_the_distributed_tables(emulated: dict[str, Any]) -> None:
    assert emulated["applied"] == len(wiring.migrations()) and emulated["reapplied"] == 0
    engines = emulated["engines"]
    for table in SHARD_KEYS:
        assert (engines[table], engines[table + "_local"].endswith("MergeTree")) == ("Distributed", True)
    assert "toIntervalDay(3)" in emulated["local_ttl"]
    assert emulated["single_node_on_cluster_database"].startswith(
        "ConfigError: clickhouse_cluster: database emu was migrated for a cluster"
    )


def test_a_cluster_migrate_refuses_a_single_node_database(store: ClickHouse) -> None:
    from warroom.errors import ConfigError

    on_cluster = ClickHouse(store.dsn, store.database, CLUSTER)
    with pytest.raises(ConfigError, match="migrated for a single node"):
        s.migrate(on_cluster, s.SchemaOptions(cluster=CLUSTER), wiring.migrations())


def test_ingest_writes_through_distributed_tables_and_a_replay_is_dropped(emulated: dict[str, Any]) -> None:
    counts = emulated["counts"]
    assert counts == emulated["local_counts"]
    assert (counts[s.TRACES], counts[s.TRACE_ID_TS], counts[s.LOGS]) == (15, 5, 4)
    assert (counts[s.GAUGE], counts[s.SUM], counts[s.HISTOGRAM], counts[s.DEAD_LETTERS]) == (3, 3, 3, 0)


def test_queries_with_subqueries_over_distributed_tables_run(emulated: dict[str, Any]) -> None:
    assert emulated["nested"] == 15


# --- a real cluster ---------------------------------------------------------------------------------

SERVER = os.environ.get("WARROOM_TEST_CLICKHOUSE_URL", "")
SERVER_CLUSTER = os.environ.get("WARROOM_TEST_CLICKHOUSE_CLUSTER", "")


@pytest.mark.skipif(
    not (SERVER and SERVER_CLUSTER),
    reason="needs a ClickHouse cluster with Keeper: set WARROOM_TEST_CLICKHOUSE_URL (http://host:8123) and "
    "WARROOM_TEST_CLICKHOUSE_CLUSTER; no server can be installed on this machine and the embedded engine "
    "has neither Keeper-backed replication nor remote shards",
)
def test_real_cluster_migration_insert_and_replay() -> None:
    from ingest.otlp_parse import Limits
    from ingest.writer import NativeWriter, Record
    from tests.otlp_builders import sdk_spans

    database = "wr_test_" + uuid.uuid4().hex[:8]
    store = ClickHouse(SERVER, database, SERVER_CLUSTER)
    opts = s.SchemaOptions(cluster=SERVER_CLUSTER)
    try:
        assert len(s.migrate(store, opts, wiring.migrations())) == len(wiring.migrations())
        assert s.migrate(store, opts, wiring.migrations()) == []
        now = time.time_ns()
        writer = NativeWriter(store, Limits(1000, 1000, 3600 * 10**9), lambda: now)
        payload = sdk_spans("svc", 20).SerializeToString()
        batch = [writer.prepare(Record("traces", "otlp_proto", payload, "kafka", "t", 0, 1))]
        writer.write("traces", batch, f"replay-{database}")
        writer.write("traces", batch, f"replay-{database}")
        assert store.scalar(f"SELECT count() FROM {store.table(s.TRACES)}") == 60
        assert store.scalar(f"SELECT count() FROM {store.table(s.TRACE_ID_TS)}") == 20
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{database}`{s.on_cluster(opts)} SYNC")
