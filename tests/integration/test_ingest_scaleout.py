"""Ingest scale-out with real processes (issue #7): a consumer group that loses and gains members.

Three ``warroom ingest kafka`` processes share one consumer group on a 6-partition traces topic
while a producer streams identifiable records (every span id is unique and the test knows each
record's partition and offset). One member is SIGKILLed mid-stream and restarted on the same
home (so it resumes on the same store and ledger), a fourth member joins later, and once the
group has committed every partition up to its log end all members get SIGTERM.

Two store layouts run the same scenario:

* **embedded** (always): each process has its own embedded store, because the embedded engine
  opens a data path from one process only. The union of the stores must hold every produced
  span; no store may hold one twice; and a span held by two stores is allowed only where
  at-least-once delivery allows it — its earlier copy lies in a ledger range that was inserted but
  not yet committed when the next owner of the partition started reading (the ledger range starts
  at or after that owner's start, does not straddle it, and was written before it). Per-process
  stores do not share a ledger, so the second owner could not cut its batches at the first
  owner's boundaries; on a shared server it reads them from the shared ledger. That is proved on
  one store: the first owner's in-flight ranges are replayed through the real
  ``Ledger.pending`` → ``PartitionBuffer`` → ``Sink`` → ``NativeWriter`` path, which reproduces the
  original deduplication tokens, and the row count does not grow — while the same rows under a
  fresh token do add rows, so it is the token that holds the count.
* **server** (when ``WARROOM_TEST_CLICKHOUSE_URL`` names a ClickHouse server): all processes
  write to one database there and every span must be stored exactly once.

What is *not* asserted: the instants at which each member owned a partition. The worker logs
its assignments and revocations when its main loop applies them, which can lag the group's
hand-over by an insert, so comparing those timestamps across processes would flag overlaps that
never happened. What is checked instead is what ownership leaves behind — every stored batch's
offset range, worker and time in the ledger (each duplicate must sit at a hand-over, as above),
and the group's committed offsets, which must equal every partition's log end at the end.

This test found three defects in the worker's rebalance handling (see ``ingest/kafka_worker.py``):
records lost when a member got a revoked partition back at its old fetch position, past the
records dropped with the revoked buffer (``_restart_at_committed``); ranges written to the ledger
after the next owner had read it, by an inserter still finishing a revoked partition's batches
(``_await_inserts``); and a former owner committing such a batch late, moving the group's offset
back behind the new owner's (``_commit_inserted``), which left this test waiting for the log end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, WARROOM
from tests.integration.ingest_procs import PARTITIONS, Member, Stream, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_URL = os.environ.get("WARROOM_TEST_CLICKHOUSE_URL", "")
BATCH_MAX_ROWS = 120  # small batches: many ledger ranges, so a kill or rebalance lands mid-range
LedgerRow = tuple[int, int, int, str, int]  # partition, first offset, last offset, worker, time (ms)


# -- reading stores (in a subprocess: the embedded engine opens a data path from one process) ------


def _spawn(*args: str) -> subprocess.Popen[str]:
    """Run this module's ``dump`` or ``replay`` in a fresh process (see :func:`_main`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_ingest_scaleout", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> Any:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _dump(dsn: str, database: str, topic: str) -> dict[str, Any]:
    """Every stored span id and every ledger row of ``topic``."""
    from warroom import schema as s
    from warroom.clickhouse import ClickHouse

    db = ClickHouse(dsn, database)
    spans = [r[0] for r in db.rows(f"SELECT SpanId FROM {db.table(s.TRACES)}")]
    ledger = db.rows(
        f"SELECT Partition, FirstOffset, LastOffset, Worker, toUnixTimestamp64Milli(Time) "
        f"FROM {db.table(s.LEDGER)} WHERE Topic = {{t:String}} ORDER BY Partition, FirstOffset",
        {"t": topic},
    )
    return {"spans": spans, "ledger": [list(r) for r in ledger]}


