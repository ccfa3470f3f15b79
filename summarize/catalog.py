"""The remediation catalog: the only actions warroom may propose or run, with typed parameters.

Why a catalog: a summary (rule or LLM) may only *propose* a fix by naming a catalog action and
giving it parameters; free text never becomes a command. Each parameter is typed and checked
before a proposal is stored and again before it runs, so an approver signs off on an exact,
reproducible plan (:meth:`Action.plan`), and a crafted incident title or a hallucinating model
cannot smuggle ``; rm -rf /`` into an argv.

The built-ins (``default_actions.toml``) are all dry runs. The config file adds actions or
overrides built-ins with ``[actions.NAME]`` tables; a config table is merged over the built-in one
key by key, and a given ``params`` or ``executor`` replaces the built-in one whole::

    [actions.rollback_deployment.executor]
    kind = "command"                # dry_run | webhook | command
    argv = ["kubectl", "rollout", "undo", "deployment/{service}", "-n", "{namespace}"]
    enabled = true                  # a command runs only when this is explicitly true
    timeout_s = 120
    pass_env = ["KUBECONFIG", "HOME"]   # the command's environment is otherwise PATH and LANG only

    [actions.purge_cdn]             # a new action
    title = "Purge a CDN path"
    risk = "low"                    # low | medium | high (high needs two approvers)
    prechecks = ["The stale content is really cached at the edge."]
    executor = { kind = "webhook", url = "https://ops.example.com/hooks/purge", secret_env = "PURGE_HMAC" }
    [actions.purge_cdn.params.path]
    type = "string"                 # string | int | float | bool | enum
    pattern = "/[a-z0-9/_-]{1,200}" # full match; strings default to SAFE_STRING
    description = "Path to purge."

Parameter keys: ``type``, ``required`` (default true unless a ``default`` is given), ``default``,
``pattern`` (strings), ``min``/``max`` (int, float), ``choices`` (enum; also string and int),
``description``. Unknown keys are errors, and every :class:`~warroom.errors.ConfigError` names the
exact key, e.g. ``actions.scale_replicas.params.replicas.max``.

String safety, always on whatever the pattern: no control characters (newline, NUL …) and no
leading ``-`` (a value must never become an option of the command it is passed to). Without a
``pattern`` a string must match :data:`SAFE_STRING`: ASCII letters, digits and ``._:/@-``, up to 253
characters — no spaces, quotes, ``$``, backticks, ``;``, ``|``, ``&``, globs or non-ASCII look-alikes.
Commands never go through a shell either (:mod:`summarize.executors`); the two defences are
independent on purpose.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from warroom.config import Settings
from warroom.config_table import ConfigTable
from warroom.errors import ConfigError, InputError

__all__ = [
    "EXECUTOR_KINDS",
    "PARAM_TYPES",
    "RISKS",
    "SAFE_STRING",
    "Action",
    "Catalog",
    "ExecutorSpec",
    "ParamSpec",
    "Scalar",
    "approvals_needed",
    "template_fields",
    "value_text",
]

Scalar = str | int | float | bool

SAFE_STRING = r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,252}"
"""The pattern a string parameter must fully match when its spec gives none."""

RISKS = ("low", "medium", "high")
PARAM_TYPES = ("string", "int", "float", "bool", "enum")
EXECUTOR_KINDS = ("dry_run", "webhook", "command")

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _show(value: Any) -> str:
    """A value for an error message: repr (so a newline shows as ``\\n``), cut to a sane length."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def approvals_needed(risk: str) -> int:
    """Distinct approvers an action of ``risk`` needs: two for high (the two-person rule), else one."""
    return 2 if risk == "high" else 1


