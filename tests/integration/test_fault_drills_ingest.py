"""Fault drills (issue #7) for ingest: ClickHouse unreachable for 30 s, the Kafka broker restarted.

Each drill runs ``warroom ingest kafka`` as a real process fed by a real producer, breaks one
dependency mid-stream, checks that ingest degrades the way the README says (the process stays up,
stays in its consumer group, says what is wrong on its status endpoint and file, logs with back-off
instead of storming), heals the dependency, and checks that ingest recovers by itself and loses
nothing: every produced span stored exactly once, every offset committed.

* **ClickHouse unreachable**: this machine has no ClickHouse server to stop, so the worker runs with
  the ``store.unavailable`` outage point (:mod:`warroom.failpoints`), which fails every ClickHouse
  call as a refused connection does while a flag file exists. The outage lasts 30 s, as the issue
  asks, while the producer goes on.
* **Broker restarted**: the broker is a second Tansu (not the session's), on durable storage — its
  ``s3://`` engine against a local S3 server (moto), because the shipped Tansu has no other durable
  engine and in-memory storage would come back empty — so topics, records and committed offsets
  survive the restart, as they do on Kafka. It is stopped (SIGTERM) while ingest is mid-stream,
  left down for 10 s and started again on the same port.

The producer, the member process and the waits are those of the scale-out test
(:mod:`tests.integration.test_ingest_scaleout`); the figures each drill measured are printed
(``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient

from tests.conftest import query_home
from tests.integration.ingest_procs import PARTITIONS, Member, Stream, wait_for
from warroom.localbroker import LocalBroker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30.0  # the figure
BROKER_DOWN_S = 10.0
RETRY_MAX_S = 4.0  # the longest back-off: bounds how long after the outage the next retry comes


# -- observing a member from outside ---------------------------------------------------------------


def _status(member: Member) -> dict[str, Any]:
    """The member's ``ingest-status.json`` if this incarnation wrote it, else ``{}``."""
    try:
        status = json.loads((member.home / "ingest-status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status if member.proc is not None and status.get("pid") == member.proc.pid else {}


def _probe(port: int, path: str) -> tuple[int, str]:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return response.status_code, response.text


def _committed(bootstrap: str, group: str) -> int:
    """Records the group has committed: the sum of its committed offsets (each partition starts at
    offset 0)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(max(0, meta.offset) for meta in offsets.values())


def _assignments(member: Member) -> int:
    """How often the member was handed partitions: 1 means it never rebalanced. (The group cannot
    be described instead: kafka-python rejects Tansu's DescribeGroups answer.)"""
    return len(_json_logs(member, "partitions assigned"))


def _log_lines(member: Member) -> list[str]:
    return member.log_path.read_text(errors="replace").splitlines()


def _json_logs(member: Member, message: str) -> list[dict[str, Any]]:
    found = []
    for line in _log_lines(member):
        if line.startswith("{") and message in line:
            found.append(json.loads(line))
    return found


def _stored_exactly_once(member: Member, produced: dict[tuple[int, int], list[str]]) -> int:
    """Assert the member's store holds every produced span once (read after it exited)."""
    want = {span for ids in produced.values() for span in ids}
    rows = query_home(member.home, "SELECT SpanId, count() FROM otel_traces GROUP BY SpanId")
    stored = {span: n for span, n in rows}
    missing = want - stored.keys()
    twice = {span: n for span, n in stored.items() if n > 1}
    assert not missing, f"{len(missing)} of {len(want)} produced spans were not stored"
    assert not twice, f"{len(twice)} spans stored more than once"
    assert stored.keys() == want, f"{len(stored.keys() - want)} stored spans were never produced"
    return len(want)


def _stop(member: Member) -> None:
    member.signal(signal.SIGTERM)
    code = member.wait()
    assert code == 0, f"{member.name} exited {code} on SIGTERM:\n{member.tail()}"


@contextmanager
def _running(member: Member) -> Iterator[Member]:
    """Start ``member``; on the way out stop it with SIGTERM (asserting exit 0), or, if the drill
    failed, kill it so no worker outlives the test."""
    member.start()
    try:
        yield member
    except BaseException:
        if member.alive():
            member.signal(signal.SIGKILL)
            member.wait()
        raise
    _stop(member)


def _drill_env(env: dict[str, str], **settings: str) -> dict[str, str]:
    return {**env, **{f"WARROOM_{k.upper()}": v for k, v in settings.items()}}


def _stored(member: Member) -> int:
    return int(_status(member).get("items", {}).get("traces", 0))


# -- ClickHouse unreachable for 30 s -------------------------------------------------------------


def test_clickhouse_unreachable_30s_pauses_then_catches_up_exactly_once(
    env: dict[str, str], broker: LocalBroker, tmp_path: Path
) -> None:
    """While the store refuses connections the worker stays up and in its group, stops committing,
    says ``retrying`` (``/readyz`` 503, ``/healthz`` 200, the status file fresh) and retries with
    jittered, capped back-off; afterwards it catches up by itself and every span is stored once."""
    flag = tmp_path / "store-down"
    port = free_port()
    env = _drill_env(
        env,
        failpoints=f"store.unavailable@{flag}",
        status_port=str(port),
        retry_max_seconds=str(RETRY_MAX_S),
    )
    topic, group = env["WARROOM_TOPIC_TRACES"], env["WARROOM_KAFKA_GROUP_ID"]
    broker.create_topics([topic, env["WARROOM_TOPIC_LOGS"], env["WARROOM_TOPIC_METRICS"]], PARTITIONS)
    stream = Stream(broker.bootstrap, topic)
    with _running(Member("ingest", env)) as member:
        stream.start()
        try:
            wait_for("ingest stores the stream", lambda: _stored(member) > 300, [member])
            flag.touch()
            down_at = time.monotonic()
            wait_for("the status says retrying", lambda: _status(member).get("state") == "retrying", [member])
            time.sleep(2.0)  # a batch acknowledged just before the outage gets its commit
            committed_early, stored_early = _committed(broker.bootstrap, group), _stored(member)
            probes = _probe(port, "/readyz"), _probe(port, "/healthz")
            assert probes == ((503, "retrying"), (200, "retrying")), probes

            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            assert member.alive(), f"ingest died during the outage:\n{member.tail()}"
            status = _status(member)
            outage = {
                "seconds": round(time.monotonic() - down_at, 1),
                "retries": status["insert_retries"],
                "lag": status["consumer_lag_total"],
                "committed": _committed(broker.bootstrap, group),
            }
            assert status["state"] == "retrying"
            assert time.time() - status["updated"] < 5, "the status file went stale during the outage"
            assert status["items"]["traces"] == stored_early, (
                "items counted as stored while the store was down"
            )
            assert outage["committed"] == committed_early, (
                "offsets committed while ClickHouse was unreachable"
            )
            assert outage["lag"] > 0, "consumption did not pause"
            print(f"outage: {outage}")

            flag.unlink()
            up_at = time.monotonic()
            wait_for(
                "the status says running again", lambda: _status(member).get("state") == "running", [member]
            )
            recovered_s = time.monotonic() - up_at
            assert _probe(port, "/readyz") == (200, "running")
        finally:
            produced = stream.finish()
        wait_for(
            "every produced record is committed",
            lambda: _committed(broker.bootstrap, group) == len(produced),
            [member],
            detail=lambda: (_committed(broker.bootstrap, group), len(produced)),
        )
    assert recovered_s < RETRY_MAX_S + 4, "recovery took longer than one back-off"
    assert _assignments(member) == 1, "the worker rebalanced: it left its group during the outage"
    retries = _json_logs(member, "ClickHouse unavailable, retrying")
    delays = [r["delay_s"] for r in retries]
    assert retries and max(delays) <= RETRY_MAX_S, delays
    assert len(retries) <= 2 * OUTAGE_S / (RETRY_MAX_S / 2) + 10, f"{len(retries)} retry warnings: a storm"
    assert len(set(delays)) > len(delays) // 2, f"back-off without jitter: {delays}"
    spans = _stored_exactly_once(member, produced)
    print(
        f"recovered {recovered_s:.1f} s after the outage; {len(retries)} retry warnings "
        f"(delays {min(delays)}-{max(delays)} s); {len(produced)} records, {spans} spans stored once"
    )


# -- the broker restarted ------------------------------------------------------------------------


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A local S3 server (moto) with a bucket ``tansu``: the environment Tansu's ``s3://`` storage
    engine needs to reach it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(tmp_path / "s3.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"{endpoint}/tansu", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "s3.log").read_text()
                time.sleep(0.2)
        yield {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "drill",
            "AWS_SECRET_ACCESS_KEY": "drill",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_broker_restarted_mid_stream_ingest_reconnects_and_loses_nothing(
    env: dict[str, str], tmp_path: Path, s3_server: dict[str, str]
) -> None:
    """The broker goes away (SIGTERM) while ingest has batches in flight and comes back 10 s later
    on the same port with its data: the worker does not exit, says ``broker_unavailable``
    (``/readyz`` 503, ``/healthz`` 200) while it is away, keeps storing what it had already fetched,
    retries the failed offset commits with back-off, reconnects by itself without a rebalance,
    consumes what is produced after the restart, and stores every span once."""
    durable = LocalBroker(storage="s3://tansu/", env=s3_server, log_path=tmp_path / "tansu.log")
    port = free_port()
    env = _drill_env(env, kafka_bootstrap=durable.bootstrap, status_port=str(port))
    topic, group = env["WARROOM_TOPIC_TRACES"], env["WARROOM_KAFKA_GROUP_ID"]
    with durable:
        durable.create_topics([topic, env["WARROOM_TOPIC_LOGS"], env["WARROOM_TOPIC_METRICS"]], PARTITIONS)
        with _running(Member("ingest", env)) as member:
            before = Stream(durable.bootstrap, topic)
            before.start()
            try:
                wait_for("ingest stores the stream", lambda: _stored(member) > 300, [member])
            finally:
                produced = before.finish()  # acknowledged, so the broker's storage holds them
            stored_at_stop = _stored(member)
            durable.stop()
            down_at = time.monotonic()
            time.sleep(BROKER_DOWN_S)
            assert member.alive(), f"ingest exited while the broker was down:\n{member.tail()}"
            status = _status(member)
            down = {
                "seconds": round(time.monotonic() - down_at, 1),
                "state": status["state"],
                "readyz": _probe(port, "/readyz"),
                "stored_at_stop": stored_at_stop,
                "stored_while_down": status["items"]["traces"],
                "status_age_s": round(time.time() - status["updated"], 1),
            }
            print(f"broker down: {down}")
            assert down["status_age_s"] < 5, "the status file went stale while the broker was down"
            assert down["state"] == "broker_unavailable", down
            assert down["readyz"] == (503, "broker_unavailable"), down
            assert _probe(port, "/healthz")[0] == 200
            durable.start()
            up_at = time.monotonic()
            wait_for(
                "the status says running again", lambda: _status(member).get("state") == "running", [member]
            )

            after = Stream(durable.bootstrap, topic)
            after.start()
            try:
                wait_for(
                    "ingest stores records produced after the restart",
                    lambda: _stored(member) > down["stored_while_down"] + 300,
                    [member],
                )
            finally:
                later = after.finish()
            reused = produced.keys() & later.keys()
            assert not reused, (
                f"the restarted broker reused {len(reused)} offsets: its storage is not durable"
            )
            produced.update(later)
            wait_for(
                "every produced record is committed",
                lambda: _committed(durable.bootstrap, group) == len(produced),
                [member],
                detail=lambda: (_committed(durable.bootstrap, group), len(produced)),
            )
            caught_up_s = time.monotonic() - up_at
    kafka_lines = [line for line in _log_lines(member) if not line.startswith("{")]
    commit_failures = _json_logs(member, "offset commit failed")
    spans = _stored_exactly_once(member, produced)
    print(
        f"caught up {caught_up_s:.1f} s after the restart; {len(produced)} records, {spans} spans stored "
        f"once; {_assignments(member)} assignments, {len(kafka_lines)} kafka-python log lines, "
        f"{len(commit_failures)} failed commits logged"
    )
    assert _assignments(member) == 1, "the worker rebalanced after the restart"
    assert len(kafka_lines) + len(commit_failures) < 50, "a log storm while the broker was down"
