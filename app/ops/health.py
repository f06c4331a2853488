"""Liveness and readiness probes (no token)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from app.store import group
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
    """Ready: the database answers, its schema is at this code's newest migration (every
    callback would answer 503 on an unmigrated one), and this worker's callback writer is not
    stalled (work waiting longer than the callbacks' wait without a commit: a lock, a dead
    connection); 503 saying which otherwise."""
    try:
        version = schema_version(get_database())
    except DATABASE_UNAVAILABLE as exc:
        log.warning("not ready: the database is unreachable (%s)", type(exc).__name__)
        raise DatabaseUnavailable("the database is unreachable") from None
    if not version.at_head:
        message = f"the database schema is {version.describe()}: run jsms migrate"
        log.warning("not ready: %s", message)
        raise DatabaseUnavailable(message, "database_not_migrated")
    writer = current_app.extensions.get("group_writer")
    if writer is not None and writer.stalled():
        message = (
            f"the callback writer has had work for over {group.WAIT_SECONDS:g} s without a "
            "commit (a lock on the tables, or a stalled connection)"
        )
        log.warning("not ready: %s", message)
        raise DatabaseUnavailable(message, "writer_stalled")
    return jsonify({"status": "ok", "database": "ok"})
