"""Replay memory: a callback's signature is good once.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So
each accepted callback's (app, nonce, timestamp) is remembered with a digest of what it carried
(its `SignedUse`, made by the callback reader, `app/jsms/callback.py`), in the callback's own
transaction: the same triple with the same digest is JSMS retrying (its records are
duplicates), with another digest someone replaying a captured signature. A unique
index decides, not a read-then-write, so two concurrent requests with one triple store at most
one of them; within one group (group commit), the first carrier of a triple is the one.
The reader refuses timestamps older than the memory (the raw-event retention), or too far
ahead: their triple might have been forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from app.jsms.callback import SignedUse
from app.jsms.records import ParsedBatch
from app.metrics import SIGNATURES_REFUSED
from app.store.ingest import IngestResult
from app.store.upsert import SIGNATURES, write

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What the replay memory makes of one use of a signature."""

    FIRST = "first"  # never seen: store the callback
    RETRY = "retry"  # the same triple and data again: JSMS retrying, nothing new to store
    REUSED = "reused"  # the same triple with other data: refuse it (`SignatureReused`)


def first_uses(session: Session, uses: Sequence[SignedUse], now: datetime) -> list[Verdict]:
    """Remember `uses` inside the caller's transaction, in one statement. For each use in
    order: FIRST the first time its triple is seen, RETRY for a retry (of a stored callback, or
    of one earlier in `uses`), REUSED (counted and logged; the caller refuses that one alone,
    its neighbours go on) for the same triple with other data."""
    connection = session.connection()
    firsts: dict[tuple[str, str, int], int] = {}
    for i, use in enumerate(uses):
        firsts.setdefault(use.triple, i)
    # On PostgreSQL a concurrent insert of the same triple waits here for the other to end.
    remembered = write(connection, SIGNATURES, [
        {"app_key": use.app_key, "nonce": use.nonce, "callback_timestamp": use.timestamp,
         "digest": use.digest, "received_at": now}
        for use in (uses[i] for i in firsts.values())
    ])  # fmt: skip
    known = {
        triple: uses[i].digest if triple in remembered else _seen_digest(connection, triple)
        for triple, i in firsts.items()
    }
    verdicts: list[Verdict] = []
    for i, use in enumerate(uses):
        if firsts[use.triple] == i and use.triple in remembered:
            verdicts.append(Verdict.FIRST)
        elif known[use.triple] == use.digest:
            verdicts.append(Verdict.RETRY)
        else:
            _count_reused(use)
            verdicts.append(Verdict.REUSED)
    return verdicts


def _seen_digest(connection: Connection, triple: tuple[str, str, int]) -> str | None:
    app_key, nonce, timestamp = triple
    key = {"app_key": app_key, "nonce": nonce, "ts": timestamp}
    digest: str | None = connection.execute(_SEEN, key).scalar_one_or_none()
    return digest


def _count_reused(use: SignedUse) -> None:
    SIGNATURES_REFUSED.labels("reused").inc()
    log.warning("callback signature reused with other data", extra={
        "event": "signature_reused", "app_key": use.app_key, "nonce": use.nonce[:64],
    })  # fmt: skip


def retry_result(batch: ParsedBatch) -> IngestResult:
    """What a retry of a stored callback did: nothing new, every record a duplicate."""
    return IngestResult(0, 0, batch.items, 0)


_SEEN = text(
    "SELECT digest FROM callback_signatures "
    "WHERE app_key = :app_key AND nonce = :nonce AND callback_timestamp = :ts"
)
