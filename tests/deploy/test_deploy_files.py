"""deploy/ cannot drift from the code: every service, command, port, topic and setting it names exists.

Nothing here runs Docker or Kubernetes (no engine on the test machines); the files are parsed and
checked against the CLI (``app.cli``), the services of ``warroom up`` (``app.up.SERVICES``), the
settings (``warroom.config.SETTINGS``) and the README.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from app.cli import cli
from app.up import SERVICES
from warroom.config import _OTHER_ENV, SETTINGS, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
README = (REPO / "README.md").read_text()
SETTING_ENVS = {s.env for s in SETTINGS}
DEFAULTS = {s.env: s.default for s in SETTINGS}
YAML_FILES = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
WARROOM_SERVICES = ("warroom-migrate", "warroom-ingest", "warroom-detect", "warroom-core")
STATUS_PORT = 9108  # WARROOM_STATUS_PORT in compose and the ConfigMap (the setting's default is 0: none)


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _k8s(kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in K8S_FILES:
        for doc in _docs(path):
            if doc.get("kind") == kind:
                yield path, doc


def _interpolate(value: Any) -> str:
    """Compose's ``${VAR:-default}`` → default (an empty environment), ``$$`` → ``$``."""
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))
    return text.replace("$$", "$")


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of `environment:` so the checks can read it"
    return {str(k): _interpolate(v) for k, v in env.items()}


def _assert_cli_command(args: list[str], where: str) -> None:
    """``args`` (after ``warroom``) name a real command whose options parse; ``--only`` names services."""
    words = [a for a in args if not a.startswith("-")]
    path: list[str] = []
    group: Any = cli
    for word in words:  # walk the command path: groups, then the leaf command
        sub = group.commands.get(word) if hasattr(group, "commands") else None
        if sub is None:
            break
        path.append(word)
        group = sub
    assert path, f"{where}: `warroom {shlex.join(args)}` names no warroom command"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, f"{where}: `warroom {' '.join(path)} --help` fails: {result.output}"
    options = [a.split("=")[0] for a in args if a.startswith("--")]
    for option in options:
        assert f"{option} " in result.output or f"{option}," in result.output, (
            f"{where}: `warroom {' '.join(path)}` has no option {option}"
        )
    if path == ["up"]:
        assert "--only" in args, f"{where}: `warroom up` without --only runs every service in one process"
        only = args[args.index("--only") + 1]
        unknown = [n for n in only.split(",") if n not in SERVICES]
        assert not unknown, f"{where}: --only {only}: unknown service(s) {unknown} (known: {SERVICES})"


# -- every file -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    try:
        docs = _docs(path)
    except yaml.YAMLError as exc:
        pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {exc}")
    assert docs, f"{path.relative_to(REPO)} is empty"


def test_the_expected_files_exist() -> None:
    for name in ("Dockerfile", "docker-compose.yml", "otelcol.yaml", "README.md"):
        assert (DEPLOY / name).is_file(), f"deploy/{name} is missing"
    assert K8S_FILES, "deploy/k8s/ has no manifests"


def test_every_warroom_variable_named_in_deploy_is_a_setting_and_documented() -> None:
    named: dict[str, set[str]] = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for var in re.findall(r"\bWARROOM_[A-Z0-9_]+\b", path.read_text()):
            named.setdefault(var, set()).add(str(path.relative_to(REPO)))
    assert named, "deploy/ names no WARROOM_* variable at all"
    unknown = {v: sorted(f) for v, f in named.items() if v not in SETTING_ENVS | _OTHER_ENV}
    assert not unknown, f"not warroom settings (warroom.config.SETTINGS): {unknown}"
    undocumented = {v: sorted(f) for v, f in named.items() if f"`{v}`" not in README}
    assert not undocumented, f"named in deploy/ but not in README.md: {undocumented}"


# -- Dockerfile -------------------------------------------------------------------------------------


def test_dockerfile_installs_the_package_and_runs_warroom() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("FROM python:3.11") for line in lines), "Dockerfile: not FROM python:3.11…"
    assert re.search(r"^RUN pip install \.(\s|$)", text, re.M), "Dockerfile: no `RUN pip install .`"
    assert 'ENTRYPOINT ["warroom"]' in lines, 'Dockerfile: ENTRYPOINT is not ["warroom"]'
    assert 'CMD ["up"]' in lines, 'Dockerfile: CMD is not ["up"]'
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0"), "Dockerfile: does not switch to a non-root USER"
    assert "WARROOM_HOME=/var/lib/warroom" in text, "Dockerfile: WARROOM_HOME is not /var/lib/warroom"
    assert 'VOLUME ["/var/lib/warroom"]' in lines, "Dockerfile: /var/lib/warroom is not a VOLUME"
    # Every package the wheel includes is copied into the build (else `pip install .` lacks it).
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in lines, f"Dockerfile: package {package} is not copied"
    assert pyproject["project"]["scripts"]["warroom"] == "app.cli:main"
    port = re.search(r"^EXPOSE (\d+)", text, re.M)
    assert port and int(port.group(1)) == DEFAULTS["WARROOM_API_PORT"], "Dockerfile: EXPOSE ≠ API port"
    assert "/healthz" in text and "WARROOM_API_PORT" in text, "Dockerfile: HEALTHCHECK not on the API"


