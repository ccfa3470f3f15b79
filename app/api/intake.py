"""Alert intake over HTTP, so alerts warroom did not raise join the stream correlation reads.

Two formats, each converted by its one existing definition (no second schema here):

- ``POST /api/v1/alerts/alertmanager`` — a Prometheus Alertmanager webhook (``version`` 4),
  converted by :func:`warroom.alerts.from_alertmanager`. Its ``severity`` is a free-form label
  set by whoever wrote the alerting rule, so it maps leniently (:meth:`Severity.parse`: unknown
  spellings become info): a 4xx would make Alertmanager drop the alert, since it retries only 5xx.
- ``POST /api/v1/alerts`` — one object, or a list of at most :data:`MAX_ALERTS` objects, in the
  format of :mod:`warroom.alert_json`, converted strictly: an unknown severity is a 422 naming the
  item and the value, because this producer chose the severity on purpose and a typo must not
  downgrade a page.

Both answer ``202 {"accepted": N}`` once the alerts are written. A request is all or nothing: every
alert is validated before any is written, so a 4xx (naming the item and field) means none of that
request was stored, and a 503 (store failure) means none was claimed — the sender keeps the alert
and sends it again. A repeat is harmless: it is another version of the same
``(fingerprint, starts_at)`` alert, which the ``alerts`` table collapses and correlation counts as a
duplicate. Nothing a previous request got a 202 for is affected by later bad ones.

The body is read as a stream and refused with 413 as soon as it passes ``intake_max_bytes``
(up front from ``Content-Length``, else while a chunked body arrives), so an oversized request
costs at most the limit in memory. Blocking work (the store write, the hook) runs in the thread
pool, off the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.api.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from warroom import alerts as alert_table
from warroom.alert_json import alert_from_json
from warroom.clickhouse import ClickHouse
from warroom.errors import InputError
from warroom.model import Alert

__all__ = ["MAX_ALERTS", "Intake", "OnAccepted", "intake_router"]

log = logging.getLogger("warroom.api")

MAX_ALERTS = 1000
"""Most alerts one generic intake request may carry; a bigger batch gets 413."""

OnAccepted = Callable[[Sequence[Alert]], object]
"""Called with the alerts of each written request (e.g. to wake the correlation loop)."""


@dataclass(frozen=True)
class Intake:
    """What the intake endpoints need: where alerts go, the limits, and who to tell."""

    store: ClickHouse
    max_bytes: int
    on_accepted: OnAccepted | None = None
    max_alerts: int = MAX_ALERTS


def intake_router(intake: Intake) -> APIRouter:
    router = APIRouter(prefix="/api/v1/alerts", tags=["intake"])

    @router.post("/alertmanager", status_code=202)
    async def alertmanager_webhook(request: Request) -> dict[str, int]:
        """Prometheus Alertmanager webhook (``version`` 4); severity labels map leniently."""
        payload = await _read_json(request, intake.max_bytes)
        received_at = datetime.now(UTC)
        return await _accept(intake, alert_table.from_alertmanager(payload, received_at))

    @router.post("", status_code=202)
    async def generic_alerts(request: Request) -> dict[str, int]:
        """One alert object or a list of them in the :mod:`warroom.alert_json` format; strict severity."""
        payload = await _read_json(request, intake.max_bytes)
        return await _accept(intake, _generic_alerts(payload, intake.max_alerts))

    return router


def _generic_alerts(payload: Any, max_alerts: int) -> list[Alert]:
    if not isinstance(payload, list):
        return [alert_from_json(payload, strict=True, where="alert")]
    if not payload:
        raise InputError("expected an alert object or a non-empty list of them", "empty_batch")
    if len(payload) > max_alerts:
        raise PayloadTooLarge(
            f"{len(payload)} alerts in one request; at most {max_alerts} are accepted, split the batch",
            "too_many_alerts",
        )
    return [alert_from_json(item, strict=True, where=f"item {i}") for i, item in enumerate(payload)]


async def _accept(intake: Intake, alerts: list[Alert]) -> dict[str, int]:
    """Write every alert of the request in one insert, then tell the hook; validation is done."""
    await run_in_threadpool(alert_table.write, intake.store, alerts)
    if alerts and intake.on_accepted is not None:
        await run_in_threadpool(_notify, intake.on_accepted, alerts)
    return {"accepted": len(alerts)}


def _notify(hook: OnAccepted, alerts: Sequence[Alert]) -> None:
    # The alerts are stored and the sender gets its 202 either way; a failing hook must not make
    # it resend (and must not go unnoticed).
    try:
        hook(alerts)
    except Exception:
        log.exception("on_accepted hook failed; the alerts are stored", extra={"alerts": len(alerts)})


# -- the body: media type, size limit, UTF-8, JSON ------------------------------------------------


def _check_media_type(request: Request) -> None:
    header = request.headers.get("content-type", "")
    media_type, _, params = header.partition(";")
    if media_type.strip().lower() != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {header or 'none'!r}")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"only UTF-8 JSON is accepted, got charset {value.strip()!r}")


def _too_large(max_bytes: int) -> NoReturn:
    raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes (intake_max_bytes)")


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to pass ``max_bytes`` (declared or received)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise MalformedBody(f"invalid Content-Length {declared!r}", "invalid_content_length")
        if int(declared) > max_bytes:
            _too_large(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                _too_large(max_bytes)
    except ClientDisconnect as exc:  # nobody is left to answer; keep it out of the error log
        raise MalformedBody("client disconnected before the body was complete", "incomplete_body") from exc
    return bytes(body)


def _reject_constant(name: str) -> NoReturn:
    raise MalformedBody(f"malformed JSON: {name} is not a JSON value", "invalid_json")


async def _read_json(request: Request, max_bytes: int) -> Any:
    _check_media_type(request)
    body = await _read_body(request, max_bytes)
    if not body.strip():
        raise MalformedBody("request body is empty; expected JSON", "invalid_json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(
            f"request body is not valid UTF-8 (byte {exc.start})", "invalid_encoding"
        ) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedBody(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "invalid_json"
        ) from exc
    except RecursionError as exc:
        raise MalformedBody("malformed JSON: nested too deeply", "invalid_json") from exc
    except ValueError as exc:  # an integer literal past Python's digit limit; keep only the "what"
        raise MalformedBody(f"malformed JSON: {str(exc).split(':')[0]}", "invalid_json") from exc
