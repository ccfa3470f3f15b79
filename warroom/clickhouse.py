"""The one ClickHouse access layer: clickhouse-connect over ``chdb://`` (embedded) or ``http(s)://``.

Every statement with a value in it is parameterised with clickhouse-connect's server-side binding
(``{name:Type}``); identifiers (database, table) come only from validated settings and are quoted
with :func:`ident`. Driver errors become :class:`~warroom.errors.StoreError`, with ``retryable``
set for outages so callers can back off and retry without losing data.

The embedded engine allows one data path per process; :func:`connect` caches one client per DSN so
every component of a process shares it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from warroom import failpoints
from warroom.errors import StoreError

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()

# Error codes that mean "the data or the statement is wrong" (retrying cannot help).
# Everything else — network errors, timeouts, overload, a server restarting — is retryable.
_PERMANENT_MARKERS = (
    "Code: 27.",  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    "Code: 36.",  # BAD_ARGUMENTS
    "Code: 47.",  # UNKNOWN_IDENTIFIER
    "Code: 53.",  # TYPE_MISMATCH
    "Code: 60.",  # UNKNOWN_TABLE
    "Code: 62.",  # SYNTAX_ERROR
    "Code: 81.",  # UNKNOWN_DATABASE
    "Code: 16.",  # NO_SUCH_COLUMN_IN_TABLE
    "Code: 6.",  # CANNOT_PARSE_TEXT
)


def ident(name: str) -> str:
    """Quote an identifier for ClickHouse SQL (backticks, escaped)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def translate_error(exc: Exception, what: str) -> StoreError:
    """Driver exception → StoreError; outages are ``retryable``, bad statements or data are not."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc)
    permanent = any(marker in text for marker in _PERMANENT_MARKERS)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return StoreError(f"ClickHouse {what} failed: {first_line[:500]}", retryable=not permanent)


def connect(dsn: str) -> Any:
    """Return the process-wide clickhouse-connect client for ``dsn`` (created on first use).

    Every statement gets its client here, so the ``store.unavailable`` outage point
    (:mod:`warroom.failpoints`) fails them all, as a refused connection would.
    """
    if failpoints.down("store.unavailable"):
        refused = "ClickHouse connect failed: Connection refused (failpoint store.unavailable)"
        raise StoreError(refused, retryable=True)
    with _LOCK:
        client = _CLIENTS.get(dsn)
        if client is None:
            try:
                import clickhouse_connect

                extra: dict[str, Any] = {} if dsn.startswith("chdb:") else {"autogenerate_session_id": False}
                client = clickhouse_connect.get_client(dsn=dsn, **extra)
            except Exception as exc:
                raise translate_error(exc, "connect") from exc
            _CLIENTS[dsn] = client
        return client


def close_all() -> None:
    """Close every cached client (end of process, tests)."""
    with _LOCK:
        for client in _CLIENTS.values():
            try:
                client.close()
            except Exception:  # noqa: S110 - closing is best effort at shutdown
                pass
        _CLIENTS.clear()


#: Settings every INSERT carries on a cluster, where each table name is a ``Distributed`` table.
#:
#: * ``insert_distributed_sync`` (alias of ``distributed_foreground_insert`` since 23.x; the old name
#:   works on every version): the INSERT returns only after every shard stored its rows, so a success
#:   means the data is durable and the Kafka offset may be committed; the default (background) mode
#:   acknowledges once the rows sit in a local spool, which a node loss would drop.
#: * the deduplication token needs no extra setting: ``DistributedSink`` sends each shard its share
#:   of the block as a remote INSERT that carries the query's settings (``RemoteSink(…, settings, …)``;
#:   a local shard runs it with a copy of the query context), so every shard's Replicated table sees
#:   the same ``insert_deduplication_token``. A replayed batch is split by the same deterministic
#:   sharding key, so each shard receives the same rows under the same token and drops them.
CLUSTER_INSERT_SETTINGS: dict[str, Any] = {"insert_distributed_sync": 1}

#: Settings every query carries on a cluster. A query over a Distributed table with an ``IN``/``JOIN``
#: subquery over another Distributed table is refused by default (``distributed_product_mode =
#: 'deny'``); ``global`` runs the subquery once on the initiator and ships its result to the shards,
#: which is correct whatever the sharding of the two tables.
CLUSTER_QUERY_SETTINGS: dict[str, Any] = {"distributed_product_mode": "global"}


class ClickHouse:
    """A database-scoped handle: ``command``, ``rows`` and column-wise ``insert``.

    ``cluster`` names the ClickHouse cluster the schema was migrated ``ON CLUSTER`` (empty: a single
    node). Table names are unchanged either way (on a cluster they are Distributed tables); only the
    settings above are added, here, so no reader or writer has to know.
    """

    def __init__(self, dsn: str, database: str, cluster: str = "") -> None:
        self.dsn = dsn
        self.database = database
        self.cluster = cluster

    @property
    def client(self) -> Any:
        return connect(self.dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        try:
            return self.client.command(sql, parameters=dict(parameters or {}), settings=self.query_settings())
        except Exception as exc:
            raise translate_error(exc, "command") from exc

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            result = self.client.query(sql, parameters=dict(parameters or {}), settings=self.query_settings())
            return list(result.result_rows)
        except Exception as exc:
            raise translate_error(exc, "query") from exc

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        result = self.rows(sql, parameters)
        return result[0][0] if result else None

    def table(self, name: str) -> str:
        return f"{ident(self.database)}.{ident(name)}"

    def query_settings(self) -> dict[str, Any]:
        """Per-query settings: :data:`CLUSTER_QUERY_SETTINGS` on a cluster, none on a single node."""
        return dict(CLUSTER_QUERY_SETTINGS) if self.cluster else {}

    def insert_settings(self, token: str | None = None) -> dict[str, Any]:
        """The settings of every INSERT: the deduplication ``token`` and, on a cluster,
        :data:`CLUSTER_INSERT_SETTINGS`. Writers that bypass :meth:`insert` merge these in."""
        settings: dict[str, Any] = dict(CLUSTER_INSERT_SETTINGS) if self.cluster else {}
        if token is not None:
            settings["insert_deduplication_token"] = token
        return settings

    def insert(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        token: str | None = None,
    ) -> int:
        """Insert column-oriented data; ``token`` makes a retried insert idempotent.

        ClickHouse remembers the last ``non_replicated_deduplication_window`` tokens per table (on a
        cluster ``replicated_deduplication_window``, per local table and shard) and silently drops
        an insert whose token it has already seen, so a retry after a timeout or a crash cannot
        duplicate rows.
        """
        if not columns or not len(columns[0]):
            return 0
        settings = self.insert_settings(token)
        try:
            self.client.insert(
                table,
                data=columns,
                column_names=list(column_names),
                database=self.database,
                column_oriented=True,
                settings=settings,
            )
        except Exception as exc:
            raise translate_error(exc, f"insert into {table}") from exc
        return len(columns[0])