# -- Collector --------------------------------------------------------------------------------------


def test_collector_writes_the_topics_and_encodings_warroom_reads() -> None:
    config = _docs(DEPLOY / "otelcol.yaml")[0]
    kafka = config["exporters"]["kafka"]
    for signal in ("traces", "logs", "metrics"):
        topic, encoding = kafka[signal]["topic"], kafka[signal]["encoding"]
        want_topic = DEFAULTS[f"WARROOM_TOPIC_{signal.upper()}"]
        want_encoding = DEFAULTS[f"WARROOM_ENCODING_{signal.upper()}"]
        assert topic == want_topic, f"otelcol.yaml: {signal} topic {topic!r}, warroom reads {want_topic!r}"
        assert encoding == want_encoding, f"otelcol.yaml: {signal} encoding {encoding!r} ≠ {want_encoding!r}"
        pipeline = config["service"]["pipelines"][signal]
        assert pipeline["receivers"] == ["otlp"], f"otelcol.yaml: {signal} pipeline does not receive OTLP"
        assert "kafka" in pipeline["exporters"], f"otelcol.yaml: {signal} pipeline does not export to Kafka"
    compose_env = _env(_compose()["services"]["warroom-ingest"])
    assert kafka["brokers"] == [compose_env["WARROOM_KAFKA_BOOTSTRAP"]], (
        "Collector and warroom brokers differ"
    )
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317"), "otelcol.yaml: OTLP/gRPC is not on 4317"
    assert protocols["http"]["endpoint"].endswith(":4318"), "otelcol.yaml: OTLP/HTTP is not on 4318"


# -- docker compose ---------------------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    services = _compose()["services"]
    want = {"kafka", "kafka-init", "clickhouse", "postgres", "otel-collector", *WARROOM_SERVICES}
    missing = sorted(want - set(services))
    assert not missing, f"docker-compose.yml lacks service(s) {missing}"
    for name, service in services.items():
        assert "image" in service or "build" in service, f"compose service {name} has no image"


@pytest.mark.parametrize("name", WARROOM_SERVICES)
def test_compose_warroom_service_runs_a_real_command_with_valid_settings(name: str) -> None:
    service = _compose()["services"][name]
    command = service["command"]
    assert isinstance(command, list), f"compose {name}: write `command:` as a list"
    _assert_cli_command([str(c) for c in command], f"docker-compose.yml {name}")
    env = _env(service)
    unknown = sorted(k for k in env if k not in SETTING_ENVS)
    assert not unknown, f"compose {name}: not settings: {unknown}"
    settings = load_settings(env=env)  # raises ConfigError naming a setting whose value is invalid
    assert settings.clickhouse_dsn.startswith("http://"), f"compose {name}: not the ClickHouse server"
    assert settings.state_dsn.startswith("postgresql://"), f"compose {name}: state DSN is not PostgreSQL"
    assert service.get("build", {}).get("dockerfile") == "deploy/Dockerfile", f"compose {name}: image?"


def test_compose_ports_and_addresses_match_the_settings() -> None:
    services = _compose()["services"]
    env = _env(services["warroom-core"])
    settings = load_settings(env=env)
    assert settings.api_host == "0.0.0.0", "warroom-core: WARROOM_API_HOST must be 0.0.0.0 in a container"
    assert settings.api_port == DEFAULTS["WARROOM_API_PORT"] == 8480
    assert f"{settings.api_port}:{settings.api_port}" in services["warroom-core"]["ports"], (
        "warroom-core does not publish the API port"
    )
    assert f"{settings.api_port}/readyz" in str(services["warroom-core"]["healthcheck"]["test"])
    host, port = settings.clickhouse_dsn.rpartition("@")[2].split(":")
    assert host in services and port == "8123", f"WARROOM_CLICKHOUSE_DSN {host}:{port} is not a service"
    assert any(str(p).endswith("8123:8123") for p in services["clickhouse"]["ports"])
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.rpartition(":")
        assert host in services and port == "9092", f"WARROOM_KAFKA_BOOTSTRAP {server} is not the broker"
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    state_host = settings.state_dsn.rpartition("@")[2].split("/")[0]
    assert state_host == "postgres:5432" and "postgres" in services, f"WARROOM_STATE_DSN host {state_host}"
    assert {"4317:4317", "4318:4318"} <= set(services["otel-collector"]["ports"]), "OTLP ports unpublished"
    ingest = load_settings(env=_env(services["warroom-ingest"]))
    assert ingest.status_port == STATUS_PORT, "warroom-ingest: WARROOM_STATUS_PORT"
    assert f"{STATUS_PORT}/readyz" in str(services["warroom-ingest"]["healthcheck"]["test"])


