"""Routing config: the README's example parses, routes match as documented, every mistake names its key."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from correlate.notify import (
    EmailReceiver,
    PagerDutyReceiver,
    SlackReceiver,
    WebhookReceiver,
    build_router,
)
from warroom.errors import ConfigError
from warroom.model import Severity

EXAMPLE = """
[receivers.payments-slack]
type = "slack"
url_env = "WARROOM_SLACK_PAYMENTS_URL"
[receivers.payments-pd]
type = "pagerduty"
routing_key_env = "PD_PAYMENTS_KEY"
[receivers.audit-hook]
type = "webhook"
url = "https://hooks.example.com/warroom"
secret_env = "WARROOM_HOOK_SECRET"
[receivers.oncall-mail]
type = "email"
host = "smtp.example.com"
port = 587
sender = "warroom@example.com"
to = ["oncall@example.com"]
[teams.payments]
receivers = ["payments-slack", "payments-pd"]
[teams.platform]
receivers = ["oncall-mail"]
[teams.audit]
receivers = ["audit-hook", "payments-slack"]
[[routes]]
match = { env = "prod" }
team = "audit"
continue = true
[[routes]]
match = { service = "checkout" }
team = "payments"
[[routes]]
match_re = { service = "^(payment|cart)" }
team = "payments"
[[routes]]
team = "platform"
"""

ENV = {
    "WARROOM_SLACK_PAYMENTS_URL": "https://hooks.slack.com/services/T/B/X",
    "PD_PAYMENTS_KEY": "R0UTING",
    "WARROOM_HOOK_SECRET": "s3cret",
}


def tables(text: str = EXAMPLE) -> dict[str, Any]:
    return tomllib.loads(text)


def test_example_builds_receivers_with_secrets_from_env() -> None:
    router = build_router(tables(), ENV)
    assert list(router.receivers) == ["payments-slack", "payments-pd", "audit-hook", "oncall-mail"]
    slack = router.receivers["payments-slack"]
    assert isinstance(slack, SlackReceiver) and slack.webhook_url == ENV["WARROOM_SLACK_PAYMENTS_URL"]
    assert slack.name == "payments-slack"  # attempts name the config key, never the URL
    pd = router.receivers["payments-pd"]
    assert isinstance(pd, PagerDutyReceiver) and pd.routing_key == "R0UTING"
    hook = router.receivers["audit-hook"]
    assert isinstance(hook, WebhookReceiver) and hook.secret == "s3cret"
    mail = router.receivers["oncall-mail"]
    assert isinstance(mail, EmailReceiver)
    assert (mail.host, mail.port, mail.recipients) == ("smtp.example.com", 587, ("oncall@example.com",))
    assert router.teams["payments"] == ("payments-slack", "payments-pd")


def test_exact_regex_continue_and_catch_all() -> None:
    router = build_router(tables(), ENV)
    assert router.teams_for({"service": "checkout"}) == ["payments"]
    assert router.teams_for({"service": "payment-gateway"}) == ["payments"]  # re.search, anchored by ^
    assert router.teams_for({"service": "cart"}) == ["payments"]
    assert router.teams_for({"service": "my-cart"}) == ["platform"]  # ^ anchors: falls to catch-all
    assert router.teams_for({"service": "search"}) == ["platform"]
    assert router.teams_for({}) == ["platform"]
    # continue = true on the first route: audit *and* the first later match
    assert router.teams_for({"env": "prod", "service": "checkout"}) == ["audit", "payments"]
    assert router.teams_for({"env": "prod", "service": "search"}) == ["audit", "platform"]
    # receivers: deduplicated (payments-slack is in both teams), team order then receiver order
    assert router.receivers_for({"env": "prod", "service": "checkout"}) == [
        "audit-hook",
        "payments-slack",
        "payments-pd",
    ]


def test_all_matchers_must_hold_and_missing_label_reads_empty() -> None:
    config = tables(
        """
        [receivers.r]
        type = "webhook"
        url = "https://x.example/hook"
        secret = "s"
        [teams.t]
        receivers = ["r"]
        [[routes]]
        match = { service = "checkout", env = "" }
        match_re = { region = "^eu-" }
        team = "t"
        """
    )
    router = build_router(config, {})
    assert router.teams_for({"service": "checkout", "region": "eu-west-1"}) == ["t"]
    assert router.teams_for({"service": "checkout", "region": "us-east-1"}) == []
    assert router.teams_for({"service": "checkout", "region": "eu-west-1", "env": "prod"}) == []
    assert router.teams_for({"region": "eu-west-1"}) == []


def test_incident_routes_to_union_of_its_alerts_teams() -> None:
    router = build_router(tables(), ENV)
    alerts = [{"service": "search"}, {"service": "checkout"}, {"service": "cart"}, {"service": "search"}]
    assert router.teams_for_alerts(alerts) == ["platform", "payments"]
    assert router.receivers_for_alerts(alerts) == ["oncall-mail", "payments-slack", "payments-pd"]
    assert router.teams_for_alerts([]) == []


def test_no_match_without_catch_all_is_empty() -> None:
    config = tables()
    config["routes"] = config["routes"][:-1]  # drop the catch-all
    router = build_router(config, ENV)
    assert router.teams_for({"service": "search"}) == []
    assert router.receivers_for_alerts([{"service": "search"}, {"team": "x"}]) == []
    # an empty config routes nothing, and is valid
    assert build_router({}, {}).receivers_for({"service": "checkout"}) == []


def test_optional_receiver_settings() -> None:
    config = tables(
        """
        [receivers.pd]
        type = "pagerduty"
        routing_key = "inline-key"
        base_url = "http://127.0.0.1:9"
        update_action = "acknowledge"
        severity_map = { warning = "error" }
        timeout = 2.5
        [receivers.mail]
        type = "email"
        host = "127.0.0.1"
        sender = "w@example.com"
        to = ["a@example.com", "b@example.com"]
        starttls = true
        username = "warroom"
        password_env = "SMTP_PW"
        [receivers.hook]
        type = "webhook"
        url = "https://x.example/hook"
        secret = "s"
        headers = { Authorization = "Bearer t" }
        """
    )
    router = build_router(config, {"SMTP_PW": "pw"})
    pd = router.receivers["pd"]
    assert isinstance(pd, PagerDutyReceiver)
    assert (pd.base_url, pd.update_action, pd.timeout) == ("http://127.0.0.1:9", "acknowledge", 2.5)
    assert pd.severity_map[Severity.WARNING] == "error" and pd.severity_map[Severity.CRITICAL] == "critical"
    mail = router.receivers["mail"]
    assert isinstance(mail, EmailReceiver)
    assert (mail.port, mail.starttls, mail.username, mail.password) == (25, True, "warroom", "pw")
    hook = router.receivers["hook"]
    assert isinstance(hook, WebhookReceiver) and hook.headers == (("Authorization", "Bearer t"),)


DROP = object()  # as a value in a parametrised case: delete the key


def _broken(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """The example with one mistake: the value at ``path`` set to ``value`` (or dropped)."""
    config = copy.deepcopy(tables())
    *parents, last = path
    node: Any = config
    for step in parents:
        node = node[step]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "env", "key", "says"),
    [
        (("receivers", "payments-slack", "type"), "teams", ENV, "receivers.payments-slack.type", "teams"),
        (("receivers", "payments-slack", "type"), DROP, ENV, "receivers.payments-slack.type", "required"),
        (("receivers", "audit-hook", "url"), DROP, ENV, "receivers.audit-hook.url", "required"),
        (("receivers", "payments-slack", "url_env"), DROP, ENV, "receivers.payments-slack.url", "required"),
        (
            ("receivers", "payments-slack", "url"),
            "https://x",
            ENV,
            "receivers.payments-slack.url_env",
            "not both",
        ),
        (("receivers", "audit-hook", "url"), "ftp://x/y", ENV, "receivers.audit-hook.url", "http"),
        (
            ("receivers", "payments-pd", "routing_key_env"),
            "PD_PAYMENTS_KEY",  # unchanged: the environment lacks it
            {k: v for k, v in ENV.items() if k != "PD_PAYMENTS_KEY"},
            "receivers.payments-pd.routing_key_env",
            "PD_PAYMENTS_KEY is not set",
        ),
        (
            ("receivers", "audit-hook", "secret_env"),
            DROP,
            ENV,
            "receivers.audit-hook.secret",
            "required",
        ),
        (("receivers", "oncall-mail", "to"), [], ENV, "receivers.oncall-mail.to", "recipient"),
        (("receivers", "oncall-mail", "port"), "587", ENV, "receivers.oncall-mail.port", "port"),
        (("receivers", "oncall-mail", "tls"), True, ENV, "receivers.oncall-mail.tls", "unknown key"),
        (
            ("receivers", "payments-pd", "update_action"),
            "snooze",
            ENV,
            "receivers.payments-pd.update_action",
            "snooze",
        ),
        (
            ("receivers", "payments-pd", "severity_map"),
            {"warning": "sev2"},
            ENV,
            "receivers.payments-pd.severity_map.warning",
            "sev2",
        ),
        (("receivers", "oncall-mail"), "smtp://x", ENV, "receivers.oncall-mail", "table"),
        (
            ("teams", "payments", "receivers"),
            ["payments-slack", "payments-pd", "nope"],
            ENV,
            "teams.payments.receivers[2]",
            "nope",
        ),
        (("teams", "payments", "receivers"), DROP, ENV, "teams.payments.receivers", "list"),
        (("teams", "payments", "owner"), "bob", ENV, "teams.payments.owner", "unknown key"),
        (("routes", 1, "team"), "billing", ENV, "routes[1].team", "billing"),
        (("routes", 3, "team"), DROP, ENV, "routes[3].team", "required"),
        (("routes", 2, "match_re", "service"), "(unclosed", ENV, "routes[2].match_re.service", "regular"),
        (("routes", 1, "match", "port"), 8080, ENV, "routes[1].match.port", "string"),
        (("routes", 1, "matchers"), {}, ENV, "routes[1].matchers", "unknown key"),
        (("routes", 0, "continue"), "yes", ENV, "routes[0].continue", "true or false"),
        (("routes",), {"team": "platform"}, ENV, "routes", "array"),
    ],
)
def test_config_errors_name_the_key(
    path: tuple[str | int, ...], value: object, env: dict[str, str], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_router(_broken(path, value), env)
    assert caught.value.setting == key
    assert says in str(caught.value)


def test_secret_values_are_not_echoed_in_errors() -> None:
    env = {**ENV, "WARROOM_SLACK_PAYMENTS_URL": "not-a-url-but-SECRET"}
    with pytest.raises(ConfigError) as caught:
        build_router(tables(), env)
    assert caught.value.setting == "receivers.payments-slack.url"
    assert "SECRET" not in str(caught.value)
