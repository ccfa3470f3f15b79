"""Leader election through the state database, for the parts of warroom that must run once.

The correlator (alerts → incidents, notices) and the remediation executor run in one process at a
time; any number of replicas may start, and all but one wait as *standbys*, holding nothing but
their place in the queue. When the leader dies a standby takes over within seconds. No
coordination service is needed: the state database every deployment already has elects.

Leadership is the scheduler, not the only fence. The work it guards is already safe against a
race — incident changes lock the incident book's row, a remediation run is claimed by a
compare-and-set — so a leader that lost its lock a moment ago and a new leader can overlap by one
transaction without duplicating anything; leadership keeps that from being the normal case.

How each database elects:

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``), keyed by a hash of
  the role name, taken on a connection of its own that stays open while leading. The server
  releases it when the session ends: at once when the leader's process dies (its socket closes),
  and within about 11 s when its host vanishes, because the lock session sets the server-side TCP
  keepalives (``tcp_keepalives_idle`` 5 s, interval 2 s, count 3) and disables
  ``idle_session_timeout``. The leader pings its session every ``check_every`` seconds; a failed
  ping means the lock may be gone, and the led work is stopped before it runs again.
- **SQLite** (one host by nature): an exclusive ``flock`` on ``<database>.<role>.leader`` beside
  the database file. The kernel drops it when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from warroom.errors import ConfigError
from warroom.statedb import StateDB

__all__ = ["Leader", "lead", "lock_key"]

log = logging.getLogger("warroom.leader")

_KEEPALIVE = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
)


def lock_key(role: str) -> int:
    """The advisory lock key of ``role``: a stable signed 64-bit hash, the same in every process."""
    digest = hashlib.sha256(f"warroom.leader:{role}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leader:
    """One candidate for one role (``correlate``, ``executor``): :meth:`try_acquire` until it holds
    the lock, :meth:`still_leader` while leading, :meth:`release` to step down.

    ``state`` is :attr:`standby` until the lock is held, then :attr:`leader`; ``identity`` names
    this process in logs (host:pid).
    """

    def __init__(self, db: StateDB, role: str) -> None:
        if not role.isidentifier():
            raise ConfigError("leader role", f"{role!r} is not a plain name")
        self.role = role
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.state = "standby"
        self._url = db.engine.url
        self._dialect = db.dialect
        self._engine: sa.Engine | None = None  # PostgreSQL: unpooled, for the lock's own session
        self._conn: Any = None  # PostgreSQL: the session holding the advisory lock
        self._file: IO[bytes] | None = None  # SQLite: the flocked file
        self._lock = threading.Lock()  # the watchdog pings while the owner may step down

    @property
    def is_leader(self) -> bool:
        return self.state == "leader"

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this candidate leads (now or already)."""
        if self.is_leader:
            return True
        got = self._try_postgres() if self._dialect == "postgresql" else self._try_file()
        if got:
            self.state = "leader"
            log.info("leading", extra={"role": self.role, "identity": self.identity})
        return got

    def still_leader(self) -> bool:
        """Whether the lock is certainly still held (PostgreSQL: the lock's session answers)."""
        with self._lock:
            if not self.is_leader:
                return False
            if self._conn is None:
                return True
            try:
                self._conn.execute(sa.text("SELECT 1")).scalar()
                return True
            except SQLAlchemyError as exc:
                log.error("leadership lost", extra={"role": self.role, "error": str(exc)})
        self.release()
        return False

    def release(self) -> None:
        """Step down: close the lock's session or file (either frees the lock)."""
        with self._lock:
            self.state = "standby"
            if self._conn is not None:
                with contextlib.suppress(SQLAlchemyError):
                    self._conn.close()
                self._conn = None
            if self._file is not None:
                self._file.close()
                self._file = None

    # -- PostgreSQL ----------------------------------------------------------------------------------

    def _try_postgres(self) -> bool:
        if self._engine is None:
            self._engine = sa.create_engine(self._url, poolclass=NullPool)
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            log.warning("state database unreachable for the election", extra={"error": str(exc)})
            return False
        try:
            for statement in (*_KEEPALIVE, "SET idle_session_timeout = 0"):
                conn.execute(sa.text(statement))
            got = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(lock_key(self.role)))).scalar())
        except SQLAlchemyError as exc:
            log.warning("election failed", extra={"role": self.role, "error": str(exc)})
            got = False
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    # -- SQLite --------------------------------------------------------------------------------------

    def _try_file(self) -> bool:
        database = self._url.database
        if not database or database == ":memory:":
            return True  # a private in-memory database: this process is the only candidate
        path = Path(f"{database}.{self.role}.leader")
        handle = path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True


def lead(
    leader: Leader,
    stop: threading.Event,
    work: Callable[[threading.Event], None],
    poll: float = 1.0,
    check_every: float = 2.0,
) -> None:
    """Run ``work(led)`` whenever ``leader`` leads, until ``stop``.

    ``led`` is an event set when ``stop`` is set or leadership is lost; ``work`` must return soon
    after. Lost leadership sends the candidate back to waiting, so a leader cut off from the
    database for a while rejoins as a standby instead of exiting.
    """
    logged = False
    while not stop.is_set():
        if not leader.try_acquire():
            if not logged:
                log.info("standing by", extra={"role": leader.role, "identity": leader.identity})
                logged = True
            stop.wait(poll)
            continue
        logged = False
        led = threading.Event()

        def watchdog(led: threading.Event = led) -> None:
            pinged = time.monotonic()
            while not led.wait(0.2):
                if stop.is_set():
                    led.set()
                elif time.monotonic() - pinged >= check_every:
                    pinged = time.monotonic()
                    if not leader.still_leader():
                        led.set()

        guard = threading.Thread(target=watchdog, name=f"leader-{leader.role}", daemon=True)
        guard.start()
        try:
            work(led)
        finally:
            led.set()
            guard.join()
            leader.release()
