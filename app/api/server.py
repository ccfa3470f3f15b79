"""The HTTP application and the uvicorn server that runs it, in the foreground or in a thread.

:func:`create_app` wires the routers to an :class:`~app.api.context.ApiContext` (no globals, so
tests and ``warroom serve`` build it the same way; ``create_app(settings, store)`` still works and
builds the context from settings). :class:`ServerThread` runs uvicorn in a background
thread: the embedded ClickHouse allows one process per data path, so tests must serve from the
process that holds the store, and a long-running command can serve next to its other loops.
Stopping sets uvicorn's ``should_exit``, which its main loop checks every 0.1 s; it then drains
in-flight requests and returns. :func:`serve` runs in the foreground with uvicorn's signal handling.

Routes (``/openapi.json`` lists them; every ``/api/v1`` one needs a bearer token, :mod:`app.api.deps`),
with the least role each needs:

- none: ``GET /healthz``, ``GET /readyz``, ``/openapi.json``, ``/docs``;
- :mod:`~app.api.routes_incidents`: ``GET /api/v1/incidents[/{id}[/explain]]`` viewer;
  ``POST …/{id}/ack|resolve|merge|split`` responder;
- :mod:`~app.api.routes_summaries`: ``GET …/{id}/evidence|summary``, ``GET /api/v1/digest`` viewer;
  ``POST …/{id}/summarize`` responder;
- :mod:`~app.api.routes_alerts`: ``GET /api/v1/alerts`` viewer; :mod:`~app.api.intake`:
  ``POST /api/v1/alerts[/alertmanager]`` responder;
- :mod:`~app.api.routes_topology`: ``GET /api/v1/topology`` viewer;
- :mod:`~app.api.routes_remediations`: ``GET /api/v1/remediations[/{id}]``, ``GET /api/v1/catalog``
  viewer; ``POST /api/v1/remediations`` responder; ``POST …/{id}/approve|reject|execute`` approver;
- :mod:`~app.api.routes_audit`: ``GET /api/v1/audit[/verify]`` admin;
- :mod:`~app.api.routes_users`: ``GET|POST /api/v1/users``, ``POST …/{name}/revoke|token`` admin.

Every change a person makes through the API is appended to the audit log with the token's user as
the actor, by the same component the CLI uses. Alert intake is authorised but not audited: alerts
are telemetry, arriving by the thousand and stored with their source in the ``alerts`` table, and a
hash-chained append per webhook would put the audit log's single writer lock in the path of every
alert.

uvicorn gets ``log_config=None`` so it does not reconfigure logging: its records propagate to the
process's (JSON) handlers like every other warroom log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import warroom
from app.api import (
    routes_alerts,
    routes_audit,
    routes_incidents,
    routes_remediations,
    routes_summaries,
    routes_topology,
    routes_users,
)
from app.api.context import ApiContext
from app.api.deps import MAX_BODY_BYTES, Ctx, require
from app.api.errors import RETRY_AFTER_S, error_response, install_error_handlers
from app.api.intake import Intake, OnAccepted, intake_router
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import ConfigError

log = logging.getLogger("warroom.api")

_DESCRIPTION = """Incidents, alerts, topology, evidence, digests and remediation approvals.

Every `/api/v1` route needs `Authorization: Bearer <token>` (`warroom users add NAME --role ROLE`);
roles are ordered viewer < responder < approver < admin. Errors are `{"error", "reason"}` JSON.
"""

__all__ = ["ServerThread", "create_app", "serve"]


def create_app(
    ctx: ApiContext | Settings, store: ClickHouse | None = None, on_accepted: OnAccepted | None = None
) -> FastAPI:
    """The API over ``ctx``: the ``/api/v1`` routers, alert intake, ``/healthz`` and ``/readyz``,
    and FastAPI's ``/openapi.json`` and ``/docs``.

    ``ctx.on_accepted`` is called (in a worker thread) with the alerts of every written intake
    request; the composition root uses it to wake the correlation loop. Its failures are logged.
    ``create_app(settings, store, on_accepted)`` builds the context with :meth:`ApiContext.build`.
    """
    if isinstance(ctx, Settings):
        if store is None:
            raise TypeError("create_app(settings, store): a store is required")
        ctx = ApiContext.build(ctx, store, on_accepted)
    elif store is not None or on_accepted is not None:
        raise TypeError("create_app(ctx): the store and on_accepted come from the context")
    app = FastAPI(title="warroom", version=warroom.__version__, description=_DESCRIPTION)
    app.state.warroom = ctx
    install_error_handlers(app)
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES, exempt=_INTAKE_PATHS)
    intake = Intake(ctx.store, ctx.settings.intake_max_bytes, ctx.on_accepted)
    # Alertmanager sends the token with `http_config: {authorization: {credentials: ...}}`.
    app.include_router(intake_router(intake), dependencies=[Depends(require("responder"))])
    for module in (
        routes_incidents,
        routes_alerts,
        routes_topology,
        routes_summaries,
        routes_remediations,
        routes_audit,
        routes_users,
    ):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests (no token; says nothing about the stores)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    def readyz(ctx: Ctx) -> JSONResponse:
        """Readiness: the store and the state database each answer a trivial query. 503 names the
        one that does not (its driver's message goes to the log: this route needs no token)."""
        checks = {"store": _check(lambda: ctx.store.scalar("SELECT 1")), "state": _check(lambda: _ping(ctx))}
        down = [name for name, status in checks.items() if status != "ok"]
        if not down:
            return JSONResponse({"status": "ready", "checks": checks})
        return JSONResponse(
            {"error": f"not ready: {', '.join(down)} unavailable", "reason": "not_ready", "checks": checks},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    return app


_INTAKE_PATHS = frozenset({"/api/v1/alerts", "/api/v1/alerts/alertmanager"})
"""The intake streams its bodies under its own, larger limit (``intake_max_bytes``)."""


class _BodyLimit:
    """Bodies of the command routes are a few ids: refuse more than ``limit`` bytes with a JSON 413.

    A declared ``Content-Length`` over the limit is answered at once, unread; a chunked body is
    counted as it arrives and stopped with an ``HTTPException(413)``, which FastAPI passes through
    from its body parsing to the error handlers. (Starlette's own ``max_body_size`` answers in
    plain text and replaces any JSON answer, so it is not used.)
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[str]) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        too_large = f"request body is larger than the limit of {self.limit} bytes"
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await error_response(413, too_large, "payload_too_large")(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counting_receive, send)


def _ping(ctx: ApiContext) -> None:
    with ctx.state.begin() as conn:
        conn.execute(sa.text("SELECT 1"))


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready"; which one is for the log
        log.warning("readiness check failed", extra={"error": str(exc)})
        return "unavailable"
    return "ok"


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (for ``warroom serve``)."""
    uvicorn.Server(_config(app, host, port)).run()


class ServerThread:
    """uvicorn in a background thread: ``start()`` returns once it listens, ``stop()`` once it has exited.

    ``port=0`` lets the OS pick a free port (no race between finding one and binding it); read
    the real one from :attr:`port` after ``start()``. Also a context manager.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server = uvicorn.Server(_config(app, host, port))
        self._thread = threading.Thread(target=self._run, name="warroom-api", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn's answer to a failed start-up (logged); here only the thread ends
            pass

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    "WARROOM_API_PORT", f"cannot listen on {self.host}:{self._requested_port} (see the log)"
                )
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        """The port the server listens on (the OS's pick when constructed with ``port=0``)."""
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():  # a request that will not finish: drop open connections
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