def test_compose_creates_the_topics_warroom_reads_and_orders_start_up() -> None:
    services = _compose()["services"]
    init = " ".join(map(str, services["kafka-init"]["command"]))
    for signal in ("TRACES", "LOGS", "METRICS"):
        topic = DEFAULTS[f"WARROOM_TOPIC_{signal}"]
        assert re.search(rf"\b{topic}\b", init), f"kafka-init does not create topic {topic}"
    assert "--partitions 6" in init, "kafka-init: topics want 6 partitions (the ingest scale limit)"
    assert services["warroom-migrate"]["command"] == ["db", "migrate"]
    conditions = {
        "warroom-migrate": {"clickhouse": "service_healthy", "postgres": "service_healthy"},
        "warroom-ingest": {"kafka-init": "service_completed_successfully"},
        "warroom-detect": {"warroom-migrate": "service_completed_successfully"},
        "warroom-core": {"warroom-migrate": "service_completed_successfully"},
        "otel-collector": {"kafka-init": "service_completed_successfully"},
    }
    for name, wants in conditions.items():
        depends = services[name]["depends_on"]
        for other, condition in wants.items():
            assert depends.get(other, {}).get("condition") == condition, (
                f"compose {name}: depends_on {other} should be {condition}"
            )
    for name, service in services.items():
        for other in service.get("depends_on", {}):
            assert other in services, f"compose {name} depends on unknown service {other}"
    assert services["warroom-ingest"]["deploy"]["replicas"] >= 1
    assert any(str(v).startswith("./otelcol.yaml:") for v in services["otel-collector"]["volumes"]), (
        "otel-collector does not mount ./otelcol.yaml"
    )


# -- Kubernetes -------------------------------------------------------------------------------------


def test_k8s_manifests_are_well_formed_and_in_one_namespace() -> None:
    namespaces = [doc["metadata"]["name"] for _, doc in _k8s("Namespace")]
    assert namespaces == ["warroom"], f"k8s: want one Namespace warroom, got {namespaces}"
    for path in K8S_FILES:
        for doc in _docs(path):
            where = f"{path.name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{where}: lacks apiVersion/kind/metadata"
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == "warroom", f"{where}: not in namespace warroom"


def test_k8s_config_keys_are_settings_with_valid_values() -> None:
    (_, config_map), *more = list(_k8s("ConfigMap"))
    assert not more, "k8s: expected one ConfigMap"
    secrets = [doc for _, doc in _k8s("Secret")]
    assert len(secrets) == 1, "k8s: expected one Secret"
    secret = secrets[0]["stringData"]
    for where, data in (("ConfigMap", config_map["data"]), ("Secret", secret)):
        unknown = sorted(k for k in data if k not in SETTING_ENVS)
        assert not unknown, f"k8s {where}: not settings: {unknown}"
    env = {**{k: str(v) for k, v in config_map["data"].items()}, **{k: str(v) for k, v in secret.items()}}
    settings = load_settings(env=env)  # raises ConfigError naming a setting whose value is invalid
    for name in (
        "WARROOM_STATE_DSN",
        "WARROOM_LLM_API_KEY",
        "WARROOM_CLICKHOUSE_DSN",
        "WARROOM_CONSOLE_SECRET",
    ):
        assert name in secret, f"k8s: secret {name} belongs in the Secret, not the ConfigMap"
        assert name not in config_map["data"], f"k8s: secret {name} is in the ConfigMap"
    assert (
        settings.status_port == STATUS_PORT and settings.api_port == 8480 and settings.api_host == "0.0.0.0"
    )
    assert settings.status_host == "0.0.0.0", (
        "k8s: probes come from the node: the status endpoint must listen"
    )
    for signal, (topic, encoding) in settings.topics().items():
        want = (DEFAULTS[f"WARROOM_TOPIC_{signal.upper()}"], DEFAULTS[f"WARROOM_ENCODING_{signal.upper()}"])
        assert (topic, encoding) == want, f"k8s ConfigMap: {signal} reads {topic}/{encoding}, not {want}"


