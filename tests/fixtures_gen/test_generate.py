"""The fault-scenario generator: determinism, file formats, trace structure, injected faults, truth."""

from __future__ import annotations

import io
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import fixtures
from fixtures import SCENARIOS, GroundTruth, generate, ground_truth, iter_requests, main, to_proto
from fixtures.faults import BadDeploy, StepEffects
from fixtures.scenarios import MIN_FAULT_STEPS
from fixtures.templates import VALUE_FACTORIES, LogTemplate, Template
from fixtures.topology import SHOP, DbCall
from tests.fixtures_gen.helpers import START, STEP, TINY, attributes, log_records, metrics, spans
from warroom.errors import InputError
from warroom.otlp_json import read_delimited

SERVER, CLIENT = 2, 3
STATUS_ERROR = 2
REMOTE_PARENT = 0x300  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


SMALL: dict[str, Any] = {**TINY, "rate": 0.5}


@pytest.fixture(scope="module")
def bad_deploy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    """Enough traffic (rate 2) that the checkout error ratio is measurable in 16 fault steps."""
    out = tmp_path_factory.mktemp("bad_deploy")
    truth = generate("bad_deploy", out, seed=7, rate=2.0, formats=("json", "proto"), **TINY)
    return out, truth


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    out = tmp_path_factory.mktemp("small")
    return out, generate("cpu_saturation", out, seed=3, formats=("json", "proto"), **SMALL)


@pytest.fixture(scope="module")
def messages(bad_deploy: tuple[Path, GroundTruth]) -> list[tuple[str, Message]]:
    """The bad_deploy run read back from its length-delimited protobuf files, in file order."""
    out, _ = bad_deploy
    found: list[tuple[str, Message]] = []
    for signal in fixtures.SIGNALS:
        with open(out / f"{signal}.pb", "rb") as stream:
            found += [(signal, m) for m in read_delimited(stream, signal)]
    return found


# -- files and determinism ---------------------------------------------------------------------


def test_same_seed_gives_identical_files(tmp_path: Path, small: tuple[Path, GroundTruth]) -> None:
    """Also across process pools: every step is seeded on its own, so ``jobs`` cannot matter."""
    first_dir, first = small
    second = generate("cpu_saturation", tmp_path / "b", seed=3, formats=("json", "proto"), **SMALL, jobs=2)
    assert first == second
    names = sorted(p.name for p in first_dir.iterdir())
    assert names == sorted([*fixtures.output.output_files(), "ground_truth.json"])
    for name in names:
        assert (first_dir / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = generate("cpu_saturation", tmp_path / "c", seed=4, formats=("json",), **SMALL)
    assert (tmp_path / "c" / "traces.jsonl").read_bytes() != (first_dir / "traces.jsonl").read_bytes()
    assert other.faults == first.faults  # the seed changes the traffic, not the ground truth


def test_json_lines_parse_back_into_the_protobuf_requests(
    bad_deploy: tuple[Path, GroundTruth], messages: list[tuple[str, Message]]
) -> None:
    out, truth = bad_deploy
    by_signal = defaultdict(list)
    for signal, message in messages:
        by_signal[signal].append(message)
    for signal, protos in by_signal.items():
        lines = (out / f"{signal}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(protos) == truth.volume[f"{signal}_requests"]  # type: ignore[index]
        for line, proto in list(zip(lines, protos, strict=True))[::5]:  # ParseDict is slow; a sample will do
            assert to_proto(signal, json.loads(line)) == proto


def test_iter_requests_matches_the_files(small: tuple[Path, GroundTruth]) -> None:
    out, _ = small
    streamed = list(iter_requests("cpu_saturation", seed=3, **SMALL))
    order = [s for s, _ in streamed]
    assert order[-1] == "metrics" and order.count("metrics") == 48
    for signal in fixtures.SIGNALS:
        with open(out / f"{signal}.pb", "rb") as stream:
            assert [m for s, m in streamed if s == signal] == list(read_delimited(stream, signal))


def test_requests_are_batched_and_in_time_order() -> None:
    streamed = list(iter_requests("cpu_saturation", seed=3, max_batch=20, **SMALL))
    last_metric = 0
    resources_per_request = []
    for _, message in streamed:
        if isinstance(message, ExportTraceServiceRequest):
            assert 0 < sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans) <= 20
            resources_per_request.append(len(message.resource_spans))
        elif isinstance(message, ExportMetricsServiceRequest):
            stamp = (
                message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].time_unix_nano
            )
            assert stamp > last_metric
            last_metric = stamp
    assert max(resources_per_request) > 1  # one request carries several services, like a Collector batch


# -- what the data looks like ------------------------------------------------------------------


