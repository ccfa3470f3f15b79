"""CSRF protection for the console's forms: a per-session token in a hidden field.

The console authenticates with a cookie, and a browser sends cookies with a form another site
makes it post, so a cookie alone cannot tell "alice clicked Approve" from "a page alice visited
posted the approve form". Every POST therefore carries the session's CSRF token in the hidden field
:data:`FIELD`; the token lives inside the signed session cookie, which another site can neither
read nor forge, so only pages the console rendered can post. The comparison is constant-time.
``SameSite=Lax`` on the cookie is a second, independent defence, not the only one.
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["FIELD", "CsrfRejected", "check", "new_token"]

FIELD = "csrf_token"
"""The form field every console POST carries."""


class CsrfRejected(Exception):
    """The form's token is missing or is not this session's: answered 403, nothing changes."""


def new_token() -> str:
    """A fresh token (256 bits, URL-safe): one per session, replaced at login and logout."""
    return secrets.token_urlsafe(32)


def check(expected: str, submitted: object) -> None:
    """Raise :class:`CsrfRejected` unless ``submitted`` is the session's token ``expected``."""
    if not expected or not isinstance(submitted, str) or not submitted:
        raise CsrfRejected("the form carries no valid CSRF token")
    if not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise CsrfRejected("the form's CSRF token is not this session's")
