"""The error tree, mapped to HTTP at the API boundary: one JSON shape for every failure.

Every error response is ``{"error": "<one line for a human>", "reason": "<machine code>"}``:

=========================  ======  ==========================================================
error                      status  why
=========================  ======  ==========================================================
MalformedBody              400     not UTF-8, not JSON, or nested too deep to parse
Unauthorized               401     no bearer token, or one that is unknown or revoked
                                   (+ ``WWW-Authenticate: Bearer``)
PayloadTooLarge            413     body over ``intake_max_bytes``, or too many alerts
UnsupportedMediaType       415     Content-Type is not ``application/json``
InputError "unknown_…"     404     the path names an incident, proposal or user that does not
                                   exist (reasons ``unknown_incident``, ``not_found``,
                                   ``unknown_user``)
InputError "conflict"      409     the incident's state does not allow this (already resolved)
other InputError           422     well-formed JSON that is not a valid alert (names the field)
request validation         400     a pydantic-validated body that is not JSON
                           415     … sent with a Content-Type other than JSON
                           422     … or that does not fit the model (names the field)
Forbidden                  403     the actor lacks the role or may not act on their own proposal
Conflict                   409     the subject's state does not allow this (expired, already done)
StoreError, BrokerError    503     + ``Retry-After``; nothing was accepted, send it again
other WarroomError         500     the cause is logged; the body says only "internal error"
Starlette HTTPException    as is   unknown path (404), wrong method (405), body over a
                                   router's ``max_body_size`` (413)
anything else              500     logged with its traceback; the body says only "internal error"
=========================  ======  ==========================================================

The 404 reasons are the ones the stores raise for a missing subject, so a route that looks its
path id up first answers 404 without a special case; an unknown id *in a body* (a merge source)
is the route's to re-raise as a 422 naming the field. Path ids are only ever bound as query
parameters, so one full of metacharacters is just an id that does not exist.

Every StoreError is a 503, not only ``retryable`` ones: the sender (Alertmanager retries on 5xx)
still holds the alert, and keeping it until an operator fixes the store loses nothing, while a 4xx
would make it drop the alert. A permanent store error only gets a longer ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warroom.errors import BrokerError, Conflict, Forbidden, InputError, StoreError, WarroomError

__all__ = [
    "MalformedBody",
    "PayloadTooLarge",
    "Unauthorized",
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


class Unauthorized(WarroomError):
    """The request carries no usable API token: missing, malformed, unknown or revoked.

    Not part of :mod:`warroom.errors`: only the HTTP boundary has credentials to miss (the CLI acts
    as ``--actor`` on the machine it runs on).
    """

    def __init__(self, message: str, reason: str = "unauthenticated") -> None:
        self.reason = reason
        super().__init__(message)


# Most specific first: the first class the error is an instance of decides the status.
_STATUS: tuple[tuple[type[WarroomError], int], ...] = (
    (Unauthorized, 401),
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


_INPUT_REASON_STATUS = {"unknown_incident": 404, "not_found": 404, "unknown_user": 404, "conflict": 409}
"""InputErrors whose reason is a missing subject or a state conflict (see the table above)."""


def _status(exc: WarroomError) -> int:
    if type(exc) is InputError and exc.reason in _INPUT_REASON_STATUS:
        return _INPUT_REASON_STATUS[exc.reason]
    return next(status for cls, status in _STATUS if isinstance(exc, cls))


def _reason(exc: WarroomError) -> str:
    if isinstance(exc, InputError | Forbidden | Conflict | Unauthorized):
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
    if isinstance(exc, Unauthorized):
        # RFC 6750: a request without credentials gets the bare challenge, a bad token an error code.
        challenge = 'Bearer realm="warroom"'
        if exc.reason == "invalid_token":
            challenge += ', error="invalid_token"'
        return error_response(status, str(exc), exc.reason, {"WWW-Authenticate": challenge})
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


_HTTP_REASONS = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, str(exc.detail), reason, headers)


_VALIDATION_REASONS = {"missing": "missing_field", "extra_forbidden": "unknown_field"}
_MAX_PROBLEMS = 5  # a body with a hundred bad items gets the first few, not a wall of text


def _where(loc: Sequence[Any]) -> str:
    """``("body", "sources", 0)`` → ``sources[0]``; ``("query", "limit")`` → ``query parameter limit``."""
    kind, path = (str(loc[0]), list(loc[1:])) if loc else ("body", [])
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    if kind == "body":
        return text or "request body"
    return f"{kind} parameter {text}" if text else kind


def _problem(error: Any) -> str:
    where = _where(error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown field"
    if error.get("type") == "missing" and where == "request body":
        return "request body is required: a JSON object"
    return f"{where}: {error.get('msg', 'invalid')}"


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation, in the one error shape: 400 for a body that is not JSON, 415
    for a body sent as something else (FastAPI then hands the model raw bytes), else 422 naming
    each offending field (``reason`` from the first: ``missing_field``, ``unknown_field`` or
    ``invalid_field``)."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        detail = (broken.get("ctx") or {}).get("error", "not JSON")
        return error_response(400, f"malformed JSON: {detail}", "invalid_json")
    sent_body = any(e.get("loc", ())[:1] == ("body",) and e.get("type") != "missing" for e in errors)
    if sent_body and not _is_json(request):
        refused = UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.headers.get('content-type') or 'none'!r}"
        )
        return error_response(415, str(refused), refused.reason)
    message = "; ".join(_problem(e) for e in errors[:_MAX_PROBLEMS])
    if len(errors) > _MAX_PROBLEMS:
        message += f" (and {len(errors) - _MAX_PROBLEMS} more)"
    reason = (
        _VALIDATION_REASONS.get(str(errors[0].get("type")), "invalid_field") if errors else "invalid_field"
    )
    return error_response(422, message, reason)


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
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(_CatchAll)