def test_resources_carry_kubernetes_and_service_attributes(messages: list[tuple[str, Message]]) -> None:
    resources = {r["service.name"]: r for r, _ in spans(messages)}
    assert set(resources) == set(SHOP.service_names)
    for name, resource in resources.items():
        assert resource["service.namespace"] == "shop"
        assert resource["deployment.environment.name"] == "demo"
        assert resource["k8s.deployment.name"] == name
        assert resource["k8s.pod.name"].startswith(f"{name}-")
        assert resource["host.name"] == resource["k8s.node.name"]
    nodes = Counter(r["k8s.node.name"] for r in resources.values())
    assert max(nodes.values()) >= 2  # some services share a node


def test_traces_link_client_and_server_spans_across_services(messages: list[tuple[str, Message]]) -> None:
    by_id: dict[bytes, tuple[dict[str, Any], Any]] = {}
    traces: dict[bytes, list[Any]] = defaultdict(list)
    for resource, span in spans(messages):
        by_id[span.span_id] = (resource, span)
        traces[span.trace_id].append(span)
    assert len(by_id) == sum(len(v) for v in traces.values())  # span ids are unique
    for trace in traces.values():
        roots = [s for s in trace if not s.parent_span_id]
        assert len(roots) == 1 and roots[0].kind == SERVER
    for resource, span in by_id.values():
        if not span.parent_span_id:
            assert resource["service.name"] == "frontend"
            continue
        parent_resource, parent = by_id[span.parent_span_id]
        assert parent.trace_id == span.trace_id
        assert span.start_time_unix_nano >= parent.start_time_unix_nano
        if span.kind == SERVER:  # called over the network: the parent is the caller's CLIENT span
            assert parent.kind == CLIENT and span.flags & REMOTE_PARENT == REMOTE_PARENT
            assert parent_resource["service.name"] != resource["service.name"]
            assert attributes(parent.attributes)["peer.service"] == resource["service.name"]
        else:
            assert span.kind == CLIENT and parent.kind == SERVER
            assert parent_resource["service.name"] == resource["service.name"]


def test_span_attributes_follow_semantic_conventions(messages: list[tuple[str, Message]]) -> None:
    db_systems = set()
    literal_statements = 0
    for _, span in spans(messages):
        attrs = attributes(span.attributes)
        if span.kind == SERVER:
            assert {"http.request.method", "http.route", "url.path", "http.response.status_code"} <= set(
                attrs
            )
            assert span.name == f"{attrs['http.request.method']} {attrs['http.route']}"
            assert (attrs["http.response.status_code"] >= 500) == (span.status.code == STATUS_ERROR)
        elif "db.system" in attrs:
            db_systems.add((attrs["db.system"], attrs["peer.service"]))
            assert attrs["server.address"].endswith(".svc.cluster.local")
            literal_statements += any(ch.isdigit() for ch in attrs["db.statement"].split("$")[0])
        else:
            assert attrs["url.full"].startswith("http://")
    assert db_systems == {("postgresql", "postgres"), ("redis", "redis")}
    assert literal_statements > 0


def test_logs_are_correlated_with_spans(messages: list[tuple[str, Message]]) -> None:
    span_ids = {(span.trace_id, span.span_id): r["service.name"] for r, span in spans(messages)}
    severities: Counter[str] = Counter()
    for resource, record in log_records(messages):
        severities[record.severity_text] += 1
        assert record.observed_time_unix_nano > record.time_unix_nano
        if record.trace_id:
            assert span_ids[(record.trace_id, record.span_id)] == resource["service.name"]
    assert set(severities) == {"INFO", "WARN", "ERROR"}


def test_metrics_are_well_formed(messages: list[tuple[str, Message]]) -> None:
    names: set[str] = set()
    last: dict[tuple[str, str, Any], tuple[int, int]] = {}
    for resource, metric in metrics(messages):
        names.add(metric.name)
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            point = metric.gauge.data_points[0]
            if metric.name.endswith("utilization"):
                assert 0.0 < point.as_double <= 1.0
        elif kind == "sum":
            assert metric.sum.is_monotonic and metric.sum.aggregation_temporality == 2  # cumulative
            for point in metric.sum.data_points:
                key = (
                    resource["service.instance.id"],
                    metric.name,
                    tuple(sorted(attributes(point.attributes).items())),
                )
                start, value = last.get(key, (point.start_time_unix_nano, 0))
                if start == point.start_time_unix_nano:
                    assert point.as_int >= value
                last[key] = (point.start_time_unix_nano, point.as_int)
        else:
            for point in metric.histogram.data_points:
                assert sum(point.bucket_counts) == point.count
                assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert names == {
        "process.cpu.utilization",
        "process.memory.usage",
        "system.cpu.utilization",
        "http.server.request.count",
        "http.server.request.duration",
    }


