"""Replay memory: a callback's signature is good once.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So
each accepted callback's (app, nonce, timestamp) is remembered with a digest of what it carried,
in the callback's own transaction: the same triple with the same digest is JSMS retrying (its
records are duplicates), with another digest someone replaying a captured signature. A unique
index decides, not a read-then-write, so two concurrent requests with one triple store at most
one of them. Timestamps older than the memory (the raw-event retention), or too far ahead, are
refused: their triple might have been forgotten.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from app.errors import BadInput, Unauthenticated
from app.jsms.records import ParsedBatch
from app.metrics import SIGNATURES_REFUSED
from app.store.ingest import IngestResult
from app.store.models import UTCDateTime

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
    digest = hashlib.sha256(
        record_type.encode("utf-8", "surrogatepass") + b"\x1f"
        + data.encode("utf-8", "surrogatepass")
    ).hexdigest()  # fmt: skip
    return SignedUse(app_key, nonce, int(timestamp), digest)


def first_use(session: Session, use: SignedUse, now: datetime) -> bool:
    """Remember `use` inside the caller's transaction. True the first time; False for a retry
    (same triple, same digest); raises `SignatureReused` for the same triple with other data."""
    connection = session.connection()
    values = {
        "app_key": use.app_key,
        "nonce": use.nonce,
        "ts": use.timestamp,
        "digest": use.digest,
        "received_at": now,
    }
    # On PostgreSQL a concurrent insert of the same triple waits here for the other to end.
    if connection.execute(_REMEMBER, values).first() is not None:
        return True
    key = {"app_key": use.app_key, "nonce": use.nonce, "ts": use.timestamp}
    seen = connection.execute(_SEEN, key).scalar_one_or_none()
    if seen == use.digest:
        return False
    SIGNATURES_REFUSED.labels("reused").inc()
    log.warning("callback signature reused with other data", extra={
        "event": "signature_reused", "app_key": use.app_key, "nonce": use.nonce[:64],
    })  # fmt: skip
    raise SignatureReused("this signature was already used for another callback")


def retry_result(batch: ParsedBatch) -> IngestResult:
    """What a retry of a stored callback did: nothing new, every record a duplicate."""
    return IngestResult(0, 0, batch.items, 0)


_REMEMBER = text(
    "INSERT INTO callback_signatures (app_key, nonce, callback_timestamp, digest, received_at) "
    "VALUES (:app_key, :nonce, :ts, :digest, :received_at) "
    "ON CONFLICT (app_key, nonce, callback_timestamp) DO NOTHING RETURNING id"
).bindparams(bindparam("received_at", type_=UTCDateTime()))
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
