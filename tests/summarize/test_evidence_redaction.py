"""Secrets and personal data seeded in real telemetry — log bodies, span attributes, status
messages — reach the evidence pack (an SRE reading it locally needs them), but never the LLM:
ingested through the real ingest path into the embedded ClickHouse, collected into the pack,
sent to a real OpenAI-compatible server process, and looked for in what that server received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import wiring
from ingest.files import ingest_files
from ingest.stats import IngestStats
from summarize import evidence, narrative
from summarize.catalog import Catalog
from summarize.llm import ChatClient, LLMConfig
from summarize.model import EvidenceKind
from summarize.redact import Redactor
from tests.summarize.fake_openai import FakeOpenAI
from warroom.config import load_settings
from warroom.incident import Incident
from warroom.otlp_json import from_proto

pytestmark = pytest.mark.integration

SECRETS = {
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "password": "hunter2-Secret!",
    "email": "jane.doe@example.com",
    "custom": "ACCT-99812345",
}


def _telemetry(folder: Path) -> Path:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    resource = Resource.create({"service.name": "checkout", "k8s.namespace.name": "shop"})
    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = provider.get_logger("tests")
    for i in range(12):
        logger.emit(
            body=(
                f"payment {i} failed for {SECRETS['email']} account {SECRETS['custom']}: "
                f"Authorization: Bearer {SECRETS['bearer']} key={SECRETS['aws']} "
                f"password={SECRETS['password']}"
            ),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            attributes={"user.email": SECRETS["email"], "api_key": SECRETS["aws"]},
        )
    provider.shutdown()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("tests")
    for i in range(6):
        with tracer.start_as_current_span(
            "POST /checkout",
            kind=SpanKind.SERVER,
            attributes={"url.path": "/checkout", "url.query": f"access_token={SECRETS['bearer']}&n={i}"},
        ) as span:
            span.set_status(Status(StatusCode.ERROR, f"login password={SECRETS['password']} rejected"))
    tracer_provider.shutdown()
    path = folder / "telemetry.jsonl"
    lines = [
        json.dumps(from_proto("logs", encode_logs(logs.get_finished_logs()))),
        json.dumps(from_proto("traces", encode_spans(spans.get_finished_spans()))),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tmp_path_factory.mktemp("openai")) as server:
        yield server


def test_seeded_secrets_reach_the_pack_but_not_the_model(
    store: Any, fake: FakeOpenAI, tmp_path: Path
) -> None:
    settings = load_settings(env={}, home=str(tmp_path), clickhouse_database=store.database)
    stored = ingest_files([_telemetry(tmp_path)], settings, wiring.writer(settings, store), IngestStats())
    assert stored.get("logs") == 12 and stored.get("traces") == 6, stored
    now = datetime.now(UTC)
    incident = Incident(
        id="inc-secret",
        title="checkout errors",
        severity="critical",
        status="open",
        started_at=now - timedelta(minutes=5),
        updated_at=now,
        resolved_at=None,
        acknowledged_by="",
        alert_count=1,
        services=("checkout",),
        fingerprints=(),
        flapping=(),
        root_causes=({"service": "checkout", "score": 1.0, "confidence": 0.9, "reasons": []},),
        merged_into=None,
    )
    pack = evidence.collect(store, incident, [], now=now + timedelta(minutes=1))
    local = json.dumps(pack.to_json())
    kinds = {item.kind for item in pack.items}
    assert {EvidenceKind.LOG_TEMPLATE, EvidenceKind.TRACE_EXEMPLAR} <= kinds, local
    for name in ("bearer", "password", "email", "custom", "aws"):
        assert SECRETS[name] in local, name  # the test would catch a leak: they are in the pack

    url = fake.scenario({"content": "not json"})
    client = ChatClient(LLMConfig(base_url=url, model="m", timeout_s=10, retries=0))
    redactor = Redactor({"account": r"ACCT-\d+"})
    catalog = Catalog.default()
    outcome = narrative.write(pack, client, catalog, redactor, narrative.describe_catalog(catalog))
    assert outcome.narrative is None and outcome.attempts == 2  # malformed answer, retried once
    sent = fake.requests(url)
    assert len(sent) == 2
    for request in sent:
        for name, secret in SECRETS.items():
            assert secret not in request["raw"], name
        assert "[REDACTED:" in request["raw"]
    assert outcome.redacted  # counts per kind, recorded
    assert all(secret not in json.dumps(outcome.to_json()) for secret in SECRETS.values())
