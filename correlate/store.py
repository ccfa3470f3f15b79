"""The incident store: incidents, every grouping decision ("why grouped here"), the audit trail of
changes, and the correlator's resumable state — in the state database (:mod:`warroom.statedb`).

The correlator and people (CLI, API) both change incidents. Every change runs in
:meth:`IncidentStore.transaction`, which locks the one state row first (an ``UPDATE`` of its
revision: a row lock on PostgreSQL, the write lock on SQLite), loads the :class:`IncidentBook`,
lets the caller apply alerts or commands, then writes the changed incidents, their decisions and
events and the new state in the same transaction. So an acknowledgement typed while the watcher
runs is never lost or applied twice, and a crash mid-batch leaves the previous consistent state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from correlate.grouping import GroupingConfig
from correlate.grouping_state import decision_to_json
from correlate.lifecycle import Change, IncidentBook, LifecycleConfig
from correlate.topology import Topology
from warroom.alert_json import time_text
from warroom.errors import InputError
from warroom.incident import Incident
from warroom.statedb import StateDB, UTCDateTime

__all__ = ["METADATA", "Incident", "IncidentStore", "Session"]

METADATA = sa.MetaData()
"""The incident tables; the composition root passes this to :func:`warroom.statedb.migrate`."""

INCIDENTS = sa.Table(
    "incidents",
    METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("acknowledged_by", sa.String(255), nullable=False, default=""),
    sa.Column("alert_count", sa.Integer, nullable=False, default=0),
    sa.Column("services", sa.Text, nullable=False),  # JSON list
    sa.Column("fingerprints", sa.Text, nullable=False),  # JSON list
    sa.Column("flapping", sa.Text, nullable=False),  # JSON list
    sa.Column("root_causes", sa.Text, nullable=False),  # JSON list of {service, score, confidence, reasons}
    sa.Column("merged_into", sa.String(64), nullable=True),
    sa.Index("ix_incidents_status_started", "status", "started_at"),
)

DECISIONS = sa.Table(
    "incident_decisions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # JSON, see grouping_state.decision_to_json
    sa.Index("ix_incident_decisions_incident", "incident_id", "id"),
)

EVENTS = sa.Table(
    "incident_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False, default=""),
    sa.Column("notify", sa.Boolean, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list
    sa.Index("ix_incident_events_incident", "incident_id", "id"),
)

STATE = sa.Table(
    "correlate_state",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

_BOOK = "book"


@dataclass
class Session:
    """The book loaded in a transaction, plus the state that travels with it (the alert cursor)."""

    book: IncidentBook
    cursor: dict[str, Any]
    changes: list[Change]
    conn: Connection  # the open transaction: notices queued on it commit with the changes

    def record(self, changes: Sequence[Change]) -> list[Change]:
        self.changes.extend(changes)
        return list(changes)


class IncidentStore:
    def __init__(
        self,
        db: StateDB,
        topology: Callable[[], Topology | None] | None = None,
        grouping: GroupingConfig | None = None,
        lifecycle: LifecycleConfig | None = None,
    ) -> None:
        self.db = db
        self._topology = topology or (lambda: None)
        self.grouping = grouping or GroupingConfig()
        self.lifecycle = lifecycle or LifecycleConfig()

    # --- the one way to change incidents --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Lock the correlator state, yield the loaded book, then persist what changed."""
        with self.db.begin() as conn:
            now = datetime.now(UTC)
            locked = conn.execute(
                sa.update(STATE).where(STATE.c.name == _BOOK).values(revision=STATE.c.revision + 1)
            ).rowcount
            topology = self._topology()
            if locked:
                body = json.loads(
                    conn.execute(sa.select(STATE.c.body).where(STATE.c.name == _BOOK)).scalar_one()
                )
                book = IncidentBook.from_json(body["book"], topology, self.grouping, self.lifecycle)
                cursor = dict(body.get("cursor", {}))
            else:
                book, cursor = IncidentBook(topology, self.grouping, self.lifecycle), {}
            session = Session(book, cursor, [], conn)
            yield session
            self._persist(conn, session, now)
            body_text = json.dumps({"book": book.to_json(), "cursor": session.cursor}, separators=(",", ":"))
            if locked:
                conn.execute(
                    sa.update(STATE).where(STATE.c.name == _BOOK).values(body=body_text, updated_at=now)
                )
            else:
                conn.execute(sa.insert(STATE).values(name=_BOOK, revision=1, body=body_text, updated_at=now))

    def _persist(self, conn: Connection, session: Session, now: datetime) -> None:
        for change in session.changes:
            incident = change.incident
            merged_into = None
            if change.kind == "resolved" and change.reasons and change.reasons[0].startswith("merged into "):
                merged_into = change.reasons[0].split()[2]
            row = {
                "title": incident.title,
                "severity": incident.severity.value,
                "status": incident.status,
                "started_at": incident.started_at,
                "updated_at": change.at,
                "resolved_at": incident.resolved_at,
                "acknowledged_by": incident.acknowledged_by,
                "alert_count": change.alert_count,
                "services": json.dumps(list(incident.services)),
                "fingerprints": json.dumps(list(incident.fingerprints)),
                "flapping": json.dumps(list(incident.flapping)),
                "root_causes": json.dumps([c.to_json() for c in change.root_causes]),
                "merged_into": merged_into,
            }
            if merged_into is not None:
                row = {
                    "status": "resolved",
                    "resolved_at": change.at,
                    "updated_at": change.at,
                    "merged_into": merged_into,
                }
                conn.execute(
                    sa.update(DECISIONS)
                    .where(DECISIONS.c.incident_id == incident.id)
                    .values(incident_id=merged_into)
                )
            updated = conn.execute(
                sa.update(INCIDENTS).where(INCIDENTS.c.id == incident.id).values(**row)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(INCIDENTS).values(id=incident.id, **row))
            decision = change.decision
            if decision is None and change.kind in ("merged", "split", "opened") and change.actor:
                decision = incident.decisions[-1] if incident.decisions else None
            if decision is not None:
                conn.execute(
                    sa.insert(DECISIONS).values(
                        incident_id=incident.id,
                        fingerprint=decision.fingerprint,
                        body=json.dumps(decision_to_json(decision), separators=(",", ":")),
                    )
                )
            if change.decision is None or change.notify or change.kind != "updated":
                conn.execute(
                    sa.insert(EVENTS).values(
                        incident_id=incident.id,
                        at=change.at,
                        recorded_at=now,
                        kind=change.kind,
                        actor=change.actor,
                        notify=change.notify,
                        reasons=json.dumps(list(change.reasons)),
                    )
                )

    # --- reads ----------------------------------------------------------------------------------

    def incidents(self, status: str | None = None, limit: int = 100) -> list[Incident]:
        query = sa.select(INCIDENTS).where(INCIDENTS.c.merged_into.is_(None))
        if status is not None:
            query = query.where(INCIDENTS.c.status == status)
        query = query.order_by(INCIDENTS.c.started_at.desc(), INCIDENTS.c.id).limit(limit)
        with self.db.begin() as conn:
            return [_record(r._mapping) for r in conn.execute(query)]

    def get(self, incident_id: str) -> Incident:
        with self.db.begin() as conn:
            row = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id == incident_id)).first()
        if row is None:
            raise InputError(f"no incident {incident_id!r}", reason="unknown_incident")
        return _record(row._mapping)

    def explain(self, incident_id: str) -> list[dict[str, Any]]:
        """Every grouping decision that touched the incident, oldest first (with per-factor scores)."""
        self.get(incident_id)
        with self.db.begin() as conn:
            rows = conn.execute(
                sa.select(DECISIONS.c.body)
                .where(DECISIONS.c.incident_id == incident_id)
                .order_by(DECISIONS.c.id)
            )
            return [json.loads(r.body) for r in rows]

    def events(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's audit trail: every lifecycle change, who made it and why, oldest first."""
        self.get(incident_id)
        with self.db.begin() as conn:
            rows = conn.execute(
                sa.select(EVENTS).where(EVENTS.c.incident_id == incident_id).order_by(EVENTS.c.id)
            ).all()
        return [
            {
                "at": time_text(r.at),
                "recorded_at": time_text(r.recorded_at),
                "kind": r.kind,
                "actor": r.actor,
                "notify": r.notify,
                "reasons": json.loads(r.reasons),
            }
            for r in rows
        ]


def _record(row: Any) -> Incident:
    return Incident(
        id=row["id"],
        title=row["title"],
        severity=row["severity"],
        status=row["status"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
        acknowledged_by=row["acknowledged_by"],
        alert_count=row["alert_count"],
        services=tuple(json.loads(row["services"])),
        fingerprints=tuple(json.loads(row["fingerprints"])),
        flapping=tuple(json.loads(row["flapping"])),
        root_causes=tuple(json.loads(row["root_causes"])),
        merged_into=row["merged_into"],
    )
