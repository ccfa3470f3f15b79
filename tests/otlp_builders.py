"""Build OTLP requests for tests: through the OpenTelemetry SDK encoders, or by hand for edge cases."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def sdk_spans(service: str, traces: int, children: int = 2) -> Any:
    """``traces`` traces of 1 + ``children`` spans each, encoded by the SDK's OTLP encoder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "host.name": "node-1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests", "1.0")
    for i in range(traces):
        with tracer.start_as_current_span(
            "GET /checkout", attributes={"http.response.status_code": 200, "order": i, "ratio": 0.5}
        ):
            for c in range(children):
                with tracer.start_as_current_span(f"SELECT {c}", attributes={"db.system": "postgresql"}):
                    pass
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def sdk_logs(service: str, count: int) -> Any:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests")
    from opentelemetry._logs import SeverityNumber

    for i in range(count):
        logger.emit(
            body=f"payment {i} authorised in {i % 97} ms",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            attributes={"order": i},
        )
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs())


def sdk_metrics(service: str, points: int) -> Any:
    """One gauge, one monotonic counter and one histogram with ``points`` attribute sets each."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meter = provider.get_meter("tests")
    counter = meter.create_counter("http.server.request.count")
    histogram = meter.create_histogram("http.server.request.duration", unit="s")
    values = {i: float(i) for i in range(points)}
    meter.create_observable_gauge(
        "process.cpu.utilization",
        [
            lambda _o: [
                __import__("opentelemetry.metrics").metrics.Observation(v, {"core": k})
                for k, v in values.items()
            ]
        ],
    )
    for i in range(points):
        counter.add(i + 1, {"route": f"/r{i}"})
        histogram.record(0.01 * (i + 1), {"route": f"/r{i}"})
    data = reader.get_metrics_data()
    provider.shutdown()
    return encode_metrics(data)


def now_ns() -> int:
    return time.time_ns()
