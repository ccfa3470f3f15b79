"""ConfigTable: a config table read key by key, every error naming the exact dotted key."""

from __future__ import annotations

from typing import Any

import pytest

from warroom.config_table import ConfigTable
from warroom.errors import ConfigError


def _error(call: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call()
    return info.value


def test_reads_keys_and_names_them_by_path() -> None:
    t = ConfigTable("actions.scale.params.replicas", {"type": "int", "required": True})
    assert t.key("max") == "actions.scale.params.replicas.max"
    assert t.text("type") == "int"
    assert t.flag("required") is True
    assert t.get("max") is None
    t.done()  # every key was read


def test_not_a_table_names_its_type_by_default() -> None:
    err = _error(lambda: ConfigTable("routes[0]", ["a"]))
    assert err.setting == "routes[0]"
    assert "must be a table, not list" in str(err)


def test_text_required_default_and_blank() -> None:
    t = ConfigTable("receivers.x", {"type": "  ", "host": 5})
    assert t.text("missing", "fallback") == "fallback"
    err = _error(lambda: t.text("absent"))
    assert err.setting == "receivers.x.absent" and "is required" in str(err)
    err = _error(lambda: t.text("type", "slack"))
    assert err.setting == "receivers.x.type" and "must be a non-empty string, not '  '" in str(err)
    assert "not 5" in str(_error(lambda: t.text("host")))


def test_blank_with_default_when_the_subclass_allows_it() -> None:
    class Lenient(ConfigTable):
        allow_blank_with_default = True

    t = Lenient("actions.a", {"description": "", "title": ""})
    assert t.text("description", "") == ""
    assert _error(lambda: t.text("title")).setting == "actions.a.title"


def test_flag() -> None:
    t = ConfigTable("routes[1]", {"continue": "yes"})
    assert t.flag("absent") is False
    assert t.flag("absent", True) is True
    err = _error(lambda: t.flag("continue"))
    assert err.setting == "routes[1].continue" and "must be true or false, not 'yes'" in str(err)


def test_done_reports_the_first_unread_key_and_the_known_ones() -> None:
    t = ConfigTable("teams.payments", {"receivers": [], "owner": "bob", "zz": 1})
    t.get("receivers")
    err = _error(t.done)
    assert err.setting == "teams.payments.owner"
    assert "unknown key (known: receivers)" in str(err)


def test_subclass_chooses_how_values_are_shown() -> None:
    class Short(ConfigTable):
        def show(self, value: Any) -> str:
            return "<value>"

        def show_table(self, raw: object) -> str:
            return "<raw>"

    assert "not <raw>" in str(_error(lambda: Short("a", 3)))
    assert "not <value>" in str(_error(lambda: Short("a", {"on": 1}).flag("on")))
