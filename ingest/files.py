"""``warroom ingest file``: replay captured telemetry through the same decode and storage path.

Accepted files:

* the Collector's **file exporter** format: OTLP/JSON, one Export*ServiceRequest per line
  (``.json``/``.jsonl``, optionally ``.gz``); the signal is read from each line's top-level key;
* **length-delimited** OTLP protobuf (varint length + request, repeated) or a **single** request
  (``.pb``/``.bin``/``.proto``); the signal comes from ``--signal`` or the file name
  (``traces``/``spans``, ``logs``, ``metrics``).

Each line/message becomes a record with ``source = file``, ``topic = <path>`` and ``offset =``
its index, and batches are tokenised by the file's content hash and index range, so ingesting the
same file twice stores it once (within the deduplication window).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from ingest.batcher import Batch
from ingest.otlp_parse import parse
from ingest.sink import Sink
from ingest.stats import IngestStats
from ingest.writer import NativeWriter, Record
from warroom.config import Settings
from warroom.errors import DecodeError, InputError

_JSON_KEYS = {
    "resourceSpans": "traces",
    "resource_spans": "traces",
    "resourceLogs": "logs",
    "resource_logs": "logs",
    "resourceMetrics": "metrics",
    "resource_metrics": "metrics",
}


def signal_from_name(path: Path) -> str | None:
    name = path.name.lower()
    for word, signal in (("span", "traces"), ("trace", "traces"), ("log", "logs"), ("metric", "metrics")):
        if word in name:
            return signal
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", reason="unreadable_file") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip data", reason="unreadable_file") from exc
    return data


def _is_json(path: Path, data: bytes) -> bool:
    suffixes = {s.lower() for s in path.suffixes}
    if suffixes & {".json", ".jsonl", ".ndjson"}:
        return True
    if suffixes & {".pb", ".bin", ".proto", ".protobuf"}:
        return False
    return data.lstrip()[:1] == b"{"


def _length_delimited(data: bytes) -> list[bytes] | None:
    """Split a length-delimited stream; None if the bytes are not exactly such a stream."""
    messages: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        size, shift = 0, 0
        while True:
            if pos >= end or shift > 63:
                return None
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + size > end:
            return None
        messages.append(data[pos : pos + size])
        pos += size
    return messages


def read_records(path: Path, signal: str | None = None) -> Iterator[Record]:
    """The records of one file, in order. Unknown signal or unreadable file → InputError."""
    data = _read_bytes(path)
    topic = str(path)
    if _is_json(path, data):
        for index, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            line_signal = signal or _json_signal(line) or signal_from_name(path)
            if line_signal is None:
                # Unknown shape: let the decoder reject it into the dead letters with the reason.
                line_signal = "traces"
            yield Record(line_signal, "otlp_json", line, "file", topic, 0, index)
        return
    signal = signal or signal_from_name(path)
    if signal is None:
        raise InputError(
            f"{path}: cannot tell the signal of a protobuf file; "
            "name it after traces/logs/metrics or pass --signal",
            reason="unknown_signal",
        )
    messages = _length_delimited(data)
    if not messages or not all(_parses(signal, m) for m in messages):
        # A single request can happen to read as a delimited stream (its first byte is a small
        # length): only take the split when every piece is itself a valid request.
        messages = [data]
    for index, message in enumerate(messages):
        yield Record(signal, "otlp_proto", message, "file", topic, 0, index)


def _parses(signal: str, message: bytes) -> bool:
    try:
        parse(signal, "otlp_proto", message)
    except DecodeError:
        return False
    return True


def _json_signal(line: bytes) -> str | None:
    head = line[:200].decode("utf-8", "replace")
    for key, signal in _JSON_KEYS.items():
        if f'"{key}"' in head:
            return signal
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict):
        for key in obj:
            if key in _JSON_KEYS:
                return _JSON_KEYS[key]
    return None


def ingest_files(
    paths: list[Path], settings: Settings, writer: NativeWriter, stats: IngestStats, signal: str | None = None
) -> dict[str, int]:
    """Ingest files in order; returns items stored per signal (dead letters counted separately)."""
    sink = Sink(writer, stats, settings.retry_max_seconds, threading.Event())
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such file", reason="missing_file")
    for path in paths:
        digest = hashlib.sha256(_read_bytes(path)).hexdigest()[:16]
        sink.token_prefix = f"file:{digest}:"
        batches: dict[str, Batch] = {}
        for record in read_records(path, signal):
            batch = batches.setdefault(record.signal, Batch(str(path), 0, record.signal))
            batch.add(writer.prepare(record))
            if batch.count >= settings.batch_max_rows or batch.size >= settings.batch_max_bytes:
                sink.flush(batches.pop(record.signal))
        for batch in batches.values():
            sink.flush(batch)
    return dict(stats.items)
