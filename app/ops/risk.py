"""Receipts at risk, counted down: how long until JSMS drops records this service has not got.

Two clocks run upstream (see docs/jsms-protocol.md):
- a pulled app's records are kept 3 days: whatever arrived after the last successful pull is
  dropped from `last_success_at + 3 days` on;
- a refused callback is retried after 3 min, 1 h and 12 h, then given up: the oldest refusal
  still inside that span is lost for good at `refused_at + 13 h 3 min` unless a retry succeeds.

The computation is pure (plain values in, `Risk` out); `receipts_at_risk` reads the store for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.spans import span_text
from app.store.alarms import Refusals, refusals_since
from app.store.models import SyncState

PULL_RETENTION = timedelta(days=3)
# JSMS retries a failed callback after 3 minutes, 1 hour and 12 hours (each after the last).
LAST_RETRY_AFTER = timedelta(minutes=3) + timedelta(hours=1) + timedelta(hours=12)
RED_UNDER = timedelta(days=1)
AT_RISK_MODES = ("pull", "paused")  # callback-mode records are not kept upstream for pulling

PULL_FIX = (
    "check that the clock runs (heroku ps:scale clock=1) and the app's last error; once its "
    "cause is fixed, run: flask --app wsgi jsms resume {app_key} (ends a backoff), or "
    "flask --app wsgi jsms sync --app-key {app_key} to pull at once without the clock"
)
# A paused app is retried hourly only: `jsms sync` says "not due" until then, resume does not.
PAUSED_FIX = (
    "fix the cause in the last error (its fix is on the status page and in jsms doctor), "
    "then run: flask --app wsgi jsms resume {app_key}"
)
REFUSAL_FIXES = {
    "bad_signature": (
        "the master secret in JSMS_APPS does not match the JSMS console's for this app (or the "
        "console's callback URL names another app): correct JSMS_APPS; JSMS's next retry then "
        "succeeds"
    ),
    "database_unavailable": (
        "the database refused writes: check GET /readyz, the database's status and its "
        "connection limit; JSMS's next retry succeeds once it answers"
    ),
}


@dataclass(frozen=True, slots=True)
class Risk:
    """One app and kind whose receipts JSMS will drop at `deadline` unless something is done."""

    app_key: str
    kind: str
    cause: str  # "pull" (3-day retention) | a refusal reason (JSMS's retries)
    deadline: datetime | None  # None: never pulled, so nothing bounds it
    left: timedelta | None
    red: bool
    detail: str
    fix: str

    def countdown(self) -> str:
        """The time left as people read it: `2 d 23 h`, `overdue by 3 h 2 min`, `unknown`."""
        if self.left is None:
            return "unknown"
        text = span_text(abs(self.left))
        return text if self.left >= timedelta(0) else f"overdue by {text}"


def pull_risk(
    app_key: str, kind: str, mode: str, last_success_at: datetime | None, now: datetime
) -> Risk | None:
    """The 3-day retention countdown of an app pulled (or meant to be, when paused)."""
    if mode not in AT_RISK_MODES:
        return None
    fix = (PAUSED_FIX if mode == "paused" else PULL_FIX).format(app_key=app_key)
    if last_success_at is None:
        detail = "never pulled successfully: JSMS may already be dropping its records"
        return Risk(app_key, kind, "pull", None, None, True, detail, fix)
    deadline = last_success_at + PULL_RETENTION
    left = deadline - now
    # Times in the detail are relative: the status page shows absolute ones in the business
    # zone beside it, and a UTC clock time in the same row would read as another zone's.
    since = span_text(abs(now - last_success_at))
    detail = (
        f"{mode} mode, last successful pull {since} ago: JSMS's 3-day "
        f"retention drops records not yet pulled {_from_now(left)}"
    )
    return Risk(app_key, kind, "pull", deadline, left, left < RED_UNDER, detail, fix)


def refusal_risk(refusals: Refusals, now: datetime) -> Risk:
    """The countdown to JSMS's last retry of the oldest callback refused in the retry span."""
    deadline = refusals.oldest_at + LAST_RETRY_AFTER
    left = deadline - now
    where = refusals.app_key or "(shared URL: app unknown)"
    detail = (
        f"{refusals.refusals} callback(s) refused ({refusals.reason}), the first "
        f"{span_text(abs(now - refusals.oldest_at))} ago: JSMS's last retry of the oldest is "
        f"{_from_now(left)}"
    )
    fix = REFUSAL_FIXES.get(refusals.reason, "see the callback logs for the refusal's cause")
    red = left < RED_UNDER
    return Risk(where, refusals.kind, refusals.reason, deadline, left, red, detail, fix)


def risks(
    states: Iterable[tuple[str, str, str, datetime | None]],
    refusals: Iterable[Refusals],
    now: datetime,
) -> list[Risk]:
    """Every countdown, soonest first: `states` are (app_key, kind, mode, last_success_at)."""
    found = [r for s in states if (r := pull_risk(*s, now)) is not None]
    found += [refusal_risk(r, now) for r in refusals if r.oldest_at + LAST_RETRY_AFTER > now]
    return sorted(found, key=lambda r: (r.left is not None, r.left or timedelta(0), r.app_key))


def _from_now(left: timedelta) -> str:
    text = span_text(abs(left))
    return f"in {text}" if left >= timedelta(0) else f"since {text} ago"


def receipts_at_risk(session: Session, apps: Iterable[str], now: datetime) -> list[Risk]:
    """The countdowns of the configured apps (and of the shared callback URL), from the store."""
    configured = set(apps)
    states = [
        (s.app_key, s.kind, s.mode, s.last_success_at)
        for s in session.scalars(select(SyncState).order_by(SyncState.app_key, SyncState.kind))
        if s.app_key in configured
    ]
    refused = [
        r
        for r in refusals_since(session, now - LAST_RETRY_AFTER)
        if r.app_key in configured or r.app_key == ""
    ]
    return risks(states, refused, now)
