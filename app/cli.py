"""The `flask --app wsgi jsms …` commands."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.config import Settings
from app.db import get_database, upgrade_to_head
from app.ingest import reprocess
from app.models import RawEvent, utcnow
from app.retention import RetentionPolicy, purge

jsms = AppGroup("jsms", help="jsms-receipts commands.")


@jsms.command("migrate")
def migrate() -> None:
    """Bring the database schema to the newest migration (safe to run on every deploy)."""
    database = get_database()
    upgrade_to_head(database.url)
    click.echo("database schema is at head")


@jsms.command("reprocess")
@click.option("--batch-size", default=100, show_default=True, help="Raw events per transaction.")
def reprocess_quarantined(batch_size: int) -> None:
    """Normalize quarantined raw events again (after an upgrade); safe to run repeatedly."""
    totals = {"events": 0, "stored": 0, "still_quarantined": 0}
    after = 0
    with get_database().session() as session:
        while True:
            events = session.scalars(
                select(RawEvent)
                .where(RawEvent.quarantined > 0, RawEvent.id > after)
                .order_by(RawEvent.id)
                .limit(batch_size)
            ).all()
            if not events:
                break
            for event in events:
                result = reprocess(session, event)
                totals["events"] += 1
                totals["stored"] += result.stored
                totals["still_quarantined"] += result.quarantined
            session.commit()
            after = events[-1].id
    click.echo(
        f"reprocessed {totals['events']} quarantined raw events: {totals['stored']} records "
        f"stored, {totals['still_quarantined']} still quarantined"
    )


@jsms.command("purge")
def purge_expired() -> None:
    """Delete raw events and records older than their retention (the clock does this daily)."""
    settings: Settings = current_app.config["SETTINGS"]
    policy = RetentionPolicy(settings.raw_event_retention_days, settings.record_retention_days)
    with get_database().session() as session:
        deleted = purge(session, policy, utcnow(), max_batches=1_000_000)
    click.echo("deleted " + (", ".join(f"{n} {t}" for t, n in deleted.items()) or "nothing"))


def register(app: Flask) -> None:
    """Add the `jsms` command group to the app's CLI."""
    app.cli.add_command(jsms)