# -- injected faults ---------------------------------------------------------------------------


def _error_ratio(messages: list[tuple[str, Message]], service: str, since: int, until: int) -> float:
    calls = [s for r, s in spans(messages) if r["service.name"] == service and s.kind == SERVER]
    window = [s for s in calls if since <= s.start_time_unix_nano < until]
    return sum(s.status.code == STATUS_ERROR for s in window) / len(window)


def test_bad_deploy_is_visible(
    bad_deploy: tuple[Path, GroundTruth], messages: list[tuple[str, Message]]
) -> None:
    _, truth = bad_deploy
    (fault,) = truth.faults
    before = _error_ratio(messages, "checkout", truth.start_unix_nano, fault.start_unix_nano)
    after = _error_ratio(messages, "checkout", fault.start_unix_nano, fault.end_unix_nano)
    assert after > 0.15 and after > 4 * before
    versions = {
        (r["service.version"], s.start_time_unix_nano >= fault.start_unix_nano)
        for r, s in spans(messages)
        if r["service.name"] == "checkout"
    }
    assert versions == {("2.3.0", False), ("2.4.0", True)}
    new_template = BadDeploy().template.text.split("{")[0]
    npe = [r for _, r in log_records(messages) if r.body.string_value.startswith(new_template)]
    assert npe and all(r.time_unix_nano >= fault.start_unix_nano for r in npe)


def test_memory_leak_restarts_and_dependency_latency_slows_callers() -> None:
    leak = list(iter_requests("memory_leak", seed=5, rate=0.5, **TINY))
    starts = {
        point.start_time_unix_nano
        for resource, metric in metrics(leak)
        if resource.get("service.name") == "cart" and metric.name == "http.server.request.count"
        for point in metric.sum.data_points
    }
    assert len(starts) >= 3  # the original process plus at least two OOM restarts
    memory = [
        m.gauge.data_points[0].as_int
        for r, m in metrics(leak)
        if r.get("service.name") == "cart" and m.name == "process.memory.usage"
    ]
    assert max(memory) > 0.9 * SHOP.service("cart").memory_limit > 2 * memory[0]

    slow = list(iter_requests("dependency_latency", seed=5, rate=1.0, **TINY))
    (fault,) = ground_truth("dependency_latency", seed=5, rate=1.0, **TINY).faults
    for service in ("catalog", "frontend"):
        durations = defaultdict(list)
        for resource, span in spans(slow):
            if resource["service.name"] == service and span.kind == SERVER:
                during = span.start_time_unix_nano >= fault.start_unix_nano
                durations[during].append(span.end_time_unix_nano - span.start_time_unix_nano)
        assert (
            sorted(durations[True])[len(durations[True]) // 2]
            > 5 * sorted(durations[False])[len(durations[False]) // 2]
        )


# -- ground truth and scenarios ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_generates_with_consistent_truth(name: str) -> None:
    scenario = SCENARIOS[name]
    run: dict[str, Any] = {"start": START, "step": STEP, "duration": STEP * scenario.min_steps, "rate": 0.3}
    truth = ground_truth(name, seed=1, **run)
    signals = Counter(signal for signal, _ in iter_requests(name, seed=1, **run))
    assert signals["metrics"] == scenario.min_steps and signals["traces"] > 0 and signals["logs"] > 0
    assert len(truth.faults) == len(scenario.faults)
    known = set(truth.services) | set(truth.peers)
    first = min((f.start for f in truth.faults), default=truth.end)
    assert (first - truth.start) >= MIN_FAULT_STEPS * STEP  # a normal period to learn from
    for fault in truth.faults:
        assert truth.start < fault.start < fault.end <= truth.end
        assert (fault.end - fault.start) >= MIN_FAULT_STEPS * STEP
        assert (fault.start - truth.start) % STEP == timedelta(0)
        assert fault.ongoing == (fault.end == truth.end)
        assert fault.harmless == (fault.root_cause_service is None) == (fault.kind == "flapping")
        if fault.root_cause_service:
            assert fault.affected_services[0] == fault.root_cause_service
        assert set(fault.affected_services) <= known
        assert {s.service for s in fault.affected_signals} <= set(fault.affected_services) | known
        assert fault.affected_signals
    assert GroundTruth.from_dict(json.loads(truth.dumps())) == truth


def test_ground_truth_file_matches_the_returned_truth(bad_deploy: tuple[Path, GroundTruth]) -> None:
    out, truth = bad_deploy
    assert GroundTruth.load(out / "ground_truth.json") == truth
    data = json.loads((out / "ground_truth.json").read_text())
    fault = data["faults"][0]
    assert fault["kind"] == "bad_deploy" and fault["root_cause_service"] == "checkout"
    assert fault["start"].endswith("Z") and isinstance(fault["start_unix_nano"], int)
    assert {"service": "checkout", "signal": "error_ratio"} in fault["affected_signals"]
    assert data["volume"]["spans"] > 1000


def test_mixed_has_separate_incidents_and_harmless_noise() -> None:
    truth = ground_truth("mixed", start=START, duration=timedelta(hours=3))
    assert sorted(f.kind for f in truth.incidents) == [
        "bad_deploy",
        "cpu_saturation",
        "latency",
        "memory_leak",
    ]
    assert [f.kind for f in truth.faults if f.harmless] == ["flapping"]
    assert len({f.root_cause_service for f in truth.incidents}) == 4
    assert any(
        a.end > b.start and b.end > a.start for a in truth.incidents for b in truth.incidents if a != b
    )


# -- arguments, CLI, templates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"scenario": "nope"}, "unknown_scenario"),
        ({"duration": STEP * 20}, "too_short"),
        ({"duration": STEP * 48 + timedelta(seconds=1)}, "invalid_duration"),
        ({"start": datetime(2025, 1, 1)}, "naive_start"),
        ({"rate": 0.0}, "invalid_rate"),
        ({"step": timedelta(milliseconds=10)}, "invalid_step"),
    ],
)
def test_bad_arguments_raise_input_error(overrides: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"scenario": "bad_deploy", **TINY, **overrides}
    with pytest.raises(InputError) as caught:
        ground_truth(arguments.pop("scenario"), **arguments)
    assert caught.value.reason == reason


