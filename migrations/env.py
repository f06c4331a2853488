"""Alembic environment: the URL comes from the caller or from the service's settings."""

from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path

from alembic import context

from app.config import Settings
from app.store.db import make_engine
from app.store.models import Base

config = context.config
if config.config_file_name and not config.attributes.get("sqlalchemy_url"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("sqlalchemy_url")
    if url:
        return str(url)
    instance = Path(__file__).resolve().parent.parent / "instance"
    return Settings().sqlalchemy_url(str(instance))


def run_migrations() -> None:
    """Run migrations online, in one transaction per migration (batch mode for SQLite)."""
    engine = make_engine(_database_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
