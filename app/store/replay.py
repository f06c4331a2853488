"""Replay memory: a callback's signature is good once.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So
each accepted callback's (app, nonce, timestamp) is remembered with a digest of what it carried,
in the callback's own transaction: the same triple with the same digest is JSMS retrying (its
records are duplicates), with another digest someone replaying a captured signature. A unique
index decides, not a read-then-write, so two concurrent requests with one triple store at most
one of them; within one group (group commit), the first carrier of a triple is the one.
Timestamps older than the memory (the raw-event retention), or too far ahead, are refused: their
triple might have been forgotten.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from app.errors import BadInput, Unauthenticated
from app.jsms.records import ParsedBatch
from app.metrics import SIGNATURES_REFUSED
from app.store.ingest import IngestResult
from app.store.upsert import SIGNATURES, write

log = logging.getLogger(__name__)

# JSMS's clock and ours may disagree a little; a signature from further ahead is refused.
MAX_AHEAD = timedelta(hours=1)
MAX_NONCE_LENGTH = 64


class SignatureReused(Unauthenticated):
    code = "signature_reused"


class SignatureExpired(Unauthenticated):
    code = "signature_expired"


@dataclass(frozen=True, slots=True)
class SignedUse:
    """One use of a verified signature: its triple and a digest of what it carried."""

    app_key: str
    nonce: str
    timestamp: int
    digest: str

    @property
    def triple(self) -> tuple[str, str, int]:
        """What JSMS signed: the key of the replay memory."""
        return (self.app_key, self.nonce, self.timestamp)


def signed_use(
    app_key: str, nonce: str, timestamp: str, record_type: str, data: str, *, now: datetime,
    memory_days: int,
) -> SignedUse:  # fmt: skip
    """The use a verified callback makes of its signature; raises `SignatureExpired` when its
    timestamp lies outside what the replay memory covers (`memory_days` 0: forever)."""
    if len(nonce) > MAX_NONCE_LENGTH:
        raise BadInput(f"the nonce is longer than {MAX_NONCE_LENGTH} characters", "invalid_nonce")
    signed_at = _epoch_ms(timestamp)
    oldest = now - timedelta(days=memory_days) if memory_days else None
    if signed_at is None or signed_at > now + MAX_AHEAD or (oldest and signed_at < oldest):
        SIGNATURES_REFUSED.labels("expired").inc()
        raise SignatureExpired(
            "the signature's timestamp is outside the accepted window "
            f"({memory_days or 'any number of'} days back, {MAX_AHEAD} ahead)"
        )
    return SignedUse(app_key, nonce, int(timestamp), digest_of(record_type, data))


def digest_of(record_type: str, data: str) -> str:
    """What a signature was used for: a digest of the callback's `type` and `data`."""
    return hashlib.sha256(
        record_type.encode("utf-8", "surrogatepass") + b"\x1f"
        + data.encode("utf-8", "surrogatepass")
    ).hexdigest()  # fmt: skip


def first_uses(
    session: Session, uses: Sequence[SignedUse], now: datetime
) -> list[bool | SignatureReused]:
    """Remember `uses` inside the caller's transaction, in one statement. For each use in
    order: True the first time its triple is seen, False for a retry (of a stored callback, or
    of one earlier in `uses`), a `SignatureReused` (returned, not raised: its neighbours go on)
    for the same triple with other data."""
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
    verdicts: list[bool | SignatureReused] = []
    for i, use in enumerate(uses):
        if firsts[use.triple] == i and use.triple in remembered:
            verdicts.append(True)
        elif known[use.triple] == use.digest:
            verdicts.append(False)
        else:
            verdicts.append(_reused(use))
    return verdicts


def _seen_digest(connection: Connection, triple: tuple[str, str, int]) -> str | None:
    app_key, nonce, timestamp = triple
    key = {"app_key": app_key, "nonce": nonce, "ts": timestamp}
    digest: str | None = connection.execute(_SEEN, key).scalar_one_or_none()
    return digest


def _reused(use: SignedUse) -> SignatureReused:
    SIGNATURES_REFUSED.labels("reused").inc()
    log.warning("callback signature reused with other data", extra={
        "event": "signature_reused", "app_key": use.app_key, "nonce": use.nonce[:64],
    })  # fmt: skip
    return SignatureReused("this signature was already used for another callback")


def retry_result(batch: ParsedBatch) -> IngestResult:
    """What a retry of a stored callback did: nothing new, every record a duplicate."""
    return IngestResult(0, 0, batch.items, 0)


_SEEN = text(
    "SELECT digest FROM callback_signatures "
    "WHERE app_key = :app_key AND nonce = :nonce AND callback_timestamp = :ts"
)


def _epoch_ms(timestamp: str) -> datetime | None:
    """A signed timestamp (epoch milliseconds) as a datetime, or None if it is not one."""
    try:
        milliseconds = int(timestamp)
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