def value_text(value: Scalar) -> str:
    """How a normalised parameter value is written into an argv token."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One typed parameter of an action. ``pattern`` None means :data:`SAFE_STRING` for strings."""

    name: str
    type: str = "string"
    required: bool = True
    default: Scalar | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Scalar, ...] = ()
    description: str = ""

    def normalise(self, value: Any) -> tuple[Scalar | None, str | None]:
        """(the value in its proper type, None) or (None, what is wrong with it).

        Numbers and booleans may arrive as text (from the CLI's ``-p key=value``); they are parsed
        exactly — ``"5"`` is 5, ``"5.0"`` and ``"five"`` are not integers.
        """
        where = f"parameter {self.name!r}"
        if self.type in ("string", "enum"):
            if not isinstance(value, str):
                return None, f"{where} must be a string, not {_show(value)}"
            if self.type == "enum" or self.choices:
                if value not in self.choices:
                    allowed = ", ".join(value_text(c) for c in self.choices)
                    return None, f"{where} must be one of {allowed}, not {_show(value)}"
                return value, None
            if _CONTROL.search(value):
                return None, f"{where} must not contain control characters (newline, tab …): {_show(value)}"
            if value.startswith("-"):
                return None, f"{where} must not start with '-' (it could pass as an option): {_show(value)}"
            pattern = self.pattern if self.pattern is not None else SAFE_STRING
            if not _compiled(pattern).fullmatch(value):
                return None, f"{where} must match {pattern}, not {_show(value)}"
            return value, None
        if self.type == "bool":
            if isinstance(value, bool):
                return value, None
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true", None
            return None, f"{where} must be true or false, not {_show(value)}"
        number: int | float
        if self.type == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                number = value
            elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
                number = int(value)
            else:
                return None, f"{where} must be an integer, not {_show(value)}"
        else:  # float
            if isinstance(value, int | float) and not isinstance(value, bool):
                number = float(value)
            elif isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
                number = float(value)
            else:
                return None, f"{where} must be a number, not {_show(value)}"
            if not math.isfinite(number):
                return None, f"{where} must be a finite number, not {_show(value)}"
        if self.min is not None and number < self.min:
            return None, f"{where} must be at least {self.min:g}, not {number}"
        if self.max is not None and number > self.max:
            return None, f"{where} must be at most {self.max:g}, not {number}"
        if self.choices and number not in self.choices:
            return None, f"{where} must be one of {', '.join(map(str, self.choices))}, not {number}"
        return number, None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.type == "string" and not self.choices:
            out["pattern"] = self.pattern if self.pattern is not None else SAFE_STRING
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.choices:
            out["choices"] = list(self.choices)
        out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """How an approved action runs.

    ``dry_run``: nothing, the plan is the result. ``webhook``: a signed POST to ``url`` with the
    HMAC secret read from the environment variable ``secret_env`` at run time (never stored).
    ``command``: ``argv`` with ``{param}`` placeholders, run without a shell, and only when
    ``enabled`` is explicitly true; ``pass_env`` names the extra environment variables it gets.
    """

    kind: str = "dry_run"
    url: str = ""
    secret_env: str = ""
    argv: tuple[str, ...] = ()
    enabled: bool = False
    timeout_s: float = 30.0
    pass_env: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "webhook":
            return {
                "kind": self.kind,
                "url": self.url,
                "secret_env": self.secret_env,
                "timeout_s": self.timeout_s,
            }
        if self.kind == "command":
            return {
                "kind": self.kind,
                "argv": list(self.argv),
                "enabled": self.enabled,
                "timeout_s": self.timeout_s,
                "pass_env": list(self.pass_env),
            }
        return {"kind": self.kind}


def template_fields(token: str) -> list[str]:
    """The ``{name}`` placeholders of an argv token; ValueError for anything but plain names
    (no ``{0}``, ``{a.b}``, ``{a[0]}``, ``{a!r}`` or ``{a:>9}``: a template only substitutes)."""
    names = []
    for _literal, field, spec, conversion in string.Formatter().parse(token):
        if field is None:
            continue
        if not _NAME.fullmatch(field) or spec or conversion:
            raise ValueError(f"placeholder {{{field}}} must be a plain parameter name like {{service}}")
        names.append(field)
    return names


