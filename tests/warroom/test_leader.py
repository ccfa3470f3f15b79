"""Leader election on the real state databases: one leader per role, release and takeover, a lost
PostgreSQL session ending the lead, and :func:`lead` running the work only while leading."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from warroom.leader import Leader, lead, lock_key
from warroom.statedb import StateDB, connect


@pytest.fixture
def db(state_dsn: str) -> Iterator[StateDB]:
    opened = connect(state_dsn)
    yield opened
    opened.dispose()


def test_lock_key_is_stable_and_per_role() -> None:
    assert lock_key("correlate") == lock_key("correlate") != lock_key("executor")
    assert -(2**63) <= lock_key("correlate") < 2**63
    # A new release must find the lock an old replica holds: the key never changes.
    assert lock_key("correlate") == -1086174656357223873


def test_one_leader_per_role_and_takeover_on_release(db: StateDB) -> None:
    first, second, other_role = Leader(db, "correlate"), Leader(db, "correlate"), Leader(db, "executor")
    assert first.try_acquire() and first.is_leader and first.still_leader()
    assert not second.try_acquire() and second.state == "standby"
    assert other_role.try_acquire()  # roles are independent
    first.release()
    assert not first.still_leader()
    assert second.try_acquire() and second.still_leader()
    assert not first.try_acquire()
    for leader in (second, other_role):
        leader.release()


def test_role_names_are_plain() -> None:
    from warroom.errors import ConfigError

    with pytest.raises(ConfigError):
        Leader(connect("sqlite://"), "x; DROP TABLE y")


def test_a_dead_session_ends_the_lead(state_dsn: str, db: StateDB) -> None:
    if not state_dsn.startswith("postgresql"):
        pytest.skip("SQLite's lock is a file lock: it cannot be lost while the process lives")
    leader, standby = Leader(db, "correlate"), Leader(db, "correlate")
    assert leader.try_acquire()
    with db.begin() as conn:  # an administrator (or a network cut) ends the leader's session
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar()
    assert killed == 1
    assert not leader.still_leader() and leader.state == "standby"
    assert standby.try_acquire()
    standby.release()


def test_lead_runs_work_only_while_leading(db: StateDB) -> None:
    holder = Leader(db, "correlate")
    assert holder.try_acquire()
    stop = threading.Event()
    runs: list[float] = []

    def work(led: threading.Event) -> None:
        runs.append(time.monotonic())
        led.wait()

    candidate = Leader(db, "correlate")
    thread = threading.Thread(target=lead, args=(candidate, stop, work), kwargs={"poll": 0.1})
    thread.start()
    time.sleep(0.5)
    assert runs == [] and candidate.state == "standby"
    released = time.monotonic()
    holder.release()
    deadline = time.monotonic() + 10
    while not runs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runs and runs[0] - released < 2.0, "the standby did not take over within seconds"
    assert candidate.is_leader
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and not candidate.is_leader  # stepped down on stop
    assert holder.try_acquire()  # and the lock is free again
    holder.release()
