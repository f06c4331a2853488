"""`jsms doctor`: check the setup end to end and say how to fix what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from app.config import EPHEMERAL_STORE_FIX, Settings
from app.jsms.client import JsmsClient
from app.ops.app_check import app_finding
from app.ops.findings import FAIL, OK, WARN, Finding
from app.ops.probe import ProbeStoreUnavailable, probe
from app.ops.risk import receipts_at_risk
from app.ops.skew import SKEW_SHOWN, clock_skew
from app.pull import spool
from app.pull.state import SyncPolicy
from app.store.business_time import recorded_business_timezone
from app.store.db import DATABASE_UNAVAILABLE, Database
from app.store.models import SyncState, utcnow
from app.store.reachable import database_problem
from app.store.schema import schema_version

# Values .env.example ships with: a copied file that still holds them was never filled in.
PLACEHOLDER_PREFIX = "your-"
# Shorter tokens (API_TOKENS, METRICS_TOKEN) are reported as guessable.
MIN_TOKEN_LENGTH = 32


def examine(settings: Settings, database: Database, spool_dir: Path) -> list[Finding]:
    """Every check, in order; the apps are probed only when the database and upstream are fine,
    and the receipts at risk read only from a database at head."""
    findings = [*_configuration(settings), *_durable_store(settings)]
    findings += [*_metrics_token(settings), _spool(spool_dir)]
    store = _database(database)
    store_ok = all(f.status == OK for f in store)
    findings += store + _business_timezone(settings, database if store_ok else None)
    upstream = _upstream(settings)
    findings += upstream
    if all(f.status == OK for f in store + upstream):
        findings += _apps(settings, database, spool_dir)
    if all(f.status == OK for f in store):
        findings += [*_receipts_at_risk(settings, database), _clock_skew(database)]
    return findings


def _configuration(settings: Settings) -> Iterator[Finding]:
    yield _apps_setting(settings.jsms_apps)
    yield _tokens_setting(settings.api_tokens)


def _apps_setting(apps: dict[str, str]) -> Finding:
    placeholders = [
        key
        for key, secret in apps.items()
        if key.startswith(PLACEHOLDER_PREFIX) or secret.startswith(PLACEHOLDER_PREFIX)
    ]
    if placeholders:
        return Finding(
            "JSMS_APPS",
            FAIL,
            "still holds the placeholder from .env.example: " + ", ".join(placeholders),
            "set JSMS_APPS to your apps' keys and master secrets from the JSMS console",
        )
    if apps:
        return Finding("JSMS_APPS", OK, f"{len(apps)} app(s): " + ", ".join(apps))
    return Finding(
        "JSMS_APPS",
        FAIL,
        "no app is configured: every callback is refused",
        "set JSMS_APPS=appKey:masterSecret[,appKey:masterSecret…]",
    )


def _tokens_setting(tokens: tuple[str, ...]) -> Finding:
    fix = "set API_TOKENS=<long random token>[,…]"
    if any(t.startswith(PLACEHOLDER_PREFIX) for t in tokens):
        return Finding("API_TOKENS", FAIL, "still holds a placeholder from .env.example", fix)
    short = [i + 1 for i, t in enumerate(tokens) if len(t) < MIN_TOKEN_LENGTH]
    if short:
        return Finding(
            "API_TOKENS",
            WARN,
            f"token(s) number {', '.join(map(str, short))} shorter than {MIN_TOKEN_LENGTH} "
            "characters: guessable",
            "use long random tokens: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    if tokens:
        return Finding("API_TOKENS", OK, f"{len(tokens)} token(s)")
    return Finding("API_TOKENS", WARN, "none: the query API and status page refuse everyone", fix)


def _durable_store(settings: Settings) -> Iterator[Finding]:
    """On a dyno, the SQLite default would be wiped at the next restart: the processes refuse
    to start, and this says so."""
    problem = settings.ephemeral_store_problem()
    if problem:
        yield Finding("durable store", FAIL, problem, EPHEMERAL_STORE_FIX)


def _receipts_at_risk(settings: Settings, database: Database) -> Iterator[Finding]:
    """Per app and kind, how long until JSMS drops receipts this service has not got."""
    with database.session() as session:
        found = receipts_at_risk(session, settings.jsms_apps, utcnow())
    for risk in found:
        status = FAIL if risk.red else OK
        yield Finding(f"at risk: {risk.app_key} {risk.kind}", status, risk.detail, risk.fix)


def _clock_skew(database: Database) -> Finding:
    """JSMS's clock against the server's, read from the newest callbacks' signed timestamps."""
    with database.session() as session:
        skew = clock_skew(session, utcnow())
    if skew is None:
        return Finding("clock skew", OK, "no callback in the last day to compare with")
    if skew.shown:
        return Finding("clock skew", WARN, skew.detail, skew.fix)
    return Finding("clock skew", OK, f"within {SKEW_SHOWN} ({skew.detail})")


