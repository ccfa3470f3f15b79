"""The hash-chained audit log: appends link, verification passes, and any tampering is found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from warroom import audit
from warroom.statedb import StateDB, connect, migrate

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(state_dsn: str) -> Iterator[StateDB]:
    opened = connect(state_dsn)
    migrate(opened, [audit.METADATA])
    yield _filled(opened)
    opened.dispose()


def _filled(db: StateDB) -> StateDB:
    with db.begin() as conn:
        audit.append(
            conn, actor="alice", action="propose", subject="rem-1", after={"state": "proposed"}, at=T0
        )
        audit.append(
            conn,
            actor="bob",
            action="approve",
            subject="rem-1",
            reason="rollback is safe; '; DROP TABLE audit_log; --",
            before={"state": "proposed"},
            after={"state": "approved"},
            at=T0 + timedelta(minutes=1),
        )
        audit.append(conn, actor="carol", action="ack", subject="inc-9", at=T0 + timedelta(minutes=2))
    return db


def test_chain_links_and_verifies(db: StateDB) -> None:
    entries = audit.entries(db)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS and entries[1].prev_hash == entries[0].hash
    assert entries[1].before == {"state": "proposed"} and "DROP TABLE" in entries[1].reason
    assert [e.action for e in audit.entries(db, subject="rem-1")] == ["propose", "approve"]
    assert audit.verify(db) == audit.Verification(True, 3)


def test_tampering_is_detected(db: StateDB) -> None:
    table = audit.AUDIT
    with db.begin() as conn:  # someone rewrites who approved
        conn.execute(sa.update(table).where(table.c.seq == 2).values(actor="mallory"))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 2 and "hash" in result.problem
    with db.begin() as conn:  # ... or removes the evidence altogether
        conn.execute(sa.delete(table).where(table.c.seq == 2))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 2 and "missing" in result.problem


def test_concurrent_appends_from_many_writers_keep_one_chain(db: StateDB) -> None:
    """Writers of different stages append at once (an ack while an approval lands): none collides
    on the sequence number, none is lost, and the chain still verifies."""
    import threading

    from warroom.errors import StoreError

    failures: list[Exception] = []

    def writer(n: int) -> None:
        for i in range(5):
            try:
                with db.begin() as conn:
                    audit.append(conn, actor=f"w{n}", action="ack", subject=f"inc-{n}-{i}")
            except StoreError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    result = audit.verify(db)
    assert result.ok and result.entries == 3 + 8 * 5
