"""The status endpoint of `warroom up`: liveness, readiness and what each service reports."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.health import Health, serve
from warroom.localbroker import free_port


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    health, port = Health(), free_port()
    server = serve(health, "127.0.0.1", port)
    yield health, f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_ready_only_when_every_service_is(served: tuple[Health, str]) -> None:
    health, base = served
    health.set("detect", "running")
    health.set("correlate", "standby", "waiting for the correlate lock")
    ingest = {"state": "starting"}
    health.probe("ingest", lambda: (ingest["state"], "live"))
    health.extra["ingest"] = lambda: {"consumer_lag_total": 7}
    health.metrics.append(lambda: "warroom_ingest_consumer_lag 7\n")

    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "not_ready": ["ingest"]}
    ingest["state"] = "running"
    assert httpx.get(f"{base}/readyz").status_code == 200
    status = httpx.get(f"{base}/status").json()
    assert status["services"]["correlate"]["state"] == "standby" and status["ingest"] == {
        "consumer_lag_total": 7
    }
    metrics = httpx.get(f"{base}/metrics").text
    assert 'warroom_service_ready{service="ingest"} 1' in metrics
    assert 'warroom_leader{role="correlate"} 0' in metrics and "warroom_ingest_consumer_lag 7" in metrics

    ingest["state"] = "degraded"  # e.g. ClickHouse unreachable: alive, not ready
    assert httpx.get(f"{base}/readyz").status_code == 503
    assert httpx.get(f"{base}/healthz").status_code == 200
    health.set("detect", "failed", "boom")
    dead = httpx.get(f"{base}/healthz")
    assert dead.status_code == 503 and dead.json()["services"]["detect"]["detail"] == "boom"
    assert httpx.get(f"{base}/nope").status_code == 404