def _containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def test_k8s_deployments_run_valid_warroom_up_invocations() -> None:
    deployments = {doc["metadata"]["name"]: doc for _, doc in _k8s("Deployment")}
    want = {
        "warroom-ingest": "ingest",
        "warroom-detect": "detect",
        "warroom-core": "correlate,executor,api",
        "warroom-summarize": "summarize",
    }
    assert set(deployments) == set(want), f"k8s Deployments: {sorted(deployments)}, want {sorted(want)}"
    config_names = {doc["metadata"]["name"] for _, doc in _k8s("ConfigMap")}
    secret_names = {doc["metadata"]["name"] for _, doc in _k8s("Secret")}
    for name, doc in deployments.items():
        labels = doc["spec"]["selector"]["matchLabels"]
        assert labels.items() <= doc["spec"]["template"]["metadata"]["labels"].items(), f"{name}: selector"
        (container,) = _containers(doc)
        args = [str(a) for a in container["args"]]
        assert args[:2] == ["up", "--only"] and args[2] == want[name], f"k8s {name}: args {args}"
        _assert_cli_command(args, f"k8s Deployment {name}")
        refs = container["envFrom"]
        assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= config_names, name
        assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= secret_names, name
        assert "command" not in container, (
            f"k8s {name}: `command` would replace the image's warroom entrypoint"
        )
    assert deployments["warroom-ingest"]["spec"]["replicas"] == 3
    assert deployments["warroom-core"]["spec"]["replicas"] >= 2, "warroom-core: a leader and a standby"
    for name in ("warroom-summarize", "warroom-detect"):  # not elected: never two at once
        assert deployments[name]["spec"]["replicas"] == 1, name
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate", name


def test_k8s_probes_and_service_use_the_real_ports_and_paths() -> None:
    deployments = {doc["metadata"]["name"]: doc for _, doc in _k8s("Deployment")}
    expected = {
        "warroom-ingest": ("status", STATUS_PORT),
        "warroom-detect": ("status", STATUS_PORT),
        "warroom-summarize": ("status", STATUS_PORT),
        "warroom-core": ("http", DEFAULTS["WARROOM_API_PORT"]),
    }
    for name, (port_name, port) in expected.items():
        (container,) = _containers(deployments[name])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports.get(port_name) == port, f"k8s {name}: port {port_name} should be {port}, got {ports}"
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}, name
    services = [doc for _, doc in _k8s("Service")]
    assert len(services) == 1, "k8s: expected one Service (the API)"
    (api_port,) = services[0]["spec"]["ports"]
    assert api_port["port"] == DEFAULTS["WARROOM_API_PORT"], "k8s Service: not on the API port"
    core_labels = deployments["warroom-core"]["spec"]["template"]["metadata"]["labels"]
    assert services[0]["spec"]["selector"].items() <= core_labels.items(), "k8s Service selects no core pod"


def test_k8s_migrate_job_runs_db_migrate_on_the_cluster() -> None:
    jobs = [doc for _, doc in _k8s("Job")]
    assert len(jobs) == 1, "k8s: expected one Job (db migrate)"
    (container,) = _containers(jobs[0])
    args = [str(a) for a in container["args"]]
    assert args[:2] == ["db", "migrate"] and "--cluster" in args, f"k8s Job: args {args}"
    _assert_cli_command(args, "k8s Job warroom-migrate")
    (_, config_map), *_ = list(_k8s("ConfigMap"))
    cluster = args[args.index("--cluster") + 1]
    assert cluster == config_map["data"].get("WARROOM_CLICKHOUSE_CLUSTER"), (
        f"k8s Job --cluster {cluster} differs from the ConfigMap's WARROOM_CLICKHOUSE_CLUSTER"
    )


# -- README -----------------------------------------------------------------------------------------


def test_readmes_point_to_deploy_and_name_real_commands() -> None:
    assert "## Deploying" in README and "deploy/" in README, "README.md: no Deploying section"
    assert README.index("## Deploying") < README.index("## Configuration")
    text = (DEPLOY / "README.md").read_text()
    for command in re.findall(r"exec warroom-core warroom ([a-z][a-z -]+?) [a-z]+ --role", text):
        _assert_cli_command(command.split(), "deploy/README.md")
    assert "docker compose -f deploy/docker-compose.yml up -d" in text
    for name in WARROOM_SERVICES:
        assert f"`{name}`" in text, f"deploy/README.md does not describe {name}"
