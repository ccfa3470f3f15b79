"""Write a batch of OTLP records to ClickHouse: validate in Python, decode and flatten in ClickHouse.

Per batch:

1. every record is parsed once with the upb protobuf runtime (``otlp_json`` records are converted
   to protobuf here); a record that does not parse is dead-lettered whole, with its raw bytes;
2. the valid records, each followed by its source coordinates and limits
   (:func:`ingest.otlp_view.trailer`), are framed length-delimited and inserted into the signal's
   staging table in one ``INSERT … FORMAT Protobuf`` carrying the batch's deduplication token;
   the flattening views (:mod:`ingest.native_sql`) fill the exporter tables and dead-letter
   invalid items;
3. if ClickHouse rejects the batch as malformed (not an outage), the batch is split in halves,
   each with a token derived from the parent's, until the offending record is isolated and
   dead-lettered — the good records around it are stored.

An outage raises :class:`~warroom.errors.StoreError` with ``retryable=True``; the caller retries the
*same* batch with the *same* token, so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.native_sql import staging_table
from ingest.otlp_parse import Limits, parse
from ingest.otlp_view import trailer, view
from warroom import schema as s
from warroom.clickhouse import ClickHouse, translate_error
from warroom.errors import DecodeError
from warroom.otlp_json import delimit


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record or file line: an encoded Export*ServiceRequest and where it came from."""

    signal: str
    encoding: str
    payload: bytes
    source: str = "kafka"
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(slots=True)
class WriteResult:
    records: int = 0
    items: int = 0  # spans / log records / metric points received in valid records
    dead_records: int = 0
    inserts: int = 0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def count_items(signal: str, request: object) -> int:
    """Spans, log records or metric points in a parsed request (cheap: walks containers only)."""
    total = 0
    if signal == "traces":
        for rs in request.resource_spans:  # type: ignore[attr-defined]
            for ss in rs.scope_spans:
                total += len(ss.spans)
    elif signal == "logs":
        for rl in request.resource_logs:  # type: ignore[attr-defined]
            for sl in rl.scope_logs:
                total += len(sl.log_records)
    else:
        for rm in request.resource_metrics:  # type: ignore[attr-defined]
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        total += len(getattr(metric, kind).data_points)
    return total


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record checked and framed for the staging insert (or marked dead with a reason)."""

    record: Record
    framed: bytes | None
    items: int
    reason: str = ""
    error: str = ""


class NativeWriter:
    """Inserts batches of records of one signal through the staging table."""

    def __init__(self, store: ClickHouse, limits: Limits, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.limits = limits
        self.now_ns = now_ns
        self._schema_files: dict[str, str] = {}

    def prepare(self, record: Record) -> Prepared:
        """Parse and frame one record; a record that does not parse is marked for the dead letters."""
        try:
            request = parse(record.signal, record.encoding, record.payload)
        except DecodeError as exc:
            return Prepared(record, None, 0, exc.reason, str(exc))
        body = record.payload if record.encoding == "otlp_proto" else request.SerializeToString()
        extra = trailer(
            record.source,
            record.topic,
            record.partition,
            record.offset,
            self.now_ns() + self.limits.max_future_skew_ns,
            self.limits.max_attr_value_chars,
            self.limits.max_body_chars,
        )
        return Prepared(record, delimit(body + extra), count_items(record.signal, request))

    def write(self, signal: str, batch: Sequence[Prepared], token: str) -> WriteResult:
        """Insert a batch idempotently under ``token``; raises a retryable StoreError on outages."""
        result = WriteResult(records=len(batch))
        dead = [(p.record, p.reason, p.error) for p in batch if p.framed is None]
        good = [p for p in batch if p.framed is not None]
        result.items = sum(p.items for p in good)
        self._insert(signal, good, token, dead, result)
        if dead:
            self.dead_letter(dead, token + "/dlq")
            result.dead_records = len(dead)
            for _, reason, _ in dead:
                result.reasons[reason] = result.reasons.get(reason, 0) + 1
        return result

    def _schema_settings(self, signal: str) -> dict[str, object]:
        """How ClickHouse finds the view schema.

        A server takes it inline (``format_schema_source = string``; it caches it in its own
        ``format_schemas`` directory). The embedded engine would cache inline schemas in the
        process's working directory, so there the schema is written once beside the store and
        referenced by absolute path.
        """
        v = view(signal)
        if not self.store.embedded:
            return {
                "format_schema_source": "string",
                "format_schema": v.proto,
                "format_schema_message_name": v.message,
            }
        cached = self._schema_files.get(signal)
        if cached is None:
            digest = hashlib.sha256(v.proto.encode()).hexdigest()[:16]
            folder = Path(self.store.dsn.removeprefix("chdb://")).parent / "format_schemas"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"otlp-{signal}-{digest}.proto"
            if not path.exists():
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(v.proto)
                os.replace(tmp, path)
            cached = f"{path}:{v.message}"
            self._schema_files[signal] = cached
        return {"format_schema": cached}

    def _settings(self, signal: str, token: str) -> dict[str, object]:
        return {
            **self._schema_settings(signal),
            **self.store.insert_settings(token),
            "input_format_protobuf_oneof_presence": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "output_format_json_escape_forward_slashes": 0,
        }

    def _insert(
        self,
        signal: str,
        batch: Sequence[Prepared],
        token: str,
        dead: list[tuple[Record, str, str]],
        result: WriteResult,
    ) -> None:
        if not batch:
            return
        block = b"".join(p.framed or b"" for p in batch)
        try:
            self.store.client.raw_insert(
                self.store.table(staging_table(signal)),
                None,
                insert_block=block,
                settings=self._settings(signal, token),
                fmt="Protobuf",
            )
        except Exception as exc:  # outages propagate for a retry; malformed data is isolated
            error = translate_error(exc, "insert")
            if error.retryable:
                raise error from exc
            if len(batch) == 1:
                dead.append((batch[0].record, "rejected_by_clickhouse", str(error)))
                result.items -= batch[0].items
                return
            half = len(batch) // 2
            self._insert(signal, batch[:half], token + "/a", dead, result)
            self._insert(signal, batch[half:], token + "/b", dead, result)
            return
        result.inserts += 1
        result.bytes += len(block)

    def dead_letter(self, dead: Sequence[tuple[Record, str, str]], token: str) -> None:
        now_ms = self.now_ns() // 1_000_000
        columns: list[list[object]] = [[] for _ in s.DEAD_LETTER_COLUMNS]
        for record, reason, error in dead:
            row = (
                now_ms,
                record.source,
                record.topic,
                record.partition,
                record.offset,
                record.signal,
                reason,
                error[:2000],
                record.payload,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        self.store.insert(s.DEAD_LETTERS, s.DEAD_LETTER_COLUMNS, columns, token=token)