def _replay(dsn: str, database: str, bootstrap: str, topic: str, plan_json: str) -> dict[str, Any]:
    """Replay a store's own ledger ranges the way a partition's next owner on a shared server would.

    ``plan`` maps a partition to ``[start, [offsets…]]``: ``start`` is the offset the next owner
    began reading at, the offsets are the records held twice. For each partition, the ranges come
    from ``Ledger.pending(start)`` (what the next owner reads), the records from Kafka, and they go
    through ``PartitionBuffer`` and ``Sink`` into this store. Returns the batches' tokens and the
    span count before and after — and after re-inserting one batch under a fresh token (control).
    """
    from kafka import KafkaConsumer, TopicPartition

    from app import wiring
    from ingest.batcher import Limits, PartitionBuffer
    from ingest.ledger import Ledger, token
    from ingest.sink import Sink
    from ingest.stats import IngestStats
    from ingest.writer import Record
    from warroom import schema as s
    from warroom.clickhouse import ClickHouse
    from warroom.config import load_settings

    plan: dict[str, list[Any]] = json.loads(plan_json)
    settings = load_settings(env={}, clickhouse_dsn=dsn, clickhouse_database=database)
    db = ClickHouse(dsn, database)
    writer = wiring.writer(settings, db)
    ledger = Ledger(db, "replay")
    sink = Sink(writer, IngestStats(), 5.0, threading.Event(), ledger)

    def count() -> int:
        return int(db.scalar(f"SELECT count() FROM {db.table(s.TRACES)}"))

    before = count()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    replayed: list[dict[str, Any]] = []
    batches = []
    for key, (start, offsets) in plan.items():
        partition = int(key)
        pending = ledger.pending(topic, partition, start)
        wanted = [r for r in pending if any(r.first <= o <= r.last for o in offsets)]
        uncovered = [o for o in offsets if not any(r.first <= o <= r.last for r in wanted)]
        if uncovered:
            return {"error": f"partition {partition}: offsets {uncovered} are in no ledger range ≥ {start}"}
        buffer = PartitionBuffer(topic, partition, "traces", Limits(10**9, 1 << 40, 1e9), list(pending))
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        for r in wanted:
            consumer.seek(tp, r.first)
            got: list[Any] = []
            while len(got) < r.last - r.first + 1:
                polled = consumer.poll(timeout_ms=2000, max_records=500)
                assert polled, f"Kafka returned nothing for {topic}/{partition} at {r.first + len(got)}"
                got.extend(m for m in polled.get(tp, []) if m.offset <= r.last)
            for message in got:
                record = Record(
                    "traces", "otlp_proto", message.value, "kafka", topic, partition, message.offset
                )
                batches.extend(buffer.add(writer.prepare(record)))
    consumer.close()
    for batch in batches:
        sink.flush(batch)
        replayed.append(
            {
                "partition": batch.partition,
                "first": batch.first,
                "last": batch.last,
                "token": token(batch.topic, batch.partition, batch.first, batch.last),
            }
        )
    after = count()
    control_added = 0
    if batches:
        sink.token_prefix = f"control-{uuid.uuid4().hex}/"
        sink.flush(batches[0])
        control_added = count() - after
    return {"before": before, "after": after, "batches": replayed, "control_added": control_added}


# -- the scenario ------------------------------------------------------------------------------


@dataclass
class Outcome:
    records: dict[tuple[int, int], list[str]]
    members: list[Member]
    topic: str
    end_offsets: dict[int, int]
    committed: dict[int, int]


class Offsets:
    """The group's committed offsets of one topic, read with one admin client."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaAdminClient

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        self.group = group
        self.topic = topic
        self.last: dict[int, int] = {}

    def committed(self) -> dict[int, int]:
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        try:
            wanted = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            offsets = self.admin.list_group_offsets({self.group: wanted})[self.group]
        except KafkaError:  # e.g. the group is rebalancing: ask again on the next poll
            return self.last
        self.last = {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return self.last

    def close(self) -> None:
        self.admin.close()


def _scenario(broker: Any, root: Path, store_env: Callable[[str], dict[str, str]]) -> Outcome:
    uid = uuid.uuid4().hex[:8]
    topic, group = f"scaleout-spans-{uid}", f"scaleout-{uid}"
    others = [f"scaleout-logs-{uid}", f"scaleout-metrics-{uid}"]
    broker.create_topics([topic], partitions=PARTITIONS)
    broker.create_topics(others)
    base = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    base.update(
        {
            "WARROOM_KAFKA_BOOTSTRAP": broker.bootstrap,
            "WARROOM_KAFKA_GROUP_ID": group,
            "WARROOM_KAFKA_MAX_POLL_INTERVAL_MS": "10000",
            "WARROOM_TOPIC_TRACES": topic,
            "WARROOM_TOPIC_LOGS": others[0],
            "WARROOM_TOPIC_METRICS": others[1],
            "WARROOM_BATCH_MAX_ROWS": str(BATCH_MAX_ROWS),
            "WARROOM_BATCH_MAX_SECONDS": "0.5",
        }
    )
    a, b, c, d = (
        Member(name, {**base, "WARROOM_HOME": str(root / name), **store_env(name)}) for name in "abcd"
    )
    everyone = [a, b, c, d]
    stream = Stream(broker.bootstrap, topic)
    try:
        for m in (a, b, c):
            m.start()
        stream.start()
        wait_for("all three first members store spans", lambda: all(m.stored() for m in (a, b, c)), everyone)
        b.signal(signal.SIGKILL)
        assert b.wait() == -signal.SIGKILL
        survivors = a.stored() + c.stored()
        wait_for(
            "the survivors go on storing after the kill",
            lambda: a.stored() + c.stored() > survivors,
            everyone,
        )
        b.start()  # same home: the same store and ledger
        wait_for("the restarted member stores spans", lambda: b.stored() > 0, everyone)
        d.start()  # a member joining a healthy group: a rebalance of its own
        wait_for("the fourth member stores spans", lambda: d.stored() > 0, everyone)
        records = stream.finish()
        end_offsets = {p: o + 1 for p, o in sorted(records)}  # the last offset of each partition wins
        offsets = Offsets(broker.bootstrap, group, topic)
        try:
            wait_for(
                f"the group commits every partition's log end {end_offsets}",
                lambda: offsets.committed() == end_offsets,
                everyone,
                detail=lambda: f"(last committed: {offsets.last})",
            )
        finally:
            offsets.close()
        committed = offsets.last
        stopping = time.monotonic()
        for m in (a, b, c, d):
            m.signal(signal.SIGTERM)
        for m in (a, b, c, d):
            assert m.wait() == 0, f"{m.name} did not stop cleanly:\n{m.tail()}"
        print(f"{time.monotonic() - stopping:6.1f} s until every member stopped on SIGTERM")
        return Outcome(records, everyone, topic, end_offsets, committed)
    finally:
        stream.halt.set()
        for m in everyone:
            if m.alive():
                m.signal(signal.SIGKILL)
                m.wait()


# -- embedded: one store per process -----------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    """Where one store holds a record: its ledger range, the worker and when it was written, and the
    stint (run of contiguous batches of that worker) it belongs to — a stint starts where the worker
    began reading the partition, i.e. at the group's committed offset then."""

    first: int
    last: int
    written_ms: int
    stint_start: int
    stint_start_ms: int


