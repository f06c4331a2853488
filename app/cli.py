"""The `jsms …` commands (also `flask --app wsgi jsms …`)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.config import EPHEMERAL_STORE_FIX, Settings, get_settings
from app.jsms.client import JsmsClient
from app.jsms.pulled import KINDS, Kind
from app.ops.doctor import FAIL, examine, render
from app.pull import spool
from app.pull.clock import CLOCK_POOL_TIMEOUT_SECONDS, run_clock, stop_on_signals
from app.pull.puller import BatchNotStored, Puller, StoreUnavailable
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.ingest import reprocess, trust
from app.store.models import RawEvent, utcnow
from app.store.readonly import READABLE_TABLES, READABLE_VIEWS, GrantRefused, grant_readonly
from app.store.retention import purge, retention_policy
from app.store.schema import schema_version, upgrade_to_head
from app.web_db import get_database

jsms = AppGroup("jsms", help="jsms-receipts commands.")


@jsms.command("migrate")
def migrate() -> None:
    """Bring the database schema to the newest migration and the BI views to BUSINESS_TIMEZONE
    (safe to run on every deploy)."""
    _refuse_ephemeral_store("release")
    settings = get_settings()
    database = _reachable_database()
    before = schema_version(database)
    upgrade_to_head(database.url, settings.business_timezone)
    if before.at_head:
        click.echo(f"database schema was already {before.describe()}")
    else:
        was = ", ".join(sorted(before.current)) or "nothing"
        now = schema_version(database).describe()
        click.echo(f"database schema upgraded from {was}: now {now}")
    click.echo(f"BI views count days in {settings.business_timezone}")


@jsms.command("reprocess")
@click.option("--batch-size", default=100, show_default=True, help="Raw events per transaction.")
def reprocess_quarantined(batch_size: int) -> None:
    """Store batches spooled to disk while the database was down, then normalize quarantined
    raw events again (after an upgrade); safe to run repeatedly. Suspect callbacks (a reused
    or out-of-window signature) are left alone: only `jsms trust` stores their records."""
    totals = {"events": 0, "stored": 0, "still_quarantined": 0}
    after = 0
    for leftover in spool.leftovers(spool_dir()):
        click.echo(
            f"unfinished spool file {leftover} (a save interrupted mid-write): "
            "inspect it; it may hold the only copy of a batch",
            err=True,
        )
    for path, result in spool.store_spooled(get_database(), spool_dir()):
        click.echo(f"stored spooled batch {path.name}: {result.as_json()}")
    with get_database().session() as session:
        while True:
            with session.begin():
                events = session.scalars(
                    select(RawEvent)
                    .where(
                        RawEvent.quarantined > 0, RawEvent.suspect.is_(None), RawEvent.id > after
                    )
                    .order_by(RawEvent.id)
                    .limit(batch_size)
                ).all()
                for event in events:
                    result = reprocess(session, event)
                    totals["events"] += 1
                    totals["stored"] += result.stored
                    totals["still_quarantined"] += result.quarantined
            if not events:
                break
            after = events[-1].id
    click.echo(
        f"reprocessed {totals['events']} quarantined raw events: {totals['stored']} records "
        f"stored, {totals['still_quarantined']} still quarantined"
    )


@jsms.command("trust")
@click.argument("event_ids", nargs=-1, required=True, type=click.IntRange(min=1))
def trust_checked(event_ids: tuple[int, ...]) -> None:
    """Store the records of quarantined callbacks you have checked (a reused or out-of-window
    signature: GET /api/v1/quarantine?reason=signature_reused), each in its own transaction,
    and print what was stored. Exits 1 if an id is not such a callback."""
    refused = 0
    with get_database().session() as session:
        for event_id in event_ids:
            with session.begin():
                event = session.get(RawEvent, event_id)
                was = event.suspect if event is not None else None
                if event is None or was is None:
                    refused += 1
                    click.echo(
                        f"raw event {event_id}: not a suspect callback; nothing stored "
                        "(jsms reprocess reads other quarantined events)",
                        err=True,
                    )
                    continue
                result = trust(session, event)
            click.echo(
                f"raw event {event_id} ({event.type[:64]}, was {was}): {result.stored} records "
                f"stored, {result.duplicates} duplicates, {result.quarantined} still quarantined"
            )
    if refused:
        raise SystemExit(1)


@jsms.command("purge")
def purge_expired() -> None:
    """Delete raw events and records older than their retention (the clock does this hourly)."""
    settings = get_settings()
    with get_database().session() as session:
        deleted = purge(session, retention_policy(settings), utcnow(), max_batches=1_000_000)
    click.echo("deleted " + (", ".join(f"{n} {t}" for t, n in deleted.items()) or "nothing"))


@jsms.command("sync")
@click.option("--app-key", help="Only this app (default: every app in JSMS_APPS).")
@click.option(
    "--kind", type=click.Choice([k.value for k in KINDS]), help="Only reports or only replies."
)
def sync(app_key: str | None, kind: str | None) -> None:
    """One pull pass: drain each app's backlog, store it, print a summary per app and kind."""
    settings = get_settings()
    apps = _chosen_apps(settings, app_key)
    database = _reachable_database()
    kinds = [Kind(kind)] if kind else list(KINDS)
    with JsmsClient(settings.jsms_api_base_url) as client:
        puller = Puller(database, client, SyncPolicy.from_settings(settings), spool=spool_dir())
        with stop_on_signals(puller.stop):
            for key, secret in apps.items():
                try:
                    results = puller.sync_app(key, secret, kinds)
                except (StoreUnavailable, BatchNotStored, SQLAlchemyError) as exc:
                    raise click.ClickException(f"{key}: the store is not usable: {exc}") from exc
                for result in results:
                    click.echo(result.describe(detailed=True))


