"""What every console request shares: who is asking (:class:`Visit`), the checks in front of each
route, rendering and redirecting with the session cookie, and errors as HTML pages.

The checks are FastAPI dependencies, so a route states what it needs in its signature and cannot
forget a step: :meth:`Console.signed_in` for pages (no session → the login page), and
:meth:`Console.posted` for every form POST, which verifies the CSRF token *before* anything else
runs and then the signed-in user. Which role an action needs is checked on the server by the route
(:meth:`Visit.require`); hiding a button is only a convenience.

Errors are pages, not JSON: the routes' class (:func:`console_route_class`) turns the error tree
into an HTML answer with the status the JSON API would use (404 unknown, 403 forbidden, 409
conflict, 503 store down), so a console route never answers with a stack trace or with the API's
JSON error shape. Every answer
carries a strict Content-Security-Policy (scripts and styles only from ``/static/``), no caching,
and no framing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from app import auth
from app.api.context import ApiContext
from app.console import csrf
from app.console.session import Session, Sessions, current_user
from app.console.templating import environment
from warroom.errors import Conflict, Forbidden, InputError, StoreError, WarroomError

__all__ = ["Console", "LoginRequired", "Posted", "Visit", "console_route_class", "local_path"]

log = logging.getLogger("warroom.console")

_VISIT = "console_visit"  # request.state attribute holding the request's Visit
_NOT_FOUND = ("not_found", "unknown_incident")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No signed-in user: a page redirects to the login page, a partial (``fetch``) gets 401."""

    def __init__(self, partial: bool = False) -> None:
        self.partial = partial
        super().__init__("sign in first")


@dataclass
class Visit:
    """One request: its session and the user signed in (None on the login page)."""

    request: Request
    session: Session
    user: auth.User | None

    def allows(self, role: str) -> bool:
        return self.user is not None and self.user.allows(role)

    def require(self, role: str) -> auth.User:
        """The user, or Forbidden when their role is below ``role``."""
        if self.user is None:
            raise LoginRequired()
        if not self.user.allows(role):
            raise Forbidden(
                f"{self.user.name} is a {self.user.role}; this needs the {role} role", reason="role"
            )
        return self.user


@dataclass
class Posted:
    """A form POST whose CSRF token matched: the visit and the form's fields."""

    visit: Visit
    form: FormData

    def text(self, name: str, limit: int = 2000) -> str:
        """A text field, stripped and cut to ``limit`` characters ("" when absent or a file)."""
        value = self.form.get(name)
        return value.strip()[:limit] if isinstance(value, str) else ""


