"""`jsms doctor`'s probe: one call to an app's report API that changes no app's sync state.

It takes its turn in the app's rate window like any puller (the lease and the window in the
database, `app/pull/lease.py`), so it never makes the clock's next call a 50201; and it stores a
batch it is handed, since JSMS hands each record out once. It never writes `sync_state` (mode,
pause, backoff, errors, next attempt): what a failing probe met is for doctor's output only, and
the clock goes on as it would have.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from app.errors import DATABASE_UNAVAILABLE
from app.jsms.client import JsmsApiError, JsmsClient, UpstreamUnavailable
from app.jsms.pulled import Kind, PulledBatch
from app.pull import lease, spool
from app.pull.puller import release_lease
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.ingest import IngestResult, RawPayload, ingest_or_quarantine
from app.store.models import Source, utcnow

log = logging.getLogger(__name__)
# The probe waits at most this many windows for its turn (the clock may be draining the app).
MAX_WAIT_WINDOWS = 3


class ProbeStoreUnavailable(Exception):
    """The database could not be written before the call: nothing was pulled."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe call met. `busy`: another puller held the app (no call was made)."""

    app_key: str
    busy: bool = False
    items: int = 0
    stored: IngestResult | None = None
    error: JsmsApiError | UpstreamUnavailable | None = None
    spooled: Path | None = None  # a batch the store would not take, kept on disk


def probe(
    database: Database,
    client: JsmsClient,
    policy: SyncPolicy,
    app_key: str,
    secret: str,
    *,
    spool_dir: Path,
    kind: Kind = Kind.REPORT,
) -> ProbeResult:
    """Call the upstream once for `app_key` when its window allows, store what it hands out,
    and give the lease back. Raises `ProbeStoreUnavailable` when the database cannot be written
    (then no call was made)."""
    holder = "doctor:" + lease.new_holder_id()
    with database.session() as session:
        try:
            with session.begin():
                taken = lease.acquire(session, app_key, holder, utcnow(), policy.lease_ttl)
            turn = taken and _wait_for_turn(session, app_key, holder, policy)
        except DATABASE_UNAVAILABLE as exc:
            raise ProbeStoreUnavailable(f"cannot take {app_key}'s lease: {exc}") from exc
        try:
            if not turn:
                return ProbeResult(app_key, busy=True)
            return _call(session, client, app_key, secret, kind, holder, spool_dir)
        finally:
            release_lease(session, app_key, holder)


def _wait_for_turn(session: Session, app_key: str, holder: str, policy: SyncPolicy) -> bool:
    """Put the call on record once the window allows it (False: the wait was too long, or the
    lease went to someone else)."""
    spacing = policy.window + policy.call_margin
    waited = threading.Event()  # never set: a plain, interruptible sleep
    for _ in range(MAX_WAIT_WINDOWS + 1):
        with session.begin():
            slot = lease.claim_call(session, app_key, holder, utcnow(), spacing, policy.lease_ttl)
        if slot.granted:
            return True
        if slot.lease_lost or slot.not_before is None:
            return False
        waited.wait(max(0.001, (slot.not_before - utcnow()).total_seconds()))
    return False


def _call(
    session: Session,
    client: JsmsClient,
    app_key: str,
    secret: str,
    kind: Kind,
    holder: str,
    spool_dir: Path,
) -> ProbeResult:
    """The call, then the answer's time on record (the window) and any batch stored."""
    try:
        batch = client.pull(app_key, secret, kind)
    except (JsmsApiError, UpstreamUnavailable) as exc:
        _answered(session, app_key, holder, utcnow())
        return ProbeResult(app_key, error=exc)
    answered_at = utcnow()
    try:
        stored = _store(session, app_key, kind, holder, batch, answered_at)
    except Exception as exc:  # whatever it was, the batch in hand must not be dropped
        path = spool.save(spool_dir, app_key, kind, batch.body_text)
        log.error("probe batch NOT STORED app=%s kind=%s error=%s: kept in %s until "
                  "`jsms reprocess`", app_key, kind, exc, path)  # fmt: skip
        return ProbeResult(app_key, items=batch.item_count, spooled=path)
    return ProbeResult(app_key, items=batch.item_count, stored=stored)


def _store(
    session: Session,
    app_key: str,
    kind: Kind,
    holder: str,
    batch: PulledBatch,
    answered_at: datetime,
) -> IngestResult | None:
    """The raw batch and its records, and the answer's time, in one transaction."""
    parsed = batch.records(kind, answered_at)
    with session.begin():
        stored = None
        if not batch.is_empty:
            raw = RawPayload(app_key, Source.PULL, kind.record_type, batch.body_text)
            stored = ingest_or_quarantine(session, raw, parsed)
        lease.record_answer(session, app_key, holder, answered_at)
        return stored


def _answered(session: Session, app_key: str, holder: str, answered_at: datetime) -> None:
    """The window counts from the answer; if the database is gone, the lease expires anyway."""
    try:
        with session.begin():
            lease.record_answer(session, app_key, holder, answered_at)
    except DATABASE_UNAVAILABLE:
        log.warning("could not record the probe's call for %s", app_key)

