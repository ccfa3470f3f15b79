"""The remediation catalog: built-ins, config overrides with exact error keys, typed parameters that
never let shell or option injection through, and exact plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from summarize.catalog import SAFE_STRING, Catalog
from summarize.model import ActionCheck
from warroom.config import load_settings
from warroom.errors import ConfigError, InputError

BUILTINS = {
    "rollback_deployment": "medium",
    "restart_service": "medium",
    "scale_replicas": "medium",
    "toggle_feature_flag": "low",
    "failover_database": "high",
    "open_runbook": "low",
}


def test_builtins_are_dry_runs_with_prechecks() -> None:
    catalog = Catalog.default()
    assert {name: a.risk for name, a in catalog.items()} == BUILTINS
    for action in catalog.values():
        assert action.executor.kind == "dry_run" and action.prechecks and action.title
    assert catalog["failover_database"].approvals_needed == 2
    assert catalog["open_runbook"].approvals_needed == 1
    replicas = catalog["scale_replicas"].param("replicas")
    assert replicas is not None and (replicas.type, replicas.min, replicas.max) == ("int", 1, 200)
    checker: ActionCheck = catalog  # satisfies what grounding needs
    assert checker.check("open_runbook", {"runbook": "runbooks/checkout-5xx"}) == []


def test_validate_normalises_types_and_fills_defaults() -> None:
    catalog = Catalog.default()
    assert catalog.validate("rollback_deployment", {"service": "checkout"}) == {
        "service": "checkout",
        "namespace": "default",
    }
    assert catalog.validate(
        "scale_replicas", {"service": "checkout", "namespace": "prod", "replicas": "12"}
    ) == {"service": "checkout", "namespace": "prod", "replicas": 12}
    assert catalog.validate("toggle_feature_flag", {"flag": "new-checkout", "enabled": "false"}) == {
        "flag": "new-checkout",
        "enabled": False,
    }
    url = "https://wiki.example.com/runbooks/db-failover"
    assert catalog.validate("open_runbook", {"runbook": url}) == {"runbook": url}


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("reboot_everything", {}, "unknown action 'reboot_everything'"),
        ("scale_replicas", {"service": "a", "replicas": 2}, "missing required parameter 'namespace'"),
        ("open_runbook", {"runbook": "x", "force": "yes"}, "unknown parameter 'force'"),
        ("scale_replicas", {"service": "a", "namespace": "b", "replicas": "five"}, "must be an integer"),
        ("scale_replicas", {"service": "a", "namespace": "b", "replicas": True}, "must be an integer"),
        ("scale_replicas", {"service": "a", "namespace": "b", "replicas": 2.5}, "must be an integer"),
        ("scale_replicas", {"service": "a", "namespace": "b", "replicas": 0}, "at least 1"),
        ("scale_replicas", {"service": "a", "namespace": "b", "replicas": 201}, "at most 200"),
        ("toggle_feature_flag", {"flag": "f", "enabled": "maybe"}, "must be true or false"),
        ("open_runbook", {"runbook": 42}, "must be a string"),
        ("open_runbook", {"runbook": "a b"}, "must match"),
    ],
)
def test_check_reports_each_violation(action: str, params: dict[str, Any], expected: str) -> None:
    catalog = Catalog.default()
    violations = catalog.check(action, params)
    assert len(violations) == 1 and expected in violations[0], violations
    with pytest.raises(InputError) as err:
        catalog.validate(action, params)
    assert expected in str(err.value)


INJECTIONS = [
    "; rm -rf /",
    "checkout; rm -rf /",
    "$(id)",
    "checkout$(id)",
    "`id`",
    "checkout`id`",
    "a|b",
    "a && b",
    "a&&b",
    "checkout\nrm -rf /",
    "checkout\r",
    "checkout\x00",
    "--kubeconfig=/x",
    "-n",
    "checkout > /etc/passwd",
    "'quoted'",
    '"quoted"',
    "*",
    "c\u0435ckout",  # a Cyrillic e
    "checkout\u200b",  # zero-width space
    "ｃheckout",  # fullwidth c
    "",
    "a" * 254,
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_shell_and_option_injection_is_rejected(value: str) -> None:
    catalog = Catalog.default()
    violations = catalog.check("restart_service", {"service": value, "namespace": "prod"})
    assert len(violations) == 1 and "parameter 'service'" in violations[0]
    with pytest.raises(InputError) as err:
        catalog.validate("restart_service", {"service": "checkout", "namespace": value})
    assert err.value.reason == "invalid_params" and "namespace" in str(err.value)


def test_even_a_permissive_pattern_keeps_newlines_and_leading_dashes_out() -> None:
    catalog = Catalog.load(
        {
            "actions": {
                "note": {
                    "title": "Note",
                    "risk": "low",
                    "executor": {"kind": "dry_run"},
                    "params": {"text": {"pattern": ".*"}},
                }
            }
        }
    )
    assert catalog.check("note", {"text": "spaces; and $(things) are fine here"}) == []
    assert "control characters" in catalog.check("note", {"text": "two\nlines"})[0]
    assert "must not start with '-'" in catalog.check("note", {"text": "--all"})[0]


def _with(action: dict[str, Any], name: str = "custom") -> dict[str, Any]:
    base: dict[str, Any] = {"title": "Custom", "risk": "low", "executor": {"kind": "dry_run"}}
    return {"actions": {name: {**base, **action}}}


COMMAND = {"kind": "command", "argv": ["tool", "{service}"], "enabled": True}


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ({"actions": {"scale_replicas": {"params": {"replicas": {"type": "int", "max": "lots"}}}}}, None),
        (_with({"bogus": 1}), "actions.custom.bogus"),
        (_with({"risk": "extreme"}), "actions.custom.risk"),
        (_with({"title": ""}), "actions.custom.title"),
        (_with({"prechecks": "look first"}), "actions.custom.prechecks"),
        (_with({"executor": None}), "actions.custom.executor"),
        (_with({"executor": {"kind": "ssh"}}), "actions.custom.executor.kind"),
        (_with({"executor": {"kind": "dry_run", "argv": ["x"]}}), "actions.custom.executor.argv"),
        (_with({"params": {"n": {"type": "int", "min": 5, "max": 1}}}), "actions.custom.params.n.max"),
        (_with({"params": {"n": {"type": "int", "min": 1.5}}}), "actions.custom.params.n.min"),
        (_with({"params": {"n": {"type": "complex"}}}), "actions.custom.params.n.type"),
        (_with({"params": {"n": {"type": "enum"}}}), "actions.custom.params.n.choices"),
        (_with({"params": {"n": {"pattern": "("}}}), "actions.custom.params.n.pattern"),
        (_with({"params": {"n": {"type": "int", "pattern": "x"}}}), "actions.custom.params.n.pattern"),
        (_with({"params": {"n": {"default": "; rm"}}}), "actions.custom.params.n.default"),
        (_with({"params": {"n": {"default": "a", "required": True}}}), "actions.custom.params.n.required"),
        (_with({"params": {"n": {"colour": "red"}}}), "actions.custom.params.n.colour"),
        (_with({"params": {"Bad-Name": {}}}), "actions.custom.params.Bad-Name"),
        (_with({"executor": {"kind": "webhook", "url": "ftp://x", "secret_env": "S"}}), None),
        (_with({"executor": {"kind": "webhook", "url": "https://x"}}), "actions.custom.executor.secret_env"),
        (
            _with({"executor": {"kind": "webhook", "url": "https://x", "secret_env": "a b"}}),
            "actions.custom.executor.secret_env",
        ),
        (_with({"executor": {**COMMAND, "argv": []}}), "actions.custom.executor.argv"),
        (_with({"executor": COMMAND}), "actions.custom.executor.argv[1]"),  # {service} undeclared
        (
            _with({"executor": {**COMMAND, "argv": ["{service}"]}, "params": {"service": {}}}),
            "actions.custom.executor.argv[0]",
        ),
        (
            _with({"executor": COMMAND, "params": {"service": {"required": False}}}),
            "actions.custom.executor.argv[1]",
        ),
        (
            _with({"executor": {**COMMAND, "argv": ["t", "{service!r}"]}, "params": {"service": {}}}),
            "actions.custom.executor.argv[1]",
        ),
        (
            _with({"executor": {**COMMAND, "enabled": "yes"}, "params": {"service": {}}}),
            "actions.custom.executor.enabled",
        ),
        (_with({}, name="Rm-Rf"), "actions.Rm-Rf"),
        ({"actions": {"custom": "not a table"}}, "actions.custom"),
    ],
)
def test_config_errors_name_the_exact_key(tables: dict[str, Any], key: str | None) -> None:
    with pytest.raises(ConfigError) as err:
        Catalog.load(tables)
    if key is None:  # the two cases whose key is in the message below
        key = {
            "scale_replicas": "actions.scale_replicas.params.replicas.max",
            "custom": "actions.custom.executor.url",
        }[next(iter(tables["actions"]))]
    assert err.value.setting == key, str(err.value)


def test_config_file_overrides_merge_key_by_key(tmp_path: Path) -> None:
    config = tmp_path / "warroom.toml"
    config.write_text(
        """
