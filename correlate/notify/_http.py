"""One HTTP POST turned into an Attempt: the retry classification every HTTP receiver shares."""

from __future__ import annotations

import httpx

from correlate.notify.base import Attempt, IncidentNotice, attempt, describe
from warroom.retry import parse_retry_after

_BODY_CHARS = 300  # how much of an error response body an attempt keeps


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
