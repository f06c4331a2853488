"""jsms-receipts: never lose an SMS receipt from JiGuang SMS."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from app import callbacks, cli, errors, web_db
from app.auth import SessionCookie
from app.config import Settings, load_settings
from app.logs import configure_logging
from app.ops import health, scrape, status
from app.query import api
from app.store import group, opt_outs
from app.store.db import ConnectionLimits, Database

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: settings, database, blueprints, error handlers, CLI. Nothing else."""
    app = Flask(__name__, instance_relative_config=True)
    settings = settings or load_settings()
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES,
        SECRET_KEY=settings.session_secret(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    app.session_interface = SessionCookie()
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    configure_logging(settings.log_level)
    opt_outs.use_keywords(settings.keywords())
    url = settings.sqlalchemy_url(app.instance_path)
    # Every statement of the web process (the group writer's above all) fails before a callback
    # request stops waiting for its commit: a lock or a dead connection is a 503, not a hang.
    limits = ConnectionLimits.below(group.WAIT_SECONDS)
    database = Database(url, reader_timeout_ms=settings.api_statement_timeout_ms, limits=limits)
    web_db.init_app(app, database)
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(scrape.bp)
    app.register_blueprint(status.bp)
    cli.register(app)
    return app