def _copy(ledger: list[LedgerRow], partition: int, offset: int) -> Copy:
    hits = sorted(
        (ms, first, last, worker)
        for p, first, last, worker, ms in ledger
        if p == partition and first <= offset <= last
    )
    assert hits, f"record {partition}/{offset} is stored but in no ledger range of its store"
    ms, first, last, worker = hits[0]
    ranges = sorted({(f, end, t) for p, f, end, w, t in ledger if p == partition and w == worker})
    stint, stint_ms, reach = first, ms, -2
    for f, end, t in ranges:
        if f > reach + 1:  # a gap: this worker (re)started reading here
            stint, stint_ms = f, t
        if f == first and end == last:
            break
        reach = max(reach, end)
    return Copy(first, last, ms, stint, stint_ms)


def _explain_duplicates(
    twice: dict[tuple[int, int], list[str]], ledgers: dict[str, list[LedgerRow]]
) -> dict[str, dict[int, list[Any]]]:
    """Check every record held by two stores lies in a range in flight at a handover; return, per
    store holding first copies, the replay plan ``{partition: [start, [offsets]]}``.

    In flight at a handover means: the later owner began reading at or before the earlier copy's
    range (``stint_start <= first``: the group had not committed that range), and the earlier
    range was already in the ledger when it began (so a shared ledger would have shown it and the
    later owner would have cut the same batch, with the same token).
    """
    plan: dict[str, dict[int, list[Any]]] = defaultdict(dict)
    for (partition, offset), names in sorted(twice.items()):
        copies = sorted(
            ((_copy(ledgers[n], partition, offset), n) for n in names), key=lambda c: c[0].written_ms
        )
        for (earlier, x), (later, y) in zip(copies, copies[1:], strict=False):
            what = f"record {partition}/{offset}, in {x} (range {earlier.first}-{earlier.last}) and {y}"
            assert later.stint_start <= earlier.first, (
                f"{what}: {y} began reading at {later.stint_start}, inside that range — the group had "
                "committed part of it, so this copy is not an at-least-once replay"
            )
            assert earlier.written_ms <= later.stint_start_ms, (
                f"{what}: the range was written after {y} began reading at {later.stint_start}, so even "
                "a shared ledger could not have told {y} its boundaries"
            )
            entry = plan[x].setdefault(partition, [later.stint_start, []])
            entry[0] = min(entry[0], later.stint_start)
            entry[1].append(offset)
    return plan


