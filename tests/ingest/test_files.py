"""`warroom ingest file`: the Collector's file-exporter JSON lines and (length-delimited) protobuf."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from ingest.files import read_records
from tests.conftest import WARROOM, query_home
from tests.otlp_builders import sdk_logs, sdk_metrics, sdk_spans
from warroom.errors import InputError
from warroom.otlp_json import delimit, from_proto


def _write_inputs(folder: Path) -> dict[str, int]:
    traces = [sdk_spans("a", 3), sdk_spans("b", 2)]
    lines = [json.dumps(from_proto("traces", t)) for t in traces]
    lines.insert(1, "{not json")
    lines.append(json.dumps(from_proto("logs", sdk_logs("c", 4))))
    (folder / "mixed.jsonl").write_text("\n".join(lines) + "\n\n")
    with gzip.open(folder / "more.json.gz", "wt") as fh:
        fh.write(json.dumps(from_proto("metrics", sdk_metrics("d", 2))) + "\n")
    (folder / "spans.pb").write_bytes(
        b"".join(delimit(sdk_spans("e", 1).SerializeToString()) for _ in range(3))
    )
    (folder / "single-traces.bin").write_bytes(sdk_spans("f", 2).SerializeToString())
    return {"spans": 9 + 6 + 3 * 3 + 6, "logs": 4}


def test_ingest_files_via_cli(tmp_path: Path) -> None:
    want = _write_inputs(tmp_path)
    home = tmp_path / "home"
    files = ["mixed.jsonl", "more.json.gz", "spans.pb", "single-traces.bin"]
    args = [WARROOM, "--home", str(home), "ingest", "file", *[str(tmp_path / f) for f in files]]
    first = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    assert "dead_letters=1" in first.stdout
    again = subprocess.run(args, capture_output=True, text=True, timeout=180)  # idempotent replay
    assert again.returncode == 0, again.stderr
    assert query_home(home, "SELECT count() FROM otel_traces")[0][0] == want["spans"]
    assert query_home(home, "SELECT count() FROM otel_logs")[0][0] == want["logs"]
    assert query_home(home, "SELECT count() FROM otel_metrics_sum")[0][0] > 0
    assert query_home(home, "SELECT Reason, Offset FROM warroom_dead_letters") == [["invalid_json", 1]]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = subprocess.run(
        [WARROOM, "--home", str(tmp_path), "ingest", "file", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 3 and missing.stderr.strip().endswith("no such file")
    (tmp_path / "data.pb").write_bytes(b"\x01\x02")
    unknown = subprocess.run(
        [WARROOM, "--home", str(tmp_path), "ingest", "file", str(tmp_path / "data.pb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 3 and "--signal" in unknown.stderr.strip().splitlines()[-1]


def test_read_records_rules(tmp_path: Path) -> None:
    path = tmp_path / "x.pb"
    path.write_bytes(b"\x0a\x02ab")  # not exactly a length-delimited stream: read as one message
    assert [r.payload for r in read_records(path, "traces")] == [b"\x0a\x02ab"]
    with pytest.raises(InputError):
        list(read_records(tmp_path / "absent.jsonl"))


def test_a_single_request_that_also_reads_as_a_delimited_stream_stays_whole(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.resource_spans.add(schema_url="abcdefg")  # 0a 09 1a 07 …: also "one 10-byte message"
    data = request.SerializeToString()
    path = tmp_path / "single-traces.bin"
    path.write_bytes(data)
    assert [r.payload for r in read_records(path)] == [data]
