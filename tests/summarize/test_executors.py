"""Executors on the real thing: a child process without a shell, and a local HTTP server that
verifies the webhook's HMAC signature."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from summarize import executors
from summarize.catalog import Action, Catalog
from summarize.executors import ExecutionContext, execute, preflight, sign, verify_signature
from warroom.errors import ConfigError

CONTEXT = ExecutionContext(
    "P-0123456789ab", "inc-42", "carol", ("alice", "bob"), datetime(2026, 12, 1, tzinfo=UTC)
)

ECHO_ARGV = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": sorted(os.environ)}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


def _action(executor: dict[str, Any], params: dict[str, Any] | None = None) -> Action:
    body = {"title": "Test", "risk": "low", "executor": executor, "params": params or {"service": {}}}
    return Catalog.load({"actions": {"probe": body}})["probe"]


@pytest.fixture
def echo(tmp_path: Path) -> str:
    script = tmp_path / "echo_argv.py"
    script.write_text(ECHO_ARGV)
    return str(script)


def test_dry_run_runs_nothing_and_returns_the_plan() -> None:
    action = Catalog.default()["scale_replicas"]
    params = {"service": "checkout", "namespace": "prod", "replicas": 3}
    result = execute(action, params, CONTEXT)
    assert result.ok and result.output == action.plan(params) and "dry run" in result.detail


def test_command_gets_each_value_as_one_argv_element_without_a_shell(echo: str) -> None:
    action = _action(
        {"kind": "command", "argv": [sys.executable, echo, "{service}", "--ns={namespace}"], "enabled": True},
        {"service": {}, "namespace": {"default": "default"}},
    )
    result = execute(action, {"service": "checkout-v2.1"}, CONTEXT)
    assert result.ok and result.detail == "exit 0"
    first, _, rest = result.output.partition("\n")
    assert json.loads(first)["argv"] == ["checkout-v2.1", "--ns=default"]
    assert rest == "[stderr]\nto stderr\n"
    # With a permissive pattern, shell syntax is still just text in one argument: no shell runs.
    loose = _action(
        {"kind": "command", "argv": [sys.executable, echo, "{text}"], "enabled": True},
        {"text": {"pattern": ".*"}},
    )
    hostile = "a b; echo pwned $(id) `id` | cat && true > /tmp/x *"
    result = execute(loose, {"text": hostile}, CONTEXT)
    assert result.ok and json.loads(result.output.splitlines()[0])["argv"] == [hostile]


def test_command_environment_is_minimal(echo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATION_TEST_SECRET", "hunter2")
    monkeypatch.setenv("REMEDIATION_TEST_KUBECONFIG", "/etc/kube")
    action = _action(
        {
            "kind": "command",
            "argv": [sys.executable, echo, "{service}"],
            "enabled": True,
            "pass_env": ["REMEDIATION_TEST_KUBECONFIG"],
        }
    )
    env = json.loads(execute(action, {"service": "a"}, CONTEXT).output.splitlines()[0])["env"]
    assert "REMEDIATION_TEST_SECRET" not in env and "REMEDIATION_TEST_KUBECONFIG" in env
    assert set(env) <= {"PATH", "LANG", "REMEDIATION_TEST_KUBECONFIG", "LC_CTYPE", "PWD"}


def test_disabled_command_refuses_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('{{service}}')", "{service}"]
    action = _action({"kind": "command", "argv": argv})  # enabled not given: off
    with pytest.raises(ConfigError) as err:
        preflight(action)
    assert err.value.setting == "actions.probe.executor.enabled"
    result = execute(action, {"service": "checkout"}, CONTEXT)
    assert not result.ok and result.detail.startswith("refused:") and "enabled = true" in result.detail
    assert not marker.exists()


def test_command_failures_are_results_not_exceptions(echo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXIT_WITH", "3")
    failing = _action(
        {
            "kind": "command",
            "argv": [sys.executable, echo, "{service}"],
            "enabled": True,
            "pass_env": ["EXIT_WITH"],
        }
    )
    result = execute(failing, {"service": "a"}, CONTEXT)
    assert not result.ok and result.detail == "exit 3" and "to stderr" in result.output

    missing = _action({"kind": "command", "argv": ["/nonexistent/tool", "{service}"], "enabled": True})
    result = execute(missing, {"service": "a"}, CONTEXT)
    assert not result.ok and result.detail.startswith("cannot start /nonexistent/tool")

    result = execute(
        _action({"kind": "command", "argv": ["true", "{service}"], "enabled": True}), {}, CONTEXT
    )
    assert not result.ok and "missing required parameter 'service'" in result.detail


def test_command_timeout_kills_the_process_group() -> None:
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    action = _action(
        {
            "kind": "command",
            "argv": [sys.executable, "-c", code, "{service}"],
            "enabled": True,
            "timeout_s": 0.5,
        }
    )
    started = time.monotonic()
    result = execute(action, {"service": "a"}, CONTEXT)
    assert not result.ok and "timed out after 0.5s" in result.detail
    assert time.monotonic() - started < 10  # the grandchild holding the pipe was killed too


def test_long_output_is_truncated(tmp_path: Path) -> None:
    action = _action(
        {
            "kind": "command",
            "argv": [sys.executable, "-c", "print('x' * 20000)", "{service}"],
            "enabled": True,
        }
    )
    result = execute(action, {"service": "a"}, CONTEXT)
    assert result.ok and len(result.output) < executors.OUTPUT_LIMIT + 40
    assert result.output.endswith("…[truncated 12001 chars]")


# --- webhook ------------------------------------------------------------------------------------


class Hook:
    """A local HTTP server that checks each request's signature like a real receiver would."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                valid = verify_signature(
                    hook.secret,
                    self.headers.get(executors.TIMESTAMP_HEADER),
                    body,
                    self.headers.get(executors.SIGNATURE_HEADER),
                )
                hook.requests.append(
                    {"path": self.path, "body": body, "valid": valid, "headers": dict(self.headers)}
                )
                status = hook.status if valid else 401
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"rolled back" if status == 200 else b"nope")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rollback"


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("REMEDIATION_TEST_HMAC", "s3cret")
    server = Hook("s3cret")
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    thread.join(5)


