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
    """Return the process-wide clickhouse-connect client for ``dsn`` (created on first use)."""
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


class ClickHouse:
    """A database-scoped handle: ``command``, ``rows`` and column-wise ``insert``."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database

    @property
    def client(self) -> Any:
        return connect(self.dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        try:
            return self.client.command(sql, parameters=dict(parameters or {}))
        except Exception as exc:
            raise translate_error(exc, "command") from exc

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return list(self.client.query(sql, parameters=dict(parameters or {})).result_rows)
        except Exception as exc:
            raise translate_error(exc, "query") from exc

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        result = self.rows(sql, parameters)
        return result[0][0] if result else None

    def table(self, name: str) -> str:
        return f"{ident(self.database)}.{ident(name)}"

    def insert(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        token: str | None = None,
    ) -> int:
        """Insert column-oriented data; ``token`` makes a retried insert idempotent.

        ClickHouse remembers the last ``non_replicated_deduplication_window`` tokens per table and
        silently drops an insert whose token it has already seen, so a retry after a timeout or a
        crash cannot duplicate rows.
        """
        if not columns or not len(columns[0]):
            return 0
        settings: dict[str, Any] = {}
        if token is not None:
            settings["insert_deduplication_token"] = token
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
