"""The `flask --app wsgi jsms …` commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from app.db import get_database, upgrade_to_head

jsms = AppGroup("jsms", help="jsms-receipts commands.")


@jsms.command("migrate")
def migrate() -> None:
    """Bring the database schema to the newest migration (safe to run on every deploy)."""
    database = get_database()
    upgrade_to_head(database.url)
    click.echo("database schema is at head")


def register(app: Flask) -> None:
    """Add the `jsms` command group to the app's CLI."""
    app.cli.add_command(jsms)
