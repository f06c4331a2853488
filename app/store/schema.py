"""The schema's version: Alembic pointed at our migrations, the head this code knows, and
where a database stands against it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.config import DEFAULT_BUSINESS_TIMEZONE
from app.store.business_time import record_business_timezone
from app.store.db import Database, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    """Alembic's configuration pointed at our migrations and the given database."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = url
    return config


def upgrade_to_head(url: str, business_timezone: str = DEFAULT_BUSINESS_TIMEZONE) -> None:
    """Bring the schema to the newest migration, then point the BI views at the business time
    zone (what the `release` process does)."""
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            record_business_timezone(connection, business_timezone)
    finally:
        engine.dispose()


@cache
def head_revisions() -> frozenset[str]:
    """The newest migration(s) this code knows (read once per process)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """Where the database's schema is, and where this code expects it."""

    current: frozenset[str]
    head: frozenset[str]

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        """`at head (0004)` or `at 0003, head is 0004`."""
        head = ", ".join(sorted(self.head))
        if self.at_head:
            return f"at head ({head})"
        return f"at {', '.join(sorted(self.current)) or 'nothing'}, head is {head}"


def schema_version(database: Database) -> SchemaVersion:
    """The database's current migration(s) against this code's head; raises when unreachable."""
    with database.reader_engine.connect() as connection:  # a read: no write lock on SQLite
        current = frozenset(MigrationContext.configure(connection).get_current_heads())
    return SchemaVersion(current, head_revisions())
