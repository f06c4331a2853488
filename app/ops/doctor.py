"""`jsms doctor`: check the setup end to end and say how to fix what is wrong."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

import httpx
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.config import Settings
from app.errors import DATABASE_UNAVAILABLE
from app.jsms.client import JsmsClient
from app.pull.puller import Puller, StoreUnavailable
from app.pull.state import CALLBACK, PAUSED, SyncPolicy
from app.store.db import Database, alembic_config

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was checked, how it went, and the fix when it did not."""

    check: str
    status: str  # ok | warn | FAIL
    detail: str
    fix: str = ""


def examine(settings: Settings, database: Database) -> Iterator[Finding]:
    """Every check, in order; later checks are skipped when an earlier one makes them moot."""
    yield from _configuration(settings)
    database_ok = yield from _database(database)
    upstream_ok = yield from _upstream(settings)
    if database_ok and upstream_ok:
        yield from _apps(settings, database)


def _configuration(settings: Settings) -> Iterator[Finding]:
    if settings.jsms_apps:
        yield Finding(
            "JSMS_APPS", OK, f"{len(settings.jsms_apps)} app(s): " + ", ".join(settings.jsms_apps)
        )
    else:
        yield Finding(
            "JSMS_APPS",
            FAIL,
            "no app is configured: every callback is refused",
            "set JSMS_APPS=appKey:masterSecret[,appKey:masterSecret…]",
        )
    if settings.api_tokens:
        yield Finding("API_TOKENS", OK, f"{len(settings.api_tokens)} token(s)")
    else:
        yield Finding(
            "API_TOKENS",
            WARN,
            "none: the query API and status page refuse everyone",
            "set API_TOKENS=<long random token>[,…]",
        )


def _database(database: Database) -> Generator[Finding, None, bool]:
    try:
        database.ping()
    except DATABASE_UNAVAILABLE as exc:
        yield Finding(
            "database",
            FAIL,
            f"unreachable ({type(exc).__name__})",
            "check DATABASE_URL and that the server is up",
        )
        return False
    yield Finding("database", OK, f"reachable ({database.engine.url.get_backend_name()})")
    with database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    head = set(ScriptDirectory.from_config(alembic_config(database.url)).get_heads())
    if current == head:
        yield Finding("migrations", OK, f"at head ({', '.join(sorted(head))})")
        return True
    yield Finding(
        "migrations",
        FAIL,
        f"at {', '.join(sorted(current)) or 'nothing'}, head is {', '.join(sorted(head))}",
        "run: flask --app wsgi jsms migrate",
    )
    return False


def _upstream(settings: Settings) -> Generator[Finding, None, bool]:
    url = settings.jsms_api_base_url
    try:
        httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        yield Finding(
            "upstream",
            FAIL,
            f"{url} unreachable ({type(exc).__name__})",
            "check JSMS_API_BASE_URL and outbound network access",
        )
        return False
    yield Finding("upstream", OK, f"{url} answers")
    return True


def _apps(settings: Settings, database: Database) -> Iterator[Finding]:
    """Each app's mode, by at most one polite call per app (anything it hands out is stored;
    an app in callback mode, paused or backing off is not called before its next attempt)."""
    with JsmsClient(settings.jsms_api_base_url) as client:
        puller = Puller(database, client, SyncPolicy.from_settings(settings))
        for app_key, secret in settings.jsms_apps.items():
            try:
                [result] = puller.sync_app(app_key, secret, ["report"], max_calls=1)
            except StoreUnavailable as exc:
                yield Finding(f"app {app_key}", FAIL, str(exc), "see the database check")
                continue
            yield _app_finding(
                result.app_key, result.outcome, result.mode, result.error, result.items
            )


def _app_finding(
    app_key: str, outcome: str, mode: str | None, error: str | None, items: int
) -> Finding:
    name = f"app {app_key}"
    if outcome == "busy":
        return Finding(name, OK, "another puller (the clock) is pulling it right now")
    if mode == CALLBACK:
        return Finding(
            name,
            OK,
            f"callback mode: JSMS posts receipts to the callback URL (pulling answers {error})",
        )
    if mode == PAUSED:
        return Finding(
            name,
            FAIL,
            f"paused: {error}",
            "check the app key and master secret in JSMS_APPS, and the account "
            "and SMS service in the JSMS console",
        )
    if outcome == "failed":
        return Finding(
            name,
            FAIL,
            f"pull failed: {error}; it will be retried with backoff",
            "check the upstream's status; see the status page for the next attempt",
        )
    detail = "pull mode" + (f", {items} record(s) pulled and stored" if items else "")
    if outcome == "not_due":
        detail += " (not probed now: waiting for its next attempt)"
    return Finding(name, OK, detail)


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