def _substitute(token: str, params: Mapping[str, Scalar]) -> str:
    out = []
    for literal, field, _spec, _conversion in string.Formatter().parse(token):
        out.append(literal)
        if field is not None:
            out.append(value_text(params[field]))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Action:
    """One catalog entry: what it does, its parameters, how risky it is, what an approver must
    verify first (``prechecks``) and how it runs."""

    name: str
    title: str
    description: str
    params: tuple[ParamSpec, ...]
    risk: str
    prechecks: tuple[str, ...]
    executor: ExecutorSpec

    @property
    def approvals_needed(self) -> int:
        """Distinct approvers required: two for high risk (the two-person rule), else one."""
        return approvals_needed(self.risk)

    def param(self, name: str) -> ParamSpec | None:
        for spec in self.params:
            if spec.name == name:
                return spec
        return None

    def normalise(self, params: Mapping[str, Any]) -> tuple[dict[str, Scalar], list[str]]:
        """(parameters in declared order with defaults filled in, violations)."""
        violations: list[str] = []
        known = {spec.name for spec in self.params}
        for key in params:
            if key not in known:
                names = ", ".join(sorted(known)) or "-"
                violations.append(f"unknown parameter {_show(key)} for {self.name} (known: {names})")
        out: dict[str, Scalar] = {}
        for spec in self.params:
            if spec.name not in params or params[spec.name] is None:
                if spec.default is not None:
                    out[spec.name] = spec.default
                elif spec.required:
                    violations.append(f"missing required parameter {spec.name!r} for {self.name}")
                continue
            value, problem = spec.normalise(params[spec.name])
            if problem is not None:
                violations.append(problem)
            elif value is not None:
                out[spec.name] = value
        return out, violations

    def validate(self, params: Mapping[str, Any]) -> dict[str, Scalar]:
        """Normalised parameters, or InputError listing every violation."""
        out, violations = self.normalise(params)
        if violations:
            raise InputError(f"{self.name}: " + "; ".join(violations), reason="invalid_params")
        return out

    def argv(self, params: Mapping[str, Any]) -> list[str]:
        """The exact argv a command executor runs: each template token with the validated values
        substituted. A token stays one argv element whatever it contains."""
        valid = self.validate(params)
        return [_substitute(token, valid) for token in self.executor.argv]

    def effect(self, params: Mapping[str, Any]) -> str:
        """Canonical JSON of what would run — the action, its parameters and the exact argv or
        URL — but not wording, prechecks or whether a command is enabled yet. Stored with a
        proposal so that execution can refuse a plan that changed after approval."""
        valid = self.validate(params)
        ex = self.executor
        what: dict[str, Any] = {"action": self.name, "params": valid, "kind": ex.kind}
        if ex.kind == "webhook":
            what["url"] = ex.url
        elif ex.kind == "command":
            what["argv"] = self.argv(valid)
        return json.dumps(what, sort_keys=True, separators=(",", ":"))

    def plan(self, params: Mapping[str, Any]) -> str:
        """What executing this action with ``params`` would do, exactly, for an approver to read."""
        valid = self.validate(params)
        ex = self.executor
        lines = [
            f"{self.name}: {self.title}",
            f"risk: {self.risk} ({self.approvals_needed} distinct approver"
            f"{'s' if self.approvals_needed > 1 else ''} needed)",
            "parameters: " + (", ".join(f"{k}={_show(v)}" for k, v in valid.items()) or "(none)"),
        ]
        if ex.kind == "dry_run":
            lines.append("runs: nothing (dry run) — executing records this plan and changes nothing")
        elif ex.kind == "webhook":
            body = {
                "action": self.name,
                "approvals": "<approvers>",
                "at": "<execution time>",
                "incident": "<incident id>",
                "params": valid,
                "proposal": "<proposal id>",
            }
            lines.append(
                f"runs: POST {ex.url} (timeout {ex.timeout_s:g}s), HMAC-SHA256 signed with the secret "
                f"in ${ex.secret_env}"
            )
            lines.append("  JSON body: " + json.dumps(body, sort_keys=True))
        else:
            state = "" if ex.enabled else " — DISABLED (executor.enabled is not true): executing will refuse"
            env = ", ".join(("PATH", "LANG", *ex.pass_env))
            lines.append(
                f"runs: command without a shell (timeout {ex.timeout_s:g}s, environment: {env}){state}"
            )
            lines.append("  argv: " + json.dumps(self.argv(valid)))
        lines.append("prechecks (the approver verifies before approving):")
        lines.extend(f"  {i}. {text}" for i, text in enumerate(self.prechecks, start=1))
        if not self.prechecks:
            lines.append("  (none)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params": [p.to_json() for p in self.params],
            "risk": self.risk,
            "approvals_needed": self.approvals_needed,
            "prechecks": list(self.prechecks),
            "executor": self.executor.to_json(),
        }


# --- loading ------------------------------------------------------------------------------------


