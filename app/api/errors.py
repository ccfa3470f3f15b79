"""The error tree, mapped to HTTP at the API boundary: one JSON shape for every failure.

Every error response is ``{"error": "<one line for a human>", "reason": "<machine code>"}``:

=========================  ======  ==========================================================
error                      status  why
=========================  ======  ==========================================================
MalformedBody              400     not UTF-8, not JSON, or nested too deep to parse
PayloadTooLarge            413     body over ``intake_max_bytes``, or too many alerts
UnsupportedMediaType       415     Content-Type is not ``application/json``
other InputError           422     well-formed JSON that is not a valid alert (names the field)
Forbidden                  403     the actor lacks the role or may not act on their own proposal
Conflict                   409     the subject's state does not allow this (expired, already done)
StoreError, BrokerError    503     + ``Retry-After``; nothing was accepted, send it again
other WarroomError         500     the cause is logged; the body says only "internal error"
Starlette HTTPException    as is   unknown path (404), wrong method (405)
anything else              500     logged with its traceback; the body says only "internal error"
=========================  ======  ==========================================================

Every StoreError is a 503, not only ``retryable`` ones: the sender (Alertmanager retries on 5xx)
still holds the alert, and keeping it until an operator fixes the store loses nothing, while a 4xx
would make it drop the alert. A permanent store error only gets a longer ``Retry-After``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warroom.errors import BrokerError, Conflict, Forbidden, InputError, StoreError, WarroomError

__all__ = [
    "MalformedBody",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("warroom.api")

RETRY_AFTER_S = 5
"""Retry-After of a transient store or broker failure."""
RETRY_AFTER_PERMANENT_S = 60
"""Retry-After of a store failure retrying cannot fix by itself (missing table, bad schema)."""


class MalformedBody(InputError):
    """The body is not UTF-8 JSON (or is nested too deep to parse)."""


class PayloadTooLarge(InputError):
    """The body, or the number of alerts in it, is over the intake's limit."""

    def __init__(self, message: str, reason: str = "payload_too_large") -> None:
        super().__init__(message, reason)


class UnsupportedMediaType(InputError):
    """The request does not declare a JSON body."""

    def __init__(self, message: str, reason: str = "unsupported_media_type") -> None:
        super().__init__(message, reason)


# Most specific first: the first class the error is an instance of decides the status.
_STATUS: tuple[tuple[type[WarroomError], int], ...] = (
    (MalformedBody, 400),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InputError, 422),
    (Forbidden, 403),
    (Conflict, 409),
    (StoreError, 503),
    (BrokerError, 503),
    (WarroomError, 500),
)


def _status(exc: WarroomError) -> int:
    return next(status for cls, status in _STATUS if isinstance(exc, cls))


def _reason(exc: WarroomError) -> str:
    if isinstance(exc, InputError | Forbidden | Conflict):
        return exc.reason
    if isinstance(exc, StoreError):
        return "store_unavailable"
    if isinstance(exc, BrokerError):
        return "broker_unavailable"
    return "internal_error"


def error_response(
    status: int, message: str, reason: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    first_line = message.strip().splitlines()[0] if message.strip() else reason
    return JSONResponse({"error": first_line, "reason": reason}, status_code=status, headers=headers)


def _warroom_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WarroomError)
    status = _status(exc)
    if status < 500:
        return error_response(status, str(exc), _reason(exc))
    # The cause (a driver message naming databases and hosts) goes to the log, not to the sender.
    log.error("request not accepted", extra={"path": request.url.path, "error": str(exc)})
    if status != 503:
        return error_response(status, "internal error", _reason(exc))
    permanent = isinstance(exc, StoreError) and not exc.retryable
    headers = {"Retry-After": str(RETRY_AFTER_PERMANENT_S if permanent else RETRY_AFTER_S)}
    message = "warroom's store is unavailable; nothing of this request was stored, send it again later"
    return error_response(status, message, _reason(exc), headers)


_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed"}


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, str(exc.detail), reason, headers)


class _CatchAll:
    """Turns an unexpected exception into a 500 JSON body without a traceback, logging it once.

    Starlette's own ``Exception`` handler also answers, but then re-raises, so uvicorn logs the same
    traceback a second time; catching here, inside the server-error middleware, avoids that. An
    exception after the response started cannot be answered any more and is re-raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error", extra={"path": scope.get("path", "")})
            if started:
                raise
            response = error_response(500, "internal error", "internal_error")
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the JSON shape above."""
    app.add_exception_handler(WarroomError, _warroom_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(_CatchAll)