def test_generate_rejects_bad_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        generate("bad_deploy", tmp_path, formats=("csv",), **TINY)


def test_default_start_ends_at_the_current_minute() -> None:
    truth = ground_truth("baseline", duration=timedelta(minutes=30))
    now = datetime.now(UTC)
    assert truth.end.second == 0 and truth.end.microsecond == 0
    assert timedelta(0) <= now - truth.end < timedelta(minutes=2)
    assert truth.end - truth.start == timedelta(minutes=30)


def test_cli_generates_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--scenario", "flapping", "--out", str(tmp_path), "--start", START.isoformat()]
    assert main([*argv, "--duration", "8m", "--step", "10s", "--rate", "0.3", "--format", "both"]) == 0
    assert "spans" in capsys.readouterr().out
    assert GroundTruth.load(tmp_path / "ground_truth.json").faults[0].harmless
    with open(tmp_path / "logs.pb", "rb") as stream:
        assert list(read_delimited(io.BytesIO(stream.read()), "logs"))
    assert main([*argv, "--duration", "2m", "--step", "10s"]) == InputError.exit_code
    assert capsys.readouterr().err.startswith("error: scenario 'flapping' needs at least")
    with pytest.raises(SystemExit):
        main(["generate", "--scenario", "flapping", "--out", str(tmp_path), "--duration", "soon"])


def test_every_template_renders() -> None:
    rng = random.Random(0)
    templates: list[Template] = []
    for service in SHOP.services:
        templates.append(service.error_template)
        for endpoint in service.endpoints:
            templates += [rule.template for rule in endpoint.logs]
            templates += [s for call in endpoint.calls if isinstance(call, DbCall) for s in call.statements]
    templates += [v for v in vars(fixtures.templates).values() if isinstance(v, LogTemplate)]
    templates += [v for v in vars(fixtures.faults).values() if isinstance(v, LogTemplate)]
    supplied = {
        "ms",
        "method",
        "path",
        "status",
        "threshold",
        "target",
        "reason",
        "db",
        "statement",
        "service",
    }
    supplied |= {"version", "port", "heap_mb", "limit_mb", "pct"}
    for template in templates:
        missing = set(template.fields) - supplied - set(VALUE_FACTORIES)
        assert not missing, (template.text, missing)
        assert "{" not in template.render(rng, dict.fromkeys(supplied, 1))


def test_public_surface() -> None:
    assert sorted(fixtures.__all__) == sorted(
        [
            "MIN_FAULT_STEPS",
            "SCENARIOS",
            "SIGNALS",
            "AffectedSignal",
            "FaultTruth",
            "GroundTruth",
            "Plan",
            "Scenario",
            "from_proto",
            "generate",
            "ground_truth",
            "iter_requests",
            "main",
            "plan",
            "to_proto",
        ]
    )
    for name in fixtures.__all__:
        assert hasattr(fixtures, name)


def test_step_effects_are_pure_functions_of_the_step() -> None:
    plan = fixtures.plan("mixed", start=START, duration=timedelta(hours=3))
    simulation = plan.simulation()
    index = plan.steps - 1
    first: StepEffects = simulation.effects(index)
    simulation.step(0)
    assert simulation.effects(index) == first
