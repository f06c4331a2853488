"""The `jsms …` commands (also `flask --app wsgi jsms …`)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.config import EPHEMERAL_STORE_FIX, Settings, get_settings
from app.jsms.client import JsmsClient
from app.jsms.pulled import KINDS, Kind
from app.logs import configure_logging, mask_phone
from app.ops.doctor import FAIL, examine, render
from app.pull import spool
from app.pull.clock import CLOCK_POOL_TIMEOUT_SECONDS, run_clock, stop_on_signals
from app.pull.puller import BatchNotStored, Puller, StoreUnavailable
from app.pull.resume import resume
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.ingest import reprocess, trust
from app.store.models import RawEvent, utcnow
from app.store.opt_outs import MANUAL, change_by_hand, follow_stored_replies
from app.store.reachable import database_problem
from app.store.readonly import READABLE_TABLES, READABLE_VIEWS, GrantRefused, grant_readonly
from app.store.retention import purge, retention_policy
from app.store.rollup import rebuild_rollup
from app.store.schema import schema_version, upgrade_to_head
from app.web_db import get_database

# Commands that are processes (the Procfile's `clock`): they keep LOG_LEVEL. The others answer
# a person on stdout, with only warnings and errors logged on stderr unless asked (-v).
PROCESS_COMMANDS = frozenset({"clock"})


@click.pass_context
def _people_logging(ctx: click.Context, verbose: int) -> None:
    """Before any command: WARNING for the commands people run (their result is on stdout),
    INFO with -v, DEBUG with -vv; the clock keeps LOG_LEVEL (INFO by default)."""
    if ctx.invoked_subcommand in PROCESS_COMMANDS and not verbose:
        return
    # Build the app now (the console script builds it lazily), so its own logging set-up from
    # LOG_LEVEL comes first and this level after it.
    info = ctx.find_object(ScriptInfo)
    if info is not None:
        info.load_app()
    configure_logging(("WARNING", "INFO", "DEBUG")[min(verbose, 2)])


jsms = AppGroup(
    "jsms",
    help="jsms-receipts commands.",
    callback=_people_logging,
    params=[
        click.Option(
            ["-v", "--verbose"],
            count=True,
            help="Log progress on stderr (INFO; -vv for DEBUG). Default: warnings and errors.",
        )
    ],
)


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
    """Store batches spooled to disk while the database was down, normalize quarantined raw
    events again (after an upgrade), then read stored replies for opt-out keywords; safe to run
    repeatedly. Suspect callbacks (a reused or out-of-window signature) are left alone: only
    `jsms trust` stores their records."""
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
    click.echo(f"read stored replies for opt-out keywords: {_follow_stored_replies()} new changes")


def _follow_stored_replies(chunk: int = 1000) -> int:
    """Every stored reply read with today's keywords, a chunk per transaction; a reply already
    followed changes nothing (one change per reply), so it is safe to repeat."""
    after, changes = 0, 0
    with get_database().engine.connect() as connection:
        while True:
            with connection.begin():
                last, new = follow_stored_replies(connection, after, chunk)
            changes += new
            if last == after:
                return changes
            after = last


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


@jsms.command("rebuild-stats")
def rebuild_stats() -> None:
    """Recount the delivery rollup (stats, status page, BI views) from delivery_reports; safe
    while callbacks arrive."""
    rows = rebuild_rollup(_reachable_database().engine)
    click.echo(f"delivery rollup rebuilt from delivery_reports: {rows} rows")


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


@jsms.command("resume")
@click.argument("app_key")
@click.option(
    "--kind", type=click.Choice([k.value for k in KINDS]), help="Only reports or only replies."
)
def resume_app(app_key: str, kind: str | None) -> None:
    """Clear a pause or backoff (or callback mode) so the next pass pulls APP_KEY now; the
    running clock starts it within a second. Run it after fixing what paused the app."""
    settings = get_settings()
    if app_key not in settings.jsms_apps:
        raise click.BadParameter(f"{app_key!r} is not in JSMS_APPS", param_hint="APP_KEY")
    database = _reachable_database()
    kinds = [Kind(kind)] if kind else list(KINDS)
    try:
        with database.session() as session, session.begin():
            done = resume(session, app_key, kinds, utcnow())
    except SQLAlchemyError as exc:
        reason = database_problem(exc, database.url)
        raise click.ClickException(f"the store is not usable: {reason}") from None
    for line in done:
        click.echo(line.describe())


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
            run_clock(
                puller,
                apps,
                retention_policy(settings),
                settings.pull_max_parallel_apps,
                settings.balance_poll_seconds,
            )
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


@jsms.group("opt-out")
def opt_out() -> None:
    """Opt a phone out of an app, or back in, by hand (kept in the history with who and why)."""


@opt_out.command("add")
@click.argument("phone")
@click.option("--app-key", required=True, help="The app the phone opts out of.")
@click.option("--reason", required=True, help="Why (kept in the history).")
@click.option("--by", "changed_by", help="Who (default: this account's user name).")
def opt_out_add(phone: str, app_key: str, reason: str, changed_by: str | None) -> None:
    """Opt PHONE out of the app: nothing may be sent to it until it opts back in."""
    _change_opt_out(phone, app_key, reason, changed_by, opted_out=True)


@opt_out.command("remove")
@click.argument("phone")
@click.option("--app-key", required=True, help="The app the phone opts back into.")
@click.option("--reason", required=True, help="Why (kept in the history).")
@click.option("--by", "changed_by", help="Who (default: this account's user name).")
def opt_out_remove(phone: str, app_key: str, reason: str, changed_by: str | None) -> None:
    """Opt PHONE back into the app (it asked to receive messages again)."""
    _change_opt_out(phone, app_key, reason, changed_by, opted_out=False)


def _change_opt_out(
    phone: str, app_key: str, reason: str, changed_by: str | None, *, opted_out: bool
) -> None:
    """Record the change by hand and say what the phone's state is now (phone masked)."""
    _chosen_apps(get_settings(), app_key)
    phone, reason = phone.strip(), reason.strip()
    if not phone or len(phone) > 32 or not phone.isprintable():
        raise click.BadParameter("expected 1 to 32 printable characters", param_hint="PHONE")
    if not reason:
        raise click.BadParameter("say why", param_hint="--reason")
    who = (changed_by or _account_name())[:64]
    with _reachable_database().engine.begin() as connection:
        state = change_by_hand(
            connection, app_key, phone, opted_out=opted_out, changed_by=who, reason=reason
        )
    now = "opted out of" if state.opted_out else "not opted out of"
    line = f"{mask_phone(phone)} is {now} {app_key} since {state.since.isoformat()}"
    if state.source != MANUAL:  # a reply newer than this change still decides
        line += f" (a newer reply decides: {state.keyword!r}, {state.source})"
    click.echo(line)


def _account_name() -> str:
    """Who runs this command, by the operating system's account (not the environment)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


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
        reason = database_problem(exc, database.url)
        raise click.ClickException(f"the database is unreachable: {reason}") from None
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
