"""How each upstream answer changes an app's sync state: mode, errors, next attempt.

Pure functions over a `SyncState` row and a time; the puller calls them inside its own
transactions.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session

from app.config import Settings
from app.jsms.client import JsmsApiError, UpstreamUnavailable
from app.jsms.codes import explain
from app.jsms.records import Record, ReplyMessage, Report
from app.store.db import insert_on_conflict
from app.store.ingest import IngestResult
from app.store.models import PullCallCount, SyncMode, SyncState

# Answers that mean "a person must change something": stop pulling, look again rarely.
PAUSING_CODES = frozenset({50001, 50002, 50008, 50016, 50017, 50018, 50035, 50036, 50301})
PULL_OUT_OF_FREQUENCY = 50201
PULL_NOT_ALLOWED = 50202


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """The puller's timings, in seconds."""

    window: float = 5.0  # the upstream's per-app window (JSMS_RATE_LIMIT_SECONDS)
    lease_ttl: float = 60.0  # a dead holder's lease is free after this
    idle_poll: float = 60.0  # after draining, the clock looks again this much later
    callback_reprobe: float = 3600.0  # an app in callback mode is probed again this much later
    paused_retry: float = 3600.0  # a paused app (auth, frozen, …) is retried this much later
    backoff_max: float = 900.0  # the longest backoff after server errors and timeouts

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: float) -> SyncPolicy:
        """The policy for the configured upstream window."""
        values = {
            "window": settings.jsms_rate_limit_seconds,
            "lease_ttl": settings.pull_lease_seconds,
            **overrides,
        }
        return cls(**values)

    @property
    def call_margin(self) -> float:
        """Slack added to the window between two calls, against clock skew between hosts."""
        return min(0.1, max(0.002, self.window * 0.01))


class PassOutcome(StrEnum):
    """How one pass for one app and kind ended."""

    DRAINED = "drained"  # pulled until a short batch
    FAILED = "failed"  # the upstream refused or did not answer
    CALLBACK_MODE = "callback_mode"  # 50202: JSMS posts this app's receipts (a state, no failure)
    NOT_DUE = "not_due"  # waiting for its next attempt (callback mode, paused, backoff)
    BUSY = "busy"  # another puller holds the app's lease
    STOPPED = "stopped"  # SIGTERM: the batch in hand was committed
    LEASE_LOST = "lease_lost"  # the lease expired under us and someone else took it


@dataclass(slots=True)
class PassResult:
    """What one pass did for one app and kind, and the state it left behind."""

    app_key: str
    kind: str
    outcome: PassOutcome
    calls: int = 0
    items: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    mode: str | None = None
    next_attempt_at: datetime | None = None
    error: str | None = None

    def add(self, items: int, ingested: IngestResult | None) -> None:
        """Count a stored batch (None: an empty answer, nothing to store)."""
        self.items += items
        if ingested is None:
            return
        self.stored += ingested.stored
        self.duplicates += ingested.duplicates
        self.quarantined += ingested.quarantined

    def then(self, turn: PassResult) -> PassResult:
        """This result followed by a later turn of the same pass: counts added, and the
        outcome and state as the later turn left them."""
        self.calls += turn.calls
        self.items += turn.items
        self.stored += turn.stored
        self.duplicates += turn.duplicates
        self.quarantined += turn.quarantined
        self.outcome, self.mode = turn.outcome, turn.mode
        self.next_attempt_at, self.error = turn.next_attempt_at, turn.error
        return self

    def snapshot(self, state: SyncState | None) -> PassResult:
        """Copy the state's mode, next attempt and error into the result."""
        if state is not None:
            if self.outcome == PassOutcome.FAILED and state.last_error_code == PULL_NOT_ALLOWED:
                self.outcome = PassOutcome.CALLBACK_MODE
            self.mode = state.mode
            self.next_attempt_at = state.next_attempt_at
            if self.outcome != PassOutcome.DRAINED or state.mode != SyncMode.PULL:
                self.error = f"{state.last_error_code or '-'}: {state.last_error_message}"
        return self

    def describe(self, *, detailed: bool = False) -> str:
        """One line for people: `app kind: outcome`, then what the pass pulled.

        Brief (the clock's log, which adds the next poll itself): the records pulled and stored.
        Detailed (`jsms sync`): the calls, duplicates and quarantined too, why a busy app was
        skipped, the mode, the next attempt while it holds calls back, and the last error.
        """
        line = f"{self.app_key} {self.kind}: {self.outcome.replace('_', ' ')}"
        if not detailed:
            pulled = f", {self.items} record(s) pulled, {self.stored} stored"
            return line + pulled if self.calls else line
        if self.outcome == PassOutcome.BUSY:
            return line + " (another puller holds this app's lease; it is pulling now)"
        if self.calls:
            line += (
                f", {self.calls} call(s), {self.items} record(s) pulled"
                f" ({self.stored} stored, {self.duplicates} duplicates,"
                f" {self.quarantined} quarantined)"
            )
        if self.mode:
            line += f"; mode {self.mode}"
        waiting = self.mode != SyncMode.PULL or self.outcome != PassOutcome.DRAINED
        if self.next_attempt_at and waiting:
            line += f", next attempt {self.next_attempt_at.isoformat(timespec='seconds')}"
        if self.error:
            line += f"; last error {self.error}"
        return line


def load_state(session: Session, app_key: str, kind: str) -> SyncState:
    """The app and kind's state row, added (in the caller's transaction) if it has none yet."""
    state = session.get(SyncState, (app_key, kind))
    if state is None:
        state = SyncState(
            app_key=app_key,
            kind=kind,
            mode=SyncMode.PULL,
            consecutive_failures=0,
            records_pulled=0,
        )
        session.add(state)
    return state


def is_due(state: SyncState | None, now: datetime, *, on_schedule: bool) -> bool:
    """Whether a pass may call the upstream now.

    Callback mode, paused and backoff always wait for `next_attempt_at`. A healthy app's
    `next_attempt_at` is only the clock's polling schedule, which a manual pass does not wait for.
    """
    if state is None or state.next_attempt_at is None:
        return True
    if state.mode != SyncMode.PULL or state.consecutive_failures > 0 or on_schedule:
        return state.next_attempt_at <= now
    return True


def record_attempt(state: SyncState, now: datetime) -> None:
    """A call is about to be made."""
    state.last_attempt_at = now


def record_batch(
    state: SyncState,
    items: int,
    more: bool,
    now: datetime,
    policy: SyncPolicy,
    records: Iterable[Record] = (),
) -> None:
    """A batch arrived and is being stored: the app pulls, and is healthy."""
    state.mode = SyncMode.PULL
    state.last_success_at = now
    state.consecutive_failures = 0
    state.records_pulled = (state.records_pulled or 0) + items
    state.next_attempt_at = now + timedelta(seconds=policy.window if more else policy.idle_poll)
    newest = newest_carrier_time(records, now)
    if newest is not None and (state.newest_record_at is None or newest > state.newest_record_at):
        state.newest_record_at = newest


def newest_carrier_time(records: Iterable[Record], now: datetime) -> datetime | None:
    """The latest carrier time (report `received_at`, reply `replied_at`) among the records,
    capped at `now`: a record cannot be newer than the answer that brought it, whatever the
    carrier's clock says."""
    times = [
        r.received_at if isinstance(r, Report) else r.replied_at
        for r in records
        if isinstance(r, Report | ReplyMessage)
    ]
    return min(max(times), now) if times else None


def record_failure(
    state: SyncState, error: JsmsApiError | UpstreamUnavailable, now: datetime, policy: SyncPolicy
) -> None:
    """The upstream refused or could not answer: set the mode and when to look again."""
    code = error.code if isinstance(error, JsmsApiError) else None
    state.last_error_code = code
    state.last_error_message = _message(error)[:1000]
    state.last_error_at = now
    if code == PULL_OUT_OF_FREQUENCY:
        # Someone else called within the window (we never do): just wait it out.
        state.next_attempt_at = now + timedelta(seconds=policy.window)
        return
    if code == PULL_NOT_ALLOWED:
        state.mode = SyncMode.CALLBACK
        state.consecutive_failures = 0
        state.next_attempt_at = now + timedelta(seconds=policy.callback_reprobe)
        return
    if code in PAUSING_CODES or (
        isinstance(error, JsmsApiError) and error.http_status < 500 and code != 50019
    ):
        state.mode = SyncMode.PAUSED
        state.consecutive_failures += 1
        state.next_attempt_at = now + timedelta(seconds=policy.paused_retry)
        return
    state.mode = SyncMode.PULL
    state.consecutive_failures += 1
    delay = backoff_seconds(state.consecutive_failures, policy)
    state.next_attempt_at = now + timedelta(seconds=delay)


def refusal_line(
    app_key: str, kind: str, error: JsmsApiError | UpstreamUnavailable
) -> tuple[int, str]:
    """The log level and line for an upstream refusal: its meaning and fix when the code is
    known; 50202 is a state (callback mode), logged at INFO, not a failure."""
    code = error.code if isinstance(error, JsmsApiError) else None
    known = explain(code, app_key)
    if code == PULL_NOT_ALLOWED and known is not None:
        return logging.INFO, f"pull app={app_key} kind={kind}: {known.meaning} ({error})"
    line = f"pull app={app_key} kind={kind} failed: {error}"
    if known is not None:
        line += f": {known.meaning}; fix: {known.fix}"
    return logging.WARNING, line


def count_call(session: Session, state: SyncState, result: str) -> None:
    """Add one to the calls that got this answer (in the caller's transaction)."""
    stmt = insert_on_conflict(session, PullCallCount).values(
        app_key=state.app_key, kind=state.kind, result=result, calls=1
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["app_key", "kind", "result"],
            set_={"calls": PullCallCount.calls + 1},
        )
    )


def call_result(error: JsmsApiError | UpstreamUnavailable) -> str:
    """The label of a failed call: the JSMS error code, or `unavailable` when none came back."""
    return str(error.code) if isinstance(error, JsmsApiError) else "unavailable"


def backoff_seconds(failures: int, policy: SyncPolicy) -> float:
    """Full-jitter exponential backoff: a random wait in [window, window·2^(failures-1)], capped."""
    ceiling = min(policy.backoff_max, policy.window * 2 ** min(max(1, failures) - 1, 64))
    return random.uniform(policy.window, max(policy.window, ceiling))


def _message(error: JsmsApiError | UpstreamUnavailable) -> str:
    # The upstream's own words; the code's meaning and fix are looked up when shown (codes.py).
    if isinstance(error, JsmsApiError):
        return f"{error.message} [HTTP {error.http_status}]"
    return error.message
