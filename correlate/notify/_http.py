"""One HTTP POST turned into an Attempt: the retry classification every HTTP receiver shares."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from correlate.notify.base import Attempt, IncidentNotice, attempt, describe

_BODY_CHARS = 300  # how much of an error response body an attempt keeps


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retryable_status(code: int) -> bool:
    return code == 429 or code >= 500


def post(
    receiver: str,
    notice: IncidentNotice,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    ok_statuses: range = range(200, 300),
) -> Attempt:
    """POST ``content``; network errors and timeouts become retryable failed attempts, never raise."""
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        return attempt(receiver, notice, ok=False, error=f"timeout: {describe(exc)}", retryable=True)
    except (httpx.TransportError, OSError) as exc:
        return attempt(receiver, notice, ok=False, error=describe(exc), retryable=True)
    code = response.status_code
    if code in ok_statuses:
        return attempt(receiver, notice, ok=True, http_status=code)
    body = response.text[:_BODY_CHARS].strip()
    return attempt(
        receiver,
        notice,
        ok=False,
        http_status=code,
        error=f"HTTP {code}" + (f": {body}" if body else ""),
        retryable=retryable_status(code),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