def _business_timezone(settings: Settings, database: Database | None) -> list[Finding]:
    """The zone whose days the stats and status page count, and whether the BI views (set by
    `jsms migrate`) count in the same one."""
    name = settings.business_timezone
    offset = datetime.now(settings.business_zone()).isoformat()[-6:]
    recorded = name
    if database is not None:
        with database.engine.connect() as connection:
            recorded = recorded_business_timezone(connection) or "nothing"
    if recorded == name:
        detail = f"{name} (UTC{offset} now): days of the stats, status page and BI views"
        return [Finding("BUSINESS_TIMEZONE", OK, detail)]
    return [
        Finding(
            "BUSINESS_TIMEZONE",
            WARN,
            f"{name}, but the BI views count days in {recorded}",
            "run: flask --app wsgi jsms migrate (the release step) to apply it to the views",
        )
    ]


def _metrics_token(settings: Settings) -> Iterator[Finding]:
    token = settings.metrics_token
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        yield Finding(
            "METRICS_TOKEN",
            WARN,
            f"shorter than {MIN_TOKEN_LENGTH} characters: guessable",
            "use a long random token",
        )


def _spool(spool_dir: Path) -> Finding:
    """Batches waiting on disk for `jsms reprocess`, and saves that never finished."""
    partial = spool.leftovers(spool_dir)
    waiting = len(spool.waiting(spool_dir))
    if partial:
        names = ", ".join(p.name for p in partial[:3]) + (" …" if len(partial) > 3 else "")
        return Finding(
            "spool",
            WARN,
            f"{len(partial)} unfinished file(s) in {spool_dir} ({names}), {waiting} waiting",
            "a save was interrupted: inspect the .partial file(s), then remove them",
        )
    if waiting:
        return Finding(
            "spool",
            WARN,
            f"{waiting} batch(es) waiting in {spool_dir}",
            "run: flask --app wsgi jsms reprocess",
        )
    return Finding("spool", OK, "empty")


def _database(database: Database) -> list[Finding]:
    """Reachable, and at the newest migration."""
    try:
        database.ping()
    except DATABASE_UNAVAILABLE as exc:
        return [
            Finding(
                "database",
                FAIL,
                f"unreachable: {database_problem(exc, database.url)}",
                "check DATABASE_URL and that the server is up",
            )
        ]
    reachable = Finding("database", OK, f"reachable ({database.engine.url.get_backend_name()})")
    version = schema_version(database)
    if version.at_head:
        return [reachable, Finding("migrations", OK, version.describe())]
    return [reachable, Finding("migrations", FAIL, version.describe(), "run: jsms migrate")]


def _upstream(settings: Settings) -> list[Finding]:
    """The upstream's base URL answers at all."""
    url = settings.jsms_api_base_url
    try:
        httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return [
            Finding(
                "upstream",
                FAIL,
                f"{url} unreachable ({type(exc).__name__})",
                "check JSMS_API_BASE_URL and outbound network access",
            )
        ]
    return [Finding("upstream", OK, f"{url} answers")]


def _apps(settings: Settings, database: Database, spool_dir: Path) -> Iterator[Finding]:
    """Each app's state, and one probe call per app in its turn of the rate window: what the
    probe is handed is stored (JSMS hands records out once), and no app's sync state changes."""
    policy = SyncPolicy.from_settings(settings)
    with JsmsClient(settings.jsms_api_base_url) as client:
        for app_key, secret in settings.jsms_apps.items():
            with database.session() as session:
                states = {
                    s.kind: s
                    for s in session.scalars(select(SyncState).where(SyncState.app_key == app_key))
                }
                session.expunge_all()
            try:
                found = probe(database, client, policy, app_key, secret, spool_dir=spool_dir)
            except ProbeStoreUnavailable as exc:
                yield Finding(f"app {app_key}", FAIL, str(exc), "see the database check")
                continue
            yield app_finding(found, states, utcnow())


def render(findings: list[Finding]) -> str:
    """The report as text, one check per line, fixes indented below."""
    lines = []
    for f in findings:
        lines.append(f"[{f.status:>4}] {f.check}: {f.detail}")
        if f.fix and f.status != OK:
            lines.append(f"       fix: {f.fix}")
    failed = sum(f.status == FAIL for f in findings)
    lines.append("all good" if not failed else f"{failed} problem(s) found")
    return "\n".join(lines)
