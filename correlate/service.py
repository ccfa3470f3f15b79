"""The correlator as a service: alert versions from the ``alerts`` table in; incidents, their
audit trail and queued notices out.

Two feeds: :meth:`Correlator.run` groups the alerts that *started* in a time range (a backfill, a
re-run; idempotent, since re-reading an alert is a duplicate) and moves the lifecycle clock with
the data; :meth:`Correlator.poll` (what ``watch`` and ``serve`` loop on) takes every version that
*arrived* since the cursor, so late alerts are not skipped, and moves the clock with the wall
clock. People's commands (ack, resolve, merge, split) go through the same locked transaction.
Notices are queued inside that transaction's scope before the state commits: a crash can repeat a
notice (receivers dedup by incident id) but never lose one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from correlate.lifecycle import Change
from correlate.notifier import Notifier
from correlate.ordering import events, version_events
from correlate.store import IncidentStore, Session
from warroom import alerts as alerts_table
from warroom import audit, failpoints
from warroom.alert_json import time_from_text, time_text
from warroom.clickhouse import ClickHouse

__all__ = ["Correlator", "RunSummary"]

log = logging.getLogger("warroom.correlate")

_SETTLE = timedelta(seconds=2)  # an insert in flight may carry an InsertedAt just before "now"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RunSummary:
    alerts: int
    changes: int
    opened: int
    resolved: int
    notices: int
    open_incidents: int

    def to_json(self) -> dict[str, int]:
        return {
            "alerts": self.alerts,
            "changes": self.changes,
            "opened": self.opened,
            "resolved": self.resolved,
            "notices": self.notices,
            "open_incidents": self.open_incidents,
        }


class Correlator:
    def __init__(
        self,
        store: ClickHouse,
        incidents: IncidentStore,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.notifier = notifier
        self.clock = clock

    def _finish(self, session: Session, alerts: int) -> RunSummary:
        notices = self.notifier.queue(session.book, session.changes, session.conn) if self.notifier else 0
        kinds = [c.kind for c in session.changes]
        return RunSummary(
            alerts=alerts,
            changes=len(kinds),
            opened=kinds.count("opened"),
            resolved=kinds.count("resolved"),
            notices=notices,
            open_incidents=sum(1 for i in session.book.incidents() if i.status != "resolved"),
        )

    def run(self, since: datetime, until: datetime) -> RunSummary:
        """Group the alerts that started in ``[since, until)``, in data time."""
        found = alerts_table.read(self.store, since, until)
        with self.incidents.transaction() as s:
            for at, alert in events(found):
                s.record(s.book.tick(at))
                s.record(s.book.ingest(alert))
            s.record(s.book.tick(until))
            s.cursor["run_until"] = time_text(until)
            summary = self._finish(s, len(found))
        log.info("correlated a time range", extra={"since": since.isoformat(), **summary.to_json()})
        return summary

    def poll(self) -> RunSummary:
        """Take the alert versions that arrived since the cursor; resolve what has gone quiet."""
        now = self.clock()
        until = now - _SETTLE
        with self.incidents.transaction() as s:
            after = time_from_text(s.cursor.get("arrived", time_text(_EPOCH)))
            arrived = alerts_table.read_arrived(self.store, after, until) if until > after else []
            for _, alert in arrived:
                known = s.book.grouper.knows(alert.fingerprint, alert.starts_at)
                for at, event in version_events(alert, known):
                    s.record(s.book.tick(min(at, now)))
                    s.record(s.book.ingest(event))
            s.record(s.book.tick(now))
            if arrived:
                s.cursor["arrived"] = time_text(max(at for at, _ in arrived))
            summary = self._finish(s, len(arrived))
            if arrived:
                failpoints.hit("correlate.before_commit")
        if summary.changes:
            log.info("correlated new alerts", extra=summary.to_json())
        return summary

    def watch(
        self, stop: threading.Event, interval: float = 5.0, wake: threading.Event | None = None
    ) -> None:
        """Poll until ``stop``; ``wake`` (set by the intake) polls at once. Errors are logged, not fatal.

        ``stop`` also ends the wait between polls, so a SIGTERM stops the watcher at once.
        """
        wake = wake or threading.Event()

        def relay() -> None:
            stop.wait()
            wake.set()

        threading.Thread(target=relay, name="watch-stop", daemon=True).start()
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # a bad batch or an outage must not end the watcher
                log.exception("correlate poll failed; retrying")
            wake.wait(interval)
            wake.clear()

    # --- people's commands ---------------------------------------------------------------------------

    def _command(self, apply: Callable[[Session], list[Change]]) -> list[Change]:
        """A person's change: applied, its notices queued and its audit entries chained, in one
        transaction."""
        with self.incidents.transaction() as s:
            changes = s.record(apply(s))
            self._finish(s, 0)
            for change in changes:
                audit.append(
                    s.conn,
                    actor=change.actor or "warroom",
                    action=f"incident.{change.kind}",
                    subject=change.incident.id,
                    reason="; ".join(change.reasons),
                    after={"status": change.incident.status, "alerts": list(change.incident.fingerprints)},
                    at=change.at,
                )
        return changes

    def acknowledge(self, incident_id: str, actor: str) -> list[Change]:
        return self._command(lambda s: [s.book.acknowledge(incident_id, actor, self.clock())])

    def resolve(self, incident_id: str, actor: str) -> list[Change]:
        return self._command(lambda s: [s.book.resolve(incident_id, actor, self.clock())])

    def merge(self, target_id: str, source_ids: list[str], actor: str) -> list[Change]:
        return self._command(lambda s: s.book.merge(target_id, source_ids, actor, self.clock()))

    def split(self, incident_id: str, fingerprints: list[str], actor: str) -> list[Change]:
        return self._command(lambda s: s.book.split(incident_id, fingerprints, actor, self.clock()))
