"""Routing: which receivers hear about an incident, from the config file's ``receivers``, ``teams``
and ``routes`` tables (Alertmanager's model, flattened to one level).

Why three tables: receivers are *how* to reach someone (and hold the secrets), teams are *who*
(a team owns several receivers, and several routes lead to one team), routes are *when* (label
matchers). Renaming a Slack channel then touches one receiver, not every route.

::

    [receivers.payments-slack]
    type = "slack"                              # slack | pagerduty | webhook | email
    url_env = "WARROOM_SLACK_PAYMENTS_URL"      # a secret: from the environment, or `url = "..."`
    [teams.payments]
    receivers = ["payments-slack"]
    [[routes]]
    match = { service = "checkout" }            # exact label values; all must hold
    match_re = { service = "^(payment|cart)" }  # regular expressions; all must hold
    team = "payments"
    continue = false                            # stop at the first matching route unless true
    [[routes]]
    team = "platform"                           # no matchers: catch-all

Semantics:

- Routes are tried in file order. A route matches when every ``match`` label equals its value *and*
  every ``match_re`` pattern is found in its label (``re.search``: anchor with ``^``/``$`` yourself,
  unlike Alertmanager, which anchors implicitly). A missing label reads as ``""``, as in
  Alertmanager, so ``match = { env = "" }`` means "no env label". Evaluation stops at the first
  match unless that route says ``continue = true``.
- An incident has several alerts (often several services). Each alert's labels are routed on their
  own and the incident goes to the union of the teams, in order of first appearance (alerts in the
  order given, routes in file order); :meth:`Router.receivers_for_alerts` flattens that to receiver
  names, deduplicated, so a receiver shared by two teams hears once.
- No matching route and no catch-all gives an empty list. The router does not log it (it cannot
  tell an incident from a single alert); :meth:`correlate.notify.outbox.Outbox.enqueue` does.

Secrets (``url``, ``routing_key``, ``secret``, ``password``) are given inline or as ``<key>_env``,
naming an environment variable that must be set; never both. Everything is validated at start-up by
:func:`build_router`, and every :class:`~warroom.errors.ConfigError` names the exact key, e.g.
``receivers.payments-pd.routing_key_env`` or ``routes[1].team``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlparse

from correlate.notify.base import Receiver
from correlate.notify.email import EmailReceiver
from correlate.notify.pagerduty import PD_SEVERITIES, EventAction, PagerDutyReceiver
from correlate.notify.slack import SlackReceiver
from correlate.notify.webhook import WebhookReceiver
from warroom.config_table import ConfigTable
from warroom.errors import ConfigError
from warroom.model import Severity

__all__ = ["RECEIVER_TYPES", "Route", "Router", "build_router"]

Labels = Mapping[str, str]


class _Table(ConfigTable):
    """A routing table; adds ``env``, from which ``<key>_env`` secrets are resolved."""

    def __init__(self, path: str, raw: object, env: Mapping[str, str]) -> None:
        super().__init__(path, raw)
        self.env = env

    def number(self, name: str, default: float) -> float:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(self.key(name), f"must be a positive number, not {value!r}")
        return float(value)

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ConfigError(self.key(name), f"must be a port number, not {value!r}")
        return value

    def str_list(self, name: str, *, required: bool = True) -> tuple[str, ...]:
        value = self.get(name)
        if value is None and not required:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.key(name), f"must be a list of strings, not {value!r}")
        return tuple(value)

    def str_map(self, name: str) -> dict[str, str]:
        value = self.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), f"must be a table, not {value!r}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise ConfigError(f"{self.key(name)}.{k}", f"must be a string, not {v!r}")
        return dict(value)

    def secret(self, name: str, *, required: bool = True) -> str | None:
        """``name`` inline or ``name_env`` naming a set environment variable; exactly one."""
        inline, var = self.get(name), self.get(name + "_env")
        if inline is not None and var is not None:
            raise ConfigError(self.key(name + "_env"), f"give {name} or {name}_env, not both")
        if var is not None:
            if not isinstance(var, str) or not var:
                raise ConfigError(self.key(name + "_env"), f"must name an environment variable, not {var!r}")
            value = self.env.get(var)
            if not value:
                raise ConfigError(self.key(name + "_env"), f"environment variable {var} is not set")
            return value
        if inline is None:
            if required:
                raise ConfigError(self.key(name), f"is required (or {name}_env naming an environment var)")
            return None
        return self.text(name)

    def url(self, name: str, *, secret: bool = False, default: str | None = None) -> str:
        value = self.secret(name) if secret else self.text(name, default)
        assert value is not None  # a required secret is never None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            # Do not echo the value: a webhook URL is a credential.
            raise ConfigError(self.key(name), "must be an http:// or https:// URL")
        return value


def _slack(t: _Table, name: str) -> Receiver:
    return SlackReceiver(t.url("url", secret=True), name=name, timeout=t.number("timeout", 10.0))


def _pagerduty(t: _Table, name: str) -> Receiver:
    routing_key = t.secret("routing_key")
    assert routing_key is not None
    update_action = t.text("update_action", "trigger")
    if update_action not in ("trigger", "acknowledge"):
        raise ConfigError(t.key("update_action"), f"must be trigger or acknowledge, not {update_action!r}")
    severity_map: dict[Severity, str] = {Severity.CRITICAL: "critical", Severity.WARNING: "warning"}
    severity_map[Severity.INFO] = "info"
    for ours, theirs in t.str_map("severity_map").items():
        try:
            severity = Severity(ours)
        except ValueError:
            raise ConfigError(
                f"{t.key('severity_map')}.{ours}", f"not a severity ({', '.join(s.value for s in Severity)})"
            ) from None
        if theirs not in PD_SEVERITIES:
            raise ConfigError(f"{t.key('severity_map')}.{ours}", f"{theirs!r} not among {PD_SEVERITIES}")
        severity_map[severity] = theirs
    return PagerDutyReceiver(
        routing_key,
        base_url=t.url("base_url", default="https://events.pagerduty.com"),
        name=name,
        source=t.text("source", "warroom"),
        update_action=cast(EventAction, update_action),
        severity_map=MappingProxyType(severity_map),
        timeout=t.number("timeout", 10.0),
    )


def _webhook(t: _Table, name: str) -> Receiver:
    secret = t.secret("secret")
    assert secret is not None
    return WebhookReceiver(
        t.url("url"),
        secret=secret,
        name=name,
        timeout=t.number("timeout", 10.0),
        headers=tuple(t.str_map("headers").items()),
    )


def _email(t: _Table, name: str) -> Receiver:
    username = t.text("username", "") or None
    recipients = t.str_list("to")
    if not recipients:
        raise ConfigError(t.key("to"), "at least one recipient is needed")
    return EmailReceiver(
        t.text("host"),
        t.text("sender"),
        recipients,
        port=t.integer("port", 25),
        starttls=t.flag("starttls"),
        username=username,
        password=t.secret("password", required=False),
        name=name,
        timeout=t.number("timeout", 10.0),
        domain=t.text("domain", "warroom.local"),
    )


#: ``type = "..."`` of a receiver → the builder reading the rest of its table.
RECEIVER_TYPES: Mapping[str, Callable[[_Table, str], Receiver]] = MappingProxyType(
    {"slack": _slack, "pagerduty": _pagerduty, "webhook": _webhook, "email": _email}
)


@dataclass(frozen=True)
class Route:
    """One ``[[routes]]`` entry: label matchers (all must hold) leading to a team."""

    team: str
    match: Mapping[str, str] = field(default_factory=dict)
    match_re: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    continue_: bool = False

    def matches(self, labels: Labels) -> bool:
        """True when every matcher holds; a missing label reads as ``""``."""
        return all(labels.get(k, "") == v for k, v in self.match.items()) and all(
            p.search(labels.get(k, "")) is not None for k, p in self.match_re.items()
        )


@dataclass(frozen=True)
class Router:
    """Validated routing config: receivers by name, team → receiver names, ordered routes."""

    receivers: Mapping[str, Receiver]
    teams: Mapping[str, tuple[str, ...]]
    routes: tuple[Route, ...]

    def teams_for(self, labels: Labels) -> list[str]:
        """Teams for one alert's labels: routes in order, stopping at a match without ``continue``."""
        out: list[str] = []
        for route in self.routes:
            if not route.matches(labels):
                continue
            if route.team not in out:
                out.append(route.team)
            if not route.continue_:
                break
        return out

    def receivers_for(self, labels: Labels) -> list[str]:
        """Receiver names for one alert's labels, deduplicated, in team then receiver order."""
        return self._receivers(self.teams_for(labels))

    def teams_for_alerts(self, label_sets: Iterable[Labels]) -> list[str]:
        """Teams for an incident: the union over its alerts' label sets, in order of first appearance."""
        return _unique(team for labels in label_sets for team in self.teams_for(labels))

    def receivers_for_alerts(self, label_sets: Iterable[Labels]) -> list[str]:
        """Receiver names for an incident (see :meth:`teams_for_alerts`), deduplicated and ordered."""
        return self._receivers(self.teams_for_alerts(label_sets))

    def _receivers(self, teams: Sequence[str]) -> list[str]:
        return _unique(name for team in teams for name in self.teams[team])


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _named_tables(tables: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    raw = tables.get(section, {})
    if not isinstance(raw, Mapping):
        raise ConfigError(section, f"must be a table of named [{section}.<name>] tables")
    return raw


def build_router(tables: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Router:
    """Validate ``Settings.tables`` (``receivers``, ``teams``, ``routes``) into a :class:`Router`.

    ``env`` resolves ``*_env`` secrets (default: the process environment). Raises
    :class:`~warroom.errors.ConfigError` naming the offending key.
    """
    env = os.environ if env is None else env

    receivers: dict[str, Receiver] = {}
    for name, raw in _named_tables(tables, "receivers").items():
        t = _Table(f"receivers.{name}", raw, env)
        kind = t.text("type")
        build = RECEIVER_TYPES.get(kind)
        if build is None:
            known = ", ".join(RECEIVER_TYPES)
            raise ConfigError(t.key("type"), f"unknown receiver type {kind!r} (known: {known})")
        try:
            receivers[name] = build(t, name)
        except ConfigError as exc:
            if exc.setting.startswith(t.path):
                raise
            # A receiver's own check (e.g. "webhook.secret"): re-anchor it at this table.
            raise ConfigError(t.key(exc.setting.rsplit(".", 1)[-1]), str(exc).split(": ", 1)[-1]) from exc
        t.done()

    teams: dict[str, tuple[str, ...]] = {}
    for name, raw in _named_tables(tables, "teams").items():
        t = _Table(f"teams.{name}", raw, env)
        members = t.str_list("receivers")
        for i, member in enumerate(members):
            if member not in receivers:
                raise ConfigError(f"{t.key('receivers')}[{i}]", f"unknown receiver {member!r}")
        t.done()
        teams[name] = tuple(_unique(members))

    raw_routes = tables.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError("routes", "must be an array of tables ([[routes]])")
    routes: list[Route] = []
    for i, raw in enumerate(raw_routes):
        t = _Table(f"routes[{i}]", raw, env)
        team = t.text("team")
        if team not in teams:
            raise ConfigError(t.key("team"), f"unknown team {team!r}")
        patterns: dict[str, re.Pattern[str]] = {}
        for label, pattern in t.str_map("match_re").items():
            try:
                patterns[label] = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{t.key('match_re')}.{label}", f"bad regular expression: {exc}") from exc
        routes.append(
            Route(
                team=team,
                match=MappingProxyType(t.str_map("match")),
                match_re=MappingProxyType(patterns),
                continue_=t.flag("continue"),
            )
        )
        t.done()
    return Router(MappingProxyType(receivers), MappingProxyType(teams), tuple(routes))