def _webhook(url: str) -> Action:
    return _action({"kind": "webhook", "url": url, "secret_env": "REMEDIATION_TEST_HMAC", "timeout_s": 5})


def test_webhook_posts_a_signed_body_and_2xx_is_success(hook: Hook) -> None:
    result = execute(_webhook(hook.url), {"service": "checkout"}, CONTEXT)
    assert result.ok and result.output == "rolled back" and "HTTP 200" in result.detail
    (request,) = hook.requests
    assert request["valid"] and request["path"] == "/hooks/rollback"
    assert request["headers"]["X-Warroom-Signature"].startswith("sha256=")
    assert json.loads(request["body"]) == {
        "proposal": "P-0123456789ab",
        "incident": "inc-42",
        "action": "probe",
        "params": {"service": "checkout"},
        "approvals": ["alice", "bob"],
        "at": "2026-12-01T00:00:00+00:00",
    }


def test_webhook_failures(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    hook.status = 500
    result = execute(_webhook(hook.url), {"service": "checkout"}, CONTEXT)
    assert not result.ok and "HTTP 500" in result.detail and result.output == "nope"

    hook.secret = "rotated"  # the receiver no longer accepts our signature
    result = execute(_webhook(hook.url), {"service": "checkout"}, CONTEXT)
    assert not result.ok and "HTTP 401" in result.detail

    result = execute(_webhook("http://127.0.0.1:9/closed"), {"service": "checkout"}, CONTEXT)
    assert not result.ok and "ConnectError" in result.detail

    monkeypatch.delenv("REMEDIATION_TEST_HMAC")
    count = len(hook.requests)
    with pytest.raises(ConfigError, match="REMEDIATION_TEST_HMAC"):
        preflight(_webhook(hook.url))
    result = execute(_webhook(hook.url), {"service": "checkout"}, CONTEXT)
    assert not result.ok and result.detail.startswith("refused:") and len(hook.requests) == count


def test_signature_covers_timestamp_and_body() -> None:
    body, now = b'{"a":1}', 1_800_000_000
    header = sign("k", str(now), body)
    assert verify_signature("k", str(now), body, header, now=now + 10)
    assert not verify_signature("other", str(now), body, header, now=now)
    assert not verify_signature("k", str(now), body + b" ", header, now=now)
    assert not verify_signature("k", str(now + 1), body, header, now=now)  # timestamp is signed
    assert not verify_signature("k", str(now), body, header, now=now + 301)  # a replay, too late
    assert not verify_signature("k", None, body, header, now=now)
    assert not verify_signature("k", str(now), body, None, now=now)
