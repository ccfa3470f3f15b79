"""Batch boundaries: by size, by age, and exactly at the ledger's ranges when replaying."""

from __future__ import annotations

from ingest.batcher import Limits, PartitionBuffer
from ingest.ledger import Range
from ingest.writer import Prepared, Record


def _p(offset: int, items: int = 10) -> Prepared:
    return Prepared(Record("traces", "otlp_proto", b"x" * 5, "kafka", "t", 0, offset), b"f", items)


def _feed(buffer: PartitionBuffer, offsets: range) -> list[tuple[int, int]]:
    cut = []
    for o in offsets:
        cut += [(b.first, b.last) for b in buffer.add(_p(o))]
    return cut


def test_cut_by_items() -> None:
    buffer = PartitionBuffer("t", 0, "traces", Limits(30, 10**9, 60), [])
    assert _feed(buffer, range(10)) == [(0, 2), (3, 5), (6, 8)]
    assert (buffer.drain().first, buffer.current.count) == (9, 0)


def test_cut_by_age() -> None:
    buffer = PartitionBuffer("t", 0, "traces", Limits(10**6, 10**9, 5.0), [])
    _feed(buffer, range(3))
    assert buffer.due(buffer.current.started + 1) is None
    batch = buffer.due(buffer.current.started + 6)
    assert batch is not None and (batch.first, batch.last) == (0, 2)


def test_replay_reproduces_ledger_ranges_exactly() -> None:
    # A crashed worker had planned 100-104 and 105-111; size limits would cut elsewhere now.
    buffer = PartitionBuffer("t", 0, "traces", Limits(30, 10**9, 60), [Range(100, 104), Range(105, 111)])
    assert _feed(buffer, range(100, 120)) == [(100, 104), (105, 111), (112, 114), (115, 117)]


def test_a_partial_ledger_range_is_never_flushed_under_another_token() -> None:
    buffer = PartitionBuffer("t", 0, "traces", Limits(1, 10**9, 0.0), [Range(10, 20)])
    _feed(buffer, range(10, 15))
    assert buffer.due(buffer.current.started + 100) is None
    assert buffer.drain() is None  # left uncommitted for the next owner to replay whole


def test_records_before_a_ledger_range_are_cut_before_it() -> None:
    buffer = PartitionBuffer("t", 0, "traces", Limits(10**6, 10**9, 60), [Range(5, 7)])
    assert _feed(buffer, range(2, 9)) == [(2, 4), (5, 7)]


def test_ranges_already_behind_the_position_are_ignored() -> None:
    buffer = PartitionBuffer("t", 0, "traces", Limits(20, 10**9, 60), [Range(0, 3)])
    assert _feed(buffer, range(10, 14)) == [(10, 11), (12, 13)]
