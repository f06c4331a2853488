"""Replay memory: a callback's signature is good once, and what is signed is kept.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So
each accepted callback's (app, nonce, timestamp) is remembered with a digest of what it carried
(its `SignedUse`, made by the callback reader, `app/jsms/callback.py`), in the callback's own
transaction: the same triple with the same digest is JSMS retrying (its records are
duplicates). The same triple with another digest is either JSMS itself (its own sample posts a
reply, a report and a template review under one triple) or someone replaying a captured
signature: nothing tells them apart, so it is kept raw, quarantined as `signature_reused`, its
records stored only by an operator (`jsms trust`). Each such payload is remembered too
(`signature_reuses`), so its retry is a retry; past MAX_PAYLOADS_PER_SIGNATURE distinct
payloads under one triple the callback is refused (a flood from one captured signature cannot
fill the disk).

A unique index decides the first use, not a read-then-write, so two concurrent requests with one
triple store at most one of them; later uses lock the triple's row (PostgreSQL), so the bound
holds across workers; within one group (group commit), the first carrier of a triple is the one.
A timestamp outside the memory's reach is the reader's finding (`signature_time`), not this
module's: such a callback is remembered like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from app.jsms.callback import SignedUse
from app.jsms.records import ParsedBatch
from app.metrics import SIGNATURES_REFUSED
from app.store.ingest import IngestResult, transaction_connection
from app.store.models import CallbackSignature, SignatureReuse
from app.store.upsert import REUSES, SIGNATURES, write

log = logging.getLogger(__name__)

# Distinct payloads (the first and its reuses) one signed triple may carry; past that, refused.
MAX_PAYLOADS_PER_SIGNATURE = 16


class Verdict(StrEnum):
    """What the replay memory makes of one use of a signature."""

    FIRST = "first"  # never seen: store the callback
    RETRY = "retry"  # a payload this triple already carried: JSMS retrying, nothing new
    REUSED = "reused"  # the triple with another payload: keep it raw, quarantined
    FLOODED = "flooded"  # another payload past the bound: refuse it (`SignatureReused`)


Triple = tuple[str, str, int]


def first_uses(
    session: Session | Connection, uses: Sequence[SignedUse], now: datetime
) -> list[Verdict]:
    """Remember `uses` inside the caller's transaction. For each use in order: FIRST the first
    time its triple is seen, RETRY for a payload the triple already carried (stored, or earlier
    in `uses`), REUSED for another payload (remembered too), FLOODED (counted and logged; the
    caller refuses that one alone, its neighbours go on) for another payload once the triple
    carried MAX_PAYLOADS_PER_SIGNATURE."""
    connection = transaction_connection(session)
    firsts: dict[Triple, int] = {}
    for i, use in enumerate(uses):
        firsts.setdefault(use.triple, i)
    # On PostgreSQL a concurrent insert of the same triple waits here for the other to end.
    remembered = write(connection, SIGNATURES, [_row(uses[i], now) for i in firsts.values()])
    known = {
        triple: {uses[i].digest} if triple in remembered else _carried(connection, triple)
        for triple, i in firsts.items()
    }
    verdicts: list[Verdict] = []
    reuses: list[SignedUse] = []
    for i, use in enumerate(uses):
        carried = known[use.triple]
        if firsts[use.triple] == i and use.triple in remembered:
            verdicts.append(Verdict.FIRST)
        elif use.digest in carried:
            verdicts.append(Verdict.RETRY)
        elif len(carried) >= MAX_PAYLOADS_PER_SIGNATURE:
            _count(use, "flooded", "callback signature reused past the bound: refused")
            verdicts.append(Verdict.FLOODED)
        else:
            _count(use, "reused", "callback signature reused with other data: kept, quarantined")
            carried.add(use.digest)
            reuses.append(use)
            verdicts.append(Verdict.REUSED)
    if reuses:
        write(connection, REUSES, [_row(use, now) for use in reuses])
    return verdicts


def _row(use: SignedUse, now: datetime) -> dict[str, object]:
    return {"app_key": use.app_key, "nonce": use.nonce, "callback_timestamp": use.timestamp,
            "digest": use.digest, "received_at": now}  # fmt: skip


def _carried(connection: Connection, triple: Triple) -> set[str]:
    """The digests of every payload a remembered triple carried. On PostgreSQL the triple's row
    stays locked to the end of the transaction, so two workers adding payloads to one triple
    take turns and the bound holds (SQLite's write lock does the same)."""
    app_key, nonce, timestamp = triple
    first = connection.execute(
        select(_SIGNATURES.c.digest)
        .where(_SIGNATURES.c.app_key == app_key, _SIGNATURES.c.nonce == nonce,
               _SIGNATURES.c.callback_timestamp == timestamp)
        .with_for_update()
    ).scalars().all()  # fmt: skip
    others = connection.execute(
        select(_REUSES.c.digest).where(
            _REUSES.c.app_key == app_key, _REUSES.c.nonce == nonce,
            _REUSES.c.callback_timestamp == timestamp,
        )
    ).scalars().all()  # fmt: skip
    return {*first, *others}


def _count(use: SignedUse, reason: str, message: str) -> None:
    SIGNATURES_REFUSED.labels(reason).inc()
    log.warning(message, extra={
        "event": "signature_reused", "app_key": use.app_key, "nonce": use.nonce[:64],
    })  # fmt: skip


def retry_result(batch: ParsedBatch) -> IngestResult:
    """What a retry of a stored callback did: nothing new, every record a duplicate."""
    return IngestResult(0, 0, batch.items, 0)


_SIGNATURES = CallbackSignature.__table__
_REUSES = SignatureReuse.__table__
