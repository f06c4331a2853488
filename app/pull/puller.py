"""Pulling receipts: a pass per app drains each due kind, through the one ingest path.

A pass holds the app's lease (`lease.py`), records every call in the database before making it,
never calls within the upstream's window, and stores each batch in one transaction right after
it arrives, so that a batch handed out by JSMS is either committed or still in hand.

The puller owns every transaction: each unit of work below is one `with session.begin():`
block, and nothing it calls commits or rolls back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from app.jsms.client import JsmsApiError, JsmsClient, UpstreamUnavailable
from app.jsms.pulled import KINDS, Kind, PulledBatch
from app.metrics import PULL_SECONDS
from app.pull import lease, spool
from app.pull.state import (
    PassOutcome,
    PassResult,
    SyncPolicy,
    call_result,
    count_call,
    is_due,
    load_state,
    record_attempt,
    record_batch,
    record_failure,
    refusal_line,
)
from app.store.db import DATABASE_UNAVAILABLE, Database
from app.store.ingest import IngestResult, RawPayload, ingest_or_quarantine
from app.store.models import Source, SyncState, utcnow

log = logging.getLogger(__name__)
# How long a batch in hand is retried against an unavailable database before giving up
# (shorter than the platform's 30 s between SIGTERM and SIGKILL).
STORE_RETRY_SECONDS = 20.0


class StoreUnavailable(Exception):
    """The database could not be written before a call: nothing was pulled."""


class BatchNotStored(Exception):
    """A batch was handed out but could not be committed; its body is in the spool."""


class CallWait(Enum):
    """How waiting for the next call (its slot in the rate window) ended."""

    GRANTED = "granted"
    STOPPED = "stopped"
    LEASE_LOST = "lease_lost"


class Puller:
    """Pulls receipts for apps; one per process, shared by its threads (one app per thread)."""

    def __init__(
        self,
        database: Database,
        client: JsmsClient,
        policy: SyncPolicy,
        *,
        spool: Path,
        holder: str | None = None,
        now: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
    ) -> None:
        self.database = database
        # Where a batch goes when the store cannot take it: never the log (phone numbers).
        self.spool = spool
        self.client = client
        self.policy = policy
        self.holder = holder or lease.new_holder_id()
        self.now = now
        self.stop = stop or threading.Event()
        # app → when our last call's answer came in (monotonic, and wall clock for the database)
        self._last_answer: dict[str, tuple[float, datetime]] = {}

    def due_kinds(self, app_key: str, kinds: Iterable[Kind] = KINDS) -> list[Kind]:
        """The kinds the clock should pull for this app now."""
        now = self.now()
        with self.database.session() as session, session.begin():
            states = {
                s.kind: s
                for s in session.scalars(select(SyncState).where(SyncState.app_key == app_key))
            }
            return [k for k in kinds if is_due(states.get(k), now, on_schedule=True)]

    def sync_app(
        self,
        app_key: str,
        secret: str,
        kinds: Iterable[Kind] = KINDS,
        *,
        on_schedule: bool = False,
        max_calls: int | None = None,
    ) -> list[PassResult]:
        """One pass for one app: take its lease, drain each due kind, give the lease back.
        `max_calls` bounds the calls per kind.

        Raises `StoreUnavailable` when the database cannot be written (then nothing was pulled).
        """
        kinds = [Kind(k) for k in kinds]
        with self.database.session() as session:
            try:
                with session.begin():
                    taken = lease.acquire(
                        session, app_key, self.holder, self.now(), self.policy.lease_ttl
                    )
            except DATABASE_UNAVAILABLE as exc:
                raise StoreUnavailable(f"cannot take the lease for {app_key}: {exc}") from exc
            if not taken:
                return [PassResult(app_key, kind, PassOutcome.BUSY) for kind in kinds]
            try:
                return self._take_turns(session, app_key, secret, kinds, on_schedule, max_calls)
            finally:
                release_lease(session, app_key, self.holder)

    def _take_turns(
        self,
        session: Session,
        app_key: str,
        secret: str,
        kinds: list[Kind],
        on_schedule: bool,
        max_calls: int | None,
    ) -> list[PassResult]:
        """Drain the kinds one call each in turn: they share the app's window, so a report
        backlog never makes the replies wait until it is empty (or the other way round).

        A kind's first turn waits for it to be due; later turns follow a full batch, which is
        more backlog to pull at once.
        """
        results: dict[Kind, PassResult] = {}
        pending = list(kinds)
        while pending:
            for kind in list(pending):
                scheduled = on_schedule and kind not in results
                turn = self._pass(session, app_key, secret, kind, scheduled, max_calls=1)
                total = results[kind] = results[kind].then(turn) if kind in results else turn
                more = turn.outcome == PassOutcome.DRAINED and self._catching_up(
                    session, app_key, kind
                )
                if not more or total.calls == max_calls:
                    pending.remove(kind)
        return [results[k] for k in kinds]

    def _catching_up(self, session: Session, app_key: str, kind: Kind) -> bool:
        """Whether the kind's last call came back full (more backlog waits upstream)."""
        with session.begin():
            state = session.get(SyncState, (app_key, kind))
            return state is not None and state.catching_up(self.policy.window)

    def _pass(
        self,
        session: Session,
        app_key: str,
        secret: str,
        kind: Kind,
        on_schedule: bool,
        max_calls: int | None = None,
    ) -> PassResult:
        """Drain one kind: pull while batches come back full, as often as the window allows."""
        with session.begin():
            state = session.get(SyncState, (app_key, kind))
            if not is_due(state, self.now(), on_schedule=on_schedule):
                return PassResult(app_key, kind, PassOutcome.NOT_DUE).snapshot(state)
        result = PassResult(app_key, kind, PassOutcome.DRAINED)
        while self._pull_once(session, app_key, secret, kind, result):
            if result.calls == max_calls:
                break
        log.info(
            "pull app=%s kind=%s outcome=%s calls=%d items=%d stored=%d",
            app_key, kind, result.outcome, result.calls, result.items, result.stored,
        )  # fmt: skip
        with session.begin():
            return result.snapshot(session.get(SyncState, (app_key, kind)))

    def _pull_once(
        self, session: Session, app_key: str, secret: str, kind: Kind, result: PassResult
    ) -> bool:
        """Wait for the window, make one call and store what it brought, counting both into
        `result`. True when the batch came back full (more may be waiting); False when the pass
        ends, with `result.outcome` saying why (left at DRAINED when the batch was not full)."""
        wait = self._wait_for_slot(session, app_key, kind)
        if wait is not CallWait.GRANTED:
            result.outcome = PassOutcome(wait.value)
            return False
        result.calls += 1
        started = time.perf_counter()
        try:
            batch = self.client.pull(app_key, secret, kind)
        except (JsmsApiError, UpstreamUnavailable) as exc:
            mode = self._record_failure(session, app_key, kind, exc, self._answered(app_key))
            _log_call(app_key, kind, mode, call_result(exc), started)
            result.outcome = PassOutcome.FAILED
            return False
        answered_at = self._answered(app_key)
        ingested, mode = self._store(session, app_key, kind, batch, answered_at)
        _log_call(app_key, kind, mode, "ok", started, batch.item_count, ingested)
        result.add(batch.item_count, ingested)
        return batch.is_full

    def _answered(self, app_key: str) -> datetime:
        """Note that a call's answer is in: the upstream saw the call before this moment."""
        answered_at = self.now()
        self._last_answer[app_key] = (time.monotonic(), answered_at)
        return answered_at

    def _wait_for_slot(self, session: Session, app_key: str, kind: Kind) -> CallWait:
        """Put the next call on record (committed) for the moment the window opens, then wait.

        Claiming ahead of time keeps the database's latency out of the gap between calls; the
        claim is still committed before the call, so a crash mid-call respects the window.
        """
        spacing = self.policy.window + self.policy.call_margin
        while not self.stop.is_set():
            opens, planned = self._next_opening(app_key, spacing)
            try:
                with session.begin():
                    slot = lease.claim_call(
                        session, app_key, self.holder, planned, spacing, self.policy.lease_ttl
                    )
                    if slot.granted:
                        record_attempt(load_state(session, app_key, kind), planned)
            except DATABASE_UNAVAILABLE as exc:
                raise StoreUnavailable(f"cannot record a call for {app_key}: {exc}") from exc
            if slot.granted:
                stopped = self.stop.wait(max(0.0, opens - time.monotonic()))
                return CallWait.STOPPED if stopped else CallWait.GRANTED
            if slot.lease_lost or slot.not_before is None:
                return CallWait.LEASE_LOST
            self.stop.wait(max(0.001, (slot.not_before - self.now()).total_seconds()))
        return CallWait.STOPPED

    def _next_opening(self, app_key: str, spacing: float) -> tuple[float, datetime]:
        """When (monotonic) our next call may go out, and that instant on the database's clock.

        Spacing our calls from the previous *answer* (not the previous send) means that no
        network latency can make two calls look closer than the window upstream.
        """
        opens, planned = time.monotonic(), self.now()
        last = self._last_answer.get(app_key)
        if last is not None:
            opens = last[0] + spacing
            planned += timedelta(seconds=max(0.0, opens - time.monotonic()))
            # Never before the instant the database holds, or the claim would be refused.
            planned = max(planned, last[1] + timedelta(seconds=spacing))
        return opens, planned

    def _store(
        self, session: Session, app_key: str, kind: Kind, batch: PulledBatch, answered_at: datetime
    ) -> tuple[IngestResult | None, str]:
        """Store the raw batch, its records and the new state in one transaction, now; retried
        while the database is unavailable, then spooled. Returns what was stored and the mode.

        An empty answer stores no raw event (the clock polls idle apps every minute); only the
        state records the successful call (the result is None then).
        """
        raw = RawPayload(app_key, Source.PULL, kind.record_type, batch.body_text)
        try:
            # Never raises; if it ever did, the spool below would keep the body.
            parsed = batch.records(kind, self.now())
            for attempt in Retrying(
                retry=retry_if_exception_type(DATABASE_UNAVAILABLE),
                wait=wait_exponential(multiplier=0.2, max=3.0),
                stop=stop_after_delay(STORE_RETRY_SECONDS),
                reraise=True,
            ):
                with attempt, session.begin():
                    ingested = None
                    if not batch.is_empty:
                        ingested = ingest_or_quarantine(session, raw, parsed)
                    state = load_state(session, app_key, kind)
                    record_batch(
                        state, batch.item_count, batch.is_full, answered_at, self.policy,
                        parsed.records,
                    )  # fmt: skip
                    count_call(session, state, "ok")
                    lease.record_answer(session, app_key, self.holder, answered_at)
                    return ingested, state.mode
        except Exception as exc:  # whatever it was, the batch in hand must not be dropped
            self._keep_unstored(app_key, kind, batch, exc)
            raise BatchNotStored(f"{app_key} {kind}: {exc}") from exc
        raise AssertionError("unreachable: Retrying either returns or raises")

    def _keep_unstored(
        self, app_key: str, kind: Kind, batch: PulledBatch, error: Exception
    ) -> None:
        """The last copy of a batch the store would not take: the spool."""
        path = spool.save(self.spool, app_key, kind, batch.body_text)
        log.error("pulled batch NOT STORED app=%s kind=%s error=%s: kept in %s until "
                  "`jsms reprocess`", app_key, kind, error, path)  # fmt: skip

    def _record_failure(
        self,
        session: Session,
        app_key: str,
        kind: Kind,
        error: JsmsApiError | UpstreamUnavailable,
        answered_at: datetime,
    ) -> str | None:
        """Put the upstream's refusal on record (nothing was handed out); returns the mode."""
        log.log(*refusal_line(app_key, kind, error))
        try:
            with session.begin():
                state = load_state(session, app_key, kind)
                record_failure(state, error, answered_at, self.policy)
                count_call(session, state, call_result(error))
                lease.record_answer(session, app_key, self.holder, answered_at)
                return state.mode
        except DATABASE_UNAVAILABLE:
            log.warning("could not record the failure for %s %s", app_key, kind)
            return None




def release_lease(session: Session, app_key: str, holder: str) -> None:
    """Give the app's lease back in a transaction of its own; if the database is gone, the
    lease expires by itself."""
    try:
        with session.begin():
            lease.release(session, app_key, holder)
    except DATABASE_UNAVAILABLE:
        log.warning("could not release the lease for %s; it will expire", app_key)

def _log_call(
    app_key: str,
    kind: Kind,
    mode: str | None,
    result: str,
    started: float,
    items: int = 0,
    ingested: IngestResult | None = None,
) -> None:
    """One JSON log line per upstream call."""
    counts = ingested.as_json() if ingested else {"stored": 0, "duplicates": 0, "quarantined": 0}
    seconds = time.perf_counter() - started
    PULL_SECONDS.labels(kind, result).observe(seconds)
    log.info("pull call", extra={
        "event": "pull_call", "app_key": app_key, "kind": kind, "result": result,
        "items": items, **counts, "duration_ms": round(seconds * 1000, 2), "mode": mode,
    })  # fmt: skip
