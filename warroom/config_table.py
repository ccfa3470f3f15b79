"""Config tables read key by key, so that every error names the exact key.

Why: the config file's free-form tables (``[receivers.*]``, ``[teams.*]``, ``[[routes]]``,
``[actions.*]`` …) are validated at start-up by the stage that owns them, and an operator fixing a
typo needs to know *which* key is wrong — ``actions.scale_replicas.params.replicas.max`` or
``receivers.payments-pd.routing_key_env``, not "invalid action". :class:`ConfigTable` wraps one
table at its dotted ``path``: each reader records the key it read and raises a
:class:`~warroom.errors.ConfigError` anchored at ``path.key``, and :meth:`ConfigTable.done` then
rejects any key nobody read, so a misspelt key is an error rather than silently ignored.

The stages subclass it for the readers only their tables need (secrets from the environment, URLs,
numbers in a range …), and to choose how a bad value is quoted in a message (:meth:`ConfigTable.show`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from warroom.errors import ConfigError

__all__ = ["ConfigTable"]


class ConfigTable:
    """One config table read key by key; keys never read are reported as unknown by :meth:`done`.

    ``path`` is the table's dotted name (``routes[1]``, ``actions.restart_service.executor``), and
    ``raw`` its parsed TOML value, which must be a mapping.
    """

    #: Whether :meth:`text` accepts a blank (empty or whitespace-only) string for a key that has a
    #: default; a key without a default must always be non-blank.
    allow_blank_with_default: ClassVar[bool] = False

    def __init__(self, path: str, raw: object) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(path, f"must be a table, not {self.show_table(raw)}")
        self.path = path
        self.raw: Mapping[str, Any] = raw
        self._read: set[str] = set()

    def show(self, value: Any) -> str:
        """``value`` as quoted in an error message (default: its repr)."""
        return repr(value)

    def show_table(self, raw: object) -> str:
        """What a non-table ``raw`` was, for the "must be a table" error (default: its type's name)."""
        return type(raw).__name__

    def key(self, name: str) -> str:
        """The dotted name of key ``name`` in this table, as errors report it."""
        return f"{self.path}.{name}"

    def get(self, name: str) -> Any:
        """The raw value of ``name`` (``None`` when absent), marking it as known."""
        self._read.add(name)
        return self.raw.get(name)

    def text(self, name: str, default: str | None = None) -> str:
        """A non-empty string; without a ``default`` the key is required."""
        value = self.get(name)
        if value is None:
            if default is None:
                raise ConfigError(self.key(name), "is required")
            return default
        blank_ok = self.allow_blank_with_default and default is not None
        if not isinstance(value, str) or (not blank_ok and not value.strip()):
            raise ConfigError(self.key(name), f"must be a non-empty string, not {self.show(value)}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        """``true`` or ``false``."""
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, not {self.show(value)}")
        return value

    def done(self) -> None:
        """Raise on the first key (in sorted order) that no reader asked for."""
        unknown = sorted(set(self.raw) - self._read)
        if unknown:
            raise ConfigError(self.key(unknown[0]), f"unknown key (known: {', '.join(sorted(self._read))})")
