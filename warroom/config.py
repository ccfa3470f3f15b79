"""Settings, declared once: type, default and doc for each ``WARROOM_*`` variable.

Resolution order, highest first: environment variable ``WARROOM_<NAME>``, then the TOML file
(``WARROOM_CONFIG``, or ``$WARROOM_HOME/warroom.toml`` when it exists), then the default. A value
that does not parse or is out of range raises :class:`~warroom.errors.ConfigError` naming the
setting, at start-up rather than mid-run. A config file that was asked for and is missing is an error.

The README's configuration table is generated from :data:`SETTINGS` and checked by a test, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from warroom.errors import ConfigError

ENCODINGS = ("otlp_proto", "otlp_json")


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    if isinstance(raw, int):
        return raw
    return int(str(raw).strip())


def _parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    value = float(str(raw).strip())
    if value != value:  # NaN
        raise ValueError("NaN is not a valid value")
    return value


def _parse_str(raw: Any) -> str:
    if not isinstance(raw, str | int | float):
        raise ValueError("expected a string")
    return str(raw).strip()


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting: attribute name, parser, default (may refer to other settings), doc."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    check: Callable[[Any], str | None] = lambda _v: None
    secret: bool = False

    @property
    def env(self) -> str:
        return "WARROOM_" + self.name.upper()


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _encoding(value: Any) -> str | None:
    return None if value in ENCODINGS else f"must be one of {', '.join(ENCODINGS)}"


def _identifier(value: Any) -> str | None:
    ok = bool(value) and value.replace("_", "a").isalnum() and not value[0].isdigit()
    return None if ok else "must be a plain identifier (letters, digits, underscore)"


def _optional_identifier(value: Any) -> str | None:
    return None if value == "" else _identifier(value)


def _dsn(value: Any) -> str | None:
    scheme = urlparse(value).scheme
    if scheme in ("chdb", "http", "https", "clickhouse", "clickhouses"):
        return None
    return "must start with chdb://, http://, https://, clickhouse:// or clickhouses://"


def _state_dsn(value: Any) -> str | None:
    scheme = urlparse(value).scheme
    if scheme in ("sqlite", "postgresql", "postgresql+psycopg"):
        return None
    return "must start with sqlite:/// or postgresql://"


def _bootstrap(value: Any) -> str | None:
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            return "must be host:port[,host:port…]"
    return None


def parse_shard(text: Any) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with ``N >= 1`` and ``0 <= I < N``; :class:`ValueError` otherwise.

    Lives here (not in ``detect.sharding``) because the core validates settings at start-up and
    must not import a stage; :class:`detect.sharding.Shard` uses it too, so both agree.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text like 0/2 (shard index / shard count), got {text!r}")
    index_text, slash, count_text = text.strip().partition("/")
    try:
        if not slash:
            raise ValueError
        index, count = int(index_text.strip()), int(count_text.strip())
    except ValueError:
        raise ValueError(f"expected I/N like 0/2 (shard index / shard count), got {text!r}") from None
    if count < 1:
        raise ValueError(f"shard count must be 1 or more, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in 0…{count - 1} for {count} shard(s), got {index}")
    return index, count


def _parse_shard_setting(raw: Any) -> str:
    """The setting keeps the normalised text (``" 1 / 2"`` → ``"1/2"``), shown as is by ``config``."""
    index, count = parse_shard(_parse_str(raw))
    return f"{index}/{count}"


def _log_level(value: Any) -> str | None:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return None if value.upper() in levels else f"must be one of {', '.join(levels)}"


SETTINGS: tuple[Setting, ...] = (
    Setting("home", _parse_str, "./.warroom", "Directory for the embedded store, state and caches."),
    Setting(
        "clickhouse_dsn",
        _parse_str,
        "chdb:///{home}/clickhouse",
        "ClickHouse DSN: `chdb:///path` runs the embedded engine in-process; `http(s)://host:8123` "
        "is a server.",
        _dsn,
        secret=True,
    ),
    Setting("clickhouse_database", _parse_str, "otel", "Database holding the telemetry tables.", _identifier),
    Setting(
        "clickhouse_cluster",
        _parse_str,
        "",
        "Cluster name for `ON CLUSTER` DDL and Replicated/Distributed tables (empty: single node).",
        _optional_identifier,
    ),
    Setting(
        "ttl_days",
        _parse_int,
        0,
        "Retention of telemetry rows in days (0 keeps them forever).",
        _non_negative,
    ),
    Setting(
        "dedup_window",
        _parse_int,
        10000,
        "Inserts remembered per table for retry deduplication (`non_replicated_deduplication_window`).",
        _positive,
    ),
    Setting("kafka_bootstrap", _parse_str, "127.0.0.1:9092", "Kafka bootstrap servers.", _bootstrap),
    Setting("kafka_group_id", _parse_str, "warroom-ingest", "Consumer group of the ingest workers."),
    Setting(
        "kafka_max_poll_interval_ms",
        _parse_int,
        10000,
        "Consumer poll interval / session timeout; also how fast a dead member's partitions move.",
        _positive,
    ),
    Setting("kafka_max_poll_records", _parse_int, 500, "Records fetched per poll.", _positive),
    Setting("topic_traces", _parse_str, "otlp_spans", "Kafka topic with OTLP traces."),
    Setting("topic_logs", _parse_str, "otlp_logs", "Kafka topic with OTLP logs."),
    Setting("topic_metrics", _parse_str, "otlp_metrics", "Kafka topic with OTLP metrics."),
    Setting("encoding_traces", _parse_str, "otlp_proto", "Encoding of the traces topic.", _encoding),
    Setting("encoding_logs", _parse_str, "otlp_proto", "Encoding of the logs topic.", _encoding),
    Setting("encoding_metrics", _parse_str, "otlp_proto", "Encoding of the metrics topic.", _encoding),
    Setting(
        "batch_max_rows",
        _parse_int,
        25000,
        "Flush a partition's batch at this many items (spans, log records, points); bounds memory.",
        _positive,
    ),
    Setting(
        "batch_max_bytes",
        _parse_int,
        16 << 20,
        "Flush when a partition's buffered records reach this size.",
        _positive,
    ),
    Setting("batch_max_seconds", _parse_float, 2.0, "Flush at least this often (seconds).", _positive),
    Setting(
        "max_future_skew_s",
        _parse_int,
        86400,
        "Telemetry stamped further than this in the future is dead-lettered (`timestamp_in_future`).",
        _positive,
    ),
    Setting(
        "max_attr_value_chars",
        _parse_int,
        16384,
        "Attribute values longer than this many characters are cut, ending with `…[truncated N bytes]`.",
        _positive,
    ),
    Setting(
        "max_body_chars", _parse_int, 1 << 20, "Longer log bodies are truncated the same way.", _positive
    ),
    Setting(
        "retry_max_seconds",
        _parse_float,
        30.0,
        "Longest back-off between retries of a failed ClickHouse insert (retries never give up).",
        _positive,
    ),
    Setting(
        "state_dsn",
        _parse_str,
        "sqlite:///{home}/state.db",
        "SQLAlchemy URL of the state database (incidents, audit trail, notification outbox): the "
        "embedded default is a SQLite file; use `postgresql://user@host/db` in production.",
        _state_dsn,
        secret=True,
    ),
    Setting(
        "incident_quiet_s",
        _parse_int,
        600,
        "An incident resolves when all its alerts have been resolved for this many seconds.",
        _non_negative,
    ),
    Setting(
        "incident_reopen_s",
        _parse_int,
        600,
        "A member alert firing again within this many seconds of its previous end rejoins (reopens) "
        "its incident; later it is grouped afresh.",
        _non_negative,
    ),
    Setting(
        "flap_window_s",
        _parse_int,
        1800,
        "Window for counting an alert's re-fires; see `WARROOM_FLAP_THRESHOLD`.",
        _positive,
    ),
    Setting(
        "flap_threshold",
        _parse_int,
        3,
        "Fires of one alert within the flap window that mark it flapping: held open, no new page.",
        _positive,
    ),
    Setting(
        "detect_shard",
        _parse_shard_setting,
        "0/1",
        "This detect worker's shard `I/N` (0 ≤ I < N): it scores only the series whose service hashes "
        "(SHA-256, stable across processes and restarts) to I mod N, so N workers score every series "
        "exactly once; `0/1` scores everything. With N > 1 the state file is `state/detect-IofN.json`.",
    ),
    Setting("api_host", _parse_str, "127.0.0.1", "Address `warroom serve` listens on."),
    Setting("api_port", _parse_int, 8480, "Port `warroom serve` listens on.", _positive),
    Setting(
        "intake_max_bytes",
        _parse_int,
        1 << 20,
        "Largest alert intake request body; bigger ones get 413.",
        _positive,
    ),
    Setting(
        "status_port",
        _parse_int,
        0,
        "Port of the health/status endpoint of `warroom up` and `warroom ingest kafka`: `/healthz`, "
        "`/readyz`, `/status`, `/metrics` (0: none).",
        _non_negative,
    ),
    Setting(
        "console_secret",
        _parse_str,
        "",
        "Key signing the console's session cookies (≥ 32 characters); give every API replica the "
        "same one. Empty: read from, or made in, `$WARROOM_HOME/console-secret`.",
        secret=True,
    ),
    Setting(
        "status_host",
        _parse_str,
        "127.0.0.1",
        "Address the status endpoint listens on (`0.0.0.0` for Kubernetes probes from the node).",
    ),
    Setting(
        "llm_base_url",
        _parse_str,
        "",
        "Base URL of an OpenAI-compatible API (`…/v1`) that writes incident narratives; empty: no LLM, "
        "the deterministic digest only.",
    ),
    Setting("llm_model", _parse_str, "", "Model name sent to the LLM endpoint."),
    Setting(
        "llm_api_key",
        _parse_str,
        "",
        "Bearer token for the LLM endpoint (empty: none sent).",
        secret=True,
    ),
    Setting("llm_timeout_s", _parse_float, 60.0, "Timeout of one LLM request, in seconds.", _positive),
    Setting(
        "llm_retries",
        _parse_int,
        2,
        "Retries of an LLM request that timed out or got 429/5xx (back-off honours Retry-After).",
        _non_negative,
    ),
    Setting(
        "proposal_ttl_s",
        _parse_int,
        3600,
        "A remediation proposal not approved within this many seconds expires.",
        _positive,
    ),
    Setting(
        "actor",
        _parse_str,
        "",
        "Who the CLI acts as (approvals, acknowledgements, audit log); empty: the login name.",
    ),
    Setting("log_level", _parse_str, "INFO", "Log level of the structured (JSON) logs.", _log_level),
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`load_settings`."""

    home: Path
    clickhouse_dsn: str
    clickhouse_database: str
    clickhouse_cluster: str
    ttl_days: int
    dedup_window: int
    kafka_bootstrap: str
    kafka_group_id: str
    kafka_max_poll_interval_ms: int
    kafka_max_poll_records: int
    topic_traces: str
    topic_logs: str
    topic_metrics: str
    encoding_traces: str
    encoding_logs: str
    encoding_metrics: str
    batch_max_rows: int
    batch_max_bytes: int
    batch_max_seconds: float
    max_future_skew_s: int
    max_attr_value_chars: int
    max_body_chars: int
    retry_max_seconds: float
    state_dsn: str
    incident_quiet_s: int
    incident_reopen_s: int
    flap_window_s: int
    flap_threshold: int
    detect_shard: str
    api_host: str
    api_port: int
    intake_max_bytes: int
    status_port: int
    console_secret: str
    status_host: str
    llm_base_url: str
    llm_model: str
    llm_api_key: str
    llm_timeout_s: float
    llm_retries: int
    proposal_ttl_s: int
    actor: str
    log_level: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    tables: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The config file's tables (``[receivers.x]``, ``[[routes]]`` …): structured config of the stages."""

    def topics(self) -> dict[str, tuple[str, str]]:
        """Signal → (topic, encoding)."""
        return {
            "traces": (self.topic_traces, self.encoding_traces),
            "logs": (self.topic_logs, self.encoding_logs),
            "metrics": (self.topic_metrics, self.encoding_metrics),
        }

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    def describe(self) -> list[tuple[str, str, str]]:
        """(env name, value, source) per setting, secrets masked."""
        out = []
        for s in SETTINGS:
            value = str(getattr(self, s.name))
            if s.secret:
                value = _mask_dsn(value)
            out.append((s.env, value, self.sources.get(s.name, "default")))
        return out