def local_path(target: str | None, default: str = "/incidents") -> str:
    """``target`` when it is a path on this site, else ``default``: a ``next=`` parameter must not
    send a freshly signed-in user to another site (``//evil.example``, ``https://…``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 for c in target):
        return default
    return target


async def _read_form(request: Request) -> FormData:
    return await request.form()


class Console:
    """The console's state: the API context, the session cookie and the templates."""

    def __init__(
        self, ctx: ApiContext, sessions: Sessions, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.wall_clock = wall_clock  # session ages: real time, whatever ctx.clock says about data

    # --- dependencies ---------------------------------------------------------------------------

    def visit(self, request: Request, session: Session | None = None) -> Visit:
        """The request's session and user (re-checked against the state database)."""
        session = session or self.sessions.read(request)
        user = current_user(self.ctx.state, session, self.wall_clock(), self.sessions.max_age_s)
        found = Visit(request, session, user)
        setattr(request.state, _VISIT, found)
        return found

    def signed_in(self, request: Request) -> Visit:
        """A page's dependency: the visit of a signed-in user, else :class:`LoginRequired`."""
        found = self.visit(request)
        if found.user is None:
            raise LoginRequired(partial=request.headers.get("x-requested-with") == "fetch")
        return found

    def posted(self, request: Request, form: Annotated[FormData, Depends(_read_form)]) -> Posted:
        """A form POST's dependency: the CSRF token first (403 when wrong), then the user."""
        session = self.sessions.read(request)
        setattr(request.state, _VISIT, Visit(request, session, None))
        csrf.check(session.csrf, form.get(csrf.FIELD))
        found = self.visit(request, session)
        if found.user is None and request.url.path != "/login":
            raise LoginRequired()
        return Posted(found, form)

    # --- answers --------------------------------------------------------------------------------

    def render(self, visit: Visit, template: str, http_status: int = 200, **values: Any) -> HTMLResponse:
        """A page: the template with the user, their flash messages and the CSRF token."""
        page = environment().get_template(template)
        body = page.render(
            user=visit.user,
            flashes=visit.session.take_flashes(),
            csrf_field=csrf.FIELD,
            csrf_token=visit.session.csrf,
            path=visit.request.url.path,
            allows=visit.allows,
            **values,
        )
        return self.finish(visit, HTMLResponse(body, status_code=http_status))

    def fragment(self, visit: Visit, template: str, **values: Any) -> HTMLResponse:
        """Part of a page (no layout, no flash messages taken) for a script to swap in."""
        body = environment().get_template(template).render(allows=visit.allows, **values)
        return self.finish(visit, HTMLResponse(body))

    def redirect(self, visit: Visit, url: str) -> RedirectResponse:
        """303 See Other: after a POST the browser GETs ``url`` (a reload does not re-post)."""
        return self.finish(visit, RedirectResponse(url, status_code=303))

    def finish(self, visit: Visit, response: Any) -> Any:
        self.sessions.write(visit.request, response, visit.session)
        return response

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        found = getattr(request.state, _VISIT, None)
        if not isinstance(found, Visit):
            found = Visit(request, self.sessions.read(request), None)
        return self.render(found, "error.html.j2", http_status=status, title=title, message=message)

    def answer_error(self, request: Request, exc: Exception) -> Response:
        """The HTML answer to an error raised by a console route or its dependencies."""
        if isinstance(exc, LoginRequired):
            found = getattr(request.state, _VISIT, None)
            session = found.session if isinstance(found, Visit) else self.sessions.read(request)
            visit = Visit(request, session, None)
            if exc.partial:
                return self.finish(visit, PlainTextResponse("sign in again", status_code=401))
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.method != "GET":
                target = request.headers.get("referer", "") or "/incidents"
                target = local_path(_path_of(target))
            return self.redirect(visit, "/login?next=" + quote(target, safe="/"))
        if isinstance(exc, csrf.CsrfRejected):
            message = (
                "This form was not sent by a page of this console, or your session changed since the "
                "page was loaded (signed out, or signed in again). Nothing was changed; reload the page "
                "and try again."
            )
            return self.error_page(request, 403, "Form rejected (CSRF check)", message)
        assert isinstance(exc, WarroomError)
        if isinstance(exc, InputError):
            status = 404 if exc.reason in _NOT_FOUND else 400
            title = "Not found" if status == 404 else "Invalid request"
        elif isinstance(exc, Forbidden):
            status, title = 403, "Not allowed"
        elif isinstance(exc, Conflict):
            status, title = 409, "Not possible now"
        elif isinstance(exc, StoreError):
            log.error("console: store unavailable", extra={"path": request.url.path, "error": str(exc)})
            status, title = 503, "Store unavailable"
            return self.error_page(
                request, status, title, "warroom's store is unavailable; try again in a moment."
            )
        else:
            log.error("console: request failed", extra={"path": request.url.path, "error": str(exc)})
            return self.error_page(request, 500, "Internal error", "internal error (see the log)")
        return self.error_page(request, status, title, str(exc))


def _path_of(url: str) -> str:
    """The path and query of a same-site Referer (the host is dropped; another site's is refused
    by :func:`local_path` afterwards, since only the path is kept)."""
    if url.startswith("/"):
        return url
    rest = url.split("://", 1)[1] if "://" in url else ""
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/incidents"


def console_route_class(console: Console) -> type[APIRoute]:
    """An :class:`APIRoute` whose answers get the security headers and whose errors become pages."""

    class ConsoleRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    response = await handler(request)
                except (LoginRequired, csrf.CsrfRejected, WarroomError) as exc:
                    response = console.answer_error(request, exc)
                except Exception:  # a bug: a page saying so, the traceback in the log only
                    log.exception("console: unexpected error", extra={"path": request.url.path})
                    response = console.error_page(
                        request, 500, "Internal error", "internal error (see the log)"
                    )
                for name, value in SECURITY_HEADERS.items():
                    response.headers.setdefault(name, value)
                return response

            return answer

    return ConsoleRoute
