"""Redact secrets and personal data from anything that may leave the machine (an LLM prompt, a
notification), keeping the rest readable.

Telemetry carries what applications log: bearer tokens in request dumps, passwords in connection
strings, customer e-mail addresses. Before evidence is sent to a model, every string in it goes
through a :class:`Redactor`, which replaces each match with ``[REDACTED:<kind>]`` and counts what it
removed (the counts are recorded; the values never are). The built-in rules cover common token
formats, ``key=value`` secrets, URL credentials, private-key blocks, e-mail addresses and card
numbers (Luhn-checked, so order ids stay); operators add their own patterns from the config file.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from warroom.errors import ConfigError

__all__ = ["BUILTIN_RULES", "Redaction", "Redactor", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of sensitive text: a pattern, and which group holds the value (0: the whole match)."""

    kind: str
    pattern: re.Pattern[str]
    group: int = 0


def _rule(kind: str, pattern: str, group: int = 0, flags: int = 0) -> Rule:
    return Rule(kind, re.compile(pattern, flags), group)


BUILTIN_RULES: tuple[Rule, ...] = (
    _rule(
        "private_key",
        r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----.*?(?:-----END (?:[A-Z ]+ )?PRIVATE KEY-----|$)",
        flags=re.S,
    ),
    _rule("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    _rule("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    _rule("github_token", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    _rule("slack_token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    _rule("bearer_token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})", group=1),
    _rule("url_password", r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@", group=1, flags=re.I),
    _rule(
        "secret_value",
        r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|auth)"
        r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;&]{3,})",
        group=1,
    ),
    _rule("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    _rule("card_number", r"\b(?:\d[ -]?){12,18}\d\b"),
)


def _luhn(digits: str) -> bool:
    total, double = 0, False
    for ch in reversed(digits):
        n = int(ch)
        if double:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
        double = not double
    return total % 10 == 0


@dataclass
class Redaction:
    """What one redaction pass removed: counts per kind (never the values)."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Redactor:
    """Applies :data:`BUILTIN_RULES` plus the operator's extra patterns, in that order."""

    def __init__(self, extra: Mapping[str, str] | None = None, builtin: bool = True) -> None:
        rules = list(BUILTIN_RULES if builtin else ())
        for kind, pattern in (extra or {}).items():
            try:
                rules.append(_rule(kind, pattern))
            except re.error as exc:
                raise ConfigError(f"redact.{kind}", f"not a valid regular expression: {exc}") from exc
        self.rules = tuple(rules)

    def text(self, value: str, report: Redaction | None = None) -> str:
        """``value`` with every sensitive match replaced by ``[REDACTED:<kind>]``."""
        for rule in self.rules:
            value = rule.pattern.sub(functools.partial(self._replace, rule=rule, report=report), value)
        return value

    def _replace(self, match: re.Match[str], rule: Rule, report: Redaction | None) -> str:
        whole = match.group(0)
        secret = match.group(rule.group)
        if rule.kind == "card_number" and not _luhn(re.sub(r"[ -]", "", secret)):
            return whole
        if secret.startswith("[REDACTED:"):
            return whole
        if report is not None:
            report.counts[rule.kind] += 1
        start, end = match.start(rule.group) - match.start(0), match.end(rule.group) - match.start(0)
        return whole[:start] + f"[REDACTED:{rule.kind}]" + whole[end:]

    def value(self, data: Any, report: Redaction | None = None) -> Any:
        """Redact every string inside JSON-like data (dict keys too), returning a new structure."""
        if isinstance(data, str):
            return self.text(data, report)
        if isinstance(data, Mapping):
            return {self.text(str(k), report): self.value(v, report) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.value(v, report) for v in data]
        return data

    def texts(self, values: Iterable[str], report: Redaction | None = None) -> list[str]:
        return [self.text(v, report) for v in values]
