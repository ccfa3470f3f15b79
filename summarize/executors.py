"""Run an approved catalog action: a dry run, a signed webhook, or a command template.

Only :mod:`summarize.approval` calls :func:`execute`, after the approvals are in; nothing here
decides *whether* to run. Every executor returns an :class:`ExecutionResult` rather than raising, so
a failed run is recorded as ``failed`` with its reason instead of leaving a proposal half-done.

Webhook contract (for whoever writes the receiving end)::

    POST <url>
    Content-Type: application/json
    X-Warroom-Timestamp: <Unix seconds when sent>
    X-Warroom-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

    {"action": "...", "approvals": ["alice", "bob"], "at": "2026-12-01T12:00:00+00:00",
     "incident": "inc-42", "params": {...}, "proposal": "P-1a2b3c4d5e6f"}

The signature covers the timestamp, so a receiver that rejects old timestamps (see
:func:`verify_signature`, five minutes by default) is safe from replays; ``proposal`` is unique, so
it can also deduplicate. Any 2xx answer counts as success, anything else (or no answer) as failure.

Commands run without a shell: the argv template's tokens, each with validated parameters
substituted, are passed to the program as they are, so a value is always exactly one argument. The
environment is ``PATH`` and ``LANG`` plus the variables the action lists in ``pass_env``, never the
parent's whole environment (which holds warroom's own secrets). A command in its own session is
killed with all its children when it times out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from summarize.catalog import Action
from warroom.errors import ConfigError, InputError

__all__ = [
    "OUTPUT_LIMIT",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ExecutionContext",
    "ExecutionResult",
    "execute",
    "preflight",
    "sign",
    "verify_signature",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Warroom-Signature"
TIMESTAMP_HEADER = "X-Warroom-Timestamp"
OUTPUT_LIMIT = 8000
"""Characters of a command's output or a webhook's answer kept in the result (the rest is cut)."""


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who runs what, on whose approval: the facts a webhook receiver or audit entry needs."""

    proposal_id: str
    incident_id: str
    actor: str
    approvals: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """``ok`` whether it worked; ``output`` what it printed or answered (cut to
    :data:`OUTPUT_LIMIT`); ``detail`` one line on how it ended (exit code, HTTP status, error)."""

    ok: bool
    output: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "output": self.output, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExecutionResult:
        return cls(bool(data["ok"]), str(data.get("output", "")), str(data.get("detail", "")))


def _truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"…[truncated {len(text) - limit} chars]"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Warroom-Signature`` value: HMAC-SHA256 over ``timestamp + "." + body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | None,
    body: bytes,
    header: str | None,
    *,
    max_age_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs the raw ``body`` and ``timestamp`` under ``secret`` (constant
    time) and the timestamp is within ``max_age_s`` of ``now``: what a webhook receiver checks."""
    if not header or not timestamp or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


def webhook_body(action: Action, params: Mapping[str, Any], context: ExecutionContext) -> bytes:
    """The exact bytes POSTed (compact JSON, sorted keys) — the bytes the signature covers."""
    payload = {
        "proposal": context.proposal_id,
        "incident": context.incident_id,
        "action": action.name,
        "params": dict(params),
        "approvals": list(context.approvals),
        "at": context.at.isoformat(),
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def preflight(action: Action, env: Mapping[str, str] | None = None) -> None:
    """ConfigError when ``action`` cannot run as configured: a command not explicitly enabled, a
    webhook whose secret variable is unset. Checked before a proposal is marked executing, so a
    configuration slip does not use up an approved proposal."""
    env = os.environ if env is None else env
    ex = action.executor
    if ex.kind == "command" and not ex.enabled:
        raise ConfigError(
            f"actions.{action.name}.executor.enabled",
            "the command executor is disabled; set enabled = true in the config file to let it run",
        )
    if ex.kind == "webhook" and not env.get(ex.secret_env):
        raise ConfigError(
            f"actions.{action.name}.executor.secret_env",
            f"environment variable {ex.secret_env} (the webhook's HMAC secret) is not set",
        )


def execute(
    action: Action,
    params: Mapping[str, Any],
    context: ExecutionContext,
    env: Mapping[str, str] | None = None,
) -> ExecutionResult:
    """Run ``action`` with ``params`` (validated again here); never raises for a failed run."""
    env = os.environ if env is None else env
    try:
        valid = action.validate(params)
        preflight(action, env)
    except (InputError, ConfigError) as exc:
        return ExecutionResult(False, "", f"refused: {exc}")
    if action.executor.kind == "dry_run":
        return ExecutionResult(True, action.plan(valid), "dry run: nothing was executed")
    if action.executor.kind == "webhook":
        return _webhook(action, valid, context, env)
    return _command(action, valid, env)


def _webhook(
    action: Action, params: Mapping[str, Any], context: ExecutionContext, env: Mapping[str, str]
) -> ExecutionResult:
    ex = action.executor
    body = webhook_body(action, params, context)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "warroom-remediation",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(env[ex.secret_env], timestamp, body),
    }
    try:
        response = httpx.post(ex.url, content=body, headers=headers, timeout=ex.timeout_s)
    except httpx.HTTPError as exc:
        return ExecutionResult(False, "", f"POST {ex.url} failed: {type(exc).__name__}: {exc}")
    ok = 200 <= response.status_code < 300
    return ExecutionResult(ok, _truncate(response.text), f"POST {ex.url}: HTTP {response.status_code}")


def _child_env(pass_env: tuple[str, ...], env: Mapping[str, str]) -> dict[str, str]:
    out = {"PATH": env.get("PATH") or os.defpath, "LANG": "C.UTF-8"}
    out.update({name: env[name] for name in pass_env if name in env})
    return out


def _command(action: Action, params: Mapping[str, Any], env: Mapping[str, str]) -> ExecutionResult:
    ex = action.executor
    argv = action.argv(params)
    try:
        proc = subprocess.Popen(
            argv,
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(ex.pass_env, env),
            start_new_session=True,  # a timeout kills the whole process group, not just argv[0]
        )
    except OSError as exc:
        return ExecutionResult(False, "", f"cannot start {argv[0]}: {exc}")
    with proc:
        try:
            out, err = proc.communicate(timeout=ex.timeout_s)
            detail = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            detail = f"timed out after {ex.timeout_s:g}s and was killed"
    text = out.decode("utf-8", "replace")
    if err:
        text += (
            ("\n" if text and not text.endswith("\n") else "") + "[stderr]\n" + err.decode("utf-8", "replace")
        )
    ok = proc.returncode == 0 and not detail.startswith("timed out")
    return ExecutionResult(ok, _truncate(text), detail)
