"""The one place that knows HTTP errors: the web side's named errors, the statuses of the
domain's (`app/jsms/callback.py`, `app/store/db.py`), and the contract's JSON error shape."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.jsms.callback import (
    BadSignature,
    CallbackRefused,
    MissingSignature,
    SignatureReused,
)
from app.store.db import DATABASE_UNAVAILABLE, DatabaseUnavailable

log = logging.getLogger(__name__)

# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout.
QUERY_CANCELED = "57014"


class ServiceError(Exception):
    """An error the client should see: a snake_case code, a message and an HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if code:
            self.code = code


class BadInput(ServiceError):
    """The request is malformed; nothing was stored."""


class InvalidParameter(BadInput):
    """A query parameter is unknown, repeated or has a bad value; `parameter` names it."""

    code = "invalid_parameter"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"parameter {parameter!r}: {message}")
        self.parameter = parameter


class Unauthenticated(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


# The domain's named errors (plain exceptions carrying a `code`) and the status each answers;
# a subclass not listed answers its nearest listed ancestor's.
DOMAIN_STATUSES: dict[type[Exception], int] = {
    CallbackRefused: 400,  # a missing field, an invalid nonce or timestamp, data not JSON
    MissingSignature: 401,
    BadSignature: 401,
    SignatureReused: 401,  # past the replay memory's bound of payloads per signature
    DatabaseUnavailable: 503,  # nothing was stored; JSMS and API clients retry
}


def status_of(exc: Exception) -> int:
    """The HTTP status of a domain error: that of the nearest class in DOMAIN_STATUSES."""
    return next(DOMAIN_STATUSES[cls] for cls in type(exc).__mro__ if cls in DOMAIN_STATUSES)


def error_response(status: int, code: str, message: str, parameter: str | None = None) -> Response:
    """`{"error": {"code", "message"}}` with the given status, plus `parameter` if one is named."""
    error = {"code": code, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
    response = jsonify({"error": error})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Make every error, expected or not, leave as JSON of the contract's shape; the code is
    also left in `g.error_code`, for the metrics and the log line to name it."""
    app.after_request(_nosniff)
    app.register_error_handler(ServiceError, _service_error)
    for domain_error in DOMAIN_STATUSES:
        app.register_error_handler(domain_error, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    for exc_class in DATABASE_UNAVAILABLE:
        app.register_error_handler(exc_class, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)


def _nosniff(response: Response) -> Response:
    """Browsers must take every answer as the type it says it is (an echo, a CSV, JSON)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _service_error(exc: ServiceError) -> Response:
    g.error_code = exc.code
    response = error_response(exc.status, exc.code, exc.message, getattr(exc, "parameter", None))
    response.headers.update(exc.headers)
    return response


def _domain_error(exc: Exception) -> Response:
    """A domain error: its own code and message, the status DOMAIN_STATUSES gives it."""
    code = str(getattr(exc, "code", "error"))
    g.error_code = code
    return error_response(status_of(exc), code, str(getattr(exc, "message", exc)))


def _http_error(exc: HTTPException) -> Response:
    code = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
    g.error_code = code
    response = error_response(exc.code or 500, code, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _database_unavailable(exc: Exception) -> Response:
    """A database error that escaped the store: a statement timeout, or the database gone."""
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == QUERY_CANCELED:
        g.error_code = "query_timeout"
        return error_response(
            503, "query_timeout", "the query ran past API_STATEMENT_TIMEOUT_MS; narrow it"
        )
    log.warning("database unavailable: %s", type(exc).__name__)
    g.error_code = DatabaseUnavailable.code
    return error_response(503, "database_unavailable", "the database is unavailable; retry")


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    g.error_code = "internal_error"
    return error_response(500, "internal_error", "internal error")