@jsms.command("clock")
def clock() -> None:
    """Run the pull scheduler in the foreground (the `clock` process) until SIGTERM."""
    settings = get_settings()
    _refuse_ephemeral_store("clock")
    apps = _chosen_apps(settings, None)
    # Its own engine: passes queue for a connection instead of giving up after web's 5 s.
    database = Database(_reachable_database().url, pool_timeout=CLOCK_POOL_TIMEOUT_SECONDS)
    try:
        with JsmsClient(settings.jsms_api_base_url) as client:
            puller = Puller(database, client, SyncPolicy.from_settings(settings), spool=spool_dir())
            run_clock(puller, apps, retention_policy(settings), settings.pull_max_parallel_apps)
    finally:
        database.engine.dispose()


@jsms.command("grant-readonly")
@click.argument("role")
def grant_readonly_role(role: str) -> None:
    """Let ROLE (an existing PostgreSQL role, for a BI tool) read the record tables and views
    and nothing else; safe to repeat (and to rerun after an upgrade adds a view)."""
    database = get_database()
    if database.engine.dialect.name != "postgresql":
        raise click.ClickException(
            "grant-readonly is for PostgreSQL; this database is SQLite, which has no roles: "
            "give the BI tool a read-only copy of the file, or move to PostgreSQL (DATABASE_URL)"
        )
    try:
        with database.engine.begin() as connection:
            schema = grant_readonly(connection, role)
    except GrantRefused as exc:
        raise click.ClickException(str(exc)) from None
    readable = ", ".join(READABLE_TABLES + READABLE_VIEWS)
    click.echo(f"role {role} may read, in schema {schema}: {readable}; nothing else")


@jsms.command("doctor")
def doctor() -> None:
    """Check configuration, database, migrations, upstream and each app's mode; exit 1 on
    any problem."""
    settings = get_settings()
    findings = list(examine(settings, get_database(), spool_dir()))
    click.echo(render(findings))
    if any(f.status == FAIL for f in findings):
        raise SystemExit(1)


def _chosen_apps(settings: Settings, app_key: str | None) -> dict[str, str]:
    """The configured apps, or the one asked for; an unknown or missing app is a usage error."""
    if not settings.jsms_apps:
        raise click.ClickException("no JSMS apps are configured (set JSMS_APPS)")
    if app_key is None:
        return dict(settings.jsms_apps)
    if app_key not in settings.jsms_apps:
        raise click.BadParameter(f"{app_key!r} is not in JSMS_APPS", param_hint="--app-key")
    return {app_key: settings.jsms_apps[app_key]}


def _refuse_ephemeral_store(process: str) -> None:
    """Stop (exit 1) before touching a SQLite file the platform will wipe."""
    settings = get_settings()
    problem = settings.ephemeral_store_problem()
    if problem:
        raise click.ClickException(f"refusing to start {process}: {problem}; {EPHEMERAL_STORE_FIX}")


def _reachable_database() -> Database:
    """The app's database, or a clean exit 1 when it cannot be reached."""
    database = get_database()
    try:
        database.ping()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"the database is unreachable: {type(exc).__name__}") from exc
    return database


def spool_dir() -> Path:
    """Where pulled batches wait when the database cannot take them."""
    return Path(current_app.instance_path) / "unstored"


def register(app: Flask) -> None:
    """Add the `jsms` command group to the app's CLI."""
    app.cli.add_command(jsms)


def main() -> None:
    """The `jsms` console script: the same commands, on the app `wsgi.py` builds."""
    from app import create_app  # app imports this module to register the group

    jsms.main(prog_name="jsms", obj=ScriptInfo(create_app=create_app, set_debug_flag=False))