def test_scaleout_embedded_stores_hold_every_record_and_duplicates_are_deduplicable(
    broker: Any, tmp_path: Path
) -> None:
    out = _scenario(broker, tmp_path, lambda name: {})
    started = time.monotonic()
    dumping = {
        m.name: _spawn("dump", f"chdb://{m.home.resolve()}/clickhouse", "otel", out.topic)
        for m in out.members
    }
    dumps: dict[str, dict[str, Any]] = {name: _result(proc) for name, proc in dumping.items()}
    print(f"{time.monotonic() - started:6.1f} s until every store is read")
    assert out.committed == out.end_offsets

    where = {sid: key for key, ids in out.records.items() for sid in ids}
    assert len(where) == sum(len(ids) for ids in out.records.values()), "the producer repeated a span id"
    holders: dict[str, list[str]] = defaultdict(list)
    for name, dump in dumps.items():
        repeated = [sid for sid, n in Counter(dump["spans"]).items() if n > 1]
        assert not repeated, (
            f"store {name} holds {len(repeated)} spans twice, e.g. record {where.get(repeated[0])}"
        )
        for sid in dump["spans"]:
            holders[sid].append(name)
    unknown = set(holders) - set(where)
    assert not unknown, f"{len(unknown)} stored spans were never produced"
    missing = sorted({where[sid] for sid in set(where) - set(holders)})
    assert not missing, f"{len(missing)} records were lost, e.g. (partition, offset) {missing[:5]}"
    stored_by = {name: len(d["spans"]) for name, d in dumps.items()}
    assert all(stored_by.values()), f"every member must have stored spans: {stored_by}"

    ledgers = {n: [(p, f, e, w, int(ms)) for p, f, e, w, ms in d["ledger"]] for n, d in dumps.items()}
    twice = {where[sid]: names for sid, names in holders.items() if len(names) > 1}
    plan = _explain_duplicates(twice, ledgers)
    if not plan:
        # No handover left a range in flight this time: replay the killed member's last range of
        # each partition instead — proving that a replayed batch is dropped needs no duplicate.
        latest: dict[int, int] = {}
        for p, f, _, _, _ in ledgers["b"]:
            latest[p] = max(latest.get(p, f), f)
        plan["b"] = {p: [f, [f]] for p, f in latest.items()}

    # The shared-server proof, on the store holding the most first copies.
    store = max(plan, key=lambda n: sum(len(offsets) for _, offsets in plan[n].values()))
    home = next(m.home for m in out.members if m.name == store)
    args = (
        f"chdb://{home.resolve()}/clickhouse",
        "otel",
        broker.bootstrap,
        out.topic,
        json.dumps(plan[store]),
    )
    result = _result(_spawn("replay", *args))
    print(
        f"{time.monotonic() - started:6.1f} s until {len(result['batches'])} batches of {store} replayed; "
        f"{len(twice)} records were held by two stores"
    )
    assert "error" not in result, result.get("error")
    assert result["batches"], "nothing was replayed"
    original = {(p, f, e) for p, f, e, _, _ in ledgers[store]}
    for batch in result["batches"]:
        assert (batch["partition"], batch["first"], batch["last"]) in original, (
            f"replayed batch {batch['token']} is not a range {store} stored: "
            "the ledger did not fix its boundaries"
        )
    assert result["after"] == result["before"] == stored_by[store], (
        f"replaying {len(result['batches'])} batches into {store} changed its spans "
        f"{result['before']} → {result['after']}: the deduplication token did not hold"
    )
    assert result["control_added"] > 0, (
        "the same rows under a fresh token were dropped too: the check proves nothing"
    )


def test_scaleout_shared_server_stores_every_record_exactly_once(broker: Any, tmp_path: Path) -> None:
    if not SERVER_URL:
        pytest.skip(
            "set WARROOM_TEST_CLICKHOUSE_URL=http://host:8123 to run this against a shared ClickHouse "
            "server: the embedded engine opens a data path from one process only, so several ingest "
            "processes cannot share an embedded store, and no ClickHouse server can be installed here"
        )
    import clickhouse_connect

    database = "scaleout_" + uuid.uuid4().hex[:10]
    server_env = {"WARROOM_CLICKHOUSE_DSN": SERVER_URL, "WARROOM_CLICKHOUSE_DATABASE": database}
    migrate_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")},
        "WARROOM_HOME": str(tmp_path / "migrate"),
        **server_env,
    }
    done = subprocess.run(
        [WARROOM, "db", "migrate"], env=migrate_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = clickhouse_connect.get_client(dsn=SERVER_URL)
    try:
        out = _scenario(broker, tmp_path, lambda name: server_env)
        rows = client.query(f"SELECT SpanId FROM `{database}`.otel_traces").result_rows
        stored = Counter(r[0] for r in rows)
        produced = {sid for ids in out.records.values() for sid in ids}
        twice = [sid for sid, n in stored.items() if n > 1]
        assert not twice, f"{len(twice)} spans stored twice on the shared server"
        assert set(stored) == produced, (
            f"lost {len(produced - set(stored))}, unknown {len(set(stored) - produced)} spans"
        )
        assert out.committed == out.end_offsets
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        client.close()


def _main(argv: list[str]) -> None:
    command, *args = argv
    result = _dump(*args) if command == "dump" else _replay(*args)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    _main(sys.argv[1:])
