"""Human durations and times for the CLI: ``90m``, ``24h``, ``1h30m``, ``7d``; ISO-8601 or ``now-2h``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from warroom.errors import InputError

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta:
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise InputError(
            f"invalid duration {text!r}; use e.g. 90m, 24h, 1h30m, 7d", reason="invalid_duration"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``now``, ``now-2h``, or ISO-8601 (naive times are UTC)."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    if cleaned == "now":
        return now
    if cleaned.startswith("now-"):
        return now - parse_duration(cleaned[4:])
    try:
        parsed = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"invalid time {text!r}; use ISO-8601 or now-2h", reason="invalid_time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
