"""The documentation cannot drift from the code: README settings table, CLI help, set-up commands."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from app.cli import cli
from warroom.config import markdown_table

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_configuration_table_is_generated_from_settings() -> None:
    assert markdown_table() in README, "regenerate with: warroom config --markdown"


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert "make demo" in README and "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_every_command_has_help() -> None:
    runner = CliRunner()
    groups = {
        "": [
            "config",
            "db",
            "ingest",
            "fixtures",
            "broker",
            "bench",
            "demo",
            "detect",
            "alerts",
            "correlate",
            "incidents",
            "serve",
            "audit",
            "summarize",
            "digest",
            "remediation",
            "users",
            "up",
        ],
        "detect": ["run", "watch", "score-csv"],
        "alerts": ["import", "list"],
        "correlate": ["run", "watch", "replay"],
        "incidents": ["list", "show", "explain", "ack", "resolve", "merge", "split"],
        "audit": ["verify"],
        "db": ["migrate", "status"],
        "ingest": ["kafka", "file", "status", "dead-letters"],
        "bench": ["ingest", "nab", "logs", "correlate", "summarize", "soak"],
        "remediation": ["catalog", "list", "show", "propose", "approve", "reject", "execute"],
        "users": ["add", "list", "token", "revoke"],
    }
    for group, commands in groups.items():
        for command in commands:
            args = [a for a in (group, command) if a] + ["--help"]
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, (args, result.output)
            assert "Usage:" in result.output


def test_bad_setting_is_one_clear_line_and_nonzero_exit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["config"], env={"WARROOM_HOME": str(tmp_path), "WARROOM_TTL_DAYS": "soon"}
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: WARROOM_TTL_DAYS: invalid value 'soon': invalid literal for int() with base 10: 'soon'"
    ]
