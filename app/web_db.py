"""The web side's hold on the store (flaskr's `db.py`): the app's database, and one session
per request, opened on first use and closed when the request ends."""

from __future__ import annotations

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from app.store.db import Database


def init_app(app: Flask, database: Database) -> None:
    """Attach the database to the app and close each request's session when it ends."""
    app.extensions["database"] = database
    app.teardown_appcontext(_close_request_session)


def get_database() -> Database:
    """The current app's database."""
    database: Database = current_app.extensions["database"]
    return database


def get_session() -> Session:
    """The current request's session, opened on first use; a reader for GET and HEAD."""
    if "db_session" not in g:
        database = get_database()
        reads_only = has_request_context() and request.method in ("GET", "HEAD")
        g.db_session = (database.readers if reads_only else database.sessions)()
    session: Session = g.db_session
    return session


def _close_request_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
