"""Liveness and readiness probes (no token)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.errors import DATABASE_UNAVAILABLE, DatabaseUnavailable
from app.store.db import get_database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """The database answers; 503 otherwise."""
    try:
        get_database().ping()
    except DATABASE_UNAVAILABLE:
        raise DatabaseUnavailable("the database is unreachable") from None
    return jsonify({"status": "ok", "database": "ok"})