def markdown_table() -> str:
    """The README's configuration table, generated from :data:`SETTINGS` (a test keeps them equal)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default if s.default != "" else "(empty)"
        lines.append(f"| `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(lines)


def _mask_dsn(value: str) -> str:
    """A URL's password, or the whole of a secret that is not a URL, becomes ``***``."""
    parsed = urlparse(value)
    if parsed.password:
        return value.replace(":" + parsed.password + "@", ":***@")
    if value and "://" not in value:
        return "***"
    return value


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve every setting from overrides → env → TOML → default, validating each.

    ``overrides`` are used by tests and by CLI flags; they go through the same parsing and checks.
    """
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    config_path = env.get("WARROOM_CONFIG")
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError("WARROOM_CONFIG", f"config file {config_path!r} does not exist")
        file_values, tables = _read_toml(path)
    else:
        home_guess = Path(overrides.get("home") or env.get("WARROOM_HOME") or "./.warroom")
        candidate = home_guess / "warroom.toml"
        if candidate.is_file():
            file_values, tables = _read_toml(candidate)

    known = {s.name for s in SETTINGS}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError("WARROOM_CONFIG", f"unknown setting(s) in config file: {', '.join(unknown)}")
    for key in env:
        if key.startswith("WARROOM_") and key[8:].lower() not in known and key not in _OTHER_ENV:
            raise ConfigError(key, "unknown setting (see `warroom config` for the list)")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in overrides and overrides[s.name] is not None:
            raw, source = overrides[s.name], "argument"
        elif s.env in env:
            raw, source = env[s.env], "env"
        elif s.name in file_values:
            raw, source = file_values[s.name], "file"
        else:
            raw, source = s.default, "default"
            if isinstance(raw, str):
                raw = raw.format(home=str(values.get("home", "")).rstrip("/"))
        try:
            value = s.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(s.env, f"invalid value {raw!r}: {exc}") from exc
        problem = s.check(value)
        if problem:
            raise ConfigError(s.env, f"invalid value {raw!r}: {problem}")
        values[s.name] = value
        sources[s.name] = source
    values["home"] = Path(values["home"])
    values["log_level"] = values["log_level"].upper()
    if values["clickhouse_dsn"].startswith("chdb://") and sources["clickhouse_dsn"] == "default":
        values["clickhouse_dsn"] = "chdb://" + str(values["home"].resolve() / "clickhouse")
    if values["state_dsn"].startswith("sqlite:///") and sources["state_dsn"] == "default":
        values["state_dsn"] = "sqlite:///" + str(values["home"].resolve() / "state.db")
    return Settings(**values, sources=sources, tables=tables)


#: Variables with the WARROOM_ prefix that are not settings (they steer the config loading or tests).
_OTHER_ENV = frozenset(
    {
        "WARROOM_CONFIG",
        "WARROOM_TEST_CLICKHOUSE_URL",
        "WARROOM_TEST_PG_DSN",
        "WARROOM_FAILPOINTS",
        "WARROOM_NAB_DIR",
        "WARROOM_LOGHUB_DIR",
    }
)


#: Tables a config file may hold beside the settings; each belongs to the stage named in its doc.
CONFIG_TABLES = {
    "receivers": "notification receivers by name (correlate)",
    "teams": "team → receivers (correlate)",
    "routes": "ordered routing rules: label matchers → team (correlate)",
    "actions": "remediation catalog: action name → parameters, risk, pre-checks, executor (summarize)",
    "roles": "role → the people who hold it: `approver`, `operator` (summarize)",
    "redact": "extra redaction patterns: kind → regular expression (summarize)",
}


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, tables) of a config file; settings flat or under ``[warroom]``."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("WARROOM_CONFIG", f"cannot read {path}: {exc}") from exc
    # Accept both a flat file and a [warroom] table.
    section = data.get("warroom", data)
    if not isinstance(section, dict):
        raise ConfigError("WARROOM_CONFIG", f"{path}: expected a table of settings")
    tables = {k: v for k, v in data.items() if k != "warroom" and _is_table(v)}
    unknown = sorted(set(tables) - set(CONFIG_TABLES))
    if unknown:
        raise ConfigError(
            "WARROOM_CONFIG",
            f"{path}: unknown table(s) {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_TABLES))})",
        )
    return {k: v for k, v in section.items() if not _is_table(v)}, tables


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )
