"""The balance watch: the clock reads each app's balance (`GET /v1/accounts/app`) every
BALANCE_POLL_SECONDS and keeps every read, good or failed, in `app_balances`.

A read is an upstream call like a pull, and JSMS counts every call of an app in one window: it
takes its turn exactly as a pass does. It takes the app's lease under a holder of its own (so a
pass being run for the app makes it wait for a later run, and it makes a pass wait a moment),
claims the call in the rate window before making it (committed, `lease.claim_call`), moves the
window to the answer's arrival, and gives the lease back. So a read and a pull due together
never meet within the window, whichever process makes them.

A failed read (50002, 50035, an unreachable upstream, …) is kept with its code and shown like a
pull error; it never changes the sync state, so it never stops or delays pulling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.jsms.client import JsmsApiError, UpstreamUnavailable
from app.jsms.codes import explain
from app.pull import lease
from app.pull.puller import Puller, release_lease
from app.store import balances

log = logging.getLogger(__name__)


class ReadOutcome(StrEnum):
    """How one balance read ended."""

    READ = "read"  # the balance is kept
    FAILED = "failed"  # the upstream refused or did not answer; the error is kept
    BUSY = "busy"  # the app's lease is held (a pass is pulling it): read on a later run
    STOPPED = "stopped"  # SIGTERM before the call
    LEASE_LOST = "lease_lost"


class BalanceReader:
    """Reads balances for the configured apps through the puller's client, database and clock."""

    def __init__(self, puller: Puller, apps: Mapping[str, str], every: float) -> None:
        self.puller = puller
        self.apps = dict(apps)
        self.every = every
        # Not the puller's own holder: releasing this lease must never end a pass's.
        self.holder = f"{puller.holder}:balance"

    def read_due(self) -> dict[str, ReadOutcome]:
        """Read every app whose balance is due, one after the other (the clock's job)."""
        database = self.puller.database
        with database.session() as session:
            due = balances.due_apps(session, list(self.apps), self.puller.now(), self.every)
        outcomes: dict[str, ReadOutcome] = {}
        for app_key in due:
            if self.puller.stop.is_set():
                break
            outcomes[app_key] = self.read(app_key)
        return outcomes

    def read(self, app_key: str) -> ReadOutcome:
        """One read for one app in its turn of the rate window; the result is committed."""
        with self.puller.database.session() as session:
            with session.begin():
                now = self.puller.now()
                ttl = self.puller.policy.lease_ttl
                taken = lease.acquire(session, app_key, self.holder, now, ttl)
            if not taken:
                return ReadOutcome.BUSY
            try:
                outcome = self._wait_for_turn(session, app_key)
                return self._call(session, app_key) if outcome is None else outcome
            finally:
                release_lease(session, app_key, self.holder)

    def _wait_for_turn(self, session: Session, app_key: str) -> ReadOutcome | None:
        """Claim the next call in the app's window (committed before the call), waiting for
        the window to open; None once the call may go out."""
        policy = self.puller.policy
        spacing = policy.window + policy.call_margin
        while not self.puller.stop.is_set():
            with session.begin():
                slot = lease.claim_call(
                    session, app_key, self.holder, self.puller.now(), spacing, policy.lease_ttl
                )
            if slot.granted:
                return None
            if slot.lease_lost or slot.not_before is None:
                return ReadOutcome.LEASE_LOST
            wait = (slot.not_before - self.puller.now()).total_seconds()
            self.puller.stop.wait(max(0.001, wait))
        return ReadOutcome.STOPPED

    def _call(self, session: Session, app_key: str) -> ReadOutcome:
        """Make the call and keep what it answered, moving the window to the answer."""
        try:
            balance = self.puller.client.balance(app_key, self.apps[app_key])
        except (JsmsApiError, UpstreamUnavailable) as exc:
            answered_at = self.puller.now()
            code = exc.code if isinstance(exc, JsmsApiError) else None
            log.warning("balance app=%s failed: %s", app_key, exc)
            with session.begin():
                result = "unavailable" if code is None else str(code)
                balances.record_error(session, app_key, result, code, _message(exc), answered_at)
                lease.record_answer(session, app_key, self.holder, answered_at)
            return ReadOutcome.FAILED
        answered_at = self.puller.now()
        with session.begin():
            balances.record_balance(session, app_key, balance, answered_at)
            lease.record_answer(session, app_key, self.holder, answered_at)
        log.info("balance", extra={"event": "balance", "app_key": app_key, **balance.by_kind()})
        return ReadOutcome.READ


def read_balances(reader: BalanceReader) -> None:
    """The clock's job: read the due balances; a store that cannot be written skips the run."""
    if reader.puller.stop.is_set():
        return
    try:
        outcomes = reader.read_due()
    except SQLAlchemyError as exc:  # the unavailable database among them
        log.error("balance reads skipped: %s", exc)
        return
    busy = [app_key for app_key, outcome in outcomes.items() if outcome == ReadOutcome.BUSY]
    if busy:
        log.info("balance reads wait for passes under way: %s", ", ".join(busy))


def _message(error: JsmsApiError | UpstreamUnavailable) -> str:
    """The error as the status page shows it: JSMS's message, its meaning, the HTTP status."""
    if isinstance(error, JsmsApiError):
        code = explain(error.code)
        known = code.meaning if code else None
        suffix = f" ({known})" if known and known.lower() != error.message.lower() else ""
        return f"{error.message}{suffix} [HTTP {error.http_status}]"
    return error.message
