"""Generic JSON webhook signed with HMAC-SHA256.

The body is ``IncidentNotice.to_json()`` as compact JSON; ``X-Warroom-Signature`` is
``sha256=<hex HMAC-SHA256 of the raw body bytes with the shared secret>`` and
``X-Warroom-Timestamp`` the send time in Unix seconds. The signature covers the body only, so the
timestamp is informative, not replay protection: receivers that need that should dedupe on
``incident_id`` + ``status``. Verify with :func:`verify_signature` over the *raw* bytes received,
before parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field

from correlate.notify._http import post
from correlate.notify.base import Attempt, IncidentNotice
from warroom.errors import ConfigError

SIGNATURE_HEADER = "X-Warroom-Signature"
TIMESTAMP_HEADER = "X-Warroom-Timestamp"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Warroom-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of the raw ``body`` under ``secret`` (constant time)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


def webhook_body(notice: IncidentNotice) -> bytes:
    return json.dumps(notice.to_json(), separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class WebhookReceiver:
    """POSTs the signed notice to ``url``. The secret is kept out of ``repr``."""

    url: str
    secret: str = field(repr=False)
    name: str = "webhook"
    timeout: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.secret:
            raise ConfigError(
                "webhook.secret", "must not be empty (the receiver cannot verify unsigned bodies)"
            )

    def send(self, notice: IncidentNotice) -> Attempt:
        body = webhook_body(notice)
        headers = {
            **dict(self.headers),
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            TIMESTAMP_HEADER: str(int(time.time())),
        }
        return post(self.name, notice, self.url, content=body, headers=headers, timeout=self.timeout)
