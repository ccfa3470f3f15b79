"""What the API and the console act on, built once by the composition root and passed to every
router (no globals: tests build their own).

Reads go to the stores; changes go through the same objects the CLI uses — the correlator for
incident commands (so notices are queued in the same transaction), :class:`Approvals` for
remediations — so every mutating call is authorised by the same rules and lands in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app import auth
from correlate.service import Correlator
from correlate.store import IncidentStore
from summarize.approval import Approvals, Roles
from summarize.catalog import Catalog
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.model import Alert
from warroom.statedb import StateDB

__all__ = ["ApiContext"]


@dataclass
class ApiContext:
    settings: Settings
    store: ClickHouse
    state: StateDB
    correlator: Correlator
    catalog: Catalog
    on_accepted: Callable[[Sequence[Alert]], object] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    on_queued: Callable[[], object] | None = None  # a remediation was queued: wake the executor

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: ClickHouse,
        on_accepted: Callable[[Sequence[Alert]], object] | None = None,
        state: StateDB | None = None,
    ) -> ApiContext:
        """Everything from settings, for callers that have only a store (tests, a bare API).

        The correlator's outbox gets no dispatcher here: incident commands queue their notices,
        and whoever runs the dispatcher (``warroom serve``, ``correlate watch``) delivers them.
        Its send pool starts threads only when something dispatches, so nothing is left running.
        """
        from app import wiring  # here: it imports every stage (ingest, detect …), the API needs none

        state = state if state is not None else wiring.state_db(settings)
        correlator, _outbox = wiring.correlator(settings, store, state)
        return cls(settings, store, state, correlator, wiring.catalog(settings), on_accepted)

    @property
    def incidents(self) -> IncidentStore:
        return self.correlator.incidents

    def approvals(self) -> Approvals:
        """The workflow with today's roles: the config file's ``[roles]`` plus the API users."""
        roles = auth.approval_roles(self.state, Roles.from_settings(self.settings))
        return Approvals(
            self.state, self.catalog, roles, timedelta(seconds=self.settings.proposal_ttl_s), self.clock
        )

    def authenticate(self, token: str) -> auth.User | None:
        return auth.authenticate(self.state, token)
