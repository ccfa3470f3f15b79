"""Console sessions from a token login: a signed cookie naming the user, re-checked on every request.

A person signs in once with their API token (``warroom users add NAME --role ROLE`` printed it);
the console checks it with :meth:`ApiContext.authenticate` and from then on recognises the browser
by a cookie. The cookie holds no credential: only the user's name, the first characters of the
token they signed in with (``token_hint``), when they signed in, the session's CSRF token and any
flash messages, signed with :mod:`itsdangerous` so it cannot be altered or forged.

Every request looks the user up again (:func:`current_user`), so the session ends as soon as the
user is revoked, their token is rotated (the hint no longer matches) or :data:`MAX_AGE_S` has passed
since sign-in; a changed role takes effect on the next click. The cookie is ``HttpOnly`` (no script
reads it), ``SameSite=Lax`` and ``Secure`` when the console is reached over HTTPS.

The cookie is the whole session (nothing is stored on the server), so signing out forgets it in
this browser but cannot recall a copy taken from it: ending every session of a user is revoking or
rotating their token, which every copy is checked against.

The signing key is ``$WARROOM_HOME/console-secret``: 32 random bytes (hex) made on first use with
mode 0600, so sessions survive restarts and every process sharing the home shares them. Deleting
the file signs everybody out.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app import auth
from app.console import csrf
from warroom.errors import ConfigError
from warroom.statedb import StateDB

__all__ = [
    "COOKIE",
    "MAX_AGE_S",
    "SECRET_FILE",
    "Session",
    "Sessions",
    "current_user",
    "load_secret",
]

log = logging.getLogger("warroom.console")

COOKIE = "warroom_console"
SECRET_FILE = "console-secret"
MAX_AGE_S = 12 * 3600
"""A session lasts this long from sign-in, however active: then the token is asked for again."""

_MIN_SECRET = 32  # characters of the secret file: 128 bits of hex at the very least
_MAX_FLASHES = 5  # a cookie is at most 4 KB: old messages give way to new ones


def load_secret(home: Path, configured: str = "") -> bytes:
    """The console's signing key: ``configured`` (``WARROOM_CONSOLE_SECRET``) when given, else
    ``home/console-secret``, made (0600) when missing.

    Made in a private temporary file and hard-linked into place, so two processes starting at once
    agree on one key and neither ever reads a half-written file.
    """
    if configured:
        if len(configured) < _MIN_SECRET:
            raise ConfigError(
                "WARROOM_CONSOLE_SECRET", f"shorter than {_MIN_SECRET} characters: too easy to guess"
            )
        return configured.encode()
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("console secret was readable by others; made it 0600", extra={"path": str(path)})
        path.chmod(0o600)
    secret = path.read_text().strip()
    if len(secret) < _MIN_SECRET:
        raise ConfigError(
            "WARROOM_HOME", f"{path} holds a console secret shorter than {_MIN_SECRET} characters"
        )
    return secret.encode()


@dataclass
class Session:
    """One browser's session as this request sees it; ``dirty`` when the cookie must be re-sent."""

    csrf: str
    user: str = ""
    hint: str = ""
    login_at: float = 0.0
    flashes: list[tuple[str, str]] = field(default_factory=list)
    dirty: bool = False

    def flash(self, kind: str, text: str) -> None:
        """A message for the next page shown (``kind``: ``ok``, ``error`` or ``info``)."""
        self.flashes = [*self.flashes, (kind, text)][-_MAX_FLASHES:]
        self.dirty = True

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        if taken:
            self.dirty = True
        return taken

    def login(self, user: auth.User, now: float) -> None:
        """Start a signed-in session: a new CSRF token, so one issued before sign-in is worthless."""
        self.user, self.hint, self.login_at = user.name, user.token_hint, now
        self.csrf = csrf.new_token()
        self.dirty = True

    def logout(self) -> None:
        self.user, self.hint, self.login_at = "", "", 0.0
        self.csrf = csrf.new_token()
        self.dirty = True

    def to_json(self) -> dict[str, Any]:
        return {"u": self.user, "h": self.hint, "t": self.login_at, "c": self.csrf, "f": self.flashes}

    @classmethod
    def from_json(cls, data: Any) -> Session | None:
        try:
            flashes = [(str(k), str(t)) for k, t in data.get("f", [])]
            session = cls(str(data["c"]), str(data["u"]), str(data["h"]), float(data["t"]), flashes)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        return session if session.csrf else None


class Sessions:
    """Reads and writes the signed session cookie."""

    def __init__(self, secret: bytes, max_age_s: int = MAX_AGE_S) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="warroom.console.session")
        self.max_age_s = max_age_s

    def read(self, request: Request) -> Session:
        """The request's session, or a new anonymous one (with a CSRF token for the login form)."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                session = Session.from_json(self._signer.loads(raw, max_age=self.max_age_s))
            except BadSignature:  # tampered, signed with another key, or older than max_age
                session = None
            if session is not None:
                return session
        return Session(csrf.new_token(), dirty=True)

    def write(self, request: Request, response: Response, session: Session) -> None:
        """Send the cookie again when the session changed."""
        if not session.dirty:
            return
        response.set_cookie(
            COOKIE,
            self._signer.dumps(session.to_json()),
            max_age=self.max_age_s,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )


def current_user(
    state: StateDB, session: Session, now: float, max_age_s: int = MAX_AGE_S
) -> auth.User | None:
    """The session's user as the state database knows them now, or None (and the session ended)
    when they were revoked, their token rotated or the session is older than ``max_age_s``."""
    if not session.user:
        return None
    found = next((u for u in auth.users(state) if u.name == session.user), None)
    why = ""
    if found is None or found.revoked:
        why = "your access was revoked"
    elif found.token_hint != session.hint:
        why = "your token was replaced"
    elif now - session.login_at > max_age_s:
        why = f"it is more than {max_age_s / 3600:g} hours old"
    if why:
        session.logout()
        session.flash("info", f"Your session ended because {why}; sign in again.")
        return None
    return found
