"""The HTTP application and the uvicorn server that runs it, in the foreground or in a thread.

:func:`create_app` wires the routers to a store and settings (no globals, so tests and a future
``warroom serve`` build it the same way). :class:`ServerThread` runs uvicorn in a background
thread: the embedded ClickHouse allows one process per data path, so tests must serve from the
process that holds the store, and a long-running command can serve next to its other loops.
Stopping sets uvicorn's ``should_exit``, which its main loop checks every 0.1 s; it then drains
in-flight requests and returns. :func:`serve` runs in the foreground with uvicorn's signal handling.

uvicorn gets ``log_config=None`` so it does not reconfigure logging: its records propagate to the
process's (JSON) handlers like every other warroom log.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

import warroom
from app.api.errors import install_error_handlers
from app.api.intake import Intake, OnAccepted, intake_router
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import ConfigError

__all__ = ["ServerThread", "create_app", "serve"]


def create_app(settings: Settings, store: ClickHouse, on_accepted: OnAccepted | None = None) -> FastAPI:
    """The API: alert intake (``/api/v1/alerts``) and ``GET /healthz``.

    ``on_accepted`` is called (in a worker thread) with the alerts of every written intake request;
    the composition root uses it to wake the correlation loop. Its failures are logged, not returned.
    """
    app = FastAPI(title="warroom", version=warroom.__version__)
    install_error_handlers(app)
    app.include_router(intake_router(Intake(store, settings.intake_max_bytes, on_accepted)))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests. The store's health shows as 503s on intake."""
        return {"status": "ok"}

    return app


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
