"""One error tree for the whole product, translated at the boundary.

::

    WarroomError                 base; ``str(err)`` is one clear line for a human
    ├── ConfigError              a setting is invalid or a config file is missing (names the setting)
    ├── InputError               bad input from a user or from telemetry; carries a short ``reason``
    │   └── DecodeError          a Kafka record / file line could not be decoded into OTLP
    ├── StoreError               ClickHouse or the state store failed; ``retryable`` says whether to retry
    ├── BrokerError              Kafka could not be reached or refused a request
    ├── Forbidden                the actor lacks the role, or may not act on their own proposal
    └── Conflict                 the subject is not in a state that allows this (expired, already done)

The CLI prints ``error: <message>`` and exits non-zero; the API answers 4xx/5xx JSON. Foreign
exceptions are re-raised ``from exc`` so the cause stays visible in logs.
"""

from __future__ import annotations


class WarroomError(Exception):
    """Base of every error warroom raises on purpose."""

    exit_code = 1


class ConfigError(WarroomError):
    """A setting has an invalid value, or a configuration file was asked for and is missing."""

    exit_code = 2

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")


class InputError(WarroomError):
    """Input that warroom will not accept; ``reason`` is a short machine-readable code."""

    exit_code = 3

    def __init__(self, message: str, reason: str = "invalid_input") -> None:
        self.reason = reason
        super().__init__(message)


class DecodeError(InputError):
    """An OTLP payload that cannot be decoded (truncated protobuf, bad JSON, wrong encoding)."""

    def __init__(self, message: str, reason: str = "undecodable") -> None:
        super().__init__(message, reason)


class StoreError(WarroomError):
    """A storage operation failed. ``retryable`` is True for outages (network, overload)."""

    exit_code = 4

    def __init__(self, message: str, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class BrokerError(WarroomError):
    """Kafka is unreachable or refused a request."""

    exit_code = 5


class Forbidden(WarroomError):
    """The actor may not do this: a missing role, self-approval, a second vote by the same person."""

    exit_code = 6

    def __init__(self, message: str, reason: str = "forbidden") -> None:
        self.reason = reason
        super().__init__(message)


class Conflict(WarroomError):
    """The subject's state does not allow this transition (already approved, expired, executed)."""

    exit_code = 7

    def __init__(self, message: str, reason: str = "conflict") -> None:
        self.reason = reason
        super().__init__(message)
