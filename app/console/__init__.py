"""The web console: server-rendered pages over the same components as the CLI and the JSON API.

Jinja2 templates with a little plain JavaScript, every asset shipped in this package (no CDN, so
the console works on an isolated network and a third party cannot change what runs in it). The
composition root adds it to the API application::

    app = create_app(settings, store, on_accepted)
    mount_console(app, ctx)

Pages (all need a signed-in user; forms POST with the session's CSRF token):

==========================================  =================================================
``/login`` ``/logout``                      sign in with an API token; sign out
``/incidents``                              the list, refreshing itself (``/incidents/rows``)
``/incidents/{id}``                         timeline, charts, root causes, summary, alerts,
                                            remediation cards
``POST /incidents/{id}/ack|resolve``        responder
``/remediations`` ``/remediations/{id}``    the approval queue; one proposal
``POST /remediations/{id}/approve|reject``  approver
``POST /remediations/{id}/execute``         responder (approved proposals only)
``/alerts``                                 the alert explorer
``/map``                                    the service map from the learned topology
``/digest``                                 the SRE digest of a period
``/static/…``                               console.css, console.js
==========================================  =================================================

Sessions are signed cookies (:mod:`app.console.session`), keyed by ``$WARROOM_HOME/console-secret``.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from app.api.context import ApiContext
from app.console.routes import console_router
from app.console.session import Sessions, load_secret
from app.console.web import Console

__all__ = ["mount_console"]


def mount_console(app: FastAPI, ctx: ApiContext, *, secret: bytes | None = None) -> None:
    """Add the console's routes and ``/static/`` to ``app``.

    ``secret`` signs the session cookies; by default it is ``WARROOM_CONSOLE_SECRET`` (what API
    replicas behind one load balancer must share) or else read from (or made in)
    ``$WARROOM_HOME/console-secret``.
    """
    if secret is None:
        secret = load_secret(ctx.settings.home, ctx.settings.console_secret)
    console = Console(ctx, Sessions(secret))
    app.include_router(console_router(console))
    app.mount("/static", StaticFiles(packages=[("app.console", "static")]), name="console-static")
