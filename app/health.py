"""Health and readiness of a ``warroom up`` process, for orchestrators and people.

Every service of the process reports what it is doing (:class:`Health`); ``WARROOM_STATUS_PORT``
serves it over HTTP so that Kubernetes probes and ``curl`` see the same answer:

- ``GET /healthz`` — *alive*: 200 while no service has failed, else 503. An orchestrator restarts
  the process on failure; a service waiting out an outage is alive.
- ``GET /readyz`` — *doing its job*: 200 when every service is ready, else 503 with the ones that
  are not. Ingest is ready while consuming (not while ClickHouse is unreachable); a leader-elected
  service is ready as leader *or* standby — a standby is a healthy replica, not a broken one.
- ``GET /status`` — JSON: each service's state and detail, leadership roles, and ingest's own
  figures (lag, rows per second, dead letters) when ingest runs here.
- ``GET /metrics`` — Prometheus text: ``warroom_service_ready``, ``warroom_leader`` and, with
  ingest, its ``warroom_ingest_*`` series.

States: ``starting``, ``running``, ``standby``, ``leader``, ``degraded`` (working around an
outage; detail says which), ``failed`` and ``stopped``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["READY_STATES", "Health", "serve"]

READY_STATES = frozenset({"running", "standby", "leader"})


class Health:
    """What each service of this process last reported; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[str, str, float]] = {}
        self._probes: dict[str, Callable[[], tuple[str, str]]] = {}
        self.extra: dict[str, Callable[[], dict[str, Any]]] = {}  # more /status sections
        self.metrics: list[Callable[[], str]] = []  # more /metrics lines

    def set(self, service: str, state: str, detail: str = "") -> None:
        with self._lock:
            self._states[service] = (state, detail, time.time())

    def probe(self, service: str, read: Callable[[], tuple[str, str]]) -> None:
        """Read ``service``'s (state, detail) live from ``read`` (e.g. ingest's own statistics)."""
        with self._lock:
            self._probes[service] = read

    def states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            states = {
                name: {"state": s, "detail": d, "since": at} for name, (s, d, at) in self._states.items()
            }
            probes = dict(self._probes)
        for name, read in probes.items():
            if states.get(name, {}).get("state") in ("failed", "stopped"):
                continue
            state, detail = read()
            states[name] = {**states.get(name, {}), "state": state, "detail": detail}
        return states

    def alive(self) -> bool:
        return not any(s["state"] == "failed" for s in self.states().values())

    def not_ready(self) -> list[str]:
        return [name for name, s in self.states().items() if s["state"] not in READY_STATES]

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "services": self.states(),
            "alive": self.alive(),
            "ready": not self.not_ready(),
        }
        for name, section in self.extra.items():
            out[name] = section()
        return out

    def prometheus(self) -> str:
        lines = []
        for name, s in sorted(self.states().items()):
            ready = 1 if s["state"] in READY_STATES else 0
            lines.append(f'warroom_service_ready{{service="{name}"}} {ready}')
            if s["state"] in ("leader", "standby"):
                leader = 1 if s["state"] == "leader" else 0
                lines.append(f'warroom_leader{{role="{name}"}} {leader}')
        return "\n".join(lines) + "\n" + "".join(m() for m in self.metrics)


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``health`` on ``host:port`` in a daemon thread; ``shutdown()`` and ``server_close()``
    the result to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = health.alive()
                self._send(200 if ok else 503, {"alive": ok, "services": health.states()})
            elif path == "/readyz":
                waiting = health.not_ready()
                self._send(503 if waiting else 200, {"ready": not waiting, "not_ready": waiting})
            elif path == "/status":
                self._send(200, health.status())
            elif path == "/metrics":
                self._send(200, health.prometheus(), "text/plain; version=0.0.4")
            else:
                self._send(
                    404, {"error": "not_found", "detail": "try /healthz, /readyz, /status or /metrics"}
                )

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: probes poll
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="warroom-health", daemon=True).start()
    return server