[actions.rollback_deployment.executor]
kind = "command"
argv = ["kubectl", "rollout", "undo", "deployment/{service}", "-n", "{namespace}"]
enabled = true
pass_env = ["KUBECONFIG"]

[actions.purge_cdn]
title = "Purge a CDN path"
risk = "low"
prechecks = ["The stale content is cached at the edge."]
executor = { kind = "webhook", url = "https://ops.example.com/hooks/purge", secret_env = "PURGE_HMAC" }
[actions.purge_cdn.params.path]
pattern = "/[a-z0-9/_.-]{1,200}"
[actions.purge_cdn.params.tier]
type = "enum"
choices = ["edge", "origin"]
default = "edge"
"""
    )
    catalog = Catalog.from_settings(load_settings(env={"WARROOM_CONFIG": str(config)}))
    rollback = catalog["rollback_deployment"]
    assert rollback.prechecks == Catalog.default()["rollback_deployment"].prechecks  # kept
    assert rollback.argv({"service": "checkout"}) == [
        "kubectl",
        "rollout",
        "undo",
        "deployment/checkout",
        "-n",
        "default",
    ]
    plan = rollback.plan({"service": "checkout", "namespace": "prod"})
    assert '["kubectl", "rollout", "undo", "deployment/checkout", "-n", "prod"]' in plan
    assert "environment: PATH, LANG, KUBECONFIG" in plan and "DISABLED" not in plan
    assert "1. The incident started at or shortly after" in plan and "risk: medium" in plan

    purge = catalog["purge_cdn"]
    assert catalog.validate("purge_cdn", {"path": "/img/logo.png"}) == {
        "path": "/img/logo.png",
        "tier": "edge",
    }
    assert "must be one of edge, origin" in catalog.check("purge_cdn", {"path": "/a", "tier": "all"})[0]
    assert "must match" in catalog.check("purge_cdn", {"path": "/A; rm"})[0]
    plan = purge.plan({"path": "/img"})
    assert "POST https://ops.example.com/hooks/purge" in plan and "$PURGE_HMAC" in plan
    body = json.loads(plan.split("JSON body: ", 1)[1].splitlines()[0])
    assert body["params"] == {"path": "/img", "tier": "edge"} and body["action"] == "purge_cdn"
    assert list(catalog)[: len(BUILTINS)] == list(BUILTINS)  # built-ins first, then additions


def test_plan_refuses_invalid_params_and_flags_disabled_commands() -> None:
    catalog = Catalog.load(
        _with({"executor": {**COMMAND, "enabled": False}, "params": {"service": {}}}, name="restart")
    )
    plan = catalog["restart"].plan({"service": "checkout"})
    assert "DISABLED" in plan and '["tool", "checkout"]' in plan
    with pytest.raises(InputError):
        catalog["restart"].plan({"service": "$(id)"})


def test_catalog_and_actions_are_immutable() -> None:
    catalog = Catalog.default()
    with pytest.raises(TypeError):
        catalog["x"] = catalog["open_runbook"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        catalog["open_runbook"].risk = "high"  # type: ignore[misc]
    assert json.loads(json.dumps(catalog.to_json()))[0]["params"][0]["pattern"] == SAFE_STRING
