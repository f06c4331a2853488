"""Liveness and readiness probes (no token)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.store.db import DATABASE_UNAVAILABLE, DatabaseUnavailable
from app.store.schema import schema_version
from app.web_db import get_database

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready: the database answers and its schema is at this code's newest migration (every
    callback would answer 503 on an unmigrated one); 503 saying which otherwise."""
    try:
        version = schema_version(get_database())
    except DATABASE_UNAVAILABLE as exc:
        log.warning("not ready: the database is unreachable (%s)", type(exc).__name__)
        raise DatabaseUnavailable("the database is unreachable") from None
    if not version.at_head:
        message = f"the database schema is {version.describe()}: run jsms migrate"
        log.warning("not ready: %s", message)
        raise DatabaseUnavailable(message, "database_not_migrated")
    return jsonify({"status": "ok", "database": "ok"})