class _Table(ConfigTable):
    """A catalog table: values quoted with :func:`_show`, and a key with a default may be blank."""

    allow_blank_with_default = True

    def show(self, value: Any) -> str:
        return _show(value)

    def show_table(self, raw: object) -> str:
        return _show(raw)

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(name, default)
        if value not in allowed:
            raise ConfigError(self.key(name), f"must be one of {', '.join(allowed)}, not {_show(value)}")
        return value

    def positive(self, name: str, default: float) -> float:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
            raise ConfigError(
                self.key(name), f"must be a number of seconds in (0, 86400], not {_show(value)}"
            )
        return float(value)

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(self.key(name), f"must be a list of non-empty strings, not {_show(value)}")
        return tuple(value)


def _number_key(t: _Table, name: str, integer: bool) -> float | None:
    value = t.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(t.key(name), f"must be a number, not {_show(value)}")
    if integer and not isinstance(value, int):
        raise ConfigError(t.key(name), f"must be an integer for an int parameter, not {_show(value)}")
    return value


def _param(path: str, name: str, raw: object) -> ParamSpec:
    if not _NAME.fullmatch(name):
        raise ConfigError(path, "a parameter name must be lower-case letters, digits and _ (like service)")
    t = _Table(path, raw)
    kind = t.choice("type", PARAM_TYPES, "string")
    description = t.text("description", "")
    pattern = t.get("pattern")
    if pattern is not None:
        if kind != "string":
            raise ConfigError(t.key("pattern"), f"only string parameters take a pattern, not {kind}")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(t.key("pattern"), f"must be a regular expression, not {_show(pattern)}")
        try:
            _compiled(pattern)
        except re.error as exc:
            raise ConfigError(t.key("pattern"), f"not a valid regular expression: {exc}") from exc
    low = high = None
    if kind in ("int", "float"):
        low, high = _number_key(t, "min", kind == "int"), _number_key(t, "max", kind == "int")
        if low is not None and high is not None and low > high:
            raise ConfigError(t.key("max"), f"must not be below min ({low:g}), not {high:g}")
    choices: tuple[Scalar, ...] = ()
    raw_choices = t.get("choices")
    if kind == "enum" and raw_choices is None:
        raise ConfigError(t.key("choices"), "is required for an enum parameter")
    if raw_choices is not None:
        if kind not in ("enum", "string", "int"):
            raise ConfigError(t.key("choices"), f"a {kind} parameter takes no choices")
        want: type = int if kind == "int" else str
        if (
            not isinstance(raw_choices, list)
            or not raw_choices
            or not all(isinstance(c, want) and not isinstance(c, bool) for c in raw_choices)
            or (want is str and not all(c and not _CONTROL.search(c) for c in raw_choices))
        ):
            raise ConfigError(
                t.key("choices"),
                f"must be a non-empty list of {want.__name__} values, not {_show(raw_choices)}",
            )
        choices = tuple(raw_choices)
    spec = ParamSpec(
        name=name, type=kind, pattern=pattern, min=low, max=high, choices=choices, description=description
    )
    default = t.get("default")
    required = t.flag("required", default is None)
    if default is not None:
        if required:
            raise ConfigError(t.key("required"), "a parameter with a default cannot be required")
        value, problem = spec.normalise(default)
        if problem is not None or value is None:
            raise ConfigError(t.key("default"), f"invalid default: {problem}")
        default = value
    t.done()
    return ParamSpec(
        name=name,
        type=kind,
        required=required,
        default=default,
        pattern=pattern,
        min=low,
        max=high,
        choices=choices,
        description=description,
    )


