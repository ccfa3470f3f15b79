"""Settings: env over TOML over defaults; every bad value is rejected at start, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from warroom.config import SETTINGS, load_settings
from warroom.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(env={"WARROOM_HOME": str(tmp_path)})
    assert settings.clickhouse_dsn == f"chdb://{tmp_path.resolve()}/clickhouse"
    assert settings.topics() == {
        "traces": ("otlp_spans", "otlp_proto"),
        "logs": ("otlp_logs", "otlp_proto"),
        "metrics": ("otlp_metrics", "otlp_proto"),
    }
    assert settings.sources["kafka_bootstrap"] == "default"


def test_env_overrides_toml_overrides_default(tmp_path: Path) -> None:
    config = tmp_path / "warroom.toml"
    config.write_text(
        '[warroom]\nkafka_bootstrap = "k1:9092"\ntopic_logs = "from-file"\nbatch_max_rows = 7\n'
    )
    env = {"WARROOM_CONFIG": str(config), "WARROOM_BATCH_MAX_ROWS": "9", "WARROOM_HOME": str(tmp_path)}
    settings = load_settings(env=env)
    assert settings.kafka_bootstrap == "k1:9092" and settings.sources["kafka_bootstrap"] == "file"
    assert settings.topic_logs == "from-file"
    assert settings.batch_max_rows == 9 and settings.sources["batch_max_rows"] == "env"


def test_home_toml_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "warroom.toml").write_text('encoding_traces = "otlp_json"\n')
    assert load_settings(env={"WARROOM_HOME": str(tmp_path)}).encoding_traces == "otlp_json"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WARROOM_BATCH_MAX_ROWS", "many", "WARROOM_BATCH_MAX_ROWS: invalid value 'many'"),
        ("WARROOM_BATCH_MAX_ROWS", "0", "must be greater than 0"),
        ("WARROOM_BATCH_MAX_SECONDS", "nan", "NaN"),
        ("WARROOM_ENCODING_LOGS", "avro", "must be one of otlp_proto, otlp_json"),
        ("WARROOM_CLICKHOUSE_DSN", "mysql://x", "WARROOM_CLICKHOUSE_DSN"),
        ("WARROOM_CLICKHOUSE_DATABASE", "otel; DROP TABLE x", "plain identifier"),
        ("WARROOM_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("WARROOM_TTL_DAYS", "-1", "must be 0 or more"),
        ("WARROOM_LOG_LEVEL", "LOUD", "must be one of"),
        ("WARROOM_TYPO_SETTING", "1", "WARROOM_TYPO_SETTING: unknown setting"),
    ],
)
def test_invalid_values_name_the_setting(tmp_path: Path, variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WARROOM_HOME": str(tmp_path), variable: value})
    assert message in str(info.value)


def test_missing_or_broken_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"WARROOM_CONFIG": str(tmp_path / "nope.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("kafka_bootstrap = [unterminated")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(env={"WARROOM_CONFIG": str(bad)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("kafka_bootsrap = 'x:1'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(env={"WARROOM_CONFIG": str(unknown)})


def test_secrets_are_masked(tmp_path: Path) -> None:
    settings = load_settings(
        env={"WARROOM_HOME": str(tmp_path), "WARROOM_CLICKHOUSE_DSN": "https://user:s3cret@ch:8443/"}
    )
    shown = dict((env, value) for env, value, _ in settings.describe())
    assert "s3cret" not in shown["WARROOM_CLICKHOUSE_DSN"] and "***" in shown["WARROOM_CLICKHOUSE_DSN"]


def test_every_setting_is_documented() -> None:
    for setting in SETTINGS:
        assert setting.doc.strip().endswith((".", ")")), setting.name
