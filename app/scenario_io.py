"""Move generated scenarios onto Kafka: the fixture files, produced in each topic's configured encoding."""

from __future__ import annotations

from pathlib import Path

from ingest.files import read_records
from ingest.otlp_parse import parse
from warroom.config import Settings
from warroom.errors import BrokerError, InputError

FILES = {"traces": "traces.jsonl", "logs": "logs.jsonl", "metrics": "metrics.jsonl"}


def produce_dir(settings: Settings, bootstrap: str, out_dir: Path) -> dict[str, int]:
    """Produce a generated scenario's OTLP/JSON files to the OTLP topics; returns records per signal.

    Each line becomes one record — one Export*ServiceRequest, as the Collector's Kafka exporter
    writes — encoded as the topic's setting asks (``otlp_proto`` or ``otlp_json``).
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    topics = settings.topics()
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","), max_request_size=16 << 20, linger_ms=5
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    sent: dict[str, int] = {}
    try:
        for signal, name in FILES.items():
            path = out_dir / name
            if not path.is_file():
                raise InputError(f"{path} is missing: generate the scenario with --format json or both")
            topic, encoding = topics[signal]
            count = 0
            for record in read_records(path, signal):
                payload = record.payload
                if encoding == "otlp_proto":
                    payload = parse(signal, "otlp_json", payload).SerializeToString()
                producer.send(topic, payload)
                count += 1
            sent[signal] = count
        producer.flush()
    finally:
        producer.close()
    return sent