def _executor(path: str, raw: object, params: tuple[ParamSpec, ...]) -> ExecutorSpec:
    t = _Table(path, raw)
    kind = t.choice("kind", EXECUTOR_KINDS)
    if kind == "dry_run":
        t.done()
        return ExecutorSpec(kind)
    if kind == "webhook":
        url = t.text("url")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(t.key("url"), "must be an http:// or https:// URL")
        secret_env = t.text("secret_env")
        if not _ENV_NAME.fullmatch(secret_env):
            raise ConfigError(
                t.key("secret_env"), f"must name an environment variable, not {_show(secret_env)}"
            )
        timeout = t.positive("timeout_s", 10.0)
        t.done()
        return ExecutorSpec(kind, url=url, secret_env=secret_env, timeout_s=timeout)
    argv = t.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise ConfigError(t.key("argv"), f"must be a non-empty list of non-empty strings, not {_show(argv)}")
    usable = {p.name for p in params if p.required or p.default is not None}
    declared = {p.name for p in params}
    for i, token in enumerate(argv):
        where = f"{t.key('argv')}[{i}]"
        try:
            names = template_fields(token)
        except ValueError as exc:
            raise ConfigError(where, str(exc)) from None
        if i == 0 and names:
            raise ConfigError(where, "the program must be fixed, not a placeholder")
        for name in names:
            if name not in declared:
                raise ConfigError(where, f"{{{name}}} is not a declared parameter")
            if name not in usable:
                raise ConfigError(
                    where, f"{{{name}}} is optional without a default: the argv would be incomplete"
                )
    enabled = t.flag("enabled", False)
    timeout = t.positive("timeout_s", 60.0)
    pass_env = t.texts("pass_env")
    for name in pass_env:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(t.key("pass_env"), f"{_show(name)} is not an environment variable name")
    t.done()
    return ExecutorSpec(kind, argv=tuple(argv), enabled=enabled, timeout_s=timeout, pass_env=pass_env)


def _action(name: str, raw: object) -> Action:
    path = f"actions.{name}"
    if not _NAME.fullmatch(name):
        raise ConfigError(
            path, "an action name must be lower-case letters, digits and _ (like restart_service)"
        )
    t = _Table(path, raw)
    raw_params = t.get("params")
    params_table = _Table(t.key("params"), raw_params if raw_params is not None else {})
    params = tuple(_param(params_table.key(p), p, spec) for p, spec in params_table.raw.items())
    executor = t.get("executor")
    if executor is None:
        raise ConfigError(t.key("executor"), "is required (kind = dry_run | webhook | command)")
    action = Action(
        name=name,
        title=t.text("title"),
        description=t.text("description", ""),
        params=params,
        risk=t.choice("risk", RISKS),
        prechecks=t.texts("prechecks"),
        executor=_executor(t.key("executor"), executor, params),
    )
    t.done()
    return action


@functools.cache
def _builtin_tables() -> Mapping[str, Any]:
    text = resources.files("summarize").joinpath("default_actions.toml").read_text("utf-8")
    actions = tomllib.loads(text)["actions"]
    assert isinstance(actions, dict)
    return MappingProxyType(actions)


class Catalog(Mapping[str, Action]):
    """The validated actions by name (read-only); satisfies :class:`summarize.model.ActionCheck`."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self._actions: Mapping[str, Action] = MappingProxyType({a.name: a for a in actions})

    def __getitem__(self, name: str) -> Action:
        return self._actions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def __repr__(self) -> str:
        return f"Catalog({', '.join(self._actions)})"

    @classmethod
    def default(cls) -> Catalog:
        """The built-in catalog alone (every action a dry run)."""
        return cls.load({})

    @classmethod
    def load(cls, tables: Mapping[str, Any]) -> Catalog:
        """The built-ins merged with the ``actions`` table of a config file's ``tables``."""
        overrides = tables.get("actions") or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError("actions", "must be a table of [actions.NAME] tables")
        builtin = _builtin_tables()
        merged: dict[str, Any] = {name: dict(body) for name, body in builtin.items()}
        for name, body in overrides.items():
            if not isinstance(body, Mapping):
                raise ConfigError(f"actions.{name}", f"must be a table, not {_show(body)}")
            merged[name] = {**merged.get(name, {}), **body}
        return cls(_action(name, body) for name, body in merged.items())

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        return cls.load(settings.tables)

    def action(self, name: str) -> Action:
        """The action ``name``, or InputError listing the known ones."""
        found = self._actions.get(name)
        if found is None:
            raise InputError(self._unknown(name), reason="unknown_action")
        return found

    def _unknown(self, name: str) -> str:
        return f"unknown action {_show(name)} (catalog: {', '.join(self._actions)})"

    def check(self, action: str, params: Mapping[str, Any]) -> list[str]:
        """Every violation of ``action`` with ``params``; empty when it may be proposed."""
        found = self._actions.get(action)
        if found is None:
            return [self._unknown(action)]
        return found.normalise(params)[1]

    def validate(self, action: str, params: Mapping[str, Any]) -> dict[str, Scalar]:
        """``params`` normalised (typed, defaults filled in), or InputError listing the violations."""
        return self.action(action).validate(params)

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self._actions.values()]
